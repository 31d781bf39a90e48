//! The system calls that need `unsafe`, or the raw `libc`, outside the
//! handling of descriptors: every one of them is here, each behind a safe
//! function whose comment says why it is sound. (rustix covers the rest.)
//!
//! - [`in_child`]: what a command does between fork and exec, from a fixed
//!   set of async-signal-safe steps;
//! - [`adopt_ignored_signals`]: nothing rexecd starts inherits an ignored
//!   or blocked signal (sshd and systemd start sessions so);
//! - [`die_of`]: a supervisor ends of the signal its program ended of;
//! - [`local_time`]: a local date and time as seconds, with the machine's
//!   time zone (`authorized_keys`' `expiry-time`);
//! - [`scrub_environ`]: a secret wiped from `/proc/PID/environ` too;
//! - [`as_account`]: a socket made for an account (port forwarding under
//!   `--login`) is the account's, as if it had made it;
//! - [`FileWindow`]: part of a file mapped into memory, to hash what was
//!   just spliced to a client without copying it once more, and
//!   [`exit_on_sigbus`], the end of a helper whose mapped file shrank;
//! - [`Account`]: the user database (getpwnam, getpwuid, getgrouplist),
//!   which may be NSS or LDAP and block: not to be asked in the loop but
//!   where it already is (at start, on the login threads, and a command's
//!   login shell, lib.rs says).

use std::io;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use nix::sys::signal::SigSet;
use nix::unistd::{Gid, Uid};

/// An account as the user database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub shell: PathBuf,
}

impl Account {
    fn from_nix(u: nix::unistd::User) -> Account {
        Account {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            home: u.dir,
            shell: u.shell,
        }
    }

    /// The account named `name`, if there is one.
    pub fn named(name: &str) -> io::Result<Option<Account>> {
        Ok(nix::unistd::User::from_name(name)?.map(Account::from_nix))
    }

    /// The account rexecd runs as (its real uid), if the database has it.
    pub fn own() -> Option<Account> {
        let me = nix::unistd::getuid();
        nix::unistd::User::from_uid(me)
            .ok()
            .flatten()
            .map(Account::from_nix)
    }

    /// Its groups: its own and the supplementary ones the database gives.
    pub fn groups(&self) -> io::Result<Vec<u32>> {
        let name = std::ffi::CString::new(self.name.as_str())
            .map_err(|_| io::Error::other("a NUL in the name"))?;
        let groups = nix::unistd::getgrouplist(&name, Gid::from_raw(self.gid))?;
        Ok(groups.iter().map(|g| g.as_raw()).collect())
    }
}

/// Runs `f` with this thread's filesystem ids set to `uid` and `gid`, then
/// puts them back: a socket `f` makes is the account's (the kernel records
/// the fsuid as its owner, which firewall owner matches, `ss -e` and
/// `/proc/net/tcp` see), as if the account had made it. Only root may; for
/// anyone else the ids stay as they are (the socket is then rexecd's own
/// account's, which is the account commands run as).
pub fn as_account<T>(uid: u32, gid: u32, f: impl FnOnce() -> T) -> T {
    if !is_root() {
        return f();
    }
    // SAFETY: setfsgid and setfsuid change only this thread's ids for
    // filesystem and socket ownership checks; they touch no memory. They
    // return the previous ids, which are put back after `f` (from a
    // non-zero fsuid back to 0, the kernel raises the filesystem
    // capabilities it dropped).
    let (old_gid, old_uid) = unsafe { (libc::setfsgid(gid), libc::setfsuid(uid)) };
    let out = f();
    // SAFETY: as above.
    unsafe {
        libc::setfsuid(old_uid as libc::uid_t);
        libc::setfsgid(old_gid as libc::gid_t);
    }
    out
}

/// Whether rexecd runs as root (its effective uid).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// What a child does between fork and exec. Each step is made of plain
/// system calls on data prepared before the fork, and allocates nothing:
/// all a child of a threaded process may do.
#[derive(Debug, Clone)]
pub enum InChild {
    /// A session (and process group) of its own.
    Session,
    /// A session of its own whose controlling terminal is its stdin (a
    /// pty's slave side).
    TerminalSession,
    /// These supplementary groups, group and user, in that order (groups
    /// and group while still root).
    Credentials {
        groups: Vec<Gid>,
        gid: Gid,
        uid: Uid,
    },
    /// No signal blocked, whatever its parent blocked.
    NoSignalBlocked,
}

impl InChild {
    /// The credentials of an account: `groups`, `gid`, `uid`.
    pub fn credentials(groups: &[u32], gid: u32, uid: u32) -> InChild {
        InChild::Credentials {
            groups: groups.iter().map(|g| Gid::from_raw(*g)).collect(),
            gid: Gid::from_raw(gid),
            uid: Uid::from_raw(uid),
        }
    }

