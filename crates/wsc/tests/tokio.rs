#![cfg(feature = "tokio")]
//! The async driver (`wsc::tokio`) against real peers on loopback: our own async and blocking
//! server roles, and raw TCP servers that misbehave on purpose. Every test body runs under a
//! deadline, so a driver that hangs fails the test instead of stalling the run.

mod common;

use std::collections::VecDeque;
use std::future::Future;
use std::time::{Duration, Instant};

use futures_util::{stream, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout};
use wsc::bytes::Bytes;
use wsc::proto::handshake::{accept_response, parse_request};
use wsc::server::Acceptor;
use wsc::tokio::WebSocketStream;
use wsc::{ClientBuilder, CloseCode, CloseFrame, Error, Message, Phase, ProtocolError};

/// The longest any one test may take.
const BUDGET: Duration = Duration::from_secs(120);

/// Frame header bits, for raw servers.
const FIN: u8 = 0x80;
const RSV2: u8 = 0x20;
const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Runs `f` within `limit`, failing the test if it does not finish.
async fn within<F: Future>(limit: Duration, f: F) -> F::Output {
    match timeout(limit, f).await {
        Ok(out) => out,
        Err(_) => panic!("did not finish within {limit:?}"),
    }
}

/// Deterministic incompressible bytes.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Noise of `len` (at least 4) bytes that starts with `i`, so a receiver can tell which
/// message it is and that it is intact.
fn numbered(i: u32, len: usize) -> Vec<u8> {
    let mut data = noise(u64::from(i) + 1, len.max(4));
    data[..4].copy_from_slice(&i.to_be_bytes());
    data
}

/// The number a [`numbered`] payload carries, after checking the rest of it.
fn number_of(data: &[u8]) -> u32 {
    let i = u32::from_be_bytes(data[..4].try_into().unwrap());
    assert!(
        data == &numbered(i, data.len())[..],
        "payload {i} is corrupt"
    );
    i
}

/// A client builder with short, test-sized timeouts.
fn builder(url: &str) -> ClientBuilder {
    ClientBuilder::new(url)
        .connect_timeout(Duration::from_secs(10))
        .handshake_timeout(Duration::from_secs(10))
        .close_timeout(Some(Duration::from_secs(10)))
}

/// Turns permessage-deflate on or off (a no-op without the `deflate` feature).
fn with_compression(b: ClientBuilder, on: bool) -> ClientBuilder {
    #[cfg(feature = "deflate")]
    return b.compression(on);
    #[cfg(not(feature = "deflate"))]
    {
        let _ = on;
        b
    }
}

/// Whether permessage-deflate was negotiated.
fn compressed<S: AsyncRead + AsyncWrite + Unpin>(ws: &WebSocketStream<S>) -> bool {
    #[cfg(feature = "deflate")]
    return ws.connection().deflate_params().is_some();
    #[cfg(not(feature = "deflate"))]
    {
        let _ = ws;
        false
    }
}

async fn listen() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    (listener, url)
}

/// Echoes data messages until the connection ends; returns everything it received.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocketStream<S>) -> Vec<Message> {
    let mut seen = Vec::new();
    while let Some(message) = ws.recv().await {
        let message = message.unwrap_or_else(|e| panic!("echo server: {e}"));
        if message.is_data() {
            ws.send(message.clone()).await.unwrap();
        }
        seen.push(message);
    }
    seen
}

/// Our async server role on a tokio listener: accepts one connection and echoes.
async fn async_echo_server() -> (String, tokio::task::JoinHandle<Vec<Message>>) {
    let (listener, url) = listen().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (ws, request) = Acceptor::new().accept_async(tcp).await.unwrap();
        assert_eq!(request.path, "/echo");
        echo(ws).await
    });
    (url, server)
}

/// A client connected to [`async_echo_server`] with the default test settings.
async fn echo_client() -> (
    WebSocketStream<wsc::tokio::TokioStream>,
    tokio::task::JoinHandle<Vec<Message>>,
) {
    let (url, server) = async_echo_server().await;
    let (ws, _) = builder(&format!("{url}/echo"))
        .connect_async()
        .await
        .unwrap();
    (ws, server)
}

/// Reads the upgrade request on a raw socket and answers 101 (no extensions).
async fn raw_accept(tcp: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = tcp.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the client hung up during the handshake");
        buf.extend_from_slice(&chunk[..n]);
        if let Some((request, used)) = parse_request(&buf, 1 << 16).unwrap() {
            assert_eq!(used, buf.len(), "the client sent frames before the 101");
            tcp.write_all(&accept_response(&request, None, &[]))
                .await
                .unwrap();
            return;
        }
    }
}

/// An unmasked frame as a server sends it; `head` is the first byte (FIN, RSV, opcode).
fn server_frame(head: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![head];
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// Reads one client frame from a raw socket: (first byte, unmasked payload).
async fn read_client_frame(tcp: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    tcp.read_exact(&mut head).await?;
    assert_ne!(head[1] & 0x80, 0, "client frames must be masked");
    let len = match head[1] & 0x7F {
        126 => usize::from(tcp.read_u16().await?),
        127 => usize::try_from(tcp.read_u64().await?).unwrap(),
        n => usize::from(n),
    };
    let mut key = [0u8; 4];
    tcp.read_exact(&mut key).await?;
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).await?;
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
    Ok((head[0], payload))
}

/// The messages of an echo round trip: text, empty, unicode, binary, and 5 MB of each kind.
fn round_trip_messages() -> Vec<Message> {
    let mut big_text = "the quick brown fox jumps over the lazy dog. ".repeat(5_000_000 / 45 + 1);
    big_text.truncate(5_000_000);
    vec![
        Message::text("hello"),
        Message::text(""),
        Message::text("grüße, 世界 🦀"),
        Message::binary(vec![0u8, 1, 2, 255]),
        Message::binary(Vec::new()),
        Message::binary(noise(7, 5_000_000)),
        Message::text(big_text),
        Message::binary(noise(8, 70_000)),
    ]
}

/// Sends every round-trip message, checks each echo, then closes with 4000 "bye" and checks
/// that `close` returns the server's answer.
async fn round_trip(ws: &mut WebSocketStream<wsc::tokio::TokioStream>) {
    for message in round_trip_messages() {
        ws.send(message.clone()).await.unwrap();
        let echoed = ws.recv().await.expect("connection ended").unwrap();
        assert!(echoed == message, "echo differs (len {})", message.len());
    }
    let reply = ws
        .close(Some(CloseFrame::new(4000u16, "bye")))
        .await
        .unwrap();
    // Both server roles echo the code of the client's close frame.
    assert_eq!(reply, Some(CloseFrame::new(4000u16, "")));
    assert!(ws.recv().await.is_none());
    assert!(matches!(
        ws.send_text("late").await,
        Err(Error::ConnectionClosed)
    ));
    // Closing is over; a second close gives its outcome again (before: `None`).
    assert_eq!(
        ws.close(None).await.unwrap(),
        Some(CloseFrame::new(4000u16, ""))
    );
}

fn assert_server_saw_round_trip(seen: &[Message]) {
    let expected = round_trip_messages();
    assert_eq!(seen.len(), expected.len() + 1);
    for (got, want) in seen.iter().zip(&expected) {
        assert!(got == want, "the server got a different message");
    }
    assert_eq!(
        seen.last(),
        Some(&Message::Close(Some(CloseFrame::new(4000u16, "bye"))))
    );
}

// ----- 1. echo round trips -----

