//! contrib/systemd's units (issue 44): the keys a lab's admin relies on
//! are there, every flag they give is one rexecd knows, the example
//! settings pass `--check-config`, and the
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

/// Every `--flag` of every `Exec*=` line of a unit.
fn flags(keys: &[(String, String)]) -> Vec<String> {
    keys.iter()
        .filter(|(k, _)| k.starts_with("Exec"))
        .flat_map(|(_, v)| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter(|w| w.starts_with("--"))
        .collect()
}

#[test]
fn the_units_hold_what_a_lab_relies_on() {
    let service = keys(&unit("rexecd.service"));
    let socket = keys(&unit("rexecd.socket"));
    let account = keys(&unit("rexecd@.service"));
    for unit in [&service, &account] {
        assert_eq!(value(unit, "Restart"), "on-failure");
        // rexecd tells systemd when it serves (notify.rs).
        assert_eq!(value(unit, "Type"), "notify");
        // Detached jobs outlive a restart only if systemd stops rexecd alone.
        assert_eq!(value(unit, "KillMode"), "process");
        // A broken file stops a start, as sshd -t in sshd.service.
        assert!(value(unit, "ExecStartPre").ends_with("--check-config"));
        // systemctl reload: check, then SIGHUP.
        let reloads: Vec<&String> = unit
            .iter()
            .filter(|(k, _)| k == "ExecReload")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(reloads.len(), 2, "{reloads:?}");
        assert!(reloads[0].ends_with("--check-config"));
        assert_eq!(reloads[1], "/bin/kill -HUP $MAINPID");
    }
    assert_eq!(value(&service, "StateDirectory"), "rexec");
    assert_eq!(value(&socket, "Accept"), "no");
    assert_eq!(value(&socket, "ListenStream"), "7070");
    // systemd waits longer than the example's grace for running commands.
    let grace: u64 = unit("rexecd.toml")
        .lines()
        .find_map(|l| l.strip_prefix("stop-grace = "))
        .and_then(|v| v.trim().parse().ok())
        .expect("stop-grace in rexecd.toml");
    let timeout: u64 = value(&service, "TimeoutStopSec").parse().unwrap();
    assert!(
        timeout > grace,
        "TimeoutStopSec {timeout} <= stop-grace {grace}"
    );
    // The unit for one account is sandboxed; the --login one cannot be
    // (its commands are whole login sessions).
    assert_eq!(value(&account, "User"), "%i");
    for key in [
        "NoNewPrivileges",
        "ProtectKernelModules",
        "RestrictSUIDSGID",
    ] {
        assert_eq!(value(&account, key), "yes", "{key}");
    }
    assert_eq!(value(&account, "ProtectSystem"), "full");
    assert!(!service.iter().any(|(k, _)| k == "NoNewPrivileges"));
    // Every flag the units give is one rexecd knows.
    let help = String::from_utf8(
        Command::new(bin("rexecd"))
            .arg("--help")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    for flag in flags(&service).into_iter().chain(flags(&account)) {
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
            "rexecd does not know {flag}"
        );
    }
}

#[test]
fn the_example_settings_pass_check_config() {
    if !rexec_tests::account::is_root() {
        eprintln!("skipped: login = true needs root, and this test runs as another user");
        return;
    }
    let dir = TempDir::new("example-settings");
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/systemd/rexecd.toml");
    // Its file's mode, as installed (the checkout's may be group-writable).
    let copy = dir.path("rexecd.toml");
    std::fs::copy(&file, &copy).unwrap();
    let state = dir.path("state");
    // The state directory from the command line: the check makes the
    // TLS identity, which must not land in this machine's /var/lib.
    let out = Command::new(bin("rexecd"))
        .arg("--config")
        .arg(&copy)
        .arg("--state-dir")
        .arg(&state)
        .arg("--check-config")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("login = true  # "), "{said}");
    assert!(said.contains("stop-grace = 30  # "), "{said}");
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
    // A template is verified as one of its instances.
    let account = unit("rexecd@.service").replace(
        "/usr/local/bin/rexecd",
        &bin("rexecd").display().to_string(),
    );
    std::fs::write(dir.path("rexecd@lab.service"), account).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path("rexecd.socket"))
        .arg(dir.path("rexecd.service"))
        .arg(dir.path("rexecd@lab.service"))
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
}
