//! The job verbs a client asks for, each run as `rexecd __job VERB DIR
//! KEEP MAX MAX_TOTAL CAP DISK_MAX ...` under the connection's account:
//! what they print is the answer, their exit status the verb's.

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::record::{self, Job, META, Meta, State};

/// Most finished records kept per account, whatever their age.
const MAX_RECORDS: usize = 1000;
/// Most of a command kept in its record for listing.
const SHOWN: usize = 8192;
/// Highest id handed out after the highest there; past it (a directory of
/// junk made by hand in the shared jobs directory), the lowest free one.
const MAX_ID: u64 = 1_000_000_000;

/// What every verb is given.
#[derive(Debug)]
pub struct Common {
    dir: PathBuf,
    keep_secs: u64,
    max: usize,
    max_total: usize,
    cap: u64,
    disk_max: u64,
    rest: Vec<OsString>,
}

impl Common {
    pub fn parse(args: &[OsString]) -> Option<Common> {
        let num = |a: Option<&OsString>| a?.to_str()?.parse::<u64>().ok();
        Some(Common {
            dir: PathBuf::from(args.first()?),
            keep_secs: num(args.get(1))?,
            max: num(args.get(2))? as usize,
            max_total: num(args.get(3))? as usize,
            cap: num(args.get(4))?,
            disk_max: num(args.get(5))?,
            rest: args.get(6..)?.to_vec(),
        })
    }
}

pub fn main(verb: &str, c: &Common) -> i32 {
    let me = rustix::process::getuid().as_raw();
    // Root sees every account's jobs; others their own.
    let whose = (me != 0).then_some(me);
    sweep(c, me);
    match verb {
        "start" => start(c, me),
        "list" => list(c, whose),
        "attach" => with_job(c, whose, attach),
        "kill" => with_job(c, whose, kill),
        "clean" => clean(c, me),
        _ => {
            eprintln!("rexecd __job: unknown verb {verb}");
            2
        }
    }
}

/// `start TIMEOUT COMMAND [--arg0 NAME] -- PROGRAM ARGS...`: the job's id
/// on stdout once it runs.
fn start(c: &Common, me: u32) -> i32 {
    let (Some(timeout), Some(command)) = (c.rest.first(), c.rest.get(1)) else {
        eprintln!("rexecd __job start: bad arguments");
        return 2;
    };
    let (mine, all) = running(&c.dir, me);
    if mine >= c.max || all >= c.max_total {
        let (n, max, flag) = match mine >= c.max {
            true => (mine, c.max, "--max-jobs"),
            false => (all, c.max_total, "--max-jobs-total"),
        };
        eprintln!(
            "rexec: {n} jobs are running{}; at most {max} (rexecd {flag}): \
             wait for one to end, or end one with rexec kill",
            if flag == "--max-jobs" { " for you" } else { "" }
        );
        return 1;
    }
    if let Some(refusal) = over_disk(c, me) {
        eprintln!("{refusal}");
        return 1;
    }
    let (id, dir) = match allocate(&c.dir) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("rexec: cannot make a job in {}: {e}", c.dir.display());
            return 1;
        }
    };
    let mut cmd = Command::new(std::env::current_exe().unwrap_or_else(|_| "rexecd".into()));
    cmd.args([super::ARG, "run"])
        .arg(&dir)
        .arg(timeout)
        .arg(c.cap.to_string())
        .args(&c.rest[2..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    crate::sys::in_child(&mut cmd, crate::sys::InChild::Session);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return give_up(&dir, &format!("cannot start the job's supervisor: {e}")),
    };
    let pid = child.id() as i32;
    let meta = Meta {
        id,
        command: shown(&command.to_string_lossy()),
        started_ms: record::now_ms(),
        boot_id: record::boot_id(),
        pid,
        pid_start: record::start_time(pid).unwrap_or(0),
    };
    let json = serde_json::to_vec(&meta).unwrap_or_default();
    if let Err(e) = record::write_atomic(&dir.join(META), &json) {
        let _ = child.kill();
        return give_up(&dir, &format!("cannot write the job's record: {e}"));
    }
    let mut answer = String::new();
    if let Some(out) = child.stdout.as_mut() {
        let _ = out.take(4096).read_to_string(&mut answer);
    }
    if answer.trim() != "ok" {
        let _ = child.wait();
        let why = match answer.trim() {
            "" => "its supervisor ended at once",
            why => why,
        };
        return give_up(&dir, why);
    }
    println!("{id}");
    0
}