/// Big messages both ways, async: owned sends go out block by block (the server, our async
/// role, receives them with direct reads of masked payloads), borrowed reads of the echoes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_owned_sends_and_borrowed_reads_round_trip_intact() {
    within(BUDGET, async {
        let (mut ws, server) = echo_client().await;
        for (i, size) in [3_000_000usize, 600_000, 5_000_003].into_iter().enumerate() {
            let data = numbered(i as u32, size);
            ws.send(Message::binary(data.clone())).await.unwrap();
            match ws.recv_ref().await.unwrap().unwrap() {
                wsc::MessageRef::Binary(got) => assert!(got == &data[..], "{size} differs"),
                other => panic!("expected binary, got {other:?}"),
            }
        }
        ws.close(None).await.unwrap();
        assert_eq!(server.await.unwrap().len(), 4);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_round_trip_against_the_async_server_role() {
    within(BUDGET, async {
        for compression in [true, false] {
            let (url, server) = async_echo_server().await;
            let (mut ws, response) = with_compression(builder(&format!("{url}/echo")), compression)
                .connect_async()
                .await
                .unwrap();
            assert_eq!(response.status, 101);
            assert_eq!(compressed(&ws), compression && cfg!(feature = "deflate"));
            round_trip(&mut ws).await;
            assert_server_saw_round_trip(&server.await.unwrap());
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_round_trip_against_the_blocking_server_role() {
    within(BUDGET, async {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("ws://{}/echo", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            tcp.set_read_timeout(Some(BUDGET)).unwrap();
            let mut ws = wsc::server::accept(tcp).unwrap();
            let mut seen = Vec::new();
            loop {
                let message = ws.read().unwrap_or_else(|e| panic!("blocking server: {e}"));
                if message.is_data() {
                    ws.send(message.clone()).unwrap();
                }
                let done = matches!(message, Message::Close(_));
                seen.push(message);
                if done {
                    return seen;
                }
            }
        });
        let (mut ws, _) = builder(&url).connect_async().await.unwrap();
        assert_eq!(compressed(&ws), cfg!(feature = "deflate"));
        round_trip(&mut ws).await;
        let seen = tokio::task::spawn_blocking(move || server.join().unwrap())
            .await
            .unwrap();
        assert_server_saw_round_trip(&seen);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_server_role_closes_first() {
    within(BUDGET, async {
        let (listener, url) = listen().await;
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = wsc::tokio::accept(tcp).await.unwrap();
            ws.send_text("last words").await.unwrap();
            ws.close(Some(CloseFrame::new(4001u16, "done"))).await
        });
        let (mut ws, _) = builder(&url).connect_async().await.unwrap();
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::text("last words")
        );
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::Close(Some(CloseFrame::new(4001u16, "done")))
        );
        // The server closes TCP once it has our answer.
        assert!(ws.recv().await.is_none());
        assert!(ws.recv().await.is_none());
        assert!(matches!(ws.ping("x").await, Err(Error::ConnectionClosed)));
        let reply = server.await.unwrap().unwrap();
        assert_eq!(reply, Some(CloseFrame::new(4001u16, "")));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_server_role_closes_tcp_after_the_close_handshake_while_still_held() {
    within(BUDGET, async {
        let (listener, url) = listen().await;
        let (done, held) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = wsc::tokio::accept(tcp).await.unwrap();
            let reply = ws.close(Some(CloseFrame::new(1001u16, "restart"))).await;
            // The stream is kept (a server that goes on with other work before dropping it).
            let _ = held.await;
            (reply, ws)
        });
        let (mut ws, _) = builder(&url)
            .close_timeout(Some(Duration::from_secs(5)))
            .connect_async()
            .await
            .unwrap();
        assert!(matches!(ws.recv().await, Some(Ok(Message::Close(Some(_))))));
        let started = Instant::now();
        assert!(ws.recv().await.is_none());
        // Before, the client waited its whole close timeout for TCP to end.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        drop(done);
        let (reply, _ws) = server.await.unwrap();
        assert_eq!(reply.unwrap(), Some(CloseFrame::new(1001u16, "")));
    })
    .await;
}

/// The server answers the close after a while and then keeps TCP open. `close` must still
/// return the server's close frame (like the blocking `close_and_wait`), after waiting at most
/// the close timeout for TCP to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn close_returns_the_servers_frame_when_the_server_keeps_tcp_open() {
    within(BUDGET, async {
        let (listener, url) = listen().await;
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            raw_accept(&mut tcp).await;
            let (head, payload) = read_client_frame(&mut tcp).await.unwrap();
            assert_eq!(head, FIN | OP_CLOSE);
            assert_eq!(&payload[..2], &4000u16.to_be_bytes());
            sleep(Duration::from_millis(200)).await;
            let mut close = 1000u16.to_be_bytes().to_vec();
            close.extend_from_slice(b"srv");
            tcp.write_all(&server_frame(FIN | OP_CLOSE, &close))
                .await
                .unwrap();
            sleep(Duration::from_secs(5)).await;
        });
        let close_timeout = Duration::from_millis(500);
        let (mut ws, _) = builder(&url)
            .close_timeout(Some(close_timeout))
            .connect_async()
            .await
            .unwrap();
        let started = Instant::now();
        let reply = ws.close(Some(CloseFrame::new(4000u16, "bye"))).await;
        let took = started.elapsed();
        server.abort();
        assert_eq!(reply.unwrap(), Some(CloseFrame::new(1000u16, "srv")));
        assert!(took < Duration::from_secs(2), "close took {took:?}");
    })
    .await;
}

// ----- 2. split halves from two tasks -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writing_half_sends_text_binary_and_pings_as_the_stream_does() {
    within(BUDGET, async {
        let (ws, server) = echo_client().await;
        let (mut reader, mut writer) = ws.split();
        assert_eq!(
            format!("{reader:?} {writer:?}"),
            "WsReader { .. } WsWriter { .. }"
        );
        writer.send_text("text").await.unwrap();
        writer.send_binary(vec![1u8, 2, 3]).await.unwrap();
        writer.ping("are you there").await.unwrap();
        assert_eq!(reader.recv().await.unwrap().unwrap(), Message::text("text"));
        assert_eq!(
            reader.recv().await.unwrap().unwrap(),
            Message::binary(vec![1u8, 2, 3])
        );
        assert_eq!(
            reader.recv().await.unwrap().unwrap(),
            Message::Pong("are you there".into())
        );
        writer.close(None).await.unwrap();
        assert_eq!(reader.recv().await.unwrap().unwrap(), Message::Close(None));
        let _ = server.await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_halves_send_and_receive_concurrently_in_order() {
    within(BUDGET, async {
        const N: u32 = 1500;
        // Sizes cycle up to 96 KiB: about 36 MB each way, far more than the socket buffers
        // hold, so the halves must make progress together.
        let size = |i: u32| 4 + (i as usize % 7) * 16 * 1024 + (i as usize % 13);
        let (url, server) = async_echo_server().await;
        let (ws, _) = with_compression(builder(&format!("{url}/echo")), false)
            .connect_async()
            .await
            .unwrap();
        let (mut reader, mut writer) = ws.split();
        let reading = tokio::spawn(async move {
            let mut next = 0u32;
            while next < N {
                match reader.recv().await {
                    Some(Ok(Message::Binary(data))) => {
                        assert_eq!(data.len(), size(next));
                        assert_eq!(number_of(&data), next, "out of order");
                        next += 1;
                    }
                    other => panic!("reader: {other:?}"),
                }
            }
            reader
        });
        let writing = tokio::spawn(async move {
            for i in 0..N {
                writer
                    .send(Message::binary(numbered(i, size(i))))
                    .await
                    .unwrap();
            }
            writer
        });
        let (reader, writer) = tokio::join!(reading, writing);
        let (mut reader, mut writer) = (reader.unwrap(), writer.unwrap());
        writer.close(None).await.unwrap();
        assert_eq!(reader.recv().await.unwrap().unwrap(), Message::Close(None));
        assert!(reader.recv().await.is_none());
        assert!(matches!(
            writer.send(Message::text("late")).await,
            Err(Error::ConnectionClosed)
        ));
        let seen = server.await.unwrap();
        assert_eq!(seen.len(), N as usize + 1);
        assert_eq!(seen.last(), Some(&Message::Close(None)));
    })
    .await;
}

/// Borrowed reads of a burst written at once (so that lent messages, a ping, fragments and
/// the close sit in one read buffer): everything comes out in order, the ping is answered
/// between lent messages, and the close ends the stream with the close reply sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn borrowed_reads_of_a_mixed_burst_answer_pings_in_order() {
    within(BUDGET, async {
        let (burst, expected) = common::mixed_burst();
        let (listener, url) = listen().await;
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            raw_accept(&mut tcp).await;
            tcp.write_all(&burst).await.unwrap();
            let pong = read_client_frame(&mut tcp).await.unwrap();
            let close = read_client_frame(&mut tcp).await.unwrap();
            (pong, close)
        });
        let (mut ws, _) = builder(&url).connect_async().await.unwrap();
        let mut seen = Vec::new();
        while let Some(message) = ws.recv_ref().await {
            seen.push(common::describe(message.unwrap()));
        }
        assert_eq!(seen, expected);
        let ((pong_head, pong), (close_head, close)) = server.await.unwrap();
        assert_eq!(
            (pong_head, &pong[..]),
            (FIN | OP_PONG, &b"are you there"[..])
        );
        assert_eq!(
            (close_head, &close[..2]),
            (FIN | OP_CLOSE, &1000u16.to_be_bytes()[..])
        );
    })
    .await;
}

/// The server pings `count` times, each time waiting for the matching pong (while counting
/// the numbered data messages that arrive meanwhile, until `expect_data`), then closes.
/// Returns how many data messages it got and the client's answer to its close.
async fn pinging_server(
    listener: TcpListener,
    count: u32,
    expect_data: u32,
) -> (u32, Option<CloseFrame>) {
    let (tcp, _) = listener.accept().await.unwrap();
    let mut ws = wsc::tokio::accept(tcp).await.unwrap();
    let mut data = 0u32;
    let mut outstanding = VecDeque::new();
    let mut pinged = 0u32;
    while pinged < count || !outstanding.is_empty() || data < expect_data {
        if pinged < count && outstanding.is_empty() {
            let payload = Bytes::from(format!("ping {pinged}"));
            ws.ping(payload.clone()).await.unwrap();
            outstanding.push_back(payload);
            pinged += 1;
        }
        let next = timeout(Duration::from_secs(20), ws.recv()).await;
        match next.expect("no pong or message within 20 s") {
            Some(Ok(Message::Pong(payload))) => {
                assert_eq!(Some(payload), outstanding.pop_front(), "pong payload");
            }
            Some(Ok(Message::Binary(payload))) => {
                assert_eq!(number_of(&payload), data);
                data += 1;
            }
            other => panic!("pinging server: {other:?}"),
        }
    }
    let reply = ws.close(Some(CloseFrame::new(1000u16, ""))).await.unwrap();
    (data, reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_half_answers_pings_while_the_writer_is_idle() {
    within(BUDGET, async {
        let (listener, url) = listen().await;
        let server = tokio::spawn(pinging_server(listener, 25, 0));
        let (ws, _) = builder(&url).connect_async().await.unwrap();
        let (mut reader, writer) = ws.split();
        let reading = tokio::spawn(async move {
            let mut pings = Vec::new();
            loop {
                match reader.recv().await {
                    Some(Ok(Message::Ping(payload))) => pings.push(payload),
                    Some(Ok(Message::Close(frame))) => {
                        assert_eq!(frame, Some(CloseFrame::new(1000u16, "")));
                    }
                    None => return pings,
                    other => panic!("reader: {other:?}"),
                }
            }
        });
        let pings = reading.await.unwrap();
        let expected: Vec<Bytes> = (0..25).map(|i| format!("ping {i}").into()).collect();
        assert_eq!(pings, expected);
        assert_eq!(
            server.await.unwrap(),
            (0, Some(CloseFrame::new(1000u16, "")))
        );
        drop(writer);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_half_answers_pings_while_the_writer_is_busy() {
    within(BUDGET, async {
        const N: u32 = 400;
        let (listener, url) = listen().await;
        let server = tokio::spawn(pinging_server(listener, 40, N));
        let (ws, _) = with_compression(builder(&url), false)
            .connect_async()
            .await
            .unwrap();
        let (mut reader, mut writer) = ws.split();
        let reading = tokio::spawn(async move {
            let mut pings = 0;
            loop {
                match reader.recv().await {
                    Some(Ok(Message::Ping(_))) => pings += 1,
                    Some(Ok(Message::Close(_))) => {}
                    None => return pings,
                    other => panic!("reader: {other:?}"),
                }
            }
        });
        let writing = tokio::spawn(async move {
            for i in 0..N {
                writer
                    .send(Message::binary(numbered(i, 32 * 1024)))
                    .await
                    .unwrap();
            }
            writer
        });
        let writer = writing.await.unwrap();
        assert_eq!(reading.await.unwrap(), 40);
        assert_eq!(
            server.await.unwrap(),
            (N, Some(CloseFrame::new(1000u16, "")))
        );
        drop(writer);
    })
    .await;
}

// ----- 3. cancellation safety of recv -----

/// What the slow server sends: numbered binary messages of several sizes, some fragmented
/// with a ping between the fragments, and small text messages.
fn slow_server_plan() -> (Vec<Message>, Vec<Vec<u8>>, Vec<Bytes>) {
    let mut messages = Vec::new();
    let mut wire = Vec::new();
    let mut pings = Vec::new();
    for i in 0..48u32 {
        match i % 4 {
            0 => {
                let data = numbered(i, 600_000);
                wire.push(server_frame(FIN | OP_BINARY, &data));
                messages.push(Message::binary(data));
            }
            1 => {
                let text = format!("message {i}");
                wire.push(server_frame(FIN | OP_TEXT, text.as_bytes()));
                messages.push(Message::text(text));
            }
            2 => {
                let data = numbered(i, 150_000);
                let ping = Bytes::from(format!("between fragments of {i}"));
                let mut bytes = server_frame(OP_BINARY, &data[..50_000]);
                bytes.extend(server_frame(OP_CONTINUATION, &data[50_000..100_000]));
                bytes.extend(server_frame(FIN | OP_PING, &ping));
                bytes.extend(server_frame(FIN | OP_CONTINUATION, &data[100_000..]));
                wire.push(bytes);
                messages.push(Message::binary(data));
                pings.push(ping);
            }
            _ => {
                let data = numbered(i, 70_000);
                wire.push(server_frame(FIN | OP_BINARY, &data));
                messages.push(Message::binary(data));
            }
        }
    }
    (messages, wire, pings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_dropped_mid_message_loses_and_duplicates_nothing() {
    within(BUDGET, async {
        let (messages, wire, pings) = slow_server_plan();
        let (listener, url) = listen().await;
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            tcp.set_nodelay(true).unwrap();
            raw_accept(&mut tcp).await;
            for bytes in &wire {
                // The first piece is a single byte: half a frame header.
                let mut rest = &bytes[..];
                let mut piece = 1;
                while !rest.is_empty() {
                    let n = piece.min(rest.len());
                    tcp.write_all(&rest[..n]).await.unwrap();
                    rest = &rest[n..];
                    piece = bytes.len() / 5 + 1;
                    sleep(Duration::from_millis(3)).await;
                }
            }
            let mut close = 1000u16.to_be_bytes().to_vec();
            close.extend_from_slice(b"end");
            tcp.write_all(&server_frame(FIN | OP_CLOSE, &close))
                .await
                .unwrap();
            let mut frames = Vec::new();
            loop {
                let frame = read_client_frame(&mut tcp).await.unwrap();
                let done = frame.0 & 0x0F == OP_CLOSE;
                frames.push(frame);
                if done {
                    return frames;
                }
            }
        });
        let (mut ws, _) = builder(&url).connect_async().await.unwrap();
        let mut received = Vec::new();
        let mut pinged = Vec::new();
        let mut dropped = 0u32;
        let close = loop {
            tokio::select! {
                next = ws.recv() => match next {
                    Some(Ok(Message::Ping(payload))) => pinged.push(payload),
                    Some(Ok(Message::Close(frame))) => break frame,
                    Some(Ok(message)) => received.push(message),
                    other => panic!("client: {other:?}"),
                },
                _ = sleep(Duration::from_millis(1)) => dropped += 1,
            }
        };
        assert_eq!(close, Some(CloseFrame::new(1000u16, "end")));
        assert_eq!(received.len(), messages.len());
        for (i, (got, want)) in received.iter().zip(&messages).enumerate() {
            assert!(got == want, "message {i} differs");
        }
        assert_eq!(pinged, pings);
        // The server paused 3 ms between pieces about 250 times.
        assert!(dropped > 100, "recv was dropped only {dropped} times");
        // The server closes TCP after our close reply.
        assert!(ws.recv().await.is_none());
        let frames = server.await.unwrap();
        let expected: Vec<(u8, Vec<u8>)> = pings
            .iter()
            .map(|p| (FIN | OP_PONG, p.to_vec()))
            .chain([(FIN | OP_CLOSE, 1000u16.to_be_bytes().to_vec())])
            .collect();
        assert_eq!(frames, expected);
    })
    .await;
}

// ----- 4. backpressure -----

const WRITE_BUFFER: usize = 64 * 1024;
const CHUNK: usize = 16 * 1024;
/// A [`CHUNK`] message on the wire: 2 header bytes, a 16-bit length and the mask key.
const CHUNK_FRAME: usize = CHUNK + 8;

/// Socket buffer size (each way) for tests that fill the socket: fixed, so not autotuned.
const SMALL_SOCKET_BUFFER: usize = 4096;
/// More than loopback TCP holds with [`SMALL_SOCKET_BUFFER`] at both ends and a peer that
/// reads nothing (Linux holds about 12 KiB): output past it can never go out.
const SOCKETS_HOLD_AT_MOST: usize = 48 * 1024;

/// A listener whose connections have a small fixed receive buffer (set before accepting,
/// as the window is sized at the TCP handshake).
async fn listen_small() -> (TcpListener, String) {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(SMALL_SOCKET_BUFFER).unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    socket.bind(&addr.into()).unwrap();
    socket.listen(16).unwrap();
    socket.set_nonblocking(true).unwrap();
    let listener = TcpListener::from_std(socket.into()).unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    (listener, url)
}

/// Gives a client a small fixed send buffer (see [`listen_small`]).
fn small_send_buffer(ws: &WebSocketStream<wsc::tokio::TokioStream>) {
    socket2::SockRef::from(ws.get_ref().tcp())
        .set_send_buffer_size(SMALL_SOCKET_BUFFER)
        .unwrap();
}

/// A server that completes the handshake, reads nothing until `go` fires, then collects the
/// numbers of the binary messages it gets until the connection ends.
async fn stalled_server(
    listener: TcpListener,
    go: oneshot::Receiver<()>,
) -> (Vec<u32>, Option<CloseFrame>) {
    let (tcp, _) = listener.accept().await.unwrap();
    let mut ws = wsc::tokio::accept(tcp).await.unwrap();
    go.await.unwrap();
    let mut numbers = Vec::new();
    let mut close = None;
    while let Some(message) = ws.recv().await {
        match message.unwrap() {
            Message::Binary(data) => numbers.push(number_of(&data)),
            Message::Close(frame) => close = frame,
            other => panic!("stalled server: {other:?}"),
        }
    }
    (numbers, close)
}

/// Checks what the stalled server received: increasing numbers, each once, including every
/// message whose send completed.
fn check_delivered(numbers: &[u32], completed: u32, attempted: u32) {
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "messages duplicated or out of order"
    );
    assert!(numbers.len() as u32 >= completed && numbers.len() as u32 <= attempted);
    assert!(numbers
        .iter()
        .copied()
        .take(completed as usize)
        .eq(0..completed));
}

/// A client (no compression, a write buffer of `WRITE_BUFFER`) of a [`stalled_server`],
/// the server's task and what lets it read; `small`: both ends' socket buffers small.
async fn client_of_a_stalled_server(
    small: bool,
) -> (
    wsc::tokio::WebSocketStream<wsc::tokio::TokioStream>,
    tokio::task::JoinHandle<(Vec<u32>, Option<CloseFrame>)>,
    oneshot::Sender<()>,
) {
    let (listener, url) = if small {
        listen_small().await
    } else {
        listen().await
    };
    let (go, wait) = oneshot::channel();
    let server = tokio::spawn(stalled_server(listener, wait));
    let (mut ws, _) = with_compression(builder(&url), false)
        .connect_async()
        .await
        .unwrap();
    if small {
        small_send_buffer(&ws);
    }
    ws.set_write_buffer(WRITE_BUFFER);
    (ws, server, go)
}

/// Once the [`stalled_server`] reads: writes out everything queued, closes, and returns the
/// numbers of the messages the server got.
async fn flush_and_close_for(
    mut ws: WebSocketStream<wsc::tokio::TokioStream>,
    server: tokio::task::JoinHandle<(Vec<u32>, Option<CloseFrame>)>,
) -> Vec<u32> {
    SinkExt::<Message>::flush(&mut ws).await.unwrap();
    ws.close(None).await.unwrap();
    server.await.unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_blocks_when_the_peer_does_not_read_and_the_queue_stays_bounded() {
    within(BUDGET, async {
        let (mut ws, server, go) = client_of_a_stalled_server(false).await;
        let bound = WRITE_BUFFER + CHUNK + 14;
        let (mut completed, mut attempted, mut blocked) = (0u32, 0u32, 0u32);
        let mut queued_after = Vec::new();
        while blocked < 60 {
            assert!(attempted < 20_000, "send never blocked");
            let limit = Duration::from_millis(if blocked == 0 { 300 } else { 10 });
            let send = ws.send(Message::binary(numbered(attempted, CHUNK)));
            attempted += 1;
            match timeout(limit, send).await {
                Ok(result) => {
                    result.unwrap();
                    completed += 1;
                }
                Err(_) => blocked += 1,
            }
            let queued = ws.connection().queued_output();
            assert!(
                queued <= bound,
                "{queued} bytes queued after {attempted} sends"
            );
            if blocked > 0 {
                queued_after.push(queued);
            }
        }
        // Sixty sends that timed out offered 60 * 16 KiB, yet the queue stayed within the
        // write buffer and one message (checked after every send above).
        assert_eq!(queued_after.len(), 60);

        // The server starts reading: everything queued goes out, intact, then the close.
        go.send(()).unwrap();
        SinkExt::<Message>::flush(&mut ws).await.unwrap();
        assert_eq!(ws.connection().queued_output(), 0);
        ws.send(Message::binary(numbered(attempted, CHUNK)))
            .await
            .unwrap();
        attempted += 1;
        let reply = ws.close(None).await.unwrap();
        assert_eq!(reply, None);
        let (numbers, close) = server.await.unwrap();
        assert_eq!(close, None);
        check_delivered(&numbers, completed, attempted);
        assert_eq!(numbers.last(), Some(&(attempted - 1)));
    })
    .await;
}

/// The write timeout bounds an async send to a peer that takes nothing, as the blocking
/// client's: `Timeout(Write)` with the message queued, then `SendQueueFull` for one that
/// found the write buffer full and was not queued; once the peer reads, every message
/// queued arrives, once, in order. A peer that keeps taking some is not stuck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_timeout_fails_a_send_the_peer_takes_nothing_of_and_keeps_it_queued() {
    within(BUDGET, async {
        let (mut ws, server, go) = client_of_a_stalled_server(true).await;
        let limit = Duration::from_millis(200);
        ws.set_write_timeout(Some(limit));
        let mut sent = 0u32;
        let waited = loop {
            assert!(sent < 1000, "no send was held");
            let started = Instant::now();
            match ws.send(Message::binary(numbered(sent, CHUNK))).await {
                Ok(()) => sent += 1,
                Err(Error::Timeout(Phase::Write)) => break started.elapsed(),
                Err(e) => panic!("send {sent}: {e}"),
            }
        };
        assert!(waited >= limit, "{waited:?}");
        // Queued: the stream goes on, and the next sends queue behind it until the write
        // buffer is full, then are refused unqueued.
        let queued = sent + 1;
        let mut next = queued;
        let refused = loop {
            assert!(next < queued + 100, "the write buffer never filled");
            match ws.send(Message::binary(numbered(next, CHUNK))).await {
                Err(Error::Timeout(Phase::Write)) => next += 1,
                Err(Error::SendQueueFull { queued }) => break queued,
                other => panic!("send {next}: {other:?}"),
            }
        };
        assert!(refused >= WRITE_BUFFER, "{refused}");
        assert_eq!(ws.connection().queued_output(), refused);
        go.send(()).unwrap();
        let numbers = flush_and_close_for(ws, server).await;
        assert!(numbers.iter().copied().eq(0..next), "{numbers:?}");
    })
    .await;
}

/// A write timeout past what the clock can count to is no timeout: the send waits (it
/// panicked adding it to the time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_timeout_of_duration_max_waits_as_none_does() {
    within(BUDGET, async {
        let (mut ws, server, go) = client_of_a_stalled_server(true).await;
        ws.set_write_timeout(Some(Duration::MAX));
        let big = Message::binary(numbered(0, 2 * SOCKETS_HOLD_AT_MOST));
        assert!(timeout(Duration::from_millis(500), ws.send(big))
            .await
            .is_err());
        go.send(()).unwrap();
        flush_and_close_for(ws, server).await;
    })
    .await;
}

/// A peer that reads slowly but steadily takes some of our output within each write
/// timeout: the send waits for it, for longer than the timeout in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_timeout_spares_a_slow_peer_that_keeps_reading() {
    within(BUDGET, async {
        let (listener, url) = listen_small().await;
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            // The handshake by hand: then the bytes are read a little at a time.
            let mut buf = vec![0u8; 4096];
            let n = tcp.read(&mut buf).await.unwrap();
            let (request, _) = parse_request(&buf[..n], 1 << 16)
                .unwrap()
                .expect("the whole request in one read");
            let answer = accept_response(&request, None, &[]);
            tcp.write_all(&answer).await.unwrap();
            let mut total = 0usize;
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                match tcp.read(&mut buf[..2048]).await.unwrap() {
                    0 => return total,
                    n => total += n,
                }
            }
        });
        let (mut ws, _) = with_compression(builder(&url), false)
            .write_timeout(Duration::from_millis(200))
            .connect_async()
            .await
            .unwrap();
        small_send_buffer(&ws);
        // About 100 KiB a second gets through: 200 KiB takes two seconds, ten timeouts.
        let started = Instant::now();
        ws.send(Message::binary(vec![7u8; 200 * 1024]))
            .await
            .unwrap();
        assert!(started.elapsed() > Duration::from_millis(400));
        drop(ws);
        assert!(server.await.unwrap() > 200 * 1024);
    })
    .await;
}

