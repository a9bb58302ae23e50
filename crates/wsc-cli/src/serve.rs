//! `wsc serve`: echo, broadcast or feed, over ws:// or wss:// (`--tls-cert`), on the
//! library's async server role (`wsc::tokio`), one task per connection, so thousands of
//! clients cost little.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{interval_at, timeout_at, MissedTickBehavior};
use tokio_rustls::TlsAcceptor;
use wsc::rustls::{self, ServerConfig};
use wsc::server::Acceptor;
use wsc::tokio::WebSocketStream;
use wsc::{CloseCode, CloseFrame, Config, Error, Message};

use crate::args::{ServeArgs, ServeMode};
use crate::describe::Described;
use crate::exit::CliError;
use crate::feed::{self, Feed};
use crate::hub::{Hub, Inbox, INBOX_LIMIT};
use crate::serve_tls;

/// How long a client may take over its opening handshakes (TLS, then WebSocket): one that
/// sends half a request and stops must not hold its connection (or the server's shutdown)
/// for good.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long stopping waits for the clients to answer our close 1001.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// What the server does with each connection.
#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: ServeMode,
    pub rate: f64,
    pub feed_ping: Option<Duration>,
    pub config: Config,
    /// Accept permessage-deflate offers.
    pub compression: bool,
    /// Log one line per connection on stderr.
    pub log: bool,
    /// Serve wss://: the TLS handshake comes first.
    pub tls: Option<Arc<ServerConfig>>,
}

impl Settings {
    pub fn from_args(args: &ServeArgs) -> Result<Self, CliError> {
        let mut config = Config::default();
        if let Some(max) = args.max_message_size {
            // Frames too (no frame limit: see the client's).
            config = config.max_message_size(Some(max));
        }
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(serve_tls::server_config(cert, key)?),
            _ => None,
        };
        Ok(Settings {
            mode: args.mode(),
            rate: args.rate,
            feed_ping: (args.feed_ping > 0.0).then(|| Duration::from_secs_f64(args.feed_ping)),
            config,
            compression: !args.no_compression,
            log: !args.quiet,
            tls,
        })
    }

    /// The URL scheme served.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "wss"
        } else {
            "ws"
        }
    }
}

/// A running server: where it listens, and how to stop it politely.
pub struct Running {
    pub addr: SocketAddr,
    /// Its receivers are the accept loop's, until it has seen the stop, and each open
    /// connection's: their count says when stopping is done.
    stop: watch::Sender<bool>,
}

impl Running {
    /// Closes every connection with 1001 (going away) and waits, up to [`SHUTDOWN_GRACE`],
    /// for the clients to answer: they see a server shutting down, not a connection lost.
    pub fn shut_down(&self) {
        let _ = self.stop.send(true);
        let started = Instant::now();
        while self.stop.receiver_count() > 0 && started.elapsed() < SHUTDOWN_GRACE {
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Resolves once the server is stopping (never if its [`Running`] is gone without stopping).
async fn stopping(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|&stopping| stopping).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Binds `addr` and serves on a tokio runtime in a background thread.
pub fn start(addr: &str, settings: Settings) -> Result<Running, CliError> {
    addr.to_socket_addrs().map_err(|e| {
        CliError::Usage(format!(
            "cannot use {addr:?} as an address to listen on: {e}"
        ))
    })?;
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| CliError::Io(format!("cannot listen on {addr}"), e))?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::Io("cannot read the bound address".into(), e))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::Io("cannot start the async runtime".into(), e))?;
    let (stop, stop_rx) = watch::channel(false);
    thread::spawn(move || {
        runtime.block_on(async move {
            match TcpListener::from_std(listener) {
                Ok(listener) => accept_loop(listener, Arc::new(settings), stop_rx).await,
                Err(e) => say!("wsc: cannot listen: {e}"),
            }
            // The open connections close on this runtime, which returning would drop.
            std::future::pending::<()>().await
        })
    });
    Ok(Running { addr: local, stop })
}

async fn accept_loop(
    listener: TcpListener,
    settings: Arc<Settings>,
    mut stop: watch::Receiver<bool>,
) {
    let hub = Arc::new(Hub::default());
    let ids = AtomicU64::new(1);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            // No new connections (the listener and this receiver go).
            () = stopping(&mut stop) => return,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait a moment instead of spinning.
                say!("wsc: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let id = ids.fetch_add(1, Ordering::Relaxed);
        // The connection's receiver lives as long as it does (see `Running::stop`).
        let (settings, hub, stop) = (settings.clone(), hub.clone(), stop.clone());
        tokio::spawn(async move { handle(tcp, peer, id, &settings, &hub, stop).await });
    }
}

/// Counters for the connection's log line.
#[derive(Default)]
struct Stats {
    received: u64,
    sent: u64,
}

type Outcome = Result<Option<CloseFrame>, Error>;

/// One accepted connection, on its way through the handshakes.
struct Client {
    peer: SocketAddr,
    id: u64,
    started: Instant,
    /// The end of [`HANDSHAKE_TIMEOUT`], for the TLS and the WebSocket handshake together.
    deadline: tokio::time::Instant,
    stop: watch::Receiver<bool>,
}

