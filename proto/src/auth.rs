//! Token authentication: what the answer to the server's challenge is.
//!
//! The server sends a fresh random nonce in its hello. The client answers
//! with `HMAC-SHA256(token, "rexec-auth-v1" ‖ 0 ‖ binding ‖ nonce)`, where
//! `binding` ties the answer to the channel: inside TLS the session's
//! exporter value ([`TLS_EXPORTER_LABEL`]), on plain TCP the server's
//! address as the client reached it ([`address_binding`], protocol 7). The
//! token never crosses the wire, and since every connection has its own
//! nonce, a recorded answer is useless on any other connection. The server
//! checks in constant time.
//!
//! Why the address: a server the client connects to (a compromised lab
//! machine, or anyone's process on another address) could otherwise pass
//! the real server's challenge to the client and the client's answer back,
//! and be let in there as the user. With the address in the signed bytes
//! the answer names the relay, and the real server, whose own address it is
//! not, refuses it. The price: over plain TCP a login only works where the
//! client reaches the server's own address (not through NAT or a port
//! forward); TLS has no such limit, since its exporter names the session.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes in a challenge nonce.
pub const NONCE_LEN: usize = 32;

/// Bytes in an answer.
pub const ANSWER_LEN: usize = 32;

/// The environment variable that may hold the token (server and client).
pub const TOKEN_ENV: &str = "REXEC_TOKEN";

const CONTEXT: &[u8] = b"rexec-auth-v1\0";

/// The TLS exporter label (RFC 5705 / 8446 §7.5) whose 32-byte output is the
/// channel binding of an authentication over TLS: an answer computed inside
/// one TLS session is worthless in any other, so it cannot be relayed.
pub const TLS_EXPORTER_LABEL: &[u8] = b"EXPORTER-rexec-auth-v1";

/// The channel binding of a login over plain TCP (protocol 7): the text
/// `tcp:` and the server's socket address as the client connected to it
/// and the server accepted on (`tcp:127.0.0.1:7070`, `tcp:[::1]:7070`).
/// An IPv4 address a dual-stack socket shows as `::ffff:a.b.c.d` is
/// written as IPv4, and an IPv6 scope is left out, so both ends write the
/// same bytes.
pub fn address_binding(addr: SocketAddr) -> Vec<u8> {
    let ip = addr.ip().to_canonical();
    format!("tcp:{}", SocketAddr::new(ip, addr.port())).into_bytes()
}

/// A certificate's identity as rexec shows and pins it: `SHA256:` and the
/// lowercase hex SHA-256 of its DER encoding.
pub fn cert_fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    let digest = Sha256::digest(der);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("SHA256:{hex}")
}

/// A shared secret. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Vec<u8>);

