//! TLS on the client: the handshake, and whom to trust.
//!
//! Trust works like ssh's known_hosts: the first connection to a host:port
//! shows the server certificate's fingerprint and asks (or refuses when not
//! interactive, unless `--accept-new`), then records `host:port fingerprint`;
//! later connections must present the same certificate, and a mismatch is
//! refused loudly. `--fingerprint` pins one explicitly, and `--ca` checks a
//! CA-signed certificate (chain and host name) instead. The decision is made
//! right after the handshake, before a single byte of rexec data is sent.

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rexec_proto::auth::cert_fingerprint;
use rexec_proto::{FrameDecoder, ServerMsg};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

use crate::error::ClientError;

/// Whom to trust.
#[derive(Debug, Clone)]
pub enum Trust {
    /// The certificate must have this fingerprint (`SHA256:hex`).
    Fingerprint(String),
    /// The known-hosts file decides; an unknown host is asked about on a
    /// terminal, or accepted and recorded with `accept_new`.
    KnownHosts { accept_new: bool },
    /// The certificate must chain to a CA in this PEM file and name the host.
    Ca(PathBuf),
}

#[derive(Debug, Clone)]
pub struct TlsOptions {
    pub trust: Trust,
    pub known_hosts: PathBuf,
}

/// `$XDG_CONFIG_HOME/rexec/known_hosts`, or `~/.config/rexec/known_hosts`
/// (`--known-hosts` and `REXEC_KNOWN_HOSTS` override it).
pub fn default_known_hosts() -> Option<PathBuf> {
    Some(dirs::config_dir()?.join("rexec").join("known_hosts"))
}

/// The recorded fingerprint for `hostport` and its line number (from 1).
pub fn known_host(file: &Path, hostport: &str) -> io::Result<Option<(usize, String)>> {
    let f = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    for (i, line) in io::BufReader::new(f).lines().enumerate() {
        let line = line?;
        let mut words = line.split_whitespace();
        if let (Some(h), Some(fp)) = (words.next(), words.next())
            && h == hostport
        {
            return Ok(Some((i + 1, fp.to_string())));
        }
    }
    Ok(None)
}

/// Removes every line for `hostport` from the known-hosts file (as
/// `ssh-keygen -R`); returns how many there were.
pub fn forget_host(file: &Path, hostport: &str) -> io::Result<usize> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let (gone, kept): (Vec<&str>, Vec<&str>) = text
        .lines()
        .partition(|l| l.split_whitespace().next() == Some(hostport));
    if !gone.is_empty() {
        // Written beside it and renamed over it: never half a file.
        let tmp = file.with_extension("tmp");
        let mut body = kept.join("\n");
        if !body.is_empty() {
            body.push('\n');
        }
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(body.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, file)?;
    }
    Ok(gone.len())
}

/// A fingerprint as written everywhere: `SHA256:` and lower-case hex. The
/// user may give it with or without the prefix, in either case, with or
/// without colons between the bytes.
pub fn normalize_fingerprint(s: &str) -> String {
    let s = s.trim();
    let hex = match s.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("SHA256:") => &s[7..],
        _ => s,
    };
    let hex: String = hex
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    format!("SHA256:{hex}")
}

/// Appends `hostport fingerprint` to the known-hosts file.
pub fn record_host(file: &Path, hostport: &str, fingerprint: &str) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(file)?;
    writeln!(f, "{hostport} {fingerprint}")
}

