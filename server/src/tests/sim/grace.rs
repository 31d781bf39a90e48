//! The pipe grace of an exited command under a simulated world: the real
//! `PipeGrace` (process.rs) decides, as server/reap.rs asks it, while a
//! command's last output waits in its pipe for a slow client, a background
//! grandchild may hold the pipe open (and now and then write), and time
//! jumps (a stalled client, a suspended machine).
//!
//! The world: the command writes what its pipe holds and exits; the server
//! reads the pipe into the client's queue unless that queue is over its
//! limit (then the pipe is paused, as backpressure does); the client takes
//! from its queue at any pace, or not at all for a while. The grace timer
//! is looked at when it is due.
//!
//! After every step: the pipe is never cut while any byte of the command's
//! own output is still in it (it would be lost, with exit 0: the bug the
//! soak found); and once the pipe has been quiet and empty for a grace
//! period with its holder a silent grandchild, it is cut by the next look
//! (a command is never waited on for ever).

use std::time::{Duration, Instant};

use super::world::{Broken, Rng, run};
use crate::process::{GraceVerdict, PipeGrace, Waiting};

const GRACE: Duration = Duration::from_millis(500);
const STEPS: usize = 5_000;

fn schedule(seed: u64) -> Result<(), Broken> {
    let mut rng = Rng::new(seed);
    let start = Instant::now();
    let mut now = start;
    let cap = rng.between(4 << 10, 1 << 20);
    // The command's output, all in its pipe when it exits.
    let mut in_pipe = rng.between(0, cap);
    let mut bytes_out = 0u64;
    let limit = rng.between(1 << 10, 256 << 10);
    let mut queue = 0usize;
    let grandchild = rng.one_in(2);
    let mut holder_writes = grandchild && rng.one_in(2);
    let mut grace = PipeGrace::begin(now, bytes_out);
    let mut due = now + GRACE;
    // Looks in a row that found nothing waiting and no new output since
    // the look before: the second of them must cut.
    let (mut quiet_looks, mut out_at_last_look) = (0, bytes_out);
    for step in 0..STEPS {
        let broken = |what: String| Broken { step, what };
        // Time passes: a little, or (rarely) a lot.
        let jump = match rng.below(20) {
            0 => GRACE * rng.between(2, 40) as u32,
            1..=5 => Duration::ZERO,
            _ => Duration::from_millis(rng.below(2 * GRACE.as_millis() as u64)),
        };
        now += jump;
        // The client takes from its queue, or does not.
        if !rng.one_in(3) {
            queue -= rng.between(0, queue);
        }
        // The grandchild writes now and then, then perhaps stops for good.
        if holder_writes && rng.one_in(10) {
            in_pipe += rng.between(1, 512);
            if rng.one_in(5) {
                holder_writes = false;
            }
        }
        // The server reads the pipe unless its client's queue is full.
        let paused = queue >= limit;
        if !paused && in_pipe > 0 {
            let n = in_pipe.min(limit.saturating_sub(queue).max(1));
            let n = rng.between(1, n);
            in_pipe -= n;
            queue += n;
            bytes_out += n as u64;
        }
        // Without a grandchild the pipe ends once drained: nothing to cut.
        if !grandchild && in_pipe == 0 {
            return Ok(());
        }
        if now < due {
            continue;
        }
        let waiting = Waiting {
            paused: queue >= limit,
            in_pipes: in_pipe > 0,
        };
        let quiet = !waiting.paused && !waiting.in_pipes && bytes_out == out_at_last_look;
        quiet_looks = if quiet { quiet_looks + 1 } else { 0 };
        out_at_last_look = bytes_out;
        match grace.check(now, bytes_out, waiting, GRACE) {
            GraceVerdict::Wait(_) if quiet_looks >= 2 => {
                return Err(broken(format!(
                    "an empty pipe held by a silent holder is still waited on after {quiet_looks} quiet looks"
                )));
            }
            GraceVerdict::Wait(d) => due = now + d,
            GraceVerdict::Cut if in_pipe > 0 => {
                return Err(broken(format!(
                    "cut with {in_pipe} bytes of output still in the pipe ({} in the client's queue, paused {})",
                    queue, waiting.paused
                )));
            }
            GraceVerdict::Cut => return Ok(()),
        }
    }
    Ok(())
}

#[test]
fn sim_grace() {
    let n = run("grace", schedule);
    assert!(n > 0);
}
