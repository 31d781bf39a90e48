//! `rexecd --login` (issue 25): each account logs in with the keys in its
//! own `~/.ssh/authorized_keys` and its commands, terminals and copies run
//! as it. Needs root (to make throwaway accounts and to switch to them):
//! each test says it is skipped otherwise. Accounts are made with useradd
//! under names no real account has, and removed (with their homes) when
//! the test ends, even when it fails.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use rexec_tests::account::{Account, Agent, ed25519_key as key};
use rexec_tests::*;

/// rexec offering only `key` (no agent, an empty HOME).
fn rexec_with(key: &Path) -> Command {
    let mut c = rexec();
    c.env_remove("SSH_AUTH_SOCK").arg("-i").arg(key);
    c
}

#[test]
fn an_account_logs_in_with_its_own_key_and_everything_runs_as_it() {
    needs_root!();
    let dir = TempDir::new("login-as");
    let (k, public) = key(&dir, "k");
    let alice = Account::new("/bin/sh");
    alice.authorize(&public);
    let d = Daemon::start(&["--login"]);
    let at = format!("{}@{}", alice.name, d.host());
    let r = run(rexec_with(&k)
        .arg(&at)
        .arg("id -un; id -u; pwd; echo $HOME $USER $LOGNAME $SHELL; env | cut -d= -f1 | sort | tr '\\n' ' '"));
    let home = alice.home.display().to_string();
    let want = format!(
        "{n}\n{u}\n{home}\n{home} {n} {n} /bin/sh\n",
        n = alice.name,
        u = alice.uid
    );
    assert!(r.out().starts_with(&want), "{}\n{}", r.out(), r.stderr);
    // A clean environment: nothing of rexecd's own (RUST_LOG, cargo's).
    let names = r.out().lines().last().unwrap_or_default().to_string();
    assert!(
        !names.contains("RUST_LOG") && !names.contains("CARGO"),
        "{names}"
    );
    let fp = ssh_key::PublicKey::from_openssh(public.trim())
        .unwrap()
        .fingerprint(Default::default())
        .to_string();
    assert!(
        d.wait_log(&format!("({} by key {fp}) ran", alice.name), PATIENCE),
        "{}",
        d.log()
    );
    // Its supplementary groups too, as the user database has them.
    let groups = |c: &mut Command| String::from_utf8(c.output().unwrap().stdout).unwrap();
    let want = groups(Command::new("id").arg("-G").arg(&alice.name));
    let r = run(rexec_with(&k).arg(&at).arg("id -G"));
    assert_eq!(r.out(), want, "{}", r.stderr);
    // A copy lands as the account's file, in its home.
    let src = dir.path("up.txt");
    std::fs::write(&src, "up\n").unwrap();
    let r = run(rexec_with(&k)
        .arg("cp")
        .arg(&src)
        .arg(format!("{at}:up.txt")));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let meta = std::fs::metadata(alice.home.join("up.txt")).unwrap();
    assert_eq!(meta.uid(), alice.uid);
    // A terminal is the account's too.
    let r = run(rexec_with(&k).arg("-tt").arg(&at).arg("stat -c %U $(tty)"));
    assert_eq!(r.out().trim(), alice.name, "{}", r.stderr);
}

#[test]
fn a_key_in_the_agent_is_all_it_takes() {
    needs_root!();
    // The yardstick: `rexec alice@lab1 id` with the key in the
    // agent and nothing else set up on the client.
    let dir = TempDir::new("login-agent");
    let (k, public) = key(&dir, "k");
    let alice = Account::new("/bin/sh");
    alice.authorize(&public);
    let agent = Agent::start(&dir);
    agent.add(&k);
    std::fs::remove_file(&k).unwrap();
    let d = Daemon::start(&["--login"]);
    let r = run(rexec()
        .env("SSH_AUTH_SOCK", &agent.sock)
        .arg(format!("{}@{}", alice.name, d.host()))
        .arg("id"));
    assert!(
        r.out()
            .starts_with(&format!("uid={}({})", alice.uid, alice.name)),
        "{}\n{}",
        r.out(),
        r.stderr
    );
}

#[test]
fn unknown_accounts_wrong_keys_and_root_get_the_same_answer() {
    needs_root!();
    let dir = TempDir::new("login-same");
    let (k, public) = key(&dir, "k");
    let (other, _) = key(&dir, "other");
    let bob = Account::new("/bin/sh");
    bob.authorize(&public);
    let d = Daemon::start(&["--login"]);
    let answer = |key: &Path, user: &str| {
        let r = run(rexec_with(key)
            .arg(format!("{user}@{}", d.host()))
            .arg("true"));
        assert_eq!(r.code, Some(255), "{user}: {}", r.stderr);
        r.stderr
            .replace(user, "USER")
            .replace(&key.display().to_string(), "KEY")
    };
    let wrong_key = answer(&other, &bob.name);
    let no_account = answer(&k, "rxt-none");
    let root = answer(&k, "root");
    assert!(
        wrong_key.contains("Permission denied (publickey)"),
        "{wrong_key}"
    );
    assert_eq!(wrong_key, no_account);
    assert_eq!(wrong_key, root);
    // The reasons are in the log, for the administrator.
    for why in [
        "the key is not in",
        "rxt-none: no such user",
        "root may not log in",
    ] {
        assert!(d.wait_log(why, PATIENCE), "{why}: {}", d.log());
    }
}

