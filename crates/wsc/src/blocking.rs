//! The blocking driver: a [`WebSocket`] over any `Read + Write` stream.
//!
//! It owns the stream and moves bytes between it and the sans-I/O [`Connection`]: read bytes
//! in, messages out, queued frames (including automatic pongs and close replies) written after
//! every step. It holds no protocol logic.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use crate::error::{Error, Phase};
use crate::proto::buffer::ReadBuffer;
use crate::proto::handshake::{Redirect, Response};
use crate::proto::{
    CloseFrame, Config, Connection, Keepalive, Message, MessagePart, MessageRef, Role, State,
};
use crate::stream::{deadline_in, is_peer_gone, is_timeout, map_io_error, MaybeTlsStream};

/// Each read is offered at least this much (more, up to 64 KiB, once reads come back full):
/// the opening handshake is read into the same buffer, and a short-lived connection, which
/// never needs more, zeroes no more.
const READ_CHUNK: usize = 4 << 10;

/// Reads more of an opening handshake into `received`, the buffer the connection then
/// keeps (see [`Connection::adopt_read_buffer`]).
pub(crate) fn read_head(stream: &mut impl Read, received: &mut ReadBuffer) -> io::Result<usize> {
    received.fill_with(READ_CHUNK, |spare| stream.read(spare))
}

/// How long the last read before declaring a peer dead may wait (the pong, if it came, is
/// already in the socket).
const LAST_CHANCE: Duration = Duration::from_millis(10);

/// While a keepalive ping waits for room in the socket, how often a read stops to try
/// writing it again: a peer that resumes reading gets it (and can answer) well before the
/// pong's deadline, as it would from the async client, which waits for both at once.
const PING_RETRY: Duration = Duration::from_millis(50);

/// Queued bytes past which [`WebSocket::feed`] writes.
const FEED_BUFFER: usize = 128 << 10;

/// Most bytes discarded while waiting for the server to close TCP after the close handshake.
const CLOSE_DRAIN_LIMIT: usize = 1 << 20;

/// How the driver bounds waits on the streams this crate opens itself (for a caller's own
/// stream, the caller's timeouts apply).
pub(crate) struct StreamControl<S> {
    /// The idle-read timeout, per read.
    pub(crate) set_read_timeout: fn(&mut S, Option<Duration>) -> io::Result<()>,
    /// A deadline for every read until lifted, however many reads an operation takes.
    pub(crate) set_deadline: fn(&mut S, Option<Instant>) -> io::Result<()>,
    /// The same, with the idle-read timeout set aside: the close timeout alone bounds closing.
    pub(crate) set_close_deadline: fn(&mut S, Option<Instant>) -> io::Result<()>,
    /// A deadline for every socket write until lifted (over TLS, one write of ours is many).
    pub(crate) set_write_deadline: fn(&mut S, Option<Instant>),
    /// The caller's read deadline, for every socket read until lifted (over TLS, one read of
    /// ours is as many as a record takes to arrive).
    pub(crate) set_read_deadline: fn(&mut S, Option<Instant>),
    /// Writes that take only what the socket has room for now, on or off.
    pub(crate) set_write_nowait: fn(&mut S, bool),
    /// Reads that take only what has arrived, on or off.
    pub(crate) set_read_nowait: fn(&mut S, bool),
    /// Whether the stream holds output of its own the socket has not taken (rustls's
    /// records).
    pub(crate) holds_output: fn(&S) -> bool,
    /// Drops output the stream holds itself (rustls's records) once the peer is gone, so
    /// that reading what it sent before does not try to write them first.
    pub(crate) discard_output: fn(&mut S),
    /// Ends our side of the stream above TCP (TLS close_notify), without waiting, once the
    /// close handshake is done: TCP itself stays open for the server to close first.
    pub(crate) close_notify: fn(&mut S),
}

impl<S> Clone for StreamControl<S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for StreamControl<S> {}

impl StreamControl<MaybeTlsStream> {
    pub(crate) fn for_maybe_tls() -> Self {
        StreamControl {
            set_read_timeout: MaybeTlsStream::set_read_timeout,
            set_deadline: MaybeTlsStream::set_deadline,
            set_close_deadline: MaybeTlsStream::set_close_deadline,
            set_write_deadline: MaybeTlsStream::set_write_deadline,
            set_read_deadline: MaybeTlsStream::set_read_deadline,
            set_write_nowait: MaybeTlsStream::set_write_nowait,
            set_read_nowait: MaybeTlsStream::set_read_nowait,
            holds_output: MaybeTlsStream::holds_output,
            discard_output: MaybeTlsStream::discard_output,
            close_notify: MaybeTlsStream::close_notify,
        }
    }
}

/// The timeouts a client connection was opened with (the driver keeps what it needs).
pub(crate) struct ClientTimeouts {
    pub(crate) read: Option<Duration>,
    pub(crate) write: Option<Duration>,
    pub(crate) close: Option<Duration>,
}

