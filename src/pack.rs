//! Raw deflate (RFC 1951) of byte strings kept in memory between probes: every target's
//! encoded series (`metrics::exposition`) and its text view (`status::packed`). One
//! compressor and one decompressor per thread, reset between uses: a fresh flate2
//! compressor allocates and clears hundreds of KiB of state, more than compressing a
//! report costs.
//!
//! Owns: [`deflate`], [`inflate`], and the two pieces `metrics::scrape` shares with them:
//! [`compress`] (all of an input, then a flush) and [`stored_blocks`]. Not here: the gzip stream of a scrape (`metrics::scrape`,
//! which compresses blocks of many reports), what is packed and when.

use std::cell::RefCell;

use flate2::{
    Compress, CompressError, Compression, Decompress, FlushCompress, FlushDecompress, Status,
};

/// The deflate level of what is packed once per probe. With flate2's zlib-rs backend,
/// level 1 is zlib-ng's "quick" strategy (static Huffman codes only): the cheapest per
/// probe, ~25% larger than level 2 (docs/performance.md, "Scrape").
const LEVEL: u32 = 1;

thread_local! {
    static COMPRESS: RefCell<Compress> = RefCell::new(Compress::new(Compression::new(LEVEL), false));
    static DECOMPRESS: RefCell<Decompress> = RefCell::new(Decompress::new(false));
}

/// `data` as one complete raw deflate stream (fast level). A compressor writing into memory
/// does not fail; if it did, the data is stored uncompressed (stored blocks), which inflates
/// all the same.
pub(crate) fn deflate(data: &[u8]) -> Box<[u8]> {
    let packed = COMPRESS.with(|c| {
        let mut c = c.try_borrow_mut().ok()?;
        c.reset();
        let mut out = Vec::with_capacity(data.len() / 4 + 64);
        compress(&mut c, data, &mut out, FlushCompress::Finish).ok()?;
        Some(out)
    });
    packed
        .unwrap_or_else(|| stored_blocks(data, true))
        .into_boxed_slice()
}

/// Compresses all of `input` into `out`, then `flush`: `Finish` ends the stream, `Sync`
/// ends it at a byte boundary with an empty stored block so that more can follow (the gzip
/// segments of `metrics::scrape`).
pub(crate) fn compress(
    c: &mut Compress,
    mut input: &[u8],
    out: &mut Vec<u8>,
    flush: FlushCompress,
) -> Result<(), CompressError> {
    while !input.is_empty() {
        out.reserve(input.len() / 4 + 4096);
        let before = c.total_in();
        c.compress_vec(input, out, FlushCompress::None)?;
        let used = usize::try_from(c.total_in() - before).unwrap_or(input.len());
        input = input.get(used..).unwrap_or_default();
    }
    // Done when the stream ended (`Finish`), or when the compressor left room in the output
    // (any other flush: nothing is pending).
    loop {
        out.reserve(4096);
        let status = c.compress_vec(&[], out, flush)?;
        if status == Status::StreamEnd
            || (flush != FlushCompress::Finish && out.len() < out.capacity())
        {
            return Ok(());
        }
    }
}

/// What [`deflate`] packed, inflated again: `None` for a buffer that does not inflate to a
/// complete stream of at most `max` bytes. `expected` is the length it should have (the
/// output is allocated once).
pub(crate) fn inflate(packed: &[u8], expected: usize, max: usize) -> Option<Vec<u8>> {
    DECOMPRESS.with(|d| {
        let mut d = d.try_borrow_mut().ok()?;
        d.reset(false);
        let mut out = Vec::with_capacity(expected.min(max) + 1);
        let (start_in, start_out) = (d.total_in(), d.total_out());
        loop {
            let used = usize::try_from(d.total_in() - start_in).ok()?;
            let input = packed.get(used..)?;
            if out.len() == out.capacity() {
                if out.len() >= max {
                    return None;
                }
                let more = out.len().max(256).min(max - out.len());
                out.reserve_exact(more);
            }
            let before = (d.total_in(), d.total_out());
            match d
                .decompress_vec(input, &mut out, FlushDecompress::None)
                .ok()?
            {
                Status::StreamEnd => {
                    let produced = usize::try_from(d.total_out() - start_out).ok()?;
                    return (produced <= max).then_some(out);
                }
                // No progress with room left in the output: the input ended early.
                _ if (d.total_in(), d.total_out()) == before && out.len() < out.capacity() => {
                    return None;
                }
                _ => {}
            }
        }
    })
}

/// `data` as stored deflate blocks (RFC 1951 §3.2.4); with `last`, the last block is final
/// (a complete stream), else more blocks may follow.
pub(crate) fn stored_blocks(data: &[u8], last: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 65_535 * 5 + 5);
    let mut chunks = data.chunks(65_535).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[u8::from(last), 0, 0, 0xff, 0xff]);
    }
    while let Some(c) = chunks.next() {
        let n = c.len() as u16;
        out.push(u8::from(last && chunks.peek().is_none()));
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&(!n).to_le_bytes());
        out.extend_from_slice(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_shrinks_repetitive_text() {
        let text = "mailtls_tlsa_record_match{target=\"d000001.example\",mx=\"mx1.example\"} 1\n"
            .repeat(50);
        let z = deflate(text.as_bytes());
        assert!(z.len() * 10 < text.len(), "{} of {}", z.len(), text.len());
        assert_eq!(
            inflate(&z, text.len(), 1 << 20).as_deref(),
            Some(text.as_bytes())
        );
        // The same thread's compressor again (reset, no state carried over).
        let z2 = deflate(b"x");
        assert_eq!(inflate(&z2, 1, 16).as_deref(), Some(&b"x"[..]));
        assert_eq!(inflate(&deflate(b""), 0, 16).as_deref(), Some(&b""[..]));
        // A wrong expected length only costs reallocations.
        assert_eq!(inflate(&z, 3, 1 << 20).as_deref(), Some(text.as_bytes()));
    }

    #[test]
    fn stored_blocks_inflate_like_compressed_ones() {
        let data: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(
            inflate(&stored_blocks(&data, true), data.len(), 1 << 20).as_deref(),
            Some(&data[..])
        );
        assert_eq!(
            inflate(&stored_blocks(b"", true), 0, 16).as_deref(),
            Some(&b""[..])
        );
    }

    #[test]
    fn truncated_corrupt_and_oversized_buffers_are_refused() {
        let text = "0123456789abcdef".repeat(100);
        let z = deflate(text.as_bytes());
        assert_eq!(inflate(&z[..z.len() / 2], text.len(), 1 << 20), None);
        assert_eq!(inflate(&[0xff; 64], 64, 1 << 20), None);
        assert_eq!(inflate(&z, text.len(), 100), None);
        assert_eq!(inflate(&[], 0, 16), None);
    }
}
