//! A `/metrics` body as a stream of chunks, never one body-sized buffer, made from deflate
//! segments that are compressed once and kept between scrapes: gzip sends them as they
//! are, plain inflates them piece by piece while the client reads.
//!
//! gzip (RFC 1952) of one member whose deflate stream (RFC 1951) is a concatenation of
//! independently compressed segments, each ending in a sync flush (an empty stored block,
//! not final), then one final empty block; the CRC-32 of the whole is combined from the
//! segments' CRCs (as pigz does). A segment is the sample lines of one family for one
//! *block* of targets: the reports whose sequence number (`EncodedReport::seq`, taken when
//! the report was encoded) falls in one `BLOCK_TARGETS`-wide range. Reports are served in
//! sequence order, so the targets probed since the last scrape sit in the newest blocks
//! and the blocks they left; every other block's segments are reused as they are. With the
//! scheduler's fixed phases, a target's slot comes round in the same order every interval,
//! so from the third round on the blocks that change between two scrapes are few and
//! contiguous (docs/performance.md, "Scrape"). A block that changed is rebuilt from its
//! reports, each inflated once (they are kept deflated: `EncodedReport`).
//! Samples of one family stay grouped (OpenMetrics forbids interleaving): the body is
//! family by family, each family's header segment, then that family's segment of every block.
//!
//! Not here: encoding the chunks (`exposition`), negotiation and HTTP (`transport`, `http`).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

use super::exposition::{shared_family, EncodedReport, Unpacked};
use crate::pack::{compress, stored_blocks};

/// Deflate level of the segments: zlib-rs level 2 (dynamic Huffman codes) sends 4.9 MiB for
/// 10,000 scale targets where level 1 ("quick", static codes) sends 6.8 MiB; a segment is
/// compressed only when its block changed, so the bytes on the wire win.
const SEGMENT_LEVEL: u32 = 2;
/// Targets per gzip block. Smaller blocks recompress less after a few probes but compress
/// worse (less context) and make more segments.
pub const BLOCK_TARGETS: u64 = 128;
/// Size of the pieces a plain body is inflated into while it is sent.
const PIECE: usize = 256 * 1024;
/// Segments smaller than this are copied together into one piece before they are sent.
const COALESCE: usize = 64 * 1024;
/// gzip member header: magic, deflate, no flags, no mtime, no extra flags, OS unknown.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
/// A final, empty fixed-Huffman deflate block: BFINAL=1, BTYPE=01, end-of-block (7 zero bits).
const FINAL_BLOCK: [u8; 2] = [0x03, 0x00];

/// One scrape's body.
pub struct Scrape {
    pub content_type: &'static str,
    /// The chunks are a gzip stream (`Content-Encoding: gzip`).
    pub gzip: bool,
    pub chunks: Chunks,
}

impl Scrape {
    /// The whole body in one buffer (tests, benchmarks).
    pub fn collect(self) -> Vec<u8> {
        self.chunks.fold(Vec::new(), |mut v, c| {
            v.extend_from_slice(&c);
            v
        })
    }
}

/// The body's chunks, produced while the body is sent.
pub struct Chunks(Inner);

enum Inner {
    Plain(Box<Inflating>),
    Segments(std::vec::IntoIter<Bytes>),
}

impl Iterator for Chunks {
    type Item = Bytes;
    fn next(&mut self) -> Option<Bytes> {
        match &mut self.0 {
            Inner::Plain(p) => p.next(),
            Inner::Segments(s) => coalesce(s),
        }
    }
}

/// Small segments go out together: one copy of a few KiB instead of a frame each.
fn coalesce(segs: &mut std::vec::IntoIter<Bytes>) -> Option<Bytes> {
    let first = segs.next()?;
    if first.len() >= COALESCE || segs.as_slice().first().is_none_or(|s| s.len() >= COALESCE) {
        return Some(first);
    }
    let mut buf = Vec::with_capacity(COALESCE * 2);
    buf.extend_from_slice(&first);
    while buf.len() < COALESCE {
        match segs.as_slice().first() {
            Some(s) if s.len() < COALESCE => {
                buf.extend_from_slice(s);
                segs.next();
            }
            _ => break,
        }
    }
    Some(Bytes::from(buf))
}

/// The plain body: the exporter's own metrics, the report families' segments inflated one
/// after the other into pieces of about [`PIECE`] bytes, then the tail (`# EOF` for
/// OpenMetrics).
struct Inflating {
    head: Option<Bytes>,
    segments: std::vec::IntoIter<Segment>,
    /// The segment being inflated and how much of it was read.
    current: Option<(Bytes, usize)>,
    inflate: Decompress,
    tail: Option<&'static str>,
}