/// Why a token could not be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is empty")]
    Empty,
    #[error("token file {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "token file {} can be read by others (mode {mode:03o}); run: chmod 600 {}",
        path.display(),
        path.display()
    )]
    Readable { path: PathBuf, mode: u32 },
    #[error("token file {} is not UTF-8 text", .0.display())]
    NotText(PathBuf),
    #[error("token file {}: the token is empty", .0.display())]
    EmptyFile(PathBuf),
    #[error("{TOKEN_ENV}: the token is empty")]
    EmptyEnv,
    #[error("{TOKEN_ENV} is not UTF-8")]
    EnvNotUnicode,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// A token from its text; surrounding white space (a trailing newline
    /// from `echo`) is not part of it.
    pub fn new(text: &str) -> Result<Token, TokenError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(TokenError::Empty);
        }
        Ok(Token(t.as_bytes().to_vec()))
    }

    /// Reads a token file, refusing one that group or others may read.
    pub fn from_file(path: &Path) -> Result<Token, TokenError> {
        use std::os::unix::fs::PermissionsExt;
        let read = |source| TokenError::Read {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(TokenError::Readable {
                path: path.to_path_buf(),
                mode,
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData => TokenError::NotText(path.to_path_buf()),
            _ => read(e),
        })?;
        Token::new(&text).map_err(|_| TokenError::EmptyFile(path.to_path_buf()))
    }

    /// The token from `--token-file` if given, else from `REXEC_TOKEN`, else none.
    pub fn load(file: Option<&Path>) -> Result<Option<Token>, TokenError> {
        if let Some(f) = file {
            return Token::from_file(f).map(Some);
        }
        match std::env::var(TOKEN_ENV) {
            Ok(v) => Token::new(&v).map(Some).map_err(|_| TokenError::EmptyEnv),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(TokenError::EnvNotUnicode),
        }
    }

    fn mac(&self, binding: &[u8], nonce: &[u8]) -> Hmac<Sha256> {
        // HMAC takes keys of any length; this cannot fail.
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC accepts any key length");
        mac.update(CONTEXT);
        mac.update(&(binding.len() as u32).to_be_bytes());
        mac.update(binding);
        mac.update(nonce);
        mac
    }

    /// The client's answer to `nonce`.
    pub fn answer(&self, binding: &[u8], nonce: &[u8]) -> [u8; ANSWER_LEN] {
        self.mac(binding, nonce).finalize().into_bytes().into()
    }

    /// Whether `answer` is right, compared in constant time.
    pub fn verify(&self, binding: &[u8], nonce: &[u8], answer: &[u8]) -> bool {
        self.mac(binding, nonce).verify_slice(answer).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_verify_only_for_the_same_token_nonce_and_binding() {
        let t = Token::new("s3cret\n").unwrap();
        let nonce = [7u8; NONCE_LEN];
        let a = t.answer(b"", &nonce);
        assert!(t.verify(b"", &nonce, &a));
        assert!(
            !t.verify(b"", &[8u8; NONCE_LEN], &a),
            "another connection's nonce"
        );
        assert!(!t.verify(b"tls", &nonce, &a), "another channel");
        assert!(!Token::new("other").unwrap().verify(b"", &nonce, &a));
        assert!(!t.verify(b"", &nonce, &a[..31]));
        assert_eq!(
            t,
            Token::new("  s3cret ").unwrap(),
            "white space is trimmed"
        );
        assert!(Token::new(" \n").is_err());
        assert_eq!(format!("{t:?}"), "Token(..)");
    }

    /// A known answer, so the client and server of other versions (or other
    /// languages) can check theirs: HMAC-SHA256 over the documented input.
    #[test]
    fn known_answer() {
        let t = Token::new("token").unwrap();
        let hex: String = t
            .answer(b"", &[0u8; NONCE_LEN])
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        // python3 -c "import hmac,hashlib; print(hmac.new(b'token', b'rexec-auth-v1\0' + b'\0'*4 + b'\0'*32, hashlib.sha256).hexdigest())"
        assert_eq!(hex, KNOWN);
    }
    const KNOWN: &str = "416ae5df66714ea3592cd293c3a4422b3eaef0420ed38c412d1b24cc93e017bd";

    #[test]
    fn the_address_binding_is_the_same_text_from_both_ends() {
        let v4: SocketAddr = "127.0.0.2:7070".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.2]:7070".parse().unwrap();
        let scoped: SocketAddr = "[fe80::1%2]:22".parse().unwrap();
        assert_eq!(address_binding(v4), b"tcp:127.0.0.2:7070");
        assert_eq!(address_binding(mapped), b"tcp:127.0.0.2:7070");
        assert_eq!(address_binding(scoped), b"tcp:[fe80::1]:22");
        assert_ne!(
            address_binding(v4),
            address_binding("127.0.0.1:7070".parse().unwrap())
        );
        assert_ne!(
            address_binding(v4),
            address_binding("127.0.0.2:7071".parse().unwrap())
        );
    }

    #[test]
    fn fingerprints_are_sha256_hex() {
        // sha256 of the empty string
        assert_eq!(
            cert_fingerprint(b""),
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn token_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("rexec-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("token");
        std::fs::write(&f, "abc\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Token::from_file(&f).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Token::from_file(&f).unwrap(), Token::new("abc").unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