/// The way the module's docs give to send from a `select!` loop: a `feed` dropped by a
/// timer queued nothing, so the same message is fed again, and every one arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_dropped_by_a_timer_queued_nothing_so_feeding_it_again_sends_it_once() {
    within(BUDGET, async {
        let (mut ws, server, go) = client_of_a_stalled_server(false).await;
        let mut go = Some(go);
        let (mut dropped, total) = (0u32, 300u32);
        for i in 0..total {
            loop {
                let feed = SinkExt::<Message>::feed(&mut ws, Message::binary(numbered(i, CHUNK)));
                match timeout(Duration::from_millis(2), feed).await {
                    Ok(result) => break result.unwrap(),
                    Err(_) => dropped += 1,
                }
                // The server reads once feeds have been dropped while it did not.
                if dropped >= 20 {
                    if let Some(go) = go.take() {
                        go.send(()).unwrap();
                    }
                }
            }
        }
        assert!(go.is_none(), "no feed waited for room");
        let numbers = flush_and_close_for(ws, server).await;
        assert!(numbers.iter().copied().eq(0..total), "{numbers:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_feed_and_send_block_when_the_peer_does_not_read() {
    within(BUDGET, async {
        let (mut ws, server, go) = client_of_a_stalled_server(true).await;
        let bound = WRITE_BUFFER + CHUNK + 14;
        let (mut completed, mut attempted, mut blocked) = (0u32, 0u32, 0u32);
        while blocked < 40 {
            assert!(attempted < 20_000, "feed never blocked");
            let limit = Duration::from_millis(if blocked == 0 { 300 } else { 10 });
            let feed = ws.feed(Message::binary(numbered(attempted, CHUNK)));
            attempted += 1;
            match timeout(limit, feed).await {
                Ok(result) => {
                    result.unwrap();
                    completed += 1;
                }
                Err(_) => blocked += 1,
            }
            let queued = ws.connection().queued_output();
            assert!(
                queued <= bound,
                "{queued} bytes queued after {attempted} feeds"
            );
        }
        // `SinkExt::send` (feed and flush) blocks too: its flush must write all that was
        // fed, more than the sockets hold (a feed blocked only with the write buffer full),
        // so it cannot finish however late loopback delivers.
        assert!((completed as usize + 1) * CHUNK_FRAME > SOCKETS_HOLD_AT_MOST);
        let send = SinkExt::send(&mut ws, Message::binary(numbered(attempted, CHUNK)));
        attempted += 1;
        assert!(timeout(Duration::from_millis(100), send).await.is_err());
        assert!(ws.connection().pending_output().len() <= bound);

        go.send(()).unwrap();
        SinkExt::<Message>::close(&mut ws).await.unwrap();
        // The server's close answer, then the end.
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::Close(None));
        assert!(ws.next().await.is_none());
        let (numbers, close) = server.await.unwrap();
        assert_eq!(close, None);
        check_delivered(&numbers, completed, attempted);
    })
    .await;
}

/// A client (close timeout `close_timeout`, no compression) of a server that reads nothing,
/// after sending until the socket took no more; the server's task and what lets it go on.
async fn blocked_on_a_stalled_server(
    close_timeout: Duration,
) -> (
    wsc::tokio::WebSocketStream<wsc::tokio::TokioStream>,
    tokio::task::JoinHandle<(Vec<u32>, Option<CloseFrame>)>,
    oneshot::Sender<()>,
) {
    let (listener, url) = listen_small().await;
    let (go, wait) = oneshot::channel();
    let server = tokio::spawn(stalled_server(listener, wait));
    let (mut ws, _) = with_compression(builder(&url), false)
        .close_timeout(Some(close_timeout))
        .connect_async()
        .await
        .unwrap();
    small_send_buffer(&ws);
    // A send that times out leaves its message queued. Once more is queued than the
    // sockets can ever take, the close frame behind it cannot go out: full by
    // construction, not judged from a send that was slow (loopback can stall under load).
    let mut sent = 0;
    while ws.connection().queued_output() <= SOCKETS_HOLD_AT_MOST {
        assert!(sent < 1000, "send never blocked");
        let send = ws.send(Message::binary(numbered(sent as u32, CHUNK)));
        sent += 1;
        if let Ok(result) = timeout(Duration::from_millis(10), send).await {
            result.unwrap();
        }
    }
    // What the kernel took so far (every message was queued: the write buffer, 128 KiB,
    // never filled): a check that the sockets hold as little as assumed.
    let written = sent * CHUNK_FRAME - ws.connection().queued_output();
    assert!(
        written <= SOCKETS_HOLD_AT_MOST,
        "the sockets took {written} bytes"
    );
    (ws, server, go)
}

/// `close` promises to finish within the close timeout; a peer that reads nothing must not
/// hold it forever while the close frame waits behind a full socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn close_is_bounded_when_the_peer_does_not_read() {
    within(BUDGET, async {
        let close_timeout = Duration::from_secs(1);
        let (mut ws, server, go) = blocked_on_a_stalled_server(close_timeout).await;
        let started = Instant::now();
        let closed = timeout(close_timeout * 6, ws.close(None)).await;
        let took = started.elapsed();
        match closed {
            Ok(Err(Error::Timeout(Phase::Close))) => {}
            Ok(other) => panic!("close returned {other:?}"),
            Err(_) => panic!("close still waiting after {took:?}"),
        }
        // Closing is over: the stream ends at once, not after a second close timeout.
        let started = Instant::now();
        assert!(ws.recv().await.is_none());
        assert!(
            started.elapsed() < close_timeout / 2,
            "{:?}",
            started.elapsed()
        );
        server.abort();
        drop(go);
    })
    .await;
}

