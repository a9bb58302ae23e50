//! Opening a client connection: the builder with every option, and the one-call [`connect`].

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::blocking::{read_head, ClientTimeouts, StreamControl, WebSocket};
use crate::error::{Error, Phase, RedirectError};
use crate::net::connect::{connect_tcp, Overrides};
use crate::net::{tunnel, Proxy, ProxyConfig};
use crate::proto::buffer::ReadBuffer;
#[cfg(feature = "deflate")]
use crate::proto::deflate::{Codec, DeflateConfig};
use crate::proto::handshake::{
    check_request_parts, ClientHandshake, ClientRequest, HandshakeError, Redirect,
    DEFAULT_MAX_HANDSHAKE_SIZE, REFUSAL_BODY_WAIT,
};
use crate::proto::{Config, Connection, Keepalive, Role};
use crate::stream::{deadline_in, is_peer_gone, is_timeout, map_io_error, MaybeTlsStream};
#[cfg(feature = "tls")]
use crate::tls::TlsOptions;
use crate::url::WsUrl;

mod redacted;

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
pub fn connect(url: impl AsRef<str>) -> Result<WebSocket<MaybeTlsStream>, Error> {
    ClientBuilder::new(url.as_ref()).connect()
}

/// Runs the client handshake over a stream you opened yourself (a Unix socket, a tunnel, an
/// in-memory pipe, a TLS stream you set up). The URL gives the Host header and the path; no
/// TLS is added for `wss://`.
///
/// The blocking client cannot bound reads on a stream it does not know, so the builder's
/// timeouts and keepalive do not apply: set the stream's own timeouts (a read that times out,
/// or finds a non-blocking stream empty (`WouldBlock`), returns [`Error::Timeout`] with
/// [`Phase::Read`] and the connection stays usable: call it again), or give
/// a TCP stream to [`ClientBuilder::connect_on_tcp`], which has them all (and TLS). The async
/// client (`ClientBuilder::connect_async_on`) has no such limit.
///
/// ```no_run
/// use std::os::unix::net::UnixStream;
/// let unix = UnixStream::connect("/run/app/ws.sock")?;
/// let mut ws = wsc::client("ws://localhost/events", unix)?;
/// ws.send_text("hello")?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn client<S: Read + Write>(url: impl AsRef<str>, stream: S) -> Result<WebSocket<S>, Error> {
    ClientBuilder::new(url.as_ref()).connect_on(stream)
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
///     .read_timeout(Duration::from_secs(30)) // or Some(..), None: as every timeout
///     .close_timeout(Duration::from_secs(2))
///     .connect()?;
/// # Ok::<(), wsc::Error>(())
/// ```
///
/// Its `Debug` output leaves credentials out (the URL's password, the values of
/// `Authorization`, `Proxy-Authorization` and `Cookie`).
#[derive(Clone)]
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
    pub(crate) proxy: ProxyConfig,
    pub(crate) resolve: Overrides,
    pub(crate) keepalive: Option<Keepalive>,
    pub(crate) max_redirects: u32,
    pub(crate) insecure_redirects: bool,
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
            proxy: ProxyConfig::default(),
            resolve: Overrides::new(),
            keepalive: None,
            max_redirects: 0,
            insecure_redirects: false,
        }
    }

    /// Adds a request header (sent as given; may repeat). A `Host` header replaces the one
    /// taken from the URL; the headers of the WebSocket handshake itself (`Upgrade`,
    /// `Connection`, `Sec-WebSocket-*`) are refused when connecting: see
    /// [`ClientBuilder::protocol`] and [`ClientBuilder::compression`] for the ones that vary.
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

    /// Limits the size of a received frame (default `None`: only the message limit bounds
    /// it).
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

    /// Bounds the TLS handshake and the WebSocket handshake, each, and the proxy's tunnel
    /// negotiation (CONNECT or SOCKS5) when there is one (default 30 s). `None` leaves them
    /// unbounded: a server or proxy that never answers then holds the call, unless an
    /// [`ClientBuilder::open_timeout`] is set.
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

    /// Fails a read that waits longer than this for data with [`Error::Timeout`]
    /// (`Phase::Read`); the connection stays usable (default: wait forever). Takes a
    /// `Duration` or an `Option`, as the other timeouts do. Any frame counts as data, the
    /// pongs that answer keepalive pings too: to notice a feed that stays up but sends no
    /// messages, keep the time of the last text or binary message (as the CLI's
    /// `--idle-timeout` does).
    pub fn read_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.read_timeout = timeout.into();
        self
    }

    /// Fails a write once the peer has taken none of our output for this long (default:
    /// wait forever) with [`Error::Timeout`] (`Phase::Write`): a peer that stops reading
    /// cannot hold a send forever, while one that reads slowly is waited for. What was not
    /// written stays queued, and the connection usable. Both clients: the async one bounds
    /// `send` and its kin, and `Sink::poll_ready` and `poll_flush`, the same way; its clock
    /// starts when a write first waits and goes on through a send cancelled meanwhile (the
    /// next send fails at once if the peer took nothing since).
    pub fn write_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.write_timeout = timeout.into();
        self
    }

    /// Bounds closing (default 5 s): [`WebSocket::close_and_wait`] (sending our close frame
    /// and reading the server's), and the wait for the server to close TCP after the close
    /// handshake.
    pub fn close_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.close_timeout = timeout.into();
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

    /// The proxy to tunnel through: by default the one the environment names
    /// (`HTTPS_PROXY` for `wss://`, `HTTP_PROXY` for `ws://`, then `ALL_PROXY`, lower-case
    /// first, minus the hosts in `NO_PROXY`; loopback hosts never use the environment's
    /// proxy). Pass a [`Proxy`] to use one explicitly, or [`ProxyConfig::None`].
    ///
    /// ```no_run
    /// let ws = wsc::ClientBuilder::new("wss://stream.example.com/ws")
    ///     .proxy(wsc::Proxy::parse("http://user:secret@proxy.corp:3128")?)
    ///     .connect()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn proxy(mut self, proxy: impl Into<ProxyConfig>) -> Self {
        self.proxy = proxy.into();
        self
    }

    /// Connects directly, ignoring the proxy environment variables.
    pub fn no_proxy(self) -> Self {
        self.proxy(ProxyConfig::None)
    }

    /// Uses these addresses for `host` instead of asking the resolver (as curl's `--resolve`);
    /// the port still comes from the URL. The TLS server name and the `Host` header stay
    /// `host`. Only names are looked up: a URL whose host is an IP address is connected to
    /// as it is. Called again for the same name (in any case, with or without a final dot),
    /// the last call's addresses are used.
    pub fn resolve(
        mut self,
        host: impl Into<String>,
        addrs: impl IntoIterator<Item = std::net::IpAddr>,
    ) -> Self {
        self.resolve
            .push((host.into(), addrs.into_iter().collect()));
        self
    }

    /// Pings the server every `interval` and fails with [`Error::KeepaliveTimeout`] when a
    /// pong does not come back within the timeout, so a dead peer or path is noticed within
    /// interval + timeout (default: off). Data arriving meanwhile moves the deadline to a
    /// timeout after the last of it: a pong sent behind a big message arrives after it, and
    /// the peer is plainly alive; so does our output draining. The blocking client pings
    /// while [`WebSocket::read`] waits (on connections it opened: not over a stream given to
    /// [`client()`] or [`ClientBuilder::connect_on`]), also while that read first writes
    /// what `feed` or `queue` left (a peer that takes none of it and sends nothing is found
    /// dead even with no write timeout); the async one while the stream (or its
    /// reading half) is polled, over any stream. A `send` waits as the write timeout lets
    /// it, keepalive or not.
    pub fn keepalive(mut self, keepalive: impl Into<Option<Keepalive>>) -> Self {
        self.keepalive = keepalive.into();
        self
    }

    /// Follows up to `max` redirects (301, 302, 303, 307, 308) of the opening handshake
    /// (default 0: a redirect is an error that names its target). Authorization, Cookie
    /// and Host headers are dropped when a redirect leaves the origin.
    pub fn max_redirects(mut self, max: u32) -> Self {
        self.max_redirects = max;
        self
    }

    /// Lets redirects go from `wss://` to unencrypted `ws://` (default: refused).
    pub fn allow_insecure_redirects(mut self, allow: bool) -> Self {
        self.insecure_redirects = allow;
        self
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
        check_request_parts(&self.headers, &self.protocols, self.origin.as_deref())?;
        let tls_config = self.tls_config(&url)?;
        Ok((url, tls_config))
    }

    /// The TLS configuration for a `wss://` URL.
    pub(crate) fn tls_config(&self, url: &WsUrl) -> Result<Option<TlsClientConfig>, Error> {
        #[cfg(feature = "tls")]
        if url.secure {
            return Ok(Some(self.tls.build()?));
        }
        let _ = url;
        Ok(None)
    }

    /// The proxy a connection to the builder's URL goes through, if any: the one set, or
    /// the one the environment names now (minus `NO_PROXY`). For logs and `-v` output;
    /// connecting looks it up again (redirects may lead elsewhere).
    pub fn proxy_to_use(&self) -> Result<Option<Proxy>, Error> {
        self.proxy_for(&WsUrl::parse(&self.url)?)
    }

    /// The proxy for `url`, if any.
    pub(crate) fn proxy_for(&self, url: &WsUrl) -> Result<Option<Proxy>, Error> {
        self.proxy
            .resolve(url.secure, &url.host, url.port)
            .map_err(|error| Error::Proxy {
                proxy: "from the environment".into(),
                error,
            })
    }

    /// After a failed opening: the URL to try next if `error` is a redirect this builder may
    /// follow, else `error` itself. Records the hop in `hops`, and drops credentials when the
    /// redirect leaves the origin.
    pub(crate) fn follow_redirect(
        &mut self,
        url: &WsUrl,
        error: Error,
        hops: &mut Vec<Redirect>,
    ) -> Result<WsUrl, Error> {
        let Error::Handshake(HandshakeError::Rejected(response)) = &error else {
            return Err(error);
        };
        let redirect = matches!(response.status.as_u16(), 301 | 302 | 303 | 307 | 308);
        if !redirect || self.max_redirects == 0 {
            return Err(error);
        }
        let location = response
            .headers
            .get(http::header::LOCATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        let bad = |error| {
            Error::Redirect(RedirectError::BadLocation {
                location: location.clone(),
                error,
            })
        };
        if location.trim().is_empty() {
            return Err(bad(None));
        }
        let mut next = url.join(&location).map_err(|e| bad(Some(e)))?;
        if hops.len() >= self.max_redirects as usize {
            return Err(Error::Redirect(RedirectError::TooMany {
                max: self.max_redirects,
                location: next.to_string(),
            }));
        }
        if url.secure && !next.secure && !self.insecure_redirects {
            return Err(Error::Redirect(RedirectError::Downgrade {
                location: next.to_string(),
            }));
        }
        if url.same_origin(&next) {
            if next.credentials.is_none() {
                next.credentials = url.credentials.clone();
            }
        } else {
            // Credentials stay with the first server (Proxy-Authorization too, were it set
            // as a header); a Host given for it does not name the next one either.
            self.headers.retain(|(name, _)| {
                !["authorization", "proxy-authorization", "cookie", "host"]
                    .iter()
                    .any(|h| name.eq_ignore_ascii_case(h))
            });
        }
        hops.push(Redirect {
            from: url.to_string(),
            status: response.status,
            to: next.to_string(),
        });
        Ok(next)
    }

    /// Connects: TCP (through a proxy if one applies), TLS for `wss://`, then the WebSocket
    /// handshake, following redirects if allowed.
    pub fn connect(mut self) -> Result<WebSocket<MaybeTlsStream>, Error> {
        let (mut url, mut tls_config) = self.prepare()?;
        let opened = Instant::now();
        let mut hops = Vec::new();
        loop {
            match self.open(&url, tls_config, opened) {
                Ok(mut ws) => {
                    ws.set_redirects(hops);
                    return Ok(ws);
                }
                Err(e) => {
                    url = self.follow_redirect(&url, e, &mut hops)?;
                    tls_config = self.tls_config(&url)?;
                }
            }
        }
    }

    /// TCP to the server, directly or through the proxy.
    fn open_tcp(&self, url: &WsUrl, opened: Instant) -> Result<std::net::TcpStream, Error> {
        let limit = self.phase_timeout(self.connect_timeout, opened);
        let Some(proxy) = self.proxy_for(url)? else {
            return connect_tcp(&url.host, url.port, &self.resolve, limit);
        };
        let dial = |limit| {
            connect_tcp(proxy.host(), proxy.port(), &self.resolve, limit)
                .map_err(|e| proxy_unreachable(&proxy, e))
        };
        let mut tcp = dial(limit)?;
        let deadline = deadline_in(self.phase_timeout(self.handshake_timeout, opened));
        // Another connection for the next address of the server (socks5://): a connect
        // timeout of its own, within what is left of the tunnel's time.
        let redial = |left: Option<Duration>| {
            let connect = self.phase_timeout(self.connect_timeout, opened);
            dial(match (connect, left) {
                (Some(c), Some(l)) => Some(c.min(l)),
                (c, l) => c.or(l),
            })
        };
        tunnel::open_blocking(
            &mut tcp,
            &proxy,
            (&url.host, url.port),
            &self.resolve,
            deadline,
            redial,
        )?;
        Ok(tcp)
    }

    /// One opening of `url`, without redirects.
    fn open(
        &self,
        url: &WsUrl,
        #[cfg_attr(not(feature = "tls"), allow(unused_variables))] tls_config: Option<
            TlsClientConfig,
        >,
        opened: Instant,
    ) -> Result<WebSocket<MaybeTlsStream>, Error> {
        let tcp = self.open_tcp(url, opened)?;
        self.open_over(url, tls_config, tcp, opened)
    }

    /// TLS for `wss://`, then the WebSocket handshake, over `tcp`.
    fn open_over(
        &self,
        url: &WsUrl,
        #[cfg_attr(not(feature = "tls"), allow(unused_variables))] tls_config: Option<
            TlsClientConfig,
        >,
        tcp: std::net::TcpStream,
        opened: Instant,
    ) -> Result<WebSocket<MaybeTlsStream>, Error> {
        if self.write_timeout.is_some() {
            tcp.set_write_timeout(self.write_timeout)?;
        }
        let stream = if url.secure {
            #[cfg(feature = "tls")]
            {
                let Some(config) = tls_config else {
                    unreachable!("built above for wss:// URLs")
                };
                let timeout = self.phase_timeout(self.handshake_timeout, opened);
                crate::stream::tls_handshake(tcp, &url.host, config, timeout, self.write_timeout)?
            }
            #[cfg(not(feature = "tls"))]
            {
                drop(tcp);
                return Err(Error::TlsConfig(
                    "wss:// URLs need the `tls` feature of wsc".into(),
                ));
            }
        } else {
            MaybeTlsStream::plain(tcp, self.write_timeout)
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

    /// Opens the connection over a TCP stream you connected yourself (bound to a local
    /// address or device, with socket options of your choosing, handed over by a proxy you
    /// drive...): TLS for `wss://` with the builder's TLS options, then the handshake.
    /// Unlike [`ClientBuilder::connect_on`], everything after connecting applies as in
    /// [`ClientBuilder::connect`]: the handshake, read, write and close timeouts, keepalive,
    /// the open timeout (from this call on). What connecting does is yours: the proxy,
    /// [`ClientBuilder::resolve`] and the connect timeout are not used, and redirects are
    /// not followed (a redirect is an error naming its target).
    ///
    /// ```no_run
    /// use std::net::TcpStream;
    /// use std::time::Duration;
    ///
    /// let tcp = TcpStream::connect("stream.example.com:443")?;
    /// tcp.set_nodelay(true)?;
    /// let mut ws = wsc::ClientBuilder::new("wss://stream.example.com/ws")
    ///     .keepalive(wsc::Keepalive::new(Duration::from_secs(20), Duration::from_secs(10)))
    ///     .connect_on_tcp(tcp)?;
    /// ws.send_text("hello")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect_on_tcp(
        self,
        tcp: std::net::TcpStream,
    ) -> Result<WebSocket<MaybeTlsStream>, Error> {
        let (url, tls_config) = self.prepare()?;
        // The builder's timeouts from here, not those the socket came with (the driver
        // arms only what differs from what it set itself).
        tcp.set_read_timeout(None)?;
        tcp.set_write_timeout(None)?;
        self.open_over(&url, tls_config, tcp, Instant::now())
    }

    /// Runs the WebSocket handshake over a stream you opened yourself (see [`client()`]).
    /// Only your stream's own timeouts apply: the builder's timeouts and keepalive do not (see
    /// [`ClientBuilder::connect_on_tcp`] for a TCP stream).
    pub fn connect_on<S: Read + Write>(self, stream: S) -> Result<WebSocket<S>, Error> {
        let url = WsUrl::parse(&self.url)?;
        let timeout = self.handshake_timeout;
        self.handshake(&url, stream, None, timeout)
    }

    fn handshake<S: Read + Write>(
        &self,
        url: &WsUrl,
        mut stream: S,
        control: Option<StreamControl<S>>,
        timeout: Option<Duration>,
    ) -> Result<WebSocket<S>, Error> {
        let host = url.host.clone();
        let mut deadline = deadline_in(timeout);
        if let Some(c) = control {
            (c.set_deadline)(&mut stream, deadline)?;
        }
        let (mut handshake, request) =
            ClientHandshake::new(&self.request(url), self.max_handshake_size)?;
        let io_err = |e: io::Error| map_io_error(e, Phase::WebSocketHandshake, &host);
        // The timeout bounds writing the request too: a big one (cookies, tokens) to a
        // server that reads nothing would otherwise wait for the write timeout alone.
        if let Some(c) = control {
            (c.set_write_deadline)(&mut stream, deadline);
        }
        stream.write_all(&request).map_err(io_err)?;
        stream.flush().map_err(io_err)?;
        if let Some(c) = control {
            (c.set_write_deadline)(&mut stream, None);
        }
        let mut received = ReadBuffer::default();
        let (response, used) = loop {
            if let Some(done) = handshake.parse_response(&received)? {
                break done;
            }
            if let (Some(c), true) = (control, handshake.awaits_refusal_body()) {
                let body_by = Instant::now() + REFUSAL_BODY_WAIT;
                if !deadline.is_some_and(|at| at <= body_by) {
                    deadline = Some(body_by);
                    (c.set_deadline)(&mut stream, deadline)?;
                }
            }
            let ended = match read_head(&mut stream, &mut received) {
                Ok(n) => n == 0,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => false,
                Err(e) if is_timeout(&e) => {
                    return Err(handshake
                        .take_refusal(&received)
                        .map(Error::Handshake)
                        .unwrap_or(Error::Timeout(Phase::WebSocketHandshake)));
                }
                // Reset: a server that refuses and closes with our request unread does.
                Err(e) if is_peer_gone(&e) => true,
                Err(e) => return Err(io_err(e)),
            };
            if ended {
                // A refusal read before the end is the answer.
                let refusal = handshake.take_refusal(&received);
                return Err(Error::Handshake(
                    refusal.unwrap_or(HandshakeError::ConnectionClosed),
                ));
            }
        };
        received.advance(used);
        if let Some(c) = control {
            (c.set_deadline)(&mut stream, None)?;
            (c.set_read_timeout)(&mut stream, self.read_timeout)?;
        }
        let mut conn = self.open_connection(&response);
        conn.adopt_read_buffer(received);
        let mut ws = WebSocket::from_connection(stream, conn, &[]);
        // The request is ours, built as text: the conversion moves it, it does not copy.
        let request_head = String::from_utf8(request)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        ws.set_client_details(
            request_head,
            response,
            host,
            control,
            ClientTimeouts {
                read: self.read_timeout,
                write: self.write_timeout,
                close: self.close_timeout,
            },
        );
        ws.set_keepalive(self.keepalive);
        Ok(ws)
    }
}

/// Names the proxy in a failure to reach it: its name not resolving, no connection, or none
/// within the connect timeout are all [`Error::Connect`] to "the proxy ..." (else a user
/// with a proxy from the environment reads of a host or a timeout they never asked for).
pub(crate) fn proxy_unreachable(proxy: &Proxy, error: Error) -> Error {
    let source = match error {
        Error::Connect { source, .. } => source,
        Error::Dns { host, source } => {
            io::Error::new(source.kind(), format!("cannot resolve {host:?}: {source}"))
        }
        Error::Timeout(Phase::Connect) => io::Error::new(
            io::ErrorKind::TimedOut,
            "no connection within the connect timeout",
        ),
        other => return other,
    };
    Error::Connect {
        target: format!("the proxy {}", proxy.display_name()),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_to_reach_the_proxy_name_it() {
        let proxy = Proxy::parse("http://user:secret@corp-proxy.example:3128").unwrap();
        let unresolved = Error::Dns {
            host: "corp-proxy.example".into(),
            source: io::Error::new(io::ErrorKind::NotFound, "no such host"),
        };
        for (error, kind) in [
            (unresolved, io::ErrorKind::NotFound),
            (Error::Timeout(Phase::Connect), io::ErrorKind::TimedOut),
        ] {
            let named = proxy_unreachable(&proxy, error);
            let text = named.to_string();
            match named {
                Error::Connect { target, source } => {
                    assert_eq!(target, "the proxy http://corp-proxy.example:3128");
                    assert_eq!(source.kind(), kind);
                }
                other => panic!("{other:?}"),
            }
            assert!(!text.contains("secret"), "{text}");
        }
        // Failures past reaching it are left as they are.
        let refused = proxy_unreachable(&proxy, Error::Timeout(Phase::Proxy));
        assert!(
            matches!(refused, Error::Timeout(Phase::Proxy)),
            "{refused:?}"
        );
    }
}
