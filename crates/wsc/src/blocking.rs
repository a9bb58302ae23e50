//! The blocking driver: a [`WebSocket`] over any `Read + Write` stream.
//!
//! It owns the stream and moves bytes between it and the sans-I/O [`Connection`]: read bytes
//! in, messages out, queued frames (including automatic pongs and close replies) written after
//! every step. It holds no protocol logic.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use crate::error::{Error, Phase};
use crate::proto::buffer::ReadBuffer;
use crate::proto::handshake::Response;
use crate::proto::{CloseFrame, Config, Connection, Keepalive, Message, MessageRef, Role, State};
use crate::stream::{deadline_in, is_timeout, map_io_error, MaybeTlsStream};

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
    /// The timeout of each write.
    pub(crate) set_write_timeout: fn(&mut S, Option<Duration>) -> io::Result<()>,
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
            set_write_timeout: MaybeTlsStream::set_write_timeout,
        }
    }
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
    peer: String,
    control: Option<StreamControl<S>>,
    close_timeout: Option<Duration>,
    drained: bool,
    /// A keepalive deadline is set on the stream (and must be lifted when keepalive stops).
    keepalive_deadline: bool,
    /// A pong is overdue and one more read was given to let it in (it may wait in the
    /// socket behind other data) before the peer is declared dead.
    last_chance: bool,
    /// When the close handshake must be over (set by `close_and_wait`, so that waiting for
    /// the server's TCP close shares its bound).
    close_deadline: Option<Instant>,
    /// The write timeout the caller configured (restored after a keepalive ping's write).
    write_timeout: Option<Duration>,
}

