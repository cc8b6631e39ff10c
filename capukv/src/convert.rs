//! Raft core messages to and from their protobuf form. Snapshots travel
//! separately, in chunks (see `server::transport`).

use crate::proto::{self, raft_message::Body};
use crate::raft::{AppendResponse, Entry, EntryKind, Message, MessageBody};

pub fn entry_to_proto(e: &Entry) -> proto::Entry {
    proto::Entry {
        index: e.index,
        term: e.term,
        noop: e.kind == EntryKind::Noop,
        membership: e.kind == EntryKind::Membership,
        data: e.data.clone(),
    }
}

pub fn entry_from_proto(e: proto::Entry) -> Entry {
    let kind = match (e.noop, e.membership) {
        (true, _) => EntryKind::Noop,
        (_, true) => EntryKind::Membership,
        _ => EntryKind::Command,
    };
    Entry { index: e.index, term: e.term, kind, data: e.data }
}

/// `None` for a snapshot, which is not sent as one message.
pub fn message_to_proto(m: &Message) -> Option<proto::RaftMessage> {
    let body = match &m.body {
        MessageBody::Append { prev_index, prev_term, entries, commit } => Body::Append(proto::Append {
            prev_index: *prev_index,
            prev_term: *prev_term,
            entries: entries.iter().map(entry_to_proto).collect(),
            commit: *commit,
        }),
        MessageBody::AppendResponse(AppendResponse::Accepted { match_index }) => {
            Body::AppendResponse(proto::AppendResponse {
                accepted: true,
                index: *match_index,
                hint_index: 0,
                hint_term: 0,
            })
        }
        MessageBody::AppendResponse(AppendResponse::Rejected { rejected_index, hint_index, hint_term }) => {
            Body::AppendResponse(proto::AppendResponse {
                accepted: false,
                index: *rejected_index,
                hint_index: *hint_index,
                hint_term: *hint_term,
            })
        }
        MessageBody::Heartbeat { commit, read_round } => {
            Body::Heartbeat(proto::Heartbeat { commit: *commit, read_round: *read_round })
        }
        MessageBody::HeartbeatResponse { read_round } => {
            Body::HeartbeatResponse(proto::HeartbeatResponse { read_round: *read_round })
        }
        MessageBody::Vote { pre_vote, transfer, last_index, last_term } => Body::Vote(proto::Vote {
            pre_vote: *pre_vote,
            transfer: *transfer,
            last_index: *last_index,
            last_term: *last_term,
        }),
        MessageBody::VoteResponse { pre_vote, granted } => {
            Body::VoteResponse(proto::VoteResponse { pre_vote: *pre_vote, granted: *granted })
        }
        MessageBody::TimeoutNow => Body::TimeoutNow(proto::TimeoutNow {}),
        MessageBody::Snapshot(_) => return None,
    };
    // The transport puts the cluster id on.
    Some(proto::RaftMessage { from: m.from, to: m.to, term: m.term, cluster_id: 0, body: Some(body) })
}

pub fn message_from_proto(m: proto::RaftMessage) -> Result<Message, String> {
    let body = match m.body.ok_or("a raft message without a body")? {
        Body::Append(a) => MessageBody::Append {
            prev_index: a.prev_index,
            prev_term: a.prev_term,
            entries: a.entries.into_iter().map(entry_from_proto).collect(),
            commit: a.commit,
        },
        Body::AppendResponse(r) if r.accepted => {
            MessageBody::AppendResponse(AppendResponse::Accepted { match_index: r.index })
        }
        Body::AppendResponse(r) => MessageBody::AppendResponse(AppendResponse::Rejected {
            rejected_index: r.index,
            hint_index: r.hint_index,
            hint_term: r.hint_term,
        }),
        Body::Heartbeat(h) => MessageBody::Heartbeat { commit: h.commit, read_round: h.read_round },
        Body::HeartbeatResponse(h) => MessageBody::HeartbeatResponse { read_round: h.read_round },
        Body::Vote(v) => MessageBody::Vote {
            pre_vote: v.pre_vote,
            transfer: v.transfer,
            last_index: v.last_index,
            last_term: v.last_term,
        },
        Body::VoteResponse(v) => MessageBody::VoteResponse { pre_vote: v.pre_vote, granted: v.granted },
        Body::TimeoutNow(_) => MessageBody::TimeoutNow,
    };
    Ok(Message { from: m.from, to: m.to, term: m.term, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn every_message_kind_survives_the_round_trip() {
        let entry = Entry { index: 4, term: 2, kind: EntryKind::Command, data: Bytes::from_static(b"x") };
        let noop = Entry { index: 5, term: 2, kind: EntryKind::Noop, data: Bytes::new() };
        let bodies = vec![
            MessageBody::Append { prev_index: 3, prev_term: 1, entries: vec![entry, noop], commit: 2 },
            MessageBody::AppendResponse(AppendResponse::Accepted { match_index: 9 }),
            MessageBody::AppendResponse(AppendResponse::Rejected { rejected_index: 9, hint_index: 7, hint_term: 3 }),
            MessageBody::Heartbeat { commit: 5, read_round: 6 },
            MessageBody::HeartbeatResponse { read_round: 6 },
            MessageBody::Vote { pre_vote: true, transfer: false, last_index: 8, last_term: 2 },
            MessageBody::VoteResponse { pre_vote: false, granted: true },
            MessageBody::TimeoutNow,
        ];
        for body in bodies {
            let m = Message { from: 1, to: 2, term: 7, body };
            assert_eq!(message_from_proto(message_to_proto(&m).unwrap()).unwrap(), m);
        }
    }
}
