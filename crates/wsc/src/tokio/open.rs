//! Opening on tokio: a client's connect (TCP, proxy, TLS, handshake, redirects) and a
//! server's accept, each bounded by its timeouts.

use std::future::Future;
use std::io;
use std::time::{Duration, Instant};

use ::tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use ::tokio::net::TcpStream;
use ::tokio::time::timeout;

use super::{TokioStream, WebSocketStream};
use crate::client::ClientBuilder;
use crate::error::{Error, Phase};
use crate::net::connect::tokio::connect_tcp;
use crate::net::tunnel;
use crate::proto::buffer::ReadBuffer;
use crate::proto::handshake::{
    ClientHandshake, HandshakeError, Request, Response, REFUSAL_BODY_WAIT,
};
use crate::server::{parse_when_a_line_ends, refusal, Accept, Acceptor, Refusal, Reply, Upgrade};
use crate::stream::{is_peer_gone, map_io_error};
use crate::url::WsUrl;

/// Runs `f` within `limit`, naming `phase` if it runs out. Not an `async fn`: that would
/// keep a second copy of `f` in its state.
fn within<T>(
    limit: Option<Duration>,
    phase: Phase,
    f: impl Future<Output = Result<T, Error>>,
) -> impl Future<Output = Result<T, Error>> {
    // tokio clamps a duration too large for the clock to "never".
    let bounded = timeout(limit.unwrap_or(Duration::MAX), f);
    async move { bounded.await.unwrap_or(Err(Error::Timeout(phase))) }
}

impl ClientBuilder {
    /// Connects on tokio: TCP, TLS for `wss://` (tokio-rustls), then the handshake. Returns
    /// the connection and the server's response.
    ///
    /// The opening's state is boxed, so that a task which connects and then idles on the
    /// connection does not carry the opening's (much larger) state for its whole life.
    pub fn connect_async(
        self,
    ) -> impl Future<Output = Result<(WebSocketStream<TokioStream>, Response), Error>> + Send {
        Box::pin(self.open_async())
    }

    async fn open_async(mut self) -> Result<(WebSocketStream<TokioStream>, Response), Error> {
        let (mut url, mut tls_config) = self.prepare()?;
        let opened = Instant::now();
        let mut hops = Vec::new();
        loop {
            match self.open_once_async(&url, tls_config, opened).await {
                Ok((ws, mut response)) => {
                    response.redirects = hops;
                    return Ok((ws, response));
                }
                Err(e) => {
                    url = self.follow_redirect(&url, e, &mut hops)?;
                    tls_config = self.tls_config(&url)?;
                }
            }
        }
    }

    /// TCP to the server, directly or through the proxy.
    async fn open_tcp_async(&self, url: &WsUrl, opened: Instant) -> Result<TcpStream, Error> {
        let limit = self.phase_timeout(self.connect_timeout, opened);
        let Some(proxy) = self.proxy_for(url)? else {
            let connecting = connect_tcp(&url.host, url.port, &self.resolve);
            return within(limit, Phase::Connect, connecting).await;
        };
        let dial = || {
            let limit = self.phase_timeout(self.connect_timeout, opened);
            let connecting = connect_tcp(proxy.host(), proxy.port(), &self.resolve);
            let proxy = &proxy;
            async move {
                within(limit, Phase::Connect, connecting)
                    .await
                    .map_err(|e| crate::client::proxy_unreachable(proxy, e))
            }
        };
        let mut tcp = dial().await?;
        // Further connections, for the next addresses of the server (socks5://), are within
        // the tunnel's time as well as the connect timeout.
        let limit = self.phase_timeout(self.handshake_timeout, opened);
        let target = (url.host.as_str(), url.port);
        let tunnelling = tunnel::open_async(&mut tcp, &proxy, target, &self.resolve, dial);
        within(limit, Phase::Proxy, tunnelling).await?;
        Ok(tcp)
    }

    /// One opening of `url`, without redirects.
    async fn open_once_async(
        &self,
        url: &WsUrl,
        #[cfg_attr(not(feature = "tls"), allow(unused_variables))] tls_config: Option<
            crate::client::TlsClientConfig,
        >,
        opened: Instant,
    ) -> Result<(WebSocketStream<TokioStream>, Response), Error> {
        let tcp = self.open_tcp_async(url, opened).await?;
        self.open_over_async(url, tls_config, tcp, opened).await
    }

