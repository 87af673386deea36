//! [`Faults`]: how often a host misbehaves, and [`FaultAction`], what it does to one answer;
//! [`NetworkManagement`]: how a host treats sign-on, echo and links that have not signed on.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::SimError;

/// The longest extra delay of a late answer.
pub const LATE_ANSWER_MS_MAX: u64 = 600_000;

/// Probabilities (0 to 1, summing to at most 1) of each fault, per request. At most one fault
/// applies to a request.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// The request is processed but its answer never sent.
    pub drop_answer_p: f64,
    /// The answer is sent `late_answer_ms` after its latency.
    pub late_answer_p: f64,
    /// Extra delay of a late answer, milliseconds.
    pub late_answer_ms: u64,
    /// The request is processed, then the host closes the connection without answering (the
    /// other answers still pending on that connection are lost too).
    pub disconnect_p: f64,
    /// A length-headed frame of bytes that do not decode as ISO 8583 is sent instead of the answer.
    pub garbage_p: f64,
    /// The answer is sent twice.
    pub duplicate_answer_p: f64,
}

/// How a host treats network management (0800) and the connections that have not signed on.
/// Network management requests are answered at once: [`Faults`] and the latency apply to
/// transactions only, as real hosts answer 0800s from the switch without waiting on an issuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkManagement {
    /// Transactions on a connection that has not signed on (an 0800 with field 70 = 001
    /// answered 00), or has signed off (002), are answered 91 without being processed.
    pub require_sign_on: bool,
    /// Sign-ons are answered 91 (refused).
    pub refuse_sign_on: bool,
    /// Sign-ons get no answer.
    pub drop_sign_on: bool,
    /// Echo tests (301) get no answer.
    pub drop_echo: bool,
}

/// What happens to one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultAction {
    /// Answered normally.
    #[default]
    None,
    /// Not answered.
    Drop,
    /// Answered `late_answer_ms` late.
    Late,
    /// Not answered; the connection is closed.
    Disconnect,
    /// Answered with undecodable bytes.
    Garbage,
    /// Answered twice.
    Duplicate,
}

impl Faults {
    /// No faults.
    pub const NONE: Faults = Faults {
        drop_answer_p: 0.0,
        late_answer_p: 0.0,
        late_answer_ms: 0,
        disconnect_p: 0.0,
        garbage_p: 0.0,
        duplicate_answer_p: 0.0,
    };

    fn probabilities(&self) -> [(f64, FaultAction); 5] {
        [
            (self.drop_answer_p, FaultAction::Drop),
            (self.late_answer_p, FaultAction::Late),
            (self.disconnect_p, FaultAction::Disconnect),
            (self.garbage_p, FaultAction::Garbage),
            (self.duplicate_answer_p, FaultAction::Duplicate),
        ]
    }

    /// Checks that each probability is in 0..=1, that they sum to at most 1 and that the late
    /// delay is bounded.
    pub fn validate(&self) -> Result<(), SimError> {
        let probabilities = self.probabilities();
        if let Some((p, action)) = probabilities.iter().find(|(p, _)| !(0.0..=1.0).contains(p)) {
            return Err(SimError::Config(format!(
                "fault probability {p} for {action:?} is outside 0..=1"
            )));
        }
        let sum: f64 = probabilities.iter().map(|(p, _)| p).sum();
        if sum > 1.0 + 1e-9 {
            return Err(SimError::Config(format!(
                "fault probabilities sum to {sum}, more than 1"
            )));
        }
        if self.late_answer_ms > LATE_ANSWER_MS_MAX {
            return Err(SimError::Config(format!(
                "late_answer_ms {} exceeds {LATE_ANSWER_MS_MAX}",
                self.late_answer_ms
            )));
        }
        Ok(())
    }

    /// Whether any fault can happen.
    pub fn any(&self) -> bool {
        self.probabilities().iter().any(|(p, _)| *p > 0.0)
    }

    /// The fault for one request. Draws nothing from `rng` when no fault can happen, so turning
    /// faults off does not change the latencies drawn.
    pub fn roll<R: Rng + ?Sized>(&self, rng: &mut R) -> FaultAction {
        if !self.any() {
            return FaultAction::None;
        }
        let mut x: f64 = rng.r#gen::<f64>();
        for (p, action) in self.probabilities() {
            if x < p {
                return action;
            }
            x -= p;
        }
        FaultAction::None
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;

    fn counts(faults: Faults, n: usize) -> [usize; 6] {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut out = [0; 6];
        for _ in 0..n {
            out[faults.roll(&mut rng) as usize] += 1;
        }
        out
    }

    #[test]
    fn none_and_certain() {
        assert_eq!(counts(Faults::NONE, 1_000)[0], 1_000);
        assert_eq!(Faults::default(), Faults::NONE);
        for (faults, action) in [
            (
                Faults {
                    drop_answer_p: 1.0,
                    ..Faults::NONE
                },
                FaultAction::Drop,
            ),
            (
                Faults {
                    late_answer_p: 1.0,
                    ..Faults::NONE
                },
                FaultAction::Late,
            ),
            (
                Faults {
                    disconnect_p: 1.0,
                    ..Faults::NONE
                },
                FaultAction::Disconnect,
            ),
            (
                Faults {
                    garbage_p: 1.0,
                    ..Faults::NONE
                },
                FaultAction::Garbage,
            ),
            (
                Faults {
                    duplicate_answer_p: 1.0,
                    ..Faults::NONE
                },
                FaultAction::Duplicate,
            ),
        ] {
            faults.validate().unwrap();
            assert_eq!(counts(faults, 100)[action as usize], 100, "{action:?}");
        }
    }

    #[test]
    fn frequencies() {
        let faults = Faults {
            drop_answer_p: 0.1,
            duplicate_answer_p: 0.2,
            ..Faults::NONE
        };
        let c = counts(faults, 10_000);
        assert!(
            (800..1_200).contains(&c[FaultAction::Drop as usize]),
            "{c:?}"
        );
        assert!(
            (1_800..2_200).contains(&c[FaultAction::Duplicate as usize]),
            "{c:?}"
        );
        assert!(
            (6_600..7_400).contains(&c[FaultAction::None as usize]),
            "{c:?}"
        );
    }

    #[test]
    fn validation() {
        assert!(
            Faults {
                drop_answer_p: -0.1,
                ..Faults::NONE
            }
            .validate()
            .is_err()
        );
        assert!(
            Faults {
                garbage_p: f64::NAN,
                ..Faults::NONE
            }
            .validate()
            .is_err()
        );
        assert!(
            Faults {
                drop_answer_p: 0.6,
                late_answer_p: 0.6,
                ..Faults::NONE
            }
            .validate()
            .is_err()
        );
        assert!(
            Faults {
                late_answer_ms: LATE_ANSWER_MS_MAX + 1,
                ..Faults::NONE
            }
            .validate()
            .is_err()
        );
    }
}