impl Inflating {
    fn next(&mut self) -> Option<Bytes> {
        if let Some(h) = self.head.take() {
            return Some(h);
        }
        let mut buf: Vec<u8> = Vec::with_capacity(PIECE);
        while buf.len() < PIECE {
            let Some((seg, read)) = &mut self.current else {
                match self.segments.next() {
                    Some(s) => {
                        // Every segment is a deflate stream of its own (`GzipCache::segment`).
                        self.inflate.reset(false);
                        self.current = Some((s.data, 0));
                        continue;
                    }
                    None => {
                        if let Some(t) = self.tail.take() {
                            buf.extend_from_slice(t.as_bytes());
                        }
                        break;
                    }
                }
            };
            let input = seg.get(*read..).unwrap_or_default();
            let (in0, out0) = (self.inflate.total_in(), buf.len());
            let status = self
                .inflate
                .decompress_vec(input, &mut buf, FlushDecompress::Sync);
            *read += usize::try_from(self.inflate.total_in() - in0).unwrap_or(input.len());
            let stalled = buf.len() == out0 && *read < seg.len() && buf.len() < buf.capacity();
            // Done with the segment when all of it is read and the output had room left (so
            // nothing is pending inside the inflater); a segment that does not inflate
            // (only a bug could make one) is dropped rather than looped on.
            if status.is_err() || stalled || (*read >= seg.len() && buf.len() < buf.capacity()) {
                self.current = None;
            }
        }
        (!buf.is_empty()).then(|| Bytes::from(buf))
    }
}

/// Serving order: by the sequence in which the reports were encoded.
pub(crate) fn serving_order(reports: &mut [Arc<EncodedReport>]) {
    reports.sort_unstable_by_key(|r| r.seq());
}

/// Raw deflate data ending in a sync flush, with the CRC-32 and length of what it inflates to.
#[derive(Clone)]
struct Segment {
    data: Bytes,
    crc: crc32fast::Hasher,
}

/// One block's segments (one per family) and which reports they hold.
struct Block {
    seqs: Box<[u64]>,
    families: Box<[Segment]>,
}

/// Deflate segments kept between scrapes, and the compressor they are made with.
pub(crate) struct GzipCache {
    deflate: Compress,
    scratch: Vec<u8>,
    /// Per family: its header lines, compressed once.
    headers: Vec<Segment>,
    blocks: HashMap<u64, Block>,
}

impl std::fmt::Debug for GzipCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GzipCache")
            .field("blocks", &self.blocks.len())
            .field("bytes", &self.bytes())
            .finish()
    }
}

/// What one gzip scrape reused and what it compressed (for the benchmark).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GzipStats {
    pub blocks: usize,
    pub compressed: usize,
}

impl Default for GzipCache {
    fn default() -> Self {
        Self {
            deflate: Compress::new(Compression::new(SEGMENT_LEVEL), false),
            scratch: Vec::new(),
            headers: Vec::new(),
            blocks: HashMap::new(),
        }
    }
}

