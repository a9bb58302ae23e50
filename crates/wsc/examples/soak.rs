//! Soak test of the founding use case: subscribe to a feed over `ws://` or `wss://` and stream
//! it for a long time through drops, with the blocking or the async reconnecting client.
//!
//! The program starts a feed server as a child process (this same binary, `--serve`) on
//! 127.0.0.1 with a self-signed certificate (trusted with `TlsOptions::add_ca_pem_file`), and
//! streams from it. The server sends JSON ticks at a steady rate with a sequence number per
//! subscription and connection, answers pings, sends its own, and at random moments (every
//! `--min-life` to `--max-life` seconds) hurts the connection: a TCP reset, a clean close
//! (1001), a close whose TCP is never closed, a stall (no bytes, no pongs, the socket left
//! open: keepalive must notice), half a frame then FIN or a stall, a pause longer than the read
//! timeout (pongs still answered), a message just under the size limit (whole or fragmented
//! with pings between the fragments), one over it, a ping flood that reads nothing, an outage
//! (connections refused) or handshakes left unanswered. `--faults` picks some by name
//! (`reset,stall,...`) or `none`. `--deflate` has the server accept permessage-deflate.
//!
//! The client checks that within a connection nothing is lost, duplicated or reordered, that
//! every drop and reconnect is reported as an event, that every subscription is acknowledged
//! again after each reconnect, that stalls are noticed within the keepalive bounds and that
//! reconnects are timely, and samples its own RSS, fds, threads and CPU every 10 s (the server
//! is another process). The async client races `next_event` against a timer, as a program with
//! other work would. `--slow-us N` makes the consumer spend N microseconds per message.
//!
//! ```text
//! cargo run --release -p wsc --features tokio --example soak -- \
//!     --client async --tls --secs 600 [--proxy http://127.0.0.1:8899] [--rate 3000]
//!     [--slow-us 1000] [--faults all] [--deflate] [--channels 3] [--no-read-timeout]
//! ```
//!
//! Prints a summary; exits 1 if any check failed. `scripts/soak.sh` runs a short version.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wsc::reconnect::{Disconnect, Event, Reconnect};
use wsc::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use wsc::rustls::{ServerConfig, ServerConnection, StreamOwned};
use wsc::{ClientBuilder, Error, Keepalive, Message, Phase, Proxy, TlsOptions};

/// The client's message size limit; the server's big messages are just under it.
const MAX_MESSAGE: usize = 8 << 20;
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);
const READ_TIMEOUT: Duration = Duration::from_millis(1500);

// =============================================================================================
// Options
// =============================================================================================

#[derive(Debug, Clone)]
struct Opts {
    serve: bool,
    port: u16,
    cert: Option<String>,
    key: Option<String>,
    client: String,
    tls: bool,
    secs: u64,
    rate: u64,
    channels: usize,
    slow_us: u64,
    proxy: Option<String>,
    faults: String,
    deflate: bool,
    no_read_timeout: bool,
    min_life: u64,
    max_life: u64,
    seed: u64,
}

fn opts() -> Opts {
    let mut o = Opts {
        serve: false,
        port: 0,
        cert: None,
        key: None,
        client: "blocking".into(),
        tls: false,
        secs: 60,
        rate: 3000,
        channels: 3,
        slow_us: 0,
        proxy: None,
        faults: "all".into(),
        deflate: false,
        no_read_timeout: false,
        min_life: 3,
        max_life: 20,
        seed: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--serve" => o.serve = true,
            "--port" => o.port = val().parse().unwrap(),
            "--cert" => o.cert = Some(val()),
            "--key" => o.key = Some(val()),
            "--client" => o.client = val(),
            "--tls" => o.tls = true,
            "--secs" => o.secs = val().parse().unwrap(),
            "--rate" => o.rate = val().parse().unwrap(),
            "--channels" => o.channels = val().parse().unwrap(),
            "--slow-us" => o.slow_us = val().parse().unwrap(),
            "--proxy" => o.proxy = Some(val()),
            "--faults" => o.faults = val(),
            "--deflate" => o.deflate = true,
            "--no-read-timeout" => o.no_read_timeout = true,
            "--min-life" => o.min_life = val().parse().unwrap(),
            "--max-life" => o.max_life = val().parse().unwrap(),
            "--seed" => o.seed = val().parse().unwrap(),
            other => panic!("unknown argument {other}"),
        }
    }
    o
}

/// xorshift: the randomness of the fault schedule (reproducible with --seed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

// =============================================================================================
// The feed server (child process)
// =============================================================================================

trait Io: Read + Write + Send {}
impl<T: Read + Write + Send> Io for T {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Lives until the client leaves.
    None,
    Reset,
    Close1001,
    Stall,
    HalfFrameFin,
    HalfFrameStall,
    /// Not a kill: no ticks for 4 s (longer than the read timeout), pings still answered.
    Pause,
    /// Not a kill: one binary message just under the client's limit.
    Huge,
    /// One message over the client's limit: the client must drop and reconnect.
    Oversize,
    /// A close (1001), the client's reply read, and TCP never closed by the server.
    CloseNoFin,
    /// 10 s of pings as fast as the socket takes them, nothing read (the pongs pile up on the
    /// client's side), then a reset.
    PingFlood,
    /// A reset, then the server is down (connections refused) for 4 to 10 s.
    Down,
    /// A reset, then for 8 s connections are accepted and their handshakes never answered.
    Hang,
}

