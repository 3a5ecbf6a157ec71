//! The text view kept per target, deflated: `check`-style text compresses about 4-6×, and
//! 10,000 targets keep it in memory between probes, while it is read only when someone
//! opens a target's text view.
//!
//! Not here: rendering the text (`text`), serving it (`http`).

use std::io::{Read, Write};

use flate2::{read::DeflateDecoder, write::DeflateEncoder, Compression};

/// Longest text given back: far above any real report (which `text` renders from bounded
/// parts), so the inflate of a corrupted buffer stays bounded too.
const MAX_TEXT_BYTES: u64 = 4 << 20;

/// Text stored deflated.
#[derive(Debug, Clone, Default)]
pub struct PackedText(Box<[u8]>);

impl PackedText {
    /// Deflates `text` (fast level: this runs once per probe).
    pub fn new(text: &str) -> Self {
        let mut enc =
            DeflateEncoder::new(Vec::with_capacity(text.len() / 4 + 16), Compression::fast());
        // Writing to a Vec cannot fail; an error leaves the view empty rather than wrong.
        match enc.write_all(text.as_bytes()).and_then(|()| enc.finish()) {
            Ok(v) => Self(v.into_boxed_slice()),
            Err(_) => Self::default(),
        }
    }

    /// The text again ("" for an empty or unreadable buffer).
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        if self.0.is_empty() {
            return out;
        }
        let reader = DeflateDecoder::new(&self.0[..]).take(MAX_TEXT_BYTES);
        let mut reader = reader;
        if reader.read_to_string(&mut out).is_err() {
            out.clear();
        }
        out
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_shrinks() {
        let text = "  host mx1.example.org (preference 10) port 25: addresses secure\n".repeat(40);
        let p = PackedText::new(&text);
        assert_eq!(p.text(), text);
        assert!(p.len() * 4 < text.len(), "{} of {}", p.len(), text.len());
    }

    #[test]
    fn empty_and_corrupt_buffers_give_empty_text() {
        assert_eq!(PackedText::new("").text(), "");
        assert_eq!(PackedText(vec![0xff; 64].into_boxed_slice()).text(), "");
    }
}
