//! The keys the client proves who it is with (protocol 5), found as ssh
//! finds them: first those in `ssh-agent` (`$SSH_AUTH_SOCK`), then the
//! files given with `-i`, then `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`.
//! Key files, agents and signatures are RustCrypto's `ssh-key` and
//! `ssh-agent-client-rs`; nothing here parses a key or does crypto.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ssh_agent_client_rs::Client as Agent;
use ssh_key::{PrivateKey, PublicKey, Signature};

/// The default key files, in the order ssh tries them.
const DEFAULT_KEYS: [&str; 3] = ["id_ed25519", "id_ecdsa", "id_rsa"];

/// One key to offer.
pub enum Identity {
    /// Held by the agent, which signs.
    Agent(PublicKey),
    /// Read from a file; an encrypted one asks for its passphrase when it
    /// is its turn (not before: an agent key may be taken first).
    File(PathBuf, Box<PrivateKey>),
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Identity {
    /// The public key, SSH wire encoding.
    pub fn public_bytes(&self) -> Vec<u8> {
        let key = match self {
            Identity::Agent(k) => k,
            Identity::File(_, k) => k.public_key(),
        };
        key.to_bytes().unwrap_or_default()
    }

    /// Where it comes from, for messages.
    pub fn describe(&self) -> String {
        match self {
            Identity::Agent(k) => format!("agent key {}", k.fingerprint(Default::default())),
            Identity::File(p, _) => shown(p),
        }
    }

    /// Signs `data` (through the agent for its keys).
    pub fn sign(&self, agent: Option<&mut Agent>, data: &[u8]) -> Result<Signature, String> {
        match self {
            Identity::File(path, k) if k.is_encrypted() => {
                let key = decrypt(path, k)?;
                signature::Signer::try_sign(&key, data).map_err(|e| e.to_string())
            }
            Identity::File(_, k) => {
                signature::Signer::try_sign(k.as_ref(), data).map_err(|e| e.to_string())
            }
            Identity::Agent(k) => agent
                .ok_or_else(|| "the agent went away".to_string())?
                .sign(k, data)
                .map_err(|e| format!("ssh-agent: {e}")),
        }
    }
}

/// The keys found, the agent (when it answered), and notes on files that
/// were left out (encrypted, loose permissions) for the error message.
#[derive(Debug, Default)]
pub struct Found {
    pub keys: Vec<Identity>,
    pub agent: Option<AgentConn>,
    pub notes: Vec<String>,
}

/// The connection to ssh-agent.
pub struct AgentConn(pub Agent);

impl std::fmt::Debug for AgentConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentConn")
    }
}

/// Finds the keys to offer: the agent's, then `files` (from `-i`), then the
/// default files that exist.
pub fn find(files: &[PathBuf]) -> Found {
    let mut found = Found::default();
    if let Some(sock) = std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()) {
        match Agent::connect(Path::new(&sock)) {
            Ok(mut agent) => {
                #[allow(deprecated)] // plain keys only; certificates are not offered
                match agent.list_identities() {
                    Ok(keys) => found.keys.extend(keys.into_iter().map(Identity::Agent)),
                    Err(e) => found.notes.push(format!("ssh-agent: {e}")),
                }
                found.agent = Some(AgentConn(agent));
            }
            Err(e) => found
                .notes
                .push(format!("ssh-agent at $SSH_AUTH_SOCK: {e}")),
        }
    }
    let home = dirs::home_dir().unwrap_or_default();
    let defaults = DEFAULT_KEYS.iter().map(|n| home.join(".ssh").join(n));
    let given = files.iter().cloned().map(|f| (f, true));
    for (path, asked) in given.chain(defaults.map(|f| (f, false))) {
        if !asked && !path.exists() {
            continue;
        }
        match read_key(&path) {
            Ok(key) => {
                let dup = found
                    .keys
                    .iter()
                    .any(|k| k.public_bytes() == key.public_key().to_bytes().unwrap_or_default());
                if !dup {
                    found.keys.push(Identity::File(path, Box::new(key)));
                }
            }
            // A key file named with -i that cannot be used is said at once,
            // as ssh warns, not only when every key was refused.
            Err(e) if asked => {
                eprintln!("rexec: warning: {e}; it is not offered");
                found.notes.push(e);
            }
            Err(e) => found.notes.push(e),
        }
    }
    found
}

/// Reads a private key file, refusing one others may read (as ssh does).
fn read_key(path: &Path) -> Result<PrivateKey, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", shown(path)))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} can be read by others (mode {mode:03o}), so it is not used; run: chmod 600 {}",
            shown(path),
            shown(path)
        ));
    }
    PrivateKey::read_openssh_file(path).map_err(|e| format!("{}: {e}", shown(path)))
}

/// Asks for an encrypted key's passphrase on the terminal (echo off), up to
/// three times, as ssh does; without a terminal, says to use the agent.
fn decrypt(path: &Path, key: &PrivateKey) -> Result<PrivateKey, String> {
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|_| {
            format!(
                "{} is encrypted, and there is no terminal to ask its passphrase on: add it to \
                 ssh-agent (ssh-add {})",
                shown(path),
                shown(path)
            )
        })?;
    for _ in 0..3 {
        let pass = read_hidden(
            &mut tty,
            &format!("Enter passphrase for key '{}': ", shown(path)),
        )
        .map_err(|e| format!("{}: reading the passphrase: {e}", shown(path)))?;
        if pass.is_empty() {
            break; // as ssh: an empty answer skips the key
        }
        match key.decrypt(pass.as_bytes()) {
            Ok(k) => return Ok(k),
            Err(_) => {
                let _ = std::io::Write::write_all(&mut tty, b"Bad passphrase, try again.\n");
            }
        }
    }
    Err(format!("{}: no right passphrase given", shown(path)))
}

/// Prints `prompt` on the terminal and reads a line with echo off.
fn read_hidden(
    tty: &mut std::fs::File,
    prompt: &str,
) -> std::io::Result<zeroize::Zeroizing<String>> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    use std::io::{BufRead, Write};
    tty.write_all(prompt.as_bytes())?;
    tty.flush()?;
    let saved = tcgetattr(&*tty)?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&*tty, OptionalActions::Now, &quiet)?;
    let mut line = zeroize::Zeroizing::new(String::new());
    let read = std::io::BufReader::new(&*tty).read_line(&mut line);
    let _ = tcsetattr(&*tty, OptionalActions::Now, &saved);
    let _ = tty.write_all(b"\n");
    read?;
    while line.ends_with(['\n', '\r']) {
        line.pop();
    }
    Ok(line)
}

/// A path as the user would write it: `~/.ssh/id_ed25519`.
fn shown(p: &Path) -> String {
    match dirs::home_dir().and_then(|h| p.strip_prefix(h).ok().map(Path::to_path_buf)) {
        Some(rest) => format!("~/{}", rest.display()),
        None => p.display().to_string(),
    }
}

/// The local user's name: what `user@` defaults to, as with ssh.
pub fn local_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "unknown".into())
}