/// Outages the connections ask the accept loop for: (until when, hang rather than refuse).
static OUTAGE: std::sync::Mutex<Option<(Instant, bool)>> = std::sync::Mutex::new(None);

fn pick_fault(rng: &mut Rng, faults: &str) -> Fault {
    let all = [
        Fault::Reset,
        Fault::Close1001,
        Fault::Stall,
        Fault::HalfFrameFin,
        Fault::HalfFrameStall,
        Fault::Pause,
        Fault::Huge,
        Fault::Oversize,
        Fault::Down,
        Fault::Hang,
        Fault::CloseNoFin,
        Fault::PingFlood,
    ];
    if faults == "none" {
        return Fault::None;
    }
    let allowed: Vec<Fault> = if faults == "all" {
        all.to_vec()
    } else {
        all.iter()
            .copied()
            .filter(|f| {
                faults
                    .split(',')
                    .any(|n| format!("{f:?}").eq_ignore_ascii_case(n))
            })
            .collect()
    };
    allowed[rng.below(allowed.len() as u64) as usize]
}

fn serve(o: Opts) {
    let listener = TcpListener::bind(("127.0.0.1", o.port)).unwrap();
    println!("{}", listener.local_addr().unwrap().port());
    io::stdout().flush().unwrap();
    let tls = o.cert.as_ref().map(|cert| {
        let cert = std::fs::read(cert).unwrap();
        let key = std::fs::read(o.key.as_ref().unwrap()).unwrap();
        let certs = pem_blocks(&cert, "CERTIFICATE")
            .into_iter()
            .map(CertificateDer::from)
            .collect();
        let key = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(
            pem_blocks(&key, "PRIVATE KEY").remove(0),
        ));
        Arc::new(
            ServerConfig::builder_with_provider(Arc::new(
                wsc::rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
        )
    });
    let ids = Arc::new(AtomicU64::new(0));
    let mut rng = Rng(o.seed.max(1) ^ 0x9e37_79b9_7f4a_7c15);
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let mut listener = Some(listener);
    let mut hung: Vec<(TcpStream, Instant)> = Vec::new();
    loop {
        hung.retain(|(_, at)| at.elapsed() < Duration::from_secs(20));
        let outage = *OUTAGE.lock().unwrap();
        let outage = outage.filter(|(until, _)| Instant::now() < *until);
        if outage.is_some_and(|(_, hang)| !hang) {
            if listener.take().is_some() {
                eprintln!("srv: down (refusing connections)");
            }
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let l = listener.get_or_insert_with(|| {
            eprintln!("srv: up again");
            let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
            l.set_nonblocking(true).unwrap();
            l
        });
        let tcp = match l.accept() {
            Ok((tcp, _)) => tcp,
            Err(e) if would_block(&e) => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(_) => continue,
        };
        if outage.is_some() {
            eprintln!("srv: hanging a handshake");
            hung.push((tcp, Instant::now()));
            continue;
        }
        tcp.set_nonblocking(false).unwrap();
        let id = ids.fetch_add(1, Ordering::Relaxed) + 1;
        let fault = pick_fault(&mut rng, &o.faults);
        let life = Duration::from_millis(
            o.min_life * 1000 + rng.below((o.max_life - o.min_life).max(1) * 1000),
        );
        let tls = tls.clone();
        let o = o.clone();
        let seed = rng.next();
        std::thread::spawn(move || {
            let raw = tcp.try_clone().unwrap();
            tcp.set_nodelay(true).unwrap();
            tcp.set_nonblocking(true).unwrap();
            let stream: Box<dyn Io> = match tls {
                Some(cfg) => Box::new(StreamOwned::new(ServerConnection::new(cfg).unwrap(), tcp)),
                None => Box::new(tcp),
            };
            let mut c = ServerConn {
                io: stream,
                raw,
                id,
                inbuf: Vec::new(),
                outbuf: Vec::new(),
                subs: Vec::new(),
                sent: 0,
                rng: Rng(seed | 1),
                deflate: None,
                want_deflate: o.deflate,
            };
            let outcome = c.run(&o, fault, life);
            eprintln!(
                "srv conn {id}: fault {fault:?} after {:?}: sent {} ticks: {outcome}",
                life, c.sent
            );
        });
    }
}

fn pem_blocks(pem: &[u8], label: &str) -> Vec<Vec<u8>> {
    use base64::Engine;
    let text = std::str::from_utf8(pem).unwrap();
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(b) = rest.find(&begin) {
        let after = &rest[b + begin.len()..];
        let e = after.find(&end).unwrap();
        let body: String = after[..e].split_whitespace().collect();
        out.push(
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .unwrap(),
        );
        rest = &after[e..];
    }
    out
}

struct ServerConn {
    /// permessage-deflate with context takeover both ways, when negotiated: the server's
    /// compressor and the inflater for the client's messages.
    deflate: Option<(flate2::Compress, flate2::Decompress)>,
    want_deflate: bool,
    io: Box<dyn Io>,
    raw: TcpStream,
    id: u64,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    /// Subscribed channels with their next sequence numbers.
    subs: Vec<(String, u64)>,
    sent: u64,
    rng: Rng,
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

fn frame(op: u8, payload: &[u8], fin: bool, out: &mut Vec<u8>) {
    out.push(if fin { 0x80 } else { 0 } | op);
    let n = payload.len();
    if n < 126 {
        out.push(n as u8);
    } else if n <= 0xffff {
        out.push(126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// A binary message of `len` bytes whose content the client can check.
fn big_payload(len: usize, conn: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&conn.to_be_bytes());
    v.extend_from_slice(&(len as u64).to_be_bytes());
    while v.len() < len {
        v.push((v.len() % 251) as u8);
    }
    v.truncate(len);
    v
}

/// Compresses one message with the connection's compressor (RFC 7692: a sync flush, its
/// empty block's 00 00 ff ff removed).
fn deflate(c: &mut flate2::Compress, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 2 + 64);
    let start = c.total_in();
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(1024));
        }
        let done = (c.total_in() - start) as usize;
        c.compress_vec(&input[done..], &mut out, flate2::FlushCompress::Sync)
            .unwrap();
        if (c.total_in() - start) as usize == input.len() && out.len() < out.capacity() {
            break;
        }
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn inflate(d: &mut flate2::Decompress, input: &[u8]) -> Vec<u8> {
    let mut input = input.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(input.len() * 4 + 64);
    let start = d.total_in();
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(1024));
        }
        let done = (d.total_in() - start) as usize;
        d.decompress_vec(&input[done..], &mut out, flate2::FlushDecompress::Sync)
            .unwrap();
        if (d.total_in() - start) as usize == input.len() && out.len() < out.capacity() {
            return out;
        }
    }
}

