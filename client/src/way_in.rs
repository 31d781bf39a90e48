//! Which way in to take when the server asks for a login: the token, or
//! keys. A pure decision, from what the server said it takes (protocol 7's
//! `AuthMethods`; an older server says nothing) and what the user gave.

use rexec_proto::KEY_AUTH_PROTOCOL;
use rexec_proto::auth::Token;

/// The ways in a server takes: token, keys (protocol 7 and later).
pub type Methods = Option<(bool, bool)>;

/// What the user gave to log in with.
#[derive(Debug, Clone, Copy, Default)]
pub struct Given<'a> {
    pub token: Option<&'a Token>,
    /// The token came from the config file, not the command line or
    /// `REXEC_TOKEN`.
    pub token_from_config: bool,
    /// An account was named (`user@host`, `-l`, `user =`).
    pub account_named: bool,
}

/// What to answer the server's challenge with.
#[derive(Debug, PartialEq, Eq)]
pub enum WayIn<'a> {
    Token(&'a Token),
    Keys,
    /// The server takes only a token, and there is none.
    NeedsToken,
}

/// The way in for a server that takes `methods`, speaking `protocol`.
///
/// - A server that takes one way gets that one: a token found in the
///   config file's `[defaults]` no longer keeps keys from being tried on a
///   `--login` server (it answered "this server does not accept tokens").
/// - A server that takes both gets the token when the user gave it on the
///   command line or in `REXEC_TOKEN`, or named no account; keys when an
///   account was named (a token runs commands as rexecd's own account,
///   never as the one named) and the token came from the config file.
/// - An older server, which does not say: the token if there is one, else
///   keys (protocol 5 and later).
pub fn way_in(methods: Methods, given: Given<'_>, protocol: u16) -> WayIn<'_> {
    match (methods, given.token) {
        (None, Some(t)) => WayIn::Token(t),
        (None, None) if protocol >= KEY_AUTH_PROTOCOL => WayIn::Keys,
        (None, None) => WayIn::NeedsToken,
        (Some((true, false)), Some(t)) => WayIn::Token(t),
        (Some((true, false)), None) => WayIn::NeedsToken,
        (Some((_, true)), None) => WayIn::Keys,
        (Some((true, true)), Some(t)) if !given.token_from_config || !given.account_named => {
            WayIn::Token(t)
        }
        (Some((_, true)), Some(_)) => WayIn::Keys,
        // A server that takes neither (it lies: then it asked nothing).
        (Some((false, false)), _) => WayIn::NeedsToken,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static TOKEN: std::sync::LazyLock<Token> =
        std::sync::LazyLock::new(|| Token::new("t").unwrap());

    fn opts(token: bool, from_config: bool, user: bool) -> Given<'static> {
        Given {
            token: token.then(|| &*TOKEN),
            token_from_config: from_config,
            account_named: user,
        }
    }

    fn way(methods: Methods, o: &Given<'_>) -> &'static str {
        match way_in(methods, *o, 7) {
            WayIn::Token(_) => "token",
            WayIn::Keys => "keys",
            WayIn::NeedsToken => "needs a token",
        }
    }

    #[test]
    fn the_way_the_server_takes_and_the_user_meant() {
        let keys_only = Some((false, true));
        let token_only = Some((true, false));
        let both = Some((true, true));
        // [defaults] token_file, alice@host, a --login server: keys.
        assert_eq!(way(keys_only, &opts(true, true, true)), "keys");
        assert_eq!(way(keys_only, &opts(true, false, false)), "keys");
        assert_eq!(way(token_only, &opts(true, true, true)), "token");
        assert_eq!(way(token_only, &opts(false, false, true)), "needs a token");
        // Both: the token given on the command line, or no account named.
        assert_eq!(way(both, &opts(true, false, true)), "token");
        assert_eq!(way(both, &opts(true, true, false)), "token");
        assert_eq!(way(both, &opts(true, true, true)), "keys");
        assert_eq!(way(both, &opts(false, false, false)), "keys");
        // An older server says nothing.
        assert_eq!(way(None, &opts(true, true, true)), "token");
        assert_eq!(way(None, &opts(false, false, true)), "keys");
        assert!(matches!(
            way_in(None, opts(false, false, false), 4),
            WayIn::NeedsToken
        ));
    }
}
