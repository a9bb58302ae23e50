//! Opening a client connection: the builder with every option, and the one-call [`connect`].

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::blocking::{StreamControl, WebSocket};
use crate::error::{Error, Phase};
#[cfg(feature = "deflate")]
use crate::proto::deflate::{Codec, DeflateConfig};
use crate::proto::handshake::{
    ClientHandshake, ClientRequest, HandshakeError, DEFAULT_MAX_HANDSHAKE_SIZE,
};
use crate::proto::{Config, Connection, Role};
use crate::stream::{connect_tcp, is_timeout, map_io_error, MaybeTlsStream};
#[cfg(feature = "tls")]
use crate::tls::TlsOptions;
use crate::url::WsUrl;

/// The shared TLS client configuration (nothing without the `tls` feature).
#[cfg(feature = "tls")]
pub(crate) type TlsClientConfig = std::sync::Arc<rustls::ClientConfig>;
/// The shared TLS client configuration (nothing without the `tls` feature).
#[cfg(not(feature = "tls"))]
pub(crate) type TlsClientConfig = std::convert::Infallible;

/// Connects to a `ws://` or `wss://` URL with default options.
///
/// ```no_run
/// let mut ws = wsc::connect("wss://example.com/feed")?;
/// ws.send_text(r#"{"subscribe":"ticker"}"#)?;
/// let reply = ws.read()?;
/// # Ok::<(), wsc::Error>(())
/// ```
pub fn connect(url: &str) -> Result<WebSocket<MaybeTlsStream>, Error> {
    ClientBuilder::new(url).connect()
}

/// Runs the client handshake over a stream you opened yourself (a Unix socket, a tunnel, an
/// in-memory pipe). The URL gives the Host header and the path.
pub fn client<S: Read + Write>(url: &str, stream: S) -> Result<WebSocket<S>, Error> {
    ClientBuilder::new(url).connect_on(stream)
}

/// Every option of a client connection.
///
/// ```no_run
/// use std::time::Duration;
/// let mut ws = wsc::ClientBuilder::new("wss://example.com/socket")
///     .header("Authorization", "Bearer token")
///     .protocol("v2.json")
///     .origin("https://example.com")
///     .max_message_size(Some(1 << 20))
///     .connect_timeout(Duration::from_secs(5))
///     .read_timeout(Some(Duration::from_secs(30)))
///     .connect()?;
/// # Ok::<(), wsc::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ClientBuilder {
    pub(crate) url: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) protocols: Vec<String>,
    pub(crate) origin: Option<String>,
    pub(crate) config: Config,
    pub(crate) max_handshake_size: usize,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) handshake_timeout: Option<Duration>,
    pub(crate) open_timeout: Option<Duration>,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) close_timeout: Option<Duration>,
    #[cfg(feature = "tls")]
    pub(crate) tls: TlsOptions,
    #[cfg(feature = "deflate")]
    pub(crate) deflate: Option<DeflateConfig>,
}

impl ClientBuilder {
    /// Options for connecting to `url`, all at their defaults.
    pub fn new(url: impl Into<String>) -> Self {
        ClientBuilder {
            url: url.into(),
            headers: Vec::new(),
            protocols: Vec::new(),
            origin: None,
            config: Config::default(),
            max_handshake_size: DEFAULT_MAX_HANDSHAKE_SIZE,
            connect_timeout: Some(Duration::from_secs(30)),
            handshake_timeout: Some(Duration::from_secs(30)),
            open_timeout: None,
            read_timeout: None,
            write_timeout: None,
            close_timeout: Some(Duration::from_secs(5)),
            #[cfg(feature = "tls")]
            tls: TlsOptions::default(),
            #[cfg(feature = "deflate")]
            deflate: Some(DeflateConfig::default()),
        }
    }

