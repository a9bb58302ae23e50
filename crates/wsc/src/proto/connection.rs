//! The WebSocket connection state machine, sans I/O: bytes in, messages out, frames queued.
//!
//! The caller (a driver) puts received bytes into the connection, takes messages out with
//! [`Connection::next_message`], and writes [`Connection::pending_output`] to the socket. Pongs
//! and close replies are queued automatically, so the driver only has to flush after each call.

use bytes::Bytes;

use std::time::Instant;

use super::buffer::ReadBuffer;
use super::close::{parse_close_payload, CloseFrame};
use super::copy;
#[cfg(feature = "deflate")]
use super::deflate::{Codec, InflateError};
use super::frame::{FrameHeader, OpCode, MAX_CONTROL_PAYLOAD};
use super::keepalive::{Due, Keepalive, KeepaliveTimer};
use super::mask::{apply_mask, mask_into, MaskKeys};
use super::message::{str_from_validated, Message, MessageRef, Utf8Bytes};
use super::utf8::{self, Utf8Validator};
use crate::error::{Error, ProtocolError};

/// Which end of the connection this is: it decides who masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Masks what it sends; rejects masked frames.
    Client,
    /// Sends unmasked; rejects unmasked frames.
    Server,
}

/// Limits on what the peer may send. Exceeding one fails the connection with close code 1009.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The largest frame payload accepted (default 16 MiB); `None` for no limit.
    pub max_frame_size: Option<usize>,
    /// The largest message accepted, all fragments together (default 64 MiB); `None` for no
    /// limit.
    pub max_message_size: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_size: Some(16 << 20),
            max_message_size: Some(64 << 20),
        }
    }
}

impl Config {
    /// Sets the largest frame payload accepted.
    pub fn max_frame_size(mut self, limit: Option<usize>) -> Self {
        self.max_frame_size = limit;
        self
    }

    /// Sets the largest message accepted.
    pub fn max_message_size(mut self, limit: Option<usize>) -> Self {
        self.max_message_size = limit;
        self
    }
}

/// Where the connection is in its lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// We sent a close frame and wait for the peer's; we may still receive messages.
    CloseSent,
    /// Both close frames have been exchanged: the driver closes (server) or waits for the
    /// server to close (client) the transport.
    Closed,
    /// The peer broke the protocol; a close frame with the reason is queued, nothing more is
    /// received.
    Failed,
}

/// A data frame whose payload is being received piece by piece.
#[derive(Debug)]
struct IncomingFrame {
    fin: bool,
    mask: Option<[u8; 4]>,
    remaining: u64,
    offset: usize,
}

/// A message being assembled from fragments (or from a frame that arrives in pieces).
#[derive(Debug)]
struct PartialMessage {
    text: bool,
    /// RSV1 was set on the first frame: the payload is permessage-deflate data.
    compressed: bool,
    /// The payload so far is `data[start..filled]` (`start`: see [`PAGE`]). Past it, a big
    /// frame's buffer holds room that reads fill directly (grown a read at a time, or a
    /// reused buffer's rest).
    data: Vec<u8>,
    start: usize,
    filled: usize,
    /// `data[start..checked]` was fed to `utf8` (text only).
    checked: usize,
    utf8: Utf8Validator,
}

