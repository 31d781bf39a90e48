//! contrib/systemd's units (issue 44): the keys a lab's admin relies on
//! are there, every flag ExecStart gives is one rexecd knows, and the
//! units verify clean with `systemd-analyze` (ExecStart pointed at the
//! binary just built, which verify insists exists): that one is ignored
//! by plain `cargo test`, and CI, which installs the tool, runs it.

use std::path::Path;
use std::process::Command;

use rexec_tests::*;

fn unit(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../contrib/systemd")
        .join(name);
    std::fs::read_to_string(path).expect("the unit file")
}

/// `Key=value` lines of a unit (comments and sections left out).
fn keys(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn value(keys: &[(String, String)], key: &str) -> String {
    keys.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no {key}= in the unit"))
}

#[test]
fn the_units_hold_what_a_lab_relies_on() {
    let service = keys(&unit("rexecd.service"));
    let socket = keys(&unit("rexecd.socket"));
    assert_eq!(value(&service, "Restart"), "on-failure");
    // Detached jobs outlive a restart only if systemd stops rexecd alone.
    assert_eq!(value(&service, "KillMode"), "process");
    assert_eq!(value(&service, "StateDirectory"), "rexec");
    assert!(value(&service, "ExecStart").contains("--state-dir /var/lib/rexec"));
    assert_eq!(value(&socket, "Accept"), "no");
    assert_eq!(value(&socket, "ListenStream"), "7070");
    // Every flag ExecStart gives is one rexecd knows.
    let help = String::from_utf8(
        Command::new(bin("rexecd"))
            .arg("--help")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    for flag in value(&service, "ExecStart")
        .split_whitespace()
        .filter(|w| w.starts_with("--"))
    {
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
            "rexecd does not know {flag}"
        );
    }
}

#[test]
#[ignore = "needs systemd-analyze (apt-get install systemd); CI installs it and runs this with --ignored"]
fn the_units_verify_with_systemd_analyze() {
    let version = Command::new("systemd-analyze").arg("--version").output();
    assert!(
        version.is_ok_and(|v| v.status.success()),
        "systemd-analyze is not installed (apt-get install systemd)"
    );
    let dir = TempDir::new("systemd-units");
    let service = unit("rexecd.service").replace(
        "/usr/local/bin/rexecd",
        &bin("rexecd").display().to_string(),
    );
    std::fs::write(dir.path("rexecd.service"), service).unwrap();
    std::fs::write(dir.path("rexecd.socket"), unit("rexecd.socket")).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path("rexecd.socket"))
        .arg(dir.path("rexecd.service"))
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
}
