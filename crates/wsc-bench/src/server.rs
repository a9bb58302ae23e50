//! `wsc-bench serve`: one server for every scenario, a thread per open connection (each
//! thread accepts its connections itself and serves one after another), routed by the path
//! of the upgrade request. The handshake is wsc's blocking `Acceptor`; the feeds are then
//! written as pre-encoded frames with raw `write_all` calls, and `/sink` (the 16 MiB echo)
//! echoes raw frames, so the server is far faster than any client it serves.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use wsc::proto::deflate::DeflateConfig;
use wsc::proto::frame::{FrameHeader, OpCode};
use wsc::proto::mask::apply_mask;
use wsc::proto::Config;
use wsc::server::Acceptor;
use wsc::Message;

use crate::impls::{err, Result};
use crate::payload::{feed_message, frame, header_len, CompressedFeed};

/// About this many bytes of frames are encoded once and written again and again.
const CHUNK: usize = 256 << 10;
/// `/sink` reads and unmasks payloads in pieces of this size.
const SINK_PIECE: usize = 256 << 10;
/// Stack of each connection thread (idle runs hold thousands of them).
const THREAD_STACK: usize = 256 << 10;
/// How long a finished feed waits for the client's close before letting go.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// Serves until killed. Prints `listening ADDR` on stdout once it accepts connections.
pub fn serve(addr: &str) -> Result<()> {
    let listener = TcpListener::bind(addr)?;
    let shared = Arc::new(Shared {
        listener,
        waiting: AtomicUsize::new(0),
        compressed: CompressedFeed::new()?,
        verbose: std::env::var_os("WSC_BENCH_VERBOSE").is_some_and(|v| v != "0"),
    });
    println!("listening {}", shared.listener.local_addr()?);
    io::stdout().flush()?;
    // The first connection thread; the others are started as they are needed. This thread
    // stays out of it, so that the server lives on whichever threads exit.
    spawn_acceptor(&shared).map_err(|e| err(format!("cannot start a connection thread: {e}")))?;
    loop {
        thread::park();
    }
}

/// What the connection threads share.
struct Shared {
    listener: TcpListener,
    /// Threads waiting in (or on their way to) `accept`.
    waiting: AtomicUsize,
    compressed: CompressedFeed,
    verbose: bool,
}

/// At most this many threads wait for connections; one more that finishes its connection
/// exits.
const MAX_WAITING: usize = 4;

/// A connection thread: accepts a connection and serves it, then the next. The last thread
/// waiting starts another before it serves, so that a connection that stays open (a feed, an
/// idle one) never keeps the next waiting.
///
/// Why not a new thread per connection, accepted by one thread: `connect`'s connections
/// come one after another, and starting a thread for each (clone, a stack mapped and
/// unmapped) and handing it the connection (a wake-up, a context switch) cost the server
/// about as much again as the client's whole part, the same for every client, which pulled
/// all of `connect`'s ratios toward 1 (raw / tungstenite: about 1.08 before, 1.3 after).
fn accept_loop(shared: &Arc<Shared>) {
    loop {
        let tcp = match shared.listener.accept() {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                eprintln!("server: accept: {e}");
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if shared.waiting.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Err(e) = spawn_acceptor(shared) {
                // The next connection waits until this one is done.
                eprintln!("server: cannot start a connection thread: {e}");
            }
        }
        if let Err(e) = handle(tcp, &shared.compressed) {
            if shared.verbose {
                eprintln!("server: {e}");
            }
        }
        if shared.waiting.fetch_add(1, Ordering::AcqRel) >= MAX_WAITING {
            shared.waiting.fetch_sub(1, Ordering::AcqRel);
            return;
        }
    }
}

/// Starts one more thread waiting for connections (counted as waiting from now on).
fn spawn_acceptor(shared: &Arc<Shared>) -> io::Result<()> {
    shared.waiting.fetch_add(1, Ordering::AcqRel);
    let mine = shared.clone();
    let spawned = thread::Builder::new()
        .name("conn".into())
        .stack_size(THREAD_STACK)
        .spawn(move || accept_loop(&mine));
    if spawned.is_err() {
        shared.waiting.fetch_sub(1, Ordering::AcqRel);
    }
    spawned.map(drop)
}

