//! The load generator's own DNS answers (`--dns-listen`): the names it orders are its to answer
//! for, as the http-01 answers are. The server under load is pointed at this UDP address as its
//! resolver; no third process shares the machine's cores with the two being measured.
//!
//! The zone is `--domain-suffix` with everything under it: `A` queries get the http-01
//! responder's address, every other type an empty answer with the zone's SOA (RFC 2308 §2.2, a
//! NODATA). The suffix's ancestors (up to the root) exist with no records, so a CAA walk
//! (RFC 8659 §3) finds none and issuance is allowed; any other name is REFUSED.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use hickory_resolver::proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, SOA};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// The TTL of every answer, in seconds.
const TTL: u32 = 60;

/// The answers one zone gives.
pub struct Zone {
    suffix: Name,
    address: Ipv4Addr,
    soa: Record,
}

/// Where a name stands to the zone.
#[derive(Debug, PartialEq, Eq)]
enum Place {
    /// The suffix or a name under it.
    Inside,
    /// One of the suffix's ancestors: it exists, holds no records.
    Above,
    Outside,
}

impl Zone {
    /// The zone under `suffix` (a DNS name, `pkid.test`), whose `A` answers are `address`.
    pub fn new(suffix: &str, address: Ipv4Addr) -> Result<Zone, String> {
        let mut suffix = Name::from_ascii(suffix)
            .map_err(|e| format!("--domain-suffix {suffix:?}: {e}"))?
            .to_lowercase();
        suffix.set_fqdn(true);
        let apex_label = |label: &str| {
            Name::from_ascii(label)
                .and_then(|n| n.append_domain(&suffix))
                .map_err(|e| format!("--domain-suffix: {e}"))
        };
        let soa = SOA::new(
            apex_label("ns")?,
            apex_label("hostmaster")?,
            1,
            3600,
            600,
            86400,
            TTL,
        );
        Ok(Zone {
            soa: Record::from_rdata(suffix.clone(), TTL, RData::SOA(soa)),
            suffix,
            address,
        })
    }

    fn place(&self, name: &Name) -> Place {
        let name = name.to_lowercase();
        if self.suffix.zone_of(&name) {
            Place::Inside
        } else if name.zone_of(&self.suffix) {
            Place::Above
        } else {
            Place::Outside
        }
    }

    /// The response to one query message, or `None` when it is no query at all (a response
    /// sent to us) and gets no answer.
    pub fn respond(&self, request: &[u8]) -> Option<Vec<u8>> {
        let query = match Message::from_vec(request) {
            Ok(query) => query,
            // Not even a header: nothing to answer to. A header that parsed but a body that did
            // not gets FORMERR from its ID.
            Err(_) if request.len() < 12 => return None,
            Err(_) => {
                let id = u16::from_be_bytes([request[0], request[1]]);
                return Message::error_msg(id, OpCode::Query, ResponseCode::FormErr)
                    .to_vec()
                    .ok();
            }
        };
        if query.message_type() != MessageType::Query {
            return None;
        }
        let mut response = Message::new();
        response
            .set_id(query.id())
            .set_message_type(MessageType::Response)
            .set_op_code(query.op_code())
            .set_recursion_desired(query.recursion_desired());
        if query.extensions().is_some() {
            response.set_edns(Edns::new());
        }
        let question = match query.queries() {
            [question] if query.op_code() == OpCode::Query => question.clone(),
            [_] => {
                response.set_response_code(ResponseCode::NotImp);
                return response.to_vec().ok();
            }
            _ => {
                response.set_response_code(ResponseCode::FormErr);
                return response.to_vec().ok();
            }
        };
        response.add_query(question.clone());
        match self.place(question.name()) {
            Place::Outside => {
                response.set_response_code(ResponseCode::Refused);
            }
            Place::Inside if question.query_type() == RecordType::A => {
                response
                    .set_authoritative(true)
                    .add_answer(Record::from_rdata(
                        question.name().clone(),
                        TTL,
                        RData::A(A(self.address)),
                    ));
            }
            Place::Inside => {
                response
                    .set_authoritative(true)
                    .add_name_server(self.soa.clone());
            }
            // The ancestors are not ours to be authoritative for: an empty answer, as a
            // recursive resolver that found no records there gives.
            Place::Above => {}
        }
        response.to_vec().ok()
    }
}

/// Answers `zone`'s queries on UDP `addr` until the returned task is aborted.
pub async fn serve_dns(addr: SocketAddr, zone: Zone) -> Result<JoinHandle<()>, String> {
    let socket = UdpSocket::bind(addr)
        .await
        .map_err(|e| format!("binding the DNS responder to {addr}: {e}"))?;
    let zone = Arc::new(zone);
    Ok(tokio::spawn(async move {
        // EDNS lets a resolver offer up to 4096 bytes; no query of ours is longer.
        let mut buffer = vec![0u8; 4096];
        loop {
            let Ok((length, peer)) = socket.recv_from(&mut buffer).await else {
                // A transient error (an ICMP unreachable of an earlier answer, say): go on.
                continue;
            };
            if let Some(answer) = zone.respond(&buffer[..length]) {
                // Lost answers are retried by the resolver, as over any UDP path.
                let _ = socket.send_to(&answer, peer).await;
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use hickory_resolver::proto::op::Query;

    fn ask(zone: &Zone, name: &str, kind: RecordType) -> Message {
        let mut query = Message::new();
        query
            .set_id(4242)
            .set_recursion_desired(true)
            .add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        let answer = zone.respond(&query.to_vec().unwrap()).unwrap();
        let answer = Message::from_vec(&answer).unwrap();
        assert_eq!(answer.id(), 4242);
        assert_eq!(answer.message_type(), MessageType::Response);
        answer
    }

    #[test]
    fn answers_for_its_zone_and_refuses_the_rest() {
        let zone = Zone::new("pkid.test", Ipv4Addr::LOCALHOST).unwrap();
        let a = ask(&zone, "w1-2-ab.PKID.test.", RecordType::A);
        assert_eq!(a.response_code(), ResponseCode::NoError);
        assert!(a.authoritative());
        assert_eq!(
            a.answers()[0].data(),
            &RData::A(A(Ipv4Addr::LOCALHOST)),
            "{a:?}"
        );
        for (name, kind) in [
            ("w1-2-ab.pkid.test.", RecordType::CAA),
            ("w1-2-ab.pkid.test.", RecordType::AAAA),
            ("pkid.test.", RecordType::CAA),
        ] {
            let empty = ask(&zone, name, kind);
            assert_eq!(
                empty.response_code(),
                ResponseCode::NoError,
                "{name} {kind}"
            );
            assert!(empty.answers().is_empty());
            assert_eq!(empty.name_servers()[0].record_type(), RecordType::SOA);
        }
        let above = ask(&zone, "test.", RecordType::CAA);
        assert_eq!(above.response_code(), ResponseCode::NoError);
        assert!(above.answers().is_empty() && !above.authoritative());
        assert_eq!(
            ask(&zone, "example.org.", RecordType::A).response_code(),
            ResponseCode::Refused
        );
        assert_eq!(
            ask(&zone, "xpkid.test.", RecordType::A).response_code(),
            ResponseCode::Refused
        );
        assert!(zone.respond(&[1, 2, 3]).is_none());
        let garbled = zone.respond(&[0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 9]);
        let garbled = Message::from_vec(&garbled.unwrap()).unwrap();
        assert_eq!(garbled.response_code(), ResponseCode::FormErr);
        assert_eq!(garbled.id(), 0x1234);
    }
}
