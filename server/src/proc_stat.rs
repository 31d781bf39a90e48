//! What `/proc/PID/stat` says about a process: the one parser of that
//! line, for everyone who asks (the supervisor's family tree, the jobs'
//! start times, a hung-up terminal session's members).

/// The fields of `/proc/PID/stat` rexecd reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// `R`, `S`, `Z`, ... (`Z`: it has ended, and waits to be reaped).
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    /// When it started, in clock ticks after boot.
    pub start_time: u64,
}

impl Stat {
    /// Process `pid`'s, if it exists.
    pub fn of(pid: i32) -> Option<Stat> {
        if pid <= 0 {
            return None;
        }
        parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    pub fn is_zombie(&self) -> bool {
        self.state == 'Z'
    }
}

/// Parses a stat line. The command name (field 2) is in parentheses and
/// may itself hold spaces and parentheses, so fields are counted from the
/// last `)`.
fn parse(line: &str) -> Option<Stat> {
    let after = line.get(line.rfind(')')? + 1..)?;
    let mut f = after.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    let session = f.next()?.parse().ok()?;
    // Fields 7 to 21 (tty to itrealvalue), then 22: the start time.
    let start_time = f.nth(15)?.parse().ok()?;
    Some(Stat {
        state,
        ppid,
        pgrp,
        session,
        start_time,
    })
}

/// Every process's pid and stat, from one pass over /proc (a process that
/// ends during the pass is left out).
pub fn all() -> Vec<(i32, Stat)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| Some((pid, Stat::of(pid)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_with_spaces_and_parentheses_does_not_shift_the_fields() {
        let line = "4242 (a) b (c) S 17 4242 4200 34816 4242 4194560 \
                    100 0 0 0 1 2 0 0 20 0 1 0 98765 5000 300 18446744073709551615";
        let s = parse(line).expect("parses");
        assert_eq!(
            s,
            Stat {
                state: 'S',
                ppid: 17,
                pgrp: 4242,
                session: 4200,
                start_time: 98765
            }
        );
    }

    #[test]
    fn a_truncated_line_is_no_stat() {
        assert_eq!(parse("4242 (sh) S 17 4242"), None);
        assert_eq!(parse("no parenthesis at all"), None);
    }

    #[test]
    fn this_process_reads_as_itself() {
        let me = Stat::of(std::process::id() as i32).expect("our own stat");
        assert!(!me.is_zombie());
        assert_eq!(
            me.ppid,
            rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get())
        );
        assert_eq!(me.pgrp, rustix::process::getpgrp().as_raw_nonzero().get());
        let listed = all()
            .into_iter()
            .find(|(pid, _)| *pid == std::process::id() as i32)
            .map(|(_, s)| (s.pgrp, s.session, s.start_time));
        assert_eq!(listed, Some((me.pgrp, me.session, me.start_time)));
    }
}
