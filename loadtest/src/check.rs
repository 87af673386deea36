//! The table of outstanding requests and the check of every answer against its request.
//! Sans-IO: frames in, verdicts out.
//!
//! A correlation id is `(sequence << SLOT_BITS) | slot`: the slot finds the request without
//! hashing, and the sequence makes every id of a connection unique, so a late or invented answer
//! can never be taken for another request's.

use bytes::Bytes;
use paymesh_codecs::frame::Frame;
use paymesh_codecs::message::{ANSWER_BIT, Message, TxnKind, msg_type};
use paymesh_codecs::types::ResultCode;
use serde::Serialize;

use crate::config::{OUTSTANDING_PER_CONNECTION_MAX, Peer};
use crate::mix::TxnType;
use crate::workload::OrderKey;

/// Bits of a correlation id that name the slot: enough for [`OUTSTANDING_PER_CONNECTION_MAX`].
const SLOT_BITS: u32 = 12;
const _: () = assert!(OUTSTANDING_PER_CONNECTION_MAX <= 1 << SLOT_BITS);

/// A request sent and not yet answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The type drawn from the mix.
    pub txn_type: TxnType,
    /// The request's message type (0x10..; the answer's is this | 0x80).
    pub msg_type: u8,
    /// The order it creates or refers to (kept for the approved-order pool).
    pub order: OrderKey,
    /// Order id the answer must echo.
    pub order_id: Bytes,
    /// Amount the answer must echo, when the request carried one.
    pub amount: Option<u64>,
    /// Body length of the request (what the echo server's answer must have).
    pub body_len: u32,
    /// Intended send time, microseconds from the run's start (latency counts from here).
    pub intended_us: u64,
    /// Actual send time, microseconds from the run's start (service time counts from here).
    pub sent_us: u64,
    /// Whether it counts in the figures (false during the warm-up).
    pub measured: bool,
}

/// Outstanding requests of one connection, at most `capacity` of them.
#[derive(Debug)]
pub struct Outstanding {
    slots: Vec<Option<(u64, Pending)>>,
    free: Vec<u16>,
    sequence: u64,
}

impl Outstanding {
    /// A table for `capacity` requests (at most [`OUTSTANDING_PER_CONNECTION_MAX`]).
    pub fn new(capacity: usize) -> Outstanding {
        let capacity = capacity.clamp(1, OUTSTANDING_PER_CONNECTION_MAX);
        Outstanding {
            slots: vec![None; capacity],
            free: (0..capacity as u16).rev().collect(),
            sequence: 0,
        }
    }

    /// Records `pending` and returns its new correlation id, or `None` when the table is full.
    pub fn insert(&mut self, pending: Pending) -> Option<u64> {
        let slot = self.free.pop()?;
        self.sequence += 1;
        let correlation_id = (self.sequence << SLOT_BITS) | u64::from(slot);
        match self.slots.get_mut(usize::from(slot)) {
            Some(entry) => *entry = Some((correlation_id, pending)),
            None => return None,
        }
        Some(correlation_id)
    }

    /// Records the body length of a request once it is encoded (its id is part of its header).
    pub fn set_body_len(&mut self, correlation_id: u64, body_len: u32) {
        if let Some(pending) = self.get_mut(correlation_id) {
            pending.body_len = body_len;
        }
    }

    fn get_mut(&mut self, correlation_id: u64) -> Option<&mut Pending> {
        let slot = (correlation_id & ((1 << SLOT_BITS) - 1)) as usize;
        match self.slots.get_mut(slot) {
            Some(Some((id, pending))) if *id == correlation_id => Some(pending),
            _ => None,
        }
    }

    /// Takes the request with this correlation id out of the table.
    pub fn remove(&mut self, correlation_id: u64) -> Option<Pending> {
        let slot = (correlation_id & ((1 << SLOT_BITS) - 1)) as u16;
        let entry = self.slots.get_mut(usize::from(slot))?;
        if !matches!(entry, Some((id, _)) if *id == correlation_id) {
            return None;
        }
        let (_, pending) = entry.take()?;
        self.free.push(slot);
        Some(pending)
    }

