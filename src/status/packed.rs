//! The text view kept per target, deflated: `check`-style text compresses about 4-6×, and
//! 10,000 targets keep it in memory between probes, while it is read only when someone
//! opens a target's text view.
//!
//! Not here: rendering the text (`text`), serving it (`http`).

/// Longest text given back: far above any real report (which `text` renders from bounded
/// parts), so the inflate of a corrupted buffer stays bounded too.
const MAX_TEXT_BYTES: usize = 4 << 20;

/// Text stored deflated.
#[derive(Debug, Clone, Default)]
pub struct PackedText(Box<[u8]>);

impl PackedText {
    /// Deflates `text` (fast level, the thread's compressor: this runs once per probe).
    pub fn new(text: &str) -> Self {
        Self(crate::pack::deflate(text.as_bytes()))
    }

    /// The text again ("" for an empty or unreadable buffer).
    pub(crate) fn text(&self) -> String {
        if self.0.is_empty() {
            return String::new();
        }
        crate::pack::inflate(&self.0, self.0.len() * 5, MAX_TEXT_BYTES)
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default()
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