/// Why one more job of `me`'s would pass `--job-disk-max`, if it would:
/// each running job may yet keep `--job-output-max`, a finished one keeps
/// what it kept.
fn over_disk(c: &Common, me: u32) -> Option<String> {
    let (mut running, mut finished, mut committed) = (0, 0u64, 0u64);
    for j in record::list(&c.dir, Some(me)) {
        let kept = super::spool::kept(&j.dir);
        if j.state == State::Running {
            running += 1;
            committed += kept.max(c.cap);
        } else {
            finished += kept;
            committed += kept;
        }
    }
    (committed.saturating_add(c.cap) > c.disk_max).then(|| {
        format!(
            "rexec: your jobs may keep {} of output ({running} running at up to {} each, {} \
             kept by finished ones); another would pass rexecd's --job-disk-max of {}: remove \
             finished jobs' records with rexec jobs --clean HOST, or end one with rexec kill",
            size(committed),
            size(c.cap),
            size(finished),
            size(c.disk_max)
        )
    })
}

/// Bytes for a message, in KiB from 1 KiB and MiB from 1 MiB up.
fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// The command as listed: at most [`SHOWN`] bytes of it.
fn shown(command: &str) -> String {
    if command.len() <= SHOWN {
        return command.to_string();
    }
    let mut end = SHOWN;
    while !command.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &command[..end])
}

/// The job could not start: its directory goes, and the client is told.
fn give_up(dir: &Path, why: &str) -> i32 {
    let _ = std::fs::remove_dir_all(dir);
    eprintln!("rexec: {why}");
    127
}

/// A new job directory (mode 0700): the next id after the highest there
/// (ids below [`MAX_ID`]; then the lowest free one), skipping any another
/// start took meanwhile.
fn allocate(root: &Path) -> std::io::Result<(u64, PathBuf)> {
    let highest = std::fs::read_dir(root)?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u64>().ok())
        .filter(|&id| id < MAX_ID)
        .max()
        .unwrap_or(0);
    let after = highest + 1..MAX_ID;
    for id in after.take(1000).chain(1..=highest) {
        let dir = root.join(id.to_string());
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok((id, dir)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free job id"))
}

/// Supervisors of this jobs directory running now: `uid`'s, and
/// everybody's (from /proc, which every account may read, so the limit in
/// all holds across accounts).
fn running(root: &Path, uid: u32) -> (usize, usize) {
    use std::os::unix::fs::MetadataExt;
    let (mut mine, mut all) = (0, 0);
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return (0, 0);
    };
    for p in procs.flatten() {
        let Ok(cmdline) = std::fs::read(p.path().join("cmdline")) else {
            continue;
        };
        let mut args = cmdline.split(|&b| b == 0).skip(1);
        let ours = args.next() == Some(super::ARG.as_bytes())
            && args.next() == Some(b"run")
            && args.next().is_some_and(|dir| {
                Path::new(std::ffi::OsStr::from_bytes(dir)).parent() == Some(root)
            });
        if ours {
            all += 1;
            if p.metadata().is_ok_and(|m| m.uid() == uid) {
                mine += 1;
            }
        }
    }
    (mine, all)
}

/// `list [--json]`.
fn list(c: &Common, whose: Option<u32>) -> i32 {
    let json = c.rest.iter().any(|a| a == "--json");
    let jobs = record::list(&c.dir, whose);
    let now = record::now_ms();
    if json {
        for j in &jobs {
            println!("{}", super::text::json(j, now));
        }
        return 0;
    }
    if jobs.is_empty() {
        println!("no jobs");
        return 0;
    }
    println!("{}", super::text::HEADER);
    for j in &jobs {
        println!("{}", super::text::row(j, now));
    }
    0
}

/// Runs `verb` on the job the first argument names, if the caller may see
/// it (another account's job is "no such job", as one that does not
/// exist).
fn with_job(c: &Common, whose: Option<u32>, verb: fn(&Job) -> i32) -> i32 {
    let id = c.rest.first().and_then(|a| a.to_str()).unwrap_or("");
    let job = record::is_id(id)
        .then(|| record::read_of(&c.dir.join(id), whose))
        .flatten();
    match job {
        Some(j) => verb(&j),
        None => {
            eprintln!(
                "rexec: no job {} here (rexec jobs HOST lists yours)",
                clip(id)
            );
            2
        }
    }
}

