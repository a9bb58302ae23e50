//! The WebSocket connection state machine, sans I/O: bytes in, messages out, frames queued.
//!
//! The caller (a driver) puts received bytes into the connection, takes messages out with
//! [`Connection::next_message`], and writes [`Connection::pending_output`] to the socket. Pongs
//! and close replies are queued automatically, so the driver only has to flush after each call.

use bytes::Bytes;

use std::time::Instant;

use super::buffer::ReadBuffer;
use super::close::{parse_close_payload, CloseFrame};
use super::copy::PAGE;
#[cfg(feature = "deflate")]
use super::deflate::{Codec, InflateError};
use super::frame::{FrameHeader, OpCode};
use super::keepalive::{Due, Keepalive, KeepaliveTimer};
use super::mask::{apply_mask, MaskKeys};
use super::message::{str_from_validated, Message, MessageRef, Utf8Bytes};
use super::utf8;
use crate::error::{Error, ProtocolError};

// This module receives: it parses frames, lends whole messages from the read buffer and
// stages the rest; `partial` assembles messages that arrive in pieces, `outgoing` encodes and
// queues what we send.
mod outgoing;
mod partial;

use outgoing::OutgoingPayload;
use partial::{aligned_start, IncomingFrame, PartialMessage, KEPT_INPUT_CAPACITY, MAX_KEPT_INPUT};

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
    /// The largest frame payload accepted (default `None`: no limit of its own, the message
    /// limit bounds every frame too, so that raising it lets bigger single-frame messages
    /// in); `None` for no limit.
    pub max_frame_size: Option<usize>,
    /// The largest message accepted, all fragments together (default 64 MiB); `None` for no
    /// limit. A compressed message is measured inflated (on the wire it may be a little
    /// bigger, up to an eighth more).
    pub max_message_size: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_size: None,
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

