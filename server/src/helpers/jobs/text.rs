//! How jobs are shown: `rexec jobs` lines and `--json` objects.

use super::record::{Job, State};

pub const HEADER: &str =
    "ID    STATE                STARTED (UTC)         TIME      OUTPUT  COMMAND";

/// One line of the table.
pub fn row(j: &Job, now_ms: u64) -> String {
    format!(
        "{:<5} {:<20} {:<21} {:<9} {:>6}  {}",
        j.meta.id,
        state(&j.state),
        utc(j.meta.started_ms),
        duration(run_ms(j, now_ms)),
        size(j.output()),
        rexec_proto::text::clean(&j.meta.command, 200)
    )
}

/// One JSON object.
pub fn json(j: &Job, now_ms: u64) -> String {
    let (exit_code, signal, dropped) = match &j.state {
        State::Ended(e) => (e.code, e.signal, e.dropped),
        _ => (None, None, 0),
    };
    serde_json::json!({
        "id": j.meta.id,
        "state": match &j.state {
            State::Running => "running",
            State::Ended(e) if e.timed_out => "timed_out",
            State::Ended(e) if e.signal.is_some() => "killed",
            State::Ended(_) => "exited",
            State::Lost => "lost",
        },
        "exit_code": exit_code,
        "signal": signal,
        "started": utc(j.meta.started_ms),
        "started_ms": j.meta.started_ms,
        "duration_ms": run_ms(j, now_ms),
        "output_bytes": j.output(),
        "dropped_bytes": dropped,
        "command": j.meta.command,
        "uid": j.uid,
    })
    .to_string()
}

/// `running`, `exited N`, `killed by signal N`, `timed out`, `lost`.
pub fn state(s: &State) -> String {
    match s {
        State::Running => "running".into(),
        State::Ended(e) if e.timed_out => "timed out".into(),
        State::Ended(e) => match (e.code, e.signal) {
            (Some(c), _) => format!("exited {c}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            (None, None) => "ended".into(),
        },
        State::Lost => "lost".into(),
    }
}

/// How long it ran (or has been running).
fn run_ms(j: &Job, now_ms: u64) -> u64 {
    let end = match &j.state {
        State::Ended(e) => e.ended_ms,
        State::Running => now_ms,
        State::Lost => j.meta.started_ms,
    };
    end.saturating_sub(j.meta.started_ms)
}

fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{}.{}s", s, (ms % 1000) / 100),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn size(b: u64) -> String {
    match b {
        0..1024 => format!("{b}"),
        _ if b < 1 << 20 => format!("{:.1}K", b as f64 / 1024.0),
        _ if b < 1 << 30 => format!("{:.1}M", b as f64 / (1 << 20) as f64),
        _ => format!("{:.1}G", b as f64 / (1 << 30) as f64),
    }
}

/// `2026-11-30 01:02:03Z` from milliseconds since the epoch.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let t = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        t / 3600,
        (t % 3600) / 60,
        t % 60
    )
}

/// The date of a day number since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_sizes_and_states_read_as_people_write_them() {
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc(1_767_323_045_000), "2026-01-02 03:04:05Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00Z");
        assert_eq!(duration(1_500), "1.5s");
        assert_eq!(duration(65_000), "1m05s");
        assert_eq!(duration(7_260_000), "2h01m");
        assert_eq!(size(10), "10");
        assert_eq!(size(1536), "1.5K");
        assert_eq!(size(3 << 20), "3.0M");
        let ended = |code, signal| {
            State::Ended(super::super::record::Ended {
                code,
                signal,
                ..Default::default()
            })
        };
        assert_eq!(state(&ended(Some(3), None)), "exited 3");
        assert_eq!(state(&ended(None, Some(9))), "killed by signal 9");
        assert_eq!(state(&State::Lost), "lost");
    }
}
