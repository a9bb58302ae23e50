//! Appending payloads to the output buffer without `memcpy`'s slow case on AMD Zen 4.
//!
//! glibc's `memcpy` copies blocks of a few KiB up to about the L2 cache's size with
//! `rep movsb`, and on AMD Zen 4 `rep movsb` runs up to 17 times slower when the
//! destination's offset within its page is 1 to 15 bytes past the source's (measured here:
//! 3.5 GB/s against 57 GB/s for 256 KiB). That is the usual case for a big payload queued
//! behind its frame header: buffers of 128 KiB or more come from `mmap`, 16 bytes into a page,
//! so a payload copied from one into another behind a 2-, 4- or 10-byte header lands 2 to 10
//! bytes past its source's offset. Copies in 2 KiB pieces use vector loads and stores instead,
//! at full speed at any offset; they are used only where the offsets call for it.

/// The page size that the offsets of copies are counted in (4 KiB on x86).
pub(crate) const PAGE: usize = 4096;

/// Pieces below every glibc `rep movsb` threshold (2 KiB and up, by CPU).
const PIECE: usize = 2 << 10;

/// Destination offsets this far past the source's (within a page) are avoided: the slow
/// range is 1 to 15 bytes, with some slowing up to about 32; 63 leaves a margin.
const NEAR: usize = 63;

/// Appends `src` to `out`.
pub(crate) fn append(out: &mut Vec<u8>, src: &[u8]) {
    out.reserve(src.len());
    let dst = out.as_ptr() as usize + out.len();
    let ahead = dst.wrapping_sub(src.as_ptr() as usize) % PAGE;
    if src.len() <= PIECE || !(1..=NEAR).contains(&ahead) {
        out.extend_from_slice(src);
        return;
    }
    for piece in src.chunks(PIECE) {
        out.extend_from_slice(piece);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_whole_at_every_offset_from_the_source() {
        let backing: Vec<u8> = (0..30_000u32).map(|i| (i % 251) as u8).collect();
        for ahead in [0, 1, 10, 15, 16, 63, 64, 2000] {
            for lead in [0, 3] {
                let mut out = Vec::with_capacity(30_000);
                out.resize(lead, 7u8);
                // The source placed so that the copy lands `ahead` bytes past its page offset.
                let dst = out.as_ptr() as usize + lead;
                let from = dst.wrapping_sub(backing.as_ptr() as usize + ahead) % PAGE;
                let src = &backing[from..from + 20_000];
                append(&mut out, src);
                assert_eq!(&out[..lead], &vec![7u8; lead][..]);
                assert!(out[lead..] == *src, "ahead {ahead}, lead {lead}");
            }
        }
    }
}
