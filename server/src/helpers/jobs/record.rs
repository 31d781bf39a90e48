//! A job's record on disk: `STATE/jobs/ID/`, owned by the job's account
//! and readable by it alone (mode 0700; files 0600).
//!
//! | file | written by | when |
//! |---|---|---|
//! | `meta.json` | the start helper | once the supervisor runs: id, command, start, the supervisor's pid, its start time and the boot |
//! | `out.N` | the supervisor | output as it comes (spool.rs) |
//! | `dropped` | the supervisor | bytes left out between the kept head and tail |
//! | `status.json` | the supervisor | when the job has ended: how, and how much output |
//!
//! rexecd itself never writes here: it starts helpers that do (as the
//! account), and a restarted rexecd finds everything as it was. A job
//! without `status.json` is running if its supervisor is: the same pid,
//! with the same start time, since the same boot. Otherwise it is lost
//! (the machine restarted, or the supervisor was killed).

use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub const META: &str = "meta.json";
pub const STATUS: &str = "status.json";
pub const DROPPED: &str = "dropped";

/// What is known from the start.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Meta {
    pub id: u64,
    pub command: String,
    pub started_ms: u64,
    pub boot_id: String,
    /// The supervisor's pid, and its start time (clock ticks after boot,
    /// from /proc/PID/stat) so that a reused pid is not taken for it.
    pub pid: i32,
    pub pid_start: u64,
}

/// How a job ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Ended {
    pub ended_ms: u64,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// Ended by the server's `--timeout`.
    pub timed_out: bool,
    /// Ended by `rexec kill`.
    pub killed: bool,
    /// Output bytes the job wrote, all of them.
    pub output: u64,
    /// Of those, the bytes not kept (over `--job-output-max`).
    pub dropped: u64,
}

impl Ended {
    /// The exit status a command would have: the code, or 128+N for
    /// signal N.
    pub fn exit_code(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => 255,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Running,
    Ended(Ended),
    Lost,
}

/// One job, as read from its directory.
#[derive(Debug, Clone)]
pub struct Job {
    pub dir: PathBuf,
    pub uid: u32,
    pub meta: Meta,
    pub state: State,
}

impl Job {
    /// Whether its supervisor still runs (see [`alive`]).
    pub fn alive(&self) -> bool {
        alive(&self.meta, &self.dir)
    }

    /// When its record may be removed (`--job-keep` after it ended), if
    /// it has ended.
    pub fn ended_ms(&self) -> Option<u64> {
        match &self.state {
            State::Running => None,
            State::Ended(e) => Some(e.ended_ms),
            State::Lost => Some(self.meta.started_ms),
        }
    }

    /// Bytes of output so far (kept and dropped).
    pub fn output(&self) -> u64 {
        match &self.state {
            State::Ended(e) => e.output,
            _ => crate::helpers::jobs::spool::written(&self.dir, self.uid),
        }
    }
}

/// Reads the job in `dir` if it is `uid`'s (any account's: `None`): whose
/// it is, is known before anything in it is opened.
pub fn read_of(dir: &Path, uid: Option<u32>) -> Option<Job> {
    let owned = uid
        .is_none_or(|u| std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && m.uid() == u));
    owned.then(|| read(dir)).flatten()
}

/// Reads the job in `dir`, if it is one (a real directory, with its meta).
/// Its files must be regular files of the directory's owner, opened
/// without blocking (regular_file.rs): the jobs directory is everyone's
/// (1777 under `--login`), and a FIFO planted as `meta.json` hung every
/// account's listing. A record that fails this is skipped, and said so on
/// stderr (the verb's client sees it).
pub fn read(dir: &Path) -> Option<Job> {
    let m = std::fs::symlink_metadata(dir).ok()?;
    if !m.is_dir() {
        return None;
    }
    let owner = m.uid();
    let small = |name: &str| match read_small(&dir.join(name), owner) {
        Ok(bytes) => Ok(bytes),
        Err(why) => {
            eprintln!("rexec: job record {}/{name} skipped: {why}", dir.display());
            Err(())
        }
    };
    let meta: Meta = serde_json::from_slice(&small(META).ok()??).ok()?;
    let state = match small(STATUS).ok()? {
        Some(b) => State::Ended(serde_json::from_slice(&b).ok()?),
        None if alive(&meta, dir) => State::Running,
        // The supervisor may have written its status just now.
        None => match small(STATUS).ok()? {
            Some(b) => State::Ended(serde_json::from_slice(&b).ok()?),
            None => State::Lost,
        },
    };
    Some(Job {
        dir: dir.to_path_buf(),
        uid: owner,
        meta,
        state,
    })
}

