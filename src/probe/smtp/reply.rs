//! The SMTP reply parser: one line (`parse_reply_line`) and whole replies, fed
//! incrementally (`ReplyParser`), bounded in octets and lines.
//!
//! Not here: the dialogue that reads from the socket (`probe::smtp`), the reply values
//! (`model::smtp`). RFC 5321 §4.2 (replies), §4.5.3.1.5 (line length). Arbitrary bytes
//! never panic: they yield a `ReplyError`. Fuzzed by `fuzz/fuzz_targets/smtp_reply.rs`.

use crate::model::smtp::{Reply, ReplyError};

/// Longest reply line accepted, line end included. RFC 5321 §4.5.3.1.5 says 512; real
/// servers exceed it a little, so we allow about twice that.
pub const MAX_LINE_OCTETS: usize = 1000;
/// Most lines accepted in one (multi-line) reply. Real EHLO replies have about 10-20.
pub const MAX_REPLY_LINES: usize = 100;
/// Longest excerpt of a bad line kept in an error (escaped, so at most 4x in chars).
const MAX_EXCERPT_OCTETS: usize = 48;

/// One parsed reply line (RFC 5321 §4.2): `code`, whether it is the `last` line of its
/// reply, and the `text` after the separator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyLine<'a> {
    pub code: u16,
    pub(crate) last: bool,
    pub text: &'a [u8],
}

/// Parse one reply line. `line` may end in "\r\n", "\n" or nothing; it must be at most
/// [`MAX_LINE_OCTETS`] long, line end included.
///
/// Grammar (RFC 5321 §4.2): `Reply-code = %x32-35 %x30-35 %x30-39`, then '-' (more lines
/// follow), ' ' or the end of the line (last line), then any text.
pub fn parse_reply_line(line: &[u8]) -> Result<ReplyLine<'_>, ReplyError> {
    if line.len() > MAX_LINE_OCTETS {
        return Err(ReplyError::LineTooLong {
            limit: MAX_LINE_OCTETS,
        });
    }
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let code = match line {
        [a @ b'2'..=b'5', b @ b'0'..=b'5', c @ b'0'..=b'9', ..] => {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => {
            return Err(ReplyError::BadCode {
                excerpt: excerpt(line),
            })
        }
    };
    match line.get(3) {
        None => Ok(ReplyLine {
            code,
            last: true,
            text: &[],
        }),
        Some(b' ') => Ok(ReplyLine {
            code,
            last: true,
            text: &line[4..],
        }),
        Some(b'-') => Ok(ReplyLine {
            code,
            last: false,
            text: &line[4..],
        }),
        Some(_) => Err(ReplyError::BadSeparator {
            code,
            excerpt: excerpt(line),
        }),
    }
}

/// Early check of an unfinished line: fails as soon as its first four octets cannot start
/// a reply line, so a server sending garbage without line ends is caught at once.
fn check_partial_line(partial: &[u8]) -> Result<(), ReplyError> {
    let head = &partial[..partial.len().min(4)];
    let plausible = head.iter().enumerate().all(|(i, &b)| match i {
        0 => (b'2'..=b'5').contains(&b),
        1 => (b'0'..=b'5').contains(&b),
        2 => b.is_ascii_digit(),
        _ => matches!(b, b' ' | b'-' | b'\r'),
    });
    if plausible {
        Ok(())
    } else {
        // Not plausible implies the line parser fails on it too; it names the error.
        parse_reply_line(head).map(|_| ())
    }
}

/// Incremental, bounded parser of SMTP replies: feed it buffered bytes, it consumes whole
/// lines and returns a [`Reply`] when the last line of one arrives. Bytes after that line
/// are left unconsumed (the STARTTLS hand-over needs to see them). After an error the
/// parser must not be used again.
#[derive(Debug, Default)]
pub struct ReplyParser {
    code: u16,
    lines: Vec<String>,
}