    /// Requests outstanding.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Whether nothing is outstanding.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether another request fits.
    pub fn has_room(&self) -> bool {
        !self.free.is_empty()
    }

    /// Empties the table, returning what was never answered.
    pub fn drain(&mut self) -> Vec<Pending> {
        let left: Vec<Pending> = self
            .slots
            .iter_mut()
            .filter_map(Option::take)
            .map(|(_, p)| p)
            .collect();
        self.free = (0..self.slots.len() as u16).rev().collect();
        left
    }
}

/// How an answer contradicts its request. Counted apart from declines and protocol errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mismatch {
    /// The correlation id is not that of any outstanding request.
    UnknownCorrelation,
    /// The answer's message type is not the request's answer type.
    AnswerType,
    /// The echoed order id differs from the request's (or is missing from an approval).
    OrderId,
    /// The echoed amount differs from the request's (or is missing from an approval).
    Amount,
    /// The result code is not one the protocol defines.
    ResultCode,
    /// The echo server's answer body is not the request's size.
    EchoSize,
}

/// A protocol-level failure. Counted apart from declines and mismatches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProtocolFault {
    /// The server sent REJECT (with this result code).
    Reject,
    /// The answer's body could not be decoded.
    Undecodable,
    /// A message type a server should not send to a logged-in client.
    UnexpectedMessage,
    /// The byte stream broke (bad magic, checksum...): the connection is closed.
    Framing,
    /// The server closed the connection with requests outstanding.
    ConnectionClosed,
}

/// The verdict on one received frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A well-formed answer that matches its request.
    Answered {
        /// The request it answers.
        pending: Pending,
        /// Its result code.
        result: ResultCode,
    },
    /// An answer that contradicts its request (or matches none).
    Mismatch {
        /// How.
        mismatch: Mismatch,
        /// The request it claims to answer, if any.
        pending: Option<Pending>,
    },
    /// A REJECT, or an answer that cannot be decoded.
    Fault {
        /// What kind.
        fault: ProtocolFault,
        /// The request concerned, if any.
        pending: Option<Pending>,
    },
    /// Not an answer to a request (a heartbeat answer): nothing to count.
    Ignored,
}

