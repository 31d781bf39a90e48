//! Who may come in, and as whom: keys and their `authorized_keys` files
//! and options, `--login`'s checks on threads of their own, the account a
//! connection's commands run as, and what an authenticated connection may
//! do. (The token's answer is `rexec_proto::auth`; the order of the
//! handshake is protocol.rs; the router's part, keys.rs in server/.)

pub(crate) mod authorized;
pub(crate) mod grant;
pub(crate) mod key_options;
pub(crate) mod login;
pub(crate) mod run_as;