/// `close` cancelled again and again by a timer shorter than the close timeout, while the
/// close frame waits behind a full socket, still gives up within the close timeout: the
/// timeout counts from when closing began, not from each call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_cancelled_by_a_shorter_timer_still_ends_within_the_close_timeout() {
    within(BUDGET, async {
        let close_timeout = Duration::from_millis(500);
        let (mut ws, server, go) = blocked_on_a_stalled_server(close_timeout).await;
        let started = Instant::now();
        let closed = loop {
            assert!(
                started.elapsed() < close_timeout * 8,
                "close still going after {:?}",
                started.elapsed()
            );
            if let Ok(closed) = timeout(close_timeout / 3, ws.close(None)).await {
                break closed;
            }
        };
        assert!(
            matches!(closed, Err(Error::Timeout(Phase::Close))),
            "{closed:?}"
        );
        assert!(ws.recv().await.is_none());
        server.abort();
        drop(go);
    })
    .await;
}

/// `Sink::close` after a `close` that a shorter timer cancelled (the close frame stuck
/// behind a full socket) gives up within the close timeout counted from that first `close`,
/// not a whole close timeout later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_close_after_a_cancelled_close_does_not_start_the_close_timeout_over() {
    within(BUDGET, async {
        // Sink::close starts 1.5 s into closing: it should end at 2 s, and would at 3.5 s
        // if it started the close timeout over; 750 ms of slack either way.
        let close_timeout = Duration::from_secs(2);
        let (mut ws, server, go) = blocked_on_a_stalled_server(close_timeout).await;
        let started = Instant::now();
        assert!(timeout(Duration::from_millis(500), ws.close(None))
            .await
            .is_err());
        sleep(Duration::from_millis(1000)).await;
        let closed = timeout(close_timeout * 4, SinkExt::<Message>::close(&mut ws)).await;
        let took = started.elapsed();
        assert!(
            matches!(closed, Ok(Err(Error::Timeout(Phase::Close)))),
            "{closed:?}"
        );
        assert!(
            took < close_timeout + Duration::from_millis(750),
            "{took:?}"
        );
        server.abort();
        drop(go);
    })
    .await;
}

/// A split writer's close that times out ends the reader's wait too: one close timeout
/// bounds closing, not one for each half.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writers_close_that_times_out_ends_the_readers_wait_with_it() {
    within(BUDGET, async {
        // Long enough that load cannot eat the half close timeout of slack below.
        let close_timeout = Duration::from_secs(2);
        let (ws, server, go) = blocked_on_a_stalled_server(close_timeout).await;
        let (mut reader, mut writer) = ws.split();
        let started = Instant::now();
        let reading = tokio::spawn(async move {
            let ended = reader.recv().await;
            (ended, started.elapsed())
        });
        let closed = writer.close(None).await;
        assert!(
            matches!(closed, Err(Error::Timeout(Phase::Close))),
            "{closed:?}"
        );
        let (ended, took) = reading.await.unwrap();
        assert!(
            matches!(ended, Some(Err(Error::Timeout(Phase::Close))) | None),
            "{ended:?}"
        );
        assert!(
            took < close_timeout * 3 / 2,
            "the reader ended after {took:?}"
        );
        server.abort();
        drop(go);
    })
    .await;
}

/// The reader waits with no timer armed (no keepalive, no read timeout) when the writer
/// sends our close; the server takes it, answers nothing and keeps TCP open. Before, the
/// reader was never woken to start the close timeout and waited for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_close_timeout_ends_a_reader_already_waiting_when_the_writer_closes() {
    within(BUDGET, async {
        let (listener, url) = listen().await;
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            raw_accept(&mut tcp).await;
            let mut sink = [0u8; 4096];
            while tcp.read(&mut sink).await.is_ok_and(|n| n > 0) {}
        });
        let close_timeout = Duration::from_millis(500);
        let (ws, _) = builder(&url)
            .close_timeout(Some(close_timeout))
            .connect_async()
            .await
            .unwrap();
        let (mut reader, mut writer) = ws.split();
        let reading = tokio::spawn(async move {
            let ended = reader.recv().await;
            (ended, Instant::now())
        });
        sleep(Duration::from_millis(100)).await;
        let closing = Instant::now();
        writer.close(None).await.unwrap();
        let (ended, at) = timeout(Duration::from_secs(5), reading)
            .await
            .expect("the reader still waits 5 s after a 500 ms close timeout")
            .unwrap();
        assert!(
            matches!(ended, Some(Err(Error::Timeout(Phase::Close)))),
            "{ended:?}"
        );
        let took = at - closing;
        assert!(took >= close_timeout, "{took:?}");
        server.abort();
    })
    .await;
}