/// Accepts any certificate whose handshake signature is valid and records
/// its fingerprint; [`check_trust`] then decides before any data is sent.
#[derive(Debug)]
struct Recorder {
    seen: Mutex<Option<String>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(cert_fingerprint(end_entity));
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn tls_err(e: impl std::fmt::Display) -> ClientError {
    ClientError::Protocol(format!("TLS: {e}"))
}

/// Runs the TLS handshake on `sock` and applies the trust rules. `host` is
/// the name or address the user gave; `hostport` the known-hosts key.
pub fn connect(
    sock: &mut TcpStream,
    host: &str,
    hostport: &str,
    opts: &TlsOptions,
) -> Result<ClientConnection, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?;
    let recorder = Arc::new(Recorder {
        seen: Mutex::new(None),
        provider,
    });
    let config = match &opts.trust {
        Trust::Ca(file) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(file)
                .map_err(|e| ClientError::Usage(format!("CA file {}: {e}", file.display())))?;
            for c in certs {
                let c =
                    c.map_err(|e| ClientError::Usage(format!("CA file {}: {e}", file.display())))?;
                roots
                    .add(c)
                    .map_err(|e| ClientError::Usage(format!("CA file {}: {e}", file.display())))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(recorder.clone())
            .with_no_client_auth(),
    };
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| ClientError::Usage(format!("TLS server name {host:?}: {e}")))?;
    let mut tls = ClientConnection::new(Arc::new(config), name).map_err(tls_err)?;
    // Frames are handed over whole and drained at once; no limit needed.
    tls.set_buffer_limit(None);

    let mut buf = vec![0u8; 32 * 1024];
    let mut first = true;
    while tls.is_handshaking() {
        while tls.wants_write() {
            tls.write_tls(sock)?;
        }
        if !tls.is_handshaking() {
            break;
        }
        let n = match sock.read(&mut buf) {
            Ok(0) => {
                return Err(ClientError::Protocol(format!(
                    "{hostport} closed the connection during the TLS handshake (is it rexecd --tls?)"
                )));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ClientError::Timeout(format!("{hostport} (TLS handshake)")));
            }
            Err(e) => return Err(ClientError::Io(e)),
        };
        if std::mem::take(&mut first) && !(0x14..=0x17).contains(&buf[0]) {
            return Err(plaintext_answer(&buf[..n], hostport));
        }
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            tls.read_tls(&mut rest)?;
            tls.process_new_packets().map_err(|e| {
                ClientError::Protocol(format!("TLS handshake with {hostport} failed: {e}"))
            })?;
        }
    }
    while tls.wants_write() {
        tls.write_tls(sock)?;
    }
    if !matches!(opts.trust, Trust::Ca(_)) {
        let seen = recorder
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let seen = seen.ok_or_else(|| tls_err("the server presented no certificate"))?;
        check_trust(&seen, hostport, opts)?;
    }
    Ok(tls)
}

/// A TLS client got plaintext back: most likely rexecd without --tls, which
/// answers a ClientHello with a plain `Error` frame.
fn plaintext_answer(bytes: &[u8], hostport: &str) -> ClientError {
    let mut dec = FrameDecoder::new();
    dec.feed(bytes);
    match dec.next_message::<ServerMsg>() {
        Ok(Some(ServerMsg::Error(e))) => ClientError::Server(e),
        _ => ClientError::Protocol(format!(
            "{hostport} answered the TLS handshake with plaintext: it does not speak TLS here"
        )),
    }
}

/// Applies the known-hosts or pinned-fingerprint rules to what the server presented.
pub fn check_trust(seen: &str, hostport: &str, opts: &TlsOptions) -> Result<(), ClientError> {
    let file = &opts.known_hosts;
    match &opts.trust {
        Trust::Ca(_) => Ok(()),
        Trust::Fingerprint(want) => {
            if normalize_fingerprint(seen) == normalize_fingerprint(want)
                && file.as_os_str().is_empty()
            {
                // No known-hosts file (the library's pin): nothing to record.
                Ok(())
            } else if normalize_fingerprint(seen) == normalize_fingerprint(want) {
                // Verified: remember the host, as --accept-new does, so that
                // later connections use TLS and this pin by themselves.
                match known_host(file, hostport)? {
                    None => {
                        record_host(file, hostport, seen)?;
                        eprintln!("rexec: added {hostport} ({seen}) to {}", file.display());
                    }
                    Some((line, known)) if !known.eq_ignore_ascii_case(seen) => eprintln!(
                        "rexec: warning: {} line {line} has another fingerprint for {hostport} \
                         ({known}); left as it is (rexec forget {hostport} removes it)",
                        file.display()
                    ),
                    Some(_) => {}
                }
                Ok(())
            } else {
                Err(ClientError::Trust(format!(
                    "the TLS certificate of {hostport} is not the one pinned: expected {want}, got {seen}. \
                     Refusing to connect."
                )))
            }
        }
        Trust::KnownHosts { accept_new } => match known_host(file, hostport)? {
            Some((_, known)) if known.eq_ignore_ascii_case(seen) => Ok(()),
            Some((line, known)) => Err(ClientError::Trust(format!(
                "WARNING: THE TLS CERTIFICATE OF {hostport} HAS CHANGED!\n\
                 Someone could be intercepting this connection, or the server got a new certificate.\n\
                 Expected {known} (known hosts file {}, line {line}),\n\
                 got      {seen}.\n\
                 If the change is legitimate, run `rexec forget {hostport}` (or remove line {line} \
                 of {}) and connect again.",
                file.display(),
                file.display()
            ))),
            None => {
                let accept = *accept_new || ask(hostport, seen)?;
                if !accept {
                    return Err(ClientError::Trust(format!(
                        "{hostport} is not a known host (its TLS fingerprint is {seen}). Check it against \
                         the line rexecd printed at start, then connect with --accept-new or --fingerprint {seen}"
                    )));
                }
                record_host(file, hostport, seen)?;
                eprintln!("rexec: added {hostport} ({seen}) to {}", file.display());
                Ok(())
            }
        },
    }
}