impl<S> std::fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("role", &self.conn.role())
            .field("state", &self.conn.state())
            .field("peer", &self.peer)
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
            peer: String::new(),
            control: None,
            close_timeout: Some(Duration::from_secs(5)),
            drained: false,
            keepalive_deadline: false,
            last_chance: false,
            close_deadline: None,
            write_timeout: None,
        }
    }

    pub(crate) fn set_client_details(
        &mut self,
        request_head: String,
        response: Response,
        peer: String,
        control: Option<StreamControl<S>>,
        close_timeout: Option<Duration>,
        write_timeout: Option<Duration>,
    ) {
        self.write_timeout = write_timeout;
        self.request_head = Some(request_head.into_boxed_str());
        self.response = Some(Box::new(response));
        self.peer = peer;
        self.control = control;
        self.close_timeout = close_timeout;
    }

    /// Receives the next message or control frame.
    ///
    /// Pings are answered automatically (and still returned). A close frame from the peer is
    /// answered and returned as [`Message::Close`]; after that (or after an error) every call
    /// returns [`Error::ConnectionClosed`]. Messages that arrived before a protocol violation
    /// are returned before the error.
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
    #[inline]
    pub fn read_ref(&mut self) -> Result<MessageRef<'_>, Error> {
        // The common case inline: a whole message waiting in the buffer, nothing to write.
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
                    let (ping, close) = match self.conn.staged() {
                        Some(MessageRef::Ping(_)) => (true, false),
                        Some(MessageRef::Close(_)) => (false, true),
                        _ => (false, false),
                    };
                    if self.conn.has_pending_output() {
                        if let Err(e) = self.flush() {
                            // A ping is delivered anyway; the write error shows up next time.
                            if !ping {
                                return Err(e);
                            }
                        }
                    }
                    if close {
                        self.wait_for_server_close();
                    }
                    return Ok(());
                }
                Ok(false) if self.conn.is_terminated() => {
                    self.wait_for_server_close();
                    return Err(Error::ConnectionClosed);
                }
                Ok(false) => {}
                Err(e) => {
                    let _ = self.flush();
                    self.wait_for_server_close();
                    return Err(e);
                }
            }
            self.fill()?;
        }
    }

    /// Reads more bytes into the connection, or returns without any when a keepalive step
    /// is due.
    fn fill(&mut self) -> Result<(), Error> {
        if self.conn.has_pending_output() {
            // Fed messages go out before we wait for an answer to them.
            self.flush()?;
        }
        let wake = self.keepalive_step()?;
        let stream = &mut self.stream;
        loop {
            match self.conn.receive_with(READ_CHUNK, |buf| stream.read(buf)) {
                Ok(0) => return self.conn.receive_eof(),
                Ok(_) => {
                    // Data came: the peer is alive, whatever its pong is doing.
                    self.last_chance = false;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_timeout(&e) && wake.is_some_and(|at| Instant::now() >= at) => {
                    return Ok(())
                }
                Err(e) => return Err(self.transport_error(e, Phase::Read)),
            }
        }
    }

    /// Runs the keepalive clock before a read: sends a ping when one is due and bounds the
    /// read by the next keepalive step. Returns when that step is.
    fn keepalive_step(&mut self) -> Result<Option<Instant>, Error> {
        let Some(control) = self.control else {
            return Ok(None);
        };
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
        let wake = match self.conn.poll_keepalive(now) {
            Ok(wake) => wake,
            Err(e) => {
                // The peer is gone: no close handshake to wait for.
                self.drained = true;
                return Err(e);
            }
        };
        if self.conn.has_pending_output() {
            // A peer that stopped reading must not hold the ping's write past its deadline.
            let bound = wake.map(|at| at.saturating_duration_since(now));
            let bound = match (bound, self.write_timeout) {
                (Some(b), Some(w)) => Some(b.min(w)),
                (b, w) => b.or(w),
            };
            (control.set_write_timeout)(&mut self.stream, bound)?;
            let flushed = self.flush();
            (control.set_write_timeout)(&mut self.stream, self.write_timeout)?;
            match flushed {
                Err(Error::Timeout(Phase::Write)) if self.write_timeout != bound => {
                    self.conn.abort();
                    self.drained = true;
                    return Err(Error::KeepaliveTimeout(self.conn.keepalive_timeout()));
                }
                other => other?,
            }
        }
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

    /// Maps an I/O error; anything but a timeout kills the connection, so that later calls
    /// report it closed instead of repeating the error forever.
    fn transport_error(&mut self, e: io::Error, phase: Phase) -> Error {
        if !is_timeout(&e) {
            self.conn.abort();
            self.drained = true;
        }
        map_io_error(e, phase, &self.peer)
    }

    /// After the close handshake (or a failure), a client lets the server close TCP first
    /// (RFC 6455 section 7.1.1), for at most the close timeout in all. Over a caller's own
    /// stream, whose timeouts we cannot set, it does not wait.
    fn wait_for_server_close(&mut self) {
        if self.drained || self.conn.role() != Role::Client {
            return;
        }
        self.drained = true;
        let Some(control) = self.control else { return };
        let deadline = self
            .close_deadline
            .or_else(|| deadline_in(self.close_timeout));
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

    /// Writes queued frames to the stream.
    pub fn flush(&mut self) -> Result<(), Error> {
        while self.conn.has_pending_output() {
            match self.stream.write(self.conn.pending_output()) {
                Ok(0) => {
                    return Err(Error::Io(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the connection accepts no more data",
                    )))
                }
                Ok(n) => self.conn.consume_output(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.transport_error(e, Phase::Write)),
            }
        }
        match self.stream.flush() {
            Ok(()) => Ok(()),
            Err(e) => Err(self.transport_error(e, Phase::Write)),
        }
    }

    /// Sends a message or control frame (a [`Message::Close`] starts the closing handshake).
    pub fn send(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        self.conn.send(message.into())?;
        self.flush()
    }

    /// Queues a message without writing it yet, for bursts of small messages: one write for
    /// many instead of one each. The queue is written by [`WebSocket::flush`], by any `send`,
    /// before a read waits for data, and by itself once it holds 128 KiB.
    pub fn feed(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        self.conn.send(message.into())?;
        if self.conn.queued_output() >= FEED_BUFFER {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends a text message.
    pub fn send_text(&mut self, text: &str) -> Result<(), Error> {
        self.conn.send_text(text)?;
        self.flush()
    }

    /// Sends a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), Error> {
        self.conn.send_binary(data)?;
        self.flush()
    }

    /// Sends a ping with up to 125 bytes of payload.
    pub fn ping(&mut self, data: &[u8]) -> Result<(), Error> {
        self.conn.send_ping(data)?;
        self.flush()
    }

    /// Sends an unsolicited pong with up to 125 bytes of payload.
    pub fn pong(&mut self, data: &[u8]) -> Result<(), Error> {
        self.conn.send_pong(data)?;
        self.flush()
    }

    /// Sends a text or binary message as several frames of at most `fragment_size` bytes.
    pub fn send_fragmented(
        &mut self,
        message: impl Into<Message>,
        fragment_size: usize,
    ) -> Result<(), Error> {
        self.conn.send_fragmented(&message.into(), fragment_size)?;
        self.flush()
    }

    /// Starts the closing handshake. Keep calling [`WebSocket::read`] until it returns the
    /// server's [`Message::Close`] (messages already in flight come first); see
    /// [`WebSocket::close_and_wait`] to do both.
    pub fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), Error> {
        self.conn.close(frame)?;
        self.flush()
    }

    /// Closes and waits for the peer's close frame, discarding messages still in flight, for
    /// at most the close timeout in all (on streams this crate opened). Returns the peer's
    /// close frame.
    pub fn close_and_wait(
        &mut self,
        frame: Option<CloseFrame>,
    ) -> Result<Option<CloseFrame>, Error> {
        match self.conn.state() {
            State::Open => self.close(frame)?,
            State::CloseSent => {}
            State::Closed => return Ok(None),
            State::Failed => return Err(Error::ConnectionClosed),
        }
        let control = self.control;
        if let Some(c) = control {
            let deadline = deadline_in(self.close_timeout);
            (c.set_close_deadline)(&mut self.stream, deadline)?;
            self.close_deadline = deadline;
            // The close timeout now bounds reads, not keepalive (which stops after a close).
            self.keepalive_deadline = false;
        }
        let result = loop {
            match self.read() {
                Ok(Message::Close(frame)) => break Ok(frame),
                Ok(_) => {}
                Err(Error::Timeout(Phase::Read)) => break Err(Error::Timeout(Phase::Close)),
                Err(e) => break Err(e),
            }
        };
        self.close_deadline = None;
        if let Some(c) = control {
            let _ = (c.set_deadline)(&mut self.stream, None);
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

    /// Changes the read timeout for later reads (streams opened by this crate; set your own
    /// stream's timeout yourself).
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<(), Error> {
        if let Some(c) = self.control {
            (c.set_read_timeout)(&mut self.stream, timeout)?;
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