/// Sends 64 KiB messages on a writing half until a send fails; the error.
async fn send_until_it_fails(mut writer: wsc::tokio::WsWriter<wsc::tokio::TokioStream>) -> Error {
    let payload = Bytes::from(vec![1u8; 64 << 10]);
    loop {
        if let Err(e) = writer.send_binary(payload.clone()).await {
            return e;
        }
    }
}

/// Asserts that a [`send_until_it_fails`] task ends within `limit` of what `after` says,
/// with [`Error::ConnectionClosed`].
async fn ends_closed_within(limit: Duration, writing: tokio::task::JoinHandle<Error>, after: &str) {
    let failed = timeout(limit, writing)
        .await
        .unwrap_or_else(|_| panic!("the writer still waits {limit:?} after {after}"))
        .unwrap();
    assert!(matches!(failed, Error::ConnectionClosed), "{failed:?}");
}

/// The peer vanishes (reads and sends nothing): a writer blocked on the full socket ends
/// when the reader finds the peer dead by keepalive. Before, it was not woken, and waited
/// for a socket that never drains (in 6 of 10 runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_blocked_on_a_dead_peer_ends_when_the_reader_finds_it_dead() {
    within(BUDGET, async {
        for _ in 0..5 {
            let (listener, url) = listen().await;
            let server = tokio::spawn(async move {
                let (mut tcp, _) = listener.accept().await.unwrap();
                raw_accept(&mut tcp).await;
                sleep(Duration::from_secs(60)).await;
                drop(tcp);
            });
            let keepalive =
                wsc::Keepalive::new(Duration::from_millis(200), Duration::from_millis(300));
            let (ws, _) = with_compression(builder(&url), false)
                .keepalive(keepalive)
                .connect_async()
                .await
                .unwrap();
            let (mut reader, writer) = ws.split();
            let writing = tokio::spawn(send_until_it_fails(writer));
            let ended = reader.recv().await;
            assert!(
                matches!(ended, Some(Err(Error::KeepaliveTimeout(_)))),
                "{ended:?}"
            );
            ends_closed_within(
                Duration::from_secs(3),
                writing,
                "the reader found the peer dead",
            )
            .await;
            server.abort();
        }
    })
    .await;
}

/// The peer stops reading, then sends its close frame and keeps TCP open: a writer blocked
/// on the full socket ends as soon as the reader has the close (the peer discards what
/// follows its close anyway). Before, it waited out the close timeout (5 s) after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_blocked_on_a_full_socket_ends_when_the_peers_close_arrives() {
    within(BUDGET, async {
        let (listener, url) = listen_small().await;
        let (go, told) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            raw_accept(&mut tcp).await;
            told.await.unwrap();
            let mut close = 1001u16.to_be_bytes().to_vec();
            close.extend_from_slice(b"going away");
            tcp.write_all(&server_frame(FIN | OP_CLOSE, &close))
                .await
                .unwrap();
            sleep(Duration::from_secs(30)).await;
            drop(tcp);
        });
        let (ws, _) = with_compression(builder(&url), false)
            .connect_async()
            .await
            .unwrap();
        small_send_buffer(&ws);
        let (mut reader, writer) = ws.split();
        let writing = tokio::spawn(send_until_it_fails(writer));
        // The writer is blocked on the full socket by now.
        sleep(Duration::from_millis(300)).await;
        assert!(!writing.is_finished());
        go.send(()).unwrap();
        let got = reader.recv().await;
        assert_eq!(
            got.unwrap().unwrap(),
            Message::Close(Some(CloseFrame::new(1001u16, "going away")))
        );
        ends_closed_within(Duration::from_secs(2), writing, "the peer's close arrived").await;
        server.abort();
    })
    .await;
}

/// A writing half's `close` after the reader reported the server's end without a close
/// (a FIN) fails as the unsplit stream's does, and as after a reset. Before, it returned
/// `Ok` after a FIN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writers_close_after_the_server_ended_without_a_close_is_connection_closed() {
    within(BUDGET, async {
        let (listener, url) = listen().await;
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            raw_accept(&mut tcp).await;
            tcp.write_all(&server_frame(FIN | OP_TEXT, b"hello"))
                .await
                .unwrap();
            tcp.shutdown().await.unwrap();
            // Still reading: the FIN is no reset.
            let mut sink = [0u8; 1024];
            while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
        });
        let (ws, _) = builder(&url).connect_async().await.unwrap();
        let (mut reader, mut writer) = ws.split();
        assert_eq!(
            reader.recv().await.unwrap().unwrap(),
            Message::text("hello")
        );
        let ended = reader.recv().await;
        assert!(
            matches!(ended, Some(Err(Error::ConnectionReset))),
            "{ended:?}"
        );
        assert!(reader.recv().await.is_none());
        let closed = writer.close(None).await;
        assert!(matches!(closed, Err(Error::ConnectionClosed)), "{closed:?}");
        let closed = SinkExt::<Message>::close(&mut writer).await;
        assert!(matches!(closed, Err(Error::ConnectionClosed)), "{closed:?}");
        drop((reader, writer));
        server.await.unwrap();
    })
    .await;
}

/// A refusal reaches a client that sent more than its request (frames before the 101, as
/// eager clients do) whole, then a clean end of stream. Before, the server dropped the
/// stream with the client's bytes unread, and the kernel reset the connection: the client
/// got ECONNRESET, and with a small receive buffer lost most of a long body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_reaches_an_eager_client_whole_with_a_clean_end() {
    within(BUDGET, async {
        let (listener, url) = listen().await;
        let body = vec![b'x'; 1 << 20];
        let server_body = body.clone();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = Acceptor::new();
            let upgrade = acceptor.read_request_async(tcp).await.unwrap();
            let refusal = wsc::server::Refusal::new(403u16).body(server_body);
            assert!(upgrade.answer_async(Err(refusal)).await.is_err());
        });
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(8 << 10).unwrap();
        let addr: std::net::SocketAddr = url.trim_start_matches("ws://").parse().unwrap();
        socket.connect(&addr.into()).unwrap();
        let mut tcp = std::net::TcpStream::from(socket);
        let request = format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        std::io::Write::write_all(&mut tcp, request.as_bytes()).unwrap();
        // A masked text frame after the request, once the server has read it.
        sleep(Duration::from_millis(100)).await;
        std::io::Write::write_all(&mut tcp, &[0x81, 0x82, 0, 0, 0, 0, b'h', b'i']).unwrap();
        // Reads only once the server has written all it can and closed.
        sleep(Duration::from_millis(300)).await;
        let response = tokio::task::spawn_blocking(move || {
            let mut response = Vec::new();
            std::io::Read::read_to_end(&mut tcp, &mut response).map(|_| response)
        })
        .await
        .unwrap()
        .expect("a clean end of stream, not a reset");
        assert!(response.starts_with(b"HTTP/1.1 403"));
        assert!(response.ends_with(&body[..]));
        server.await.unwrap();
    })
    .await;
}

// ----- 5. many connections -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_connections_all_echo() {
    within(BUDGET, async {
        const CLIENTS: usize = 200;
        let (listener, url) = listen().await;
        let server = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            for _ in 0..CLIENTS {
                let (tcp, _) = listener.accept().await.unwrap();
                connections.spawn(async move {
                    let (ws, _) = Acceptor::new().accept_async(tcp).await.unwrap();
                    echo(ws).await.len()
                });
            }
            let mut seen = Vec::new();
            while let Some(count) = connections.join_next().await {
                seen.push(count.unwrap());
            }
            seen
        });
        let mut clients = JoinSet::new();
        for id in 0..CLIENTS {
            let url = format!("{url}/client/{id}");
            clients.spawn(async move {
                let (mut ws, _) = builder(&url).connect_async().await.unwrap();
                let text = Message::text(format!("hello from {id}"));
                let binary = Message::binary(numbered(id as u32, 1000 + id * 37));
                ws.send(text.clone()).await.unwrap();
                ws.send(binary.clone()).await.unwrap();
                assert_eq!(ws.recv().await.unwrap().unwrap(), text);
                assert_eq!(ws.recv().await.unwrap().unwrap(), binary);
                let reply = ws.close(None).await.unwrap();
                assert_eq!(reply, None);
                id
            });
        }
        let mut done = Vec::new();
        while let Some(id) = clients.join_next().await {
            done.push(id.unwrap());
        }
        done.sort_unstable();
        assert!(done.into_iter().eq(0..CLIENTS));
        let seen = server.await.unwrap();
        assert_eq!(seen, vec![3; CLIENTS]);
    })
    .await;
}

// ----- 6. protocol violation -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_violation_by_the_server_fails_with_1002() {
    within(BUDGET, async {
        let (listener, url) = listen().await;
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            raw_accept(&mut tcp).await;
            // A good message, then a frame with RSV2 set, in one write.
            let mut bytes = server_frame(FIN | OP_TEXT, b"good");
            bytes.extend(server_frame(FIN | RSV2 | OP_TEXT, b"bad"));
            tcp.write_all(&bytes).await.unwrap();
            read_client_frame(&mut tcp).await.unwrap()
            // TCP closes here.
        });
        let (mut ws, _) = builder(&url).connect_async().await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("good"));
        let err = ws.recv().await.unwrap().unwrap_err();
        assert!(
            matches!(err, Error::Protocol(ProtocolError::ReservedBits(2))),
            "{err}"
        );
        assert!(ws.recv().await.is_none());
        assert!(ws.recv().await.is_none());
        let (head, payload) = server.await.unwrap();
        assert_eq!(head, FIN | OP_CLOSE);
        assert_eq!(payload, CloseCode::PROTOCOL_ERROR.0.to_be_bytes());
        assert!(matches!(
            ws.send_text("after").await,
            Err(Error::ConnectionClosed)
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_protocol_violation_the_stream_ends_at_once() {
    within(BUDGET, async {
        let (listener, url) = listen().await;
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            raw_accept(&mut tcp).await;
            tcp.write_all(&server_frame(FIN | RSV2 | OP_TEXT, b"bad"))
                .await
                .unwrap();
            let close = read_client_frame(&mut tcp).await.unwrap();
            // TCP stays open: nothing more is read from it, so nothing to wait for.
            tokio::time::sleep(Duration::from_secs(8)).await;
            close
        });
        let (mut ws, _) = builder(&url).connect_async().await.unwrap();
        assert!(matches!(ws.recv().await, Some(Err(Error::Protocol(_)))));
        let start = Instant::now();
        assert!(ws.recv().await.is_none());
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        server.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_vanishing_without_close_is_connection_reset() {
    within(BUDGET, async {
        let (listener, url) = listen().await;
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            raw_accept(&mut tcp).await;
            // Half a frame, then TCP closes.
            tcp.write_all(&server_frame(FIN | OP_BINARY, &[1, 2, 3])[..3])
                .await
                .unwrap();
        });
        let (mut ws, _) = builder(&url).connect_async().await.unwrap();
        server.await.unwrap();
        assert!(matches!(ws.recv().await, Some(Err(Error::ConnectionReset))));
        assert!(ws.recv().await.is_none());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg(target_os = "linux")] // socket2, for the reset
async fn messages_received_before_a_failed_pong_are_delivered_then_the_error() {
    within(BUDGET, async {
        let (listener, url) = listen().await;
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            raw_accept(&mut tcp).await;
            let mut burst = server_frame(FIN | OP_PING, b"ping");
            for text in ["one", "two", "three"] {
                burst.extend(server_frame(FIN | OP_TEXT, text.as_bytes()));
            }
            tcp.write_all(&burst).await.unwrap();
            // Reset: the client's pong cannot be written.
            socket2::SockRef::from(&tcp)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        });
        let (mut ws, _) = builder(&url).connect_async().await.unwrap();
        server.await.unwrap();
        until_reset_arrives(&ws);
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::Ping("ping".into())
        );
        for text in ["one", "two", "three"] {
            assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text(text));
        }
        let err = ws.recv().await.unwrap().unwrap_err();
        assert!(
            matches!(err, Error::Io(_) | Error::ConnectionReset),
            "{err}"
        );
        assert!(ws.recv().await.is_none());
    })
    .await;
}

