//! OpenSSH `authorized_keys` files: which public keys may come in, and
//! with what restrictions (their options, `key_options.rs`).
//!
//! `rexecd --authorized-keys FILE` reads one file at start for the account
//! rexecd runs commands as; `rexecd --login` reads the named account's
//! `~/.ssh/authorized_keys` on each attempt (login.rs). Keys are parsed by
//! RustCrypto's `ssh-key`. The line is split here: ssh-key 0.6's own
//! `AuthorizedKeys` cuts a line at any `#` (`command="echo #1"`), splits
//! the options at the first space even inside quotes (`command="a b"`),
//! and cannot read options before a key that has no comment.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use ssh_key::PublicKey;

use crate::auth::key_options::KeyOptions;
use crate::error::ConfigError;

/// Largest authorized_keys file read (sshd has no limit; rexecd keeps
/// every read bounded: a user's own file is theirs to fill).
pub const MAX_FILE: u64 = 1 << 20;

/// One usable line: a key and its options.
#[derive(Debug, Clone)]
pub struct KeyLine {
    pub key: PublicKey,
    pub options: KeyOptions,
}

/// The keys allowed in, and the account they run as.
#[derive(Debug)]
pub struct AuthorizedKeys {
    lines: Vec<KeyLine>,
    /// The account commands run as: a name the client gives explicitly
    /// must be this one.
    pub account: String,
    pub source: PathBuf,
}

impl AuthorizedKeys {
    /// Reads `path`. Like sshd's StrictModes, a file that others may write
    /// is refused.
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
        if meta.len() > MAX_FILE {
            return Err(bad(format!("larger than {MAX_FILE} bytes")));
        }
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        Ok(AuthorizedKeys {
            lines: parse(&text, &path.display().to_string()),
            account,
            source: path.to_path_buf(),
        })
    }

    /// The line that lists `key` (the key itself; its comment does not
    /// matter), if any.
    pub fn find(&self, key: &PublicKey) -> Option<&KeyLine> {
        find(&self.lines, key)
    }

    /// How many keys are allowed in.
    pub fn len(&self) -> usize {
        self.lines.len()
    }
}

/// The first of `lines` that lists `key`.
pub fn find<'a>(lines: &'a [KeyLine], key: &PublicKey) -> Option<&'a KeyLine> {
    lines.iter().find(|l| l.key.key_data() == key.key_data())
}

/// The usable lines of an authorized_keys text. A line that cannot be
/// read, or whose options rexecd does not know, is left out and logged
/// (`source`, line number, why) instead of keeping everyone else out, as
/// sshd does; a key is never let in with less than its line asks.
pub fn parse(text: &str, source: &str) -> Vec<KeyLine> {
    let mut lines = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Ok(l) => lines.push(l),
            Err(why) => log::warn!("{source} line {}: {why}; the key is left out", i + 1),
        }
    }
    lines
}

/// One line: a key (`type base64 [comment]`), or options, blanks, a key.
fn parse_line(line: &str) -> Result<KeyLine, String> {
    if let Ok(key) = PublicKey::from_openssh(line) {
        return Ok(KeyLine {
            key,
            options: KeyOptions::default(),
        });
    }
    let (opts, rest) = split_options(line)?;
    let key = PublicKey::from_openssh(rest.trim_start())
        .map_err(|e| format!("not a public key ({e})"))?;
    let options =
        KeyOptions::parse(opts).map_err(|why| format!("{why} (key {})", fingerprint(&key)))?;
    Ok(KeyLine { key, options })
}

/// Splits a line at the first blank outside double quotes: the options,
/// then the rest. Inside quotes, `\"` is a quote (as sshd reads them).
fn split_options(line: &str) -> Result<(&str, &str), String> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ' ' | '\t' if !quoted => return Ok((&line[..i], &line[i..])),
            _ => {}
        }
    }
    Err(if quoted {
        "unbalanced quote in the options".into()
    } else {
        "not a public key".into()
    })
}

/// A key's fingerprint as `ssh-keygen -lf` prints it: `SHA256:` and
/// unpadded base64.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(ssh_key::HashAlg::Sha256).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssh_key::PrivateKey;
    use ssh_key::private::{Ed25519Keypair, KeypairData};

    fn key(seed: u8) -> String {
        PrivateKey::new(
            KeypairData::Ed25519(Ed25519Keypair::from_seed(&[seed; 32])),
            "",
        )
        .unwrap()
        .public_key()
        .to_openssh()
        .unwrap()
    }

    #[test]
    fn lines_with_and_without_options_and_comments_are_read() {
        let text = format!(
            "# a comment\n\n{k1} alice@laptop #1\n\
             no-pty,command=\"echo 'a, b' \\\"#2\\\"\" {k2}\n\
             restrict,pty   {k3} with spaces in its comment\n",
            k1 = key(1),
            k2 = key(2),
            k3 = key(3),
        );
        let lines = parse(&text, "test");
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].options, KeyOptions::default());
        assert_eq!(
            lines[1].options.command.as_deref(),
            Some("echo 'a, b' \"#2\"")
        );
        assert!(lines[1].options.no_pty);
        assert!(!lines[2].options.no_pty, "pty after restrict allows one");
        let restricted = parse(&format!("restrict {}", key(4)), "test");
        assert!(restricted[0].options.no_pty);
    }

    #[test]
    fn unreadable_lines_and_unknown_options_leave_only_that_key_out() {
        let text = format!(
            "ssh-ed25519 AAAAnot-base64\n\
             tunnel=\"1\" {k1}\n\
             command=\"unbalanced {k2}\n\
             environment=\"LD_PRELOAD=/x\" {k2}\n\
             {k3}\n",
            k1 = key(1),
            k2 = key(2),
            k3 = key(3),
        );
        let lines = parse(&text, "test");
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].key.to_openssh().unwrap(), key(3));
    }
}
