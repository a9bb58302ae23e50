//! `wsc serve`: echo, broadcast or feed, a thread per connection on the library's server role.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use wsc::server::Acceptor;
use wsc::{CloseFrame, Config, Error, Message, Phase, WebSocket};

use crate::args::{ServeArgs, ServeMode};
use crate::exit::CliError;
use crate::feed::{self, Feed};

/// Longest wait between looks at the broadcast queue or the feed clock.
const POLL: Duration = Duration::from_millis(20);

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
}

impl Settings {
    pub fn from_args(args: &ServeArgs) -> Self {
        let mut config = Config::default();
        if let Some(max) = args.max_message_size {
            config = config.max_message_size(Some(max)).max_frame_size(Some(max));
        }
        Settings {
            mode: args.mode(),
            rate: args.rate,
            feed_ping: (args.feed_ping > 0.0).then(|| Duration::from_secs_f64(args.feed_ping)),
            config,
            compression: !args.no_compression,
            log: true,
        }
    }
}

/// Connected clients' outboxes, for broadcast.
#[derive(Default)]
struct Hub {
    clients: Mutex<HashMap<u64, Sender<Message>>>,
}

impl Hub {
    fn join(&self, id: u64) -> Receiver<Message> {
        let (tx, rx) = mpsc::channel();
        self.lock().insert(id, tx);
        rx
    }

    fn leave(&self, id: u64) {
        self.lock().remove(&id);
    }

    fn publish(&self, message: &Message) {
        self.lock().retain(|_, tx| tx.send(message.clone()).is_ok());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Sender<Message>>> {
        // A panicked connection thread cannot leave the map inconsistent: keep going.
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Binds `addr` and serves in background threads; returns the bound address.
pub fn start(addr: &str, settings: Settings) -> Result<SocketAddr, CliError> {
    let listener =
        TcpListener::bind(addr).map_err(|e| CliError::Io(format!("cannot listen on {addr}"), e))?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::Io("cannot read the bound address".into(), e))?;
    let settings = Arc::new(settings);
    let hub = Arc::new(Hub::default());
    thread::spawn(move || {
        let ids = AtomicU64::new(1);
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            let (settings, hub) = (settings.clone(), hub.clone());
            let id = ids.fetch_add(1, Ordering::Relaxed);
            thread::spawn(move || handle(tcp, id, &settings, &hub));
        }
    });
    Ok(local)
}

/// Counters for the connection's log line.
#[derive(Default)]
struct Stats {
    received: u64,
    sent: u64,
}

fn handle(tcp: TcpStream, id: u64, settings: &Settings, hub: &Hub) {
    let peer = tcp
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let started = Instant::now();
    let _ = tcp.set_nodelay(true);
    let mut acceptor = Acceptor::new().config(settings.config.clone());
    if !settings.compression {
        acceptor = acceptor.deflate(None);
    }
    let (mut ws, request) = match acceptor.accept(tcp) {
        Ok(accepted) => accepted,
        Err(e) => {
            if settings.log {
                eprintln!("{peer} handshake failed: {e}");
            }
            return;
        }
    };
    let mut stats = Stats::default();
    let result = match settings.mode {
        ServeMode::Echo => echo(&mut ws, &mut stats),
        ServeMode::Broadcast => {
            let inbox = hub.join(id);
            let r = broadcast(&mut ws, &inbox, hub, &mut stats);
            hub.leave(id);
            r
        }
        ServeMode::Feed => feed(&mut ws, settings, id, &mut stats),
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
            Err(e) => format!("failed: {e}"),
        };
        eprintln!(
            "{peer} GET {}{compression}: {} in, {} out, {end} after {:.1} s",
            request.path,
            stats.received,
            stats.sent,
            started.elapsed().as_secs_f64()
        );
    }
}

type Outcome = Result<Option<CloseFrame>, Error>;

fn echo(ws: &mut WebSocket<TcpStream>, stats: &mut Stats) -> Outcome {
    loop {
        match ws.read()? {
            m @ (Message::Text(_) | Message::Binary(_)) => {
                stats.received += 1;
                ws.send(m)?;
                stats.sent += 1;
            }
            Message::Close(frame) => return Ok(frame),
            _ => {}
        }
    }
}

/// Reads with a short timeout so the caller can do other work between messages.
fn poll_read(ws: &mut WebSocket<TcpStream>, wait: Duration) -> Result<Option<Message>, Error> {
    ws.get_ref()
        .set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
    match ws.read() {
        Ok(m) => Ok(Some(m)),
        Err(Error::Timeout(Phase::Read)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn broadcast(
    ws: &mut WebSocket<TcpStream>,
    inbox: &Receiver<Message>,
    hub: &Hub,
    stats: &mut Stats,
) -> Outcome {
    loop {
        while let Ok(m) = inbox.try_recv() {
            ws.send(m)?;
            stats.sent += 1;
        }
        match poll_read(ws, POLL)? {
            Some(m @ (Message::Text(_) | Message::Binary(_))) => {
                stats.received += 1;
                hub.publish(&m);
            }
            Some(Message::Close(frame)) => return Ok(frame),
            _ => {}
        }
    }
}

fn feed(ws: &mut WebSocket<TcpStream>, settings: &Settings, id: u64, stats: &mut Stats) -> Outcome {
    let mut feed = Feed::new(0x9E37_79B9_7F4A_7C15 ^ id.wrapping_mul(0xA24B_AED4_963E_E407));
    let tick_every = Duration::from_secs_f64(1.0 / settings.rate);
    let mut next_tick = Instant::now();
    let mut next_ping = settings.feed_ping.map(|p| Instant::now() + p);
    let mut pings = 0u64;
    loop {
        let now = Instant::now();
        if feed.is_subscribed() && now >= next_tick {
            for tick in feed.ticks() {
                ws.send_text(&tick)?;
                stats.sent += 1;
            }
            next_tick += tick_every;
            if next_tick < now {
                next_tick = now + tick_every; // fell behind: skip rather than burst
            }
        }
        if let (Some(at), Some(every)) = (next_ping, settings.feed_ping) {
            if now >= at {
                pings += 1;
                ws.ping(format!("feed-{pings}").as_bytes())?;
                next_ping = Some(now + every);
            }
        }
        let mut wait = POLL;
        if feed.is_subscribed() {
            wait = wait.min(next_tick.saturating_duration_since(Instant::now()));
        }
        match poll_read(ws, wait)? {
            Some(Message::Text(text)) => {
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
                ws.send_text(&reply)?;
                stats.sent += 1;
            }
            Some(Message::Binary(_)) => stats.received += 1,
            Some(Message::Close(frame)) => return Ok(frame),
            _ => {}
        }
    }
}

/// `wsc serve`: runs until interrupted.
pub fn run(args: &ServeArgs, stop: &std::sync::atomic::AtomicBool) -> Result<(), CliError> {
    let settings = Settings::from_args(args);
    let mode = settings.mode;
    let addr = start(&args.addr, settings)?;
    eprintln!("wsc: serving {mode:?} on ws://{addr}/ (Ctrl-C to stop)");
    while !stop.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