impl ReplyParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// No line of a reply consumed yet (at the start, or right after a complete reply).
    pub(crate) fn is_idle(&self) -> bool {
        self.lines.is_empty()
    }

    /// Consume as many complete lines of `input` as belong to the current reply.
    /// Returns how many octets were consumed and the reply if it is complete. An
    /// unfinished line is never consumed; the caller keeps it and feeds it again with more
    /// bytes (it is at most [`MAX_LINE_OCTETS`] - 1 long, or this fails).
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Option<Reply>), ReplyError> {
        let mut consumed = 0;
        while consumed < input.len() {
            let rest = &input[consumed..];
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                check_partial_line(rest)?;
                if rest.len() >= MAX_LINE_OCTETS {
                    return Err(ReplyError::LineTooLong {
                        limit: MAX_LINE_OCTETS,
                    });
                }
                break;
            };
            let line = parse_reply_line(&rest[..=nl])?;
            consumed += nl + 1;
            if self.lines.is_empty() {
                self.code = line.code;
            } else if line.code != self.code {
                return Err(ReplyError::MixedCodes {
                    first: self.code,
                    then: line.code,
                });
            }
            if self.lines.len() >= MAX_REPLY_LINES {
                return Err(ReplyError::TooManyLines {
                    limit: MAX_REPLY_LINES,
                });
            }
            self.lines.push(text_to_string(line.text));
            if line.last {
                let reply = Reply {
                    code: self.code,
                    lines: std::mem::take(&mut self.lines),
                };
                return Ok((consumed, Some(reply)));
            }
        }
        Ok((consumed, None))
    }
}

/// Parse every complete reply in `input` (convenience for tests and the fuzz target):
/// the replies, and the error that stopped parsing, if any. A trailing unfinished reply
/// is ignored.
pub fn parse_replies(input: &[u8]) -> (Vec<Reply>, Option<ReplyError>) {
    let mut parser = ReplyParser::new();
    let mut replies = Vec::new();
    let mut at = 0;
    while at < input.len() {
        match parser.feed(&input[at..]) {
            Ok((n, reply)) => {
                at += n;
                match reply {
                    Some(r) => replies.push(r),
                    None => break,
                }
            }
            Err(e) => return (replies, Some(e)),
        }
    }
    (replies, None)
}

/// Lossy UTF-8, control characters (NUL, ESC, CR, ...) replaced, tabs as spaces.
fn text_to_string(text: &[u8]) -> String {
    let s = String::from_utf8_lossy(text);
    if !s.chars().any(char::is_control) {
        return s.into_owned();
    }
    s.chars()
        .map(|c| match c {
            '\t' => ' ',
            c if c.is_control() => char::REPLACEMENT_CHARACTER,
            c => c,
        })
        .collect()
}

