//! Incremental UTF-8 validation for text messages that arrive in pieces.
//!
//! A text message may be split across frames, and a frame across reads, at any byte, even in the
//! middle of a code point. The validator keeps the (at most three) bytes of an unfinished code
//! point between pieces and reports invalid input at the first byte that can no longer be the
//! start of valid UTF-8, so a bad message is rejected before the rest of it arrives.

/// The error: the text is not valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

/// Validates a byte stream piece by piece.
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    partial: [u8; 4],
    partial_len: usize,
}

/// The length of the code point that starts with `lead` (a valid lead byte).
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the next piece of the stream.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), InvalidUtf8> {
        if self.partial_len > 0 {
            let want = sequence_len(self.partial[0]);
            let take = (want - self.partial_len).min(chunk.len());
            self.partial[self.partial_len..self.partial_len + take].copy_from_slice(&chunk[..take]);
            self.partial_len += take;
            chunk = &chunk[take..];
            match simdutf8::compat::from_utf8(&self.partial[..self.partial_len]) {
                Ok(_) => self.partial_len = 0,
                Err(e) if e.error_len().is_none() => return Ok(()), // still unfinished
                Err(_) => return Err(InvalidUtf8),
            }
        }
        match simdutf8::compat::from_utf8(chunk) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let tail = &chunk[e.valid_up_to()..];
                self.partial[..tail.len()].copy_from_slice(tail);
                self.partial_len = tail.len();
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// Checks that the stream does not end inside a code point, and resets for the next message.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let unfinished = self.partial_len > 0;
        self.partial_len = 0;
        if unfinished {
            Err(InvalidUtf8)
        } else {
            Ok(())
        }
    }
}

/// Validates a complete text at once (the fast path for single-frame messages).
pub fn validate(bytes: &[u8]) -> Result<(), InvalidUtf8> {
    simdutf8::basic::from_utf8(bytes)
        .map(|_| ())
        .map_err(|_| InvalidUtf8)
}

/// Whether `bytes` are all ASCII: ORs the bytes together in 8-byte words, with no early exit
/// and no byte-by-byte tail. Like a `memcpy`, it goes by size: from 16 bytes up, 64-byte
/// blocks (which the compiler turns into vector loads) and then the last 16, 32 or 64 bytes
/// once more, overlapping what came before. For the short messages it is meant for it beats
/// both `<[u8]>::is_ascii` and a general UTF-8 validator, and most text on the wire (JSON)
/// is ASCII.
#[inline]
pub fn is_ascii(bytes: &[u8]) -> bool {
    #[inline(always)]
    fn word(chunk: &[u8]) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        u64::from_ne_bytes(w)
    }
    /// ORs `chunk` into as many lanes as it has words (the lanes reduced once, at the end).
    #[inline(always)]
    fn fold<const N: usize>(lanes: &mut [u64; N], chunk: &[u8]) {
        for (lane, w) in lanes.iter_mut().zip(chunk.chunks_exact(8)) {
            *lane |= word(w);
        }
    }
    let len = bytes.len();
    let acc = if len >= 64 {
        let mut lanes = [0u64; 8];
        let mut blocks = bytes.chunks_exact(64);
        for block in &mut blocks {
            fold(&mut lanes, block);
        }
        if !blocks.remainder().is_empty() {
            fold(&mut lanes, &bytes[len - 64..]);
        }
        lanes.iter().fold(0, |acc, lane| acc | lane)
    } else if len >= 32 {
        let mut lanes = [0u64; 4];
        fold(&mut lanes, &bytes[..32]);
        fold(&mut lanes, &bytes[len - 32..]);
        lanes.iter().fold(0, |acc, lane| acc | lane)
    } else if len >= 16 {
        let mut lanes = [0u64; 2];
        fold(&mut lanes, &bytes[..16]);
        fold(&mut lanes, &bytes[len - 16..]);
        lanes[0] | lanes[1]
    } else if len >= 8 {
        word(&bytes[..8]) | word(&bytes[len - 8..])
    } else {
        return bytes.iter().fold(0, |acc, &b| acc | b) < 0x80;
    };
    acc & 0x8080_8080_8080_8080 == 0
}

