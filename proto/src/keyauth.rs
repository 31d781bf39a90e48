//! Public-key authentication (protocol 5): what a key signs, and checking
//! it. The key files, the signature formats and the algorithms are
//! OpenSSH's, handled by RustCrypto's `ssh-key`; this module only says
//! which bytes are signed.
//!
//! The server's hello carries a fresh challenge. The client signs
//!
//! ```text
//! "rexec-auth-key-v1" 00
//! ‖ explicit (1 byte: 1 when the user named the account, else 0)
//! ‖ len(user) u32 big-endian ‖ user
//! ‖ len(binding) u32 big-endian ‖ binding
//! ‖ challenge
//! ```
//!
//! with its key, as an SSH signature (`ssh-ed25519`, `ecdsa-sha2-nistp*`,
//! `rsa-sha2-256` or `rsa-sha2-512`; never SHA-1). `binding` is the TLS
//! exporter value (see [`crate::auth::TLS_EXPORTER_LABEL`]) inside TLS and
//! the server's address ([`crate::auth::address_binding`]) on plain TCP,
//! so a signature is worthless on any other connection, in any other TLS
//! session and at any other server (a relay); the account name is signed
//! too, so it cannot be changed on the way.

use ssh_key::{PublicKey, Signature};

/// The context every signed message starts with (then a NUL).
pub const KEY_CONTEXT: &[u8] = b"rexec-auth-key-v1";

/// The bytes a key signs to authenticate as `user` on the connection with
/// this `binding` and `challenge`.
pub fn signed_data(user: &str, explicit: bool, binding: &[u8], challenge: &[u8]) -> Vec<u8> {
    let mut d =
        Vec::with_capacity(KEY_CONTEXT.len() + 10 + user.len() + binding.len() + challenge.len());
    d.extend_from_slice(KEY_CONTEXT);
    d.push(0);
    d.push(u8::from(explicit));
    for part in [user.as_bytes(), binding] {
        d.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        d.extend_from_slice(part);
    }
    d.extend_from_slice(challenge);
    d
}

/// Why a key's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyAuthError {
    #[error("not an SSH public key: {0}")]
    PublicKey(String),
    #[error("not an SSH signature: {0}")]
    Signature(String),
    #[error("a {0} signature is not accepted (SHA-1 or an unknown algorithm)")]
    Algorithm(String),
    #[error("the signature does not verify")]
    Invalid,
}

/// Parses a public key in SSH wire encoding (as in `authorized_keys`,
/// base64-decoded).
pub fn public_key(bytes: &[u8]) -> Result<PublicKey, KeyAuthError> {
    PublicKey::from_bytes(bytes).map_err(|e| KeyAuthError::PublicKey(e.to_string()))
}

/// Checks that `signature` (SSH wire encoding) is `key`'s over `data`.
pub fn verify(key: &PublicKey, data: &[u8], signature: &[u8]) -> Result<(), KeyAuthError> {
    let sig = Signature::try_from(signature).map_err(|e| KeyAuthError::Signature(e.to_string()))?;
    if matches!(sig.algorithm(), ssh_key::Algorithm::Rsa { hash: None }) {
        return Err(KeyAuthError::Algorithm(sig.algorithm().to_string()));
    }
    signature::Verifier::verify(key.key_data(), data, &sig).map_err(|_| KeyAuthError::Invalid)
}

/// A signature in SSH wire encoding, as `AuthKey` carries it.
pub fn encode_signature(sig: Signature) -> Vec<u8> {
    Vec::<u8>::try_from(sig).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use signature::Signer;
    use ssh_key::PrivateKey;
    use ssh_key::private::{Ed25519Keypair, KeypairData};

    /// The key of the worked example in docs/PROTOCOL.md: the Ed25519 key
    /// whose seed is 32 bytes of 0x01.
    fn example_key() -> PrivateKey {
        let kp = Ed25519Keypair::from_seed(&[1u8; 32]);
        PrivateKey::new(KeypairData::Ed25519(kp), "").unwrap()
    }

    #[test]
    fn signed_data_is_the_documented_bytes() {
        let d = signed_data("alice", true, b"", &[0u8; 4]);
        let mut want = b"rexec-auth-key-v1\0\x01".to_vec();
        want.extend_from_slice(&[0, 0, 0, 5]);
        want.extend_from_slice(b"alice");
        want.extend_from_slice(&[0, 0, 0, 0]);
        want.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(d, want);
    }

    #[test]
    fn a_signature_verifies_only_for_its_own_data_and_key() {
        let key = example_key();
        let data = signed_data("alice", false, b"tls", &[9u8; 32]);
        let sig = encode_signature(key.try_sign(&data).unwrap());
        let public = public_key(&key.public_key().to_bytes().unwrap()).unwrap();
        assert_eq!(verify(&public, &data, &sig), Ok(()));
        // Another account, another channel, another challenge: refused.
        for other in [
            signed_data("bob", false, b"tls", &[9u8; 32]),
            signed_data("alice", true, b"tls", &[9u8; 32]),
            signed_data("alice", false, b"other", &[9u8; 32]),
            signed_data("alice", false, b"tls", &[8u8; 32]),
        ] {
            assert_eq!(verify(&public, &other, &sig), Err(KeyAuthError::Invalid));
        }
        let stranger = PrivateKey::new(
            KeypairData::Ed25519(Ed25519Keypair::from_seed(&[2u8; 32])),
            "",
        )
        .unwrap();
        let theirs = public_key(&stranger.public_key().to_bytes().unwrap()).unwrap();
        assert_eq!(verify(&theirs, &data, &sig), Err(KeyAuthError::Invalid));
        assert!(verify(&public, &data, b"junk").is_err());
    }
}