/// A message made ready by [`Connection::stage_next`]. A tag byte of its own (no niche in
/// the message's) makes the check for a lent message, once per message, one compare.
#[derive(Debug)]
#[repr(u8)]
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
///
/// A driver of its own (another runtime, an in-memory test) moves the bytes: it writes
/// [`Connection::pending_output`] and marks it written with [`Connection::consume_output`]
/// until [`Connection::has_pending_output`] is false (a big message is handed out a block at
/// a time), and hands what it reads to [`Connection::receive`] before asking for
/// [`Connection::next_message`]:
///
/// ```
/// use wsc::proto::{Config, Connection, Message, Role};
///
/// let mut client = Connection::new(Role::Client, Config::default());
/// let mut server = Connection::new(Role::Server, Config::default());
/// client.send_text("hello")?;
/// client.send(Message::binary(vec![0u8; 3 << 20]))?;
/// while client.has_pending_output() {
///     let bytes = client.pending_output(); // a socket would take some of them
///     server.receive(bytes);
///     let written = bytes.len();
///     client.consume_output(written);
/// }
/// assert_eq!(server.next_message()?, Some(Message::text("hello")));
/// assert_eq!(server.next_message()?.map(|m| m.len()), Some(3 << 20));
/// assert_eq!(server.next_message()?, None); // more bytes needed
///
/// // A ping is answered by the connection itself: the pong waits in the output.
/// server.send_ping(b"are you there")?;
/// let ping = server.pending_output().to_vec();
/// server.consume_output(ping.len());
/// client.receive(&ping);
/// assert_eq!(client.next_message()?, Some(Message::Ping("are you there".into())));
/// assert!(client.has_pending_output());
/// # Ok::<(), wsc::Error>(())
/// ```
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
    /// The rest of a big payload queued after `out` (see
    /// [`OUTPUT_BLOCK`](outgoing::OUTPUT_BLOCK)).
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
    /// Bytes arrived since the keepalive clock last ran: the peer is alive.
    heard: bool,
    /// When the driver last read bytes ([`Connection::received_at`]), for the keepalive's
    /// round trip.
    arrived: Option<Instant>,
    /// Where the last keepalive ping queued begins (in the same count as `written`), and
    /// `written` when the keepalive clock last ran: output written while the ping still
    /// waited behind it proves the peer alive too (it is taking our data, and cannot answer
    /// a ping it has not been sent). The ping's own bytes do not: they are what is answered.
    ping_start: u64,
    written_at_poll: u64,
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
    /// The transport takes no more output (see [`Connection::lose_output`]).
    output_lost: bool,
    /// The peer ended the stream (see [`Connection::peer_ended_stream`]).
    peer_ended: bool,
    /// The kind (text or binary) of a message being sent in parts, until its last part.
    sending_parts: Option<OpCode>,
    /// The peer's close frame, once it came (state `Closed`): kept for `close` calls made
    /// after the caller's own read took it.
    peer_close: Option<CloseFrame>,
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
            heard: false,
            arrived: None,
            ping_start: 0,
            written_at_poll: 0,
            lend_limit,
            wait_checked: 0,
            written: 0,
            last_pong_end: 0,
            unsent_pongs: 0,
            output_lost: false,
            peer_ended: false,
            sending_parts: None,
            peer_close: None,
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

    /// The peer's close frame, once it has arrived ([`State::Closed`]; `None` before, and
    /// when it carried no status code), however it was read: the drivers' `close` returns it
    /// even when the caller's own read took it first.
    pub fn peer_close(&self) -> Option<&CloseFrame> {
        self.peer_close.as_ref()
    }

    /// Whether a message, ping, pong or close may still be sent.
    pub fn can_send(&self) -> bool {
        self.state == State::Open && !self.output_lost
    }

    /// Whether the connection will deliver no more messages.
    pub fn is_terminated(&self) -> bool {
        matches!(self.state, State::Closed | State::Failed)
    }

    // ----- input -----

    /// Takes over the buffer the opening handshake was read into, holding what came after
    /// the head (its bytes consumed): one buffer, zeroed once, and no copy of those bytes.
    /// They are not marked heard: keepalive counts only bytes after a ping, and no ping can
    /// be in flight before the connection exists.
    pub(crate) fn adopt_read_buffer(&mut self, received: ReadBuffer) {
        debug_assert!(self.read_buf.is_empty());
        self.read_buf = received;
    }

    /// Hands received bytes to the connection. Once it is closed or failed
    /// ([`Connection::is_terminated`]) nothing more is parsed, and bytes are dropped rather
    /// than kept: a peer that goes on sending cannot grow the buffer.
    pub fn receive(&mut self, data: &[u8]) {
        self.settle();
        if self.is_terminated() {
            self.drop_input_if_terminated();
            return;
        }
        self.heard |= !data.is_empty();
        self.read_buf.extend_from_slice(data);
    }

    /// Drops what a read brought in after the connection closed or failed (see
    /// [`Connection::receive`]). The read buffer lends nothing then: every reading method
    /// settles the staged message first.
    fn drop_input_if_terminated(&mut self) {
        if self.is_terminated() {
            let all = self.read_buf.len();
            self.read_buf.advance(all);
        }
    }

    /// Lets `read` fill the connection's buffers directly (no intermediate copy): it is given
    /// a slice of at least `chunk` bytes (a bigger `chunk` than 64 KiB counts as 64 KiB) and
    /// returns how many it filled.
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
        let n = self.read_buf.fill_with(chunk, read)?;
        self.heard |= n > 0;
        self.drop_input_if_terminated();
        Ok(n)
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
        let n = self
            .read_buf
            .fill_appending(chunk, |buf, max| read(ReadTarget::Append(buf, max)))?;
        self.heard |= n > 0;
        self.drop_input_if_terminated();
        Ok(n)
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
        self.heard |= n > 0;
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
        self.peer_ended = true;
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

    /// Tells the connection that the transport takes no more output while it can still be
    /// read: the peer reset the connection or stopped reading for good (a write failed with
    /// a reset or a broken pipe), but what it sent before may still wait in the socket, its
    /// close frame above all. What is queued is dropped, nothing more is queued (replies
    /// included), sending fails with [`Error::ConnectionClosed`], and receiving goes on.
    pub fn lose_output(&mut self) {
        self.output_lost = true;
        self.out.clear();
        self.out_pos = 0;
        self.out_rest = None;
        self.out_after.clear();
    }

    /// Whether the peer ended the stream ([`Connection::receive_eof`]: TCP's FIN, with or
    /// without TLS close_notify) rather than resetting it, which [`Error::ConnectionReset`]
    /// alone does not say. A peer that closes its socket with our data unread resets it:
    /// one that ends the stream after our close, without its close frame, most likely read
    /// all we sent.
    pub fn peer_ended_stream(&self) -> bool {
        self.peer_ended
    }

    /// Whether the transport takes no more output (see [`Connection::lose_output`]): nothing
    /// can be sent, but what the peer sent before may still be received.
    pub fn is_output_lost(&self) -> bool {
        self.output_lost
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
        self.state == State::Open
            && self
                .keepalive
                .as_ref()
                .is_some_and(|k| k.overdue(now, self.heard || self.wrote_before_ping()))
    }

    /// Whether output queued ahead of the ping in flight was written since the keepalive
    /// clock last ran.
    fn wrote_before_ping(&self) -> bool {
        self.written > self.written_at_poll && self.written_at_poll < self.ping_start
    }

    /// Output written so far, in bytes (all of it ever consumed).
    pub(crate) fn written(&self) -> u64 {
        self.written
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

    /// Tells the connection when the bytes it was last given were read (the driver's clock:
    /// the core reads none), so that a keepalive pong among them gives the round trip
    /// ([`Connection::keepalive_rtt`]). Only of use with keepalive on.
    pub fn received_at(&mut self, now: Instant) {
        self.arrived = Some(now);
    }

    /// The round trip of the last keepalive ping answered by its pong: from when the ping
    /// was queued (behind any output queued before it) to when the bytes holding the pong
    /// were read, as told by [`Connection::received_at`]. `None` with keepalive off or before
    /// the first such pong.
    pub fn keepalive_rtt(&self) -> Option<std::time::Duration> {
        self.keepalive.as_ref().and_then(KeepaliveTimer::rtt)
    }

    /// Runs the keepalive clock at `now`: queues a ping when one is due and returns when to
    /// call again (`None`: keepalive is off or the connection is no longer open). Call it
    /// after [`Connection::next_message`] has taken every buffered frame, so that a pong
    /// already received counts.
    ///
    /// A pong overdue at `now` fails the connection (as [`Connection::abort`]: the peer is
    /// gone, so nothing more is queued for it) and returns [`Error::KeepaliveTimeout`].
    pub fn poll_keepalive(&mut self, now: Instant) -> Result<Option<Instant>, Error> {
        if self.keepalive.is_none() || self.state != State::Open {
            return Ok(None);
        }
        let alive = std::mem::take(&mut self.heard) | self.wrote_before_ping();
        self.written_at_poll = self.written;
        let Some(keepalive) = &mut self.keepalive else {
            return Ok(None);
        };
        match keepalive.poll(now, alive) {
            Due::Wait(at) => Ok(Some(at)),
            Due::Ping(payload, at) => {
                // Behind whatever is queued: its pong cannot come before all that is written.
                self.ping_start = self.written + self.queued_output() as u64;
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

    /// Ends the loan of the staged message: its bytes are consumed. The lent message (the
    /// fast path) inline at the caller; the rest out of line.
    #[inline(always)]
    fn settle(&mut self) {
        match self.staged {
            Staged::None => {}
            Staged::Range { len, .. } => {
                self.read_buf.advance(len);
                self.staged = Staged::None;
            }
            _ => self.settle_other(),
        }
    }

    #[inline(never)]
    fn settle_other(&mut self) {
        if let Staged::Assembled { .. } = self.staged {
            if self.assembled.capacity() > KEPT_INPUT_CAPACITY {
                // A very big (inflated) message: give the memory back.
                self.assembled = Vec::new();
            }
        }
        self.staged = Staged::None;
    }

    /// The frame at the head of the buffer, if it is a whole message that can be lent as it
    /// is: `(text, header length, payload length)`. Anything else (control frames, fragments,
    /// compression, violations, limits) goes the general way, which checks every rule.
    #[inline(always)]
    fn lendable(&mut self) -> Option<Lend> {
        let found = self.lendable_frame();
        if !matches!(found, Some(Lend::Wait)) {
            // Whatever was waited for is over: the count must not carry to another frame.
            self.wait_checked = 0;
        }
        found
    }

    /// [`Connection::lendable`] without the bookkeeping of the wait.
    #[inline(always)]
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
        // A compressed message is held to the limit once inflated; its wire size only to
        // the looser bound (see `compressed_limit`).
        let deflated = compressed || self.partial.as_ref().is_some_and(|p| p.compressed);
        let too_big = match self.config.max_message_size {
            Some(max) if deflated && size > compressed_limit(max) as u64 => Some(max),
            Some(max) if !deflated && size > max as u64 => Some(max),
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
                    keepalive.on_pong(&payload, self.arrived);
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
                self.peer_close.clone_from(&frame);
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
}

/// The most compressed bytes a message within `max` may take on the wire. Deflate expands
/// what does not compress a little (stored blocks add 5 bytes per 64 KiB, fixed Huffman codes
/// up to an eighth), so a message at the limit may arrive bigger than the limit: it is held
/// to the limit once inflated, and its compressed bytes, which are held in memory whole, to
/// this bound.
fn compressed_limit(max: usize) -> usize {
    max.saturating_add(max / 8).saturating_add(1024)
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

#[cfg(test)]
mod tests;
