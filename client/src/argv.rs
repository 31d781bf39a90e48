//! The command line before clap reads it: two things clap cannot express.
//!
//! - Global options before a subcommand: `rexec --token-file T cp a H:b`.
//!   clap reads a subcommand only as the first word, and with options
//!   before it the word `cp` became the host to run on, and was looked up
//!   in DNS. Here the subcommand's name is moved to the front, so options
//!   work before or after it (as the Ansible plugin writes them), and a
//!   subcommand's name is never taken for a host.
//! - With `-w`, every word from the first positional one on is command,
//!   as with clush and pdsh: `rexec -w @lab wc -l` runs `wc -l`. clap took
//!   the first word for the host and read `-l` as rexec's own `--user`
//!   (the command only begins at the second positional word); a `--` is
//!   put before the first positional word instead.
//!
//! Which options take a value is read from the clap definitions, not
//! written down twice.

use std::ffi::OsString;

use clap::CommandFactory;

use crate::cli::Cli;

/// `args` (with the program name first) as clap should read them: a
/// subcommand moved to just after the program name, or with `-w` a `--`
/// before the command's first word.
pub fn normalize(mut args: Vec<OsString>) -> Vec<OsString> {
    let cmd = Cli::command();
    let is_sub = |w: &str| {
        cmd.get_subcommands()
            .any(|s| s.get_name() == w || s.get_all_aliases().any(|a| a == w))
    };
    let Some(scan) = scan(&args, &cmd) else {
        return args;
    };
    let word = args[scan.first].to_str().unwrap_or("");
    if is_sub(word) {
        if scan.first > 1 {
            let sub = args.remove(scan.first);
            args.insert(1, sub);
        }
    } else if scan.hosts {
        args.insert(scan.first, "--".into());
    }
    args
}

/// What the options before the first positional word say.
struct Scan {
    /// The index of the first positional word.
    first: usize,
    /// `-w`/`--hosts` came before it.
    hosts: bool,
}

/// Finds the first word that is neither an option nor an option's value;
/// `None` when there is none, or a `--` or a word that is not UTF-8 comes
/// first (nothing to move).
fn scan(args: &[OsString], cmd: &clap::Command) -> Option<Scan> {
    let takes_value = |long: Option<&str>, short: Option<char>| {
        cmd.get_arguments().any(|a| {
            a.get_action().takes_values()
                && !a.is_positional()
                && ((long.is_some() && a.get_long() == long)
                    || (short.is_some() && a.get_short() == short))
        })
    };
    let mut hosts = false;
    let mut i = 1;
    while i < args.len() {
        let word = args[i].to_str()?;
        if word == "--" {
            return None;
        }
        if !word.starts_with('-') || word == "-" {
            return Some(Scan { first: i, hosts });
        }
        if let Some(long) = word.strip_prefix("--") {
            let name = long.split_once('=').map_or(long, |(n, _)| n);
            hosts |= name == "hosts";
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
                hosts |= *c == 'w';
                if k + 1 == shorts.len() {
                    skip = 2;
                }
                break;
            }
        }
        i += skip;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(words: &str) -> String {
        let args = std::iter::once("rexec")
            .chain(words.split(' '))
            .map(OsString::from)
            .collect();
        normalize(args)
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

    #[test]
    fn with_hosts_every_word_from_the_first_is_command() {
        assert_eq!(order("-w @lab wc -l"), "-w @lab -- wc -l");
        assert_eq!(
            order("--hosts=@lab head -n 1 f"),
            "--hosts=@lab -- head -n 1 f"
        );
        assert_eq!(order("-n -w@lab grep -n x"), "-n -w@lab -- grep -n x");
        assert_eq!(order("-w a -w b ls -l -i"), "-w a -w b -- ls -l -i");
        assert_eq!(order("-bw @lab uptime"), "-bw @lab -- uptime");
        // Already separated, or a subcommand: as they are.
        assert_eq!(order("-w @lab -- wc -l"), "-w @lab -- wc -l");
        assert_eq!(order("-w @lab cp a b"), "cp -w @lab a b");
        assert_eq!(order("-w @lab jobs"), "jobs -w @lab");
        // Without -w the host comes first, and clap starts the command at
        // the second word.
        assert_eq!(order("lab1 wc -l"), "lab1 wc -l");
    }
}