/// Checks one frame received on a logged-in connection against the outstanding requests.
pub fn check_frame(outstanding: &mut Outstanding, frame: &Frame, peer: Peer) -> Verdict {
    let header = &frame.header;
    if peer == Peer::Paymesh {
        match header.msg_type {
            msg_type::HEARTBEAT_ANSWER => return Verdict::Ignored,
            msg_type::REJECT => {
                let pending = outstanding.remove(header.correlation_id);
                return Verdict::Fault {
                    fault: ProtocolFault::Reject,
                    pending,
                };
            }
            _ => {}
        }
    }
    let Some(pending) = outstanding.remove(header.correlation_id) else {
        return Verdict::Mismatch {
            mismatch: Mismatch::UnknownCorrelation,
            pending: None,
        };
    };
    let mismatch = |mismatch, pending| Verdict::Mismatch {
        mismatch,
        pending: Some(pending),
    };
    if header.msg_type != pending.msg_type | ANSWER_BIT {
        if peer == Peer::Paymesh && TxnKind::from_answer_type(header.msg_type).is_none() {
            return Verdict::Fault {
                fault: ProtocolFault::UnexpectedMessage,
                pending: Some(pending),
            };
        }
        return mismatch(Mismatch::AnswerType, pending);
    }
    if peer == Peer::Echo {
        if frame.body.len() != pending.body_len as usize {
            return mismatch(Mismatch::EchoSize, pending);
        }
        return Verdict::Answered {
            pending,
            result: ResultCode::Approved,
        };
    }
    let answer = match Message::decode(frame) {
        Ok(Message::Answer(answer)) => answer,
        Ok(_) | Err(_) => {
            return Verdict::Fault {
                fault: ProtocolFault::Undecodable,
                pending: Some(pending),
            };
        }
    };
    let approved = answer.result.is_approved();
    if matches!(answer.result, ResultCode::Other(_)) {
        return mismatch(Mismatch::ResultCode, pending);
    }
    match &answer.order_id {
        Some(order_id) if *order_id != pending.order_id => {
            return mismatch(Mismatch::OrderId, pending);
        }
        None if approved => return mismatch(Mismatch::OrderId, pending),
        _ => {}
    }
    if let Some(sent) = pending.amount {
        match answer.amount {
            Some(echoed) if echoed != sent => return mismatch(Mismatch::Amount, pending),
            None if approved => return mismatch(Mismatch::Amount, pending),
            _ => {}
        }
    }
    Verdict::Answered {
        pending,
        result: answer.result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use paymesh_codecs::frame::{FRAME_BODY_BYTES_MAX, FrameHeader, decode_frame, encode_frame};
    use paymesh_codecs::message::{Reject, TxnAnswer, TxnRequest};

    fn pending(amount: Option<u64>) -> Pending {
        Pending {
            txn_type: TxnType::Authorize,
            msg_type: TxnKind::Authorize.request_type(),
            order: OrderKey::default(),
            order_id: Bytes::from_static(b"run-0001-1"),
            amount,
            body_len: 40,
            intended_us: 5,
            sent_us: 6,
            measured: true,
        }
    }

    fn answer_frame(correlation_id: u64, build: impl FnOnce(&mut TxnAnswer)) -> Frame {
        let mut request = TxnRequest::new(
            TxnKind::Authorize,
            Bytes::from_static(b"M000001"),
            Bytes::from_static(b"run-0001-1"),
        );
        request.amount = Some(1000);
        request.currency = Some(410);
        let mut answer = TxnAnswer::echo(&request, ResultCode::Approved);
        build(&mut answer);
        let mut buf = BytesMut::new();
        Message::Answer(answer).encode(correlation_id, 0, &mut buf);
        decode_frame(&mut buf, FRAME_BODY_BYTES_MAX)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn table_hands_out_unique_ids_and_finds_them() {
        let mut table = Outstanding::new(2);
        let a = table.insert(pending(None)).unwrap();
        let b = table.insert(pending(None)).unwrap();
        assert!(table.insert(pending(None)).is_none(), "full");
        assert_ne!(a, b);
        assert!(table.remove(a).is_some());
        assert!(table.remove(a).is_none(), "answered twice");
        let c = table.insert(pending(None)).unwrap();
        assert_ne!(a, c, "a reused slot gets a new id");
        assert!(table.remove(a).is_none());
        assert_eq!(table.len(), 2);
        assert_eq!(table.drain().len(), 2);
        assert!(table.is_empty());
    }

    #[test]
    fn a_matching_answer_is_answered() {
        let mut table = Outstanding::new(4);
        let id = table.insert(pending(Some(1000))).unwrap();
        let verdict = check_frame(&mut table, &answer_frame(id, |_| {}), Peer::Paymesh);
        assert!(matches!(
            verdict,
            Verdict::Answered {
                result: ResultCode::Approved,
                ..
            }
        ));
        assert!(table.is_empty());
    }

    #[test]
    fn a_declined_answer_is_answered_not_a_mismatch() {
        let mut table = Outstanding::new(4);
        let id = table.insert(pending(Some(1000))).unwrap();
        let frame = answer_frame(id, |a| {
            a.result = ResultCode::InsufficientFunds;
            a.amount = None;
        });
        let verdict = check_frame(&mut table, &frame, Peer::Paymesh);
        assert!(matches!(
            verdict,
            Verdict::Answered {
                result: ResultCode::InsufficientFunds,
                ..
            }
        ));
    }

    #[test]
    fn wrong_correlation_id_is_a_mismatch() {
        let mut table = Outstanding::new(4);
        let id = table.insert(pending(Some(1000))).unwrap();
        let verdict = check_frame(&mut table, &answer_frame(id + 1, |_| {}), Peer::Paymesh);
        assert_eq!(
            verdict,
            Verdict::Mismatch {
                mismatch: Mismatch::UnknownCorrelation,
                pending: None
            }
        );
        assert_eq!(table.len(), 1, "the real request is still outstanding");
    }

    #[test]
    fn wrong_echoes_are_mismatches() {
        type Change = dyn Fn(&mut TxnAnswer);
        let cases: [(Mismatch, &Change); 5] = [
            (Mismatch::Amount, &|a| a.amount = Some(1001)),
            (Mismatch::Amount, &|a| a.amount = None),
            (Mismatch::OrderId, &|a| {
                a.order_id = Some(Bytes::from_static(b"other"))
            }),
            (Mismatch::ResultCode, &|a| {
                a.result = ResultCode::from_u16(1234)
            }),
            (Mismatch::AnswerType, &|a| a.kind = TxnKind::Sale),
        ];
        for (expected, change) in cases {
            let mut table = Outstanding::new(4);
            let id = table.insert(pending(Some(1000))).unwrap();
            let verdict = check_frame(&mut table, &answer_frame(id, change), Peer::Paymesh);
            let Verdict::Mismatch {
                mismatch,
                pending: Some(_),
            } = verdict
            else {
                panic!("{expected:?}: got {verdict:?}");
            };
            assert_eq!(mismatch, expected);
        }
    }

    #[test]
    fn reject_and_garbage_are_faults() {
        let mut table = Outstanding::new(4);
        let id = table.insert(pending(None)).unwrap();
        let mut buf = BytesMut::new();
        let reject = Reject {
            result: ResultCode::MalformedFrame,
            message: Bytes::new(),
            error_offset: None,
        };
        Message::Reject(reject).encode(id, 0, &mut buf);
        let frame = decode_frame(&mut buf, FRAME_BODY_BYTES_MAX)
            .unwrap()
            .unwrap();
        let verdict = check_frame(&mut table, &frame, Peer::Paymesh);
        assert!(matches!(
            verdict,
            Verdict::Fault {
                fault: ProtocolFault::Reject,
                pending: Some(_)
            }
        ));
        let id = table.insert(pending(None)).unwrap();
        let header = FrameHeader::new(TxnKind::Authorize.answer_type(), id);
        let frame = Frame {
            header,
            body: Bytes::from_static(&[0, 20, 0, 1, 7]),
        };
        let verdict = check_frame(&mut table, &frame, Peer::Paymesh);
        assert!(matches!(
            verdict,
            Verdict::Fault {
                fault: ProtocolFault::Undecodable,
                ..
            }
        ));
    }

    #[test]
    fn echo_answers_are_checked_by_type_and_size() {
        let mut table = Outstanding::new(4);
        let frame_for = |id: u64, msg_type: u8, len: usize| {
            let mut buf = BytesMut::new();
            encode_frame(&FrameHeader::new(msg_type, id), &vec![0; len], &mut buf);
            decode_frame(&mut buf, FRAME_BODY_BYTES_MAX)
                .unwrap()
                .unwrap()
        };
        let id = table.insert(pending(None)).unwrap();
        let ok = check_frame(&mut table, &frame_for(id, 0x90, 40), Peer::Echo);
        assert!(matches!(ok, Verdict::Answered { .. }));
        let id = table.insert(pending(None)).unwrap();
        let short = check_frame(&mut table, &frame_for(id, 0x90, 39), Peer::Echo);
        assert!(matches!(
            short,
            Verdict::Mismatch {
                mismatch: Mismatch::EchoSize,
                ..
            }
        ));
        let id = table.insert(pending(None)).unwrap();
        let typed = check_frame(&mut table, &frame_for(id, 0x91, 40), Peer::Echo);
        assert!(matches!(
            typed,
            Verdict::Mismatch {
                mismatch: Mismatch::AnswerType,
                ..
            }
        ));
    }
}