#[test]
fn loose_modes_refuse_the_file_and_a_nologin_account_runs_nothing() {
    needs_root!();
    let dir = TempDir::new("login-strict");
    let (k, public) = key(&dir, "k");
    let carol = Account::new("/bin/sh");
    carol.authorize(&public);
    let d = Daemon::start(&["--login"]);
    let at = format!("{}@{}", carol.name, d.host());
    let ssh = carol.home.join(".ssh");
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o770)).unwrap();
    let r = run(rexec_with(&k).arg(&at).arg("true"));
    assert_eq!(r.code, Some(255), "{}", r.stderr);
    assert!(d.wait_log("bad modes for", PATIENCE), "{}", d.log());
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o700)).unwrap();
    let r = run(rexec_with(&k).arg(&at).arg("echo in"));
    assert_eq!(r.out(), "in\n", "{}", r.stderr);
    // With nologin as its shell, the account runs nothing, and is told.
    let ok = Command::new("usermod")
        .args(["-s", "/usr/sbin/nologin", &carol.name])
        .status()
        .unwrap();
    assert!(ok.success());
    let r = run(rexec_with(&k).arg(&at).arg("echo in"));
    assert_ne!(r.code, Some(0));
    assert_eq!(r.out(), "");
    assert!(
        r.stderr
            .contains("may not run commands here (its shell is /usr/sbin/nologin)"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_token_with_login_would_be_root_and_is_refused_at_start() {
    needs_root!();
    let dir = TempDir::new("login-token");
    let token = dir.path("token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new(bin("rexecd"))
        .args(["--listen", "127.0.0.1:0", "--login", "--token-file"])
        .arg(&token)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--permit-root-login"), "{err}");
}

#[test]
fn each_account_sees_and_controls_only_its_own_jobs() {
    needs_root!();
    let dir = TempDir::new("login-jobs");
    let (ka, pa) = key(&dir, "a");
    let (kb, pb) = key(&dir, "b");
    let alice = Account::new("/bin/sh");
    alice.authorize(&pa);
    let bob = Account::new("/bin/sh");
    bob.authorize(&pb);
    let token = dir.path("token");
    std::fs::write(&token, "a token for root\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let state = dir.path("state").display().to_string();
    let tf = token.display().to_string();
    let d = Daemon::start(&[
        "--login",
        "--permit-root-login",
        "--token-file",
        &tf,
        "--state-dir",
        &state,
    ]);
    let who = |k: &Path, user: &str, args: &[&str]| {
        let mut c = rexec_with(k);
        let at = format!("{user}@{}", d.host());
        c.args(args.iter().map(|a| if *a == "@" { at.as_str() } else { a }));
        run(&mut c)
    };
    let r = who(
        &ka,
        &alice.name,
        &["-d", "@", "echo from alice; exec sleep 60"],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let id = r.out().trim().to_string();
    // The record is Alice's, and hers alone.
    let record = dir.path("state").join("jobs").join(&id);
    assert_eq!(std::fs::metadata(&record).unwrap().uid(), alice.uid);
    let r = who(&ka, &alice.name, &["jobs", "@"]);
    assert!(r.out().contains("echo from alice"), "{}", r.out());
    // Bob sees nothing of it, and can do nothing to it.
    let r = who(&kb, &bob.name, &["jobs", "@"]);
    assert_eq!(r.out(), "no jobs\n", "{}", r.stderr);
    for verb in ["attach", "kill"] {
        let r = who(&kb, &bob.name, &[verb, "@", &id]);
        assert_eq!(r.code, Some(2), "{verb}: {}", r.stderr);
        assert!(r.stderr.contains(&format!("no job {id}")), "{}", r.stderr);
    }
    // Root (here by the token) sees every account's.
    let r = run(rexec()
        .arg("--token-file")
        .arg(&token)
        .args(["jobs", &d.host()]));
    assert!(
        r.out().contains("echo from alice"),
        "{}\n{}",
        r.out(),
        r.stderr
    );
    let r = who(&ka, &alice.name, &["kill", "@", &id]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
}

/// An account whose `~/.ssh/authorized_keys` is a FIFO (or whose home
/// hangs) must not stall anyone else's login: the FIFO is refused as not a
/// regular file, without waiting for a writer. Before, the login thread
/// waited in open() for good, and every later login of every account
/// failed with "no hello within 10 s".
#[test]
fn logins_stuck_on_a_fifo_delay_no_other_account() {
    needs_root!();
    let dir = TempDir::new("login-fifo");
    let (k, public) = key(&dir, "k");
    let mallory = Account::new("/bin/sh");
    mallory.authorize(&public);
    let file = mallory.home.join(".ssh/authorized_keys");
    std::fs::remove_file(&file).unwrap();
    let ok = Command::new("mkfifo")
        .arg("-m600")
        .arg(&file)
        .status()
        .unwrap();
    assert!(ok.success());
    std::os::unix::fs::chown(&file, Some(mallory.uid), Some(mallory.uid)).unwrap();
    let alice = Account::new("/bin/sh");
    alice.authorize(&public);
    let d = Daemon::start(&["--login"]);
    for _ in 0..3 {
        let r = run(rexec_with(&k)
            .arg(format!("{}@{}", mallory.name, d.host()))
            .arg("true"));
        assert_eq!(r.code, Some(255));
        assert!(
            r.stderr.contains("Permission denied (publickey)"),
            "{}",
            r.stderr
        );
    }
    assert!(
        d.wait_log("not a regular file (a FIFO)", PATIENCE),
        "{}",
        d.log()
    );
    let r = run(rexec_with(&k)
        .arg(format!("{}@{}", alice.name, d.host()))
        .arg("echo in"));
    assert_eq!(r.out(), "in\n", "{}", r.stderr);
}

/// The time to refuse a key tells nothing of why: an unknown account, an
/// existing one with another key, and root are all answered no sooner
/// than the floor (50 ms), where they took 0.28 and 0.38 ms before.
#[test]
fn refusals_for_unknown_and_existing_accounts_take_the_same_time() {
    needs_root!();
    use rexec_proto::ServerMsg;
    let dir = TempDir::new("login-timing");
    let (k, _) = key(&dir, "k");
    let (other, public) = key(&dir, "other");
    let bob = Account::new("/bin/sh");
    bob.authorize(&public);
    let d = Daemon::start(&["--login"]);
    let k = ssh_key::PrivateKey::read_openssh_file(&k).unwrap();
    let other = ssh_key::PrivateKey::read_openssh_file(&other).unwrap();
    for user in ["rxt-none", bob.name.as_str(), "root"] {
        let (answer, took) = rexec_tests::wire::offer_key(d.addr, &k, &k, user);
        assert_eq!(answer, ServerMsg::KeyRefused { tries_left: 5 }, "{user}");
        assert!(
            took >= std::time::Duration::from_millis(50),
            "{user}: refused after {took:?}"
        );
    }
    let (answer, _) = rexec_tests::wire::offer_key(d.addr, &other, &other, &bob.name);
    assert_eq!(answer, ServerMsg::KeyAccepted);
}

/// A login's environment is the account's, as sshd's: the client may set
/// only LANG, LC_*, TZ, TERM and what --allow-env names (AcceptEnv), never
/// LD_PRELOAD and the like.
#[test]
fn a_login_takes_from_the_client_only_the_variables_allow_env_names() {
    needs_root!();
    let dir = TempDir::new("login-env");
    let (k, public) = key(&dir, "k");
    let alice = Account::new("/bin/sh");
    alice.authorize(&public);
    let d = Daemon::start(&["--login", "--allow-env", "MY_*"]);
    let at = format!("{}@{}", alice.name, d.host());
    let r = run(rexec_with(&k)
        .args(["--env", "LANG=C.UTF-8", "--env", "MY_SETTING=1"])
        .arg(&at)
        .arg("echo $LANG $MY_SETTING"));
    assert_eq!(r.out(), "C.UTF-8 1\n", "{}", r.stderr);
    for var in ["LD_PRELOAD=/tmp/x.so", "BASH_ENV=/tmp/x", "OTHER=1"] {
        let r = run(rexec_with(&k).args(["--env", var]).arg(&at).arg("echo ran"));
        assert_ne!(r.code, Some(0), "{var}");
        assert_eq!(r.out(), "", "{var}");
        assert!(
            r.stderr.contains("may not be set on this server"),
            "{}",
            r.stderr
        );
    }
}

/// The README's lab setup with a --state-dir that rexecd makes itself
/// (with its TLS identity in it): accounts' detached jobs work (the
/// directory was made 0700, and every account's `rexec -d` failed with
/// "Permission denied"). A --state-dir the accounts cannot reach keeps
/// rexecd from starting, saying why.
#[test]
fn login_jobs_work_in_a_state_dir_rexecd_made_and_an_unreachable_one_is_refused() {
    needs_root!();
    let dir = TempDir::new("login-state");
    let (k, public) = key(&dir, "k");
    let alice = Account::new("/bin/sh");
    alice.authorize(&public);
    let state = dir.path("state").display().to_string();
    let d = Daemon::start(&["--login", "--tls", "--state-dir", &state]);
    let fp = d.fingerprint.clone().expect("fingerprint");
    let at = format!("{}@{}", alice.name, d.host());
    let r = run(rexec_with(&k).args(["--fingerprint", &fp, "-d", &at, "echo from a job"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let id = r.out().trim().to_string();
    let r = run(rexec_with(&k).args(["--fingerprint", &fp, "attach", &at, &id]));
    assert_eq!(r.out(), "from a job\n", "{}", r.stderr);
    // A state directory inside one only root may pass through.
    let locked = dir.path("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = Command::new(bin("rexecd"))
        .args(["--listen", "127.0.0.1:0", "--login", "--state-dir"])
        .arg(locked.join("state"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mode 700: other accounts cannot pass through it")
            && err.contains("chmod o+x"),
        "{err}"
    );
}
