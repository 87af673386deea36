//! [`Book`]: the host's mutable state. Balances of the accounts that moved, what each approved
//! request did (so that its reversal can undo it), and the approval code counter.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

/// Accounts whose balance the book remembers. Beyond it, a new account is decided against its
/// configured balance and its changes are not kept (counted in [`Book::untracked`]).
pub const BOOK_ACCOUNTS_MAX: usize = 1_000_000;
/// Approved requests remembered for reversals; the oldest is forgotten first.
pub const BOOK_EFFECTS_MAX: usize = 1_000_000;

/// What an approved request did to its account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Took this many minor units.
    Debit(u64),
    /// Gave back this many minor units.
    Credit(u64),
}

/// Per-account state of one host, changed only by [`crate::rules::HostRules::decide`].
#[derive(Debug, Default, Clone)]
pub struct Book {
    /// Balances that differ from (or were read from) the configuration.
    balances: HashMap<Bytes, u64>,
    /// Effect of each remembered approved request, keyed by account and STAN, with the sequence
    /// number of its entry in `effects_order`.
    effects: HashMap<(Bytes, u32), (u64, Effect)>,
    /// Sequence number and key of each remembered effect, oldest first.
    effects_order: VecDeque<(u64, (Bytes, u32))>,
    /// Effects remembered so far; also the next sequence number.
    effects_seen: u64,
    /// Approval codes handed out.
    approvals: u64,
    /// Balance changes not kept because the book was full.
    untracked: u64,
}

impl Book {
    /// The balance of `account`, `configured` if it has not moved yet.
    pub fn balance(&self, account: &[u8], configured: u64) -> u64 {
        self.balances.get(account).copied().unwrap_or(configured)
    }

    /// Sets the balance of `account` (not kept if the book is full of other accounts).
    pub(crate) fn set_balance(&mut self, account: &Bytes, balance: u64) {
        if let Some(slot) = self.balances.get_mut(account) {
            *slot = balance;
        } else if self.balances.len() < BOOK_ACCOUNTS_MAX {
            self.balances.insert(account.clone(), balance);
        } else {
            self.untracked = self.untracked.saturating_add(1);
        }
    }

    /// Remembers what the request with `stan` did to `account`, forgetting the oldest effect when
    /// full. A later request reusing the same account and STAN replaces it.
    pub(crate) fn remember(&mut self, account: &Bytes, stan: u32, effect: Effect) {
        if self.effects_order.len() >= BOOK_EFFECTS_MAX
            && let Some((seq, key)) = self.effects_order.pop_front()
            && self.effects.get(&key).is_some_and(|(s, _)| *s == seq)
        {
            self.effects.remove(&key);
        }
        let seq = self.effects_seen;
        self.effects_seen = self.effects_seen.wrapping_add(1);
        let key = (account.clone(), stan);
        self.effects.insert(key.clone(), (seq, effect));
        self.effects_order.push_back((seq, key));
    }

    /// Takes back the effect of the request with `stan` on `account`, if remembered: a second
    /// reversal of the same request finds nothing.
    pub(crate) fn forget(&mut self, account: &[u8], stan: u32) -> Option<Effect> {
        let key = (Bytes::copy_from_slice(account), stan);
        self.effects.remove(&key).map(|(_, effect)| effect)
    }

    /// The next approval code: six digits counting approvals, so deterministic for a given
    /// sequence of requests.
    pub(crate) fn next_approval_code(&mut self) -> [u8; 6] {
        self.approvals = self.approvals.wrapping_add(1);
        let mut code = [b'0'; 6];
        let mut rest = self.approvals;
        for digit in code.iter_mut().rev() {
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        code
    }

    /// Approval codes handed out so far.
    pub fn approvals(&self) -> u64 {
        self.approvals
    }

    /// Balance changes lost because [`BOOK_ACCOUNTS_MAX`] accounts were already kept.
    pub fn untracked(&self) -> u64 {
        self.untracked
    }

    /// Approved requests currently remembered for reversal.
    pub fn remembered(&self) -> usize {
        self.effects.len()
    }
}
