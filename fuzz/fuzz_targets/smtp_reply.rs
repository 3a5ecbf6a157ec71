//! Fuzz the SMTP reply parser (`probe::smtp`, RFC 5321 §4.2) with arbitrary server output.
//!
//! Checks: no panic; limits hold (lines per reply, codes in the RFC 5321 grammar); feeding
//! the input one octet at a time, as a dripping server would, gives the same replies and
//! fails exactly when whole-buffer parsing fails, never holding more than one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtls_exporter::probe::smtp::reply::{
    parse_replies, parse_reply_line, ReplyParser, MAX_LINE_OCTETS, MAX_REPLY_LINES,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(line) = parse_reply_line(data) {
        assert!((200..=559).contains(&line.code));
        assert!(line.text.len() + 3 <= data.len());
    }

    let (whole, whole_err) = parse_replies(data);
    for reply in &whole {
        assert!((200..=559).contains(&reply.code));
        assert!(!reply.lines.is_empty() && reply.lines.len() <= MAX_REPLY_LINES);
    }

    let mut parser = ReplyParser::new();
    let mut pending: Vec<u8> = Vec::with_capacity(MAX_LINE_OCTETS);
    let mut dripped = Vec::new();
    let mut drip_failed = false;
    'outer: for &b in data {
        pending.push(b);
        loop {
            match parser.feed(&pending) {
                Err(_) => {
                    drip_failed = true;
                    break 'outer;
                }
                Ok((n, reply)) => {
                    pending.drain(..n);
                    assert!(pending.len() < MAX_LINE_OCTETS);
                    match reply {
                        Some(r) => dripped.push(r),
                        None => break,
                    }
                }
            }
        }
    }
    assert_eq!(drip_failed, whole_err.is_some());
    assert_eq!(dripped, whole);
});