    fn run(&self) -> io::Result<()> {
        match self {
            InChild::Session => {
                rustix::process::setsid()?;
            }
            InChild::TerminalSession => {
                rustix::process::setsid()?;
                rustix::process::ioctl_tiocsctty(rustix::stdio::stdin())?;
            }
            InChild::Credentials { groups, gid, uid } => {
                nix::unistd::setgroups(groups)?;
                nix::unistd::setgid(*gid)?;
                nix::unistd::setuid(*uid)?;
            }
            InChild::NoSignalBlocked => SigSet::empty().thread_set_mask()?,
        }
        Ok(())
    }
}

/// Has `cmd`'s child take `step` between fork and exec (after any step
/// given before).
pub fn in_child(cmd: &mut Command, step: InChild) {
    // SAFETY: the closure runs in the forked child, where only
    // async-signal-safe calls are allowed: every step of `InChild` is
    // setsid, ioctl(TIOCSCTTY), setgroups/setgid/setuid or sigprocmask on
    // values made before the fork (moved in, only read), and nothing in
    // them allocates or takes a lock.
    unsafe {
        cmd.pre_exec(move || step.run());
    }
}

/// Does nothing: the signal is taken and dropped, as if ignored.
extern "C" fn taken_and_dropped(_: libc::c_int) {}

/// Turns every signal this process finds ignored into one caught by a
/// handler that does nothing, and unblocks every signal; call first thing,
/// before other threads (clean start: see lib.rs's `adopt_ignored_signals`).
///
/// A signal that is *ignored* stays ignored across `exec`, so a rexecd
/// started under `nohup` (SIGHUP ignored) or with `&` from a script
/// (SIGINT, SIGQUIT ignored) handed that on to every command, job and
/// terminal session. A *caught* one is reset to its default by `exec`:
/// rexecd itself still ignores it, and nothing it starts inherits that.
/// SIGPIPE is left as the Rust runtime set it (ignored, so that a write to
/// a closed socket is an error); std resets it in every child.
pub fn adopt_ignored_signals() {
    // SAFETY: sigaction and sigprocmask with structures made here; the
    // handler is async-signal-safe (it does nothing). Signals the C
    // library keeps for itself (32, 33) refuse and are left alone.
    unsafe {
        for sig in 1..=libc::SIGRTMAX() {
            if [libc::SIGKILL, libc::SIGSTOP, libc::SIGPIPE].contains(&sig) {
                continue;
            }
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0
                || old.sa_sigaction != libc::SIG_IGN
            {
                continue;
            }
            let mut caught: libc::sigaction = std::mem::zeroed();
            caught.sa_sigaction = taken_and_dropped as *const () as libc::sighandler_t;
            caught.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut caught.sa_mask);
            libc::sigaction(sig, &caught, std::ptr::null_mut());
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
}

/// Ends this process of signal `sig` (its default action), so that
/// whoever waits for it sees that signal; what it returns if the signal
/// does not end it (one whose default is to be ignored, or not a signal).
pub fn die_of(sig: i32) -> i32 {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, Signal};
    if let Ok(sig) = Signal::try_from(sig) {
        let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
        // SAFETY: installing the default disposition, which runs no code
        // of ours.
        let _ = unsafe { nix::sys::signal::sigaction(sig, &default) };
        let _ = nix::sys::signal::raise(sig);
    }
    128 + sig
}

/// Signals taken one at a time with sigwait, never by a handler (no race
/// between looking for a stop and going to sleep): blocked in this thread,
/// and so in the threads it starts after.
#[derive(Debug)]
pub struct Waited(SigSet);

impl Waited {
    /// Blocks `signals`, to be taken with [`Waited::next`].
    pub fn block(signals: &[rustix::process::Signal]) -> io::Result<Waited> {
        let mut set = SigSet::empty();
        for sig in signals {
            set.add(nix::sys::signal::Signal::try_from(sig.as_raw())?);
        }
        set.thread_block()?;
        Ok(Waited(set))
    }

    /// Waits for the next of them.
    pub fn next(&self) -> io::Result<rustix::process::Signal> {
        let sig = self.0.wait()?;
        rustix::process::Signal::from_named_raw(sig as i32)
            .ok_or_else(|| io::Error::other("an unknown signal"))
    }

    /// Unblocks them again.
    pub fn unblock(&self) {
        let _ = self.0.thread_unblock();
    }
}

