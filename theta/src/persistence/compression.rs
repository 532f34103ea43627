//! [`Compression`]: how a snapshot payload is compressed after encoding, chosen
//! per actor type and recorded in every envelope with the payload's decoded
//! length.
//!
//! - **LZ4** (`lz4_flex`, block format, pure safe Rust): a few hundred MB/s to
//!   compress and GB/s to decompress, roughly 2–4× on text-heavy state. The
//!   choice for actors that save often.
//! - **zstd** (the `zstd` crate, libzstd level 3): slower to compress, better
//!   ratio (often 4–6× on text). The choice for large, rarely saved state.
//!
//! Payloads shorter than [`Compression::MIN_LEN`] are stored as encoded (the
//! frame overhead would eat the gain, and a tiny save should not pay for a
//! compressor), and so is any payload the compressor does not shrink; the
//! envelope then says "none".
//!
//! **Decompression is bounded** by the decoded length the envelope declares
//! (which [`envelope::open`](super::envelope::open) already bounds by the
//! actor's limit) and by what the stored bytes can really produce: a frame that
//! yields more or fewer bytes than declared is refused, and a small hostile
//! frame cannot make theta allocate what it merely claims. LZ4 cannot expand a
//! byte into more than 255, so a declared length beyond that ratio is refused
//! before anything is allocated; zstd output grows with what the frame actually
//! produces, and libzstd's window is capped at the declared length and at the
//! 2 MiB theta writes with, so its own buffers stay within that too.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;

use zstd::zstd_safe;

use super::envelope;

/// How a snapshot payload is compressed after encoding.
///
/// Recorded in the envelope; a payload that does not shrink (or is shorter than
/// [`Compression::MIN_LEN`]) is stored uncompressed whatever the setting, and a
/// later change of the setting still reads old snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Compression {
    /// Stored as encoded (the default).
    #[default]
    None,
    /// LZ4 (block format): fast, moderate ratio.
    Lz4,
    /// zstd (level 3, 2 MiB window): slower, better ratio. Each thread that
    /// compresses or decompresses keeps one zstd context of each kind for
    /// reuse (a few MiB at most, bounded by the window).
    Zstd,
}

/// The most output one LZ4 input byte can produce (a 255 match-length byte).
const LZ4_MAX_RATIO: usize = 255;

/// The zstd level theta writes: libzstd's default, the usual speed/ratio balance.
const ZSTD_LEVEL: i32 = 3;

/// The largest zstd window theta writes (2 MiB, what level 3 uses for large
/// inputs anyway) and so the largest a reader accepts: it bounds libzstd's
/// decoding buffers.
const ZSTD_WINDOW_LOG: u32 = 21;

/// libzstd's smallest window (`ZSTD_WINDOWLOG_ABSOLUTEMIN`).
const ZSTD_MIN_WINDOW_LOG: u32 = 10;

thread_local! {
    /// One zstd compression context per thread, reused: creating one per save
    /// would allocate and fault in its tables every time.
    static ZSTD_CCTX: RefCell<Option<zstd_safe::CCtx<'static>>> = const { RefCell::new(None) };

    /// One zstd decompression context per thread, reused likewise; its buffers
    /// are bounded by theta's 2 MiB window.
    static ZSTD_DCTX: RefCell<Option<zstd_safe::DCtx<'static>>> = const { RefCell::new(None) };
}

impl Compression {
    /// Payloads shorter than this many bytes are never compressed.
    pub const MIN_LEN: usize = 128;

    /// The compression's id in the envelope.
    pub const fn id(self) -> u8 {
        match self {
            Compression::None => envelope::COMPRESSION_NONE,
            Compression::Lz4 => envelope::COMPRESSION_LZ4,
            Compression::Zstd => envelope::COMPRESSION_ZSTD,
        }
    }

