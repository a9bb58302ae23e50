//! The server role over a blocking stream: used by tests, examples and `wsc serve`.

use std::io::{self, Read, Write};

use crate::blocking::{read_head, WebSocket};
use crate::error::Error;
use crate::proto::buffer::ReadBuffer;
#[cfg(feature = "deflate")]
use crate::proto::deflate::{parse_extensions, server_accept, Codec, DeflateConfig};
use crate::proto::handshake::{
    accept_response, parse_request, reject_response, HandshakeError, Request,
    DEFAULT_MAX_HANDSHAKE_SIZE,
};
use crate::proto::{Config, Connection, Role};

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
    pub fn accept<S: Read + Write>(&self, mut stream: S) -> Result<(WebSocket<S>, Request), Error> {
        let mut received = ReadBuffer::default();
        let (request, used) = loop {
            match parse_request(&received, self.max_handshake_size) {
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
        let (response, mut conn) = self.answer(&request);
        stream.write_all(&response)?;
        stream.flush()?;
        received.advance(used);
        conn.adopt_read_buffer(received);
        let ws = WebSocket::from_connection(stream, conn, &[]);
        Ok((ws, request))
    }

    /// The 101 response to a valid request and the connection it opens: the subprotocol and
    /// compression chosen here serve every driver.
    pub(crate) fn answer(&self, request: &Request) -> (Vec<u8>, Connection) {
        let chosen = request
            .protocols
            .iter()
            .find(|p| self.protocols.contains(p))
            .cloned();
        #[cfg_attr(not(feature = "deflate"), allow(unused_mut))]
        let mut extra = Vec::new();
        #[cfg(feature = "deflate")]
        let conn = {
            let accepted = self.deflate.as_ref().and_then(|config| {
                let offers = parse_extensions(&request.extensions);
                server_accept(config, &offers)
                    .map(|(params, answer)| (Codec::new(params, config), answer))
            });
            let codec = accepted.map(|(codec, answer)| {
                extra.push(("Sec-WebSocket-Extensions".to_string(), answer));
                codec
            });
            Connection::with_deflate(Role::Server, self.config.clone(), codec)
        };
        #[cfg(not(feature = "deflate"))]
        let conn = Connection::new(Role::Server, self.config.clone());
        (accept_response(request, chosen.as_deref(), &extra), conn)
    }

    /// The largest request head accepted.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn max_handshake(&self) -> usize {
        self.max_handshake_size
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
