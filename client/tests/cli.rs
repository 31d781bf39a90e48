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

#[test]
fn completions_for_each_shell_come_from_the_clap_definitions() {
    for (shell, marker) in [
        ("bash", "complete -F _rexec"),
        ("zsh", "#compdef rexec"),
        ("fish", "complete -c rexec"),
    ] {
        let out = rexec().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("accept-new"), "{shell}: options are listed");
    }
}

#[test]
fn man_pages_for_rexec_and_rexecd() {
    let out = rexec().arg("man").output().unwrap();
    assert!(out.status.success());
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH rexec 1"), "{page}");
    assert!(page.contains("fingerprint"), "options are documented");
    let out = rexec().args(["man", "rexecd"]).output().unwrap();
    assert!(out.status.success());
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH rexecd 8"), "{page}");
    assert!(page.contains("max\\-startups"), "{page}");
}

#[test]
fn cp_help_has_a_readable_usage_line() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rexec"))
        .args(["cp", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Usage: rexec cp [OPTIONS] SOURCE... HOST:DEST\n"),
        "{help}"
    );
    assert!(
        !help.contains("<SOURCE... DEST> <SOURCE... DEST>"),
        "{help}"
    );
}

#[test]
fn completions_offer_the_config_files_hosts_and_groups() {
    let dir = std::env::temp_dir().join(format!("rexec-cc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        "[hosts.lab1]\naddress = \"127.0.0.1:1\"\n[hosts.gpu7]\naddress = \"127.0.0.1:2\"\n[groups]\nlab = \"lab[1-2]\"\n",
    )
    .unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = rexec()
            .env_remove("REXEC_CONFIG")
            .args(["completions", shell, "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        for name in ["lab1", "gpu7", "@lab"] {
            assert!(script.contains(name), "{shell}: no {name}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
