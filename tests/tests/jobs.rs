//! Detached jobs (issue 26): `rexec -d`, `jobs`, `attach`, `kill`, through
//! dropped clients and rexecd restarts. Every test gives rexecd a state
//! directory of its own, and ends every job it starts (or starts only jobs
//! that end by themselves).

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use rexec_tests::*;

/// A state directory and a rexecd using it.
struct Lab {
    dir: TempDir,
    daemon: Option<Daemon>,
    extra: Vec<String>,
}

impl Lab {
    fn new(tag: &str, extra: &[&str]) -> Lab {
        let dir = TempDir::new(tag);
        let mut lab = Lab {
            dir,
            daemon: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        lab.restart();
        lab
    }

    fn state(&self) -> PathBuf {
        self.dir.path("state")
    }

    /// Stops rexecd (SIGTERM, as a dropped Daemon is) and starts another
    /// with the same state directory.
    fn restart(&mut self) {
        self.daemon = None;
        let state = self.state().display().to_string();
        let mut args = vec!["--state-dir", &state];
        args.extend(self.extra.iter().map(String::as_str));
        self.daemon = Some(Daemon::start(&args));
    }

    fn host(&self) -> String {
        self.daemon.as_ref().expect("rexecd").host()
    }

    /// `rexec ARGS...` against this lab's rexecd (HOST goes where `@`
    /// is).
    fn rexec(&self, args: &[&str]) -> Command {
        let mut c = rexec();
        let host = self.host();
        c.args(
            args.iter()
                .map(|a| if *a == "@" { host.as_str() } else { a }),
        );
        c
    }

    /// Starts `command` as a job; its id.
    fn detach(&self, command: &str) -> u64 {
        let r = run(&mut self.rexec(&["-d", "@", command]));
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        r.out()
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("an id: {:?}", r.out()))
    }

    /// The job's line of `rexec jobs --json`.
    fn job(&self, id: u64) -> serde_json::Value {
        let r = run(&mut self.rexec(&["jobs", "--json", "@"]));
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        r.out()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON"))
            .find(|j| j["id"] == id)
            .unwrap_or_else(|| panic!("no job {id} in {}", r.out()))
    }

    fn wait_state(&self, id: u64, state: &str) -> serde_json::Value {
        let mut last = serde_json::Value::Null;
        let ok = wait_until(PATIENCE, || {
            last = self.job(id);
            last["state"] == state
        });
        assert!(ok, "job {id} never {state}: {last}");
        last
    }

    /// A file whose existence lets a job go on (see `GATED`).
    fn gate(&self) -> PathBuf {
        self.dir.path("gate")
    }

    /// The job's supervisor, from its record.
    fn supervisor(&self, id: u64) -> i32 {
        let meta = std::fs::read(self.state().join(format!("jobs/{id}/meta.json"))).unwrap();
        let meta: serde_json::Value = serde_json::from_slice(&meta).unwrap();
        meta["pid"].as_i64().expect("pid") as i32
    }
}

/// A job that prints `first`, waits for the gate file, prints `second` on
/// stderr, and exits 4.
fn gated(gate: &Path) -> String {
    format!(
        "echo first; while [ ! -e {g} ]; do sleep 0.02; done; echo second >&2; exit 4",
        g = gate.display()
    )
}

/// A client running in the background, its output gathered as it comes.
struct Background {
    child: Child,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
}

impl Background {
    fn start(mut cmd: Command) -> Background {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("rexec");
        let gather = |mut from: Box<dyn Read + Send>| {
            let text = Arc::new(Mutex::new(String::new()));
            let sink = text.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = from.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
            text
        };
        let out = gather(Box::new(child.stdout.take().unwrap()));
        let err = gather(Box::new(child.stderr.take().unwrap()));
        Background { child, out, err }
    }

