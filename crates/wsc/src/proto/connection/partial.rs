//! Messages that arrive in pieces: a data frame streamed into its message, and the message
//! buffer that fragments (or a big frame, read by read) are assembled in, sized and placed
//! for how the kernel copies into it.

use super::DIRECT_MIN;
use crate::proto::copy::PAGE;
use crate::proto::utf8::Utf8Validator;

/// A data frame whose payload is being received piece by piece.
#[derive(Debug)]
pub(super) struct IncomingFrame {
    pub(super) fin: bool,
    pub(super) mask: Option<[u8; 4]>,
    pub(super) remaining: u64,
    pub(super) offset: usize,
}

/// A message being assembled from fragments (or from a frame that arrives in pieces).
#[derive(Debug)]
pub(super) struct PartialMessage {
    pub(super) text: bool,
    /// RSV1 was set on the first frame: the payload is permessage-deflate data.
    pub(super) compressed: bool,
    /// The payload so far is `data[start..filled]` (`start`: see [`aligned_start`]). Past
    /// it, a big frame's buffer holds room that reads fill directly (grown a read at a time,
    /// or a reused buffer's rest).
    pub(super) data: Vec<u8>,
    pub(super) start: usize,
    pub(super) filled: usize,
    /// `data[start..checked]` was fed to `utf8` (text only).
    pub(super) checked: usize,
    pub(super) utf8: Utf8Validator,
}

impl PartialMessage {
    pub(super) fn new(text: bool, compressed: bool, data: Vec<u8>) -> Self {
        let mut partial = PartialMessage {
            text,
            compressed,
            data,
            start: 0,
            filled: 0,
            checked: 0,
            utf8: Utf8Validator::new(),
        };
        partial.align();
        partial
    }

    /// Payload bytes so far.
    pub(super) fn len(&self) -> usize {
        self.filled - self.start
    }

    /// Puts the payload's first byte on a page boundary (see [`aligned_start`]), moving what
    /// arrived so far, in a big uncompressed buffer that has the room; otherwise leaves it.
    pub(super) fn align(&mut self) {
        if self.compressed {
            return;
        }
        let start = aligned_start(&self.data);
        let len = self.len();
        if start == self.start || start + len > self.data.capacity() {
            return;
        }
        if self.data.len() < start + len {
            self.data.resize(start + len, 0);
        }
        self.data.copy_within(self.start..self.filled, start);
        self.checked = self.checked - self.start + start;
        self.filled = start + len;
        self.start = start;
    }

    /// Appends payload bytes copied from the read buffer; `frame_rest` more bytes of the
    /// frame are still to come (`final_frame`: it ends the message).
    pub(super) fn append(&mut self, chunk: &[u8], frame_rest: u64, final_frame: bool) {
        let room = self.data.len() - self.filled;
        let (head, tail) = chunk.split_at(room.min(chunk.len()));
        self.data[self.filled..self.filled + head.len()].copy_from_slice(head);
        self.filled += head.len();
        if !tail.is_empty() {
            self.make_room(self.filled + tail.len(), frame_rest, final_frame);
            // Growing may have moved the payload (and left room past it).
            self.data.truncate(self.filled);
            self.data.extend_from_slice(tail);
            self.filled += tail.len();
        }
    }

    /// Makes the capacity at least `len` bytes (counted from the buffer's start). When it
    /// must grow, room for the rest of the frame (`frame_rest` bytes after those, which
    /// passed the limits) is reserved too, up to [`MAX_RESERVE_AHEAD`], or room for twice
    /// the payload's capacity if that is more (a message in many small fragments), but not
    /// past [`MAX_KEPT_INPUT`] while the message still fits in it, nor past the message's
    /// end where it is known (its final frame): a buffer that overshoots the kept size is
    /// dropped after the message instead of reused (a stream of 16 MiB messages then
    /// allocated, faulted in and zeroed 16 MiB per message). A buffer that
    /// [`PartialMessage::align`] aligns gets a page more, for the lead, and is aligned again
    /// (it may have moved, or grown in place past [`PAGE_ALIGNED_MIN`]).
    pub(super) fn make_room(&mut self, len: usize, frame_rest: u64, final_frame: bool) {
        let capacity = self.data.capacity();
        if capacity >= len {
            return;
        }
        let payload = len - self.start;
        let rest = usize::try_from(frame_rest).unwrap_or(usize::MAX);
        let ahead = payload.saturating_add(rest.min(MAX_RESERVE_AHEAD));
        let end = if final_frame {
            payload.saturating_add(rest)
        } else {
            usize::MAX
        };
        let mut doubled = (capacity - self.start).saturating_mul(2);
        if ahead <= MAX_KEPT_INPUT {
            doubled = doubled.min(MAX_KEPT_INPUT);
        }
        let mut target = ahead.max(doubled.min(end));
        if !self.compressed && target.saturating_add(PAGE) >= PAGE_ALIGNED_MIN {
            target = target.saturating_add(PAGE);
        }
        self.data.reserve_exact(target.max(len) - self.data.len());
        self.align();
    }

    /// Checks the text received since the last call; false if it is not UTF-8.
    pub(super) fn check_utf8(&mut self) -> bool {
        if !self.text || self.compressed || self.checked == self.filled {
            return true;
        }
        let fresh = &self.data[self.checked..self.filled];
        self.checked = self.filled;
        self.utf8.feed(fresh).is_ok()
    }
}

/// The largest message whose buffer is kept for the next big or compressed message (the
/// default frame size limit), and so the largest frame that reuses it (an aligned buffer
/// holds up to a page less than [`KEPT_INPUT_CAPACITY`] after its lead).
pub(super) const MAX_KEPT_INPUT: usize = 16 << 20;

/// The capacity of the largest buffer kept: [`MAX_KEPT_INPUT`] behind its page lead.
pub(super) const KEPT_INPUT_CAPACITY: usize = MAX_KEPT_INPUT + PAGE;

/// Buffers from this capacity on are aligned (see [`aligned_start`]): those that reads go
/// straight into, beyond the first, small allocation of a big frame (which grows at once).
const PAGE_ALIGNED_MIN: usize = 2 * DIRECT_MIN;

/// Where [`PartialMessage::align`] puts an uncompressed payload in `buf`: as far in as a
/// page starts (0 to 4095 bytes) in a big buffer, at its start in a small one. Big message
/// buffers put the payload's first byte on a page boundary because of how the kernel copies
/// received data into them.
///
/// On x86 CPUs with fast short `rep movsb` (FSRM), Linux copies to user memory with
/// `rep movsb`, and on AMD Zen 4 that copy runs up to 17 times slower when the destination's
/// offset in its page is 1 to 15 bytes past the source's. A frame sent into an idle
/// connection starts a page in the sender's socket buffers (on loopback, so in the receiver's
/// too), so its payload lies 2 to 14 bytes (its header) into a page; glibc's buffers of
/// 128 KiB or more come from `mmap` (until glibc raises its threshold after such a buffer
/// is freed) and start 16 bytes into one: exactly the slow case. It doubled the time of the
/// 16 MiB echo benchmark's kernel copy. On a page boundary, the payload is 2 to 14 bytes
/// before the source's offset instead, which is fast.
pub(super) fn aligned_start(buf: &Vec<u8>) -> usize {
    if buf.capacity() < PAGE_ALIGNED_MIN {
        return 0;
    }
    (PAGE - buf.as_ptr() as usize % PAGE) % PAGE
}

/// Most reserved ahead of the data for the rest of a frame (a frame announced bigger, with no
/// limit configured, grows as its data arrives).
const MAX_RESERVE_AHEAD: usize = 4 << 20;
