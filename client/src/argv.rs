//! Global options before a subcommand: `rexec --token-file T cp a H:b`.
//!
//! clap reads a subcommand only as the first word, and with options before
//! it the word `cp` became the host to run on, and was looked up in DNS.
//! Here the subcommand's name is moved to the front before clap parses, so
//! options work before or after it (as the Ansible plugin writes them), and
//! a subcommand's name is never taken for a host. Which options take a
//! value is read from the clap definitions, not written down twice.

use std::ffi::OsString;

use clap::CommandFactory;

use crate::cli::Cli;

/// `args` (with the program name first) with the subcommand, if one is the
/// first word that is neither an option nor an option's value, moved to
/// just after the program name.
pub fn subcommand_first(mut args: Vec<OsString>) -> Vec<OsString> {
    let cmd = Cli::command();
    let takes_value = |long: Option<&str>, short: Option<char>| {
        cmd.get_arguments().any(|a| {
            a.get_action().takes_values()
                && !a.is_positional()
                && ((long.is_some() && a.get_long() == long)
                    || (short.is_some() && a.get_short() == short))
        })
    };
    let is_sub = |w: &str| {
        cmd.get_subcommands()
            .any(|s| s.get_name() == w || s.get_all_aliases().any(|a| a == w))
    };
    let mut i = 1;
    while i < args.len() {
        let Some(word) = args[i].to_str() else {
            return args; // not UTF-8: no option or subcommand of ours
        };
        if word == "--" || !word.starts_with('-') || word == "-" {
            if word != "--" && is_sub(word) && i > 1 {
                let sub = args.remove(i);
                args.insert(1, sub);
            }
            return args;
        }
        if let Some(long) = word.strip_prefix("--") {
            let needs_next = !long.contains('=') && takes_value(Some(long), None);
            i += if needs_next { 2 } else { 1 };
            continue;
        }
        // A cluster of short options: one that takes a value ends it,
        // with the value attached (-f8) or in the next word (-f 8).
        let shorts: Vec<char> = word[1..].chars().collect();
        let mut skip = 1;
        for (k, c) in shorts.iter().enumerate() {
            if takes_value(None, Some(*c)) {
                if k + 1 == shorts.len() {
                    skip = 2;
                }
                break;
            }
        }
        i += skip;
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(words: &str) -> String {
        let args = std::iter::once("rexec")
            .chain(words.split(' '))
            .map(OsString::from)
            .collect();
        subcommand_first(args)
            .iter()
            .skip(1)
            .map(|w| w.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn the_subcommand_comes_first() {
        assert_eq!(order("--token-file T cp a H:b"), "cp --token-file T a H:b");
        assert_eq!(
            order("--tls --fingerprint SHA256:x --connect-timeout=3 cp -p a H:b"),
            "cp --tls --fingerprint SHA256:x --connect-timeout=3 -p a H:b"
        );
        assert_eq!(order("-f8 -w @lab cp a b"), "cp -f8 -w @lab a b");
        assert_eq!(order("cp --token-file T a H:b"), "cp --token-file T a H:b");
    }

    #[test]
    fn hosts_and_commands_stay_where_they_are() {
        // The host is the first positional word; a `cp` after it is the
        // remote command.
        assert_eq!(order("--tls lab1 cp a b"), "--tls lab1 cp a b");
        // An option's value that happens to be a subcommand's name.
        assert_eq!(order("--cwd cp lab1 ls"), "--cwd cp lab1 ls");
        assert_eq!(order("-- cp"), "-- cp");
        assert_eq!(order("-tt lab1"), "-tt lab1");
    }
}