/// A WebSocket connection over a blocking stream.
///
/// Obtained from [`crate::connect`], [`crate::ClientBuilder`], [`crate::client()`] (over your own
/// stream) or [`crate::server::accept`].
pub struct WebSocket<S> {
    stream: S,
    conn: Connection,
    response: Option<Box<Response>>,
    request_head: Option<Box<str>>,
    /// The server's host, for TLS error messages.
    host: Box<str>,
    control: Option<StreamControl<S>>,
    close_timeout: Option<Duration>,
    drained: bool,
    /// TLS was told we have no more to send (close_notify).
    stream_ended: bool,
    /// A keepalive deadline is set on the stream (and must be lifted when keepalive stops).
    keepalive_deadline: bool,
    /// A pong is overdue and one more read was given to let it in (it may wait in the
    /// socket behind other data) before the peer is declared dead.
    last_chance: bool,
    /// When the close handshake must be over (set by `close_and_wait`, so that waiting for
    /// the server's TCP close shares its bound).
    close_deadline: Option<Instant>,
    /// The write timeout the caller configured (restored after writes bounded otherwise).
    write_timeout: Option<Duration>,
    /// The caller queued data that has not all been written yet: it must go out before a
    /// read waits for an answer to it. Queued replies (pongs) alone need not.
    user_output: bool,
    /// Reads have a timeout (see `fill`).
    read_timeout: Option<Duration>,
    /// Since when our output has not moved while reads flush it under keepalive, and how
    /// much had been written then (the write timeout counts from here across keepalive
    /// steps; see `flush_until`).
    flush_stuck: Option<(Instant, u64)>,
    /// Since when reads have waited without data, while keepalive bounds them (the idle-read
    /// timeout then counts from here, not from the last keepalive step).
    idle_since: Option<Instant>,
    /// When a read call returns at the latest, message or not (see `set_read_deadline`).
    read_deadline: Option<Instant>,
    /// Writing queued replies failed: no more are tried, and the error is reported once the
    /// messages already received have been delivered, before the socket is read again.
    reply_error: Option<io::Error>,
    /// Since when reads have waited for the peer's close after ours went out (outside
    /// `close_and_wait`, which bounds its own wait): the close timeout counts from here.
    close_wait_since: Option<Instant>,
    /// When our close frame was queued (by `close`, `feed` or `queue`): writing it out, by
    /// any flush, must be over a close timeout later.
    close_queued_at: Option<Instant>,
}

