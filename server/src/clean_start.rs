//! Every command starts as sshd and systemd start a session: every signal
//! at its default disposition, none blocked, whatever rexecd inherited.
//!
//! A signal that is *ignored* stays ignored across `exec`, so a rexecd
//! started under `nohup` (SIGHUP ignored) or with `&` from a script
//! (SIGINT, SIGQUIT ignored) handed that on to every command, job and
//! terminal session: a session's jobs then outlived their hung-up
//! terminal. A *caught* signal, on the other hand, is reset to its
//! default by `exec`. So at its start rexecd (and each of its helpers)
//! turns every signal it finds ignored into one caught by a handler that
//! does nothing: rexecd itself still ignores it, and nothing it starts
//! inherits that. The blocked mask is emptied too (std also empties it in
//! every child it starts), so what rexecd inherited blocked reaches it.
//!
//! SIGPIPE is left as the Rust runtime set it (ignored, so a write to a
//! closed socket is an error, not death); std resets it for every child.

/// Does nothing: the signal is taken and dropped, as if ignored.
extern "C" fn taken_and_dropped(_: libc::c_int) {}

/// Turns every ignored signal into a caught one (see the module's text)
/// and unblocks every signal. Call first thing, before other threads.
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