/// Seconds since the epoch of a local date and time (the C library's
/// `mktime`, which knows the machine's time zone and its summer time).
pub fn local_time([year, month, day, hour, minute, second]: [i64; 6]) -> Option<i64> {
    let int = |v: i64| libc::c_int::try_from(v).ok();
    let fields = [
        int(year - 1900)?,
        int(month - 1)?,
        int(day)?,
        int(hour)?,
        int(minute)?,
        int(second)?,
    ];
    // SAFETY: `tm` is plain data for which all zeroes is a valid value;
    // every field mktime reads is set, and mktime gets an exclusive
    // reference for the call only.
    let t = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        tm.tm_year = fields[0];
        tm.tm_mon = fields[1];
        tm.tm_mday = fields[2];
        tm.tm_hour = fields[3];
        tm.tm_min = fields[4];
        tm.tm_sec = fields[5];
        tm.tm_isdst = -1;
        libc::mktime(&mut tm)
    };
    // time_t is 32 bits on some targets.
    #[allow(clippy::useless_conversion)]
    (t != -1).then_some(i64::from(t))
}

/// Removes `name` from the environment and overwrites its value where the
/// kernel keeps the process's original environment, so that a command run
/// as the same user cannot read it from `/proc/<rexecd's pid>/environ`.
/// Call before other threads.
pub fn scrub_environ(name: &str) {
    let prefix = format!("{name}=");
    // SAFETY: no other thread runs yet (nothing else reads or writes the
    // environment). environ is a NULL-terminated array of pointers to
    // NUL-terminated strings; only bytes inside one of them are
    // overwritten, up to (not including) its terminating NUL.
    unsafe {
        let mut entry = libc::environ;
        while !entry.is_null() && !(*entry).is_null() {
            let bytes = std::ffi::CStr::from_ptr(*entry).to_bytes();
            if bytes.starts_with(prefix.as_bytes()) {
                let value = (*entry).add(prefix.len());
                std::ptr::write_bytes(value, 0, bytes.len() - prefix.len());
            }
            entry = entry.add(1);
        }
        std::env::remove_var(name);
    }
}

/// Part of a file mapped read-only into memory: what a get has just
/// spliced to the client, hashed where it lies in the page cache instead of
/// being copied out once more (a copy that cost the helper more than the
/// hash itself).
///
/// A mapped file can change under the mapping. The bytes only ever go to
/// the hash: a file that changes while it is sent makes the client's check
/// fail, as it would with a copy. A file that shrinks below the window
/// makes reading it raise SIGBUS, which [`exit_on_sigbus`] turns into the
/// helper's failure with the reason.
#[derive(Debug)]
pub struct FileWindow {
    ptr: *mut std::ffi::c_void,
    len: usize,
    /// The offset in the file of its first byte.
    pub start: u64,
}

impl FileWindow {
    /// Maps `len` bytes (more than 0) of `file` from `start`, a multiple of
    /// the page size.
    pub fn map(file: &impl std::os::fd::AsFd, start: u64, len: usize) -> io::Result<FileWindow> {
        use rustix::mm::{Advice, MapFlags, ProtFlags};
        // SAFETY: a new private read-only mapping at an address the kernel
        // chooses, so no memory of ours is replaced; it lives until Drop
        // unmaps exactly it.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ,
                MapFlags::SHARED,
                file,
                start,
            )?
        };
        // SAFETY: the range is the mapping just made; the advice changes
        // only how far the kernel reads ahead.
        let _ = unsafe { rustix::mm::madvise(ptr, len, Advice::Sequential) };
        Ok(FileWindow { ptr, len, start })
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` is a live read-only mapping of `len` bytes, unmapped
        // only by Drop, which needs `self` exclusively. Another process may
        // write the file meanwhile: the bytes read are then whatever it
        // wrote (they only feed the hash, and the check fails).
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for FileWindow {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, with its length; no slice of
        // it outlives `self` (`bytes` borrows it).
        let _ = unsafe { rustix::mm::munmap(self.ptr, self.len) };
    }
}

/// From now on, SIGBUS (a mapped file read past its end, because it shrank
/// after it was mapped) ends this process with exit code 1 and `why` on
/// stderr, as any other failure of a helper, rather than with a core dump.
pub fn exit_on_sigbus(why: &'static str) {
    static WHY: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    let _ = WHY.set(why);
    extern "C" fn on_sigbus(_: libc::c_int) {
        // Async-signal-safe only: write(2) of bytes set before the handler
        // was installed, and _exit(2).
        if let Some(why) = WHY.get() {
            // SAFETY: a valid buffer and its length.
            unsafe { libc::write(2, why.as_ptr().cast(), why.len()) };
        }
        // SAFETY: ends the process at once, running nothing of ours.
        unsafe { libc::_exit(1) };
    }
    // SAFETY: a sigaction built here, whose handler is async-signal-safe
    // (above).
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = on_sigbus as *const () as libc::sighandler_t;
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(libc::SIGBUS, &act, std::ptr::null_mut());
    }
}
