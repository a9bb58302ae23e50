//! Helpers shared by the fuzz targets: how a fuzz input is split into options and chunks.
//!
//! Input layout (every target that takes chunks):
//!
//! ```text
//! [flags: u8] [n: u8] [n % 16 chunk lengths: u8 each] [stream bytes...]
//! ```
//!
//! The stream is cut into chunks whose lengths cycle through the given list (a length of 0 is a
//! call with no new bytes). With no lengths, or once a whole cycle would make no progress, the
//! rest of the stream is one chunk. Missing bytes count as zero, so every input is valid.

/// A fuzz input split into its parts.
pub struct Input<'a> {
    /// Target-specific option bits.
    pub flags: u8,
    /// The bytes fed to the code under test.
    pub stream: &'a [u8],
    lens: &'a [u8],
}

impl<'a> Input<'a> {
    /// Splits `data` as described in the module docs.
    pub fn new(data: &'a [u8]) -> Self {
        let flags = data.first().copied().unwrap_or(0);
        let n = usize::from(data.get(1).copied().unwrap_or(0) % 16);
        let rest = data.get(2..).unwrap_or(&[]);
        let n = n.min(rest.len());
        let (lens, stream) = rest.split_at(n);
        Input {
            flags,
            stream,
            lens,
        }
    }

    /// The stream cut into chunks (concatenated, they are exactly the stream).
    pub fn chunks(&self) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        let mut rest = self.stream;
        if self.lens.is_empty() {
            out.push(rest);
            return out;
        }
        let mut zeros_in_a_row = 0;
        for &len in self.lens.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let len = usize::from(len);
            if len == 0 {
                zeros_in_a_row += 1;
                if zeros_in_a_row > self.lens.len() {
                    out.push(rest);
                    break;
                }
            } else {
                zeros_in_a_row = 0;
            }
            let (chunk, tail) = rest.split_at(len.min(rest.len()));
            out.push(chunk);
            rest = tail;
        }
        out
    }
}

/// Builds a fuzz input: the inverse of [`Input::new`] (used to write seeds and reproducers).
pub fn encode_input(flags: u8, lens: &[u8], stream: &[u8]) -> Vec<u8> {
    assert!(lens.len() < 16);
    let mut out = vec![flags, lens.len() as u8];
    out.extend_from_slice(lens);
    out.extend_from_slice(stream);
    out
}