impl GzipCache {
    /// Compressed bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.blocks
            .values()
            .flat_map(|b| b.families.iter())
            .chain(&self.headers)
            .map(|s| s.data.len())
            .sum()
    }

    /// `data` as one segment. A compressor writing into memory does not fail; if it did,
    /// the segment is stored uncompressed (stored blocks), which is still valid deflate.
    fn segment(&mut self, data: &[u8]) -> Segment {
        let mut crc = crc32fast::Hasher::new();
        crc.update(data);
        self.deflate.reset();
        let mut out = Vec::with_capacity(data.len() / 6 + 64);
        let mut data = match compress(&mut self.deflate, data, &mut out, FlushCompress::Sync) {
            Ok(()) => out,
            Err(_) => stored_blocks(data, false),
        };
        // Kept until the block changes: without the spare room reserved while compressing
        // (several times the compressed size; 36 of 41 MB kept at 10,000 targets).
        data.shrink_to_fit();
        Segment {
            data: Bytes::from(data),
            crc,
        }
    }

    /// The segments of the report families over `reports` (in serving order): each
    /// family's header, then its segment of every block (kept, or compressed now for the
    /// blocks whose reports changed), or for the shared family one segment made now.
    fn refresh(
        &mut self,
        headers: &[String],
        reports: &[Arc<EncodedReport>],
    ) -> (Vec<Segment>, GzipStats) {
        if self.headers.len() != headers.len() {
            self.headers = headers.iter().map(|h| self.segment(h.as_bytes())).collect();
        }
        let shared = shared_family(headers);
        let mut old = std::mem::take(&mut self.blocks);
        let mut order = Vec::new();
        let mut stats = GzipStats::default();
        for group in reports.chunk_by(|a, b| a.seq() / BLOCK_TARGETS == b.seq() / BLOCK_TARGETS) {
            let Some(first) = group.first() else { continue };
            let id = first.seq() / BLOCK_TARGETS;
            let seqs: Box<[u64]> = group.iter().map(|r| r.seq()).collect();
            stats.blocks += 1;
            let block = match old.remove(&id) {
                Some(b) if b.seqs == seqs => b,
                _ => {
                    stats.compressed += 1;
                    // Each report inflated once; the shared family is assembled over all
                    // reports below.
                    let texts: Vec<Unpacked<'_>> = group.iter().map(|r| r.unpack()).collect();
                    let families = (0..headers.len())
                        .map(|f| {
                            let mut scratch = std::mem::take(&mut self.scratch);
                            scratch.clear();
                            if Some(f) != shared {
                                for t in &texts {
                                    scratch.extend_from_slice(t.chunk(f).as_bytes());
                                }
                            }
                            let s = self.segment(&scratch);
                            self.scratch = scratch;
                            s
                        })
                        .collect();
                    Block { seqs, families }
                }
            };
            order.push(id);
            self.blocks.insert(id, block);
        }
        let shared_seg = shared.map(|_| self.segment(shared_chunk(reports).as_bytes()));
        let mut segs: Vec<Segment> = Vec::with_capacity(headers.len() * (order.len() + 1));
        for (f, header) in self.headers.iter().enumerate() {
            segs.push(header.clone());
            if Some(f) == shared {
                segs.extend(shared_seg.clone());
                continue;
            }
            segs.extend(
                order
                    .iter()
                    .filter_map(|id| self.blocks.get(id)?.families.get(f))
                    .cloned(),
            );
        }
        (segs, stats)
    }

    /// The gzip body: `head` (the exporter's own metrics, compressed now), the report
    /// families over `reports` (in serving order) from kept or new segments, `tail`.
    pub(crate) fn scrape(
        &mut self,
        content_type: &'static str,
        head: &str,
        headers: &[String],
        reports: &[Arc<EncodedReport>],
        tail: Option<&'static str>,
    ) -> (Scrape, GzipStats) {
        let (families, stats) = self.refresh(headers, reports);
        let head = self.segment(head.as_bytes());
        let tail = tail.map(|t| self.segment(t.as_bytes()));
        let segs = std::iter::once(&head).chain(&families).chain(tail.as_ref());
        let mut crc = crc32fast::Hasher::new();
        let mut out = Vec::with_capacity(families.len() + 4);
        out.push(Bytes::from_static(&GZIP_HEADER));
        for s in segs {
            crc.combine(&s.crc);
            if !s.data.is_empty() {
                out.push(s.data.clone());
            }
        }
        let mut trailer = Vec::with_capacity(10);
        trailer.extend_from_slice(&FINAL_BLOCK);
        let len = crc.total_len();
        trailer.extend_from_slice(&crc.finalize().to_le_bytes());
        // ISIZE: the length modulo 2^32 (RFC 1952 §2.3.1).
        trailer.extend_from_slice(&(len as u32).to_le_bytes());
        out.push(Bytes::from(trailer));
        let scrape = Scrape {
            content_type,
            gzip: true,
            chunks: Chunks(Inner::Segments(out.into_iter())),
        };
        (scrape, stats)
    }

    /// The plain body: `head`, the report families inflated from the same segments as a
    /// gzip scrape while they are sent, `tail`.
    pub(crate) fn plain(
        &mut self,
        content_type: &'static str,
        head: String,
        headers: &[String],
        reports: &[Arc<EncodedReport>],
        tail: Option<&'static str>,
    ) -> (Scrape, GzipStats) {
        let (families, stats) = self.refresh(headers, reports);
        let scrape = Scrape {
            content_type,
            gzip: false,
            chunks: Chunks(Inner::Plain(Box::new(Inflating {
                head: Some(Bytes::from(head)),
                segments: families.into_iter(),
                current: None,
                inflate: Decompress::new(false),
                tail,
            }))),
        };
        (scrape, stats)
    }
}