/// The jobs in `root`: those owned by `uid`, or all of them (`None`),
/// by id. Another account's records are never opened for a listing of
/// one's own.
pub fn list(root: &Path, uid: Option<u32>) -> Vec<Job> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut jobs: Vec<Job> = entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(is_id))
        .filter_map(|e| read_of(&e.path(), uid))
        .collect();
    jobs.sort_by_key(|j| j.meta.id);
    jobs
}

/// Whether `name` is a job directory's name: digits only.
pub fn is_id(name: &str) -> bool {
    !name.is_empty() && name.len() <= 19 && name.bytes().all(|b| b.is_ascii_digit())
}

/// Whether the supervisor of the job in `dir` still runs: the process
/// its record names (same start time, same boot) is that job's supervisor
/// (`rexecd __job run DIR ...`). The record is its owner's to write, so a
/// pid in it is never believed alone: root's `rexec kill` must not signal
/// whatever process an account names.
pub fn alive(meta: &Meta, dir: &Path) -> bool {
    meta.boot_id == boot_id()
        && start_time(meta.pid) == Some(meta.pid_start)
        && supervises(meta.pid, dir)
}

/// Whether process `pid` is the supervisor of the job in `dir`.
fn supervises(pid: i32, dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let mut args = cmdline.split(|&b| b == 0).skip(1);
    args.next() == Some(crate::helpers::jobs::ARG.as_bytes())
        && args.next() == Some(b"run")
        && args.next() == Some(dir.as_os_str().as_bytes())
}

/// This boot's id (changes at every boot).
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// When process `pid` started (clock ticks after boot), if it exists and
/// has not ended.
pub fn start_time(pid: i32) -> Option<u64> {
    crate::proc_stat::Stat::of(pid)
        .filter(|s| !s.is_zombie())
        .map(|s| s.start_time)
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Writes `bytes` to `path` whole or not at all (a temporary file renamed
/// over it), readable by the owner only.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// A small file of a record (its JSON, never more than 256 KiB) owned by
/// `owner`; `None` when there is none; why, when it is not to be read.
fn read_small(path: &Path, owner: u32) -> Result<Option<Vec<u8>>, String> {
    match crate::regular_file::read_owned(path, owner, 256 << 10) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn a_job_is_running_ended_or_lost() {
        let dir = tempfile::tempdir().unwrap();
        let job = dir.path().join("7");
        std::fs::create_dir(&job).unwrap();
        // A stand-in supervisor: `sh __job run DIR` (a script named __job
        // that waits), so its command line is a supervisor's.
        // (Its own process group, ended whole at the end: it waits on a
        // sleep, not on a descriptor another test could close.)
        std::fs::write(dir.path().join("__job"), "sleep 60\n").unwrap();
        let mut sup = std::process::Command::new("sh")
            .args(["__job", "run"])
            .arg(&job)
            .current_dir(dir.path())
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = sup.id() as i32;
        let mut meta = Meta {
            id: 7,
            command: "sleep 1".into(),
            started_ms: now_ms(),
            boot_id: boot_id(),
            pid,
            pid_start: start_time(pid).unwrap(),
        };
        let put = |m: &Meta| write_atomic(&job.join(META), &serde_json::to_vec(m).unwrap());
        put(&meta).unwrap();
        // A process's command line reads empty for a moment after its
        // parent's spawn returns (the kernel sets it up during exec).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.is_empty())
            && std::time::Instant::now() < deadline
        {
            std::thread::yield_now();
        }
        assert_eq!(read(&job).unwrap().state, State::Running);
        // Another boot, the pid reused, or a pid that is not this job's
        // supervisor (the record is its owner's to write): not running.
        meta.boot_id = "another boot".into();
        put(&meta).unwrap();
        assert_eq!(read(&job).unwrap().state, State::Lost);
        meta.boot_id = boot_id();
        meta.pid_start += 1;
        put(&meta).unwrap();
        assert_eq!(read(&job).unwrap().state, State::Lost);
        let me = std::process::id() as i32;
        meta.pid = me;
        meta.pid_start = start_time(me).unwrap();
        put(&meta).unwrap();
        assert_eq!(read(&job).unwrap().state, State::Lost);
        if let Some(group) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = sup.wait();
        let ended = Ended {
            signal: Some(9),
            ..Ended::default()
        };
        write_atomic(&job.join(STATUS), &serde_json::to_vec(&ended).unwrap()).unwrap();
        let j = read(&job).unwrap();
        assert_eq!(j.state, State::Ended(ended.clone()));
        assert_eq!(ended.exit_code(), 137);
        // Only digit names are jobs; a symlink is never followed.
        std::os::unix::fs::symlink(&job, dir.path().join("8")).unwrap();
        std::fs::create_dir(dir.path().join("x")).unwrap();
        let all = list(dir.path(), None);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].meta.id, 7);
        assert!(list(dir.path(), Some(all[0].uid + 1)).is_empty());
    }
}
