//! Upstream mode: a raw hickory `Client` sends RD+AD+DO to a validating resolver; AD=1 is
//! secure, AD=0 insecure; SERVFAIL with a DNSSEC Extended DNS Error (RFC 8914) is bogus;
//! otherwise one CD=1 re-query tells bogus (data comes back) from failure (`error`).
//! Truncated answers are retried over TCP (RFC 7766). See docs/dnssec.md.
//!
//! Not here: building the answer (`answer`), caching (`probe::cache`).

use std::net::SocketAddr;
use std::time::Duration;

use hickory_net::client::Client;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::xfer::{DnsHandle, FirstAnswer};
use hickory_net::NetError;
use hickory_proto::op::{
    DnsRequest, DnsRequestOptions, DnsResponse, Edns, Message, Query, ResponseCode,
};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{Name, RecordType};

use super::answer::{answer_from_message, earliest_rrsig, failed_answer, net_reason};
use crate::model::dns::{Answer, Dnssec};

/// EDNS UDP payload size (DNS flag day 2020).
const EDNS_PAYLOAD: u16 = 1232;
/// RFC 8914 EDE codes that mean "DNSSEC says bogus" (docs/dnssec.md).
const EDE_BOGUS: [u16; 7] = [6, 7, 8, 9, 10, 11, 12];

fn upstream_request(name: &Name, rtype: RecordType, cd: bool) -> DnsRequest {
    let mut m = Message::query();
    m.add_query(Query::query(name.clone(), rtype));
    m.metadata.recursion_desired = true;
    m.metadata.authentic_data = true; // RFC 6840 §5.7
    m.metadata.checking_disabled = cd;
    let mut e = Edns::new();
    e.set_max_payload(EDNS_PAYLOAD).set_dnssec_ok(true);
    m.edns = Some(e);
    let mut opts = DnsRequestOptions::default();
    opts.use_edns = true;
    opts.edns_set_dnssec_ok = true;
    opts.recursion_desired = true;
    DnsRequest::new(m, opts)
}

async fn upstream_send(
    udp: &Client<TokioRuntimeProvider>,
    addr: SocketAddr,
    name: &Name,
    rtype: RecordType,
    cd: bool,
    timeout: Duration,
) -> Result<DnsResponse, NetError> {
    let resp = udp
        .send(upstream_request(name, rtype, cd))
        .first_answer()
        .await?;
    if !resp.metadata.truncation {
        return Ok(resp);
    }
    // RFC 7766: retry over TCP on truncation. The raw client has no fallback of its own.
    let (fut, sender) =
        TcpClientStream::new(addr, None, Some(timeout), TokioRuntimeProvider::default());
    let stream = tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| NetError::Timeout)??;
    let (tcp, bg) = Client::<TokioRuntimeProvider>::with_timeout(stream, sender, timeout);
    let task = tokio::spawn(bg);
    let r = tcp
        .send(upstream_request(name, rtype, cd))
        .first_answer()
        .await;
    task.abort();
    r
}

/// RFC 8914 Extended DNS Errors of a response: (code, extra text).
pub(crate) fn extended_errors(m: &Message) -> Vec<(u16, String)> {
    let Some(edns) = &m.edns else {
        return Vec::new();
    };
    edns.options()
        .as_ref()
        .iter()
        .filter_map(|(_, opt)| match opt {
            EdnsOption::Unknown(15, d) if d.len() >= 2 => Some((
                u16::from_be_bytes([d[0], d[1]]),
                String::from_utf8_lossy(&d[2..]).into_owned(),
            )),
            _ => None,
        })
        .collect()
}

pub(super) async fn lookup(
    udp: &Client<TokioRuntimeProvider>,
    addr: SocketAddr,
    name: &Name,
    rtype: RecordType,
    timeout: Duration,
) -> Answer {
    let resp = match upstream_send(udp, addr, name, rtype, false, timeout).await {
        Ok(r) => r,
        Err(e) => return failed_answer(name, rtype, Dnssec::Error, net_reason(&e)),
    };
    match resp.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {
            let state = if resp.metadata.authentic_data {
                Dnssec::Secure
            } else {
                Dnssec::Insecure
            };
            answer_from_message(name, rtype, &resp, |_| state, state)
        }
        ResponseCode::ServFail => {
            let ede = extended_errors(&resp);
            let ede_text = ede
                .iter()
                .map(|(c, t)| {
                    format!(
                        "EDE {c} ({}){}",
                        ede_name(*c),
                        if t.is_empty() {
                            String::new()
                        } else {
                            format!(": {t}")
                        }
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            let dnssec_ede = ede.iter().any(|(c, _)| EDE_BOGUS.contains(c));
            // One CD=1 re-query: bogus data still comes back, a dead zone does not.
            let cd = upstream_send(udp, addr, name, rtype, true, timeout).await;
            let cd_ok = matches!(&cd, Ok(r) if matches!(r.metadata.response_code, ResponseCode::NoError | ResponseCode::NXDomain));
            let (state, why) = if dnssec_ede {
                (Dnssec::Bogus, format!("SERVFAIL, {ede_text}"))
            } else if cd_ok {
                (
                    Dnssec::Bogus,
                    format!(
                        "SERVFAIL, but data with CD=1: validation failed{}",
                        if ede_text.is_empty() {
                            String::new()
                        } else {
                            format!(" ({ede_text})")
                        }
                    ),
                )
            } else {
                (
                    Dnssec::Error,
                    if ede_text.is_empty() {
                        "SERVFAIL".to_string()
                    } else {
                        format!("SERVFAIL, {ede_text}")
                    },
                )
            };
            let mut a = failed_answer(name, rtype, state, why);
            if let Ok(r) = cd {
                // The signatures of the data the resolver refused: their expiry explains a lot.
                a.sig_expiry = earliest_rrsig(r.answers.iter().chain(r.authorities.iter()), None);
            }
            a
        }
        other => failed_answer(name, rtype, Dnssec::Error, format!("rcode {other}")),
    }
}

fn ede_name(code: u16) -> &'static str {
    match code {
        0 => "Other",
        1 => "Unsupported DNSKEY Algorithm",
        2 => "Unsupported DS Digest Type",
        3 => "Stale Answer",
        5 => "DNSSEC Indeterminate",
        6 => "DNSSEC Bogus",
        7 => "Signature Expired",
        8 => "Signature Not Yet Valid",
        9 => "DNSKEY Missing",
        10 => "RRSIGs Missing",
        11 => "No Zone Key Bit Set",
        12 => "NSEC Missing",
        18 => "Prohibited",
        20 => "Not Authoritative",
        22 => "No Reachable Authority",
        23 => "Network Error",
        _ => "unknown",
    }
}