impl<S> std::fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("role", &self.conn.role())
            .field("state", &self.conn.state())
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl<S: Read + Write> WebSocket<S> {
    /// Wraps a stream on which the opening handshake has already happened.
    ///
    /// `leftover` are bytes read past the handshake: the start of the first frames.
    pub fn from_raw(stream: S, role: Role, config: Config, leftover: &[u8]) -> Self {
        Self::from_connection(stream, Connection::new(role, config), leftover)
    }

    /// Wraps a stream and a protocol connection set up by the caller (for example with
    /// negotiated compression); `leftover` are bytes already read past the handshake.
    pub fn from_connection(stream: S, mut conn: Connection, leftover: &[u8]) -> Self {
        conn.receive(leftover);
        WebSocket {
            stream,
            conn,
            response: None,
            request_head: None,
            host: "".into(),
            control: None,
            close_timeout: Some(Duration::from_secs(5)),
            drained: false,
            stream_ended: false,
            keepalive_deadline: false,
            last_chance: false,
            close_deadline: None,
            write_timeout: None,
            user_output: false,
            read_timeout: None,
            flush_stuck: None,
            idle_since: None,
            read_deadline: None,
            reply_error: None,
            close_wait_since: None,
            close_queued_at: None,
        }
    }

    pub(crate) fn set_client_details(
        &mut self,
        request_head: String,
        response: Response,
        host: String,
        control: Option<StreamControl<S>>,
        timeouts: ClientTimeouts,
    ) {
        self.write_timeout = timeouts.write;
        self.read_timeout = timeouts.read;
        self.request_head = Some(request_head.into_boxed_str());
        self.response = Some(Box::new(response));
        self.host = host.into_boxed_str();
        self.control = control;
        self.close_timeout = timeouts.close;
    }

    /// Records the redirects followed before this connection's handshake.
    pub(crate) fn set_redirects(&mut self, redirects: Vec<Redirect>) {
        if let Some(response) = &mut self.response {
            response.redirects = redirects;
        }
    }

    /// Receives the next message or control frame.
    ///
    /// Pings are answered automatically (and still returned), as the socket has room: a peer
    /// that reads nothing cannot hold a read up with them, over `ws://` or `wss://` (pongs
    /// the socket has no room for wait, up to a bound). A close frame from the peer is
    /// answered and returned as [`Message::Close`], at once. After that (or after an error)
    /// every call returns [`Error::ConnectionClosed`]; a client's first such call lets the
    /// server close TCP first, as RFC 6455 section 7.1.1 has it (within the close timeout: a
    /// server that keeps TCP open delays it that long), and dropping the connection instead
    /// closes it from our side. Messages that arrived before a protocol violation or a
    /// failed write are returned before the error.
    pub fn read(&mut self) -> Result<Message, Error> {
        self.stage()?;
        self.conn.take_staged().ok_or(Error::ConnectionClosed)
    }

    /// As [`WebSocket::read`], but the message is borrowed from the connection's buffer
    /// instead of copied out: the fast way to read (no allocation for a whole unfragmented
    /// message). It stays valid until the next call on this connection;
    /// [`MessageRef::to_owned`] keeps it.
    ///
    /// ```no_run
    /// # let mut ws = wsc::connect("ws://127.0.0.1:9001/")?;
    /// let mut bytes = 0;
    /// while let Ok(message) = ws.read_ref() {
    ///     bytes += message.as_payload().len();
    /// }
    /// # Ok::<(), wsc::Error>(())
    /// ```
    #[inline(always)]
    pub fn read_ref(&mut self) -> Result<MessageRef<'_>, Error> {
        // The common case inline: a whole message waiting in the buffer, nothing to write.
        // Always inlined, frame check and all (about 1.3 KB of code at each caller): it is
        // the loop a feed runs once per message, and as a call it cost 17 of 257 instructions
        // per 100-byte message (callgrind).
        if self.conn.has_pending_output() || !self.conn.stage_lent() {
            self.stage()?;
        }
        match self.conn.staged() {
            Some(message) => Ok(message),
            None => Err(Error::ConnectionClosed),
        }
    }

    /// Reads until a message is staged in the connection, sending what its arrival queued
    /// (pongs, the close reply).
    fn stage(&mut self) -> Result<(), Error> {
        loop {
            match self.conn.stage_next() {
                // A data message lent from the buffer: nothing was queued by its arrival.
                Ok(true) if self.conn.staged_is_lent() && !self.conn.has_pending_output() => {
                    return Ok(());
                }
                Ok(true) => {
                    if matches!(self.conn.staged(), Some(MessageRef::Close(_))) {
                        // The close reply, within the close timeout. The close is delivered
                        // even if the reply cannot be written (the connection is over either
                        // way), and at once, as tungstenite and the async client do: the
                        // wait for the server to close TCP first (RFC 6455 section 7.1.1)
                        // is the next read's.
                        let deadline = self.closing_deadline();
                        if let Some(c) = self.control {
                            // Writing over TLS may read too: bounded by it as well.
                            let _ = (c.set_close_deadline)(&mut self.stream, deadline);
                        }
                        let _ = self.flush_by(deadline, Phase::Close);
                        self.end_our_stream();
                        if let Some(c) = self.control {
                            let _ = (c.set_deadline)(&mut self.stream, None);
                        }
                    } else {
                        self.write_replies();
                    }
                    return Ok(());
                }
                Ok(false) if self.conn.is_terminated() => {
                    self.wait_for_server_close(self.closing_deadline());
                    return Err(Error::ConnectionClosed);
                }
                Ok(false) => {}
                Err(e) => {
                    // The close frame of the failure, if the socket takes it now. Nothing the
                    // server sends is read after a failure (RFC 6455 section 7.1.7), so the
                    // error is reported at once, not after waiting for the server to close.
                    self.write_replies();
                    self.drained = true;
                    return Err(e);
                }
            }
            if self.read_deadline.is_some_and(|at| Instant::now() >= at) {
                // Not an idle wait: the next call's starts afresh.
                self.idle_since = None;
                return Err(Error::Timeout(Phase::Read));
            }
            self.fill()?;
        }
    }

    /// Reads more bytes into the connection, or returns without any when a keepalive step
    /// is due.
    fn fill(&mut self) -> Result<(), Error> {
        if let Some(e) = self.reply_error.take() {
            return Err(self.transport_error(e, Phase::Write));
        }
        let wake = if self.user_output {
            if self.read_arrived()? {
                return Ok(());
            }
            let wake = self.keepalive_step()?;
            // Fed messages go out before we wait for an answer to them. A peer that takes
            // none of them within the write timeout may itself be blocked writing to us: if
            // the read is bounded too, it goes on, and they are written at the next call.
            match self.flush_until(wake) {
                Err(Error::Timeout(Phase::Write)) if self.read_timeout.is_some() => {}
                Err(e) if self.peer_gone(&e) => {}
                other => other?,
            }
            wake
        } else {
            self.write_replies();
            self.keepalive_step()?
        };
        let idle_end = self.bound_idle_read(wake)?;
        let close_end = self.bound_close_wait()?;
        let stream = &mut self.stream;
        loop {
            match self.conn.receive_with(READ_CHUNK, |buf| stream.read(buf)) {
                Ok(0) => return self.conn.receive_eof(),
                Ok(_) => {
                    // Data came: the peer is alive, whatever its pong is doing.
                    self.last_chance = false;
                    self.idle_since = None;
                    self.note_arrival();
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_timeout(&e) => {
                    let now = Instant::now();
                    if close_end.is_some_and(|end| now >= end) {
                        return Err(self.close_timed_out());
                    }
                    let idle = idle_end.is_some_and(|end| now >= end);
                    if wake.is_some_and(|at| now >= at) && !idle {
                        return Ok(());
                    }
                    // The wait starts over at the next read.
                    self.idle_since = None;
                    return Err(self.transport_error(e, Phase::Read));
                }
                Err(e) => return Err(self.transport_error(e, Phase::Read)),
            }
        }
    }

    /// [`WebSocket::flush`] before a read waits, with keepalive on no longer than until its
    /// next step (`wake`) or the write timeout's end, whichever comes first: a peer that takes none
    /// of our output and sends nothing is then found dead by keepalive, as an idle one is,
    /// instead of holding the read (with no write timeout, for good). Output the peer takes
    /// meanwhile counts as a sign of life. What stays queued is written at the next step.
    ///
    /// The write timeout still holds across these steps: counted from when our output
    /// stopped moving, it ends the read with [`Error::Timeout`] (`Phase::Write`) as it does
    /// with keepalive off.
    fn flush_until(&mut self, wake: Option<Instant>) -> Result<(), Error> {
        let Some(wake) = wake else {
            return self.flush();
        };
        if self.close_write_deadline().is_some() {
            return self.flush();
        }
        let now = Instant::now();
        let written = self.conn.written();
        // Output that moved since the clock started (here, or in a write between) starts it
        // over.
        if self.flush_stuck.is_some_and(|(_, at)| written > at) {
            self.flush_stuck = None;
        }
        let write_end = self.write_timeout.and_then(|limit| {
            let (since, _) = *self.flush_stuck.get_or_insert((now, written));
            since.checked_add(limit)
        });
        let until = write_end.map_or(wake, |end| end.min(wake));
        match self.flush_by(Some(until), Phase::Write) {
            Err(Error::Timeout(Phase::Write)) => {
                if self.conn.written() > written {
                    self.flush_stuck = None;
                } else if write_end.is_some_and(|end| Instant::now() >= end) {
                    self.flush_stuck = None;
                    return Err(Error::Timeout(Phase::Write));
                }
                Ok(())
            }
            other => {
                self.flush_stuck = None;
                other
            }
        }
    }

    /// While keepalive bounds reads (until `wake`), keeps the idle-read timeout counting from
    /// when reads began to wait: each keepalive step starts a new read, whose own timeout
    /// would start over. Returns when the idle-read timeout ends.
    fn bound_idle_read(&mut self, wake: Option<Instant>) -> Result<Option<Instant>, Error> {
        let (Some(control), Some(wake), Some(limit)) = (self.control, wake, self.read_timeout)
        else {
            return Ok(None);
        };
        let now = Instant::now();
        let Some(end) = self.idle_since.get_or_insert(now).checked_add(limit) else {
            return Ok(None);
        };
        if end < wake {
            (control.set_deadline)(&mut self.stream, Some(end))?;
        }
        Ok(Some(end))
    }

    /// Whether a write failed because the peer is gone (reset) with our output lost: what
    /// it sent before is still to be read, so the caller reads on instead of failing.
    fn peer_gone(&self, e: &Error) -> bool {
        matches!(e, Error::ConnectionReset) && self.conn.is_output_lost()
    }

    /// After our close frame went out (by `close` or `send`), bounds reads by the close
    /// timeout, counted from the first read that waits for the peer's close: a server that
    /// never answers must not hold `read` forever (as the async client, whose reads after a
    /// close the close timeout bounds too). The idle-read timeout still ends each read.
    /// Returns when the close timeout ends; past it, fails as `close_and_wait` does.
    fn bound_close_wait(&mut self) -> Result<Option<Instant>, Error> {
        let (Some(control), Some(limit)) = (self.control, self.close_timeout) else {
            return Ok(None);
        };
        if self.conn.state() != State::CloseSent || self.close_deadline.is_some() {
            return Ok(None);
        }
        if self.has_unsent_output() {
            // Still writing (each write under the write timeout): the wait starts after.
            self.close_wait_since = None;
            return Ok(None);
        }
        let now = Instant::now();
        let Some(end) = self.close_wait_since.get_or_insert(now).checked_add(limit) else {
            return Ok(None);
        };
        if now >= end {
            return Err(self.close_timed_out());
        }
        (control.set_deadline)(&mut self.stream, Some(end))?;
        Ok(Some(end))
    }

    /// Gives the connection up for `error` (a close or keepalive that timed out, a broken
    /// transport), so that later calls report it closed instead of waiting or failing again.
    #[cold]
    fn give_up(&mut self, error: Error) -> Error {
        self.conn.abort();
        self.drained = true;
        error
    }

    /// The peer's close did not come within the close timeout: the connection is given up.
    #[cold]
    fn close_timed_out(&mut self) -> Error {
        self.give_up(Error::Timeout(Phase::Close))
    }

    /// With keepalive on, tells the connection when bytes were read: a pong among them gives
    /// the round trip ([`WebSocket::latency`]). A clock read per read, not per message.
    fn note_arrival(&mut self) {
        if self.conn.has_keepalive() {
            self.conn.received_at(Instant::now());
        }
    }

    /// With our output still to write: writes what the socket takes now, and if some stays,
    /// reads what the peer has already sent, neither waiting. A peer blocked writing to us
    /// takes no more of our output until we read, so waiting for room first would only slow
    /// both directions (an echo of a big input). `true` when bytes were read (or the stream
    /// ended). Only on streams this crate opened.
    #[cold]
    fn read_arrived(&mut self) -> Result<bool, Error> {
        let Some(control) = self.control else {
            return Ok(false);
        };
        match self.flush_nowait() {
            Ok(true) => return Ok(false),
            Ok(false) => {}
            Err(e) if self.peer_gone(&e) => return Ok(false),
            Err(e) => return Err(e),
        }
        (control.set_read_nowait)(&mut self.stream, true);
        let stream = &mut self.stream;
        let read = self.conn.receive_with(READ_CHUNK, |buf| stream.read(buf));
        (control.set_read_nowait)(&mut self.stream, false);
        match read {
            Ok(0) => self.conn.receive_eof().map(|()| true),
            Ok(_) => {
                self.last_chance = false;
                self.idle_since = None;
                self.note_arrival();
                Ok(true)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.transport_error(e, Phase::Read)),
        }
    }

    /// Runs the keepalive clock before a read: sends a ping when one is due and bounds the
    /// read by the next keepalive step. Returns when that step is.
    fn keepalive_step(&mut self) -> Result<Option<Instant>, Error> {
        let Some(control) = self.control else {
            return Ok(None);
        };
        if !self.conn.has_keepalive() && !self.keepalive_deadline {
            // Off, and no deadline of it to lift: no clock to read.
            return Ok(None);
        }
        let now = Instant::now();
        if self.conn.keepalive_overdue(now) && !self.last_chance {
            // The pong may be in the socket behind other data: one more short read first.
            self.last_chance = true;
            let wake = now + LAST_CHANCE;
            (control.set_deadline)(&mut self.stream, Some(wake))?;
            self.keepalive_deadline = true;
            return Ok(Some(wake));
        }
        self.last_chance = false;
        let queued = self.conn.queued_output();
        let wake = match self.conn.poll_keepalive(now) {
            Ok(wake) => wake,
            Err(e) => {
                // The peer is gone: no close handshake to wait for.
                self.drained = true;
                return Err(e);
            }
        };
        if self.conn.queued_output() > queued {
            // A ping was queued: out now if the socket has room, without waiting for it. A
            // peer that floods us and reads nothing (its side full of our pongs) is alive as
            // long as its data comes, and must not hold reads up; a dead one is noticed when
            // the pong's deadline passes with nothing heard, written or not.
            self.write_replies();
        }
        // Output stuck behind a full socket (the ping, or pongs before it): reads stop now
        // and then to write it, for a peer that resumes reading but sends nothing first.
        let wake = match wake {
            Some(at) if self.conn.has_pending_output() || (control.holds_output)(&self.stream) => {
                Some(at.min(now + PING_RETRY))
            }
            other => other,
        };
        if wake.is_some() || self.keepalive_deadline {
            (control.set_deadline)(&mut self.stream, wake)?;
            self.keepalive_deadline = wake.is_some();
        }
        Ok(wake)
    }

    /// Turns keepalive pings on or off (see [`crate::ClientBuilder::keepalive`]). Only on
    /// streams this crate opened: it needs to bound reads.
    pub fn set_keepalive(&mut self, keepalive: Option<Keepalive>) {
        self.conn.set_keepalive(keepalive, Instant::now());
    }

    /// The round trip of the last keepalive ping: from when it was queued to when the read
    /// that brought its pong returned (so it includes output queued before the ping, and
    /// time the application spent between reads while the pong waited). `None` with
    /// keepalive off or before the first pong. A health figure for a long-lived feed, as
    /// Python `websockets`' `latency`.
    pub fn latency(&self) -> Option<Duration> {
        self.conn.keepalive_rtt()
    }

    /// Maps an I/O error; anything but a timeout kills the connection, so that later calls
    /// report it closed instead of repeating the error forever. A write that finds the peer
    /// gone kills only the output: what the peer sent before it went (its close frame, with
    /// the reason) is still read.
    fn transport_error(&mut self, e: io::Error, phase: Phase) -> Error {
        let peer_gone = phase == Phase::Write && is_peer_gone(&e) && !self.conn.is_terminated();
        let timeout = is_timeout(&e);
        let error = map_io_error(e, phase, &self.host);
        if peer_gone {
            self.lose_output();
        } else if !timeout {
            return self.give_up(error);
        }
        error
    }

    /// Once the close handshake is over and our close frame is out (not merely queued), TLS
    /// says it has no more to send (close_notify), once: a caller that drops the connection
    /// after the close leaves a clean end behind.
    fn end_our_stream(&mut self) {
        let Some(control) = self.control else { return };
        if !self.stream_ended
            && self.conn.state() == State::Closed
            && !self.conn.has_pending_output()
            && !self.conn.is_output_lost()
        {
            self.stream_ended = true;
            (control.close_notify)(&mut self.stream);
        }
    }

    /// After the close handshake, a client lets the server close TCP first
    /// (RFC 6455 section 7.1.1), for at most the close timeout in all. Over a caller's own
    /// stream, whose timeouts we cannot set, it does not wait.
    fn wait_for_server_close(&mut self, deadline: Option<Instant>) {
        if self.drained || self.conn.role() != Role::Client {
            return;
        }
        self.drained = true;
        let Some(control) = self.control else { return };
        self.end_our_stream();
        if (control.set_close_deadline)(&mut self.stream, deadline).is_err() {
            return;
        }
        self.keepalive_deadline = false;
        let mut scratch = [0u8; 4096];
        let mut drained = 0;
        while drained < CLOSE_DRAIN_LIMIT {
            match self.stream.read(&mut scratch) {
                Ok(0) => break,
                Ok(n) => drained += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = (control.set_deadline)(&mut self.stream, None);
    }

    /// When closing must be over: the bound `close_and_wait` set, or the close timeout from
    /// now.
    fn closing_deadline(&self) -> Option<Instant> {
        self.close_deadline
            .or_else(|| deadline_in(self.close_timeout))
    }

    /// Writes queued frames to the stream.
    ///
    /// Once our close frame is queued (by `close`, `feed` or `queue`), this is bounded as
    /// [`WebSocket::close`] is: within the close timeout from when it was queued, when that
    /// ends before the write timeout would; past it, closing is given up ([`Error::Timeout`]
    /// with [`Phase::Close`]).
    pub fn flush(&mut self) -> Result<(), Error> {
        let Some(deadline) = self.close_write_deadline() else {
            return self.flush_unbounded();
        };
        match self.flush_by(Some(deadline), Phase::Close) {
            Err(Error::Timeout(Phase::Close)) => Err(self.close_timed_out()),
            other => self.unless_peer_gone(other),
        }
    }

    /// When writing our queued close must be over: a close timeout after it was queued, if
    /// that bound is shorter than the write timeout (on streams this crate opened, whose
    /// timeouts it sets). `None` before a close is queued.
    fn close_write_deadline(&self) -> Option<Instant> {
        let queued = self.close_queued_at?;
        match (self.control, self.close_timeout) {
            (Some(_), Some(limit)) if self.write_timeout.map_or(true, |w| w > limit) => {
                queued.checked_add(limit)
            }
            _ => None,
        }
    }

    /// Our close frame was just queued: the close timeout's clock starts.
    fn close_queued(&mut self) {
        self.close_queued_at.get_or_insert_with(Instant::now);
    }

    /// [`WebSocket::flush`] bounded only by the write timeout.
    fn flush_unbounded(&mut self) -> Result<(), Error> {
        match self.write_queued(|_| Ok(())) {
            Ok(()) => {
                self.user_output = false;
                Ok(())
            }
            Err(e) => Err(self.transport_error(e, Phase::Write)),
        }
    }

    /// Writes every queued byte, then flushes the stream; `before_write` runs before each
    /// write and before the flush (which writes too, over TLS).
    fn write_queued(
        &mut self,
        mut before_write: impl FnMut(&mut S) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut took_none = false;
        while self.conn.has_pending_output() {
            before_write(&mut self.stream)?;
            match self.stream.write(self.conn.pending_output()) {
                // rustls's buffer was full: its flush empties it, then it takes more.
                Ok(0) if !took_none => {
                    took_none = true;
                    before_write(&mut self.stream)?;
                    self.stream.flush()?;
                }
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the connection accepts no more data",
                    ))
                }
                Ok(n) => {
                    took_none = false;
                    self.conn.consume_output(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        before_write(&mut self.stream)?;
        self.stream.flush()
    }

    /// [`WebSocket::write_queued`] taking only what the socket has room for now (on streams
    /// this crate opened; a caller's own stream writes as it does).
    fn write_queued_nowait(&mut self) -> io::Result<()> {
        let control = self.control;
        if let Some(c) = control {
            (c.set_write_nowait)(&mut self.stream, true);
        }
        let result = self.write_queued(|_| Ok(()));
        if let Some(c) = control {
            (c.set_write_nowait)(&mut self.stream, false);
        }
        result
    }

    /// [`WebSocket::flush`] without waiting for room: `true` when all went out, `false` when
    /// some stays queued.
    pub(crate) fn flush_nowait(&mut self) -> Result<bool, Error> {
        match self.write_queued_nowait() {
            Ok(()) => {
                self.user_output = false;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(self.transport_error(e, Phase::Write)),
        }
    }

    /// Writes the queued frames by `deadline`: each write waits at most for the time left,
    /// however much shorter the write timeout (the phase's bound is the whole operation's: a
    /// peer that stalls a moment within it must not end it); a timeout is one of `phase`.
    /// Over a caller's own stream, its own write timeout applies instead.
    #[cold]
    fn flush_by(&mut self, deadline: Option<Instant>, phase: Phase) -> Result<(), Error> {
        let (Some(control), Some(deadline)) = (self.control, deadline) else {
            return self.flush_unbounded();
        };
        // Most often the socket takes it all at once, and no timeout needs setting.
        if self.flush_nowait()? {
            return Ok(());
        }
        // Each socket write waits at most for the time left (over TLS, a write of ours may
        // be many of them).
        (control.set_write_deadline)(&mut self.stream, Some(deadline));
        let result = self.write_queued(|_| {
            if Instant::now() >= deadline {
                return Err(io::Error::from(io::ErrorKind::TimedOut));
            }
            Ok(())
        });
        // (Lifting it gives the socket its write timeout back.)
        (control.set_write_deadline)(&mut self.stream, None);
        match result {
            Ok(()) => {
                self.user_output = false;
                Ok(())
            }
            // The deadline passed: the operation as a whole (`phase`) timed out.
            Err(e) if is_timeout(&e) => Err(Error::Timeout(phase)),
            Err(e) => Err(self.transport_error(e, Phase::Write)),
        }
    }

    /// Writes what the socket takes now of the frames that the peer's frames queued (pongs,
    /// the close frame of a failure), without waiting for room: a peer that floods pings and
    /// reads nothing must not hold a read up (the connection stops answering pings once too
    /// many pongs wait). A failed write does not fail the connection at once: messages
    /// already received are delivered first (see `reply_error`). Over a caller's own stream,
    /// the write may block as the stream does.
    #[inline]
    fn write_replies(&mut self) {
        if self.reply_error.is_none() && self.has_unwritten_replies() {
            self.write_replies_now();
        }
    }

    /// Whether replies wait to be written: in the connection, or in the stream (a pong rustls
    /// took whole while the socket was full). The latter must go out here too: otherwise
    /// rustls writes them first thing in the next read, and a write failing there (the peer
    /// reset) fails the read before the close frame already received is read.
    #[inline]
    fn has_unwritten_replies(&self) -> bool {
        self.conn.has_pending_output()
            || self.control.is_some_and(|c| (c.holds_output)(&self.stream))
    }

    /// [`WebSocket::write_replies`] when there is something to write (out of the hot path).
    #[cold]
    #[inline(never)]
    fn write_replies_now(&mut self) {
        match self.write_queued_nowait() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || is_timeout(&e) => {}
            // What the peer sent before it went is read on; the read then reports its end.
            Err(e) if is_peer_gone(&e) => self.lose_output(),
            Err(e) => self.reply_error = Some(e),
        }
    }

    /// Nothing more can be written: drops what waits to be, in the connection and in the
    /// stream.
    #[cold]
    fn lose_output(&mut self) {
        self.conn.lose_output();
        self.user_output = false;
        if let Some(control) = self.control {
            (control.discard_output)(&mut self.stream);
        }
    }

    /// Writes what the caller just queued.
    fn send_queued(&mut self) -> Result<(), Error> {
        self.user_output = true;
        self.flush()
    }

    /// Before a message is queued: what earlier sends left queued past [`FEED_BUFFER`] (their
    /// writes timed out) is written first, under the write timeout, as the async client's
    /// write buffer bound does. A caller that goes on sending to a peer that reads nothing
    /// then gets [`Error::SendQueueFull`] for messages that were not queued (distinct from
    /// the `Timeout(Write)` of a message queued but not yet written), instead of a queue
    /// that grows without bound.
    fn make_room(&mut self) -> Result<(), Error> {
        // Nothing more can be sent (our close is out, the peer is gone): the send itself
        // says so, without waiting for room first.
        if self.conn.queued_output() < FEED_BUFFER || !self.conn.can_send() {
            return Ok(());
        }
        match self.flush() {
            Err(Error::Timeout(Phase::Write)) => Err(Error::SendQueueFull {
                queued: self.conn.queued_output(),
            }),
            other => other,
        }
    }

    /// Sends a message or control frame (a [`Message::Close`] starts the closing handshake).
    ///
    /// A write that times out ([`Error::Timeout`], `Phase::Write`) leaves the message queued:
    /// it goes out with the next write, flush or read. While more than 128 KiB stays queued
    /// that way, the next send first waits (the write timeout) for the peer to take it, and
    /// if it does not, fails with [`Error::SendQueueFull`] without queueing its message.
    ///
    /// A [`Message::Close`] is sent as [`WebSocket::close`] sends it: the close timeout, when
    /// shorter than the write timeout, bounds writing it, so a peer that reads nothing
    /// cannot hold it up longer.
    pub fn send(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        let message = match message.into() {
            Message::Close(frame) => return self.close(frame),
            message => message,
        };
        self.make_room()?;
        self.conn.send(message)?;
        self.send_queued()
    }

    /// Queues a message without writing it yet, for bursts of small messages: one write for
    /// many instead of one each. The queue is written by [`WebSocket::flush`], by any `send`,
    /// before a read waits for data, and by itself once it holds 128 KiB. (A read that finds
    /// the socket full returns what the peer has already sent first, without waiting: the
    /// peer may be blocked writing to us. When nothing has arrived and the peer takes none of
    /// it within the write timeout, a read with a timeout of its own goes on without it; with
    /// keepalive on, the read goes on pinging meanwhile. The next call writes it.)
    ///
    /// A [`Message::Close`] fed or queued starts the close timeout's clock: writing it out (by
    /// `flush`, a read, or this call when the queue is full) is bounded as in
    /// [`WebSocket::close`].
    pub fn feed(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        let message = message.into();
        let close = matches!(message, Message::Close(_));
        if !close {
            self.make_room()?;
        }
        self.conn.send(message)?;
        if close {
            self.close_queued();
        }
        self.user_output = true;
        if self.conn.queued_output() >= FEED_BUFFER {
            self.flush()?;
        }
        Ok(())
    }

    /// Queues a message without writing it, and without the bound on what earlier sends left
    /// queued (see [`WebSocket::send`]): for a bounded list of your own, such as
    /// subscriptions, that must all go out in order however slowly the peer takes them. It
    /// goes out with the next write, flush or read.
    pub fn queue(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        let message = message.into();
        let close = matches!(message, Message::Close(_));
        self.conn.send(message)?;
        if close {
            self.close_queued();
        }
        self.user_output = true;
        Ok(())
    }

    /// Sends a text message.
    pub fn send_text(&mut self, text: &str) -> Result<(), Error> {
        self.make_room()?;
        self.conn.send_text(text)?;
        self.send_queued()
    }

    /// Sends a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), Error> {
        self.make_room()?;
        self.conn.send_binary(data)?;
        self.send_queued()
    }

    /// Sends a ping with up to 125 bytes of payload.
    pub fn ping(&mut self, data: &[u8]) -> Result<(), Error> {
        self.make_room()?;
        self.conn.send_ping(data)?;
        self.send_queued()
    }

    /// Sends an unsolicited pong with up to 125 bytes of payload.
    pub fn pong(&mut self, data: &[u8]) -> Result<(), Error> {
        self.make_room()?;
        self.conn.send_pong(data)?;
        self.send_queued()
    }

    /// Sends a text or binary message as several frames of at most `fragment_size` bytes.
    pub fn send_fragmented(
        &mut self,
        message: impl Into<Message>,
        fragment_size: usize,
    ) -> Result<(), Error> {
        self.make_room()?;
        self.conn.send_fragmented(&message.into(), fragment_size)?;
        self.send_queued()
    }

    /// Sends one part of a message whose size need not be known up front (streamed from a
    /// file, a pipe, a generator): the first part starts a text (`&str`) or binary (bytes)
    /// message, the next ones continue it, and the one with `last` ends it; each part is one
    /// frame, uncompressed. Pings and the close may go between parts; other messages wait
    /// for the last part.
    ///
    /// ```no_run
    /// use std::io::Read;
    /// let mut ws = wsc::connect("ws://127.0.0.1:9001/upload")?;
    /// let mut file = std::fs::File::open("big.bin")?;
    /// let mut buf = vec![0u8; 64 << 10];
    /// loop {
    ///     let n = file.read(&mut buf)?;
    ///     ws.send_part(&buf[..n], n == 0)?;
    ///     if n == 0 {
    ///         break;
    ///     }
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_part<'a>(
        &mut self,
        part: impl Into<MessagePart<'a>>,
        last: bool,
    ) -> Result<(), Error> {
        self.make_room()?;
        self.conn.send_part(part, last)?;
        self.send_queued()
    }

    /// Starts the closing handshake. Keep calling [`WebSocket::read`] until it returns the
    /// server's [`Message::Close`] (messages already in flight come first); see
    /// [`WebSocket::close_and_wait`] to do both.
    ///
    /// `frame: None` sends a close frame without a status code (the server sees 1005, "no
    /// status"); to close with 1000, pass
    /// `Some(wsc::CloseFrame::new(wsc::CloseCode::NORMAL, "done"))`.
    ///
    /// Writing the close (and what is queued before it) waits at most the close timeout when
    /// that is shorter than the write timeout (or there is none): a peer that reads nothing
    /// must not hold `close` forever. Past it, closing is given up ([`Error::Timeout`] with
    /// [`Phase::Close`]); a shorter write timeout leaves the close queued as for any send.
    ///
    /// A peer that is already gone (it reset the connection, so the close cannot be written)
    /// is not an error of `close`: what it sent before is still read, and `read` tells how
    /// it ended, with its close frame or with [`Error::ConnectionReset`].
    pub fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), Error> {
        if self.conn.state() == State::Open && self.conn.is_output_lost() {
            // An earlier write found the peer gone: no close can go out, none is needed.
            return Ok(());
        }
        self.conn.close(frame)?;
        self.close_queued();
        // Bounded by the close timeout, from now (see `flush`).
        let sent = self.send_queued();
        self.unless_peer_gone(sent)
    }

    /// Writing the close failed because the peer is gone: not the outcome of closing, which
    /// reads tell (what the peer sent before it went, its close frame included, is still
    /// read).
    fn unless_peer_gone(&self, written: Result<(), Error>) -> Result<(), Error> {
        match written {
            Err(e) if self.peer_gone(&e) => Ok(()),
            other => other,
        }
    }

    /// Closes and waits for the peer's close frame, discarding messages still in flight, and
    /// then (a client) for the server to close TCP first, as RFC 6455 section 7.1.1 has it;
    /// for at most the close timeout in all (on streams this crate opened). Returns the peer's
    /// close frame (`None` when it carried no status code), also when the close handshake
    /// was already over: after a [`WebSocket::read`] that returned the peer's close, or a
    /// second call. `frame` is sent as in [`WebSocket::close`]: `None` means no status code,
    /// not 1000.
    ///
    /// A peer that sent its close and then reset the connection before ours could be
    /// written still closed: its close frame is returned. One that reset it without a close
    /// frame fails with [`Error::ConnectionReset`].
    pub fn close_and_wait(
        &mut self,
        frame: Option<CloseFrame>,
    ) -> Result<Option<CloseFrame>, Error> {
        let control = self.control;
        let deadline = control.and_then(|_| deadline_in(self.close_timeout));
        // The close timeout bounds what follows, not a deadline set for other reads.
        let read_deadline = self.read_deadline;
        self.set_read_deadline(None);
        match self.conn.state() {
            // The peer is gone: no close to send, but its own may still be read.
            State::Open if self.conn.is_output_lost() => {}
            State::Open => {
                if let Err(e) = self.conn.close(frame) {
                    self.set_read_deadline(read_deadline);
                    return Err(e);
                }
                self.user_output = true;
            }
            State::CloseSent => {}
            // Over (a read took the peer's close): its outcome again, the peer's close.
            State::Closed => {
                self.set_read_deadline(read_deadline);
                return Ok(self.conn.peer_close().cloned());
            }
            State::Failed => {
                self.set_read_deadline(read_deadline);
                return Err(Error::ConnectionClosed);
            }
        }
        if let Some(c) = control {
            // First: writing over TLS may read too, and every read is bounded by it.
            (c.set_close_deadline)(&mut self.stream, deadline)?;
            self.close_deadline = deadline;
            // The close timeout now bounds reads, not keepalive (which stops after a close).
            self.keepalive_deadline = false;
        }
        // Messages still queued and the close frame go out within the close timeout, then the
        // peer's close is read within what is left of it.
        // Also when only the stream holds some (a `close` that timed out after rustls took
        // the whole close frame): a read would flush it bounded by the write timeout alone.
        let written = if self.user_output || self.conn.has_pending_output() {
            let written = self.flush_by(deadline, Phase::Close);
            // A peer gone before our close went out may have sent its own first.
            self.unless_peer_gone(written)
        } else {
            Ok(())
        };
        let result = written.and_then(|()| loop {
            match self.read() {
                Ok(Message::Close(frame)) => {
                    // Then, as RFC 6455 section 7.1.1 has it, the server closes TCP first:
                    // waited for within what is left of the close timeout.
                    self.wait_for_server_close(self.closing_deadline());
                    break Ok(frame);
                }
                Ok(_) => {}
                Err(Error::Timeout(Phase::Read)) => break Err(Error::Timeout(Phase::Close)),
                Err(e) => break Err(e),
            }
        });
        self.close_deadline = None;
        self.set_read_deadline(read_deadline);
        if let Some(c) = control {
            let _ = (c.set_deadline)(&mut self.stream, None);
        }
        if let Err(Error::Timeout(Phase::Close)) = result {
            // Closing is over, unfinished: a later read must not wait for the close again.
            return Err(self.close_timed_out());
        }
        result
    }

    /// The connection's state.
    pub fn state(&self) -> State {
        self.conn.state()
    }

    /// Whether messages can still be sent.
    pub fn can_send(&self) -> bool {
        self.conn.can_send()
    }

    /// Whether some of what was sent (or fed, or the close frame) has not all reached the
    /// socket yet after a write timed out: in the connection's queue
    /// ([`Connection::queued_output`]), or held by the stream itself (over `wss://`, rustls
    /// keeps up to 64 KiB). It goes out with the next write, flush or read.
    pub fn has_unsent_output(&self) -> bool {
        self.user_output || self.has_unwritten_replies()
    }

    /// The server's handshake response (client connections only).
    pub fn response(&self) -> Option<&Response> {
        self.response.as_deref()
    }

    /// The upgrade request as sent (client connections only), for logging.
    pub fn request_head(&self) -> Option<&str> {
        self.request_head.as_deref()
    }

    /// The subprotocol the server chose, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.response.as_ref()?.protocol.as_deref()
    }

    /// The stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The stream, mutably (reading or writing it directly corrupts the connection).
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The stream, giving up the connection (bytes received but not yet parsed are dropped).
    pub fn into_inner(self) -> S {
        self.stream
    }

    /// The sans-I/O connection inside.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Makes [`WebSocket::read`] (and `read_ref`) return [`Error::Timeout`] (`Phase::Read`)
    /// once `deadline` has passed, even while a message is still arriving: what has arrived
    /// stays buffered and the next call goes on with it. For a loop that must also look at
    /// something else (a signal, a clock) however steadily a big message trickles in; the
    /// read timeout only counts time without data. On streams this crate opened, a wait for
    /// data ends at the deadline too (over `wss://` as well, however slowly a TLS record
    /// trickles in); over your own stream each wait lasts up to its read timeout, so the call
    /// may end that much after `deadline`.
    pub fn set_read_deadline(&mut self, deadline: Option<Instant>) {
        self.read_deadline = deadline;
        if let Some(c) = self.control {
            (c.set_read_deadline)(&mut self.stream, deadline);
        }
    }

    /// Changes the read timeout for later reads (streams opened by this crate; set your own
    /// stream's timeout yourself).
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<(), Error> {
        if let Some(c) = self.control {
            (c.set_read_timeout)(&mut self.stream, timeout)?;
            self.read_timeout = timeout;
            self.idle_since = None;
        }
        Ok(())
    }
}

impl<S: Read + Write> Iterator for WebSocket<S> {
    type Item = Result<Message, Error>;

    /// Yields messages until the connection closes (the close frame itself included).
    fn next(&mut self) -> Option<Self::Item> {
        match self.read() {
            Err(Error::ConnectionClosed) => None,
            other => Some(other),
        }
    }
}
