//! The read buffer: one allocation, reused. Bytes are read into its free tail and consumed
//! from its head; it is compacted only when the tail runs out, so a stream of small frames
//! costs no allocation, no zeroing and no copying per read. Readers that take a `&mut [u8]`
//! (std's `Read`) need initialized memory, so for them the buffer is zeroed once as it grows;
//! readers that append to a `Vec` (tokio's `read_buf`) fill it without any zeroing, which
//! matters to async connections, whose buffer is freed at every idle wait and allocated
//! again at the next read.

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
    /// Its length is the initialized part (zeroed or read into), which `fill_with` offers
    /// to readers; its spare capacity is only ever appended to (`fill_appending`).
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

    /// Lets `read` fill the free tail (at least `min` bytes of it, up to [`MAX_READ`]; more
    /// once reads come back full) and keeps what it read.
    pub(crate) fn fill_with<E>(
        &mut self,
        min: usize,
        read: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<usize, E> {
        let want = min.min(MAX_READ).max(self.read_size);
        self.reserve(want);
        // At most `want`: a read that spills past the caches costs more than it saves.
        let end = self.buf.len().min(self.tail + want);
        let spare = &mut self.buf[self.tail..end];
        let offered = spare.len();
        let result = read(spare);
        if let Ok(n) = result {
            let n = n.min(offered);
            self.tail += n;
            self.note_read(n, offered, want);
        }
        result
    }

    /// After a read of `n` bytes into `offered` (of the `want` asked for): one that filled all
    /// it was offered means the socket had more, so the next is offered more.
    fn note_read(&mut self, n: usize, offered: usize, want: usize) {
        self.behind = n >= offered;
        if self.behind && offered >= want {
            self.read_size = (want * 2).min(MAX_READ);
        }
    }

    /// Moves the unread bytes to the front.
    fn compact(&mut self) {
        self.buf.copy_within(self.head..self.tail, 0);
        self.tail -= self.head;
        self.head = 0;
    }

    /// [`ReadBuffer::fill_with`] for a reader that appends to a `Vec`: `read` is given the
    /// buffer, ending at the tail, and the most it may append (at least `min` bytes, up to
    /// [`MAX_READ`]; more once reads come back full). Nothing is zeroed: the reader fills
    /// spare capacity itself.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))] // the async driver's
    pub(crate) fn fill_appending<E>(
        &mut self,
        min: usize,
        read: impl FnOnce(&mut Vec<u8>, usize) -> Result<usize, E>,
    ) -> Result<usize, E> {
        let want = min.min(MAX_READ).max(self.read_size);
        if self.head > 0 && self.buf.capacity() - self.tail < want {
            self.compact();
        }
        // Zeroed bytes past the tail are forgotten, not lost: the reader appends after it.
        self.buf.truncate(self.tail);
        self.buf.reserve(want);
        let result = read(&mut self.buf, want);
        // Whatever was appended is kept, even alongside an error.
        let n = self.buf.len() - self.tail;
        self.tail = self.buf.len();
        if result.is_ok() {
            self.note_read(n, want, want);
        }
        result.map(|_| n)
    }

    /// Makes room for `additional` bytes after the tail: first by moving the unread bytes to
    /// the front, then by growing (only the new part is zeroed).
    fn reserve(&mut self, additional: usize) {
        if self.buf.len() - self.tail >= additional {
            return;
        }
        if self.head > 0 {
            self.compact();
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
        if self.is_empty() && !self.behind && self.buf.capacity() > 0 {
            *self = ReadBuffer {
                read_size: self.read_size,
                ..ReadBuffer::default()
            };
        }
    }

    /// Frees the memory if nothing is buffered and it grew past what reads need (after a big
    /// message passed through).
    pub(crate) fn shrink_if_oversized(&mut self) {
        if self.is_empty() && self.buf.capacity() > KEPT_MAX {
            self.buf = Vec::new();
        }
    }

    /// The allocated size.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
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

    /// What tokio's `read_buf` does with the vector: appends into spare capacity.
    fn append(buf: &mut Vec<u8>, max: usize, data: &[u8]) -> Result<usize, ()> {
        let n = data.len().min(max);
        buf.extend_from_slice(&data[..n]);
        Ok(n)
    }

    #[test]
    fn appending_readers_fill_spare_capacity_behind_the_unread_bytes() {
        let mut b = ReadBuffer::default();
        // A reader of slices first: the buffer is zeroed past the tail.
        b.fill_with(8, |spare| {
            spare[..4].copy_from_slice(b"abcd");
            Ok::<_, ()>(4)
        })
        .unwrap();
        b.advance(1);
        // The appending reader is given the vector ending at the tail (the zeroed room
        // behind it forgotten), and at least `min`.
        let n = b
            .fill_appending(4, |buf, max| {
                assert!(max >= 4);
                assert_eq!(buf.len(), 4);
                append(buf, max, b"efg")
            })
            .unwrap();
        assert_eq!(n, 3);
        assert_eq!(&b[..], b"bcdefg");
        // Then slices again: they go behind what was appended.
        b.fill_with(4, |spare| {
            spare[..2].copy_from_slice(b"hi");
            Ok::<_, ()>(2)
        })
        .unwrap();
        assert_eq!(&b[..], b"bcdefghi");
        // Consumed but for one byte, at a tail with too little room behind it: the byte is
        // moved to the front and the read goes right after it.
        b.advance(7);
        let room = b.capacity() - 8;
        let n = b
            .fill_appending(room + 1, |buf, max| {
                assert_eq!(buf.len(), 1, "compacted first");
                append(buf, max, &vec![b'x'; max])
            })
            .unwrap();
        assert_eq!(n, room + 1);
        assert_eq!(&b[..2], b"ix");
        assert_eq!(b.len(), 1 + n);
    }

    #[test]
    fn appended_reads_that_come_back_full_grow_and_idle_buffers_are_freed() {
        let mut b = ReadBuffer::default();
        let mut offered = 0;
        for _ in 0..20 {
            b.fill_appending(16, |buf, max| {
                offered = max;
                append(buf, max, &vec![7; max])
            })
            .unwrap();
            let all = b.len();
            b.advance(all);
        }
        assert_eq!(offered, MAX_READ);
        // Kept while reads come back full; freed once one drains the socket (nothing read:
        // the capacity reserved for the read is given back too).
        b.release_if_idle();
        assert!(b.capacity() > 0);
        b.fill_appending(16, |_, _| Ok::<_, ()>(0)).unwrap();
        b.release_if_idle();
        assert_eq!(b.capacity(), 0);
        // An error keeps what was appended before it and what was buffered.
        b.extend_from_slice(b"ab");
        let result = b.fill_appending(16, |buf, _| {
            buf.push(b'c');
            Err::<usize, _>("boom")
        });
        assert!(result.is_err());
        assert_eq!(&b[..], b"abc");
    }

    #[test]
    fn a_failed_read_keeps_the_buffered_bytes() {
        let mut b = ReadBuffer::default();
        b.extend_from_slice(b"abc");
        assert!(b.fill_with(4, |_| Err::<usize, _>("boom")).is_err());
        assert_eq!(&b[..], b"abc");
    }
}
