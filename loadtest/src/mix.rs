//! Weighted mixes of transaction types and payment methods (`authorize=60,sale=20,...`).

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use serde::Serialize;

use crate::error::LoadError;

/// Distinct entries a mix may name: every type or method at most once.
pub const MIX_ENTRIES_MAX: usize = 16;
/// Largest weight of one entry; weights are relative, so percentages fit easily.
pub const MIX_WEIGHT_MAX: u32 = 1_000_000;

/// A transaction type the harness sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TxnType {
    /// Reserve an amount (later captured or cancelled).
    Authorize,
    /// Authorize and capture at once.
    Sale,
    /// Capture an approved authorization of this run.
    Capture,
    /// Cancel (void) an approved authorization or sale of this run.
    Cancel,
    /// Refund an approved sale or capture of this run.
    Refund,
    /// Ask for the status of an order of this run.
    Inquiry,
}

impl TxnType {
    /// Every type, in report order.
    pub const ALL: [TxnType; 6] = [
        TxnType::Authorize,
        TxnType::Sale,
        TxnType::Capture,
        TxnType::Cancel,
        TxnType::Refund,
        TxnType::Inquiry,
    ];

    /// The lowercase name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            TxnType::Authorize => "authorize",
            TxnType::Sale => "sale",
            TxnType::Capture => "capture",
            TxnType::Cancel => "cancel",
            TxnType::Refund => "refund",
            TxnType::Inquiry => "inquiry",
        }
    }

    /// Position in [`TxnType::ALL`], for per-type counter arrays.
    pub fn index(self) -> usize {
        match self {
            TxnType::Authorize => 0,
            TxnType::Sale => 1,
            TxnType::Capture => 2,
            TxnType::Cancel => 3,
            TxnType::Refund => 4,
            TxnType::Inquiry => 5,
        }
    }
}

impl fmt::Display for TxnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TxnType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TxnType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown transaction type {s:?}"))
    }
}

/// A payment method the harness uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// A card number (PAN) from one of the configured BIN ranges.
    Card,
    /// Carrier (phone) billing: a mobile number and its carrier.
    Carrier,
    /// Bank transfer: bank code and account.
    Bank,
}

impl Method {
    /// Every method, in report order.
    pub const ALL: [Method; 3] = [Method::Card, Method::Carrier, Method::Bank];

    /// The lowercase name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Method::Card => "card",
            Method::Carrier => "carrier",
            Method::Bank => "bank",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Method::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown payment method {s:?}"))
    }
}

/// Relative weights over a set of choices, picked at random in proportion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix<T> {
    /// Each choice with the running total of weights up to and including it.
    cumulative: Vec<(T, u64)>,
    total: u64,
    /// The first choice: what a (never expected) ticket past the end falls on.
    first: T,
}

impl<T: Copy + PartialEq + fmt::Display + FromStr<Err = String>> Mix<T> {
    /// Builds a mix from `(choice, weight)` pairs; zero weights are kept out.
    pub fn new(entries: &[(T, u32)]) -> Result<Self, LoadError> {
        if entries.len() > MIX_ENTRIES_MAX {
            return Err(LoadError::Mix(format!(
                "more than {MIX_ENTRIES_MAX} entries"
            )));
        }
        let mut cumulative: Vec<(T, u64)> = Vec::with_capacity(entries.len());
        let mut total = 0u64;
        for &(choice, weight) in entries {
            if weight > MIX_WEIGHT_MAX {
                return Err(LoadError::Mix(format!(
                    "weight {weight} of {choice} is above {MIX_WEIGHT_MAX}"
                )));
            }
            if cumulative.iter().any(|(c, _)| *c == choice) {
                return Err(LoadError::Mix(format!("{choice} appears twice")));
            }
            if weight == 0 {
                continue;
            }
            total += u64::from(weight);
            cumulative.push((choice, total));
        }
        let Some(&(first, _)) = cumulative.first() else {
            return Err(LoadError::Mix("every weight is zero".to_owned()));
        };
        Ok(Mix {
            cumulative,
            total,
            first,
        })
    }

    /// A mix of one choice.
    pub fn single(choice: T) -> Self {
        Mix {
            cumulative: vec![(choice, 1)],
            total: 1,
            first: choice,
        }
    }