// ----- 7. Stream and Sink, opening errors -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_and_sink_combinators() {
    within(BUDGET, async {
        let (listener, url) = listen().await;
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = wsc::tokio::accept(tcp).await.unwrap();
            for i in 0..5 {
                ws.send_text(&format!("m{i}")).await.unwrap();
            }
            echo(ws).await
        });
        let (mut ws, _) = wsc::tokio::connect(&url).await.unwrap();
        let first: Vec<Message> = ws.by_ref().take(3).map(Result::unwrap).collect().await;
        assert_eq!(
            first,
            vec![
                Message::text("m0"),
                Message::text("m1"),
                Message::text("m2")
            ]
        );
        // The stream goes on where `take` stopped.
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("m3"));
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("m4"));

        let outgoing: Vec<Message> = (0..10u32)
            .map(|i| Message::binary(numbered(i, 5000)))
            .collect();
        ws.send_all(&mut stream::iter(outgoing.clone()).map(Ok))
            .await
            .unwrap();
        SinkExt::send(&mut ws, Message::text("sink")).await.unwrap();
        let echoed: Vec<Message> = ws.by_ref().take(11).map(Result::unwrap).collect().await;
        assert_eq!(&echoed[..10], &outgoing[..]);
        assert_eq!(echoed[10], Message::text("sink"));

        SinkExt::<Message>::close(&mut ws).await.unwrap();
        let rest: Vec<_> = ws.by_ref().map(Result::unwrap).collect().await;
        assert_eq!(rest, vec![Message::Close(None)]);
        let seen = server.await.unwrap();
        assert_eq!(seen.len(), 12);
        assert_eq!(seen[11], Message::Close(None));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_halves_are_a_stream_and_a_sink() {
    within(BUDGET, async {
        let (ws, server) = echo_client().await;
        let (reader, mut writer) = ws.split();
        let outgoing: Vec<Message> = (0..50u32)
            .map(|i| Message::binary(numbered(i, 100 + i as usize * 1000)))
            .collect();
        let collect = tokio::spawn(reader.take(50).map(Result::unwrap).collect::<Vec<_>>());
        writer
            .send_all(&mut stream::iter(outgoing.clone()).map(Ok))
            .await
            .unwrap();
        assert_eq!(collect.await.unwrap(), outgoing);
        SinkExt::<Message>::close(&mut writer).await.unwrap();
        let seen = server.await.unwrap();
        assert_eq!(seen.len(), 51);
        assert_eq!(seen[50], Message::Close(None));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_and_server_over_an_in_memory_pipe() {
    within(BUDGET, async {
        // A tiny pipe: every frame is read and written in many small pieces.
        let (a, b) = tokio::io::duplex(61);
        let (client, server) = tokio::join!(
            wsc::tokio::client("ws://pipe.test/chat", a),
            wsc::tokio::accept(b)
        );
        let (mut ws, response) = client.unwrap();
        assert_eq!(response.status, 101);
        let server = tokio::spawn(echo(server.unwrap()));
        let big = Message::binary(noise(3, 200_000));
        ws.send(big.clone()).await.unwrap();
        assert!(ws.recv().await.unwrap().unwrap() == big);
        ws.send_text("small").await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("small"));
        assert_eq!(ws.close(None).await.unwrap(), None);
        assert_eq!(server.await.unwrap().len(), 3);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_port_is_a_connect_error() {
    within(BUDGET, async {
        let (listener, url) = listen().await;
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = builder(&url).connect_async().await.unwrap_err();
        match err {
            Error::Connect { target, source } => {
                assert_eq!(target, addr.to_string());
                assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused);
            }
            other => panic!("{other:?}"),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_server_times_out_in_the_handshake_phase() {
    within(BUDGET, async {
        let (listener, url) = listen().await;
        let (release, hold) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            // Accepts TCP, reads the request, never answers.
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut sink = [0u8; 1024];
            let _ = tcp.read(&mut sink).await;
            let _ = hold.await;
        });
        let limit = Duration::from_millis(400);
        let started = Instant::now();
        let err = builder(&url)
            .handshake_timeout(limit)
            .connect_async()
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(err, Error::Timeout(Phase::WebSocketHandshake)),
            "{err:?}"
        );
        assert!(took >= limit, "gave up after {took:?}");
        assert!(took < limit + Duration::from_secs(2), "took {took:?}");
        let _ = release.send(());
        server.await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_too_long_for_the_clock_mean_none() {
    within(BUDGET, async {
        let (url, server) = async_echo_server().await;
        let forever = Duration::MAX;
        let (mut ws, _) = builder(&format!("{url}/echo"))
            .connect_timeout(forever)
            .handshake_timeout(forever)
            .open_timeout(forever)
            .read_timeout(Some(forever))
            .close_timeout(Some(forever))
            .keepalive(wsc::Keepalive::new(forever, forever))
            .connect_async()
            .await
            .unwrap();
        round_trip(&mut ws).await;
        assert_server_saw_round_trip(&server.await.unwrap());
    })
    .await;
}

/// A server that sends `first`, then keeps TCP open for 20 s: it reads what comes or, if
/// `then` is not empty, sends `then` again and again as fast as the client takes it.
async fn server_that_keeps_tcp_open(
    first: Vec<u8>,
    then: Vec<u8>,
) -> (String, tokio::task::JoinHandle<()>) {
    let (listener, url) = listen().await;
    let server = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        raw_accept(&mut tcp).await;
        tcp.write_all(&first).await.unwrap();
        let mut sink = [0u8; 1024];
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if !then.is_empty() {
                if tcp.write_all(&then).await.is_err() {
                    return;
                }
                continue;
            }
            match timeout(Duration::from_millis(100), tcp.read(&mut sink)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                _ => {}
            }
        }
    });
    (url, server)
}

/// The halves of a client of `url` with a close timeout of 1 s.
async fn split_with_a_1_s_close_timeout(
    url: &str,
) -> (
    wsc::tokio::WsReader<wsc::tokio::TokioStream>,
    wsc::tokio::WsWriter<wsc::tokio::TokioStream>,
) {
    let (ws, _) = builder(url)
        .close_timeout(Some(Duration::from_secs(1)))
        .connect_async()
        .await
        .unwrap();
    ws.split()
}

/// The reading half drains after the server's close, bounded by the close timeout; the
/// writing half's close, called meanwhile (`close` or `Sink::close`), must not lift that bound.
async fn writer_close_during_readers_drain(sink_close: bool) {
    let close = server_frame(FIN | OP_CLOSE, &1000u16.to_be_bytes());
    let (url, server) = server_that_keeps_tcp_open(close, Vec::new()).await;
    let (mut reader, mut writer) = split_with_a_1_s_close_timeout(&url).await;
    let got = timeout(Duration::from_secs(2), reader.recv()).await;
    assert!(matches!(got, Ok(Some(Ok(Message::Close(_))))), "{got:?}");
    let start = Instant::now();
    let reading = tokio::spawn(async move { (reader.recv().await, start.elapsed()) });
    sleep(Duration::from_millis(200)).await;
    let closed = if sink_close {
        SinkExt::close(&mut writer).await
    } else {
        writer.close(None).await
    };
    assert!(closed.is_ok(), "{closed:?}");
    let end = timeout(Duration::from_secs(4), reading).await;
    server.abort();
    // Before, the writer's close dropped the reader's timer: it waited for the server.
    match end {
        Ok(Ok((None, took))) => assert!(took < Duration::from_secs(2), "{took:?}"),
        other => panic!("the reader did not end within the close timeout: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writers_close_during_the_readers_drain_keeps_the_drain_bounded() {
    writer_close_during_readers_drain(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writers_sink_close_during_the_readers_drain_keeps_the_drain_bounded() {
    writer_close_during_readers_drain(true).await;
}

#[tokio::test]
async fn the_close_timeout_holds_while_a_server_keeps_sending_and_never_closes() {
    let tick = server_frame(FIN | OP_TEXT, b"tick");
    let ticks = tick.repeat(10_000);
    let (url, server) = server_that_keeps_tcp_open(tick, ticks).await;
    let (mut reader, mut writer) = split_with_a_1_s_close_timeout(&url).await;
    writer.close(None).await.unwrap();
    let start = Instant::now();
    let ended = timeout(Duration::from_secs(5), async {
        loop {
            match reader.recv().await {
                Some(Ok(Message::Text(_))) => {}
                other => return other,
            }
        }
    })
    .await;
    server.abort();
    // Before, data arriving kept the reader from ever looking at the close timer.
    assert!(
        matches!(ended, Ok(Some(Err(Error::Timeout(Phase::Close))))),
        "{ended:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

/// Without a close timeout, the read timeout still bounds closing, as in the blocking client:
/// a server that never answers the close, or never closes TCP after the close handshake,
/// must not hold `recv` or `close` forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_close_timeout_the_read_timeout_bounds_closing() {
    within(BUDGET, async {
        let client = |url: String| async move {
            let (ws, _) = builder(&url)
                .close_timeout(None)
                .read_timeout(Duration::from_millis(300))
                .connect_async()
                .await
                .unwrap();
            ws
        };
        let limit = Duration::from_secs(3);
        // The server never answers `Sink::close`: `recv` reports the read timeout.
        let (url, server) = server_that_keeps_tcp_open(Vec::new(), Vec::new()).await;
        let mut ws = client(url).await;
        SinkExt::<Message>::close(&mut ws).await.unwrap();
        let got = timeout(limit, ws.recv()).await;
        assert!(
            matches!(got, Ok(Some(Err(Error::Timeout(Phase::Read))))),
            "{got:?}"
        );
        server.abort();
        // Nor `close`: closing is given up.
        let (url, server) = server_that_keeps_tcp_open(Vec::new(), Vec::new()).await;
        let mut ws = client(url).await;
        let got = timeout(limit, ws.close(None)).await;
        assert!(
            matches!(got, Ok(Err(Error::Timeout(Phase::Close)))),
            "{got:?}"
        );
        assert!(ws.recv().await.is_none());
        server.abort();
        // The server closes, then keeps TCP open: the stream ends.
        let close = server_frame(FIN | OP_CLOSE, &1000u16.to_be_bytes());
        let (url, server) = server_that_keeps_tcp_open(close, Vec::new()).await;
        let mut ws = client(url).await;
        let got = timeout(limit, ws.recv()).await;
        assert!(matches!(got, Ok(Some(Ok(Message::Close(_))))), "{got:?}");
        let got = timeout(limit, ws.recv()).await;
        assert!(matches!(got, Ok(None)), "{got:?}");
        server.abort();
    })
    .await;
}

/// `close` cancelled by a shorter timer after it read the server's close frame (while it
/// waits for the server to close TCP) and called again returns that frame, not `None`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_cancelled_after_the_servers_close_still_returns_its_frame() {
    within(BUDGET, async {
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        let close = server_frame(FIN | OP_CLOSE, &payload);
        let (url, server) = server_that_keeps_tcp_open(close, Vec::new()).await;
        let (ws, _) = builder(&url)
            .close_timeout(Some(Duration::from_millis(500)))
            .connect_async()
            .await
            .unwrap();
        let mut ws = ws;
        let mut cancelled = 0;
        let got = loop {
            match timeout(Duration::from_millis(50), ws.close(None)).await {
                Ok(got) => break got,
                Err(_) => cancelled += 1,
            }
        };
        server.abort();
        assert!(cancelled > 0, "close was never cancelled");
        assert_eq!(
            got.unwrap(),
            Some(CloseFrame::new(CloseCode::NORMAL, "bye"))
        );
        assert!(ws.recv().await.is_none());
    })
    .await;
}

/// Without a close timeout, the read timeout bounds the wait for the server's close from
/// when closing began, not from when the connection last went quiet: after a `recv` that
/// waited most of the read timeout (cancelled by a `select!` timer), `close` still waits the
/// whole read timeout for a server that answers a little later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_close_timeout_an_idle_wait_before_close_does_not_shorten_it() {
    within(BUDGET, async {
        let (listener, url) = listen().await;
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            raw_accept(&mut tcp).await;
            let (head, _) = read_client_frame(&mut tcp).await.unwrap();
            assert_eq!(head & 0x0F, OP_CLOSE);
            // Answers 600 ms within the read timeout from when closing began, 600 ms past
            // it counted from before the idle wait (the bug).
            sleep(Duration::from_millis(1800)).await;
            let close = server_frame(FIN | OP_CLOSE, &1000u16.to_be_bytes());
            tcp.write_all(&close).await.unwrap();
        });
        let (mut ws, _) = builder(&url)
            .close_timeout(None)
            .read_timeout(Duration::from_millis(2400))
            .connect_async()
            .await
            .unwrap();
        // Quiet for half the read timeout (its timer well ahead of recv's), then closing.
        assert!(timeout(Duration::from_millis(1200), ws.recv())
            .await
            .is_err());
        let got = timeout(Duration::from_secs(5), ws.close(None)).await;
        assert!(
            matches!(&got, Ok(Ok(Some(f))) if f.code == CloseCode::NORMAL),
            "{got:?}"
        );
        server.await.unwrap();
    })
    .await;
}

/// Reads `count` client frames from a raw peer: (FIN, opcode, unmasked payload) each.
async fn read_client_frames<S: AsyncRead + Unpin>(
    io: &mut S,
    count: usize,
) -> Vec<(bool, wsc::proto::frame::OpCode, Vec<u8>)> {
    use wsc::proto::frame::FrameHeader;
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    while frames.len() < count {
        if let Some((header, len)) = FrameHeader::decode(&buf).unwrap() {
            let end = len + header.payload_len as usize;
            if buf.len() >= end {
                let key = header.mask.expect("client frames are masked");
                let payload = buf[len..end]
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ key[i % 4])
                    .collect();
                frames.push((header.fin, header.opcode, payload));
                buf.drain(..end);
                continue;
            }
        }
        let mut chunk = [0u8; 256];
        let n = io.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the client hung up");
        buf.extend_from_slice(&chunk[..n]);
    }
    frames
}

/// `send_fragmented`, on the stream and on the writing half, puts one message on the wire as
/// frames of at most the fragment size: the first with the message's opcode, the rest
/// continuations, FIN on the last only.
#[tokio::test]
async fn send_fragmented_writes_one_message_as_several_frames() {
    use wsc::proto::frame::OpCode;
    use wsc::proto::{Config, Connection, Role};
    within(BUDGET, async {
        let (client_io, mut server_io) = tokio::io::duplex(1 << 16);
        let conn = Connection::new(Role::Client, Config::default());
        let mut ws = WebSocketStream::from_connection(client_io, conn, &[]);
        ws.send_fragmented("hello world", 4).await.unwrap();
        let frames = read_client_frames(&mut server_io, 3).await;
        let expected = [
            (false, OpCode::Text, &b"hell"[..]),
            (false, OpCode::Continuation, &b"o wo"[..]),
            (true, OpCode::Continuation, &b"rld"[..]),
        ];
        for (frame, (fin, op, payload)) in frames.iter().zip(expected) {
            assert_eq!((frame.0, frame.1, &frame.2[..]), (fin, op, payload));
        }
        assert!(matches!(
            ws.send_fragmented(Message::Ping(Bytes::new()), 4).await,
            Err(Error::InvalidInput(_))
        ));

        let (_reader, mut writer) = ws.split();
        writer
            .send_fragmented(Message::binary(vec![7u8; 10]), 6)
            .await
            .unwrap();
        let frames = read_client_frames(&mut server_io, 2).await;
        assert_eq!(frames[0], (false, OpCode::Binary, vec![7u8; 6]));
        assert_eq!(frames[1], (true, OpCode::Continuation, vec![7u8; 4]));
    })
    .await;
}

/// Split halves reunite into the stream they came from, which goes on where they left off;
/// halves of two different streams are handed back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_halves_reunite_into_a_working_stream() {
    within(BUDGET, async {
        let (ws, server) = echo_client().await;
        let (mut reader, mut writer) = ws.split();
        writer.send_text("split").await.unwrap();
        assert_eq!(
            reader.recv().await.unwrap().unwrap(),
            Message::text("split")
        );

        // Halves of another stream (of the same type) are handed back, both pairs intact.
        let (a, b) = tokio::io::duplex(64);
        let conn = |role| wsc::proto::Connection::new(role, Default::default());
        let (a_reader, a_writer) =
            WebSocketStream::from_connection(a, conn(wsc::proto::Role::Client), &[]).split();
        let (b_reader, b_writer) =
            WebSocketStream::from_connection(b, conn(wsc::proto::Role::Server), &[]).split();
        let Err((a_reader, b_writer)) = a_reader.reunite(b_writer) else {
            panic!("halves of two streams reunited");
        };
        assert!(a_reader.reunite(a_writer).is_ok());
        assert!(b_reader.reunite(b_writer).is_ok());

        writer.send_text("still split").await.unwrap();
        assert_eq!(
            reader.recv().await.unwrap().unwrap(),
            Message::text("still split")
        );
        let mut ws = reader.reunite(writer).expect("halves of one stream");
        ws.send_text("whole again").await.unwrap();
        match ws.recv_ref().await {
            Some(Ok(wsc::MessageRef::Text(text))) => assert_eq!(text, "whole again"),
            other => panic!("{other:?}"),
        }
        let close = ws.close(Some(CloseFrame::new(1000, "bye"))).await.unwrap();
        assert_eq!(close.map(|f| f.code), Some(CloseCode::NORMAL));
        let seen = server.await.unwrap();
        assert_eq!(seen.len(), 4, "{seen:?}");
    })
    .await;
}

/// A message sent in parts, from the stream and from the writing half, arrives whole at the
/// server (which echoes it), with a ping between parts answered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_in_parts_arrive_whole() {
    within(BUDGET, async {
        let (mut ws, server) = echo_client().await;
        let pieces: Vec<String> = (0..50).map(|i| format!("piece {i}; ")).collect();
        for (i, piece) in pieces.iter().enumerate() {
            ws.send_part(piece, i + 1 == pieces.len()).await.unwrap();
            if i == 10 {
                ws.ping("between").await.unwrap();
            }
        }
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::Pong("between".into())
        );
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::text(pieces.concat())
        );

        let (mut reader, mut writer) = ws.split();
        let data = noise(7, 300_000);
        for (i, chunk) in data.chunks(64 << 10).enumerate() {
            writer.send_part(chunk, false).await.unwrap();
            if i == 1 {
                assert!(matches!(
                    writer.send_text("not now").await,
                    Err(Error::InvalidInput(_))
                ));
            }
        }
        writer.send_part(&[][..], true).await.unwrap();
        let echoed = reader.recv().await.unwrap().unwrap();
        assert!(echoed == Message::binary(data.clone()), "the echo differs");
        writer.close(None).await.unwrap();
        while reader.recv().await.is_some() {}
        let seen = server.await.unwrap();
        assert_eq!(seen[1], Message::text(pieces.concat()));
        assert!(seen[2] == Message::binary(data), "the server saw another");
    })
    .await;
}

// ----- what the server sent before it reset, and its close, reach `close` -----

/// The frames of a server that says its last words and closes with 1008 "rate limit".
fn last_words_and_close() -> Vec<u8> {
    let mut frames = server_frame(FIN | OP_TEXT, b"last words");
    let mut close = 1008u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"rate limit");
    frames.extend(server_frame(FIN | OP_CLOSE, &close));
    frames
}

