//! The read buffer: one allocation, zeroed once and reused. Bytes are read into its free tail
//! and consumed from its head; it is compacted only when the tail runs out, so a stream of
//! small frames costs no allocation, no zeroing and no copying per read.

use std::ops::{Deref, DerefMut};

/// The largest read the buffer grows to under sustained load: bigger reads mean fewer
/// system calls per byte, up to the point where the buffer no longer stays in the CPU's
/// caches between the kernel's copy and our parsing (measured here: 64 KiB reads streamed
/// about 1.5x faster than 256 KiB ones).
const MAX_READ: usize = 64 << 10;

/// The biggest buffer kept once empty (it grows past the read size to hold a whole message
/// that is waited for, up to 256 KiB).
const KEPT_MAX: usize = 1 << 20;

/// Received bytes not yet parsed, in `buf[head..tail]`.
#[derive(Debug, Default)]
pub(crate) struct ReadBuffer {
    /// Initialized memory: its whole length may be read into.
    buf: Vec<u8>,
    head: usize,
    tail: usize,
    /// How much free space the next read gets: doubled while reads fill it, up to
    /// [`MAX_READ`].
    read_size: usize,
    /// The last read filled all it was offered: the peer is sending faster than we read.
    behind: bool,
}

impl ReadBuffer {
    /// Appends `data` (for bytes the caller read itself).
    pub(crate) fn extend_from_slice(&mut self, data: &[u8]) {
        self.reserve(data.len());
        self.buf[self.tail..self.tail + data.len()].copy_from_slice(data);
        self.tail += data.len();
    }

    /// Consumes `n` bytes from the front.
    #[inline]
    pub(crate) fn advance(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.head += n;
        if self.head == self.tail {
            self.head = 0;
            self.tail = 0;
        }
    }

    /// Lets `read` fill the free tail (at least `min` bytes of it, more once reads come back
    /// full) and keeps what it read.
    pub(crate) fn fill_with<E>(
        &mut self,
        min: usize,
        read: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<usize, E> {
        let want = min.max(self.read_size);
        self.reserve(want);
        // At most `want`: a read that spills past the caches costs more than it saves.
        let end = self.buf.len().min(self.tail + want);
        let spare = &mut self.buf[self.tail..end];
        let offered = spare.len();
        let result = read(spare);
        if let Ok(n) = result {
            let n = n.min(offered);
            self.tail += n;
            self.behind = n == offered;
            if self.behind && offered >= want {
                // The socket had more: offer more next time.
                self.read_size = (want * 2).min(MAX_READ);
            }
        }
        result
    }

    /// Makes room for `additional` bytes after the tail: first by moving the unread bytes to
    /// the front, then by growing (only the new part is zeroed).
    fn reserve(&mut self, additional: usize) {
        if self.buf.len() - self.tail >= additional {
            return;
        }
        if self.head > 0 {
            self.buf.copy_within(self.head..self.tail, 0);
            self.tail -= self.head;
            self.head = 0;
            if self.buf.len() - self.tail >= additional {
                return;
            }
        }
        let needed = self.tail + additional;
        let grown = needed.max(self.buf.len() * 2);
        self.buf.resize(grown, 0);
    }

    /// Frees the memory if nothing is buffered and the last read drained the socket. While a
    /// fast stream keeps reads full, the buffer is kept: freeing it would cost an allocation
    /// and zeroing per wakeup. The read size it grew to is kept too: a stream that catches up
    /// with its peer now and then goes on with full-size reads, not 16 KiB ones growing back.
    pub(crate) fn release_if_idle(&mut self) {
        if self.is_empty() && !self.behind && !self.buf.is_empty() {
            *self = ReadBuffer {
                read_size: self.read_size,
                ..ReadBuffer::default()
            };
        }
    }

    /// Frees the memory if nothing is buffered and it grew past what reads need (after a big
    /// message passed through).
    pub(crate) fn shrink_if_oversized(&mut self) {
        if self.is_empty() && self.buf.len() > KEPT_MAX {
            self.buf = Vec::new();
        }
    }

    /// The allocated size.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.buf.len()
    }
}

impl Deref for ReadBuffer {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        &self.buf[self.head..self.tail]
    }
}

impl DerefMut for ReadBuffer {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.head..self.tail]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_go_to_the_tail_and_consumption_from_the_head() {
        let mut b = ReadBuffer::default();
        b.extend_from_slice(b"hello ");
        let n = b
            .fill_with(8, |spare| {
                spare[..5].copy_from_slice(b"world");
                Ok::<_, ()>(5)
            })
            .unwrap();
        assert_eq!(n, 5);
        assert_eq!(&b[..], b"hello world");
        b.advance(6);
        assert_eq!(&b[..], b"world");
        b.advance(5);
        assert!(b.is_empty());
    }

    #[test]
    fn the_buffer_is_reused_compacted_and_grown_only_when_needed() {
        let mut b = ReadBuffer::default();
        b.fill_with(16, |_| Ok::<_, ()>(10)).unwrap();
        let size = b.capacity();
        // Consuming most and reading again compacts instead of growing.
        b.advance(7);
        b.fill_with(8, |s| Ok::<_, ()>(s.len().min(8))).unwrap();
        assert_eq!(b.len(), 11);
        assert_eq!(b.capacity(), size);
        // Reads that come back full grow the offer, up to the cap.
        let mut offered = 0;
        for _ in 0..20 {
            b.fill_with(16, |s| {
                offered = s.len();
                Ok::<_, ()>(s.len())
            })
            .unwrap();
            let all = b.len();
            b.advance(all);
        }
        assert!(
            offered >= MAX_READ / 2 && b.capacity() <= 2 * MAX_READ,
            "{offered} {}",
            b.capacity()
        );
        // Kept while reads come back full, freed once one drains the socket.
        b.release_if_idle();
        assert!(b.capacity() > 0);
        b.fill_with(16, |_| Ok::<_, ()>(1)).unwrap();
        b.advance(1);
        b.release_if_idle();
        assert_eq!(b.capacity(), 0);
        // The next read, after the wakeup, is offered the size reads had grown to.
        b.fill_with(16, |s| {
            offered = s.len();
            Ok::<_, ()>(0)
        })
        .unwrap();
        assert!(offered >= MAX_READ / 2, "{offered}");
    }

    #[test]
    fn a_failed_read_keeps_the_buffered_bytes() {
        let mut b = ReadBuffer::default();
        b.extend_from_slice(b"abc");
        assert!(b.fill_with(4, |_| Err::<usize, _>("boom")).is_err());
        assert_eq!(&b[..], b"abc");
    }
}
