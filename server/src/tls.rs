//! The server's TLS identity: a certificate and key from files, or a
//! self-signed pair generated on first start and kept (mode 0600) in the
//! state directory, so the fingerprint clients pin stays the same across
//! restarts.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

use crate::error::TlsError;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rexec_proto::auth::cert_fingerprint;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A ready TLS configuration and the fingerprint clients should pin.
#[derive(Debug, Clone)]
pub struct TlsSetup {
    /// rustls's settings for every connection.
    pub config: Arc<ServerConfig>,
    /// `SHA256:...` of the certificate clients see.
    pub fingerprint: String,
    /// Where the certificate came from, for the log.
    pub source: String,
}

/// The default state directory: `$XDG_STATE_HOME/rexec`, or
/// `~/.local/state/rexec`.
pub fn default_state_dir() -> Option<PathBuf> {
    Some(dirs::state_dir()?.join("rexec"))
}

/// Loads `cert` and `key` (PEM); the key must be readable by its owner
/// only.
pub fn from_files(cert: &Path, key: &Path) -> Result<TlsSetup, TlsError> {
    let bad_cert = |why: String| TlsError::Certificate {
        path: cert.to_path_buf(),
        why,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad_cert(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad_cert(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad_cert("no CERTIFICATE in it".into()));
    }
    // As sshd refuses an unprotected host key: a key others can read is
    // a server anyone on the machine can impersonate.
    let mode = std::fs::metadata(key)
        .map_err(|source| TlsError::File {
            path: key.to_path_buf(),
            source,
        })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(TlsError::KeyReadable {
            path: key.to_path_buf(),
            mode: mode & 0o777,
        });
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_path_buf(),
        why: e.to_string(),
    })?;
    build(certs, key_der, format!("{}", cert.display())).map_err(|e| match e {
        TlsError::Pair(rustls::Error::InconsistentKeys(_)) => TlsError::Mismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        },
        other => other,
    })
}

/// Loads the self-signed pair from `dir`, generating it on first use.
pub fn self_signed(dir: &Path) -> Result<TlsSetup, TlsError> {
    let cert = dir.join("tls-cert.pem");
    let key = dir.join("tls-key.pem");
    if !cert.exists() || !key.exists() {
        generate(dir, &cert, &key)?;
    }
    from_files(&cert, &key)
}

fn generate(dir: &Path, cert: &Path, key: &Path) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::StateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    // Others may pass through (not list): with --login their job helpers
    // reach STATE/jobs; the key itself is 0600.
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711));
    let names = vec!["localhost".to_string(), "rexecd".to_string()];
    let pair = rcgen::generate_simple_self_signed(names)?;
    let write = |path: &Path, text: &str| -> Result<(), TlsError> {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|source| TlsError::File {
                path: path.to_path_buf(),
                source,
            })
    };
    write(key, &pair.signing_key.serialize_pem())?;
    write(cert, &pair.cert.pem())?;
    log::info!(
        "generated a self-signed TLS certificate in {}",
        dir.display()
    );
    Ok(())
}

fn build(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    source: String,
) -> Result<TlsSetup, TlsError> {
    let fingerprint = cert_fingerprint(&certs[0]);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(TlsError::Pair)?;
    Ok(TlsSetup {
        config: Arc::new(config),
        fingerprint,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_identity_is_kept_across_restarts() {
        let dir = std::env::temp_dir().join(format!("rexec-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = self_signed(&dir).expect("generate");
        let again = self_signed(&dir).expect("load");
        assert_eq!(first.fingerprint, again.fingerprint);
        assert!(first.fingerprint.starts_with("SHA256:") && first.fingerprint.len() == 7 + 64);
        for f in ["tls-cert.pem", "tls-key.pem"] {
            let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
        std::fs::set_permissions(
            dir.join("tls-key.pem"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert!(
            self_signed(&dir)
                .unwrap_err()
                .to_string()
                .contains("chmod 600")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
