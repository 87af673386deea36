//! The server wallet vault as the shard keeps it: resolving a request's payment method to an
//! account (a wallet token only for the merchant that made it), TOKENIZE, and the tokens of older
//! builds (bound to their merchant when their snapshot or journal is loaded).

use bytes::Bytes;
use paymesh_codecs::message::{PaymentMethod, TxnAnswer, TxnKind, TxnRequest};
use paymesh_codecs::types::{Pan, ResultCode};

use super::{ShardCore, TXN_SEQ_BITS, VaultEntry, base_answer, shard_of_txn_id};
use crate::core::order::OrderKey;
use crate::core::upstream::Account;

impl<R: Clone> ShardCore<R> {
    pub(super) fn resolve_account(
        &self,
        req: &TxnRequest,
    ) -> Result<(Account, Option<Bytes>), ResultCode> {
        match &req.payment {
            // Copies: the account is kept with the order, and a slice would keep the client's
            // whole read buffer (CVV included) alive with it.
            Some(PaymentMethod::Card { pan, expiry, .. }) => Ok((
                Account::Card {
                    pan: Pan::new(Bytes::copy_from_slice(pan.digits()))
                        .ok_or(ResultCode::InvalidCard)?,
                    expiry: Bytes::copy_from_slice(expiry),
                },
                Some(Bytes::from(pan.masked())),
            )),
            Some(PaymentMethod::WalletToken(token)) => {
                // Another merchant's token, or one bound to another customer (or used without
                // naming its customer), answers exactly as an unknown one.
                let entry = self
                    .vault
                    .get(token)
                    .filter(|e| e.merchant == req.merchant_id)
                    .filter(|e| e.customer.is_none() || e.customer == req.customer_ref)
                    .ok_or(ResultCode::InvalidCard)?;
                Ok((entry.account.clone(), Some(entry.masked.clone())))
            }
            Some(PaymentMethod::CarrierBilling { phone, carrier }) => Ok((
                Account::Phone {
                    phone: Bytes::copy_from_slice(phone),
                    carrier: Bytes::copy_from_slice(carrier),
                },
                None,
            )),
            Some(PaymentMethod::BankTransfer { bank_code, account }) => Ok((
                Account::Bank {
                    bank_code: Bytes::copy_from_slice(bank_code),
                    account: Bytes::copy_from_slice(account),
                },
                None,
            )),
            None => Err(ResultCode::InvalidRequest),
        }
    }

    #[allow(clippy::too_many_arguments)] // each is one fact of the TOKENIZE step
    pub(super) fn tokenize(
        &mut self,
        key: &OrderKey,
        txn_id: u64,
        account: Account,
        masked: Option<Bytes>,
        customer: Option<Bytes>,
        legacy: bool,
        now_ms: u64,
    ) -> TxnAnswer {
        let mut answer = base_answer(TxnKind::Tokenize, ResultCode::Approved, key, now_ms);
        answer.server_txn_id = Some(txn_id);
        if !matches!(account, Account::Card { .. }) {
            answer.result = ResultCode::UnsupportedPaymentMethod;
            return answer;
        }
        if self.vault.len() >= self.settings.vault_tokens_per_shard_max {
            answer.result = ResultCode::Busy;
            return answer;
        }
        // 128 bits no client can guess, and the same again when the journal is replayed; an older
        // build's token (shard and sequence) for its journal's TOKENIZE, bound to its merchant.
        let token = if legacy {
            Bytes::from(legacy_token(txn_id))
        } else {
            Bytes::from(self.settings.secrets.token(txn_id))
        };
        let masked = masked.unwrap_or_default();
        self.vault.insert(
            token.clone(),
            VaultEntry {
                account,
                masked: masked.clone(),
                merchant: key.merchant(),
                customer,
            },
        );
        answer.token = Some(token);
        answer.masked_pan = Some(masked);
        answer
    }

    /// Binds the tokens of an older build's snapshot to the merchant whose TOKENIZE issued them;
    /// a token whose order has left the window is bound to no merchant, and so works for none.
    pub(crate) fn bind_legacy_tokens(&mut self) {
        let Self { vault, orders, .. } = self;
        for (token, entry) in vault.iter_mut() {
            if !entry.merchant.is_empty() {
                continue;
            }
            if let Some((merchant, _)) =
                legacy_token_txn_id(token).and_then(|txn| orders.owner(txn))
            {
                entry.merchant = Bytes::copy_from_slice(merchant);
            }
        }
    }
}

/// The wallet token builds before keyed tokens gave the TOKENIZE with transaction id `txn_id`.
fn legacy_token(txn_id: u64) -> String {
    format!(
        "tok{:04x}{:012x}",
        shard_of_txn_id(txn_id),
        txn_id & ((1 << TXN_SEQ_BITS) - 1)
    )
}

/// The transaction id of the TOKENIZE that issued `token`, if it is an older build's token.
pub(crate) fn legacy_token_txn_id(token: &[u8]) -> Option<u64> {
    let hex = std::str::from_utf8(token.strip_prefix(b"tok")?).ok()?;
    if hex.len() != 16 {
        return None;
    }
    let shard = u64::from_str_radix(hex.get(..4)?, 16).ok()?;
    let seq = u64::from_str_radix(hex.get(4..)?, 16).ok()?;
    Some(shard << TXN_SEQ_BITS | seq)
}