    /// Adds a request header (sent as given; may repeat).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Offers a subprotocol; call again to offer more, in order of preference.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocols.push(protocol.into());
        self
    }

    /// Sets the `Origin` header.
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// Limits the size of a received message (default 64 MiB; `None`: no limit).
    pub fn max_message_size(mut self, limit: Option<usize>) -> Self {
        self.config.max_message_size = limit;
        self
    }

    /// Limits the size of a received frame (default 16 MiB; `None`: no limit).
    pub fn max_frame_size(mut self, limit: Option<usize>) -> Self {
        self.config.max_frame_size = limit;
        self
    }

    /// Limits the size of the server's handshake response head (default 64 KiB).
    pub fn max_handshake_size(mut self, limit: usize) -> Self {
        self.max_handshake_size = limit;
        self
    }

    /// Replaces the protocol limits at once.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Bounds resolving and the TCP connect (default 30 s).
    pub fn connect_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.connect_timeout = timeout.into();
        self
    }

    /// Bounds the TLS handshake and the WebSocket handshake, each (default 30 s).
    pub fn handshake_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.handshake_timeout = timeout.into();
        self
    }

    /// Bounds the whole opening (TCP connect, TLS and WebSocket handshakes together), on top
    /// of the per-phase timeouts; the error names the phase that was running (default: none).
    pub fn open_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.open_timeout = timeout.into();
        self
    }

    /// Fails a read that waits longer than this for data (default: wait forever). Blocking
    /// client only: in async code, wrap `recv()` in `tokio::time::timeout`.
    pub fn read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// Fails a write that waits longer than this for the peer (default: wait forever). Blocking
    /// client only: in async code, wrap `send()` in `tokio::time::timeout`.
    pub fn write_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// How long to wait for the server to close TCP after the close handshake (default 5 s).
    pub fn close_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// TLS options for `wss://` URLs.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = tls;
        self
    }

    /// permessage-deflate: offered by default; `None` turns compression off, a config tunes
    /// the offer (window bits, context takeover, threshold, level).
    #[cfg(feature = "deflate")]
    pub fn deflate(mut self, config: Option<DeflateConfig>) -> Self {
        self.deflate = config;
        self
    }

    /// Turns the default permessage-deflate offer on or off.
    #[cfg(feature = "deflate")]
    pub fn compression(self, on: bool) -> Self {
        self.deflate(on.then(DeflateConfig::default))
    }

    pub(crate) fn request(&self, url: &WsUrl) -> ClientRequest {
        let mut headers = self.headers.clone();
        if let Some((user, pass)) = &url.credentials {
            let has_auth = headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("authorization"));
            if !has_auth {
                let token = BASE64.encode(format!("{user}:{pass}"));
                headers.push(("Authorization".into(), format!("Basic {token}")));
            }
        }
        ClientRequest {
            host: url.host_header(),
            path: url.path.clone(),
            protocols: self.protocols.clone(),
            origin: self.origin.clone(),
            extensions: None,
            headers,
            #[cfg(feature = "deflate")]
            deflate: self.deflate.clone(),
        }
    }

    /// The parsed URL and, for `wss://`, the TLS configuration: a bad URL or TLS setup is
    /// reported before any network activity. Shared by the blocking and async openings.
    pub(crate) fn prepare(&self) -> Result<(WsUrl, Option<TlsClientConfig>), Error> {
        let url = WsUrl::parse(&self.url)?;
        #[cfg(feature = "tls")]
        let tls_config = if url.secure {
            Some(self.tls.build()?)
        } else {
            None
        };
        #[cfg(not(feature = "tls"))]
        let tls_config = None;
        Ok((url, tls_config))
    }

    /// Connects: TCP, TLS for `wss://`, then the WebSocket handshake.
    pub fn connect(self) -> Result<WebSocket<MaybeTlsStream>, Error> {
        #[cfg_attr(not(feature = "tls"), allow(unused_variables))]
        let (url, tls_config) = self.prepare()?;
        let opened = Instant::now();
        let tcp = connect_tcp(
            &url.host,
            url.port,
            self.phase_timeout(self.connect_timeout, opened),
        )?;
        tcp.set_write_timeout(self.write_timeout)?;
        let stream = if url.secure {
            #[cfg(feature = "tls")]
            {
                let Some(config) = tls_config else {
                    unreachable!("built above for wss:// URLs")
                };
                let timeout = self.phase_timeout(self.handshake_timeout, opened);
                crate::stream::tls_handshake(tcp, &url.host, config, timeout)?
            }
            #[cfg(not(feature = "tls"))]
            {
                drop(tcp);
                return Err(Error::TlsConfig(
                    "wss:// URLs need the `tls` feature of wsc".into(),
                ));
            }
        } else {
            MaybeTlsStream::plain(tcp)
        };
        let timeout = self.phase_timeout(self.handshake_timeout, opened);
        self.handshake(url, stream, Some(StreamControl::for_maybe_tls()), timeout)
    }

    /// The connection the accepted handshake opens, with compression if it was agreed.
    pub(crate) fn open_connection(&self, response: &crate::Response) -> Connection {
        #[cfg(feature = "deflate")]
        {
            let codec = response
                .deflate
                .zip(self.deflate.as_ref())
                .map(|(params, config)| Codec::new(params, config));
            Connection::with_deflate(Role::Client, self.config.clone(), codec)
        }
        #[cfg(not(feature = "deflate"))]
        {
            let _ = response;
            Connection::new(Role::Client, self.config.clone())
        }
    }

    /// A phase's timeout, shortened to what is left of the open timeout.
    pub(crate) fn phase_timeout(
        &self,
        phase: Option<Duration>,
        opened: Instant,
    ) -> Option<Duration> {
        let left = self
            .open_timeout
            .map(|t| t.saturating_sub(opened.elapsed()));
        match (phase, left) {
            (Some(p), Some(l)) => Some(p.min(l)),
            (p, l) => p.or(l),
        }
    }

    /// Runs the WebSocket handshake over a stream you opened yourself. Timeouts other than
    /// your stream's own do not apply.
    pub fn connect_on<S: Read + Write>(self, stream: S) -> Result<WebSocket<S>, Error> {
        let url = WsUrl::parse(&self.url)?;
        let timeout = self.handshake_timeout;
        self.handshake(url, stream, None, timeout)
    }

    fn handshake<S: Read + Write>(
        self,
        url: WsUrl,
        mut stream: S,
        control: Option<StreamControl<S>>,
        timeout: Option<Duration>,
    ) -> Result<WebSocket<S>, Error> {
        let host = url.host.clone();
        if let Some(c) = control {
            (c.set_deadline)(&mut stream, timeout.map(|t| Instant::now() + t))?;
        }
        let (mut handshake, request) =
            ClientHandshake::new(&self.request(&url), self.max_handshake_size)?;
        let io_err = |e: io::Error| map_io_error(e, Phase::WebSocketHandshake, &host);
        stream.write_all(&request).map_err(io_err)?;
        stream.flush().map_err(io_err)?;
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 4096];
        let (response, used) = loop {
            if let Some(done) = handshake.parse_response(&buf)? {
                break done;
            }
            match stream.read(&mut chunk) {
                Ok(0) => {
                    let refusal = handshake.take_refusal(&buf);
                    return Err(Error::Handshake(
                        refusal.unwrap_or(HandshakeError::ConnectionClosed),
                    ));
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => {
                    return Err(handshake
                        .take_refusal(&buf)
                        .map(Error::Handshake)
                        .unwrap_or(Error::Timeout(Phase::WebSocketHandshake)));
                }
                Err(e) => return Err(io_err(e)),
            }
        };
        if let Some(c) = control {
            (c.set_deadline)(&mut stream, None)?;
            (c.set_read_timeout)(&mut stream, self.read_timeout)?;
        }
        let conn = self.open_connection(&response);
        let mut ws = WebSocket::from_connection(stream, conn, &buf[used..]);
        ws.set_client_details(
            String::from_utf8_lossy(&request).into_owned(),
            response,
            url.authority(),
            control,
            self.close_timeout,
        );
        Ok(ws)
    }
}