/// Waits until the client's socket has the peer's reset (blocking the runtime: the server
/// task is done by then, and the reset is the kernel's).
#[cfg(target_os = "linux")]
fn until_reset_arrives(ws: &WebSocketStream<wsc::tokio::TokioStream>) {
    use std::os::fd::AsRawFd;
    common::wait_for_reset(ws.get_ref().tcp().as_raw_fd());
}

/// A client of a raw server that sends `frames` once connected and then resets the
/// connection (SO_LINGER 0); returns once the reset has arrived, the frames still unread in
/// the client's socket.
#[cfg(target_os = "linux")] // socket2, for the reset
async fn reset_after(frames: Vec<u8>) -> WebSocketStream<wsc::tokio::TokioStream> {
    let (listener, url) = listen().await;
    let (go, told) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        raw_accept(&mut tcp).await;
        told.await.unwrap();
        tcp.write_all(&frames).await.unwrap();
        socket2::SockRef::from(&tcp)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    });
    let (ws, _) = builder(&url)
        .close_timeout(Some(Duration::from_secs(10)))
        .connect_async()
        .await
        .unwrap();
    go.send(()).unwrap();
    server.await.unwrap();
    until_reset_arrives(&ws);
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg(target_os = "linux")]
async fn close_returns_the_close_the_server_sent_before_it_reset() {
    within(BUDGET, async {
        let mut ws = reset_after(last_words_and_close()).await;
        // Our close cannot be written; the server's, sent before, is still read. Before, the
        // failed write was the answer (ConnectionReset) and the server's close was lost.
        let closed = ws.close(Some(CloseFrame::new(1000u16, "bye"))).await;
        assert_eq!(
            closed.unwrap(),
            Some(CloseFrame::new(1008u16, "rate limit"))
        );
        assert!(ws.recv().await.is_none());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg(target_os = "linux")]
async fn a_reset_without_a_close_still_fails_close_with_connection_reset() {
    within(BUDGET, async {
        let mut ws = reset_after(server_frame(FIN | OP_TEXT, b"last words")).await;
        let closed = ws.close(None).await;
        assert!(matches!(closed, Err(Error::ConnectionReset)), "{closed:?}");
        assert!(ws.recv().await.is_none());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg(target_os = "linux")]
async fn a_split_writers_close_lets_the_reader_get_what_the_server_sent_before_it_reset() {
    within(BUDGET, async {
        let (mut reader, mut writer) = reset_after(last_words_and_close()).await.split();
        // The peer is gone: that is for the reader to tell, after what it sent before.
        writer.close(None).await.unwrap();
        assert_eq!(
            reader.recv().await.unwrap().unwrap(),
            Message::text("last words")
        );
        assert_eq!(
            reader.recv().await.unwrap().unwrap(),
            Message::Close(Some(CloseFrame::new(1008u16, "rate limit")))
        );
        assert!(reader.recv().await.is_none());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg(target_os = "linux")]
async fn sending_a_close_after_a_send_found_the_peer_gone_is_not_an_error() {
    within(BUDGET, async {
        let mut ws = reset_after(last_words_and_close()).await;
        let sent = ws.send(Message::text("too late")).await;
        assert!(matches!(sent, Err(Error::ConnectionReset)), "{sent:?}");
        // Before: ConnectionClosed, as if the connection had been closed already.
        ws.send(Message::Close(None)).await.unwrap();
        SinkExt::close(&mut ws).await.unwrap();
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::text("last words")
        );
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::Close(Some(CloseFrame::new(1008u16, "rate limit")))
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg(target_os = "linux")]
async fn a_sinks_close_after_a_send_found_the_peer_gone_is_not_an_error_either() {
    within(BUDGET, async {
        let mut ws = reset_after(last_words_and_close()).await;
        let sent = ws.send(Message::text("too late")).await;
        assert!(matches!(sent, Err(Error::ConnectionReset)), "{sent:?}");
        // As `ws.send(Message::Close(..))`. Before: ConnectionClosed from the flush.
        SinkExt::send(&mut ws, Message::Close(None)).await.unwrap();
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::text("last words")
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_returns_the_servers_close_that_recv_already_returned() {
    within(BUDGET, async {
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        let close = server_frame(FIN | OP_CLOSE, &payload);
        let (url, server) = server_that_keeps_tcp_open(close, Vec::new()).await;
        let (mut ws, _) = builder(&url)
            .close_timeout(Some(Duration::from_millis(500)))
            .connect_async()
            .await
            .unwrap();
        let expected = CloseFrame::new(CloseCode::NORMAL, "bye");
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::Close(Some(expected.clone()))
        );
        // Before, `None`: only a close that read the frame itself returned it.
        assert_eq!(ws.close(None).await.unwrap(), Some(expected.clone()));
        assert_eq!(ws.close(None).await.unwrap(), Some(expected));
        server.abort();
    })
    .await;
}

/// `send(Message::Close(..))` on the stream, or else on its writing half, against a peer that
/// reads nothing: bounded by the close timeout as `close` is (before, it waited for room in
/// the socket forever).
async fn send_close_to_a_peer_that_does_not_read(split: bool) {
    let close_timeout = Duration::from_millis(500);
    let (ws, server, go) = blocked_on_a_stalled_server(close_timeout).await;
    let started = Instant::now();
    let close = Message::Close(Some(CloseFrame::new(1000u16, "bye")));
    let sent = if split {
        let (_reader, mut writer) = ws.split();
        timeout(close_timeout * 6, writer.send(close)).await
    } else {
        let mut ws = ws;
        timeout(close_timeout * 6, ws.send(close)).await
    };
    match sent {
        Ok(Err(Error::Timeout(Phase::Close))) => {}
        Ok(other) => panic!("send returned {other:?}"),
        Err(_) => panic!("send still waiting after {:?}", started.elapsed()),
    }
    server.abort();
    drop(go);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_a_close_message_is_bounded_by_the_close_timeout_as_close_is() {
    within(BUDGET, send_close_to_a_peer_that_does_not_read(false)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writers_close_message_is_bounded_by_the_close_timeout_as_its_close_is() {
    within(BUDGET, send_close_to_a_peer_that_does_not_read(true)).await;
}

/// A close queued through the `Sink` (`start_send`, as `SinkExt::feed` and `SinkExt::send`
/// do) and then flushed, on the stream or else on its writing half, against a peer that
/// reads nothing: bounded by the close timeout as `send(Message::Close(..))` is (before, the
/// flush waited for room in the socket forever), and the stream ends with it.
async fn flush_a_queued_close_to_a_peer_that_does_not_read(split: bool) {
    let close_timeout = Duration::from_secs(1);
    let (ws, server, go) = blocked_on_a_stalled_server(close_timeout).await;
    let started = Instant::now();
    let close = Message::Close(Some(CloseFrame::new(1000u16, "bye")));
    let (flushed, ended) = if split {
        let (mut reader, mut writer) = ws.split();
        let flushed = timeout(close_timeout * 6, async {
            writer.feed(close).await?;
            writer.flush().await
        })
        .await;
        (flushed, timeout(close_timeout / 2, reader.next()).await)
    } else {
        let mut ws = ws;
        let flushed = timeout(close_timeout * 6, async {
            SinkExt::feed(&mut ws, close).await?;
            ws.flush().await
        })
        .await;
        (flushed, timeout(close_timeout / 2, ws.next()).await)
    };
    match flushed {
        Ok(Err(Error::Timeout(Phase::Close))) => {}
        Ok(other) => panic!("feed and flush returned {other:?}"),
        Err(_) => panic!("flush still waiting after {:?}", started.elapsed()),
    }
    // Closing is over: the stream ends at once, not after another close timeout.
    assert!(matches!(ended, Ok(None)), "{ended:?}");
    server.abort();
    drop(go);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushing_a_close_queued_through_the_sink_is_bounded_by_the_close_timeout() {
    within(
        BUDGET,
        flush_a_queued_close_to_a_peer_that_does_not_read(false),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushing_a_close_queued_through_a_writers_sink_is_bounded_by_the_close_timeout() {
    within(
        BUDGET,
        flush_a_queued_close_to_a_peer_that_does_not_read(true),
    )
    .await;
}

/// As the blocking client: a reset during the opening handshake is a handshake error (it was
/// a bare `Error::Io`), and a refusal sent before the reset is the answer.
#[tokio::test]
#[cfg(target_os = "linux")] // socket2, for the reset
async fn a_reset_during_the_handshake_is_a_handshake_error_that_keeps_a_refusal_sent_before_it() {
    use wsc::HandshakeError;
    for refusal in [&b""[..], b"HTTP/1.1 403 Forbidden\r\n\r\nno entry"] {
        let (listener, url) = listen().await;
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                head.push(tcp.read_u8().await.unwrap());
            }
            tcp.write_all(refusal).await.unwrap();
            socket2::SockRef::from(&tcp)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        });
        let result = builder(&url).connect_async().await;
        server.await.unwrap();
        match result {
            Err(Error::Handshake(HandshakeError::ConnectionClosed)) if refusal.is_empty() => {}
            Err(Error::Handshake(HandshakeError::Rejected(response)))
                if !refusal.is_empty() && response.status == 403 => {}
            other => panic!("{:?}: {:?}", String::from_utf8_lossy(refusal), other.err()),
        }
    }
}

/// A blocking echo server on its own thread (it answers pings, as every server does), so
/// that it runs while the client's runtime thread is blocked. Ends with the connection.
fn threaded_echo_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(BUDGET)).unwrap();
        let mut ws = wsc::server::accept(tcp).unwrap();
        while let Ok(message) = ws.read() {
            if message.is_data() && ws.send(message).is_err() {
                break;
            }
        }
    });
    url
}

/// How long the tests below block the runtime's thread: the deadlines (100 ms) pass, and
/// the server's thread has long answered (with room for a loaded machine).
const BLOCKED: Duration = Duration::from_millis(1000);

/// The runtime's thread blocked (a handler doing synchronous work) while the answer arrives:
/// when the stream is next polled, its deadline has passed, but the answer is waiting in the
/// socket, unseen by tokio's readiness until its I/O driver runs. Before, the keepalive
/// found a healthy peer dead, and the read timeout fired with a message waiting.
#[tokio::test(flavor = "current_thread")]
async fn deadlines_passed_while_the_thread_was_blocked_look_at_the_socket_first() {
    use futures_util::FutureExt as _;
    within(BUDGET, async {
        let interval = Duration::from_millis(100);
        let keepalive = wsc::Keepalive::new(interval, interval);
        let (mut ws, _) = builder(&threaded_echo_server())
            .keepalive(keepalive)
            .connect_async()
            .await
            .unwrap();
        // The ping falls due; one poll sends it, then the thread blocks past its deadline
        // while the pong comes in.
        tokio::time::sleep(interval * 2).await;
        assert!(ws.recv().now_or_never().is_none());
        std::thread::sleep(BLOCKED);
        match ws.recv().await {
            Some(Ok(Message::Pong(_))) => {}
            other => panic!("the pong waiting in the socket was not read: {other:?}"),
        }
        ws.close(None).await.unwrap();

        let (mut ws, _) = builder(&threaded_echo_server())
            .read_timeout(interval)
            .connect_async()
            .await
            .unwrap();
        // The read timeout's clock starts at the first wait.
        assert!(ws.recv().now_or_never().is_none());
        ws.send_text("echo me").await.unwrap();
        std::thread::sleep(BLOCKED);
        match ws.recv().await {
            Some(Ok(Message::Text(text))) => assert_eq!(text.as_str(), "echo me"),
            other => panic!("the message waiting in the socket was not read: {other:?}"),
        }
        ws.close(None).await.unwrap();

        let (mut ws, _) = builder(&threaded_echo_server())
            .close_timeout(interval)
            .connect_async()
            .await
            .unwrap();
        // Our close goes out (the server's answer cannot be read within this first poll);
        // the thread blocks past the close timeout while the answer comes in.
        let first = ws.close(None).now_or_never();
        assert!(first.is_none(), "{first:?}");
        std::thread::sleep(BLOCKED);
        ws.close(None).await.unwrap();

        // Jobs keep the task busy (each blocks the thread) after the deadline has passed:
        // the look at the socket waits for the I/O driver's turn, which comes once they are
        // done.
        let (mut ws, _) = builder(&threaded_echo_server())
            .keepalive(keepalive)
            .connect_async()
            .await
            .unwrap();
        let (jobs, mut queue) = tokio::sync::mpsc::unbounded_channel();
        for _ in 0..10 {
            jobs.send(()).unwrap();
        }
        tokio::time::sleep(interval * 2).await;
        let mut done = 0;
        loop {
            tokio::select! {
                biased;
                message = ws.recv() => match message {
                    Some(Ok(Message::Pong(_))) => break,
                    other => panic!("after {done} jobs: {other:?}"),
                },
                Some(()) = queue.recv() => {
                    std::thread::sleep(interval * 6 / 10);
                    done += 1;
                }
            }
        }
        drop(jobs);
        ws.close(None).await.unwrap();
    })
    .await;
}