/// Whether `bytes` are valid UTF-8 (short ASCII checked first, the common case).
#[inline]
pub fn is_valid(bytes: &[u8]) -> bool {
    // Past a few hundred bytes the validator's runtime-selected SIMD (AVX2 where the CPU has
    // it) wins over the portable word-wise check.
    if bytes.len() >= 512 {
        return simdutf8::basic::from_utf8(bytes).is_ok();
    }
    is_ascii(bytes) || simdutf8::basic::from_utf8(bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check_split(bytes: &[u8], splits: &[usize]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::new();
        let mut start = 0;
        for &s in splits {
            let s = s.clamp(start, bytes.len());
            v.feed(&bytes[start..s])?;
            start = s;
        }
        v.feed(&bytes[start..])?;
        v.finish()
    }

    #[test]
    fn code_point_split_everywhere() {
        let text = "κόσμε € 𝄞 ok".as_bytes();
        for i in 0..=text.len() {
            for j in i..=text.len() {
                assert_eq!(check_split(text, &[i, j]), Ok(()), "split at {i},{j}");
            }
        }
    }

    #[test]
    fn fails_at_first_invalid_byte() {
        let mut v = Utf8Validator::new();
        v.feed("κόσμε".as_bytes()).unwrap();
        // 0xF4 0x90 can never start a valid code point (above U+10FFFF): fail now, not at the end.
        assert_eq!(v.feed(&[0xF4]), Ok(()));
        assert_eq!(v.feed(&[0x90]), Err(InvalidUtf8));
    }

    #[test]
    fn surrogates_and_overlongs_rejected() {
        for bad in [
            &[0xED, 0xA0, 0x80][..],
            &[0xC0, 0xAF],
            &[0xE0, 0x80, 0xAF],
            &[0xFF],
        ] {
            assert_eq!(check_split(bad, &[1]), Err(InvalidUtf8), "{bad:x?}");
            assert_eq!(validate(bad), Err(InvalidUtf8));
        }
    }

    #[test]
    fn truncated_at_end_rejected() {
        assert_eq!(check_split(&[b'a', 0xE2, 0x82], &[]), Err(InvalidUtf8));
    }

    proptest! {
        #[test]
        fn is_ascii_agrees_with_std(len in 0usize..600, high in proptest::option::of(0usize..600),
                                    byte in 0x80u8..=0xFF) {
            let mut bytes: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            if let Some(at) = high.filter(|&at| at < len) {
                bytes[at] = byte;
            }
            prop_assert_eq!(is_ascii(&bytes), bytes.is_ascii());
        }

        #[test]
        fn agrees_with_std(bytes in proptest::collection::vec(any::<u8>(), 0..64),
                           splits in proptest::collection::vec(0usize..64, 0..4)) {
            let mut splits = splits;
            splits.sort_unstable();
            let expected = std::str::from_utf8(&bytes).is_ok();
            prop_assert_eq!(check_split(&bytes, &splits).is_ok(), expected);
        }

        #[test]
        fn valid_strings_pass(s in ".{0,40}", splits in proptest::collection::vec(0usize..160, 0..5)) {
            let mut splits = splits;
            splits.sort_unstable();
            prop_assert_eq!(check_split(s.as_bytes(), &splits), Ok(()));
        }
    }

    #[test]
    fn ascii_check_agrees_with_std_at_every_length_and_position() {
        // Every size class (under 8, 8, 16, 32 and 64 bytes up, the blocks with and without
        // a remainder, and past 256 where the compiler unrolls the block loop), with a high
        // byte at every position of every length.
        let mut data = vec![b'a'; 300];
        for len in 0..=data.len() {
            assert!(is_ascii(&data[..len]), "{len}");
            for pos in 0..len {
                data[pos] = if pos % 2 == 0 { 0x80 } else { 0xFF };
                assert!(!is_ascii(&data[..len]), "{len} {pos}");
                data[pos] = b'a';
            }
        }
        assert!(is_valid("héllo wörld".as_bytes()));
        assert!(!is_valid(&[b'a', 0xC3]));
    }
}
