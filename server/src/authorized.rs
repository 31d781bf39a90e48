//! `rexecd --authorized-keys FILE`: the public keys that may run commands
//! as rexecd's account, in OpenSSH's `authorized_keys` format (parsed by
//! RustCrypto's `ssh-key`). The file is read once, at start.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use ssh_key::PublicKey;

use crate::error::ConfigError;

/// The keys allowed in, and the account they run as.
#[derive(Debug)]
pub struct AuthorizedKeys {
    keys: Vec<PublicKey>,
    /// The account commands run as: a name the client gives explicitly
    /// must be this one.
    pub account: String,
    pub source: PathBuf,
}

impl AuthorizedKeys {
    /// Reads `path`. Like sshd's StrictModes, a file that others may write
    /// is refused. A key with options (`from=`, `command=`, ...) is left
    /// out with a warning: rexecd does not honour options yet, and a key
    /// is never let in with less than its line asks.
    pub fn load(path: &Path, account: String) -> Result<AuthorizedKeys, ConfigError> {
        let bad = |why: String| ConfigError::AuthorizedKeys {
            path: path.to_path_buf(),
            why,
        };
        let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
        if meta.mode() & 0o022 != 0 {
            return Err(bad(format!(
                "group or others may write it (mode {:03o}); run: chmod go-w {}",
                meta.mode() & 0o777,
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let mut keys = Vec::new();
        // Line by line: a line the parser cannot read is left out and said,
        // as sshd does, instead of keeping everyone else out.
        for (i, entry) in ssh_key::AuthorizedKeys::new(&text).enumerate() {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    log::warn!("{} key {}: {e}; left out", path.display(), i + 1);
                    continue;
                }
            };
            let opts: Vec<&str> = entry.config_opts().iter().collect();
            if !opts.is_empty() {
                log::warn!(
                    "{} key {} ({}): options {} are not supported yet; the key is refused",
                    path.display(),
                    i + 1,
                    fingerprint(entry.public_key()),
                    opts.join(",")
                );
                continue;
            }
            keys.push(entry.public_key().clone());
        }
        Ok(AuthorizedKeys {
            keys,
            account,
            source: path.to_path_buf(),
        })
    }

    /// Whether `key` is one of them (the key itself; its comment does not
    /// matter).
    pub fn contains(&self, key: &PublicKey) -> bool {
        self.keys.iter().any(|k| k.key_data() == key.key_data())
    }

    /// How many keys are allowed in.
    pub fn len(&self) -> usize {
        self.keys.len()
    }
}

/// A key's fingerprint as `ssh-keygen -lf` prints it: `SHA256:` and
/// unpadded base64.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(ssh_key::HashAlg::Sha256).to_string()
}