/// `attach ID`: the output from the start, live until the end; the job's
/// exit status.
fn attach(job: &Job) -> i32 {
    let status = job.dir.join(record::STATUS);
    let ended = || status.exists() || !job.alive();
    let (out, err) = (std::io::stdout(), std::io::stderr());
    if let Err(e) = super::spool::follow(&job.dir, job.uid, out.as_fd(), err.as_fd(), &ended) {
        eprintln!("rexec: job {}: {e}", job.meta.id);
        return 255;
    }
    match record::read(&job.dir).map(|j| j.state) {
        Some(State::Ended(e)) => e.exit_code(),
        _ => {
            eprintln!(
                "rexec: job {} was lost: its supervisor is gone (the machine restarted, or it \
                 was killed) and how it ended is not known",
                job.meta.id
            );
            255
        }
    }
}

/// `kill ID`: the job and everything it started end.
fn kill(job: &Job) -> i32 {
    if job.state != State::Running {
        eprintln!(
            "rexec: job {} is not running ({})",
            job.meta.id,
            super::text::state(&job.state)
        );
        return 1;
    }
    let pid = rustix::process::Pid::from_raw(job.meta.pid);
    if let Some(pid) = pid
        && let Err(e) = rustix::process::kill_process(pid, rustix::process::Signal::TERM)
    {
        eprintln!("rexec: job {}: {e}", job.meta.id);
        return 1;
    }
    // The supervisor ends it all and writes how it ended.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(j) = record::read(&job.dir)
            && j.state != State::Running
        {
            println!("job {}: {}", job.meta.id, super::text::state(&j.state));
            return 0;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "rexec: job {} was told to stop and has not yet",
        job.meta.id
    );
    1
}

/// `clean`: the caller's finished jobs' records go.
fn clean(c: &Common, me: u32) -> i32 {
    let mut removed = 0;
    for j in record::list(&c.dir, Some(me)) {
        if j.state != State::Running && std::fs::remove_dir_all(&j.dir).is_ok() {
            removed += 1;
        }
    }
    println!("removed {removed} finished jobs");
    0
}

/// Removes finished records past `--job-keep`, and the oldest finished
/// ones past [`MAX_RECORDS`]: the caller's, or (root) everyone's.
fn sweep(c: &Common, me: u32) {
    let now = record::now_ms();
    let whose = (me != 0).then_some(me);
    let mut finished: Vec<Job> = record::list(&c.dir, whose)
        .into_iter()
        .filter(|j| j.ended_ms().is_some())
        .collect();
    finished.retain(|j| {
        let expired = j
            .ended_ms()
            .is_some_and(|t| now.saturating_sub(t) / 1000 >= c.keep_secs);
        !(expired && std::fs::remove_dir_all(&j.dir).is_ok())
    });
    let mut by_owner: std::collections::HashMap<u32, Vec<&Job>> = Default::default();
    for j in &finished {
        by_owner.entry(j.uid).or_default().push(j);
    }
    for jobs in by_owner.values() {
        for j in jobs.iter().take(jobs.len().saturating_sub(MAX_RECORDS)) {
            let _ = std::fs::remove_dir_all(&j.dir);
        }
    }
}

fn clip(s: &str) -> String {
    rexec_proto::text::clean(s, 24)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_go_up_and_junk_made_by_hand_cannot_exhaust_them() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(allocate(dir.path()).unwrap().0, 1);
        assert_eq!(allocate(dir.path()).unwrap().0, 2);
        // Anyone may make directories in a shared jobs directory: a huge
        // name is not the highest id, and a file takes no id.
        std::fs::create_dir(dir.path().join(u64::MAX.to_string())).unwrap();
        std::fs::write(dir.path().join("3"), "").unwrap();
        assert_eq!(allocate(dir.path()).unwrap().0, 4);
        std::fs::create_dir(dir.path().join((MAX_ID - 1).to_string())).unwrap();
        std::fs::remove_dir(dir.path().join("2")).unwrap();
        assert_eq!(allocate(dir.path()).unwrap().0, 2, "the lowest free one");
        let long = "é".repeat(SHOWN);
        let s = shown(&long);
        assert!(s.len() <= SHOWN + 3 && s.ends_with("..."));
        assert_eq!(shown("short"), "short");
    }
}