/// Short, escaped, printable excerpt of bad input for an error message.
fn excerpt(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(MAX_EXCERPT_OCTETS)];
    let mut s = cut.escape_ascii().to_string();
    if bytes.len() > cut.len() {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::super::ehlo_keywords;
    use super::*;
    use proptest::prelude::*;

    // ---------- parser: RFC 5321 §4.2 ----------

    #[test]
    fn reply_line_accepts_space_dash_and_bare_code() {
        assert_eq!(
            parse_reply_line(b"220 mx.example.org ESMTP\r\n"),
            Ok(ReplyLine {
                code: 220,
                last: true,
                text: b"mx.example.org ESMTP"
            })
        );
        assert_eq!(
            parse_reply_line(b"250-PIPELINING\n"),
            Ok(ReplyLine {
                code: 250,
                last: false,
                text: b"PIPELINING"
            })
        );
        assert_eq!(
            parse_reply_line(b"250\r\n"),
            Ok(ReplyLine {
                code: 250,
                last: true,
                text: b""
            })
        );
        assert_eq!(
            parse_reply_line(b"354"),
            Ok(ReplyLine {
                code: 354,
                last: true,
                text: b""
            })
        );
    }

    // RFC 5321 §4.2: Reply-code = %x32-35 %x30-35 %x30-39.
    #[test]
    fn reply_line_rejects_codes_outside_the_grammar() {
        for bad in [
            &b"120 x"[..],
            b"260 x",
            b"600 x",
            b"22 x",
            b"abc",
            b"",
            b"\0\xff\xfe",
        ] {
            assert!(
                matches!(parse_reply_line(bad), Err(ReplyError::BadCode { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_reply_line(b"220x"),
            Err(ReplyError::BadSeparator { code: 220, .. })
        ));
    }

    #[test]
    fn reply_line_longer_than_limit_is_rejected() {
        let mut line = b"250 ".to_vec();
        line.resize(MAX_LINE_OCTETS - 2, b'a');
        line.extend_from_slice(b"\r\n");
        assert!(parse_reply_line(&line).is_ok());
        line.insert(5, b'a');
        assert_eq!(
            parse_reply_line(&line),
            Err(ReplyError::LineTooLong {
                limit: MAX_LINE_OCTETS
            })
        );
    }

    #[test]
    fn multi_line_reply_with_crlf_and_bare_lf_parses() {
        let input =
            b"250-mx.example.org Hello\r\n250-SIZE 10240000\n250-8BITMIME\r\n250 STARTTLS\r\nrest";
        let mut p = ReplyParser::new();
        let (n, reply) = p.feed(input).unwrap();
        assert_eq!(&input[n..], b"rest");
        let reply = reply.unwrap();
        assert_eq!(reply.code, 250);
        assert_eq!(
            reply.lines,
            [
                "mx.example.org Hello",
                "SIZE 10240000",
                "8BITMIME",
                "STARTTLS"
            ]
        );
        assert_eq!(ehlo_keywords(&reply), ["SIZE", "8BITMIME", "STARTTLS"]);
    }

    #[test]
    fn parser_resumes_across_partial_feeds() {
        let input = b"220-first\r\n220 second\r\n";
        let mut p = ReplyParser::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut got = None;
        for &b in input.iter() {
            pending.push(b);
            let (n, reply) = p.feed(&pending).unwrap();
            pending.drain(..n);
            if reply.is_some() {
                got = reply;
            }
        }
        assert_eq!(got.unwrap().lines, ["first", "second"]);
        assert!(pending.is_empty());
    }

    // RFC 5321 §4.2.1: all lines of a multi-line reply carry the same code.
    #[test]
    fn continuation_with_other_code_is_mixed_codes() {
        let (replies, err) = parse_replies(b"250-a\r\n251 b\r\n");
        assert!(replies.is_empty());
        assert_eq!(
            err,
            Some(ReplyError::MixedCodes {
                first: 250,
                then: 251
            })
        );
    }

    #[test]
    fn more_than_max_lines_is_too_many_lines() {
        let mut input = Vec::new();
        for _ in 0..MAX_REPLY_LINES - 1 {
            input.extend_from_slice(b"250-x\r\n");
        }
        input.extend_from_slice(b"250 x\r\n");
        let (replies, err) = parse_replies(&input);
        assert_eq!((replies.len(), err), (1, None));
        assert_eq!(replies[0].lines.len(), MAX_REPLY_LINES);

        let mut input = b"250-x\r\n".repeat(MAX_REPLY_LINES);
        input.extend_from_slice(b"250 x\r\n");
        let (_, err) = parse_replies(&input);
        assert_eq!(
            err,
            Some(ReplyError::TooManyLines {
                limit: MAX_REPLY_LINES
            })
        );
    }

    #[test]
    fn unfinished_line_at_limit_is_too_long_without_a_line_end() {
        let input = vec![b'2'; MAX_LINE_OCTETS];
        let mut p = ReplyParser::new();
        // "222" then '2' as separator: caught early, before the limit.
        assert!(matches!(
            p.feed(&input),
            Err(ReplyError::BadSeparator { code: 222, .. })
        ));
        let mut input = b"220 ".to_vec();
        input.resize(MAX_LINE_OCTETS - 1, b'x');
        assert_eq!(ReplyParser::new().feed(&input), Ok((0, None)));
        input.push(b'x');
        assert_eq!(
            ReplyParser::new().feed(&input),
            Err(ReplyError::LineTooLong {
                limit: MAX_LINE_OCTETS
            })
        );
    }

    #[test]
    fn garbage_is_rejected_before_the_line_ends() {
        assert!(matches!(
            ReplyParser::new().feed(b"SSH-2.0-OpenSSH"),
            Err(ReplyError::BadCode { .. })
        ));
        assert!(matches!(
            ReplyParser::new().feed(b"\x16\x03\x01"),
            Err(ReplyError::BadCode { .. })
        ));
        // A valid prefix waits for more.
        assert_eq!(ReplyParser::new().feed(b"22"), Ok((0, None)));
        assert_eq!(ReplyParser::new().feed(b"220\r"), Ok((0, None)));
    }

    #[test]
    fn reply_text_is_sanitised() {
        let (replies, err) = parse_replies(b"220 a\0b\xff\x1bc\td\r\n");
        assert_eq!(err, None);
        assert_eq!(replies[0].lines, ["a\u{fffd}b\u{fffd}\u{fffd}c d"]);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_stay_bounded(input in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let (replies, _) = parse_replies(&input);
            for r in &replies {
                prop_assert!(r.lines.len() <= MAX_REPLY_LINES);
                prop_assert!(r.lines.iter().all(|l| l.len() <= 3 * MAX_LINE_OCTETS));
                prop_assert!((200..=559).contains(&r.code));
            }
            let _ = parse_reply_line(&input);
        }

        #[test]
        fn valid_multi_line_replies_round_trip(
            code in 200u16..=559,
            texts in proptest::collection::vec("[ -~]{0,60}", 1..20),
            crlf in any::<bool>(),
        ) {
            prop_assume!(code % 100 / 10 <= 5);
            let eol: &[u8] = if crlf { b"\r\n" } else { b"\n" };
            let mut input = Vec::new();
            for (i, t) in texts.iter().enumerate() {
                input.extend_from_slice(code.to_string().as_bytes());
                input.push(if i + 1 == texts.len() { b' ' } else { b'-' });
                input.extend_from_slice(t.as_bytes());
                input.extend_from_slice(eol);
            }
            let (replies, err) = parse_replies(&input);
            prop_assert_eq!(err, None);
            prop_assert_eq!(replies.len(), 1);
            prop_assert_eq!(replies[0].code, code);
            prop_assert_eq!(&replies[0].lines, &texts);
        }

        /// A server dripping one octet at a time yields the same replies, fails exactly
        /// when the whole input fails, and never makes the parser hold a full line.
        #[test]
        fn dripped_feeding_equals_whole_feeding(
            input in proptest::collection::vec(prop_oneof![
                Just(b"250-x\r\n".to_vec()), Just(b"250 y\n".to_vec()), Just(b"220 z\r\n".to_vec()),
                Just(b"220\r\n".to_vec()), Just(b"25".to_vec()),
                proptest::collection::vec(any::<u8>(), 0..8)], 0..12).prop_map(|v| v.concat()),
        ) {
            let (whole, whole_err) = parse_replies(&input);
            let mut p = ReplyParser::new();
            let mut pending = Vec::new();
            let mut dripped = Vec::new();
            let mut failed = false;
            'outer: for &b in &input {
                pending.push(b);
                loop {
                    match p.feed(&pending) {
                        Err(_) => { failed = true; break 'outer; }
                        Ok((n, r)) => {
                            pending.drain(..n);
                            prop_assert!(pending.len() < MAX_LINE_OCTETS);
                            match r { Some(r) => dripped.push(r), None => break }
                        }
                    }
                }
            }
            prop_assert_eq!(failed, whole_err.is_some());
            prop_assert_eq!(dripped, whole);
        }
    }
}
