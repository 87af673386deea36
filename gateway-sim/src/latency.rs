//! [`Latency`]: how long a host takes to answer, as a distribution sampled with a caller's random
//! number generator (seeded, so a run can be replayed).

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::SimError;

/// The longest latency any distribution yields; samples beyond it are cut to it.
pub const LATENCY_MS_MAX: u64 = 600_000;

/// The normal quantile of 0.99: a log-normal's p99 is `exp(mu + Z_P99 * sigma)`.
const Z_P99: f64 = 2.326_347_874;

/// A host's answer latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Latency {
    /// Always `ms` milliseconds.
    Fixed {
        /// Milliseconds.
        ms: u64,
    },
    /// Uniform between `min_ms` and `max_ms` inclusive.
    Uniform {
        /// Shortest, milliseconds.
        min_ms: u64,
        /// Longest, milliseconds.
        max_ms: u64,
    },
    /// Log-normal with the given median and 99th percentile: most answers near the median, a few
    /// far slower, as real hosts behave.
    LongTail {
        /// The median, milliseconds (at least 1).
        median_ms: u64,
        /// The 99th percentile, milliseconds (at least the median).
        p99_ms: u64,
    },
}

impl Default for Latency {
    /// Uniform 0 to 1 ms.
    fn default() -> Latency {
        Latency::Uniform {
            min_ms: 0,
            max_ms: 1,
        }
    }
}

impl Latency {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), SimError> {
        let ok = match *self {
            Latency::Fixed { ms } => ms <= LATENCY_MS_MAX,
            Latency::Uniform { min_ms, max_ms } => min_ms <= max_ms && max_ms <= LATENCY_MS_MAX,
            Latency::LongTail { median_ms, p99_ms } => {
                median_ms >= 1 && median_ms <= p99_ms && p99_ms <= LATENCY_MS_MAX
            }
        };
        match ok {
            true => Ok(()),
            false => Err(SimError::Config(format!(
                "latency {self:?}: min <= max, 1 <= median <= p99, all at most {LATENCY_MS_MAX} ms"
            ))),
        }
    }

    /// One latency, at most [`LATENCY_MS_MAX`].
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        let ms = match *self {
            Latency::Fixed { ms } => ms,
            Latency::Uniform { min_ms, max_ms } if min_ms < max_ms => {
                rng.gen_range(min_ms..=max_ms)
            }
            Latency::Uniform { min_ms, .. } => min_ms,
            Latency::LongTail { median_ms, p99_ms } => {
                let mu = (median_ms.max(1) as f64).ln();
                let sigma = ((p99_ms.max(median_ms).max(1) as f64).ln() - mu) / Z_P99;
                let z = standard_normal(rng);
                // `as` saturates: NaN becomes 0, infinity u64::MAX, cut just below.
                (mu + sigma * z).exp().round() as u64
            }
        };
        Duration::from_millis(ms.min(LATENCY_MS_MAX))
    }
}

/// A standard normal sample (Box-Muller), from two uniforms.
fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    // 1 - [0, 1) is (0, 1]: the logarithm stays finite.
    let u1: f64 = 1.0 - rng.r#gen::<f64>();
    let u2: f64 = rng.r#gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;

    fn samples(latency: Latency, n: usize) -> Vec<u64> {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut out: Vec<u64> = (0..n)
            .map(|_| latency.sample(&mut rng).as_millis() as u64)
            .collect();
        out.sort_unstable();
        out
    }

    #[test]
    fn fixed_and_uniform() {
        assert!(
            samples(Latency::Fixed { ms: 5 }, 100)
                .iter()
                .all(|&ms| ms == 5)
        );
        let uniform = samples(
            Latency::Uniform {
                min_ms: 3,
                max_ms: 6,
            },
            1_000,
        );
        assert_eq!((uniform[0], uniform[999]), (3, 6));
        assert!(
            samples(
                Latency::Uniform {
                    min_ms: 4,
                    max_ms: 4
                },
                10
            )
            .iter()
            .all(|&ms| ms == 4)
        );
        assert!(samples(Latency::default(), 100).iter().all(|&ms| ms <= 1));
    }

    #[test]
    fn long_tail_has_its_median_and_p99() {
        let s = samples(
            Latency::LongTail {
                median_ms: 20,
                p99_ms: 400,
            },
            20_000,
        );
        let (median, p99) = (s[10_000], s[19_800]);
        assert!((17..=23).contains(&median), "median {median}");
        assert!((300..=530).contains(&p99), "p99 {p99}");
        let flat = samples(
            Latency::LongTail {
                median_ms: 20,
                p99_ms: 20,
            },
            100,
        );
        assert!(flat.iter().all(|&ms| ms == 20));
        let huge = samples(
            Latency::LongTail {
                median_ms: 1,
                p99_ms: LATENCY_MS_MAX,
            },
            1_000,
        );
        assert!(huge.iter().all(|&ms| ms <= LATENCY_MS_MAX));
    }

    #[test]
    fn validation_and_toml() {
        assert!(
            Latency::Uniform {
                min_ms: 2,
                max_ms: 1
            }
            .validate()
            .is_err()
        );
        assert!(
            Latency::LongTail {
                median_ms: 0,
                p99_ms: 1
            }
            .validate()
            .is_err()
        );
        assert!(
            Latency::LongTail {
                median_ms: 5,
                p99_ms: 4
            }
            .validate()
            .is_err()
        );
        assert!(
            Latency::Fixed {
                ms: LATENCY_MS_MAX + 1
            }
            .validate()
            .is_err()
        );
        #[derive(Deserialize)]
        struct Holder {
            latency: Latency,
        }
        let h: Holder =
            toml::from_str("latency = { kind = \"long_tail\", median_ms = 5, p99_ms = 80 }")
                .unwrap();
        assert_eq!(
            h.latency,
            Latency::LongTail {
                median_ms: 5,
                p99_ms: 80
            }
        );
    }
}