    /// The compression with envelope id `id`, if this build knows it.
    pub const fn from_id(id: u8) -> Option<Compression> {
        match id {
            envelope::COMPRESSION_NONE => Some(Compression::None),
            envelope::COMPRESSION_LZ4 => Some(Compression::Lz4),
            envelope::COMPRESSION_ZSTD => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// The compression's name in messages: `"none"`, `"lz4"` or `"zstd"`.
    pub const fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// Compresses `payload` as this compression stores it (for tools and tests
    /// that build envelopes; saves go through the same code). [`None`](Self::None)
    /// returns a copy.
    ///
    /// # Panics
    ///
    /// If libzstd cannot allocate its context (an allocation failure).
    pub fn compress(self, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        // Unbounded: every compressor has a worst-case size it fits in.
        let bound = match self {
            Compression::None => payload.len(),
            Compression::Lz4 => lz4_flex::block::get_maximum_output_size(payload.len()),
            Compression::Zstd => zstd_safe::compress_bound(payload.len()),
        };
        if self.compress_into(payload, &mut out, bound).is_none() {
            // The room is the compressor's own worst case.
            panic!("libzstd could not allocate a compression context");
        }
        out
    }

    /// Appends `payload` compressed to `out` if that takes at most `room` bytes;
    /// `None` (and `out` as it was) otherwise.
    pub(crate) fn compress_into(
        self,
        payload: &[u8],
        out: &mut Vec<u8>,
        room: usize,
    ) -> Option<()> {
        let start = out.len();
        // lz4_flex wants room for its worst case even when the result is small.
        let scratch = match self {
            Compression::Lz4 => room.max(lz4_flex::block::get_maximum_output_size(payload.len())),
            Compression::None | Compression::Zstd => room,
        };
        out.reserve_exact(scratch + envelope::TRAILER_LEN);
        out.resize(start + scratch, 0);
        let written = match self {
            Compression::None => (payload.len() <= room).then(|| {
                out[start..start + payload.len()].copy_from_slice(payload);
                payload.len()
            }),
            Compression::Lz4 => lz4_flex::block::compress_into(payload, &mut out[start..]).ok(),
            Compression::Zstd => ZSTD_CCTX.with(|slot| {
                let mut slot = slot.try_borrow_mut().ok()?;
                let cctx = match &mut *slot {
                    Some(cctx) => cctx,
                    empty => empty.insert(zstd_safe::CCtx::try_create()?),
                };
                cctx.set_parameter(zstd_safe::CParameter::CompressionLevel(ZSTD_LEVEL))
                    .ok()?;
                cctx.set_parameter(zstd_safe::CParameter::WindowLog(ZSTD_WINDOW_LOG))
                    .ok()?;
                // A failed call may leave the context mid-frame; start clean.
                let written = cctx.compress2(&mut out[start..], payload);
                let _ = cctx.reset(zstd_safe::ResetDirective::SessionOnly);
                written.ok()
            }),
        };
        match written {
            Some(n) if n <= room => {
                out.truncate(start + n);
                Some(())
            }
            _ => {
                out.truncate(start);
                None
            }
        }
    }

    /// Decompresses a stored payload that declares `decoded_len` bytes before
    /// compression. Refuses a payload that produces more or fewer bytes, and
    /// allocates no more than the output it really produces (and never more
    /// than `decoded_len`). [`None`](Self::None) checks the length and copies.
    pub fn decompress(self, stored: &[u8], decoded_len: usize) -> Result<Vec<u8>, DecompressError> {
        self.decompress_cow(stored, decoded_len)
            .map(Cow::into_owned)
    }

    /// [`decompress`](Self::decompress) without copying an uncompressed payload.
    pub(crate) fn decompress_cow(
        self,
        stored: &[u8],
        decoded_len: usize,
    ) -> Result<Cow<'_, [u8]>, DecompressError> {
        let fail = |cause: String| DecompressError {
            compression: self,
            cause,
        };
        match self {
            Compression::None if stored.len() == decoded_len => Ok(Cow::Borrowed(stored)),
            Compression::None => Err(fail(format!(
                "{} bytes stored, {decoded_len} declared",
                stored.len()
            ))),
            Compression::Lz4 => {
                if decoded_len > stored.len().saturating_mul(LZ4_MAX_RATIO) {
                    return Err(fail(format!(
                        "{} bytes cannot decompress to the declared {decoded_len}",
                        stored.len()
                    )));
                }
                let mut out = vec![0u8; decoded_len];
                match lz4_flex::block::decompress_into(stored, &mut out) {
                    Ok(n) if n == decoded_len => Ok(Cow::Owned(out)),
                    Ok(n) => Err(fail(format!(
                        "decompresses to {n} bytes, {decoded_len} declared"
                    ))),
                    Err(e) => Err(fail(e.to_string())),
                }
            }
            Compression::Zstd => unzstd(stored, decoded_len).map(Cow::Owned).map_err(fail),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A stored payload did not decompress to its declared length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{compression} payload does not decompress: {cause}")]
pub struct DecompressError {
    compression: Compression,
    cause: String,
}

impl DecompressError {
    /// The compression the payload was stored with.
    pub fn compression(&self) -> Compression {
        self.compression
    }
}

/// Decompresses one zstd frame of exactly `decoded_len` bytes, growing the
/// output only as the frame really produces it.
fn unzstd(frame: &[u8], decoded_len: usize) -> Result<Vec<u8>, String> {
    match zstd_safe::get_frame_content_size(frame) {
        Ok(Some(declared)) if declared == decoded_len as u64 => {}
        Ok(Some(declared)) => {
            return Err(format!(
                "the frame declares {declared} bytes, the envelope {decoded_len}"
            ));
        }
        Ok(None) => return Err("the frame does not declare its size".into()),
        Err(_) => return Err("not a zstd frame".into()),
    }
    ZSTD_DCTX.with(|slot| {
        // Only contended if a decode re-entered this one; then use a fresh one.
        let mut fresh = None;
        let mut reused = slot.try_borrow_mut();
        let dctx =
            match reused.as_deref_mut() {
                Ok(Some(dctx)) => dctx,
                Ok(empty) => empty
                    .insert(zstd_safe::DCtx::try_create().ok_or("cannot allocate a zstd context")?),
                Err(_) => fresh
                    .insert(zstd_safe::DCtx::try_create().ok_or("cannot allocate a zstd context")?),
            };
        let result = unzstd_with(dctx, frame, decoded_len);
        // A refused frame may leave the context mid-frame; start clean next time.
        let _ = dctx.reset(zstd_safe::ResetDirective::SessionOnly);
        result
    })
}

/// [`unzstd`] with a context that is between frames.
fn unzstd_with(
    dctx: &mut zstd_safe::DCtx<'static>,
    frame: &[u8],
    decoded_len: usize,
) -> Result<Vec<u8>, String> {
    // theta's frames never need a window over 2 MiB, nor over the output:
    // refuse a frame that asks for more, so libzstd's own buffers stay within
    // that too, whatever the frame claims.
    let window_log = decoded_len
        .max(1)
        .next_power_of_two()
        .trailing_zeros()
        .clamp(ZSTD_MIN_WINDOW_LOG, ZSTD_WINDOW_LOG);
    dctx.set_parameter(zstd_safe::DParameter::WindowLogMax(window_log))
        .map_err(|code| zstd_safe::get_error_name(code).to_string())?;
    // Start at what a typical ratio gives, grow as the frame really produces.
    let first = decoded_len.min(frame.len().saturating_mul(8).max(64 << 10));
    let mut out: Vec<u8> = Vec::with_capacity(first);
    let mut input = zstd_safe::InBuffer::around(frame);
    let error = |code| zstd_safe::get_error_name(code).to_string();
    loop {
        let before = (input.pos(), out.len());
        let remaining = if out.len() < decoded_len {
            if out.len() == out.capacity() {
                out.reserve_exact(out.len().min(decoded_len - out.len()));
            }
            let pos = out.len();
            let mut output = zstd_safe::OutBuffer::around_pos(&mut out, pos);
            dctx.decompress_stream(&mut output, &mut input)
                .map_err(error)?
        } else {
            // The output is complete: the frame may end now, but not produce
            // another byte.
            let mut probe = [0u8; 1];
            let mut output = zstd_safe::OutBuffer::around(&mut probe[..]);
            let remaining = dctx
                .decompress_stream(&mut output, &mut input)
                .map_err(error)?;
            if output.pos() > 0 {
                return Err(format!(
                    "decompresses to more than the declared {decoded_len} bytes"
                ));
            }
            remaining
        };
        if remaining == 0 {
            break;
        }
        // With room to write, zstd always progresses unless the input ran out.
        if (input.pos(), out.len()) == before {
            return Err("the frame is truncated".into());
        }
    }
    if input.pos() != frame.len() {
        return Err(format!(
            "{} bytes after the frame",
            frame.len() - input.pos()
        ));
    }
    if out.len() != decoded_len {
        return Err(format!(
            "decompresses to {} bytes, {decoded_len} declared",
            out.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(len: usize) -> Vec<u8> {
        let words = ["actor ", "snapshot ", "ledger ", "balance ", "the ", "of "];
        let mut out = Vec::new();
        let mut i = 0usize;
        while out.len() < len {
            out.extend_from_slice(words[(i * 7 + i / 3) % words.len()].as_bytes());
            i += 1;
        }
        out.truncate(len);
        out
    }

    #[test]
    fn both_compressions_round_trip_and_shrink_text() {
        for compression in [Compression::Lz4, Compression::Zstd] {
            let payload = text(64 << 10);
            let stored = compression.compress(&payload);
            assert!(
                stored.len() * 3 < payload.len(),
                "{compression}: {}",
                stored.len()
            );
            assert_eq!(
                compression.decompress(&stored, payload.len()).unwrap(),
                payload
            );
            assert_eq!(Compression::from_id(compression.id()), Some(compression));
        }
    }

    #[test]
    fn a_wrong_declared_length_is_refused_either_way() {
        for compression in [Compression::None, Compression::Lz4, Compression::Zstd] {
            let payload = text(4096);
            let stored = compression.compress(&payload);
            for declared in [payload.len() - 1, payload.len() + 1, 0] {
                let err = compression.decompress(&stored, declared).unwrap_err();
                assert_eq!(err.compression(), compression);
            }
        }
    }

    #[test]
    fn lz4_never_expands_past_its_ratio() {
        for len in [1usize, 100, 4096, 1 << 20] {
            let zeros = vec![0u8; len];
            let stored = Compression::Lz4.compress(&zeros);
            assert!(
                len <= stored.len() * LZ4_MAX_RATIO,
                "{len} from {}",
                stored.len()
            );
            assert_eq!(Compression::Lz4.decompress(&stored, len).unwrap(), zeros);
        }
    }

    #[test]
    fn zstd_refuses_extra_and_truncated_frames() {
        let payload = text(10_000);
        let stored = Compression::Zstd.compress(&payload);
        let doubled = [stored.clone(), stored.clone()].concat();
        assert!(
            Compression::Zstd
                .decompress(&doubled, payload.len())
                .is_err()
        );
        for cut in [1, stored.len() / 2, stored.len() - 1] {
            assert!(
                Compression::Zstd
                    .decompress(&stored[..cut], payload.len())
                    .is_err()
            );
        }
    }

    #[test]
    fn zstd_frames_with_a_window_over_two_mib_are_refused() {
        // theta's own frames of large payloads decode...
        let payload = text(5 << 20);
        let stored = Compression::Zstd.compress(&payload);
        assert_eq!(
            Compression::Zstd
                .decompress(&stored, payload.len())
                .unwrap(),
            payload
        );
        // ...a frame written with an 8 MiB window does not.
        let mut cctx = zstd_safe::CCtx::create();
        cctx.set_parameter(zstd_safe::CParameter::WindowLog(23))
            .unwrap();
        let mut wide = vec![0u8; zstd_safe::compress_bound(payload.len())];
        let n = cctx.compress2(&mut wide[..], &payload).unwrap();
        let err = Compression::Zstd
            .decompress(&wide[..n], payload.len())
            .unwrap_err();
        assert!(err.to_string().contains("memory"), "{err}");
    }

    #[test]
    fn compress_into_respects_its_room() {
        let payload = text(1000);
        let mut out = vec![9u8; 3];
        assert!(
            Compression::Zstd
                .compress_into(&payload, &mut out, 10)
                .is_none()
        );
        assert!(
            Compression::Lz4
                .compress_into(&payload, &mut out, 10)
                .is_none()
        );
        assert_eq!(out, [9, 9, 9]);
        assert!(
            Compression::Zstd
                .compress_into(&payload, &mut out, 1000)
                .is_some()
        );
        assert_eq!(&out[..3], [9, 9, 9]);
        assert_eq!(
            Compression::Zstd.decompress(&out[3..], 1000).unwrap(),
            payload
        );
    }
}