    /// TLS for `wss://`, then the WebSocket handshake, over `tcp`.
    async fn open_over_async(
        &self,
        url: &WsUrl,
        #[cfg_attr(not(feature = "tls"), allow(unused_variables))] tls_config: Option<
            crate::client::TlsClientConfig,
        >,
        tcp: TcpStream,
        opened: Instant,
    ) -> Result<(WebSocketStream<TokioStream>, Response), Error> {
        let stream = if url.secure {
            #[cfg(feature = "tls")]
            {
                let Some(config) = tls_config else {
                    unreachable!("built above for wss:// URLs")
                };
                let name = crate::tls::server_name(&url.host)?;
                let connector = tokio_rustls::TlsConnector::from(config);
                let limit = self.phase_timeout(self.handshake_timeout, opened);
                let host = url.host.clone();
                let tls = within(limit, Phase::TlsHandshake, async move {
                    connector
                        .connect(name, tcp)
                        .await
                        .map_err(|e| map_io_error(e, Phase::TlsHandshake, &host))
                })
                .await?;
                TokioStream::Tls(Box::new(tls))
            }
            #[cfg(not(feature = "tls"))]
            {
                drop(tcp);
                return Err(Error::TlsConfig(
                    "wss:// URLs need the `tls` feature of wsc".into(),
                ));
            }
        } else {
            TokioStream::Plain(tcp)
        };
        let limit = self.phase_timeout(self.handshake_timeout, opened);
        let (mut ws, response) = self.handshake_async(url.clone(), stream, limit).await?;
        ws.inner.close_notify = Some(TokioStream::close_notify);
        ws.inner.acked = Some(|stream| crate::net::acked::bytes_acked(stream.tcp()));
        Ok((ws, response))
    }

    /// Opens the connection over a TCP stream you connected yourself: TLS for `wss://` with
    /// the builder's TLS options, then the handshake; as
    /// [`ClientBuilder::connect_on_tcp`] (the proxy, resolving and the connect timeout are
    /// yours, redirects are not followed), on tokio.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), wsc::Error> {
    /// let tcp = tokio::net::TcpStream::connect("stream.example.com:443").await?;
    /// let (ws, response) = wsc::ClientBuilder::new("wss://stream.example.com/ws")
    ///     .connect_async_on_tcp(tcp)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_async_on_tcp(
        self,
        tcp: TcpStream,
    ) -> Result<(WebSocketStream<TokioStream>, Response), Error> {
        let (url, tls_config) = self.prepare()?;
        self.open_over_async(&url, tls_config, tcp, Instant::now())
            .await
    }

    /// Runs the handshake over a stream you opened yourself (a Unix socket, a TLS stream you
    /// set up; no TLS is added for `wss://`). The handshake, idle-read and close timeouts
    /// and keepalive apply.
    pub async fn connect_async_on<S>(
        self,
        stream: S,
    ) -> Result<(WebSocketStream<S>, Response), Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let url = WsUrl::parse(&self.url)?;
        let limit = self.handshake_timeout;
        self.handshake_async(url, stream, limit).await
    }

    async fn handshake_async<S>(
        &self,
        url: WsUrl,
        mut stream: S,
        limit: Option<Duration>,
    ) -> Result<(WebSocketStream<S>, Response), Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (mut handshake, request) =
            ClientHandshake::new(&self.request(&url), self.max_handshake_size)?;
        let host = url.host.clone();
        let mut buf = Vec::with_capacity(1024);
        let exchange = async {
            let io_err = |e: io::Error| map_io_error(e, Phase::WebSocketHandshake, &host);
            stream.write_all(&request).await.map_err(io_err)?;
            stream.flush().await.map_err(io_err)?;
            let mut body_by = None;
            loop {
                if let Some(done) = handshake.parse_response(&buf)? {
                    return Ok(done);
                }
                if handshake.awaits_refusal_body() && body_by.is_none() {
                    body_by = Some(::tokio::time::Instant::now() + REFUSAL_BODY_WAIT);
                }
                // Straight into `buf`: a stack buffer here would live in the future's state.
                buf.reserve(4096);
                let read = stream.read_buf(&mut buf);
                let read = match body_by {
                    Some(at) => ::tokio::time::timeout_at(at, read).await.ok(),
                    None => Some(read.await),
                };
                match read {
                    Some(Ok(0)) | None => {}
                    Some(Ok(_)) => continue,
                    // Reset (a server that refuses and closes with our request unread): as
                    // closed, a refusal read before it is the answer.
                    Some(Err(e)) if is_peer_gone(&e) => {}
                    Some(Err(e)) => return Err(io_err(e)),
                }
                // The end of the stream (or a reset), or of the wait for a refusal's body.
                let refusal = handshake.take_refusal(&buf);
                return Err(Error::Handshake(
                    refusal.unwrap_or(HandshakeError::ConnectionClosed),
                ));
            }
        };
        let (response, used) = within(limit, Phase::WebSocketHandshake, exchange).await?;
        let conn = self.open_connection(&response);
        let mut ws = WebSocketStream::from_connection(stream, conn, &buf[used..]);
        ws.set_close_timeout(self.close_timeout);
        ws.set_keepalive(self.keepalive);
        ws.set_read_timeout(self.read_timeout);
        ws.set_write_timeout(self.write_timeout);
        ws.inner.host = url.host.into();
        Ok((ws, response))
    }
}

