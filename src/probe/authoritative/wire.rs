//! One DNS question to one server, by `deadline`: UDP (EDNS payload 1232, two attempts), then
//! TCP when the answer is truncated (RFC 7766 §5); the reply must carry our id and question.
//!
//! Not here: what to ask or what the answer means (`super`). Replies are bounded by the
//! protocol (a UDP datagram of at most [`UDP_BUFFER`] bytes, a TCP message of at most 65,535)
//! and parsed by hickory-proto; nothing from the network can panic here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, Query};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{timeout_at, Instant};

/// EDNS UDP payload size advertised (DNS flag day 2020).
const EDNS_PAYLOAD: u16 = 1232;
/// Receive buffer: larger than the advertised payload, so an oversized reply is seen whole.
const UDP_BUFFER: usize = 4096;
/// One UDP attempt waits this long before the question is sent once more.
pub(crate) const UDP_ATTEMPT: Duration = Duration::from_millis(800);
/// UDP attempts before giving up (each ends at the deadline at the latest).
const UDP_ATTEMPTS: usize = 2;

#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum WireError {
    #[error("no answer from {0} in time")]
    Timeout(SocketAddr),
    #[error("{0}: {1}")]
    Io(SocketAddr, String),
    #[error("malformed answer from {0}")]
    Malformed(SocketAddr),
}

impl WireError {
    /// Fixed words for logs.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::Io(..) => "io",
            Self::Malformed(_) => "malformed",
        }
    }
}

fn request(id: u16, name: &Name, rtype: RecordType, recursion: bool) -> Message {
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = recursion;
    m.add_query(Query::query(name.clone(), rtype));
    let mut e = Edns::new();
    e.set_max_payload(EDNS_PAYLOAD);
    m.edns = Some(e);
    m
}

/// Is `m` the answer to `req`? (id, QR bit, the same question; names compare case-blind.)
fn answers(m: &Message, req: &Message) -> bool {
    m.metadata.id == req.metadata.id
        && m.metadata.message_type == MessageType::Response
        && m.queries.len() == 1
        && m.queries
            .first()
            .zip(req.queries.first())
            .is_some_and(|(a, q)| a.query_type() == q.query_type() && a.name() == q.name())
}

/// Asks `server` for `rtype` at `name` (RD as `recursion`) and returns its reply, by
/// `deadline`.
pub(crate) async fn ask(
    server: SocketAddr,
    name: &Name,
    rtype: RecordType,
    recursion: bool,
    deadline: Instant,
) -> Result<Message, WireError> {
    let req = request(rand_id(), name, rtype, recursion);
    let bytes = req.to_vec().map_err(|_| WireError::Malformed(server))?;
    let reply = ask_udp(server, &req, &bytes, deadline).await?;
    if !reply.metadata.truncation {
        return Ok(reply);
    }
    ask_tcp(server, &req, &bytes, deadline).await
}

async fn ask_udp(
    server: SocketAddr,
    req: &Message,
    bytes: &[u8],
    deadline: Instant,
) -> Result<Message, WireError> {
    let io = |e: std::io::Error| WireError::Io(server, e.to_string());
    let local: SocketAddr = match server.ip() {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local).await.map_err(io)?;
    sock.connect(server).await.map_err(io)?;
    let mut buf = vec![0u8; UDP_BUFFER];
    for _ in 0..UDP_ATTEMPTS {
        sock.send(bytes).await.map_err(io)?;
        let attempt_end = (Instant::now() + UDP_ATTEMPT).min(deadline);
        loop {
            match timeout_at(attempt_end, sock.recv(&mut buf)).await {
                Err(_) => break, // this attempt is over
                Ok(Err(e)) => return Err(io(e)),
                Ok(Ok(n)) => {
                    // A stray or forged datagram is ignored; the genuine answer may follow.
                    if let Ok(m) = Message::from_vec(buf.get(..n).unwrap_or_default()) {
                        if answers(&m, req) {
                            return Ok(m);
                        }
                    }
                }
            }
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    Err(WireError::Timeout(server))
}

async fn ask_tcp(
    server: SocketAddr,
    req: &Message,
    bytes: &[u8],
    deadline: Instant,
) -> Result<Message, WireError> {
    let io = |e: std::io::Error| WireError::Io(server, e.to_string());
    let exchange = async {
        let mut s = TcpStream::connect(server).await.map_err(io)?;
        let len = u16::try_from(bytes.len()).map_err(|_| WireError::Malformed(server))?;
        let mut out = Vec::with_capacity(bytes.len() + 2);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(bytes);
        s.write_all(&out).await.map_err(io)?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await.map_err(io)?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut buf).await.map_err(io)?;
        let m = Message::from_vec(&buf).map_err(|_| WireError::Malformed(server))?;
        if answers(&m, req) {
            Ok(m)
        } else {
            Err(WireError::Malformed(server))
        }
    };
    timeout_at(deadline, exchange)
        .await
        .map_err(|_| WireError::Timeout(server))?
}

/// A query id that is not predictable from outside (RFC 5452 §4.3).
fn rand_id() -> u16 {
    rand::random()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_silent_server_ends_at_the_deadline_not_later() {
        // A UDP socket that never answers (127.0.0.1, ephemeral port).
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let name = Name::from_ascii("example.test.").unwrap();
        let started = Instant::now();
        let deadline = started + Duration::from_millis(300);
        let r = ask(addr, &name, RecordType::SOA, false, deadline).await;
        let took = started.elapsed();
        assert!(matches!(r, Err(WireError::Timeout(_))), "{r:?}");
        assert!(took >= Duration::from_millis(290), "{took:?}");
        assert!(took < Duration::from_millis(600), "{took:?}");
        // Two attempts reached the socket before the deadline? Only the first one can: the
        // attempt is longer than the budget.
        let mut buf = [0u8; 512];
        let n = silent.try_recv(&mut buf).unwrap();
        assert!(n > 12, "the question was sent");
    }

    #[tokio::test]
    async fn the_reply_must_carry_our_id_and_question() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let name = Name::from_ascii("example.test.").unwrap();
        let answerer = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (n, from) = server.recv_from(&mut buf).await.unwrap();
            let q = Message::from_vec(&buf[..n]).unwrap();
            assert!(
                !q.metadata.recursion_desired,
                "RD=0 to an authoritative server"
            );
            // first a reply with another id (ignored), then the genuine one
            let mut wrong = q.clone();
            wrong.metadata.id = q.metadata.id.wrapping_add(1);
            wrong.metadata.message_type = MessageType::Response;
            server
                .send_to(&wrong.to_vec().unwrap(), from)
                .await
                .unwrap();
            let mut right = q.clone();
            right.metadata.message_type = MessageType::Response;
            right.metadata.authoritative = true;
            server
                .send_to(&right.to_vec().unwrap(), from)
                .await
                .unwrap();
        });
        let deadline = Instant::now() + Duration::from_secs(2);
        let m = ask(addr, &name, RecordType::SOA, false, deadline)
            .await
            .unwrap();
        assert!(m.metadata.authoritative);
        answerer.await.unwrap();
    }
}