fn handle(tcp: TcpStream, compressed: &CompressedFeed) -> Result<()> {
    tcp.set_nodelay(true)?;
    let route = peek_route(&tcp)?;
    match route.as_str() {
        "/feed" => feed(tcp),
        "/compressed" => compressed_feed(tcp, compressed),
        "/echo" => echo(tcp, true),
        "/sink" => sink(tcp),
        "/close" => echo(tcp, false),
        _ => {
            let mut w = &tcp;
            w.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )?;
            Err(err(format!("no route {route}")))
        }
    }
}

/// The path of the request (without its query), read without consuming anything, so that
/// the `Acceptor` configured for the route reads the request itself.
fn peek_route(tcp: &TcpStream) -> Result<String> {
    let mut buf = [0u8; 2048];
    for _ in 0..1000 {
        let n = tcp.peek(&mut buf)?;
        if n == 0 {
            return Err(err("closed before the request"));
        }
        if let Some(end) = buf[..n].windows(2).position(|w| w == b"\r\n") {
            let line = std::str::from_utf8(&buf[..end]).map_err(|_| err("request line"))?;
            let target = line.split(' ').nth(1).ok_or_else(|| err("request line"))?;
            return Ok(target.split('?').next().unwrap_or("").to_string());
        }
        if n == buf.len() {
            return Err(err("request line too long"));
        }
        // Part of the request line only: wait for the rest.
        thread::sleep(Duration::from_millis(1));
    }
    Err(err("no request line"))
}

