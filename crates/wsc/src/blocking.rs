//! The blocking driver: a [`WebSocket`] over any `Read + Write` stream.
//!
//! It owns the stream and moves bytes between it and the sans-I/O [`Connection`]: read bytes
//! in, messages out, queued frames (including automatic pongs and close replies) written after
//! every step. It holds no protocol logic.

use std::io::{self, Read, Write};
use std::time::Duration;

use crate::error::{Error, Phase};
use crate::proto::handshake::Response;
use crate::proto::{CloseFrame, Config, Connection, Message, Role, State};
use crate::stream::map_io_error;

/// Read this much at a time.
const READ_CHUNK: usize = 16 << 10;

/// Most bytes discarded while waiting for the server to close TCP after the close handshake.
const CLOSE_DRAIN_LIMIT: usize = 1 << 20;

/// Sets a stream's read timeout; only known for the streams this crate opens itself.
pub(crate) type SetReadTimeout<S> = fn(&S, Option<Duration>) -> io::Result<()>;

/// A WebSocket connection over a blocking stream.
///
/// Obtained from [`crate::connect`], [`crate::ClientBuilder`], [`crate::client`] (over your own
/// stream) or [`crate::server::accept`].
pub struct WebSocket<S> {
    stream: S,
    conn: Connection,
    response: Option<Box<Response>>,
    request_head: Option<Box<str>>,
    peer: String,
    set_read_timeout: Option<SetReadTimeout<S>>,
    read_timeout: Option<Duration>,
    close_timeout: Option<Duration>,
    drained: bool,
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
            set_read_timeout: None,
            read_timeout: None,
            close_timeout: Some(Duration::from_secs(5)),
            drained: false,
        }
    }

    pub(crate) fn set_client_details(
        &mut self,
        request_head: String,
        response: Response,
        peer: String,
        set_read_timeout: Option<SetReadTimeout<S>>,
        read_timeout: Option<Duration>,
        close_timeout: Option<Duration>,
    ) {
        self.request_head = Some(request_head.into_boxed_str());
        self.response = Some(Box::new(response));
        self.peer = peer;
        self.set_read_timeout = set_read_timeout;
        self.read_timeout = read_timeout;
        self.close_timeout = close_timeout;
    }

    /// Receives the next message or control frame.
    ///
    /// Pings are answered automatically (and still returned). A close frame from the peer is
    /// answered and returned as [`Message::Close`]; after that (or after an error) every call
    /// returns [`Error::ConnectionClosed`]. Messages that arrived before a protocol violation
    /// are returned before the error.
    pub fn read(&mut self) -> Result<Message, Error> {
        loop {
            match self.conn.next_message() {
                Ok(Some(message)) => {
                    if let Err(e) = self.flush() {
                        // Deliver what arrived; the write error shows up on the next call.
                        if !matches!(message, Message::Ping(_)) {
                            return Err(e);
                        }
                    }
                    if matches!(message, Message::Close(_)) {
                        self.wait_for_server_close();
                    }
                    return Ok(message);
                }
                Ok(None) if self.conn.is_terminated() => {
                    self.wait_for_server_close();
                    return Err(Error::ConnectionClosed);
                }
                Ok(None) => {}
                Err(e) => {
                    let _ = self.flush();
                    self.wait_for_server_close();
                    return Err(e);
                }
            }
            self.fill()?;
        }
    }

    /// Reads more bytes into the connection.
    fn fill(&mut self) -> Result<(), Error> {
        let stream = &mut self.stream;
        loop {
            match self.conn.receive_with(READ_CHUNK, |buf| stream.read(buf)) {
                Ok(0) => return self.conn.receive_eof(),
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(map_io_error(e, Phase::Read, &self.peer)),
            }
        }
    }

    /// After the close handshake (or a failure), a client lets the server close TCP first
    /// (RFC 6455 section 7.1.1), waiting at most the close timeout.
    fn wait_for_server_close(&mut self) {
        if self.drained || self.conn.role() != Role::Client {
            return;
        }
        self.drained = true;
        if let Some(set) = self.set_read_timeout {
            if set(&self.stream, self.close_timeout).is_err() {
                return;
            }
        }
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
                Err(e) => return Err(map_io_error(e, Phase::Write, &self.peer)),
            }
        }
        self.stream
            .flush()
            .map_err(|e| map_io_error(e, Phase::Write, &self.peer))
    }

    /// Sends a message or control frame (a [`Message::Close`] starts the closing handshake).
    pub fn send(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        self.conn.send(message.into())?;
        self.flush()
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

    /// Closes and waits for the peer's close frame, discarding messages still in flight.
    /// Returns the peer's close frame.
    pub fn close_and_wait(
        &mut self,
        frame: Option<CloseFrame>,
    ) -> Result<Option<CloseFrame>, Error> {
        if self.conn.can_send() {
            self.close(frame)?;
        }
        if let (Some(set), Some(t)) = (self.set_read_timeout, self.close_timeout) {
            set(&self.stream, Some(t))?;
        }
        loop {
            match self.read() {
                Ok(Message::Close(frame)) => return Ok(frame),
                Ok(_) => {}
                Err(Error::Timeout(Phase::Read)) => return Err(Error::Timeout(Phase::Close)),
                Err(e) => return Err(e),
            }
        }
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

    /// The stream, giving up the connection; bytes not yet parsed are returned with it.
    pub fn into_inner(self) -> S {
        self.stream
    }

    /// The sans-I/O connection inside.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Changes the read timeout for later reads (streams opened by this crate only).
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<(), Error> {
        self.read_timeout = timeout;
        if let Some(set) = self.set_read_timeout {
            set(&self.stream, timeout)?;
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