    fn shows(&self, text: &str) -> bool {
        wait_until(PATIENCE, || self.out.lock().unwrap().contains(text))
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the PID of a child this test started.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    fn wait(mut self) -> (Option<i32>, String, String) {
        let status = self.child.wait().unwrap();
        // The readers finish when the pipes close.
        let done = wait_until(PATIENCE, || std::sync::Arc::strong_count(&self.out) == 1);
        assert!(done || status.code().is_none());
        let out = self.out.lock().unwrap().clone();
        let err = self.err.lock().unwrap().clone();
        (status.code(), out, err)
    }
}

#[test]
fn a_detached_job_is_listed_and_attached_to_with_its_exit_status() {
    let lab = Lab::new("jobs-basic", &[]);
    let id = lab.detach("echo out; echo err >&2; exit 3");
    let j = lab.wait_state(id, "exited");
    assert_eq!(j["exit_code"], 3);
    assert_eq!(j["output_bytes"], 8);
    assert_eq!(j["command"], "echo out; echo err >&2; exit 3");
    let r = run(&mut lab.rexec(&["attach", "@", &id.to_string()]));
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    assert_eq!(r.out(), "out\n");
    assert_eq!(r.stderr, "err\n", "stdout and stderr stay apart");
    let r = run(&mut lab.rexec(&["jobs", "@"]));
    let line = r
        .out()
        .lines()
        .find(|l| l.starts_with(&id.to_string()))
        .unwrap_or_default()
        .to_string();
    assert!(
        line.contains("exited 3") && line.contains("echo out"),
        "{}",
        r.out()
    );
    // Its record: readable by its owner alone.
    let dir = lab.state().join(format!("jobs/{id}"));
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for f in ["meta.json", "status.json", "out.0"] {
        let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    // A job that is not there, said plainly; clean removes finished ones.
    let r = run(&mut lab.rexec(&["attach", "@", "999"]));
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("no job 999"), "{}", r.stderr);
    let r = run(&mut lab.rexec(&["jobs", "--clean", "@"]));
    assert!(r.out().contains("removed 1"), "{}", r.out());
    assert!(!dir.exists());
}

#[test]
fn attach_follows_a_running_job_and_ctrl_c_leaves_it_running() {
    let lab = Lab::new("jobs-follow", &[]);
    let id = lab.detach(&gated(&lab.gate()));
    let first = Background::start(lab.rexec(&["attach", "@", &id.to_string()]));
    assert!(first.shows("first\n"), "live output");
    // Ctrl-C: no longer following; the job runs on.
    first.signal(libc::SIGINT);
    let (code, _, err) = first.wait();
    assert_eq!(code, Some(130));
    assert!(
        err.contains(&format!("no longer following job {id}; it runs on")),
        "{err}"
    );
    assert_eq!(lab.job(id)["state"], "running");
    // A client killed outright changes nothing either.
    let second = Background::start(lab.rexec(&["attach", "@", &id.to_string()]));
    assert!(second.shows("first\n"));
    second.signal(libc::SIGKILL);
    second.wait();
    let third = Background::start(lab.rexec(&["attach", "@", &id.to_string()]));
    assert!(third.shows("first\n"));
    std::fs::write(lab.gate(), "").unwrap();
    let (code, out, err) = third.wait();
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (Some(4), "first\n", "second\n")
    );
}

#[test]
fn jobs_outlive_rexecd_and_are_found_by_the_next_one() {
    let mut lab = Lab::new("jobs-restart", &[]);
    let id = lab.detach(&gated(&lab.gate()));
    assert_eq!(lab.wait_state(id, "running")["output_bytes"], 6);
    // SIGTERM to rexecd, which stops its commands: not its jobs.
    lab.restart();
    assert_eq!(lab.job(id)["state"], "running");
    std::fs::write(lab.gate(), "").unwrap();
    let r = run(&mut lab.rexec(&["attach", "@", &id.to_string()]));
    assert_eq!(r.code, Some(4), "{}", r.stderr);
    assert_eq!(
        (r.out().as_str(), r.stderr.as_str()),
        ("first\n", "second\n")
    );
    // A crash of rexecd (SIGKILL) neither: what was spooled is read back.
    std::fs::remove_file(lab.gate()).unwrap();
    let id = lab.detach(&gated(&lab.gate()));
    lab.wait_state(id, "running");
    lab.daemon.as_ref().expect("rexecd").signal(libc::SIGKILL);
    lab.restart();
    assert_eq!(lab.job(id)["state"], "running");
    std::fs::write(lab.gate(), "").unwrap();
    let r = run(&mut lab.rexec(&["attach", "@", &id.to_string()]));
    assert_eq!(r.code, Some(4), "{}", r.stderr);
    assert_eq!(r.out(), "first\n");
}

