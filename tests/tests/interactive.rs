//! The interactive prompt on a real (pseudo-)terminal: line editing via
//! rustyline, output, the exit status shown, Ctrl-C stopping the running
//! command without leaving, history saved, `exit` leaving.

use rexec_tests::onpty::OnPty;
use rexec_tests::*;

/// The line prompt (`--prompt`) on a pty, with its own history directory.
fn prompt(host: &str, data: &std::path::Path) -> OnPty {
    let mut cmd = std::process::Command::new(bin("rexec"));
    // The line prompt: with no command on a terminal rexec now opens a
    // login shell on a pty instead (issue 13); --prompt keeps this one.
    cmd.arg("--prompt")
        .arg(host)
        .env("XDG_DATA_HOME", data)
        .env("TERM", "dumb");
    OnPty::start(cmd)
}

fn data_dir(tag: &str) -> std::path::PathBuf {
    let data = std::env::temp_dir().join(format!("rexec-pty-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    data
}

#[test]
fn prompt_runs_commands_shows_status_cancels_and_keeps_history() {
    let d = Daemon::start(&[]);
    let data = data_dir("main");
    let mut t = prompt(&d.host(), &data);
    let prompt = format!("rexec {}> ", d.host());
    assert!(t.shows(&prompt, 1), "no prompt: {:?}", t.screen());
    assert!(t.shows("runs in a new shell", 1), "{:?}", t.screen());
    t.type_("echo hello-pty\r");
    assert!(t.shows("hello-pty\r\n", 1), "{:?}", t.screen());
    t.type_("sh -c 'exit 3'\r");
    assert!(t.shows("[exit 3]", 1), "{:?}", t.screen());
    // A last line without a newline is marked and ended, not overwritten.
    t.type_("printf abc\r");
    assert!(t.shows("abc\x1b[7m%\x1b[0m\r\n", 1), "{:?}", t.screen());
    // Ctrl-C while a command runs stops it, and the prompt comes back.
    assert!(t.shows(&prompt, 4));
    t.type_("sleep 30\r");
    assert!(wait_until(PATIENCE, || runs_below(d.pid(), "sleep 30")));
    t.type_("\x03");
    assert!(
        t.shows("stopping the remote command", 1),
        "{:?}",
        t.screen()
    );
    assert!(t.shows("[exit 143]", 1), "{:?}", t.screen());
    assert!(t.shows(&prompt, 5), "{:?}", t.screen());
    t.type_("exit\r");
    assert!(t.exits().is_some(), "did not leave on exit");
    let history = std::fs::read_to_string(data.join("rexec/history")).unwrap_or_default();
    assert!(
        history.contains("echo hello-pty") && history.contains("sleep 30"),
        "{history:?}"
    );
    std::fs::remove_dir_all(&data).unwrap();
}

#[test]
fn history_is_kept_when_ctrl_c_twice_quits() {
    let d = Daemon::start(&[]);
    let data = data_dir("ctrlc");
    let mut t = prompt(&d.host(), &data);
    let prompt = format!("rexec {}> ", d.host());
    assert!(t.shows(&prompt, 1), "no prompt: {:?}", t.screen());
    t.type_("echo kept-1\r");
    assert!(t.shows("kept-1\r\n", 1), "{:?}", t.screen());
    t.type_("sleep 30\r");
    assert!(wait_until(PATIENCE, || runs_below(d.pid(), "sleep 30")));
    t.type_("\x03");
    assert!(
        t.shows("stopping the remote command", 1),
        "{:?}",
        t.screen()
    );
    t.type_("\x03");
    assert_eq!(t.exits(), Some(130), "{:?}", t.screen());
    let history = std::fs::read_to_string(data.join("rexec/history")).unwrap_or_default();
    assert!(
        history.contains("echo kept-1") && history.contains("sleep 30"),
        "{history:?}"
    );
    std::fs::remove_dir_all(&data).unwrap();
}