/// The shared family (`shared_family`) over all reports, each series once (the first
/// report's sample wins). Small: one line per authoritative server address of the zones
/// probed, kept plain in each report and assembled per scrape.
fn shared_chunk(reports: &[Arc<EncodedReport>]) -> String {
    let mut out = String::new();
    let mut seen = std::collections::HashSet::new();
    for r in reports {
        super::authoritative::push_unseen(&mut out, r.shared(), &mut seen);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(z: &[u8]) -> String {
        let mut out = String::new();
        flate2::read::GzDecoder::new(z)
            .read_to_string(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn stored_blocks_and_sync_segments_concatenate_into_valid_deflate() {
        let mut cache = GzipCache::default();
        let a = cache.segment(b"mailtls_a 1\n".repeat(100).as_slice());
        let b = Segment {
            data: Bytes::from(stored_blocks(b"stored\n", false)),
            crc: {
                let mut h = crc32fast::Hasher::new();
                h.update(b"stored\n");
                h
            },
        };
        let empty = cache.segment(b"");
        let mut z = GZIP_HEADER.to_vec();
        let mut crc = crc32fast::Hasher::new();
        for s in [&a, &b, &empty] {
            z.extend_from_slice(&s.data);
            crc.combine(&s.crc);
        }
        z.extend_from_slice(&FINAL_BLOCK);
        let len = crc.total_len() as u32;
        z.extend_from_slice(&crc.finalize().to_le_bytes());
        z.extend_from_slice(&len.to_le_bytes());
        assert_eq!(
            gunzip(&z),
            format!("{}stored\n", "mailtls_a 1\n".repeat(100))
        );
        // A corrupted CRC is noticed: the trailer is checked, so the test above means something.
        let n = z.len();
        z[n - 8] ^= 1;
        let mut out = String::new();
        assert!(flate2::read::GzDecoder::new(&z[..])
            .read_to_string(&mut out)
            .is_err());
    }

    fn inflating(segments: Vec<Segment>) -> Inflating {
        Inflating {
            head: Some(Bytes::from_static(b"head\n")),
            segments: segments.into_iter(),
            current: None,
            inflate: Decompress::new(false),
            tail: Some("# EOF\n"),
        }
    }

    #[test]
    fn plain_bodies_inflate_segments_across_piece_boundaries() {
        let mut cache = GzipCache::default();
        // Compressible, but not to nothing: inflates over several pieces.
        let big: Vec<u8> = (0..700_000u32)
            .map(|i| b"0123456789\n"[(i % 11) as usize] ^ ((i / 997 % 3) as u8))
            .collect();
        let parts: [&[u8]; 4] = [b"first\n", &big, b"", b"last\n"];
        let mut segs: Vec<Segment> = parts.iter().map(|p| cache.segment(p)).collect();
        segs.push(Segment {
            data: Bytes::from(stored_blocks(b"stored\n", false)),
            crc: crc32fast::Hasher::new(),
        });
        let mut it = inflating(segs);
        let pieces: Vec<Bytes> = std::iter::from_fn(|| it.next()).collect();
        assert!(pieces.len() >= 4, "{} pieces", pieces.len());
        assert!(
            pieces.iter().all(|p| p.len() <= PIECE),
            "a piece over {PIECE}"
        );
        let mut want = b"head\n".to_vec();
        for p in parts {
            want.extend_from_slice(p);
        }
        want.extend_from_slice(b"stored\n# EOF\n");
        assert!(
            pieces.concat() == want,
            "the plain body differs from the parts"
        );
    }

    #[test]
    fn a_segment_that_does_not_inflate_is_dropped_not_looped_on() {
        let mut cache = GzipCache::default();
        let good = cache.segment(b"good\n");
        let bad = Segment {
            data: Bytes::from(vec![0xff; 64]),
            crc: crc32fast::Hasher::new(),
        };
        let mut it = inflating(vec![bad, good]);
        let body: Vec<u8> = std::iter::from_fn(|| it.next())
            .take(100)
            .flatten()
            .collect();
        assert!(body.starts_with(b"head\n") && body.ends_with(b"good\n# EOF\n"));
    }

    #[test]
    fn small_segments_are_sent_together_big_ones_alone() {
        let segs = vec![
            Bytes::from(vec![1u8; 10]),
            Bytes::from(vec![2u8; 20]),
            Bytes::from(vec![3u8; COALESCE]),
            Bytes::from(vec![4u8; 5]),
        ];
        let mut it = segs.into_iter();
        let out: Vec<Bytes> = std::iter::from_fn(|| coalesce(&mut it)).collect();
        assert_eq!(
            out.iter().map(Bytes::len).collect::<Vec<_>>(),
            [30, COALESCE, 5]
        );
    }
}