#[test]
fn kill_ends_the_job_and_everything_it_started() {
    let lab = Lab::new("jobs-kill", &[]);
    let pids = lab.dir.path("pids");
    let id = lab.detach(&format!(
        "sleep 300 & echo $! > {p}; setsid sh -c 'sleep 301 & echo $! >> {p}; wait' & wait",
        p = pids.display()
    ));
    let started = || {
        std::fs::read_to_string(&pids)
            .map(|s| s.lines().count() == 2)
            .unwrap_or(false)
    };
    assert!(wait_until(PATIENCE, started));
    let r = run(&mut lab.rexec(&["kill", "@", &id.to_string()]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.out().contains("killed by signal 15"), "{}", r.out());
    for pid in std::fs::read_to_string(&pids).unwrap().lines() {
        let gone = wait_until(PATIENCE, || !Path::new(&format!("/proc/{pid}")).exists());
        assert!(gone, "{pid} (of the job) still runs");
    }
    let r = run(&mut lab.rexec(&["kill", "@", &id.to_string()]));
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("is not running"), "{}", r.stderr);
}

#[test]
fn a_job_whose_supervisor_vanished_is_lost_never_running() {
    let lab = Lab::new("jobs-lost", &[]);
    // As after a reboot: the supervisor is gone, its record left behind.
    // (The job's own sleep ends by itself.)
    let id = lab.detach("echo before; sleep 2");
    lab.wait_state(id, "running");
    let sup = lab.supervisor(id);
    // SAFETY: kill(2) on the supervisor of the job this test started.
    unsafe {
        libc::kill(sup, libc::SIGKILL);
    }
    lab.wait_state(id, "lost");
    let r = run(&mut lab.rexec(&["attach", "@", &id.to_string()]));
    assert_eq!(r.code, Some(255));
    assert_eq!(r.out(), "before\n");
    assert!(r.stderr.contains("was lost"), "{}", r.stderr);
}

#[test]
fn output_over_the_cap_keeps_its_head_and_tail_and_running_jobs_are_capped() {
    let lab = Lab::new("jobs-caps", &["--job-output-max", "64K", "--max-jobs", "1"]);
    let id = lab.detach("seq 1 200000");
    let j = lab.wait_state(id, "exited");
    let total = (1..=200000u64)
        .map(|n| n.to_string().len() as u64 + 1)
        .sum::<u64>();
    assert_eq!(j["output_bytes"], total);
    let dropped = j["dropped_bytes"].as_u64().unwrap();
    assert!(dropped > total - 70_000, "{j}");
    let r = run(&mut lab.rexec(&["attach", "@", &id.to_string()]));
    assert_eq!(r.code, Some(0));
    assert!(r.out().starts_with("1\n2\n3\n"));
    assert!(r.out().ends_with("199999\n200000\n"));
    assert_eq!(r.stdout.len() as u64 + dropped, total);
    assert!(
        r.stderr.contains(&format!(
            "[{dropped} bytes of the job's output were dropped here"
        )),
        "{}",
        r.stderr
    );
    // One job at a time for this account.
    let running = lab.detach(&gated(&lab.gate()));
    let r = run(&mut lab.rexec(&["-d", "@", "true"]));
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr.contains("at most 1 (rexecd --max-jobs)"),
        "{}",
        r.stderr
    );
    std::fs::write(lab.gate(), "").unwrap();
    lab.wait_state(running, "exited");
}