impl PartialMessage {
    fn new(text: bool, compressed: bool, data: Vec<u8>) -> Self {
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
    fn len(&self) -> usize {
        self.filled - self.start
    }

    /// Puts the payload's first byte on a page boundary (see [`PAGE`]), moving what arrived
    /// so far, in a big uncompressed buffer that has the room; otherwise leaves it.
    fn align(&mut self) {
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
    fn append(&mut self, chunk: &[u8], frame_rest: u64, final_frame: bool) {
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
    fn make_room(&mut self, len: usize, frame_rest: u64, final_frame: bool) {
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
    fn check_utf8(&mut self) -> bool {
        if !self.text || self.compressed || self.checked == self.filled {
            return true;
        }
        let fresh = &self.data[self.checked..self.filled];
        self.checked = self.filled;
        self.utf8.feed(fresh).is_ok()
    }
}

/// Pongs queued and not yet written beyond which received pings go unanswered: a peer that
/// floods pings while not reading our output cannot grow it without bound (this many pongs
/// are at most 33 KiB). Our own data queued ahead of them does not count: a ping that comes
/// while a big message goes out is answered behind it.
const MAX_UNSENT_PONGS: u32 = 256;

/// What handling a frame header led to.
enum Step {
    /// A complete message or control frame.
    Message(Message),
    /// A complete message, staged in the reused message buffer.
    Staged(Staged),
    /// The frame is not complete yet and must be handled whole (a control frame).
    NeedMore,
    /// The frame's payload now streams into a partial message.
    Streaming,
}

/// The largest message whose buffer is kept for the next big or compressed message (the
/// default frame size limit), and so the largest frame that reuses it (an aligned buffer
/// holds up to a page less than [`KEPT_INPUT_CAPACITY`] after its lead).
const MAX_KEPT_INPUT: usize = 16 << 20;

/// The capacity of the largest buffer kept: [`MAX_KEPT_INPUT`] behind its page lead.
const KEPT_INPUT_CAPACITY: usize = MAX_KEPT_INPUT + PAGE;

/// Big message buffers put the payload's first byte on a page boundary, `start` bytes into
/// the buffer ([`aligned_start`]), because of how the kernel copies received data into them.
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
const PAGE: usize = 4096;

/// Buffers from this capacity on are aligned (see [`PAGE`]): those that reads go straight
/// into, beyond the first, small allocation of a big frame (which grows at once).
const PAGE_ALIGNED_MIN: usize = 2 * DIRECT_MIN;

/// Where [`PartialMessage::align`] puts an uncompressed payload in `buf`: as far in as a
/// page starts (0 to 4095 bytes) in a big buffer, at its start in a small one.
fn aligned_start(buf: &Vec<u8>) -> usize {
    if buf.capacity() < PAGE_ALIGNED_MIN {
        return 0;
    }
    (PAGE - buf.as_ptr() as usize % PAGE) % PAGE
}

/// Frames with at least this much payload still to come, when nothing else is buffered, are
/// read straight into their message rather than through the read buffer.
const DIRECT_MIN: usize = 64 << 10;

/// At most this much is read straight in at a time: a masked payload (server role) is then
/// unmasked while it is still in the cache, and the peer gets its window back in steady
/// steps (one read of many megabytes made the 16 MiB echo slower, not faster).
const DIRECT_MAX: usize = 256 << 10;

/// Initial capacity of a partial message: grows as data actually arrives, so a peer that
/// announces a huge frame does not make us allocate for it up front.
const PARTIAL_INITIAL_CAPACITY: usize = 64 << 10;

/// The largest output buffer kept after it drained (the default frame size limit: messages
/// up to it reuse the buffer).
const MAX_KEPT_OUTPUT: usize = 16 << 20;

/// Most reserved ahead of the data for the rest of a frame (a frame announced bigger, with no
/// limit configured, grows as its data arrives).
const MAX_RESERVE_AHEAD: usize = 4 << 20;

/// Outgoing payloads are copied and masked in blocks of this size (a multiple of 4, small
/// enough to stay in the L1 cache between zeroing the room and writing it).
const MASK_BLOCK: usize = 16 << 10;

/// Payloads of owned messages bigger than this are not copied into the output buffer at once:
/// they are copied (and masked) a block of this size at a time as the output drains, so the
/// buffer stays bounded and in the L2 cache, however big the message. Blocks of 256 KiB made
/// the 16 MiB echo about 9% slower here (four times the writes, each handing the kernel
/// less to pack); 2 and 4 MiB were no faster than 1 MiB.
const OUTPUT_BLOCK: usize = 1 << 20;

/// The part of a big outgoing payload not yet copied into the output buffer.
#[derive(Debug)]
struct OutgoingPayload {
    data: Bytes,
    /// How much of `data` went into the output buffer already.
    pos: usize,
    mask: Option<[u8; 4]>,
}

/// Where [`Connection::receive_into`] wants the next bytes.
#[cfg(feature = "tokio")]
pub(crate) enum ReadTarget<'a> {
    /// Fill (a prefix of) this slice.
    Slice(&'a mut [u8]),
    /// Append at most this many bytes to this vector.
    Append(&'a mut Vec<u8>, usize),
}

/// Messages up to this size that are not all in yet are waited for whole (then lent without
/// a copy) rather than assembled piece by piece.
const LEND_WAIT_MAX: usize = 256 << 10;

/// What `lendable` found at the head of the read buffer.
enum Lend {
    /// A whole message: (text, header length, payload length).
    Ready(bool, usize, usize),
    /// A lendable message whose end has not arrived yet.
    Wait,
}

/// Where a whole compressed message is.
#[cfg_attr(not(feature = "deflate"), allow(dead_code))]
enum Compressed {
    /// The first `len` bytes of the read buffer (unmasked).
    ReadBuffer(usize),
    /// Assembled from its frames.
    Assembled(Vec<u8>),
}

/// A message made ready by [`Connection::stage_next`].
#[derive(Debug)]
enum Staged {
    None,
    /// Lent from the read buffer: the payload is its first `len` bytes.
    Range {
        text: bool,
        len: usize,
    },
    /// Assembled (fragments, compression, control frames).
    Owned(Message),
    /// A big or inflated message in the connection's reused message buffer: `len` bytes
    /// from `start`.
    Assembled {
        text: bool,
        start: usize,
        len: usize,
    },
}

/// The sans-I/O WebSocket connection, for either role.
#[derive(Debug)]
pub struct Connection {
    role: Role,
    config: Config,
    state: State,
    read_buf: ReadBuffer,
    /// The message [`Connection::stage_next`] made ready, lent out until the next call.
    staged: Staged,
    out: Vec<u8>,
    out_pos: usize,
    /// The rest of a big payload queued after `out` (see [`OUTPUT_BLOCK`]).
    out_rest: Option<Box<OutgoingPayload>>,
    /// Frames queued while a big payload goes out (pongs, pings, the close, more messages):
    /// moved to `out` once it has, so that they wait for it without copying it.
    out_after: Vec<u8>,
    incoming: Option<IncomingFrame>,
    partial: Option<PartialMessage>,
    /// The buffer of the last big or compressed message, kept (up to
    /// [`KEPT_INPUT_CAPACITY`]) for the next one; its length is how much of it is
    /// initialized.
    assembled: Vec<u8>,
    keys: MaskKeys,
    #[cfg(feature = "deflate")]
    deflate: Option<Box<Codec>>,
    keepalive: Option<KeepaliveTimer>,
    /// The largest payload lent as it is (the smaller of the frame and message limits).
    lend_limit: usize,
    /// Bytes of a text message being waited for whole that were already checked as UTF-8.
    wait_checked: usize,
    /// Output written so far, in bytes: where queued frames stand in all output ever queued.
    written: u64,
    /// Where the last pong queued ends (in the same count as `written`), and how many were
    /// queued since the output last got past one.
    last_pong_end: u64,
    unsent_pongs: u32,
}

impl Connection {
    /// A connection in the open state (after the opening handshake).
    pub fn new(role: Role, config: Config) -> Self {
        let lend_limit = match (config.max_frame_size, config.max_message_size) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(usize::MAX),
        };
        Connection {
            role,
            config,
            state: State::Open,
            read_buf: ReadBuffer::default(),
            staged: Staged::None,
            out: Vec::new(),
            out_pos: 0,
            out_rest: None,
            out_after: Vec::new(),
            incoming: None,
            partial: None,
            assembled: Vec::new(),
            keys: MaskKeys::new(),
            #[cfg(feature = "deflate")]
            deflate: None,
            keepalive: None,
            lend_limit,
            wait_checked: 0,
            written: 0,
            last_pong_end: 0,
            unsent_pongs: 0,
        }
    }

    /// A connection that negotiated permessage-deflate.
    #[cfg(feature = "deflate")]
    pub fn with_deflate(role: Role, config: Config, codec: Option<Codec>) -> Self {
        let mut conn = Connection::new(role, config);
        conn.deflate = codec.map(Box::new);
        conn
    }

    /// The negotiated permessage-deflate parameters, if any.
    #[cfg(feature = "deflate")]
    pub fn deflate_params(&self) -> Option<&super::deflate::DeflateParams> {
        self.deflate.as_ref().map(|c| c.params())
    }

    fn compression_enabled(&self) -> bool {
        #[cfg(feature = "deflate")]
        return self.deflate.is_some();
        #[cfg(not(feature = "deflate"))]
        return false;
    }

    /// This end's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Where the connection is in its lifetime.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether a message, ping, pong or close may still be sent.
    pub fn can_send(&self) -> bool {
        self.state == State::Open
    }

    /// Whether the connection will deliver no more messages.
    pub fn is_terminated(&self) -> bool {
        matches!(self.state, State::Closed | State::Failed)
    }

    // ----- input -----

    /// Takes over the buffer the opening handshake was read into, holding what came after
    /// the head (its bytes consumed): one buffer, zeroed once, and no copy of those bytes.
    pub(crate) fn adopt_read_buffer(&mut self, received: ReadBuffer) {
        debug_assert!(self.read_buf.is_empty());
        self.read_buf = received;
    }

    /// Hands received bytes to the connection.
    pub fn receive(&mut self, data: &[u8]) {
        self.settle();
        self.read_buf.extend_from_slice(data);
    }

    /// Lets `read` fill the connection's buffers directly (no intermediate copy): it is given
    /// a slice of at least `chunk` bytes (up to 64 KiB) and returns how many it filled.
    ///
    /// The slice is free room in the read buffer, which is reused from read to read (never
    /// zeroed again) and offered more, up to 64 KiB, while reads keep filling it; or, in the
    /// middle of a big frame, the next part of that frame's message buffer.
    pub fn receive_with<E>(
        &mut self,
        chunk: usize,
        read: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<usize, E> {
        self.settle();
        if let Some(target) = self.direct_target() {
            let offered = target.len();
            let n = read(target)?;
            self.direct_received(n, offered);
            return Ok(n.min(offered));
        }
        // A big message passed through: give the memory back.
        self.read_buf.shrink_if_oversized();
        self.read_buf.fill_with(chunk, read)
    }

    /// [`Connection::receive_with`] for a reader that can also append to a `Vec` without the
    /// memory being zeroed first (async streams: tokio's `read_buf`): `read` gets either the
    /// next part of a big frame's message buffer, as a slice, or the read buffer, to append at
    /// most the given number of bytes to.
    #[cfg(feature = "tokio")]
    pub(crate) fn receive_into<E>(
        &mut self,
        chunk: usize,
        read: impl FnOnce(ReadTarget<'_>) -> Result<usize, E>,
    ) -> Result<usize, E> {
        self.settle();
        if let Some(target) = self.direct_target() {
            let offered = target.len();
            let n = read(ReadTarget::Slice(target))?;
            self.direct_received(n, offered);
            return Ok(n.min(offered));
        }
        self.read_buf.shrink_if_oversized();
        self.read_buf
            .fill_appending(chunk, |buf, max| read(ReadTarget::Append(buf, max)))
    }

    /// Where a read may go straight into the message being received: the rest of a big
    /// frame, when the read buffer holds nothing that comes before it. The message buffer
    /// grows (zeroed) by at most one read's worth at a time, as the data arrives.
    fn direct_target(&mut self) -> Option<&mut [u8]> {
        if !self.read_buf.is_empty() {
            return None;
        }
        let frame = self.incoming.as_ref()?;
        let partial = self.partial.as_mut()?;
        if partial.compressed {
            return None;
        }
        let remaining = usize::try_from(frame.remaining).unwrap_or(usize::MAX);
        let want = remaining.min(DIRECT_MAX);
        if want < DIRECT_MIN {
            return None;
        }
        if partial.data.len() < partial.filled + want {
            partial.make_room(
                partial.filled + want,
                frame.remaining - want as u64,
                frame.fin,
            );
        }
        // (Growing may have moved the payload.)
        let end = partial.filled + want;
        if partial.data.len() < end {
            partial.data.resize(end, 0);
        }
        Some(&mut partial.data[partial.filled..end])
    }

    /// Takes `n` bytes read into [`Connection::direct_target`] as payload (unmasked here;
    /// text is checked by the parser).
    fn direct_received(&mut self, n: usize, offered: usize) {
        let (Some(frame), Some(partial)) = (self.incoming.as_mut(), self.partial.as_mut()) else {
            return;
        };
        // A reader cannot report more than it was given.
        let n = n.min(offered);
        let chunk = &mut partial.data[partial.filled..partial.filled + n];
        if let Some(key) = frame.mask {
            apply_mask(chunk, key, frame.offset);
        }
        frame.offset += n;
        frame.remaining -= n as u64;
        partial.filled += n;
    }

    /// Frees the read and write buffers if they are empty: an idle connection then holds no
    /// buffer memory (async drivers call this when the socket has nothing to read). A read
    /// buffer that the last read filled is kept: the peer is streaming faster than we read.
    pub fn release_idle_buffers(&mut self) {
        self.release_io_buffers();
        self.release_message_buffer();
    }

    /// [`Connection::release_idle_buffers`] but for the message buffer.
    pub(crate) fn release_io_buffers(&mut self) {
        self.settle();
        self.read_buf.release_if_idle();
        if self.out_pos == self.out.len() && self.out.capacity() > 0 {
            self.out = Vec::new();
            self.out_pos = 0;
            self.out_after = Vec::new();
        }
    }

    /// Frees the buffer kept from the last big or compressed message (nothing borrows it
    /// once the staged message is settled).
    pub(crate) fn release_message_buffer(&mut self) {
        self.settle();
        self.assembled = Vec::new();
    }

    /// Whether the buffer of the last big or compressed message is kept.
    #[cfg(feature = "tokio")]
    pub(crate) fn holds_message_buffer(&self) -> bool {
        self.assembled.capacity() > 0
    }

    /// Bytes received but not yet turned into messages.
    pub fn buffered_input(&self) -> usize {
        let staged = match self.staged {
            Staged::Range { len, .. } => len,
            _ => 0,
        };
        self.read_buf.len() - staged
    }

    /// Tells the connection that the peer closed the transport. Returns an error unless the
    /// close handshake had completed (or the connection had already failed).
    pub fn receive_eof(&mut self) -> Result<(), Error> {
        match self.state {
            State::Closed | State::Failed => Ok(()),
            State::Open | State::CloseSent => {
                self.state = State::Failed;
                Err(Error::ConnectionReset)
            }
        }
    }

    /// Marks the connection dead after a transport failure (I/O error, TLS error): nothing
    /// more is received or sent, and the driver reports [`Error::ConnectionClosed`] from then
    /// on.
    pub fn abort(&mut self) {
        self.state = State::Failed;
        self.incoming = None;
        self.partial = None;
        self.out.clear();
        self.out_pos = 0;
        self.out_rest = None;
        self.out_after.clear();
    }

    /// Turns keepalive pings on (or off with `None`); the first ping is due one interval
    /// after `now`. The driver then calls [`Connection::poll_keepalive`].
    pub fn set_keepalive(&mut self, keepalive: Option<Keepalive>, now: Instant) {
        self.keepalive = keepalive.map(|k| KeepaliveTimer::new(k, now));
    }

    /// Whether a keepalive pong is overdue at `now` (the next [`Connection::poll_keepalive`]
    /// would fail the connection): a driver may read once more first, in case the pong has
    /// arrived but not been received yet.
    pub fn keepalive_overdue(&self, now: Instant) -> bool {
        self.state == State::Open && self.keepalive.as_ref().is_some_and(|k| k.overdue(now))
    }

    /// The keepalive's pong timeout (zero when keepalive is off).
    pub fn keepalive_timeout(&self) -> std::time::Duration {
        self.keepalive
            .as_ref()
            .map_or(std::time::Duration::ZERO, |k| k.settings().timeout)
    }

    /// Whether keepalive pings are on.
    pub fn has_keepalive(&self) -> bool {
        self.keepalive.is_some()
    }

    /// Runs the keepalive clock at `now`: queues a ping when one is due and returns when to
    /// call again (`None`: keepalive is off or the connection is no longer open). Call it
    /// after [`Connection::next_message`] has taken every buffered frame, so that a pong
    /// already received counts.
    ///
    /// A pong overdue at `now` fails the connection (as [`Connection::abort`]: the peer is
    /// gone, so nothing more is queued for it) and returns [`Error::KeepaliveTimeout`].
    pub fn poll_keepalive(&mut self, now: Instant) -> Result<Option<Instant>, Error> {
        let Some(keepalive) = &mut self.keepalive else {
            return Ok(None);
        };
        if self.state != State::Open {
            return Ok(None);
        }
        match keepalive.poll(now) {
            Due::Wait(at) => Ok(Some(at)),
            Due::Ping(payload, at) => {
                self.write_frame(OpCode::Ping, true, false, &payload)?;
                Ok(Some(at))
            }
            Due::Dead => {
                // A close frame would go nowhere, and writing to a dead peer can block.
                let waited = keepalive.settings().timeout;
                self.abort();
                Err(Error::KeepaliveTimeout(waited))
            }
        }
    }

    /// The next complete message or control frame, if the buffered bytes hold one.
    ///
    /// `Ok(None)` means more bytes are needed (or the connection is closed: see
    /// [`Connection::is_terminated`]). On a protocol violation the connection queues a close
    /// frame with the matching code, moves to [`State::Failed`] and returns the error; messages
    /// completed before the violation have already been returned.
    pub fn next_message(&mut self) -> Result<Option<Message>, Error> {
        if self.stage_next()? {
            Ok(self.take_staged())
        } else {
            Ok(None)
        }
    }

    /// Makes the next message ready to be borrowed with [`Connection::staged`], without
    /// copying it when it can be lent straight from the read buffer (an unfragmented,
    /// uncompressed text or binary message that is all there). Returns whether one is ready;
    /// errors as [`Connection::next_message`]. The message stays lent until the next call
    /// that takes or receives data.
    #[inline]
    pub fn stage_next(&mut self) -> Result<bool, Error> {
        match self.try_lend() {
            Some(ready) => Ok(ready),
            None => self.stage_general(),
        }
    }

    /// The lending half of [`Connection::stage_next`] alone: stages the next message if it
    /// is a whole data frame that can be lent from the read buffer as it is, and returns
    /// whether it did. `false` changes nothing that `stage_next` would not redo: the
    /// drivers' borrowed reads try this first, inline, and go their general way only when it
    /// fails.
    #[inline(always)]
    pub(crate) fn stage_lent(&mut self) -> bool {
        self.try_lend() == Some(true)
    }

    /// Settles the last message, then lends the next one if it can: `Some(true)` when one is
    /// staged, `Some(false)` when the rest of a lendable frame is worth waiting for, `None`
    /// when the message must go the general way.
    #[inline(always)]
    fn try_lend(&mut self) -> Option<bool> {
        self.settle();
        match self.lendable()? {
            Lend::Ready(text, header_len, len) => {
                self.read_buf.advance(header_len);
                self.staged = Staged::Range { text, len };
                Some(true)
            }
            Lend::Wait => Some(false),
        }
    }

    /// [`Connection::stage_next`] the general way, out of line so that the lending path,
    /// inlined at the caller, stays small.
    #[inline(never)]
    fn stage_general(&mut self) -> Result<bool, Error> {
        match self.parse_owned()? {
            Some(staged) => {
                self.staged = staged;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Whether the staged message is a data message lent from the read buffer (the fast
    /// path: no control frame, nothing queued in reply).
    #[inline]
    pub fn staged_is_lent(&self) -> bool {
        matches!(self.staged, Staged::Range { .. })
    }

    /// The message [`Connection::stage_next`] made ready, borrowed.
    #[inline(always)]
    pub fn staged(&self) -> Option<MessageRef<'_>> {
        // The lent message (the fast path) inline at the caller; the rest out of line.
        if let Staged::Range { text, len } = self.staged {
            let bytes = &self.read_buf[..len];
            return Some(if text {
                // Validated by `lendable`, untouched since (the loan ends before any change).
                MessageRef::Text(str_from_validated(bytes))
            } else {
                MessageRef::Binary(bytes)
            });
        }
        self.staged_other()
    }

    #[inline(never)]
    fn staged_other(&self) -> Option<MessageRef<'_>> {
        match &self.staged {
            Staged::None | Staged::Range { .. } => None,
            Staged::Owned(message) => Some(MessageRef::from(message)),
            Staged::Assembled {
                text: true,
                start,
                len,
            } => {
                // Validated piece by piece as it arrived, untouched since.
                Some(MessageRef::Text(str_from_validated(
                    &self.assembled[*start..*start + *len],
                )))
            }
            Staged::Assembled {
                text: false,
                start,
                len,
            } => Some(MessageRef::Binary(&self.assembled[*start..*start + *len])),
        }
    }

    /// Takes the staged message out, owned (a lent one is copied).
    pub fn take_staged(&mut self) -> Option<Message> {
        match std::mem::replace(&mut self.staged, Staged::None) {
            Staged::None => None,
            Staged::Range { text, len } => {
                let payload = Bytes::copy_from_slice(&self.read_buf[..len]);
                self.read_buf.advance(len);
                Some(if text {
                    Message::Text(Utf8Bytes::from_validated(payload))
                } else {
                    Message::Binary(payload)
                })
            }
            Staged::Owned(message) => Some(message),
            Staged::Assembled { text, start, len } => {
                let payload = if len < DIRECT_MIN {
                    // Small: copied; the buffer stays for the next message.
                    Bytes::copy_from_slice(&self.assembled[start..start + len])
                } else {
                    // Big: the buffer is handed over, trimmed to the message (the excess
                    // given back), the lead sliced off.
                    let mut buf = std::mem::take(&mut self.assembled);
                    buf.truncate(start + len);
                    if buf.capacity() - (start + len) > (len / 4).max(PAGE) {
                        buf.shrink_to_fit();
                    }
                    Bytes::from(buf).slice(start..)
                };
                if self.assembled.capacity() > KEPT_INPUT_CAPACITY {
                    self.assembled = Vec::new();
                }
                Some(if text {
                    Message::Text(Utf8Bytes::from_validated(payload))
                } else {
                    Message::Binary(payload)
                })
            }
        }
    }

    /// Ends the loan of the staged message: its bytes are consumed.
    #[inline]
    fn settle(&mut self) {
        match self.staged {
            Staged::None => {}
            Staged::Range { len, .. } => {
                self.read_buf.advance(len);
                self.staged = Staged::None;
            }
            Staged::Owned(_) => self.staged = Staged::None,
            Staged::Assembled { .. } => {
                self.staged = Staged::None;
                if self.assembled.capacity() > KEPT_INPUT_CAPACITY {
                    // A very big (inflated) message: give the memory back.
                    self.assembled = Vec::new();
                }
            }
        }
    }

    /// The frame at the head of the buffer, if it is a whole message that can be lent as it
    /// is: `(text, header length, payload length)`. Anything else (control frames, fragments,
    /// compression, violations, limits) goes the general way, which checks every rule.
    #[inline]
    fn lendable(&mut self) -> Option<Lend> {
        let found = self.lendable_frame();
        if !matches!(found, Some(Lend::Wait)) {
            // Whatever was waited for is over: the count must not carry to another frame.
            self.wait_checked = 0;
        }
        found
    }

    /// [`Connection::lendable`] without the bookkeeping of the wait.
    #[inline]
    fn lendable_frame(&mut self) -> Option<Lend> {
        if self.incoming.is_some() || self.partial.is_some() || self.is_terminated() {
            return None;
        }
        let buf = &mut self.read_buf[..];
        let (&b0, &b1) = (buf.first()?, buf.get(1)?);
        // FIN set, no RSV bits, text (1) or binary (2).
        let text = match b0 {
            0x81 => true,
            0x82 => false,
            _ => return None,
        };
        let masked = b1 & 0x80 != 0;
        if masked != (self.role == Role::Server) {
            return None;
        }
        let (len, mut header_len) = match b1 & 0x7F {
            126 => (
                usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
                4,
            ),
            // 64-bit lengths are for big messages: the general path handles them.
            127 => return None,
            n => (usize::from(n), 2),
        };
        let key = if masked {
            let key = [
                *buf.get(header_len)?,
                *buf.get(header_len + 1)?,
                *buf.get(header_len + 2)?,
                *buf.get(header_len + 3)?,
            ];
            header_len += 4;
            Some(key)
        } else {
            None
        };
        if len > self.lend_limit {
            return None;
        }
        if buf.len() - header_len < len {
            if len > LEND_WAIT_MAX || (text && key.is_some()) {
                return None;
            }
            if text && !check_arrived(&buf[header_len..], &mut self.wait_checked) {
                return None;
            }
            // Worth waiting for the rest rather than copying it piece by piece.
            return Some(Lend::Wait);
        }
        let payload = &mut buf[header_len..header_len + len];
        if let Some(key) = key {
            apply_mask(payload, key, 0);
        }
        // While it was waited for, the text was checked up to `wait_checked` (a code point
        // boundary; zero unless this frame was waited for, and never for masked text).
        if text && !utf8::is_valid(&payload[self.wait_checked..]) {
            if let Some(key) = key {
                // Undo, so that the general path sees the frame as it came.
                apply_mask(payload, key, 0);
            }
            return None;
        }
        Some(Lend::Ready(text, header_len, len))
    }

    /// The general parser: every rule, fragments, control frames, compression.
    fn parse_owned(&mut self) -> Result<Option<Staged>, Error> {
        loop {
            if self.is_terminated() {
                return Ok(None);
            }
            if let Some(frame) = self.incoming.as_mut() {
                let Some(partial) = self.partial.as_mut() else {
                    unreachable!("a data frame in progress always belongs to a message")
                };
                if frame.remaining > 0 && !self.read_buf.is_empty() {
                    let n = (frame.remaining.min(self.read_buf.len() as u64)) as usize;
                    let chunk = &mut self.read_buf[..n];
                    if let Some(key) = frame.mask {
                        apply_mask(chunk, key, frame.offset);
                    }
                    frame.offset += n;
                    frame.remaining -= n as u64;
                    partial.append(chunk, frame.remaining, frame.fin);
                    self.read_buf.advance(n);
                }
                // Also covers what a direct read put in.
                if !partial.check_utf8() {
                    return Err(self.fail(ProtocolError::InvalidUtf8));
                }
                if frame.remaining > 0 {
                    return Ok(None);
                }
                let fin = frame.fin;
                self.incoming = None;
                if fin {
                    return self.finish_partial().map(Some);
                }
                continue;
            }
            let (header, header_len) = match FrameHeader::decode(&self.read_buf) {
                Ok(Some(decoded)) => decoded,
                Ok(None) => return Ok(None),
                Err(e) => return Err(self.fail(ProtocolError::Frame(e))),
            };
            match self.start_frame(header, header_len)? {
                Step::Message(message) => return Ok(Some(Staged::Owned(message))),
                Step::Staged(staged) => return Ok(Some(staged)),
                Step::NeedMore => return Ok(None),
                Step::Streaming => {}
            }
        }
    }

    /// Handles a decoded header: control frames and whole single-frame messages complete at
    /// once; other data frames start streaming into a partial message.
    fn start_frame(&mut self, header: FrameHeader, header_len: usize) -> Result<Step, Error> {
        let rsv = (u8::from(header.rsv[0]) << 2)
            | (u8::from(header.rsv[1]) << 1)
            | u8::from(header.rsv[2]);
        // permessage-deflate claims RSV1 on the first frame of a data message.
        let compressed = header.rsv[0]
            && self.compression_enabled()
            && matches!(header.opcode, OpCode::Text | OpCode::Binary);
        let unclaimed = if compressed { rsv & 0b011 } else { rsv };
        if unclaimed != 0 {
            return Err(self.fail(ProtocolError::ReservedBits(rsv)));
        }
        match (self.role, header.mask.is_some()) {
            (Role::Client, true) => return Err(self.fail(ProtocolError::MaskedFrameFromServer)),
            (Role::Server, false) => return Err(self.fail(ProtocolError::UnmaskedFrameFromClient)),
            _ => {}
        }
        if header.opcode.is_control() {
            // Control payloads are at most 125 bytes (checked by the decoder): wait for all.
            let total = header_len + header.payload_len as usize;
            if self.read_buf.len() < total {
                return Ok(Step::NeedMore);
            }
            self.read_buf.advance(header_len);
            let payload = self.take_payload(header.payload_len as usize, header.mask);
            return self.on_control(header.opcode, payload).map(Step::Message);
        }
        if let Some(max) = self.config.max_frame_size {
            if header.payload_len > max as u64 {
                let size = header.payload_len;
                return Err(self.fail(ProtocolError::FrameTooLarge { size, max }));
            }
        }
        match (header.opcode, self.partial.is_some()) {
            (OpCode::Continuation, false) => {
                return Err(self.fail(ProtocolError::UnexpectedContinuation))
            }
            (OpCode::Text | OpCode::Binary, true) => {
                return Err(self.fail(ProtocolError::ExpectedContinuation))
            }
            _ => {}
        }
        let so_far = self.partial.as_ref().map_or(0, |p| p.len() as u64);
        let size = so_far.saturating_add(header.payload_len);
        let too_big = match self.config.max_message_size {
            Some(max) if size > max as u64 => Some(max),
            _ if usize::try_from(size).is_err() => Some(usize::MAX),
            _ => None,
        };
        if let Some(max) = too_big {
            return Err(self.fail(ProtocolError::MessageTooLarge { size, max }));
        }
        let len = header.payload_len as usize;
        let text = header.opcode == OpCode::Text;
        if header.fin
            && header.opcode != OpCode::Continuation
            && self.read_buf.len() - header_len >= len
        {
            // Fast path: a whole single-frame message is here.
            self.read_buf.advance(header_len);
            if compressed {
                // Inflated straight from the read buffer into the reused message buffer.
                let payload = &mut self.read_buf[..len];
                if let Some(key) = header.mask {
                    apply_mask(payload, key, 0);
                }
                return self
                    .inflate_and_stage(text, Compressed::ReadBuffer(len))
                    .map(Step::Staged);
            }
            let payload = self.take_payload(len, header.mask);
            return self.complete(text, false, payload).map(Step::Message);
        }
        self.read_buf.advance(header_len);
        if header.opcode != OpCode::Continuation {
            // A big frame, or the first of fragments (which may add up to a big message).
            let maybe_big = len >= DIRECT_MIN || !header.fin;
            let reuse = !compressed
                && maybe_big
                && len <= MAX_KEPT_INPUT
                && self.assembled.len() >= aligned_start(&self.assembled) + len;
            let data = if reuse {
                // The last big message's buffer holds it: reads go straight in.
                std::mem::take(&mut self.assembled)
            } else {
                // Grows as the data arrives (see `direct_target`), so that a peer that
                // announces a huge frame does not make us allocate for it up front.
                Vec::with_capacity(len.min(PARTIAL_INITIAL_CAPACITY))
            };
            self.partial = Some(PartialMessage::new(text, compressed, data));
        }
        self.incoming = Some(IncomingFrame {
            fin: header.fin,
            mask: header.mask,
            remaining: header.payload_len,
            offset: 0,
        });
        Ok(Step::Streaming)
    }

    /// Takes `len` payload bytes off the read buffer, unmasked. Big payloads are split off
    /// without copying; small ones are copied, so that a small message the caller keeps does
    /// not pin the whole read buffer (and force a new one for the next read).
    fn take_payload(&mut self, len: usize, mask: Option<[u8; 4]>) -> Bytes {
        let chunk = &mut self.read_buf[..len];
        if let Some(key) = mask {
            apply_mask(chunk, key, 0);
        }
        let payload = Bytes::copy_from_slice(chunk);
        self.read_buf.advance(len);
        payload
    }

    /// Completes the message whose last fragment just arrived.
    fn finish_partial(&mut self) -> Result<Staged, Error> {
        let Some(mut partial) = self.partial.take() else {
            unreachable!("finish_partial is only called with a message in progress")
        };
        if partial.text && !partial.compressed && partial.utf8.finish().is_err() {
            return Err(self.fail(ProtocolError::InvalidUtf8));
        }
        if !partial.compressed && (DIRECT_MIN..=KEPT_INPUT_CAPACITY).contains(&partial.data.len()) {
            // A big buffer: lend the message from it, and keep it for the next one.
            let (start, len) = (partial.start, partial.len());
            self.assembled = partial.data;
            return Ok(Staged::Assembled {
                text: partial.text,
                start,
                len,
            });
        }
        // Room past the message is only left in a reused buffer (lent above); drop any.
        partial.data.truncate(partial.filled);
        if partial.compressed {
            // Never aligned: the payload starts the buffer.
            return self.inflate_and_stage(partial.text, Compressed::Assembled(partial.data));
        }
        let payload = Bytes::from(partial.data).slice(partial.start..);
        self.complete(partial.text, true, payload)
            .map(Staged::Owned)
    }

    /// Turns a complete uncompressed payload into a message, checking text (unless it was
    /// `validated` piece by piece already).
    fn complete(&mut self, text: bool, validated: bool, payload: Bytes) -> Result<Message, Error> {
        if !text {
            return Ok(Message::Binary(payload));
        }
        if !validated && utf8::validate(&payload).is_err() {
            return Err(self.fail(ProtocolError::InvalidUtf8));
        }
        Ok(Message::Text(Utf8Bytes::from_validated(payload)))
    }

    /// Inflates a whole compressed message into the reused message buffer and stages it
    /// there (text checked): no allocation per message. Fails the connection on bad data.
    #[cfg(feature = "deflate")]
    fn inflate_and_stage(&mut self, text: bool, from: Compressed) -> Result<Staged, Error> {
        let max = self.config.max_message_size.unwrap_or(usize::MAX);
        let Some(codec) = self.deflate.as_mut() else {
            unreachable!("compressed messages are only accepted with a codec")
        };
        self.assembled.clear();
        let inflated = match &from {
            Compressed::ReadBuffer(len) => {
                codec.decompress(&self.read_buf[..*len], &mut self.assembled, max)
            }
            Compressed::Assembled(data) => codec.decompress(data, &mut self.assembled, max),
        };
        if let Compressed::ReadBuffer(len) = from {
            self.read_buf.advance(len);
        }
        let len = self.assembled.len();
        match inflated {
            Ok(()) => {}
            Err(InflateError::TooLarge) => {
                let size = len as u64;
                return Err(self.fail(ProtocolError::MessageTooLarge { size, max }));
            }
            Err(InflateError::Corrupt(why)) => {
                return Err(self.fail(ProtocolError::BadCompression(why)))
            }
        }
        if text && !utf8::is_valid(&self.assembled) {
            return Err(self.fail(ProtocolError::InvalidUtf8));
        }
        Ok(Staged::Assembled {
            text,
            start: 0,
            len,
        })
    }

    #[cfg(not(feature = "deflate"))]
    fn inflate_and_stage(&mut self, _: bool, _: Compressed) -> Result<Staged, Error> {
        unreachable!("compressed messages are only accepted with a codec")
    }

    /// Handles a ping, pong or close.
    fn on_control(&mut self, opcode: OpCode, payload: Bytes) -> Result<Message, Error> {
        match opcode {
            OpCode::Ping => {
                if self.written >= self.last_pong_end {
                    self.unsent_pongs = 0;
                }
                if self.state == State::Open && self.unsent_pongs < MAX_UNSENT_PONGS {
                    self.write_frame(OpCode::Pong, true, false, &payload)?;
                    self.unsent_pongs += 1;
                    // The pong is the last thing queued.
                    self.last_pong_end = self.written + self.queued_output() as u64;
                }
                Ok(Message::Ping(payload))
            }
            OpCode::Pong => {
                if let Some(keepalive) = &mut self.keepalive {
                    keepalive.on_pong();
                }
                Ok(Message::Pong(payload))
            }
            _ => {
                let frame = match parse_close_payload(payload) {
                    Ok(frame) => frame,
                    Err(e) => return Err(self.fail(ProtocolError::InvalidClose(e))),
                };
                if self.state == State::Open {
                    // Answer once, echoing the code (RFC 6455 section 5.5.1).
                    let reply = frame.as_ref().map(|f| f.code.0.to_be_bytes());
                    self.write_frame(
                        OpCode::Close,
                        true,
                        false,
                        reply.as_ref().map_or(&[][..], |c| c),
                    )?;
                }
                self.state = State::Closed;
                Ok(Message::Close(frame))
            }
        }
    }

    /// Fails the connection: queues a close frame for `error` (if we may still send) and stops
    /// receiving.
    fn fail(&mut self, error: ProtocolError) -> Error {
        if self.state == State::Open {
            let code = error.close_code();
            // A masking-key failure here cannot be reported better than the protocol error.
            let _ = self.write_frame(OpCode::Close, true, false, &code.0.to_be_bytes());
        }
        self.state = State::Failed;
        self.incoming = None;
        self.partial = None;
        Error::Protocol(error)
    }

    // ----- output -----

    /// Queues a message, ping, pong or close frame.
    pub fn send(&mut self, message: Message) -> Result<(), Error> {
        match message {
            Message::Text(text) => self.send_data_owned(OpCode::Text, text.into_bytes()),
            Message::Binary(data) => self.send_data_owned(OpCode::Binary, data),
            Message::Ping(data) => self.send_control(OpCode::Ping, &data),
            Message::Pong(data) => self.send_control(OpCode::Pong, &data),
            Message::Close(frame) => self.close(frame),
        }
    }

    /// Queues a text message.
    pub fn send_text(&mut self, text: &str) -> Result<(), Error> {
        self.send_data(OpCode::Text, text.as_bytes())
    }

    /// Queues a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), Error> {
        self.send_data(OpCode::Binary, data)
    }

    /// Queues a ping (at most 125 bytes of payload).
    pub fn send_ping(&mut self, data: &[u8]) -> Result<(), Error> {
        self.send_control(OpCode::Ping, data)
    }

    /// Queues an unsolicited pong (at most 125 bytes of payload).
    pub fn send_pong(&mut self, data: &[u8]) -> Result<(), Error> {
        self.send_control(OpCode::Pong, data)
    }

    /// Queues a message split into frames of at most `fragment_size` bytes of payload.
    pub fn send_fragmented(
        &mut self,
        message: &Message,
        fragment_size: usize,
    ) -> Result<(), Error> {
        let (opcode, payload) = match message {
            Message::Text(t) => (OpCode::Text, t.as_bytes()),
            Message::Binary(b) => (OpCode::Binary, &b[..]),
            _ => return Err(Error::InvalidInput("control frames cannot be fragmented")),
        };
        if fragment_size == 0 {
            return Err(Error::InvalidInput("fragment size must be at least 1"));
        }
        self.check_open()?;
        let compressed = self.compress(payload);
        let (payload, rsv1) = match &compressed {
            Some(c) => (&c[..], true),
            None => (payload, false),
        };
        let mut chunks = payload.chunks(fragment_size).peekable();
        if chunks.peek().is_none() {
            return self.write_frame(opcode, true, rsv1, &[]);
        }
        let mut first = true;
        while let Some(chunk) = chunks.next() {
            let op = if first { opcode } else { OpCode::Continuation };
            self.write_frame(op, chunks.peek().is_none(), rsv1 && first, chunk)?;
            first = false;
        }
        Ok(())
    }

    /// Starts the closing handshake: queues a close frame. Messages may still arrive until the
    /// peer's close frame.
    pub fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), Error> {
        self.check_open()?;
        let mut payload = Vec::new();
        if let Some(frame) = &frame {
            let sendable = frame.code.is_valid_on_wire();
            if !sendable {
                return Err(Error::InvalidInput(
                    "close code must be 1000-1003, 1007-1011 or 3000-4999",
                ));
            }
            if frame.reason.len() > MAX_CONTROL_PAYLOAD - 2 {
                return Err(Error::InvalidInput("close reason longer than 123 bytes"));
            }
            payload.extend_from_slice(&frame.code.0.to_be_bytes());
            payload.extend_from_slice(frame.reason.as_bytes());
        }
        self.write_frame(OpCode::Close, true, false, &payload)?;
        self.state = State::CloseSent;
        Ok(())
    }

    fn check_open(&self) -> Result<(), Error> {
        match self.state {
            State::Open => Ok(()),
            State::CloseSent => Err(Error::AlreadyClosed),
            State::Closed | State::Failed => Err(Error::ConnectionClosed),
        }
    }

    fn send_data(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), Error> {
        self.check_open()?;
        match self.compress(payload) {
            Some(compressed) => self.write_frame(opcode, true, true, &compressed),
            None => self.write_frame(opcode, true, false, payload),
        }
    }

    /// [`Connection::send_data`] for a payload the connection may keep: a big one is queued
    /// by reference and copied into the output a block at a time.
    fn send_data_owned(&mut self, opcode: OpCode, payload: Bytes) -> Result<(), Error> {
        self.check_open()?;
        let (payload, rsv1) = match self.compress(&payload) {
            Some(compressed) => (Bytes::from(compressed), true),
            None => (payload, false),
        };
        if payload.len() <= OUTPUT_BLOCK || self.out_rest.is_some() {
            // Small, or behind another big one: copied whole.
            return self.write_frame(opcode, true, rsv1, &payload);
        }
        let mask = self.write_header(opcode, true, rsv1, payload.len(), OUTPUT_BLOCK)?;
        self.out_rest = Some(Box::new(OutgoingPayload {
            data: payload,
            pos: 0,
            mask,
        }));
        self.refill_output(OUTPUT_BLOCK);
        Ok(())
    }

    /// The compressed payload, if compression is on and worth it for this message.
    #[cfg(feature = "deflate")]
    fn compress(&mut self, payload: &[u8]) -> Option<Vec<u8>> {
        let codec = self.deflate.as_mut()?;
        if !codec.should_compress(payload.len()) {
            return None;
        }
        let mut out = Vec::with_capacity(payload.len() / 2 + 64);
        // A compressor failure (never expected) falls back to sending uncompressed.
        codec.compress(payload, &mut out).ok()?;
        Some(out)
    }

    #[cfg(not(feature = "deflate"))]
    fn compress(&mut self, _: &[u8]) -> Option<Vec<u8>> {
        None
    }

    fn send_control(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), Error> {
        self.check_open()?;
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(Error::InvalidInput(
                "ping and pong payloads are at most 125 bytes",
            ));
        }
        self.write_frame(opcode, true, false, payload)
    }

    /// Appends one frame to the output, masked if we are the client.
    fn write_frame(
        &mut self,
        opcode: OpCode,
        fin: bool,
        rsv1: bool,
        payload: &[u8],
    ) -> Result<(), Error> {
        let mask = self.write_header(opcode, fin, rsv1, payload.len(), payload.len())?;
        copy_masked(self.frame_target(), payload, mask, 0);
        Ok(())
    }

    /// Appends a frame header for a payload of `len` bytes that the caller appends next, with
    /// room for `follows` bytes of it (one allocation for both, where the output buffer was
    /// freed while idle); returns the masking key (client role). Whatever is queued before
    /// stays before.
    fn write_header(
        &mut self,
        opcode: OpCode,
        fin: bool,
        rsv1: bool,
        len: usize,
        follows: usize,
    ) -> Result<Option<[u8; 4]>, Error> {
        let mask = match self.role {
            Role::Client => Some(self.keys.next_key()?),
            Role::Server => None,
        };
        let header = FrameHeader {
            fin,
            rsv: [rsv1, false, false],
            opcode,
            mask,
            payload_len: len as u64,
        };
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
        let out = self.frame_target();
        out.reserve(header.encoded_len() + follows);
        header.encode(out);
        Ok(mask)
    }

    /// Where the next frame goes: behind a big payload still being queued, if there is one.
    fn frame_target(&mut self) -> &mut Vec<u8> {
        if self.out_rest.is_some() {
            &mut self.out_after
        } else {
            &mut self.out
        }
    }

    /// Copies up to `limit` more bytes of a big payload being queued into the output buffer;
    /// once it is all there, the frames queued behind it follow.
    fn refill_output(&mut self, limit: usize) {
        let Some(rest) = self.out_rest.as_mut() else {
            return;
        };
        let block = &rest.data[rest.pos..];
        let block = &block[..block.len().min(limit)];
        self.out.reserve(block.len());
        copy_masked(&mut self.out, block, rest.mask, rest.pos);
        rest.pos += block.len();
        if rest.pos == rest.data.len() {
            self.out_rest = None;
            self.out.append(&mut self.out_after);
        }
    }

    /// The next bytes to write to the peer: a part of what is queued (the rest follows once
    /// they are consumed).
    pub fn pending_output(&self) -> &[u8] {
        &self.out[self.out_pos..]
    }

    /// How many bytes are queued for the peer in all (more than
    /// [`Connection::pending_output`] while a big message goes out).
    pub fn queued_output(&self) -> usize {
        let rest = self
            .out_rest
            .as_ref()
            .map_or(0, |rest| rest.data.len() - rest.pos);
        self.out.len() - self.out_pos + rest + self.out_after.len()
    }

    /// Marks `n` bytes of [`Connection::pending_output`] as written.
    pub fn consume_output(&mut self, n: usize) {
        let n = n.min(self.out.len() - self.out_pos);
        self.written += n as u64;
        self.out_pos += n;
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
            if self.out.capacity() > MAX_KEPT_OUTPUT {
                // A very big message went out; give the memory back. Smaller buffers are
                // kept: allocating (and faulting in) megabytes per message costs more than
                // the copy itself.
                self.out = Vec::new();
            }
            self.refill_output(OUTPUT_BLOCK);
        }
    }

    /// Whether frames are waiting to be written.
    pub fn has_pending_output(&self) -> bool {
        // A big payload being queued always has its next block in `out`.
        self.out_pos < self.out.len()
    }
}

/// While a text frame is waited for: checks what has arrived past `checked` (text still fails
/// at its first invalid byte) and moves `checked` to the last code point boundary. False if
/// it is not UTF-8. Out of line: the lending path stays small.
#[inline(never)]
fn check_arrived(arrived: &[u8], checked: &mut usize) -> bool {
    let fresh = &arrived[*checked..];
    match simdutf8::compat::from_utf8(fresh) {
        Ok(_) => *checked += fresh.len(),
        Err(e) if e.error_len().is_none() => *checked += e.valid_up_to(),
        Err(_) => return false,
    }
    true
}

/// Appends `payload` to `out`, masked with `mask` from payload offset `offset` (client role).
fn copy_masked(out: &mut Vec<u8>, payload: &[u8], mask: Option<[u8; 4]>, offset: usize) {
    match mask {
        None => copy::append(out, payload),
        Some(key) => {
            // Block by block, so that the zeroed room is still in the cache when it is
            // written (see `mask_into` for why not a copy, then the mask).
            for (i, block) in payload.chunks(MASK_BLOCK).enumerate() {
                let start = out.len();
                out.resize(start + block.len(), 0);
                mask_into(&mut out[start..], block, key, offset + i * MASK_BLOCK);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::close::CloseCode;
    use proptest::prelude::*;

    /// A frame as a server sends it (unmasked) or, with `mask`, as a client does.
    fn frame(opcode: u8, fin: bool, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = Vec::new();
        let header = FrameHeader {
            fin,
            rsv: [false; 3],
            opcode: OpCode::from_u8(opcode).unwrap(),
            mask,
            payload_len: payload.len() as u64,
        };
        header.encode(&mut out);
        let start = out.len();
        out.extend_from_slice(payload);
        if let Some(key) = mask {
            apply_mask(&mut out[start..], key, 0);
        }
        out
    }

    fn client() -> Connection {
        Connection::new(Role::Client, Config::default())
    }

    fn server() -> Connection {
        Connection::new(Role::Server, Config::default())
    }

    /// Decodes the frames a connection queued (as the peer would see them, unmasked).
    fn sent_frames(conn: &mut Connection) -> Vec<(FrameHeader, Vec<u8>)> {
        let mut out = conn.pending_output().to_vec();
        let n = out.len();
        conn.consume_output(n);
        let mut frames = Vec::new();
        let mut pos = 0;
        while pos < out.len() {
            let (h, hl) = FrameHeader::decode(&out[pos..]).unwrap().unwrap();
            let start = pos + hl;
            let end = start + h.payload_len as usize;
            if let Some(key) = h.mask {
                apply_mask(&mut out[start..end], key, 0);
            }
            frames.push((h, out[start..end].to_vec()));
            pos = end;
        }
        frames
    }

    fn feed_all(conn: &mut Connection, bytes: &[u8]) -> Vec<Result<Message, Error>> {
        conn.receive(bytes);
        drain(conn)
    }

    fn drain(conn: &mut Connection) -> Vec<Result<Message, Error>> {
        let mut out = Vec::new();
        loop {
            match conn.next_message() {
                Ok(Some(m)) => out.push(Ok(m)),
                Ok(None) => return out,
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }

    fn protocol_error(result: &Result<Message, Error>) -> &ProtocolError {
        match result {
            Err(Error::Protocol(e)) => e,
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }

    /// The close code of the single close frame the connection queued.
    fn sent_close_code(conn: &mut Connection) -> Option<u16> {
        let frames = sent_frames(conn);
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0].0.opcode, OpCode::Close);
        let p = &frames[0].1;
        (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]))
    }

    // ----- masking -----

    #[test]
    fn client_masks_every_frame_with_fresh_keys() {
        let mut c = client();
        c.send_text("hello").unwrap();
        c.send_text("hello").unwrap();
        c.send_ping(b"p").unwrap();
        let frames = sent_frames(&mut c);
        assert!(frames.iter().all(|(h, _)| h.mask.is_some()));
        assert_ne!(frames[0].0.mask, frames[1].0.mask);
        assert_eq!(frames[0].1, b"hello");
        // On the wire the payload is masked, not plain.
        c.send_text("hello").unwrap();
        assert!(!c.pending_output().windows(5).any(|w| w == b"hello"));
    }

    #[test]
    fn server_sends_unmasked() {
        let mut s = server();
        s.send_binary(&[1, 2, 3]).unwrap();
        assert_eq!(s.pending_output(), &[0x82, 0x03, 1, 2, 3]);
    }

    #[test]
    fn client_rejects_masked_frames() {
        let mut c = client();
        let out = feed_all(&mut c, &frame(1, true, b"hi", Some([1, 2, 3, 4])));
        assert_eq!(
            protocol_error(&out[0]),
            &ProtocolError::MaskedFrameFromServer
        );
        assert_eq!(sent_close_code(&mut c), Some(1002));
    }

    #[test]
    fn server_rejects_unmasked_frames_and_unmasks() {
        let mut s = server();
        let out = feed_all(&mut s, &frame(1, true, b"hi", Some([9, 8, 7, 6])));
        assert_eq!(out[0].as_ref().unwrap(), &Message::text("hi"));
        let out = feed_all(&mut s, &frame(1, true, b"hi", None));
        assert_eq!(
            protocol_error(&out[0]),
            &ProtocolError::UnmaskedFrameFromClient
        );
    }

    // ----- framing -----

    #[test]
    fn reserved_bits_and_opcodes_fail_with_1002() {
        for bytes in [
            vec![0xC1, 0x00],
            vec![0xA1, 0x00],
            vec![0x91, 0x00],
            vec![0x83, 0x00],
            vec![0x8B, 0x00],
        ] {
            let mut c = client();
            let out = feed_all(&mut c, &bytes);
            assert!(matches!(out[0], Err(Error::Protocol(_))), "{bytes:x?}");
            assert_eq!(sent_close_code(&mut c), Some(1002), "{bytes:x?}");
        }
    }

    #[test]
    fn frame_split_at_every_byte() {
        let mut bytes = frame(2, true, &[7u8; 300], None);
        bytes.extend(frame(9, true, b"ping", None));
        bytes.extend(frame(1, false, "κό".as_bytes(), None));
        bytes.extend(frame(0, true, "σμε".as_bytes(), None));
        for split in 0..bytes.len() {
            let mut c = client();
            let mut out = feed_all(&mut c, &bytes[..split]);
            out.extend(feed_all(&mut c, &bytes[split..]));
            let out: Vec<Message> = out.into_iter().map(Result::unwrap).collect();
            assert_eq!(
                out,
                [
                    Message::binary(vec![7u8; 300]),
                    Message::Ping(Bytes::from_static(b"ping")),
                    Message::text("κόσμε")
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn byte_by_byte_feed() {
        let mut bytes = frame(1, true, b"hello", None);
        bytes.extend(frame(10, true, b"", None));
        let mut c = client();
        let mut got = Vec::new();
        for b in &bytes {
            got.extend(feed_all(&mut c, &[*b]).into_iter().map(Result::unwrap));
        }
        assert_eq!(got, [Message::text("hello"), Message::Pong(Bytes::new())]);
    }

    #[test]
    fn empty_messages() {
        let mut c = client();
        let out = feed_all(
            &mut c,
            &[frame(1, true, b"", None), frame(2, true, b"", None)].concat(),
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].as_ref().unwrap(), &Message::text(""));
        assert_eq!(out[1].as_ref().unwrap(), &Message::binary(Vec::new()));
    }

    // ----- fragmentation -----

    #[test]
    fn fragments_reassemble_with_control_frames_between() {
        let bytes = [
            frame(2, false, b"ab", None),
            frame(9, true, b"1", None),
            frame(0, false, b"", None),
            frame(10, true, b"2", None),
            frame(0, true, b"cd", None),
        ]
        .concat();
        let mut c = client();
        let out: Vec<Message> = feed_all(&mut c, &bytes)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            out,
            [
                Message::Ping(Bytes::from_static(b"1")),
                Message::Pong(Bytes::from_static(b"2")),
                Message::binary(&b"abcd"[..])
            ]
        );
        // The ping was answered with the same payload.
        let frames = sent_frames(&mut c);
        assert_eq!(frames.len(), 1);
        assert_eq!(
            (frames[0].0.opcode, frames[0].1.as_slice()),
            (OpCode::Pong, &b"1"[..])
        );
    }

    #[test]
    fn continuation_without_message_fails() {
        let mut c = client();
        let out = feed_all(&mut c, &frame(0, true, b"x", None));
        assert_eq!(
            protocol_error(&out[0]),
            &ProtocolError::UnexpectedContinuation
        );
        assert_eq!(sent_close_code(&mut c), Some(1002));
    }

    #[test]
    fn new_message_during_fragmented_one_fails() {
        let mut c = client();
        let out = feed_all(
            &mut c,
            &[frame(1, false, b"a", None), frame(1, true, b"b", None)].concat(),
        );
        assert_eq!(
            protocol_error(&out[0]),
            &ProtocolError::ExpectedContinuation
        );
    }

    #[test]
    fn fragmented_control_frame_fails() {
        let mut c = client();
        let out = feed_all(&mut c, &frame(9, false, b"", None));
        assert!(matches!(protocol_error(&out[0]), ProtocolError::Frame(_)));
    }

    #[test]
    fn sends_fragmented() {
        let mut c = client();
        c.send_fragmented(&Message::text("abcdefg"), 3).unwrap();
        let frames = sent_frames(&mut c);
        let summary: Vec<(OpCode, bool, &[u8])> = frames
            .iter()
            .map(|(h, p)| (h.opcode, h.fin, p.as_slice()))
            .collect();
        assert_eq!(
            summary,
            [
                (OpCode::Text, false, &b"abc"[..]),
                (OpCode::Continuation, false, &b"def"[..]),
                (OpCode::Continuation, true, &b"g"[..])
            ]
        );
        // A server role parses it back into one message.
        let mut s = server();
        let mut c = client();
        c.send_fragmented(&Message::binary(vec![5u8; 1000]), 7)
            .unwrap();
        let out = feed_all(&mut s, c.pending_output());
        assert_eq!(out[0].as_ref().unwrap(), &Message::binary(vec![5u8; 1000]));
    }

    // ----- text -----

    /// Drains the output in writes of `write` bytes, as a driver does; returns the wire.
    fn drain_output(conn: &mut Connection, write: usize) -> Vec<u8> {
        let mut wire = Vec::new();
        while conn.has_pending_output() {
            let n = conn.pending_output().len().min(write);
            wire.extend_from_slice(&conn.pending_output()[..n]);
            conn.consume_output(n);
        }
        assert_eq!(conn.queued_output(), 0);
        wire
    }

    #[test]
    fn big_messages_go_out_block_by_block_in_order() {
        let big: Vec<u8> = (0..(3 * OUTPUT_BLOCK + 3))
            .map(|i| (i % 251) as u8)
            .collect();
        for role in [Role::Client, Role::Server] {
            let mut sender = Connection::new(role, Config::default());
            sender.send(Message::binary(big.clone())).unwrap();
            // The whole frame is queued, but only a block of it sits in the output buffer.
            let header = if role == Role::Client { 14 } else { 10 };
            assert_eq!(sender.queued_output(), header + big.len());
            assert!(sender.pending_output().len() <= header + OUTPUT_BLOCK);
            // Partly written, then more frames are queued: they go after the big one.
            let mut wire = sender.pending_output()[..1000].to_vec();
            sender.consume_output(1000);
            sender.send_ping(b"p").unwrap();
            sender.send(Message::text("after")).unwrap();
            // They wait behind it without pulling the rest of it into the buffer.
            assert!(sender.pending_output().len() <= header + OUTPUT_BLOCK);
            wire.extend(drain_output(&mut sender, 100_003));
            assert!(sender.out.capacity() <= MAX_KEPT_OUTPUT);

            let peer_role = match role {
                Role::Client => Role::Server,
                Role::Server => Role::Client,
            };
            let mut receiver = Connection::new(peer_role, Config::default());
            let got: Vec<Message> = wire
                .chunks(65_537)
                .flat_map(|chunk| feed_all(&mut receiver, chunk))
                .map(Result::unwrap)
                .collect();
            assert_eq!(
                got,
                vec![
                    Message::binary(big.clone()),
                    Message::Ping(Bytes::from_static(b"p")),
                    Message::text("after"),
                ]
            );
        }
    }

    /// Feeds `wire` through `receive_with` in reads of at most `read` bytes, staging after
    /// each; returns the sizes of the slices the reads were offered and the staged messages
    /// (owned copies), or the first error.
    fn read_through(
        conn: &mut Connection,
        wire: &[u8],
        read: usize,
    ) -> (Vec<usize>, Result<Vec<Message>, Error>) {
        let (mut offered, mut got, mut pos) = (Vec::new(), Vec::new(), 0);
        while pos < wire.len() {
            conn.receive_with(1024, |buf: &mut [u8]| {
                offered.push(buf.len());
                let n = buf.len().min(read).min(wire.len() - pos);
                buf[..n].copy_from_slice(&wire[pos..pos + n]);
                pos += n;
                Ok::<_, ()>(n)
            })
            .unwrap();
            loop {
                match conn.stage_next() {
                    Ok(true) => got.push(conn.staged().unwrap().to_owned()),
                    Ok(false) => break,
                    Err(e) => return (offered, Err(e)),
                }
            }
        }
        (offered, Ok(got))
    }

    /// A client and a server that agreed on permessage-deflate (15-bit windows).
    #[cfg(feature = "deflate")]
    fn deflate_pair(no_context_takeover: bool) -> (Connection, Connection) {
        use crate::proto::deflate::{DeflateConfig, DeflateParams};
        let params = DeflateParams {
            local_no_context_takeover: no_context_takeover,
            remote_no_context_takeover: no_context_takeover,
            local_max_window_bits: 15,
            remote_max_window_bits: 15,
        };
        let codec = || Some(Codec::new(params, &DeflateConfig::default()));
        (
            Connection::with_deflate(Role::Client, Config::default(), codec()),
            Connection::with_deflate(Role::Server, Config::default(), codec()),
        )
    }

    /// A compressed big message is queued block by block too, and inflates intact.
    #[cfg(feature = "deflate")]
    #[test]
    fn big_compressed_messages_go_out_block_by_block() {
        let (mut c, mut s) = deflate_pair(false);
        // Pseudo-random bytes: they stay big when compressed.
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let big: Vec<u8> = (0..(2 << 20))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        c.send(Message::binary(big.clone())).unwrap();
        assert!(c.queued_output() > 2 * OUTPUT_BLOCK);
        assert!(c.pending_output().len() <= 14 + OUTPUT_BLOCK);
        let wire = drain_output(&mut c, 50_000);
        let got: Vec<Message> = wire
            .chunks(70_001)
            .flat_map(|chunk| feed_all(&mut s, chunk))
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, vec![Message::binary(big)]);
    }

    /// Compressed messages are inflated into one reused buffer and lent from it; they can
    /// still be taken owned.
    #[cfg(feature = "deflate")]
    #[test]
    fn compressed_messages_are_inflated_into_a_reused_buffer() {
        let (mut c, mut s) = deflate_pair(true);
        let texts: Vec<String> = (0..3)
            .map(|i| format!("{{\"ticker\":\"BTC-USD\",\"seq\":{i}}}").repeat(20))
            .collect();
        for t in &texts {
            c.send(Message::text(t.as_str())).unwrap();
        }
        s.receive(&drain_output(&mut c, usize::MAX));
        let mut at = None;
        for t in &texts[..2] {
            assert!(s.stage_next().unwrap());
            let Some(MessageRef::Text(got)) = s.staged() else {
                panic!("not text")
            };
            assert_eq!(got, t);
            let ptr = got.as_ptr();
            assert_eq!(*at.get_or_insert(ptr), ptr, "not the same buffer");
        }
        assert!(s.stage_next().unwrap());
        assert_eq!(s.take_staged(), Some(Message::text(texts[2].as_str())));
    }

    #[test]
    fn big_frames_are_read_straight_into_a_reused_message_buffer() {
        let big: Vec<u8> = (0..(1 << 20) + 5).map(|i| (i % 253) as u8).collect();
        let text = "ü".repeat(300_000);
        for role in [Role::Client, Role::Server] {
            let mask = (role == Role::Server).then_some([9, 8, 7, 6]);
            let mut wire = frame(2, true, &big, mask);
            wire.extend(frame(1, true, text.as_bytes(), mask));
            wire.extend(frame(2, true, &big[..70_000], mask));
            wire.extend(frame(1, true, b"small", mask));
            let mut conn = Connection::new(role, Config::default());
            let (offered, got) = read_through(&mut conn, &wire, 100_000);
            let want = vec![
                Message::binary(big.clone()),
                Message::text(text.as_str()),
                Message::binary(big[..70_000].to_vec()),
                Message::text("small"),
            ];
            assert_eq!(got.unwrap(), want);
            // Past the first read, the rest of the big frame was offered straight, in
            // cache-sized pieces.
            let direct = offered.iter().filter(|&&n| n == DIRECT_MAX).count();
            assert!(direct >= 3, "{offered:?}");
            assert!(conn.assembled.len() >= big.len());
        }

        // The buffer is reused: the next big message is lent from the same memory.
        let mut conn = client();
        let mut first = None;
        for round in 0..2u8 {
            let payload = vec![round; 500_000];
            let wire = frame(2, true, &payload, None);
            let mut pos = 0;
            while !conn.stage_next().unwrap() {
                conn.receive_with(1024, |buf: &mut [u8]| {
                    let n = buf.len().min(wire.len() - pos);
                    buf[..n].copy_from_slice(&wire[pos..pos + n]);
                    pos += n;
                    Ok::<_, ()>(n)
                })
                .unwrap();
            }
            let Some(MessageRef::Binary(data)) = conn.staged() else {
                panic!("not binary")
            };
            assert_eq!(data, &payload[..]);
            let at = data.as_ptr();
            assert_eq!(*first.get_or_insert(at), at);
            // On a page boundary (see `PAGE`).
            assert_eq!(at as usize % PAGE, 0);
        }
        // Taken owned, it is moved out, not copied.
        let owned = conn.take_staged().unwrap();
        assert_eq!(owned, Message::binary(vec![1u8; 500_000]));
    }

    #[test]
    fn bad_text_read_directly_fails_before_the_frame_ends() {
        let mut bad = "a".repeat(1 << 20).into_bytes();
        bad[200_000] = 0xFF;
        let wire = frame(1, true, &bad, None);
        let mut conn = client();
        let (_, got) = read_through(&mut conn, &wire[..400_000], 150_000);
        assert!(matches!(
            got,
            Err(Error::Protocol(ProtocolError::InvalidUtf8))
        ));
        assert_eq!(sent_close_code(&mut conn), Some(1007));
    }

    #[test]
    fn invalid_utf8_fails_with_1007() {
        let mut c = client();
        let out = feed_all(&mut c, &frame(1, true, &[0xCE, 0xBA, 0xFF], None));
        assert_eq!(protocol_error(&out[0]), &ProtocolError::InvalidUtf8);
        assert_eq!(sent_close_code(&mut c), Some(1007));
    }

    #[test]
    fn invalid_utf8_fails_fast_inside_an_incomplete_frame() {
        // A 1000-byte text frame whose first bytes are already invalid: fail before the rest.
        let mut c = client();
        let mut bytes = frame(1, true, &[b'a'; 1000], None);
        bytes[4 + 10] = 0xFF;
        let out = feed_all(&mut c, &bytes[..30]);
        assert_eq!(protocol_error(&out[0]), &ProtocolError::InvalidUtf8);
    }

    #[test]
    fn invalid_utf8_fails_fast_across_fragments() {
        let mut c = client();
        let out = feed_all(&mut c, &frame(1, false, "κόσμε".as_bytes(), None));
        assert!(out.is_empty());
        let out = feed_all(&mut c, &frame(0, false, &[0xF4, 0x90], None));
        assert_eq!(protocol_error(&out[0]), &ProtocolError::InvalidUtf8);
    }

    #[test]
    fn code_point_split_across_fragments_is_fine() {
        let euro = "€".as_bytes();
        let bytes = [
            frame(1, false, &euro[..1], None),
            frame(0, false, &euro[1..2], None),
            frame(0, true, &euro[2..], None),
        ]
        .concat();
        let out = feed_all(&mut client(), &bytes);
        assert_eq!(out[0].as_ref().unwrap(), &Message::text("€"));
    }

    #[test]
    fn text_ending_mid_code_point_fails() {
        let euro = "€".as_bytes();
        let bytes = [frame(1, false, &euro[..2], None), frame(0, true, b"", None)].concat();
        let out = feed_all(&mut client(), &bytes);
        assert_eq!(protocol_error(&out[0]), &ProtocolError::InvalidUtf8);
    }

    // ----- ping / pong -----

    #[test]
    fn ping_is_answered_with_same_payload_and_returned() {
        let mut c = client();
        let payload = [0xFEu8; 125];
        let out = feed_all(&mut c, &frame(9, true, &payload, None));
        assert_eq!(
            out[0].as_ref().unwrap(),
            &Message::Ping(Bytes::copy_from_slice(&payload))
        );
        let frames = sent_frames(&mut c);
        assert_eq!(
            (frames[0].0.opcode, frames[0].1.as_slice()),
            (OpCode::Pong, &payload[..])
        );
    }

    /// Queues a ping from the client side into `server` and handles it.
    fn ping_server(server: &mut Connection, payload: &[u8]) {
        let ping = frame(9, true, payload, Some([1, 2, 3, 4]));
        server.receive(&ping);
        assert!(matches!(server.next_message(), Ok(Some(Message::Ping(_)))));
    }

    #[test]
    fn pings_during_a_big_send_are_answered_behind_it() {
        for size in [100 << 10, 512 << 10, 3 * OUTPUT_BLOCK] {
            let mut s = server();
            s.send(Message::Binary(Bytes::from(vec![7u8; size])))
                .unwrap();
            let before = s.queued_output();
            ping_server(&mut s, b"keepalive");
            // A pong (2 header bytes) queued behind the message, nothing written yet.
            assert_eq!(s.queued_output(), before + 2 + 9, "size {size}");
            let wire = drain_output(&mut s, 64 << 10);
            let (header, len) = FrameHeader::decode(&wire).unwrap().unwrap();
            assert_eq!(
                (header.opcode, header.payload_len),
                (OpCode::Binary, size as u64)
            );
            assert_eq!(
                &wire[len + size..],
                &[0x8A, 9, b'k', b'e', b'e', b'p', b'a', b'l', b'i', b'v', b'e']
            );
        }
    }

    #[test]
    fn a_ping_flood_while_nothing_is_written_queues_a_bounded_number_of_pongs() {
        let mut s = server();
        for _ in 0..10 * MAX_UNSENT_PONGS {
            ping_server(&mut s, &[0xAB; 125]);
        }
        assert_eq!(s.queued_output(), MAX_UNSENT_PONGS as usize * (2 + 125));
        // Once they are written, pings are answered again.
        drain_output(&mut s, 4096);
        ping_server(&mut s, b"again");
        assert_eq!(
            drain_output(&mut s, 4096),
            [0x8A, 5, b'a', b'g', b'a', b'i', b'n']
        );
        // Written in part: the count goes on from where it was until the last pong is out.
        for _ in 0..MAX_UNSENT_PONGS {
            ping_server(&mut s, b"x");
        }
        s.consume_output(3);
        ping_server(&mut s, b"y");
        assert_eq!(s.queued_output(), MAX_UNSENT_PONGS as usize * 3 - 3);
    }

    #[test]
    fn keepalive_settings_too_long_for_the_clock_are_capped_however_built() {
        let mut c = client();
        let forever = std::time::Duration::MAX;
        let now = Instant::now();
        c.set_keepalive(
            Some(Keepalive {
                interval: forever,
                timeout: forever,
            }),
            now,
        );
        assert_eq!(
            c.poll_keepalive(now).unwrap().map(|at| at > now),
            Some(true)
        );
        assert!(!c.keepalive_overdue(now));
    }

    #[test]
    fn oversized_ping_fails() {
        let mut c = client();
        let out = feed_all(&mut c, &[0x89, 0x7E, 0x00, 0x7E]);
        assert!(matches!(protocol_error(&out[0]), ProtocolError::Frame(_)));
        assert_eq!(sent_close_code(&mut c), Some(1002));
    }

    #[test]
    fn caller_cannot_send_oversized_control_frames() {
        let mut c = client();
        assert!(matches!(
            c.send_ping(&[0; 126]),
            Err(Error::InvalidInput(_))
        ));
        assert!(c.send_ping(&[0; 125]).is_ok());
    }

    // ----- close -----

    #[test]
    fn close_is_echoed_once_and_nothing_sent_after() {
        let mut c = client();
        let out = feed_all(&mut c, &frame(8, true, b"\x03\xe9bye", None));
        assert_eq!(
            out[0].as_ref().unwrap(),
            &Message::Close(Some(CloseFrame::new(1001, "bye")))
        );
        assert_eq!(sent_close_code(&mut c), Some(1001));
        assert_eq!(c.state(), State::Closed);
        // Another close, a ping and data after the close are ignored; nothing more is sent.
        let out = feed_all(
            &mut c,
            &[
                frame(8, true, b"", None),
                frame(9, true, b"", None),
                frame(1, true, b"x", None),
            ]
            .concat(),
        );
        assert!(out.is_empty());
        assert!(!c.has_pending_output());
        assert!(matches!(c.send_text("late"), Err(Error::ConnectionClosed)));
        assert!(c.receive_eof().is_ok());
    }

    #[test]
    fn empty_close_is_answered_with_empty_close() {
        let mut c = client();
        let out = feed_all(&mut c, &frame(8, true, b"", None));
        assert_eq!(out[0].as_ref().unwrap(), &Message::Close(None));
        assert_eq!(sent_close_code(&mut c), None);
    }

    #[test]
    fn invalid_close_payloads() {
        let cases: [(&[u8], u16); 5] = [
            (b"\x03", 1002),
            (b"\x03\xed", 1002),     // 1005
            (b"\x03\xf7", 1002),     // 1015
            (b"\x13\x88", 1002),     // 5000
            (b"\x03\xe8\xff", 1007), // bad reason
        ];
        for (payload, code) in cases {
            let mut c = client();
            let out = feed_all(&mut c, &frame(8, true, payload, None));
            assert!(matches!(
                out[0],
                Err(Error::Protocol(ProtocolError::InvalidClose(_)))
            ));
            assert_eq!(sent_close_code(&mut c), Some(code), "{payload:x?}");
        }
    }

    #[test]
    fn client_initiated_close() {
        let mut c = client();
        c.close(Some(CloseFrame::new(CloseCode::NORMAL, "done")))
            .unwrap();
        assert_eq!(sent_close_code(&mut c), Some(1000));
        assert!(matches!(c.send_text("x"), Err(Error::AlreadyClosed)));
        assert!(matches!(c.close(None), Err(Error::AlreadyClosed)));
        // Messages in flight still arrive, a ping is not answered, then the server's close.
        let out = feed_all(
            &mut c,
            &[
                frame(1, true, b"late", None),
                frame(9, true, b"", None),
                frame(8, true, b"\x03\xe8", None),
            ]
            .concat(),
        );
        assert_eq!(out.len(), 3);
        assert_eq!(
            out[2].as_ref().unwrap(),
            &Message::Close(Some(CloseFrame::new(1000, "")))
        );
        assert!(!c.has_pending_output());
        assert_eq!(c.state(), State::Closed);
    }

    #[test]
    fn caller_close_codes_are_checked() {
        let mut c = client();
        assert!(c.close(Some(CloseFrame::new(1005, ""))).is_err());
        assert!(c
            .close(Some(CloseFrame::new(1000, "x".repeat(124))))
            .is_err());
        assert!(c
            .close(Some(CloseFrame::new(4000, "x".repeat(123))))
            .is_ok());
    }

    // ----- EOF -----

    #[test]
    fn eof_without_close_is_an_error() {
        let mut c = client();
        feed_all(&mut c, &frame(1, false, b"partial", None));
        assert!(matches!(c.receive_eof(), Err(Error::ConnectionReset)));
        assert!(c.is_terminated());
    }

    // ----- limits -----

    #[test]
    fn frame_limit_fails_with_1009_before_payload_arrives() {
        let mut c = Connection::new(Role::Client, Config::default().max_frame_size(Some(100)));
        // Only the header of a 64 KiB frame: rejected on its announced length.
        let out = feed_all(&mut c, &[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(
            protocol_error(&out[0]),
            &ProtocolError::FrameTooLarge {
                size: 65536,
                max: 100
            }
        );
        assert_eq!(sent_close_code(&mut c), Some(1009));
    }

    #[test]
    fn message_limit_counts_all_fragments() {
        let mut c = Connection::new(Role::Client, Config::default().max_message_size(Some(10)));
        let out = feed_all(
            &mut c,
            &[
                frame(2, false, &[0; 6], None),
                frame(0, true, &[0; 5], None),
            ]
            .concat(),
        );
        assert!(matches!(
            protocol_error(&out[0]),
            ProtocolError::MessageTooLarge { size: 11, max: 10 }
        ));
        assert_eq!(sent_close_code(&mut c), Some(1009));
    }

    #[test]
    fn a_single_frame_arriving_in_pieces_is_waited_for_but_bad_text_fails_at_once() {
        let text = "é".repeat(500);
        let wire = frame(1, true, text.as_bytes(), None);
        let mut c = client();
        for piece in wire.chunks(97) {
            c.receive(piece);
            if c.buffered_input() < wire.len() {
                assert!(
                    !c.stage_next().unwrap(),
                    "nothing before the frame is whole"
                );
            }
        }
        assert!(c.stage_next().unwrap());
        assert_eq!(c.staged(), Some(MessageRef::Text(&text)));

        // The invalid byte comes with the piece that completes the frame: the part checked
        // while waiting is not checked again, the rest is.
        let mut bad = text.clone().into_bytes();
        let at = bad.len() - 3;
        bad[at] = 0xFF;
        let wire = frame(1, true, &bad, None);
        let mut c = client();
        let split = wire.len() - 50;
        c.receive(&wire[..split]);
        assert!(!c.stage_next().unwrap());
        assert!(c.wait_checked > 0);
        c.receive(&wire[split..]);
        assert!(matches!(
            c.stage_next(),
            Err(Error::Protocol(ProtocolError::InvalidUtf8))
        ));

        // The first piece already holds an invalid byte: the error comes with it.
        let mut bad = text.clone().into_bytes();
        bad[10] = 0xFF;
        let wire = frame(1, true, &bad, None);
        let mut c = client();
        c.receive(&wire[..100]);
        assert!(matches!(
            c.stage_next(),
            Err(Error::Protocol(ProtocolError::InvalidUtf8))
        ));
    }

    #[test]
    fn huge_announced_length_allocates_nothing_big() {
        let mut c = Connection::new(
            Role::Client,
            Config::default()
                .max_frame_size(None)
                .max_message_size(None),
        );
        let out = feed_all(
            &mut c,
            &[0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
        );
        assert!(out.is_empty() || matches!(out[0], Err(Error::Protocol(_))));
        assert!(c.partial.as_ref().map_or(0, |p| p.data.capacity()) <= PARTIAL_INITIAL_CAPACITY);
    }

    /// Feeds `wire` to `c` in reads of at most the sizes `reads` (cycled), as a socket driver
    /// does, until a message is staged.
    fn stage_in_reads(c: &mut Connection, wire: &[u8], reads: &[usize]) -> Result<(), Error> {
        let mut at = 0;
        for n in reads.iter().cycle() {
            if c.stage_next()? {
                return Ok(());
            }
            assert!(at < wire.len(), "the whole message was read but not staged");
            c.receive_with(64 << 10, |buf: &mut [u8]| {
                let n = buf.len().min(*n).min(wire.len() - at);
                buf[..n].copy_from_slice(&wire[at..at + n]);
                at += n;
                Ok::<_, ()>(n)
            })
            .unwrap();
        }
        unreachable!()
    }

    /// Receives one binary message from `wire` with reads of at most 256 KiB and returns
    /// where the lent payload lies and its length.
    fn receive_in_reads(c: &mut Connection, wire: &[u8]) -> (*const u8, usize) {
        stage_in_reads(c, wire, &[256 << 10]).unwrap();
        let Some(MessageRef::Binary(data)) = c.staged() else {
            panic!("not binary")
        };
        (data.as_ptr(), data.len())
    }

    #[test]
    fn a_stream_of_16_mib_messages_reuses_one_buffer() {
        // The default message limit, in one frame: the buffer must end at exactly that size
        // (growing by doubling overshot it, and a buffer over the kept size was dropped and
        // allocated again, zeroed, for every message).
        let payload: Vec<u8> = (0..16u32 << 20).map(|i| (i % 251) as u8).collect();
        let wire = frame(2, true, &payload, None);
        let (c, first) = receives_in_one_buffer(&wire, &payload, 3);
        assert_eq!(first as usize % PAGE, 0);
        assert_eq!(c.assembled.capacity(), payload.len() + PAGE);
    }

    /// Receives the message `payload`, sent as `wire`, `times` times on one connection:
    /// the same buffer holds it every time. The connection and where that buffer lent it.
    fn receives_in_one_buffer(
        wire: &[u8],
        payload: &[u8],
        times: usize,
    ) -> (Connection, *const u8) {
        let mut c = client();
        let (first, _) = receive_in_reads(&mut c, wire);
        for round in 1..times {
            let (again, len) = receive_in_reads(&mut c, wire);
            assert_eq!(len, payload.len());
            assert_eq!(again, first, "round {round}: not reused");
        }
        let Some(MessageRef::Binary(data)) = c.staged() else {
            panic!("not binary")
        };
        assert!(data == payload);
        (c, first)
    }

    #[test]
    fn big_fragmented_text_moved_onto_a_page_boundary_stays_whole_and_checked() {
        // Fragments of very different sizes, text with 2-byte characters split across
        // fragments and reads; the buffer grows (and its payload moves to a page boundary)
        // while parts of it are already checked.
        let text = "é".repeat(600_000) + "end";
        let bytes = text.as_bytes();
        let cuts = [0, 101, 200_001, 200_006, 900_001, bytes.len()];
        let fragmented = |bytes: &[u8]| {
            let mut wire = Vec::new();
            for (i, w) in cuts.windows(2).enumerate() {
                let opcode = if i == 0 { 1 } else { 0 };
                wire.extend(frame(opcode, w[1] == bytes.len(), &bytes[w[0]..w[1]], None));
            }
            wire
        };
        let wire = fragmented(bytes);
        for reads in [
            &[1000usize, 70_000, 300_000][..],
            &[7, 65_536, 1 << 20],
            &[4096],
        ] {
            let mut c = client();
            for round in 0..2 {
                stage_in_reads(&mut c, &wire, reads).unwrap();
                let Some(MessageRef::Text(got)) = c.staged() else {
                    panic!("not text")
                };
                assert!(got == text, "reads {reads:?}, round {round}");
                assert_eq!(got.as_ptr() as usize % PAGE, 0);
            }
            let Some(Message::Text(owned)) = c.take_staged() else {
                panic!("not text")
            };
            assert_eq!(owned.as_str(), text);
        }
        // An invalid byte after the move is still caught.
        let mut bad = bytes.to_vec();
        bad[800_000] = 0xFF;
        let err =
            stage_in_reads(&mut client(), &fragmented(&bad), &[1000, 70_000, 300_000]).unwrap_err();
        assert!(
            matches!(err, Error::Protocol(ProtocolError::InvalidUtf8)),
            "{err:?}"
        );
    }

    #[test]
    fn a_stream_of_100_kib_messages_reuses_one_buffer() {
        // Too small to be aligned: its payload starts the buffer, wherever that is.
        let payload: Vec<u8> = (0..100u32 << 10).map(|i| (i % 251) as u8).collect();
        let wire = frame(2, true, &payload, None);
        receives_in_one_buffer(&wire, &payload, 4);
    }

    #[test]
    fn a_stream_of_fragmented_16_mib_messages_reuses_one_buffer() {
        // Doubling from fragment to fragment stops at the kept size (with the page lead
        // added at each step it overshot it, and the buffer was dropped after each message).
        let payload: Vec<u8> = (0..16u32 << 20).map(|i| (i % 251) as u8).collect();
        let mut wire = Vec::new();
        for (i, piece) in payload.chunks(1 << 20).enumerate() {
            wire.extend(frame(if i == 0 { 2 } else { 0 }, i == 15, piece, None));
        }
        let (c, first) = receives_in_one_buffer(&wire, &payload, 3);
        assert_eq!(first as usize % PAGE, 0);
        assert!(c.assembled.capacity() <= KEPT_INPUT_CAPACITY);
    }

    #[test]
    fn fragmented_messages_with_a_small_first_fragment_reuse_the_buffer_too() {
        let payload: Vec<u8> = (0..2u32 << 20).map(|i| (i % 251) as u8).collect();
        let mut wire = frame(2, false, &payload[..1000], None);
        for (i, piece) in payload[1000..].chunks(300_000).enumerate() {
            wire.extend(frame(
                0,
                1000 + (i + 1) * 300_000 >= payload.len(),
                piece,
                None,
            ));
        }
        receives_in_one_buffer(&wire, &payload, 3);
    }

    #[test]
    fn an_announced_big_frame_gets_memory_only_as_its_data_arrives() {
        // 16 MiB announced (within the default limits), one byte sent.
        let mut c = client();
        let mut wire = vec![0x82, 0x7F];
        wire.extend_from_slice(&(16u64 << 20).to_be_bytes());
        wire.push(7);
        c.receive(&wire);
        assert!(!c.stage_next().unwrap());
        let capacity = c.partial.as_ref().map_or(0, |p| p.data.capacity());
        assert!(capacity <= PARTIAL_INITIAL_CAPACITY, "{capacity}");
        // A direct read zeroes no more than it is offered.
        c.receive_with(1024, |buf: &mut [u8]| {
            assert!(buf.len() <= DIRECT_MAX);
            Ok::<_, ()>(10)
        })
        .unwrap();
        assert!(!c.stage_next().unwrap());
        let len = c.partial.as_ref().map_or(0, |p| p.data.len() - p.start);
        assert!(len <= 1 + DIRECT_MAX, "{len}");
    }

    /// Owned takes of big messages keep no more than `MAX_KEPT_INPUT` and hand out buffers
    /// trimmed to the message.
    #[cfg(feature = "deflate")]
    #[test]
    fn owned_takes_of_big_messages_keep_and_pin_nothing_big() {
        let (mut c, mut s) = deflate_pair(false);
        // 20 MiB of zeros: a small compressed message that inflates past the kept size.
        c.send(Message::binary(vec![0u8; 20 << 20])).unwrap();
        s.receive(&drain_output(&mut c, usize::MAX));
        assert!(s.stage_next().unwrap());
        let Some(Message::Binary(big)) = s.take_staged() else {
            panic!("not binary")
        };
        assert_eq!(big.len(), 20 << 20);
        assert!(s.assembled.capacity() <= MAX_KEPT_INPUT);
        // A fragmented 100 KB message after it comes out at its own size.
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 7) as u8).collect();
        c.send_fragmented(&Message::binary(data.clone()), 30_000)
            .unwrap();
        s.receive(&drain_output(&mut c, usize::MAX));
        assert!(s.stage_next().unwrap());
        let Some(Message::Binary(got)) = s.take_staged() else {
            panic!("not binary")
        };
        assert_eq!(&got[..], &data[..]);
    }

    #[test]
    fn messages_before_a_violation_are_delivered_first() {
        let mut c = client();
        let bytes = [
            frame(1, true, b"one", None),
            frame(2, true, b"two", None),
            vec![0xC1, 0x00],
        ]
        .concat();
        let out = feed_all(&mut c, &bytes);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].as_ref().unwrap(), &Message::text("one"));
        assert!(matches!(
            out[2],
            Err(Error::Protocol(ProtocolError::ReservedBits(4)))
        ));
        // Failed: nothing more comes out, sending is refused.
        assert!(feed_all(&mut c, &frame(1, true, b"x", None)).is_empty());
        assert!(c.send_text("x").is_err());
    }

    proptest! {
        /// Whatever a client sends (any message, any fragmentation), the server role receives
        /// exactly that, however the bytes are split.
        #[test]
        fn client_to_server_round_trip(
            messages in proptest::collection::vec((any::<bool>(), ".{0,50}", 1usize..20), 1..6),
            split in 1usize..64,
        ) {
            let mut c = client();
            let mut expected = Vec::new();
            for (binary, text, frag) in &messages {
                let m = if *binary { Message::binary(text.clone().into_bytes()) } else { Message::text(text.as_str()) };
                c.send_fragmented(&m, *frag).unwrap();
                expected.push(m);
            }
            let wire = c.pending_output().to_vec();
            let mut s = server();
            let mut got = Vec::new();
            for chunk in wire.chunks(split) {
                got.extend(feed_all(&mut s, chunk).into_iter().map(Result::unwrap));
            }
            prop_assert_eq!(got, expected);
        }

        /// Borrowing staged messages gives exactly what taking them does: the same messages
        /// and the same errors, for any input split anywhere, both roles.
        #[test]
        fn borrowed_and_owned_reads_agree(
            messages in proptest::collection::vec((any::<bool>(), ".{0,50}", 1usize..20), 1..6),
            noise in proptest::collection::vec(any::<u8>(), 0..8),
            split in 1usize..64,
        ) {
            let mut c = client();
            for (binary, text, frag) in &messages {
                let m = if *binary { Message::binary(text.clone().into_bytes()) } else { Message::text(text.as_str()) };
                c.send_fragmented(&m, *frag).unwrap();
            }
            let mut wire = c.pending_output().to_vec();
            wire.extend_from_slice(&noise);
            let (mut owned, mut borrowed) = (server(), server());
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for chunk in wire.chunks(split) {
                owned.receive(chunk);
                a.extend(drain(&mut owned).into_iter().map(|r| r.map_err(|e| e.to_string())));
                borrowed.receive(chunk);
                loop {
                    match borrowed.stage_next() {
                        Ok(true) => b.push(Ok(borrowed.staged().unwrap().to_owned())),
                        Ok(false) => break,
                        Err(e) => { b.push(Err(e.to_string())); break; }
                    }
                }
            }
            prop_assert_eq!(a, b);
        }

        #[test]
        fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), split in 1usize..32) {
            for role in [Role::Client, Role::Server] {
                let mut conn = Connection::new(role, Config::default().max_message_size(Some(1 << 16)));
                for chunk in bytes.chunks(split) {
                    conn.receive(chunk);
                    let _ = drain(&mut conn);
                }
            }
        }
    }
}
