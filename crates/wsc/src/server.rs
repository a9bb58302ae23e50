//! The server role over a blocking stream: used by tests, examples and `wsc serve`.
//!
//! [`Acceptor::accept_with`] (and `accept_async_with` on tokio) lets the server look at the
//! upgrade request before answering it: refuse it with an HTTP response ([`Refusal`]), or
//! accept it with extra headers or a subprotocol of its choosing ([`Accept`]). A decision
//! that must wait on something (a token lookup on tokio) reads the request first with
//! [`Acceptor::read_request`] (`read_request_async`) and answers the [`Upgrade`] after.
//!
//! The stream's timeouts are the caller's: the server role never sets any. A client that
//! sends half a request, or reads nothing of a long refusal, holds the accept call for as
//! long as the stream lets it; set read and write timeouts on a `TcpStream` before
//! accepting (`set_read_timeout`, `set_write_timeout`), or wrap the async calls in
//! `tokio::time::timeout`.

mod answer;
mod upgrade;

use std::io::{self, Read, Write};

use crate::blocking::{read_head, WebSocket};
use crate::error::Error;
use crate::proto::buffer::ReadBuffer;
#[cfg(feature = "deflate")]
use crate::proto::deflate::{parse_extensions, server_accept, Codec, DeflateConfig};
use crate::proto::handshake::{
    accept_response_with, parse_request, refusal_response, reject_response, HandshakeError,
    Request, DEFAULT_MAX_HANDSHAKE_SIZE,
};
use crate::proto::{Config, Connection, Role};

pub use answer::{Accept, Refusal};
pub use upgrade::Upgrade;

/// What to send back for an upgrade request: a 101 and the connection it opens, or an HTTP
/// refusal and the error the accept call returns. Shared by every driver.
#[allow(clippy::large_enum_variant)] // one per handshake, moved straight into the connection
pub(crate) enum Reply {
    /// The 101 response and the connection.
    Open(Vec<u8>, Connection),
    /// The refusal to send, then the error to return.
    Refuse(Vec<u8>, HandshakeError),
}

/// Options for accepting connections.
#[derive(Debug, Clone)]
#[must_use]
pub struct Acceptor {
    config: Config,
    #[cfg(feature = "deflate")]
    deflate: Option<DeflateConfig>,
    protocols: Vec<String>,
    max_handshake_size: usize,
}

impl Default for Acceptor {
    fn default() -> Self {
        Acceptor {
            config: Config::default(),
            #[cfg(feature = "deflate")]
            deflate: Some(DeflateConfig::default().client_max_window_bits(None)),
            protocols: Vec::new(),
            max_handshake_size: DEFAULT_MAX_HANDSHAKE_SIZE,
        }
    }
}

/// Accepts a WebSocket upgrade on `stream` with default options.
///
/// ```no_run
/// let listener = std::net::TcpListener::bind("127.0.0.1:9001")?;
/// let (tcp, _) = listener.accept()?;
/// let mut ws = wsc::server::accept(tcp)?;
/// while let Ok(msg) = ws.read() {
///     if msg.is_data() {
///         ws.send(msg)?;
///     }
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn accept<S: Read + Write>(stream: S) -> Result<WebSocket<S>, Error> {
    Acceptor::default().accept(stream).map(|(ws, _)| ws)
}