#[test]
fn many_hosts_at_once_print_host_and_id() {
    let a = Lab::new("jobs-many-a", &[]);
    let b = Lab::new("jobs-many-b", &[]);
    let cfg = a.dir.path("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[hosts.a]\naddress = \"{}\"\n[hosts.b]\naddress = \"{}\"\n",
            a.host(),
            b.host()
        ),
    )
    .unwrap();
    let r = run(rexec()
        .env("REXEC_CONFIG", &cfg)
        .args(["-w", "a,b", "-d", "echo many"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let out = r.out();
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(lines, ["a: 1", "b: 1"]);
    a.wait_state(1, "exited");
    b.wait_state(1, "exited");
    let r = run(rexec()
        .env("REXEC_CONFIG", &cfg)
        .args(["jobs", "-w", "a,b"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for h in ["a", "b"] {
        assert!(
            r.out()
                .lines()
                .any(|l| l.starts_with(&format!("{h}: 1 ")) && l.contains("echo many")),
            "{}",
            r.out()
        );
    }
}

#[test]
fn a_job_keeps_the_servers_time_limit_and_needs_a_command() {
    let lab = Lab::new("jobs-timeout", &["--timeout", "1"]);
    let id = lab.detach("echo started; sleep 30");
    let j = lab.wait_state(id, "timed_out");
    assert_eq!(j["output_bytes"], 8);
    let r = run(&mut lab.rexec(&["jobs", "@"]));
    assert!(r.out().contains("timed out"), "{}", r.out());
    let r = run(&mut lab.rexec(&["-d", "@"]));
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("-d needs a command"), "{}", r.stderr);
}

/// Records planted in the shared jobs directory (anyone may write it
/// under `--login`): a FIFO as `meta.json`, and a symlink to a FIFO.
/// `jobs`, `-d` and `kill` must
/// neither wait on them nor believe them: they opened every record with a
/// blocking open, and a FIFO there hung every account's job commands.
#[test]
fn records_that_are_fifos_or_symlinks_delay_no_job_command() {
    let lab = Lab::new("jobs-planted", &[]);
    let id = lab.detach(&gated(&lab.gate()));
    let jobs = lab.state().join("jobs");
    let fifo = |p: &Path| {
        let ok = Command::new("mkfifo").arg(p).status().unwrap();
        assert!(ok.success());
    };
    for planted in ["999001", "999002"] {
        std::fs::create_dir(jobs.join(planted)).unwrap();
    }
    fifo(&jobs.join("999001/meta.json"));
    let elsewhere = lab.dir.path("fifo");
    fifo(&elsewhere);
    std::os::unix::fs::symlink(&elsewhere, jobs.join("999002/meta.json")).unwrap();
    let limit = std::time::Duration::from_secs(30);
    let r = run_for(&mut lab.rexec(&["jobs", "@"]), limit);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.out().contains(&id.to_string()), "{}", r.out());
    assert!(!r.out().contains("99900"), "{}", r.out());
    assert!(
        r.stderr
            .contains("999001/meta.json skipped: not a regular file (a FIFO)"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("999002/meta.json skipped"),
        "{}",
        r.stderr
    );
    let r = run_for(&mut lab.rexec(&["-d", "@", "true"]), limit);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for planted in ["999001", "999002"] {
        let r = run_for(&mut lab.rexec(&["kill", "@", planted]), limit);
        assert_eq!(r.code, Some(2), "{}", r.stderr);
        assert!(
            r.stderr.contains(&format!("no job {planted}")),
            "{}",
            r.stderr
        );
    }
    let r = run_for(&mut lab.rexec(&["kill", "@", &id.to_string()]), limit);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
}

/// An account's jobs may keep only so much output on disk: each running
/// job counts as --job-output-max, each finished one as what it kept; a
/// start past --job-disk-max is refused, saying how to make room.
#[test]
fn kept_output_per_account_is_capped_with_a_clear_refusal() {
    let lab = Lab::new(
        "jobs-disk",
        &["--job-output-max", "64K", "--job-disk-max", "160K"],
    );
    for _ in 0..2 {
        let id = lab.detach("head -c 200000 /dev/zero");
        lab.wait_state(id, "exited");
    }
    let r = run(&mut lab.rexec(&["-d", "@", "true"]));
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("another would pass rexecd's --job-disk-max of 160 KiB"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("rexec jobs --clean"), "{}", r.stderr);
    let r = run(&mut lab.rexec(&["jobs", "--clean", "@"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let id = lab.detach("true");
    lab.wait_state(id, "exited");
}
