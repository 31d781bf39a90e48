//! The end of a stopped command's grace, and the hangup a terminal
//! session's shell may not have finished.

use std::collections::BTreeSet;

use super::{Signal, kill_group};
use crate::proc_stat::{self, Stat};

/// The grace after SIGTERM is over: SIGKILL for group `pgid`.
///
/// A command on a pty runs in a session of its own, led by its shell. An
/// interactive shell ignores SIGTERM; the hangup (rexecd closed the pty's
/// master) is what ends it, and on SIGHUP the shell passes the signal on to
/// its jobs, which job control put in process groups of their own. A shell
/// still alive now never got that far (bash saves its history first, and a
/// slow disk or a FIFO can hold it there past the grace), and the SIGKILL
/// to its group would miss its jobs. So rexecd hangs them up for it, as the
/// shell would have: SIGHUP, and SIGCONT for a job that is stopped. A job
/// that ignores SIGHUP (`nohup`) lives on, as it does under sshd.
///
/// `unreaped`: the leader is a command rexecd started and has not reaped,
/// so pid `pgid` is still that process (a reaped pid may have been reused
/// by someone else's session).
pub fn kill_after_grace(pgid: i32, unreaped: bool) {
    let leads_a_session = || Stat::of(pgid).is_some_and(|s| s.session == pgid && !s.is_zombie());
    if unreaped && leads_a_session() {
        for job in other_groups(pgid, &proc_stat::all()) {
            kill_group(job, Signal::HUP);
            kill_group(job, Signal::CONT);
        }
    }
    kill_group(pgid, Signal::KILL);
}

/// The process groups of session `sid` other than its leader's.
fn other_groups(sid: i32, procs: &[(i32, Stat)]) -> BTreeSet<i32> {
    procs
        .iter()
        .filter(|(_, s)| s.session == sid && s.pgrp != sid)
        .map(|(_, s)| s.pgrp)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(pgrp: i32, session: i32) -> Stat {
        Stat {
            state: 'S',
            ppid: 1,
            pgrp,
            session,
            start_time: 0,
        }
    }

    #[test]
    fn a_sessions_jobs_are_its_groups_but_the_leaders_own() {
        let procs = [
            (100, stat(100, 100)), // the shell
            (101, stat(101, 100)), // a job
            (102, stat(101, 100)), // the same job's second process
            (103, stat(103, 100)), // another job
            (200, stat(200, 200)), // another session altogether
            (201, stat(201, 200)),
        ];
        assert_eq!(
            other_groups(100, &procs).into_iter().collect::<Vec<_>>(),
            [101, 103]
        );
        assert!(other_groups(300, &procs).is_empty());
    }
}