impl Client {
    /// Logs that the `what` handshake ("TLS ", or "" for the WebSocket one) ran out of time.
    fn handshake_timed_out(&self, what: &str, settings: &Settings) {
        if settings.log {
            say!(
                "{} {what}handshake failed: not done within {} s",
                self.peer,
                HANDSHAKE_TIMEOUT.as_secs()
            );
        }
    }
}

async fn handle(
    tcp: TcpStream,
    peer: SocketAddr,
    id: u64,
    settings: &Settings,
    hub: &Arc<Hub>,
    stop: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let mut client = Client {
        peer,
        id,
        started: Instant::now(),
        deadline: tokio::time::Instant::now() + HANDSHAKE_TIMEOUT,
        stop,
    };
    let Some(config) = &settings.tls else {
        return serve(tcp, client, settings, hub).await;
    };
    let tls = tokio::select! {
        tls = timeout_at(client.deadline, TlsAcceptor::from(config.clone()).accept(tcp)) => tls,
        () = stopping(&mut client.stop) => return,
    };
    match tls {
        Ok(Ok(tls)) => serve(tls, client, settings, hub).await,
        Ok(Err(e)) => {
            if settings.log {
                say!("{peer} TLS handshake failed: {}", tls_failure(&e));
            }
        }
        Err(_) => client.handshake_timed_out("TLS ", settings),
    }
}

/// Why a TLS handshake failed, with a hint for the usual mistake: a ws:// client, whose
/// plain HTTP request rustls reads as a record of no known type.
fn tls_failure(e: &std::io::Error) -> String {
    let plain_http = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| {
            matches!(
                e,
                rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)
            )
        });
    if plain_http {
        format!("{e} (a ws:// client? this server speaks wss:// only)")
    } else {
        e.to_string()
    }
}

/// The WebSocket handshake and the mode, over TCP or TLS.
async fn serve<S>(stream: S, mut client: Client, settings: &Settings, hub: &Arc<Hub>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Client {
        peer, id, started, ..
    } = client;
    let mut acceptor = Acceptor::new().config(settings.config.clone());
    if !settings.compression {
        acceptor = acceptor.deflate(None);
    }
    // Joined before the 101 goes out: a client that has seen it gets every message
    // published after (those published during its handshake wait in the inbox).
    let inbox = (settings.mode == ServeMode::Broadcast).then(|| hub.join(id));
    let accepted = tokio::select! {
        accepted = timeout_at(client.deadline, acceptor.accept_async(stream)) => accepted,
        () = stopping(&mut client.stop) => return,
    };
    let (mut ws, request) = match accepted {
        Ok(Ok(accepted)) => accepted,
        Ok(Err(e)) => {
            if settings.log {
                say!("{peer} handshake failed: {}", Described(&e));
            }
            return;
        }
        Err(_) => return client.handshake_timed_out("", settings),
    };
    let mut stop = client.stop;
    let mut stats = Stats::default();
    let served = async {
        match settings.mode {
            ServeMode::Echo => echo(&mut ws, &mut stats).await,
            ServeMode::Broadcast => match inbox {
                Some(inbox) => broadcast(&mut ws, hub, inbox, &mut stats).await,
                None => ended(),
            },
            ServeMode::Feed => feed(&mut ws, settings, id, &mut stats).await,
        }
    };
    let result = tokio::select! {
        result = served => result,
        () = stopping(&mut stop) => Err(Error::ConnectionClosed),
    };
    // Stopping: the mode's future is dropped between messages (the library's reads and
    // sends are cancellation safe), and the client gets a close, not a lost connection.
    let result = match result {
        Err(Error::ConnectionClosed) if *stop.borrow() => {
            let away = CloseFrame::new(CloseCode::GOING_AWAY, "server shutting down");
            ws.close(Some(away.clone())).await.map(|_| Some(away))
        }
        other => other,
    };
    if settings.log {
        let compression = if ws.connection().deflate_params().is_some() {
            ", deflate"
        } else {
            ""
        };
        let end = match result {
            Ok(Some(frame)) => format!("closed {frame}"),
            Ok(None) => "closed (no status)".to_string(),
            Err(e) => format!("failed: {}", Described(&e)),
        };
        say!(
            "{peer} GET {}{compression}: {} in, {} out, {end} after {:.1} s",
            request.path,
            stats.received,
            stats.sent,
            started.elapsed().as_secs_f64()
        );
    }
}

/// The outcome when the stream ends without a close frame having been seen.
fn ended() -> Outcome {
    Err(Error::ConnectionReset)
}

async fn echo(
    ws: &mut WebSocketStream<impl AsyncRead + AsyncWrite + Unpin>,
    stats: &mut Stats,
) -> Outcome {
    while let Some(message) = ws.recv().await {
        match message? {
            m @ (Message::Text(_) | Message::Binary(_)) => {
                stats.received += 1;
                ws.send(m).await?;
                stats.sent += 1;
            }
            Message::Close(frame) => return Ok(frame),
            _ => {}
        }
    }
    ended()
}