/// A `key=value` number from the query of `path`.
fn query(path: &str, key: &str) -> Option<u64> {
    let (_, q) = path.split_once('?')?;
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

/// No compression, no size limits (clients send 16 MiB messages to `/sink`).
fn plain_acceptor() -> Acceptor {
    Acceptor::new().deflate(None).config(
        Config::default()
            .max_frame_size(None)
            .max_message_size(None),
    )
}

/// Close 1000, unmasked.
const CLOSE_NORMAL: [u8; 4] = [0x88, 0x02, 0x03, 0xE8];

/// `/feed?size=N&count=M`: M text messages of N bytes, then close 1000.
fn feed(tcp: TcpStream) -> Result<()> {
    let (ws, request) = plain_acceptor().accept(&tcp)?;
    drop(ws); // nothing was read past the request: the client waits for the feed
    let size = query(&request.path, "size").unwrap_or(100) as usize;
    let count = query(&request.path, "count").unwrap_or(1000);
    let frame_len = header_len(size) + size;
    let per_chunk = (CHUNK / frame_len).max(1);
    let mut chunk = Vec::with_capacity(per_chunk * frame_len);
    for seq in 0..per_chunk as u64 {
        frame(&mut chunk, OpCode::Text, false, &feed_message(seq, size));
    }
    debug_assert_eq!(chunk.len(), per_chunk * frame_len);
    let mut w = &tcp;
    for _ in 0..count / per_chunk as u64 {
        w.write_all(&chunk)?;
    }
    let rest = (count % per_chunk as u64) as usize;
    w.write_all(&chunk[..rest * frame_len])?;
    w.write_all(&CLOSE_NORMAL)?;
    closed_by_client(wait_for_close(&tcp)?, "/feed")
}

/// An error (logged with WSC_BENCH_VERBOSE) when the client left without a close frame.
fn closed_by_client(close_frame: bool, route: &str) -> Result<()> {
    if close_frame {
        Ok(())
    } else {
        Err(err(format!(
            "{route}: the client left without a close frame"
        )))
    }
}

/// `/compressed?count=M`: M compressed ticker messages, then close 1000. The client must
/// offer permessage-deflate; the answer includes `server_no_context_takeover`.
fn compressed_feed(tcp: TcpStream, feed: &CompressedFeed) -> Result<()> {
    let config = DeflateConfig::default()
        .server_no_context_takeover(true)
        .client_max_window_bits(None);
    let acceptor = plain_acceptor().deflate(Some(config));
    let (ws, request) = acceptor.accept(&tcp)?;
    let agreed = ws
        .connection()
        .deflate_params()
        .is_some_and(|p| p.local_no_context_takeover);
    drop(ws);
    let mut w = &tcp;
    if !agreed {
        // 1008, "permessage-deflate required"
        let reason = b"permessage-deflate required";
        let mut close = vec![0x88, (2 + reason.len()) as u8, 0x03, 0xF0];
        close.extend_from_slice(reason);
        w.write_all(&close)?;
        let _ = wait_for_close(&tcp)?;
        return Err(err(
            "/compressed: the client did not offer permessage-deflate",
        ));
    }
    let count = query(&request.path, "count").unwrap_or(1000);
    debug_assert!(feed.messages() > 0);
    for _ in 0..count / feed.messages() {
        w.write_all(&feed.frames)?;
    }
    let rest = (count % feed.messages()) as usize;
    w.write_all(&feed.frames[..feed.offsets[rest]])?;
    w.write_all(&CLOSE_NORMAL)?;
    closed_by_client(wait_for_close(&tcp)?, "/compressed")
}

/// After our close: reads (and drops) what the client sends until its close frame or EOF,
/// then returns whether the close frame came; the caller then closes TCP first, as a server
/// should.
fn wait_for_close(tcp: &TcpStream) -> Result<bool> {
    tcp.set_read_timeout(Some(CLOSE_WAIT))?;
    let mut r = tcp;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        while let Some((header, len)) = FrameHeader::decode(&buf).map_err(|e| err(e.to_string()))? {
            let total = len + header.payload_len as usize;
            if buf.len() < total {
                break;
            }
            if header.opcode == OpCode::Close {
                return Ok(true);
            }
            buf.drain(..total);
        }
        match r.read(&mut chunk) {
            Ok(0) => return Ok(false),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// `/sink`: every frame back as it came, unmasked, frame by frame (a valid echo of each
/// message, however the client fragments it). No `WebSocket` in between: the header is read,
/// the payload read straight into a reused buffer, unmasked in place and written back after
/// its new header, so that the server copies each byte no more than the kernel does. Pings
/// are answered; a close is echoed and ends the connection.
fn sink(tcp: TcpStream) -> Result<()> {
    let (ws, _request) = plain_acceptor().accept(&tcp)?;
    if ws.connection().buffered_input() > 0 {
        return Err(err("/sink: data before the handshake completed"));
    }
    drop(ws);
    let (mut r, mut w) = (&tcp, &tcp);
    let mut head = [0u8; 14];
    let mut payload = Vec::new();
    loop {
        let header = read_header(&mut r, &mut head)?;
        let len = usize::try_from(header.payload_len).map_err(|_| err("/sink: frame too big"))?;
        if payload.len() < len {
            payload.resize(len, 0);
        }
        let key = header.mask.ok_or_else(|| err("/sink: unmasked frame"))?;
        // In cache-sized pieces, each unmasked while it is still in the cache.
        for (i, piece) in payload[..len].chunks_mut(SINK_PIECE).enumerate() {
            r.read_exact(piece)?;
            apply_mask(piece, key, i * SINK_PIECE);
        }
        let opcode = match header.opcode {
            OpCode::Ping => OpCode::Pong,
            OpCode::Pong => continue,
            op => op,
        };
        let reply = FrameHeader {
            mask: None,
            opcode,
            ..header
        };
        let mut out = Vec::with_capacity(10);
        reply.encode(&mut out);
        w.write_all(&out)?;
        w.write_all(&payload[..len])?;
        if opcode == OpCode::Close {
            return Ok(());
        }
    }
}

/// Reads one frame header (2 to 14 bytes) off `r`.
fn read_header(r: &mut impl Read, head: &mut [u8; 14]) -> Result<FrameHeader> {
    let mut have = 2;
    r.read_exact(&mut head[..2])?;
    loop {
        match FrameHeader::decode(&head[..have]).map_err(|e| err(e.to_string()))? {
            Some((header, _)) => return Ok(header),
            None => {
                // The rest of the header: its length follows from the first two bytes.
                let need =
                    2 + match head[1] & 0x7F {
                        126 => 2,
                        127 => 8,
                        _ => 0,
                    } + if head[1] & 0x80 != 0 { 4 } else { 0 };
                if need <= have {
                    return Err(err("/sink: bad frame header"));
                }
                r.read_exact(&mut head[have..need])?;
                have = need;
            }
        }
    }
}

/// `/echo` (every data message back, same opcode, flushed at once) and
/// `/close` (no echo: waits for the client's close and answers it).
fn echo(tcp: TcpStream, echo: bool) -> Result<()> {
    let (mut ws, _request) = plain_acceptor().accept(tcp)?;
    loop {
        match ws.read() {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                if echo {
                    ws.send(m)?;
                }
            }
            // The close reply went out in `read`; returning closes TCP.
            Ok(Message::Close(_)) | Err(wsc::Error::ConnectionClosed) => return Ok(()),
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
}
