//! rexecd's command line. (Being an integration test of this package also
//! makes `cargo test --workspace` build the `rexecd` binary that the
//! loopback tests in `tests/` start.)

use std::process::Command;

fn rexecd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rexecd"))
}

#[test]
fn help_explains_every_flag() {
    let out = rexecd().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--protocol",
        "--timeout",
        "--max-output",
        "--max-conns",
        "--max-procs",
        "--idle-timeout",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    assert!(help.contains("127.0.0.1:7070"), "default address shown");
}

#[test]
fn bad_flags_and_busy_ports_are_clear_errors() {
    let out = rexecd().args(["--max-output", "12Q"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown size suffix"));

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = rexecd().args(["--listen", &addr]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot listen on") && err.contains(&addr),
        "{err}"
    );
}
