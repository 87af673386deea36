//! Who may do what in a shard: admitting a request from its network (grants), deciding whether
//! a network may see an order (its creator, or any network granted a merchant that shares its
//! orders), device signatures, and each network's count of orders that hold the window (the
//! per-network quota). The rules themselves are in [`crate::core::access`] and
//! [`crate::core::device`]; this is where the shard applies them to its orders.

use bytes::Bytes;
use paymesh_codecs::message::{TxnAnswer, TxnKind, TxnRequest};
use paymesh_codecs::types::ResultCode;

use super::{HashMap, ShardCore, echo_answer};
use crate::core::access::{Caller, NETWORK_UNRECORDED, NetworkNo, Origin};

impl<R: Clone> ShardCore<R> {
    /// Whether the network may make `req` at all: the network of a request naming a merchant must
    /// be granted it, and is answered exactly as for a merchant that is not configured when it is
    /// not. Gives the network's number in this shard.
    pub(super) fn admit(
        &mut self,
        origin: Origin<'_>,
        req: &TxnRequest,
        now_ms: u64,
    ) -> Result<Caller, Box<TxnAnswer>> {
        let network = match origin {
            Origin::Network(network) => network,
            Origin::Replayed(network) => {
                // Numbered even when the table is full (it cannot be: only configured networks
                // were ever admitted), so that replay never refuses what was acknowledged.
                let number = self.networks.number(network).unwrap_or(NETWORK_UNRECORDED);
                return Ok(Caller {
                    network: number,
                    replayed: true,
                    legacy: false,
                });
            }
            Origin::Unrecorded => {
                return Ok(Caller {
                    network: NETWORK_UNRECORDED,
                    replayed: true,
                    legacy: true,
                });
            }
        };
        let admitted = if req.kind == TxnKind::Inquiry {
            self.settings.may_inquire(network, &req.merchant_id)
        } else {
            self.settings.may_act(network, &req.merchant_id)
        };
        let unconfigured = || {
            let code = match req.kind {
                TxnKind::Inquiry => ResultCode::NotFound,
                _ => ResultCode::UnknownMerchant,
            };
            Box::new(echo_answer(req.kind, code, req, now_ms))
        };
        if !admitted {
            return Err(unconfigured());
        }
        // Bounded: only networks of the access table get here.
        let number = self.networks.number(network).ok_or_else(unconfigured)?;
        Ok(Caller {
            network: number,
            replayed: false,
            legacy: false,
        })
    }

    /// Whether network `caller` may see and follow up `order` of `key`'s merchant: the order's
    /// creator may, and any network granted the merchant where its policy shares orders (or the
    /// creator was not recorded).
    pub(super) fn may_touch(&self, caller: Caller, merchant: &[u8], creator: NetworkNo) -> bool {
        if caller.replayed {
            return true;
        }
        let Some(name) = self.networks.name(caller.network) else {
            return false;
        };
        let creator = match creator {
            NETWORK_UNRECORDED => None,
            n if n == caller.network => Some(&name[..]),
            n => Some(self.networks.name(n).map_or(&b""[..], |b| &b[..])),
        };
        self.settings.may_see(name, merchant, creator)
    }

    /// The transaction id of the order under the request's key, if any, and whether it is hidden
    /// from `caller` (another network's order: see [`ShardCore::may_touch`]).
    pub(super) fn find_for(&self, caller: Caller, req: &TxnRequest) -> (Option<u64>, bool) {
        let existing = self.orders.find(&req.merchant_id, &req.order_id);
        let hidden = existing
            .and_then(|t| self.orders.owner(t))
            .is_some_and(|(_, creator)| !self.may_touch(caller, &req.merchant_id, creator));
        (existing, hidden)
    }

    /// The device signature rules ([`super::device`]): the refusal to answer, if any. A replayed
    /// request passed them when it was journaled: its counter is marked used without checking
    /// again (a device revoked since must not undo what was acknowledged). A refused request
    /// changes nothing and is not journaled.
    pub(super) fn check_device(
        &mut self,
        caller: Caller,
        req: &TxnRequest,
        now_ms: u64,
    ) -> Option<Box<TxnAnswer>> {
        if caller.replayed {
            self.devices.replayed(req);
            return None;
        }
        self.devices.refuse(&self.settings.devices, req, now_ms)
    }

    /// The id of the network that created the order with transaction id `txn_id`, if the order
    /// is held and its creator was recorded.
    pub fn creator_of(&self, txn_id: u64) -> Option<&Bytes> {
        let (_, creator) = self.orders.owner(txn_id)?;
        self.networks.name(creator)
    }

    /// The orders a network holds in the window that cannot leave it, kept current across a
    /// step that changed one order: `before` and `after` are [`OrderWindow::holding`].
    pub(super) fn count_open(
        &mut self,
        before: Option<(NetworkNo, bool)>,
        after: Option<(NetworkNo, bool)>,
    ) {
        if let Some((network, true)) = before
            && let Some(n) = self.open_by_network.get_mut(&network)
        {
            *n = n.saturating_sub(1);
        }
        if let Some((network, true)) = after {
            *self.open_by_network.entry(network).or_default() += 1;
        }
    }

    /// Counts again, from every order, what each network holds in the window (after a snapshot
    /// is loaded).
    pub(crate) fn recount_open(&mut self) {
        let mut counts: HashMap<NetworkNo, usize> = HashMap::default();
        self.orders.for_each_holding(|network, holds| {
            if holds {
                *counts.entry(network).or_default() += 1;
            }
        });
        self.open_by_network = counts;
    }

    /// Orders `network` holds in this shard's window that cannot leave it.
    pub fn open_orders_of(&self, network: &[u8]) -> usize {
        self.networks
            .get(network)
            .and_then(|n| self.open_by_network.get(&n))
            .copied()
            .unwrap_or(0)
    }
}