impl ServerConn {
    /// Queues a data message (`op` 1 or 2), compressed if permessage-deflate is on, in
    /// fragments of `fragment` bytes (with a ping between some of them) or whole.
    fn data(&mut self, op: u8, payload: &[u8], fragment: Option<usize>) {
        let compressed;
        let (payload, rsv1) = match &mut self.deflate {
            Some((c, _)) => {
                compressed = deflate(c, payload);
                (&compressed[..], 0x40)
            }
            None => (payload, 0),
        };
        let start = self.outbuf.len();
        match fragment {
            None => frame(op, payload, true, &mut self.outbuf),
            Some(size) => {
                let parts: Vec<&[u8]> = payload.chunks(size).collect();
                for (i, part) in parts.iter().enumerate() {
                    let op = if i == 0 { op } else { 0 };
                    let at = self.outbuf.len();
                    frame(op, part, i + 1 == parts.len(), &mut self.outbuf);
                    if i == 0 {
                        self.outbuf[at] |= rsv1;
                    }
                    // Control frames may come between fragments.
                    if i % 16 == 8 {
                        frame(9, b"between fragments", true, &mut self.outbuf);
                    }
                }
                return;
            }
        }
        self.outbuf[start] |= rsv1;
    }

    /// Reads what is there without blocking; `Err` when the client left.
    fn pump_in(&mut self) -> io::Result<()> {
        let mut buf = [0u8; 16384];
        loop {
            match self.io.read(&mut buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.inbuf.extend_from_slice(&buf[..n]),
                Err(e) if would_block(&e) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes what it can without blocking.
    fn pump_out(&mut self) -> io::Result<()> {
        while !self.outbuf.is_empty() {
            match self.io.write(&self.outbuf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.outbuf.drain(..n);
                }
                Err(e) if would_block(&e) => break,
                Err(e) => return Err(e),
            }
        }
        match self.io.flush() {
            Err(e) if !would_block(&e) => Err(e),
            _ => Ok(()),
        }
    }

    /// Writes everything, waiting for the socket, up to `limit`.
    fn drain_out(&mut self, limit: Duration) -> io::Result<()> {
        let until = Instant::now() + limit;
        loop {
            self.pump_out()?;
            if self.outbuf.is_empty() || Instant::now() > until {
                // One more flush for TLS records rustls holds.
                for _ in 0..100 {
                    match self.io.flush() {
                        Ok(()) => break,
                        Err(e) if would_block(&e) => std::thread::sleep(Duration::from_millis(2)),
                        Err(e) => return Err(e),
                    }
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn handshake(&mut self) -> Result<(), String> {
        let until = Instant::now() + Duration::from_secs(10);
        let end = loop {
            self.pump_in().map_err(|e| format!("handshake read: {e}"))?;
            if let Some(p) = self.inbuf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            if Instant::now() > until {
                return Err("handshake timeout".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let head = String::from_utf8_lossy(&self.inbuf[..end]).into_owned();
        self.inbuf.drain(..end);
        let key = head
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| v.trim().to_string())
            })
            .ok_or("no key")?;
        let mut sha = sha1_smol::Sha1::new();
        sha.update(key.as_bytes());
        sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
        use base64::Engine;
        let accept = base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes());
        let offered = head.lines().any(|l| {
            l.to_ascii_lowercase()
                .starts_with("sec-websocket-extensions:")
                && l.contains("permessage-deflate")
        });
        let extensions = if self.want_deflate && offered {
            self.deflate = Some((
                flate2::Compress::new(flate2::Compression::fast(), false),
                flate2::Decompress::new(false),
            ));
            "Sec-WebSocket-Extensions: permessage-deflate\r\n"
        } else {
            ""
        };
        self.outbuf.extend_from_slice(
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{extensions}\r\n"
            )
            .as_bytes(),
        );
        self.drain_out(Duration::from_secs(5))
            .map_err(|e| format!("handshake write: {e}"))
    }

    /// Handles the client's frames: subscriptions, pings, pongs, close. `Ok(true)`: the client
    /// closed.
    fn handle_input(&mut self, ping_out: &mut Option<(Vec<u8>, Instant)>) -> Result<bool, String> {
        loop {
            let b = &self.inbuf;
            if b.len() < 2 {
                return Ok(false);
            }
            let op = b[0] & 0x0f;
            let compressed = b[0] & 0x40 != 0;
            if b[1] & 0x80 == 0 {
                return Err("unmasked client frame".into());
            }
            let (len, mut at) = match b[1] & 0x7f {
                126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
                127 if b.len() >= 10 => (
                    u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                126 | 127 => return Ok(false),
                n => (n as usize, 2),
            };
            if b.len() < at + 4 + len {
                return Ok(false);
            }
            let mask: [u8; 4] = b[at..at + 4].try_into().unwrap();
            at += 4;
            let mut payload: Vec<u8> = b[at..at + len]
                .iter()
                .enumerate()
                .map(|(i, x)| x ^ mask[i % 4])
                .collect();
            self.inbuf.drain(..at + len);
            if compressed {
                let Some((_, d)) = &mut self.deflate else {
                    return Err("RSV1 without permessage-deflate".into());
                };
                payload = inflate(d, &payload);
            }
            match op {
                1 => {
                    let text = String::from_utf8(payload).map_err(|_| "bad utf8")?;
                    let v: serde_json::Value =
                        serde_json::from_str(&text).map_err(|e| format!("bad json {e}"))?;
                    let ch = v["channel"].as_str().ok_or("no channel")?.to_string();
                    if self.subs.iter().any(|(c, _)| *c == ch) {
                        return Err(format!("subscribed twice to {ch}"));
                    }
                    let ack = format!(r#"{{"ack":"{ch}","conn":{}}}"#, self.id);
                    self.data(1, ack.as_bytes(), None);
                    self.subs.push((ch, 0));
                }
                9 => frame(10, &payload, true, &mut self.outbuf),
                10 => {
                    if ping_out.as_ref().is_some_and(|(p, _)| *p == payload) {
                        *ping_out = None;
                    }
                }
                8 => {
                    frame(8, &payload, true, &mut self.outbuf);
                    let _ = self.drain_out(Duration::from_secs(1));
                    return Ok(true);
                }
                other => return Err(format!("unexpected opcode {other}")),
            }
        }
    }

    fn tick(&mut self) {
        if self.subs.is_empty() {
            return;
        }
        let i = (self.sent % self.subs.len() as u64) as usize;
        let (ch, seq) = &mut self.subs[i];
        let px = 64_000.0 + (*seq % 1000) as f64 * 0.25;
        let msg = format!(
            r#"{{"conn":{},"ch":"{ch}","seq":{seq},"px":{px:.2},"qty":0.0125,"side":"buy"}}"#,
            self.id
        );
        *seq += 1;
        self.sent += 1;
        self.data(1, msg.as_bytes(), None);
    }

    fn run(&mut self, o: &Opts, mut fault: Fault, life: Duration) -> String {
        if let Err(e) = self.handshake() {
            return e;
        }
        let start = Instant::now();
        let mut fault_at = start + life;
        let mut paused_until: Option<Instant> = None;
        let mut next_ping = start + Duration::from_millis(1500 + self.rng.below(2000));
        let mut ping_out: Option<(Vec<u8>, Instant)> = None;
        let mut pongs_late = 0u32;
        let mut pings = 0u32;
        let mut generated = 0f64;
        let mut last = Instant::now();
        loop {
            if let Err(e) = self.pump_in() {
                return format!("client left ({e}); {pings} pings, {pongs_late} late pongs");
            }
            match self.handle_input(&mut ping_out) {
                Ok(true) => {
                    return format!("client closed; {pings} pings, {pongs_late} late pongs")
                }
                Ok(false) => {}
                Err(e) => return format!("PROTOCOL ERROR from client: {e}"),
            }
            let now = Instant::now();
            if let Some((_, at)) = &ping_out {
                if now.duration_since(*at) > Duration::from_secs(5) {
                    pongs_late += 1;
                    eprintln!("srv conn {}: PONG MISSING for 5 s", self.id);
                    ping_out = None;
                }
            }
            if now >= next_ping && ping_out.is_none() {
                pings += 1;
                let p = format!("srv{pings}").into_bytes();
                frame(9, &p, true, &mut self.outbuf);
                ping_out = Some((p, now));
                next_ping = now + Duration::from_millis(2000 + self.rng.below(3000));
            }
            // Ticks at the steady rate, but never more than ~256 KiB ahead of the socket: a
            // slow client slows the feed down (the schedule does not run away).
            let dt = now.duration_since(last).as_secs_f64();
            last = now;
            let paused = paused_until.is_some_and(|t| now < t);
            if !paused {
                generated = (generated + dt * o.rate as f64).min(o.rate as f64 / 10.0 + 1.0);
                while generated >= 1.0 && self.outbuf.len() < 256 << 10 {
                    self.tick();
                    generated -= 1.0;
                }
            } else {
                generated = 0.0;
            }
            if let Err(e) = self.pump_out() {
                return format!("write failed ({e})");
            }
            if now >= fault_at && fault != Fault::None {
                match fault {
                    Fault::Pause => {
                        paused_until = Some(now + Duration::from_secs(4));
                    }
                    Fault::Huge => {
                        let _ = self.drain_out(Duration::from_secs(5));
                        let p = big_payload(MAX_MESSAGE - 1024, self.id);
                        let fragment = (self.rng.below(2) == 0).then_some(64 << 10);
                        self.data(2, &p, fragment);
                    }
                    _ => return self.kill(fault),
                }
                // Pause and Huge do not end the connection: something else will, later.
                for _ in 0..50 {
                    if !matches!(fault, Fault::Pause | Fault::Huge) {
                        break;
                    }
                    fault = pick_fault(&mut self.rng, &o.faults);
                }
                fault_at = now + Duration::from_millis(5000 + self.rng.below(5000));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn kill(&mut self, fault: Fault) -> String {
        match fault {
            Fault::Reset | Fault::Down | Fault::Hang => {
                if fault != Fault::Reset {
                    let secs = if fault == Fault::Hang {
                        8000
                    } else {
                        4000 + self.rng.below(6000)
                    };
                    *OUTAGE.lock().unwrap() = Some((
                        Instant::now() + Duration::from_millis(secs),
                        fault == Fault::Hang,
                    ));
                }
                let _ = socket2::SockRef::from(&self.raw).set_linger(Some(Duration::ZERO));
                format!("{fault:?}")
            }
            Fault::Close1001 => {
                frame(8, b"\x03\xe9going away", true, &mut self.outbuf);
                let _ = self.drain_out(Duration::from_secs(2));
                // Wait for the client's close reply (its frames then EOF).
                let until = Instant::now() + Duration::from_secs(5);
                let mut none = None;
                while Instant::now() < until {
                    if self.pump_in().is_err() {
                        return "closed 1001, client closed TCP".into();
                    }
                    if let Ok(true) = self.handle_input(&mut none) {
                        return "closed 1001, client answered".into();
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                "closed 1001, NO ANSWER from client in 5 s".into()
            }
            Fault::Stall | Fault::HalfFrameStall | Fault::HalfFrameFin | Fault::CloseNoFin => {
                let _ = self.drain_out(Duration::from_secs(5));
                if fault == Fault::CloseNoFin {
                    frame(8, b"\x03\xe9going away", true, &mut self.outbuf);
                    let _ = self.drain_out(Duration::from_secs(5));
                } else if fault != Fault::Stall {
                    let mut f = Vec::new();
                    let msg = format!(r#"{{"conn":{},"ch":"half","seq":0}}"#, self.id);
                    frame(1, msg.as_bytes(), true, &mut f);
                    self.outbuf.extend_from_slice(&f[..f.len() / 2]);
                    let _ = self.drain_out(Duration::from_secs(5));
                }
                if fault == Fault::HalfFrameFin {
                    let _ = self.raw.shutdown(Shutdown::Write);
                }
                // Read nothing, answer nothing: wait for the client to give up on us.
                let start = Instant::now();
                let mut buf = [0u8; 4096];
                self.raw.set_nonblocking(true).unwrap();
                while start.elapsed() < Duration::from_secs(60) {
                    std::thread::sleep(Duration::from_millis(50));
                    // The raw bytes are read and dropped (no pong goes out): EOF or a reset
                    // means the client left.
                    match self.raw.read(&mut buf) {
                        Ok(0) => {
                            return format!("{fault:?}: client left after {:?}", start.elapsed())
                        }
                        Err(e) if !would_block(&e) => {
                            return format!(
                                "{fault:?}: client left after {:?} ({e})",
                                start.elapsed()
                            )
                        }
                        _ => {}
                    }
                }
                format!("{fault:?}: CLIENT STILL CONNECTED after 60 s")
            }
            Fault::PingFlood => {
                let start = Instant::now();
                let payload = [b'p'; 125];
                let mut n = 0u64;
                while start.elapsed() < Duration::from_secs(10) {
                    while self.outbuf.len() < 64 << 10 {
                        frame(9, &payload, true, &mut self.outbuf);
                        n += 1;
                    }
                    if self.pump_out().is_err() {
                        return format!("ping flood: client left after {n} pings");
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                let _ = socket2::SockRef::from(&self.raw).set_linger(Some(Duration::ZERO));
                format!("ping flood: {n} pings queued, then reset")
            }
            Fault::Oversize => {
                let _ = self.drain_out(Duration::from_secs(5));
                self.data(2, &big_payload(MAX_MESSAGE + 1, self.id), None);
                let _ = self.drain_out(Duration::from_secs(10));
                let until = Instant::now() + Duration::from_secs(5);
                let mut none = None;
                while Instant::now() < until {
                    if self.pump_in().is_err() {
                        return "oversize: client closed TCP".into();
                    }
                    if let Ok(true) = self.handle_input(&mut none) {
                        return "oversize: client closed".into();
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                "oversize: client did NOT close in 5 s".into()
            }
            _ => unreachable!(),
        }
    }
}

// =============================================================================================
// The client and its checks
// =============================================================================================

#[derive(Default)]
struct Checker {
    channels: usize,
    conn: Option<u64>,
    /// A Reconnected event came and no message of the new connection yet.
    expect_new: bool,
    disconnected: bool,
    acked: HashMap<String, u64>,
    connections: u64,
    ticks: u64,
    bigs: u64,
    bytes: u64,
    pings: u64,
    pongs: u64,
    read_timeouts: u64,
    disconnects: HashMap<String, u64>,
    reconnects: u64,
    /// Failed attempts reported since the last drop.
    failed_in_gap: u32,
    attempts_max: u32,
    downtime_max: Duration,
    downtime_total: Duration,
    stall_detect_max: Duration,
    last_message: Option<Instant>,
    errors: Vec<String>,
}

impl Checker {
    fn error(&mut self, e: String) {
        eprintln!("CHECK FAILED: {e}");
        if self.errors.len() < 50 {
            self.errors.push(e);
        }
    }

    fn message(&mut self, m: Message) {
        let now = Instant::now();
        self.last_message = Some(now);
        match m {
            Message::Text(t) => {
                self.bytes += t.len() as u64;
                let v: serde_json::Value = match serde_json::from_str(&t) {
                    Ok(v) => v,
                    Err(e) => return self.error(format!("bad json {e}: {t}")),
                };
                let conn = v["conn"].as_u64().unwrap_or(0);
                if self.conn != Some(conn) {
                    if self.conn.is_some() && !self.expect_new {
                        self.error(format!(
                            "message of connection {conn} while on {:?} with no reconnect event",
                            self.conn
                        ));
                    }
                    if self.disconnected {
                        self.error("message after Disconnected before Reconnected".into());
                    }
                    self.conn = Some(conn);
                    self.acked.clear();
                    self.connections += 1;
                }
                self.expect_new = false;
                if let Some(ch) = v["ack"].as_str() {
                    if self.acked.insert(ch.to_string(), 0).is_some() {
                        self.error(format!("conn {conn}: channel {ch} acked twice"));
                    }
                    return;
                }
                let ch = v["ch"].as_str().unwrap_or("?").to_string();
                let seq = v["seq"].as_u64().unwrap_or(u64::MAX);
                match self.acked.get_mut(&ch) {
                    None => self.error(format!("conn {conn}: tick on {ch} not subscribed")),
                    Some(next) => {
                        if seq != *next {
                            let what = if seq > *next { "LOST" } else { "DUP/REORDER" };
                            let e = format!("conn {conn} {ch}: {what}: seq {seq}, expected {next}");
                            *next = seq + 1;
                            self.error(e);
                        } else {
                            *next += 1;
                        }
                    }
                }
                self.ticks += 1;
            }
            Message::Binary(b) => {
                self.bytes += b.len() as u64;
                self.bigs += 1;
                let conn = u64::from_be_bytes(b[..8].try_into().unwrap());
                if b != big_payload(b.len(), conn) || self.conn != Some(conn) {
                    self.error(format!("big message of {} bytes corrupt", b.len()));
                }
            }
            Message::Ping(_) => self.pings += 1,
            Message::Pong(_) => self.pongs += 1,
            Message::Close(_) => self.error("Close as a message".into()),
        }
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::Message(m) => self.message(m),
            Event::Disconnected(why) => {
                let now = Instant::now();
                if self.disconnected {
                    self.error("two Disconnected in a row".into());
                }
                if !self.expect_new && self.acked.len() != self.channels {
                    self.error(format!(
                        "conn {:?}: {} of {} subscriptions acknowledged at drop",
                        self.conn,
                        self.acked.len(),
                        self.channels
                    ));
                }
                let kind = match &why {
                    Disconnect::Closed(Some(f)) => format!("closed {}", f.code),
                    Disconnect::Closed(None) => "closed".into(),
                    Disconnect::Failed(Error::KeepaliveTimeout(_)) => {
                        let quiet = self.last_message.map_or(Duration::ZERO, |t| now - t);
                        self.stall_detect_max = self.stall_detect_max.max(quiet);
                        if quiet > KEEPALIVE_INTERVAL + KEEPALIVE_TIMEOUT + Duration::from_secs(1) {
                            self.error(format!("stall noticed only after {quiet:?}"));
                        }
                        "keepalive timeout".into()
                    }
                    Disconnect::Failed(e) => {
                        let s = format!("{e:?}");
                        s.split(['(', ' ', '{']).next().unwrap_or("?").to_string()
                            + ": "
                            + &e.to_string().chars().take(60).collect::<String>()
                    }
                    // This soak never replaces a connection itself.
                    other => format!("{other}"),
                };
                eprintln!("client: disconnected: {why}");
                *self.disconnects.entry(kind).or_default() += 1;
                self.disconnected = true;
            }
            Event::Reconnected(r) => {
                eprintln!(
                    "client: reconnected after {:?} in {} attempts",
                    r.downtime, r.attempts
                );
                if !self.disconnected {
                    self.error("Reconnected without Disconnected".into());
                }
                if r.attempts != self.failed_in_gap + 1 {
                    self.error(format!(
                        "reconnected in {} attempts, {} failed ones reported",
                        r.attempts, self.failed_in_gap
                    ));
                }
                self.failed_in_gap = 0;
                self.disconnected = false;
                self.expect_new = true;
                self.reconnects += 1;
                self.attempts_max = self.attempts_max.max(r.attempts);
                self.downtime_max = self.downtime_max.max(r.downtime);
                self.downtime_total += r.downtime;
                // Outages last up to 10 s, plus a backoff of up to 3 s, plus an attempt.
                if r.downtime > Duration::from_secs(20) || r.attempts > 15 {
                    self.error(format!(
                        "reconnect took {:?} ({} attempts)",
                        r.downtime, r.attempts
                    ));
                }
            }
            Event::AttemptFailed(f) => {
                if !self.disconnected {
                    self.error("AttemptFailed while connected".into());
                }
                // Each failed attempt, numbered from 1 in this gap, before its Reconnected.
                self.failed_in_gap += 1;
                if f.attempt != self.failed_in_gap {
                    self.error(format!(
                        "attempt {} reported as {}",
                        self.failed_in_gap, f.attempt
                    ));
                }
            }
            other => self.error(format!("unknown event {other:?}")),
        }
    }
}

/// RSS (KiB), peak RSS, threads, fds, CPU seconds of this process.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    rss: u64,
    hwm: u64,
    threads: u64,
    fds: u64,
    cpu: f64,
}

fn sample() -> Sample {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    Sample {
        rss: field("VmRSS:"),
        hwm: field("VmHWM:"),
        threads: field("Threads:"),
        fds: std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64),
        cpu: ticks / 100.0,
    }
}

struct Monitor {
    start: Instant,
    last: Instant,
    last_ticks: u64,
    last_cpu: f64,
    first: Option<Sample>,
    warm: Option<Sample>,
    max_rss: u64,
    max_fds: u64,
    max_threads: u64,
}

impl Monitor {
    fn new() -> Self {
        Monitor {
            start: Instant::now(),
            last: Instant::now(),
            last_ticks: 0,
            last_cpu: sample().cpu,
            first: Some(sample()),
            warm: None,
            max_rss: 0,
            max_fds: 0,
            max_threads: 0,
        }
    }

    fn tick(&mut self, c: &Checker) {
        if self.last.elapsed() < Duration::from_secs(10) {
            return;
        }
        let s = sample();
        let dt = self.last.elapsed().as_secs_f64();
        let rate = (c.ticks - self.last_ticks) as f64 / dt;
        let cpu = (s.cpu - self.last_cpu) / dt * 100.0;
        self.last = Instant::now();
        self.last_ticks = c.ticks;
        self.last_cpu = s.cpu;
        if self.warm.is_none() && self.start.elapsed() > Duration::from_secs(30) {
            self.warm = Some(s);
        }
        self.max_rss = self.max_rss.max(s.rss);
        self.max_fds = self.max_fds.max(s.fds);
        self.max_threads = self.max_threads.max(s.threads);
        println!(
            "t={:>5.0}s ticks={} rate={rate:.0}/s reconnects={} rss={}KiB hwm={}KiB fds={} threads={} cpu={cpu:.1}% errors={}",
            self.start.elapsed().as_secs_f64(),
            c.ticks,
            c.reconnects,
            s.rss,
            s.hwm,
            s.fds,
            s.threads,
            c.errors.len()
        );
    }

    fn report(&self, c: &Checker, o: &Opts) {
        let s = sample();
        let secs = self.start.elapsed().as_secs_f64();
        let first = self.first.unwrap_or_default();
        let warm = self.warm.unwrap_or(first);
        println!(
            "==== SUMMARY client={} tls={} proxy={:?} rate={} slow_us={} faults={} deflate={} read_timeout={} secs={secs:.0}",
            o.client, o.tls, o.proxy, o.rate, o.slow_us, o.faults, o.deflate, !o.no_read_timeout
        );
        println!(
            "ticks={} ({:.0}/s avg) big={} bytes={} pings={} pongs={} read_timeouts={}",
            c.ticks,
            c.ticks as f64 / secs,
            c.bigs,
            c.bytes,
            c.pings,
            c.pongs,
            c.read_timeouts
        );
        println!(
            "connections={} reconnects={} max_attempts={} downtime max={:?} avg={:?} stall_detect_max={:?}",
            c.connections,
            c.reconnects,
            c.attempts_max,
            c.downtime_max,
            c.downtime_total / (c.reconnects.max(1) as u32),
            c.stall_detect_max
        );
        let mut d: Vec<_> = c.disconnects.iter().collect();
        d.sort();
        println!("disconnects: {d:?}");
        println!(
            "rss start={}KiB at30s={}KiB end={}KiB max={}KiB hwm={}KiB | fds start={} at30s={} end={} max={} | threads start={} end={} max={} | cpu {:.1}s = {:.1}%",
            first.rss, warm.rss, s.rss, self.max_rss.max(s.rss), s.hwm,
            first.fds, warm.fds, s.fds, self.max_fds.max(s.fds),
            first.threads, s.threads, self.max_threads.max(s.threads),
            s.cpu, s.cpu / secs * 100.0
        );
        println!("errors={}", c.errors.len());
        for e in &c.errors {
            println!("  {e}");
        }
    }
}

fn builder(o: &Opts, port: u16, ca: &str) -> ClientBuilder {
    let scheme = if o.tls { "wss" } else { "ws" };
    let mut b = ClientBuilder::new(format!("{scheme}://127.0.0.1:{port}/feed"))
        .keepalive(Keepalive::new(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT))
        .read_timeout((!o.no_read_timeout).then_some(READ_TIMEOUT))
        .write_timeout(Duration::from_secs(5))
        .open_timeout(Duration::from_secs(5))
        .close_timeout(Duration::from_secs(2))
        .max_message_size(Some(MAX_MESSAGE))
        .tls(TlsOptions::new().add_ca_pem_file(ca).unwrap());
    if let Some(p) = &o.proxy {
        b = b.proxy(Proxy::parse(p).unwrap());
    }
    b
}

fn policy() -> Reconnect {
    Reconnect::new()
        .initial_delay(Duration::from_millis(200))
        .max_delay(Duration::from_secs(3))
        .stable_after(Duration::from_secs(2))
        .max_attempts(Some(30))
}

fn subs(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!(r#"{{"op":"subscribe","channel":"ch{i}"}}"#))
        .collect()
}

fn slow(o: &Opts, c: &Checker) {
    if o.slow_us > 0 && c.ticks % 10 == 0 {
        std::thread::sleep(Duration::from_micros(o.slow_us * 10));
    }
}

fn run_blocking(o: &Opts, port: u16, ca: &str) -> Checker {
    let mut c = Checker {
        channels: o.channels,
        ..Default::default()
    };
    let mut mon = Monitor::new();
    let mut feed = builder(o, port, ca).connect_reconnecting(policy()).unwrap();
    for s in subs(o.channels) {
        feed.subscribe(s).unwrap();
    }
    let end = Instant::now() + Duration::from_secs(o.secs);
    while Instant::now() < end {
        match feed.next_event() {
            Ok(e) => c.event(e),
            Err(Error::Timeout(Phase::Read)) => c.read_timeouts += 1,
            Err(e) => {
                c.error(format!("next_event failed: {e} ({e:?})"));
                break;
            }
        }
        slow(o, &c);
        mon.tick(&c);
    }
    let closing = Instant::now();
    let closed = feed.close(None);
    println!("close: {closed:?} in {:?}", closing.elapsed());
    if closing.elapsed() > Duration::from_secs(3) {
        c.error(format!("close took {:?}", closing.elapsed()));
    }
    mon.report(&c, o);
    c
}

fn run_async(o: &Opts, port: u16, ca: &str) -> Checker {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = Checker {
            channels: o.channels,
            ..Default::default()
        };
        let mut mon = Monitor::new();
        let mut feed = builder(o, port, ca)
            .connect_reconnecting_async(policy())
            .await
            .unwrap();
        for s in subs(o.channels) {
            feed.subscribe(s).await.unwrap();
        }
        let end = Instant::now() + Duration::from_secs(o.secs);
        while Instant::now() < end {
            // A timer raced against the feed, as a program with other work would: next_event
            // is cancellation safe.
            let r = tokio::select! {
                r = feed.next_event() => Some(r),
                _ = tokio::time::sleep(Duration::from_millis(700)) => None,
            };
            match r {
                None => {}
                Some(Ok(e)) => c.event(e),
                Some(Err(Error::Timeout(Phase::Read))) => c.read_timeouts += 1,
                Some(Err(e)) => {
                    c.error(format!("next_event failed: {e} ({e:?})"));
                    break;
                }
            }
            if o.slow_us > 0 && c.ticks % 10 == 0 {
                tokio::time::sleep(Duration::from_micros(o.slow_us * 10)).await;
            }
            mon.tick(&c);
        }
        let closing = Instant::now();
        let closed = tokio::time::timeout(Duration::from_secs(10), feed.close(None)).await;
        println!("close: {closed:?} in {:?}", closing.elapsed());
        if closing.elapsed() > Duration::from_secs(3) {
            c.error(format!("close took {:?}", closing.elapsed()));
        }
        mon.report(&c, o);
        c
    })
}

fn main() {
    let mut o = opts();
    if o.seed == 0 {
        o.seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        println!("seed {}", o.seed);
    }
    if o.serve {
        return serve(o);
    }
    // Certificate and server.
    let dir = std::env::temp_dir().join(format!("wsc-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([
        "--serve",
        "--rate",
        &o.rate.to_string(),
        "--faults",
        &o.faults,
    ]);
    cmd.args([
        "--min-life",
        &o.min_life.to_string(),
        "--max-life",
        &o.max_life.to_string(),
    ]);
    cmd.args(["--seed", &o.seed.to_string()]);
    if o.deflate {
        cmd.arg("--deflate");
    }
    if o.tls {
        cmd.args([
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ]);
    }
    /// Stops the server however the client ends (a panic included).
    struct Server(Child);
    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Server(cmd.stdout(Stdio::piped()).spawn().unwrap());
    let mut line = String::new();
    {
        use std::io::BufRead;
        let mut r = io::BufReader::new(child.0.stdout.as_mut().unwrap());
        r.read_line(&mut line).unwrap();
    }
    let port: u16 = line.trim().parse().unwrap();
    let c = match o.client.as_str() {
        "blocking" => run_blocking(&o, port, cert.to_str().unwrap()),
        "async" => run_async(&o, port, cert.to_str().unwrap()),
        other => panic!("--client blocking|async, not {other}"),
    };
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
    std::process::exit(i32::from(!c.errors.is_empty()));
}
