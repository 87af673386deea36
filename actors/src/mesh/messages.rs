//! Messages between the actors. Work moves in batches: one tick's worth of requests per shard from
//! all the sessions of an Arbiter (see [`super::outbox`]), one shard step's worth of answers per
//! session, one step's worth of upstream requests per host.

use actix::{Message, Recipient};
use bytes::Bytes;
use paymesh_codecs::message::{TxnAnswer, TxnRequest};

use crate::core::upstream::{UpstreamRequest, UpstreamResult};

/// Where a shard sends an answer: the session actor of the connection and the request's correlation
/// id; and who asked (the shard checks what that network may do).
#[derive(Clone)]
pub struct ReplyTo {
    /// The logged-in network of the session.
    pub network: Bytes,
    /// The session's answer mailbox.
    pub session: Recipient<AnswerBatch>,
    /// Session id, to group answers per session.
    pub session_id: u64,
    /// The request's correlation id.
    pub correlation_id: u64,
}

impl std::fmt::Debug for ReplyTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReplyTo({}/{})", self.session_id, self.correlation_id)
    }
}

/// Requests for one shard from the sessions of one Arbiter, each session's in sending order.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ShardBatch {
    /// Index of the shard it is sent to (for its mailbox-depth gauge).
    pub shard: usize,
    /// Each request with where to answer it.
    pub items: Vec<(ReplyTo, TxnRequest)>,
}

/// One answer for a session.
#[derive(Debug)]
pub struct SessionAnswer {
    /// The request's correlation id.
    pub correlation_id: u64,
    /// The answer.
    pub answer: Box<TxnAnswer>,
    /// A stored answer replayed for a retransmission: sent with the RETRANSMIT flag.
    pub retransmit: bool,
}

/// Answers for one session.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct AnswerBatch {
    /// Answers in the order the shard produced them.
    pub items: Vec<SessionAnswer>,
}

/// Upstream requests for one host.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct UpstreamBatch {
    /// Requests in shard order.
    pub items: Vec<UpstreamRequest>,
}

/// Upstream outcomes for one shard.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct UpstreamResults {
    /// Outcomes in the order the pool resolved them.
    pub items: Vec<UpstreamResult>,
}
