//! rexec's command line without a server. (Being an integration test of this
//! package also makes `cargo test --workspace` build the `rexec` binary that
//! the loopback tests in `tests/` start.)

use std::process::{Command, Stdio};

fn rexec() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rexec"));
    c.stdin(Stdio::null());
    c
}

#[test]
fn help_explains_both_quoting_rules_and_exit_codes() {
    let out = rexec().arg("--help").output().unwrap();
    assert!(out.status.success());
    let h = String::from_utf8_lossy(&out.stdout);
    assert!(h.contains("rexec lab1 'ls /var/log | wc -l'"), "{h}");
    assert!(h.contains("rexec lab1 -- ls -l \"my file\""), "{h}");
    assert!(h.contains("124") && h.contains("255"), "{h}");
}

#[test]
fn missing_host_and_bad_host_are_usage_errors() {
    let out = rexec().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing HOST"));
    let out = rexec().args(["lab1:99999", "true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid port"));
}