impl Acceptor {
    /// Reads the upgrade request and answers it, on tokio (server role). Invalid requests
    /// get an HTTP error response and an error.
    pub async fn accept_async<S>(&self, stream: S) -> Result<(WebSocketStream<S>, Request), Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.accept_async_with(stream, |_| Ok(Accept::new())).await
    }

    /// Reads the upgrade request and lets `decide` answer it, on tokio: as
    /// [`Acceptor::accept_with`] (a [`Refusal`] is sent and the call returns
    /// [`HandshakeError::CallbackRefused`]).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use wsc::server::{Accept, Acceptor, Refusal};
    ///
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
    /// let (tcp, _) = listener.accept().await?;
    /// let (ws, request) = Acceptor::new()
    ///     .accept_async_with(tcp, |request| match request.path.as_str() {
    ///         "/chat" => Ok(Accept::new().header("Set-Cookie", "seen=1")),
    ///         _ => Err(Refusal::new(404).body("not here\n")),
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn accept_async_with<S, F>(
        &self,
        stream: S,
        decide: F,
    ) -> Result<(WebSocketStream<S>, Request), Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
        F: FnOnce(&Request) -> Result<Accept, Refusal>,
    {
        let upgrade = self.read_request_async(stream).await?;
        let decision = decide(upgrade.request());
        upgrade.answer_async(decision).await
    }

    /// Reads the upgrade request and returns it unanswered, on tokio: the decision may
    /// await (a token lookup) before [`Upgrade::answer_async`]. Invalid requests are answered
    /// and returned as errors, as by [`Acceptor::accept_async`].
    ///
    /// ```no_run
    /// # async fn token_is_valid(_: &[u8]) -> bool { true }
    /// # async fn run(tcp: tokio::net::TcpStream) -> Result<(), wsc::Error> {
    /// use wsc::server::{Accept, Acceptor, Refusal};
    ///
    /// let acceptor = Acceptor::new();
    /// let upgrade = acceptor.read_request_async(tcp).await?;
    /// let token = upgrade.request().headers.get("authorization");
    /// let decision = match token {
    ///     Some(token) if token_is_valid(token.as_bytes()).await => Ok(Accept::new()),
    ///     _ => Err(Refusal::new(401).header("WWW-Authenticate", "Bearer")),
    /// };
    /// let (ws, request) = upgrade.answer_async(decision).await?;
    /// # Ok(()) }
    /// ```
    pub async fn read_request_async<S>(&self, mut stream: S) -> Result<Upgrade<'_, S>, Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut buf = Vec::with_capacity(1024);
        let mut seen = 0;
        let (request, used) = loop {
            match parse_when_a_line_ends(&buf, &mut seen, self.max_handshake()) {
                Ok(Some(done)) => break done,
                Ok(None) => {}
                Err(e) => {
                    refuse(&mut stream, &refusal(&e)).await;
                    return Err(Error::Handshake(e));
                }
            }
            buf.reserve(4096);
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(Error::Handshake(HandshakeError::ConnectionClosed));
            }
        };
        let mut received = ReadBuffer::default();
        received.extend_from_slice(&buf[used..]);
        Ok(Upgrade {
            acceptor: self,
            stream,
            request,
            received,
        })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Upgrade<'_, S> {
    /// Answers the request, on tokio: as [`Upgrade::answer`].
    pub async fn answer_async(
        self,
        decision: Result<Accept, Refusal>,
    ) -> Result<(WebSocketStream<S>, Request), Error> {
        let Upgrade {
            acceptor,
            mut stream,
            request,
            received,
        } = self;
        let (response, conn) = match acceptor.reply(&request, decision) {
            Reply::Open(response, conn) => (response, conn),
            Reply::Refuse(response, e) => {
                refuse(&mut stream, &response).await;
                return Err(Error::Handshake(e));
            }
        };
        stream.write_all(&response).await?;
        stream.flush().await?;
        Ok((
            WebSocketStream::from_connection(stream, conn, &received),
            request,
        ))
    }
}

/// How long a refused connection lingers to read what the client still sends.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// The most read and dropped while a refused connection lingers.
const REFUSAL_DRAIN: usize = 64 << 10;

/// Sends a refusal, then ends the stream gently: our side shut down (FIN behind the
/// response), and what the client still sends (frames sent before the 101, the rest of a
/// request too big) read and dropped until it closes, for at most [`REFUSAL_LINGER`] and
/// [`REFUSAL_DRAIN`]. Closed with its bytes unread, the connection would be reset by the
/// kernel, and the client could lose the refusal to the reset.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, response: &[u8]) {
    if stream.write_all(response).await.is_err() || stream.flush().await.is_err() {
        return;
    }
    if stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut scratch = [0u8; 4096];
        let mut dropped = 0;
        while dropped < REFUSAL_DRAIN {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => dropped += n,
            }
        }
    };
    let _ = timeout(REFUSAL_LINGER, drain).await;
}