async fn broadcast(
    ws: &mut WebSocketStream<impl AsyncRead + AsyncWrite + Unpin>,
    hub: &Hub,
    mut inbox: Inbox,
    stats: &mut Stats,
) -> Outcome {
    loop {
        tokio::select! {
            published = inbox.recv() => match published {
                Some(m) => {
                    if !pass_on(ws, &inbox, m).await? {
                        return lagged(ws).await;
                    }
                    stats.sent += 1;
                }
                None if inbox.has_lagged() => return lagged(ws).await,
                None => return ended(),
            },
            message = ws.recv() => match message {
                Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                    stats.received += 1;
                    hub.publish(&m);
                    // What is published by now, this message included, goes out before the
                    // next read: a client that sends and then closes gets its own messages
                    // back before its close (after it, nothing more can be sent).
                    while let Some(m) = inbox.try_recv() {
                        if !pass_on(ws, &inbox, m).await? {
                            return lagged(ws).await;
                        }
                        stats.sent += 1;
                    }
                }
                Some(Ok(Message::Close(frame))) => return Ok(frame),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return ended(),
            },
        }
    }
}

/// Sends a published message to the client; `false`, without waiting for it to be written,
/// once the client has lagged (one that takes nothing would hold the send for good).
async fn pass_on(
    ws: &mut WebSocketStream<impl AsyncRead + AsyncWrite + Unpin>,
    inbox: &Inbox,
    message: Message,
) -> Result<bool, Error> {
    if inbox.has_lagged() {
        return Ok(false);
    }
    tokio::select! {
        sent = ws.send(message) => sent.map(|()| true),
        () = inbox.lagged() => Ok(false),
    }
}

/// Closes (1008) a broadcast client that fell more than [`INBOX_LIMIT`] behind: told why,
/// rather than left to miss messages without knowing.
async fn lagged(ws: &mut WebSocketStream<impl AsyncRead + AsyncWrite + Unpin>) -> Outcome {
    let frame = CloseFrame::new(
        CloseCode::POLICY_VIOLATION,
        format!(
            "too slow: fell more than {} MiB behind the broadcast",
            INBOX_LIMIT >> 20
        ),
    );
    // Closed by us either way: a client that takes nothing cannot take the frame either
    // (the close timeout bounds the try).
    let _ = ws.close(Some(frame.clone())).await;
    Ok(Some(frame))
}

async fn feed(
    ws: &mut WebSocketStream<impl AsyncRead + AsyncWrite + Unpin>,
    settings: &Settings,
    id: u64,
    stats: &mut Stats,
) -> Outcome {
    let mut feed = Feed::new(0x9E37_79B9_7F4A_7C15 ^ id.wrapping_mul(0xA24B_AED4_963E_E407));
    let every = Duration::from_secs_f64(1.0 / settings.rate);
    let mut ticks = interval_at(tokio::time::Instant::now() + every, every);
    // Fell behind: skip rather than burst.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let ping_every = settings.feed_ping.unwrap_or(Duration::from_secs(3600));
    let mut pings = interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    let mut sent_pings = 0u64;
    loop {
        tokio::select! {
            message = ws.recv() => match message {
                Some(Ok(Message::Text(text))) => {
                    stats.received += 1;
                    let reply = match feed::parse_request(&text) {
                        feed::Request::Subscribe(symbols) => feed.subscribe(symbols),
                        feed::Request::Unsubscribe => feed.unsubscribe(),
                        feed::Request::Unknown => serde_json::json!({
                            "type": "error",
                            "message": "unknown request; send {\"op\":\"subscribe\",\"symbols\":[\"BTC-USD\"]}",
                        })
                        .to_string(),
                    };
                    ws.send_text(&reply).await?;
                    stats.sent += 1;
                }
                Some(Ok(Message::Binary(_))) => stats.received += 1,
                Some(Ok(Message::Close(frame))) => return Ok(frame),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return ended(),
            },
            _ = ticks.tick() => {
                for tick in feed.ticks() {
                    ws.send_text(&tick).await?;
                    stats.sent += 1;
                }
            }
            _ = pings.tick(), if settings.feed_ping.is_some() => {
                sent_pings += 1;
                ws.ping(format!("feed-{sent_pings}").into_bytes()).await?;
            }
        }
    }
}

/// `wsc serve`: runs until interrupted.
pub fn run(args: &ServeArgs, stop: &AtomicBool) -> Result<(), CliError> {
    let settings = Settings::from_args(args)?;
    let (mode, scheme) = (settings.mode, settings.scheme());
    let server = start(&args.addr, settings)?;
    let what = match mode {
        ServeMode::Echo => "echo",
        ServeMode::Broadcast => "broadcast",
        ServeMode::Feed => "feed",
    };
    say!(
        "wsc: serving {what} on {scheme}://{}/ (Ctrl-C to stop)",
        server.addr
    );
    while !stop.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(50));
    }
    server.shut_down();
    Ok(())
}
