//! What every scenario shares: the seeded random source, and the runner
//! that plays many schedules and reports a failing one so it can be
//! replayed.

/// Schedules per scenario when `REXEC_SIM_SCHEDULES` says nothing: enough
/// to catch what the simulation was written for (see the figures in
/// docs/ARCHITECTURE.md) while `cargo test` stays quick in a debug build.
const DEFAULT_SCHEDULES: u64 = 400;

/// SplitMix64: small, fast, and the same sequence for the same seed on
/// every machine (no crate's algorithm can change under us).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A number in `lo..=hi`.
    pub fn between(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo + 1) as u64) as usize
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

/// Why a schedule failed: at which step, and what broke.
#[derive(Debug)]
pub struct Broken {
    pub step: usize,
    pub what: String,
}

/// Plays `scenario` for `REXEC_SIM_SCHEDULES` seeds (or the one
/// `REXEC_SIM_SEED` names), panicking with the seed, the step and what
/// broke at the first failure. Returns how many schedules ran.
pub fn run(name: &str, scenario: impl Fn(u64) -> Result<(), Broken>) -> u64 {
    let env = |k: &str| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let (first, count) = match env("REXEC_SIM_SEED") {
        Some(seed) => (seed, 1),
        None => (1, env("REXEC_SIM_SCHEDULES").unwrap_or(DEFAULT_SCHEDULES)),
    };
    for seed in first..first + count {
        // A panic in the code under test names its seed too.
        let played = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(seed)));
        let replay = format!("replay: REXEC_SIM_SEED={seed} cargo test -p rexec-server sim_{name}");
        match played {
            Ok(Ok(())) => {}
            Ok(Err(b)) => panic!(
                "sim {name}: seed {seed}, step {}: {}\n  {replay}",
                b.step, b.what
            ),
            Err(p) => {
                let what = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!("sim {name}: seed {seed} panicked: {what}\n  {replay}");
            }
        }
    }
    println!("sim {name}: {count} schedules");
    count
}