    /// Parses `name=weight,name=weight,...` (spaces around items are ignored).
    pub fn parse(text: &str) -> Result<Self, LoadError> {
        let mut entries = Vec::new();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, weight) = item
                .split_once('=')
                .ok_or_else(|| LoadError::Mix(format!("{item:?} is not name=weight")))?;
            let choice = name.trim().parse::<T>().map_err(LoadError::Mix)?;
            let weight = weight
                .trim()
                .parse::<u32>()
                .map_err(|_| LoadError::Mix(format!("weight in {item:?} is not a whole number")))?;
            entries.push((choice, weight));
        }
        Self::new(&entries)
    }

    /// Picks a choice with probability weight / total.
    pub fn pick<R: Rng>(&self, rng: &mut R) -> T {
        let ticket = rng.gen_range(0..self.total);
        self.pick_ticket(ticket)
    }

    /// The choice a ticket in `0..total` falls on (the deterministic half of [`Mix::pick`]).
    fn pick_ticket(&self, ticket: u64) -> T {
        let position = self.cumulative.partition_point(|(_, upto)| *upto <= ticket);
        self.cumulative
            .get(position)
            .map_or(self.first, |(choice, _)| *choice)
    }

    /// Each choice with its weight, in the order given.
    pub fn entries(&self) -> Vec<(T, u64)> {
        let mut previous = 0;
        self.cumulative
            .iter()
            .map(|&(choice, upto)| {
                let weight = upto - previous;
                previous = upto;
                (choice, weight)
            })
            .collect()
    }

    /// The weight of `choice` (0 when absent).
    pub fn weight(&self, choice: T) -> u64 {
        self.entries()
            .into_iter()
            .find(|(c, _)| *c == choice)
            .map_or(0, |(_, w)| w)
    }
}

impl<T: Copy + PartialEq + fmt::Display + FromStr<Err = String>> fmt::Display for Mix<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (choice, weight)) in self.entries().into_iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{choice}={weight}")?;
        }
        Ok(())
    }
}

/// The default transaction mix of issue 6.
pub const DEFAULT_TXN_MIX: &str = "authorize=60,sale=20,capture=8,cancel=4,refund=4,inquiry=4";
/// The default payment-method mix.
pub const DEFAULT_METHOD_MIX: &str = "card=90,carrier=5,bank=5";

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn parses_the_default_mixes() {
        let mix = Mix::<TxnType>::parse(DEFAULT_TXN_MIX).unwrap();
        assert_eq!(mix.weight(TxnType::Authorize), 60);
        assert_eq!(mix.weight(TxnType::Inquiry), 4);
        assert_eq!(mix.to_string(), DEFAULT_TXN_MIX);
        let methods = Mix::<Method>::parse(DEFAULT_METHOD_MIX).unwrap();
        assert_eq!(methods.entries().len(), 3);
    }

    #[test]
    fn accepts_spaces_case_and_zero_weights() {
        let mix = Mix::<TxnType>::parse(" Sale = 3 , refund=0,").unwrap();
        assert_eq!(mix.entries(), vec![(TxnType::Sale, 3)]);
    }

    #[test]
    fn refuses_bad_mixes() {
        for bad in [
            "",
            "sale",
            "sale=x",
            "sale=-1",
            "purchase=5",
            "sale=1,sale=2",
            "sale=0",
            "sale=2000000",
        ] {
            assert!(Mix::<TxnType>::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(Mix::<Method>::parse("cash=1").is_err());
    }

    #[test]
    fn tickets_fall_on_their_cumulative_ranges() {
        let mix = Mix::<TxnType>::parse("authorize=2,sale=1,capture=3").unwrap();
        let picks: Vec<_> = (0..6).map(|t| mix.pick_ticket(t)).collect();
        use TxnType::*;
        assert_eq!(
            picks,
            vec![Authorize, Authorize, Sale, Capture, Capture, Capture]
        );
    }

    #[test]
    fn random_picks_follow_the_weights() {
        let mix = Mix::<Method>::parse("card=90,carrier=5,bank=5").unwrap();
        let mut rng = SmallRng::seed_from_u64(7);
        let mut counts = [0u32; 3];
        for _ in 0..10_000 {
            counts[mix.pick(&mut rng) as usize] += 1;
        }
        assert!(
            counts[0] > 8_500 && counts[1] > 300 && counts[2] > 300,
            "{counts:?}"
        );
    }
}