impl Acceptor {
    /// Default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Limits on what clients may send.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// A subprotocol this server speaks; the first one the client offers that is on this list
    /// is chosen.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocols.push(protocol.into());
        self
    }

    /// permessage-deflate: accepted by default when the client offers it; `None` declines.
    #[cfg(feature = "deflate")]
    pub fn deflate(mut self, config: Option<DeflateConfig>) -> Self {
        self.deflate = config;
        self
    }

    /// Limits the size of the request head (default 64 KiB).
    pub fn max_handshake_size(mut self, limit: usize) -> Self {
        self.max_handshake_size = limit;
        self
    }

    /// Reads the upgrade request and answers it. Invalid requests get an HTTP error response
    /// and an error. Returns the connection and the request (path, headers).
    ///
    /// A refused stream is dropped here. Over TCP, with input from the client still unread
    /// (frames it sent before the 101), the kernel then resets the connection, and the
    /// client may lose the refusal. To linger, pass `&tcp` (a reference is a stream too),
    /// and after an error shut down its write side and read until the client closes. The
    /// async `accept_async` lingers by itself.
    pub fn accept<S: Read + Write>(&self, stream: S) -> Result<(WebSocket<S>, Request), Error> {
        self.accept_with(stream, |_| Ok(Accept::new()))
    }

    /// Reads the upgrade request and lets `decide` answer it: [`Accept`] (extra response
    /// headers, the subprotocol) or [`Refusal`] (an HTTP response such as 401, 403 or 404,
    /// with headers and a body; the call then returns
    /// [`HandshakeError::CallbackRefused`]). `decide` only sees valid upgrade requests:
    /// invalid ones are answered as by [`Acceptor::accept`].
    ///
    /// ```no_run
    /// use wsc::server::{Accept, Acceptor, Refusal};
    ///
    /// let listener = std::net::TcpListener::bind("127.0.0.1:9001")?;
    /// let (tcp, _) = listener.accept()?;
    /// let (mut ws, request) = Acceptor::new().accept_with(tcp, |request| {
    ///     if request.path != "/feed" {
    ///         return Err(Refusal::new(404).body("no such feed\n"));
    ///     }
    ///     match request.headers.get("authorization") {
    ///         Some(token) if token == "Bearer s3cret" => {
    ///             Ok(Accept::new().header("Set-Cookie", "session=1; HttpOnly"))
    ///         }
    ///         _ => Err(Refusal::new(401).header("WWW-Authenticate", "Bearer")),
    ///     }
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn accept_with<S, F>(&self, stream: S, decide: F) -> Result<(WebSocket<S>, Request), Error>
    where
        S: Read + Write,
        F: FnOnce(&Request) -> Result<Accept, Refusal>,
    {
        let upgrade = self.read_request(stream)?;
        let decision = decide(upgrade.request());
        upgrade.answer(decision)
    }

    /// Reads the upgrade request and returns it unanswered, for a decision that cannot be
    /// made in a callback; [`Upgrade::answer`] answers it. Invalid requests are answered
    /// (with an HTTP error response) and returned as errors, as by [`Acceptor::accept`].
    pub fn read_request<S: Read + Write>(&self, mut stream: S) -> Result<Upgrade<'_, S>, Error> {
        let mut received = ReadBuffer::default();
        let mut seen = 0;
        let (request, used) = loop {
            match parse_when_a_line_ends(&received, &mut seen, self.max_handshake_size) {
                Ok(Some(done)) => break done,
                Ok(None) => {}
                Err(e) => {
                    let _ = stream.write_all(&refusal(&e));
                    let _ = stream.flush();
                    return Err(Error::Handshake(e));
                }
            }
            match read_head(&mut stream, &mut received) {
                Ok(0) => return Err(Error::Handshake(HandshakeError::ConnectionClosed)),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Io(e)),
            }
        };
        received.advance(used);
        Ok(Upgrade {
            acceptor: self,
            stream,
            request,
            received,
        })
    }

    /// The answer to a valid request, as the accept callback decided: the subprotocol and
    /// compression chosen here serve every driver.
    pub(crate) fn reply(&self, request: &Request, decision: Result<Accept, Refusal>) -> Reply {
        let refused = match decision {
            Ok(accept) => match accept.check(request) {
                Ok((protocol, headers)) => return self.open(request, protocol, headers),
                Err(why) => Err(why),
            },
            Err(refusal) => refusal.check(),
        };
        match refused {
            Ok((status, headers, body)) => Reply::Refuse(
                refusal_response(status, &headers, &body),
                HandshakeError::CallbackRefused { status },
            ),
            Err(why) => Reply::Refuse(
                reject_response(http::StatusCode::INTERNAL_SERVER_ERROR, ""),
                HandshakeError::InvalidAnswer(why),
            ),
        }
    }

    /// The 101 response and the connection it opens, with the callback's subprotocol (or
    /// the first offered one on this acceptor's list) and headers.
    fn open(
        &self,
        request: &Request,
        protocol: Option<String>,
        #[cfg_attr(not(feature = "deflate"), allow(unused_mut))] mut headers: http::HeaderMap,
    ) -> Reply {
        let chosen = protocol.or_else(|| {
            request
                .protocols
                .iter()
                .find(|p| self.protocols.contains(p))
                .cloned()
        });
        #[cfg(feature = "deflate")]
        let conn = {
            let accepted = self.deflate.as_ref().and_then(|config| {
                let offers = parse_extensions(&request.extensions);
                let (params, answer) = server_accept(config, &offers)?;
                // Our own answer is a valid header; were it not, compression stays off on
                // both sides rather than on one.
                let answer = http::HeaderValue::from_str(&answer).ok()?;
                headers.append(http::header::SEC_WEBSOCKET_EXTENSIONS, answer);
                Some(Codec::new(params, config))
            });
            Connection::with_deflate(Role::Server, self.config.clone(), accepted)
        };
        #[cfg(not(feature = "deflate"))]
        let conn = Connection::new(Role::Server, self.config.clone());
        Reply::Open(
            accept_response_with(request, chosen.as_deref(), &headers),
            conn,
        )
    }

    /// The largest request head accepted.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn max_handshake(&self) -> usize {
        self.max_handshake_size
    }
}

/// [`parse_request`] once a line of the head has ended since the last look (`seen`: how
/// much of `buf` it saw), or the head is past its size limit: a request that trickles in a
/// byte at a time is then parsed once a line, not once a byte, from its start each time.
pub(crate) fn parse_when_a_line_ends(
    buf: &[u8],
    seen: &mut usize,
    max_size: usize,
) -> Result<Option<(Request, usize)>, HandshakeError> {
    let line_ended = buf.get(*seen..).is_some_and(|new| new.contains(&b'\n'));
    *seen = buf.len();
    if line_ended || buf.len() > max_size {
        parse_request(buf, max_size)
    } else {
        Ok(None)
    }
}

/// The HTTP error response for a request that is not a valid upgrade.
pub(crate) fn refusal(e: &HandshakeError) -> Vec<u8> {
    let status = match e {
        HandshakeError::BadRequest { status, .. } => *status,
        HandshakeError::TooLarge { .. } | HandshakeError::TooManyHeaders { .. } => {
            http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        }
        _ => http::StatusCode::BAD_REQUEST,
    };
    reject_response(status, &format!("{e}\n"))
}