/// Asks on the terminal whether to trust a new host; `false` when there is
/// no terminal to ask on.
fn ask(hostport: &str, fingerprint: &str) -> Result<bool, ClientError> {
    if !(io::stdin().is_terminal() && io::stderr().is_terminal()) {
        return Ok(false);
    }
    eprint!(
        "The authenticity of {hostport} can't be established.\nIts TLS certificate fingerprint is {fingerprint}.\n\
         Trust it and remember it? (yes/no) "
    );
    let mut answer = String::new();
    io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "yes" | "y"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(file: &Path, trust: Trust) -> TlsOptions {
        TlsOptions {
            trust,
            known_hosts: file.to_path_buf(),
        }
    }

    #[test]
    fn known_hosts_record_match_and_mismatch() {
        let dir = std::env::temp_dir().join(format!("rexec-kh-{}", std::process::id()));
        let file = dir.join("known_hosts");
        let _ = std::fs::remove_dir_all(&dir);
        let (a, b) = ("SHA256:aa", "SHA256:bb");
        // Unknown and not interactive: refused unless accept_new.
        let e = check_trust(
            a,
            "h:1",
            &opts(&file, Trust::KnownHosts { accept_new: false }),
        )
        .unwrap_err();
        assert!(e.to_string().contains("--accept-new"), "{e}");
        check_trust(
            a,
            "h:1",
            &opts(&file, Trust::KnownHosts { accept_new: true }),
        )
        .unwrap();
        check_trust(
            b,
            "other:2",
            &opts(&file, Trust::KnownHosts { accept_new: true }),
        )
        .unwrap();
        assert_eq!(known_host(&file, "h:1").unwrap(), Some((1, a.into())));
        assert_eq!(known_host(&file, "other:2").unwrap(), Some((2, b.into())));
        check_trust(
            a,
            "h:1",
            &opts(&file, Trust::KnownHosts { accept_new: false }),
        )
        .unwrap();
        let e = check_trust(
            b,
            "h:1",
            &opts(&file, Trust::KnownHosts { accept_new: true }),
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("HAS CHANGED")
                && msg.contains("line 1")
                && msg.contains(&file.display().to_string()),
            "{msg}"
        );
        // Pinned.
        check_trust(
            a,
            "x:1",
            &opts(&file, Trust::Fingerprint("sha256:AA".into())),
        )
        .unwrap();
        assert!(check_trust(b, "x:1", &opts(&file, Trust::Fingerprint(a.into()))).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fingerprints_compare_with_or_without_prefix_case_and_colons() {
        let canon = "SHA256:ab01";
        for given in [
            "SHA256:ab01",
            "sha256:AB01",
            "ab01",
            "AB:01",
            " SHA256:ab:01 ",
        ] {
            assert_eq!(normalize_fingerprint(given), canon, "{given}");
        }
    }
}
