//! The blocking client against real peers on loopback: our own server role, and raw TCP
//! servers that misbehave on purpose.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

mod common;
use common::Uncompressed;

use wsc::proto::handshake::{accept_response, parse_request};
use wsc::{
    ClientBuilder, CloseCode, CloseFrame, Error, HandshakeError, Message, Phase, ProtocolError,
};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Binds a loopback listener and runs `serve` on its first connection in a thread.
fn serve_once<T: Send + 'static>(
    serve: impl FnOnce(TcpStream) -> T + Send + 'static,
) -> (String, JoinHandle<T>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
        serve(tcp)
    });
    (format!("ws://{addr}"), handle)
}

/// A server (our own server role) that echoes data messages and records what it saw.
fn echo_server() -> (
    String,
    JoinHandle<(wsc::proto::handshake::Request, Vec<Message>)>,
) {
    serve_once(|tcp| {
        let (mut ws, request) = wsc::server::Acceptor::new()
            .protocol("v2")
            .accept(tcp)
            .unwrap();
        let mut seen = Vec::new();
        loop {
            match ws.read() {
                Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                    seen.push(m.clone());
                    ws.send(m).unwrap();
                }
                Ok(m @ Message::Close(_)) => {
                    seen.push(m);
                    return (request, seen);
                }
                Ok(other) => seen.push(other),
                Err(e) => panic!("server: {e}"),
            }
        }
    })
}

fn builder(url: &str) -> ClientBuilder {
    ClientBuilder::new(url)
        .handshake_timeout(TIMEOUT)
        .read_timeout(Some(TIMEOUT))
}

/// Reads a raw upgrade request from `tcp` and answers 101; returns bytes read past it.
fn raw_accept(tcp: &mut TcpStream, extra: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = tcp.read(&mut chunk).unwrap();
        buf.extend_from_slice(&chunk[..n]);
        if let Some((req, used)) = parse_request(&buf, 1 << 16).unwrap() {
            let mut resp = accept_response(&req, None, &[]);
            resp.extend_from_slice(extra);
            tcp.write_all(&resp).unwrap();
            return buf[used..].to_vec();
        }
    }
}

/// Reads one (masked) client frame from a raw socket: (opcode, payload).
fn read_client_frame(tcp: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    tcp.read_exact(&mut head).unwrap();
    assert!(head[1] & 0x80 != 0, "client frames are masked");
    let len = match head[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            tcp.read_exact(&mut b).unwrap();
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            tcp.read_exact(&mut b).unwrap();
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut key = [0u8; 4];
    tcp.read_exact(&mut key).unwrap();
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).unwrap();
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
    (head[0] & 0x0F, payload)
}

#[test]
fn echo_round_trip_text_binary_large_and_fragmented() {
    let (url, server) = echo_server();
    let mut ws = builder(&format!("{url}/echo?x=1")).connect().unwrap();
    ws.send_text("hello").unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("hello"));
    ws.send_binary(&[0, 1, 2, 255]).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(vec![0, 1, 2, 255]));
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    ws.send_binary(&big).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(big.clone()));
    ws.send_fragmented(Message::text("fragmented text"), 4)
        .unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("fragmented text"));
    let close = ws
        .close_and_wait(Some(CloseFrame::new(1000, "bye")))
        .unwrap();
    assert_eq!(close, Some(CloseFrame::new(1000, "")));
    assert!(matches!(ws.read(), Err(Error::ConnectionClosed)));
    let (request, seen) = server.join().unwrap();
    assert_eq!(request.path, "/echo?x=1");
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[4], Message::Close(Some(CloseFrame::new(1000, "bye"))));
}

/// A message streamed in parts from a reader (its size unknown up front), with a ping between
/// parts, arrives whole; then a text message in parts.
#[test]
fn messages_sent_in_parts_arrive_whole() {
    let (url, server) = echo_server();
    let mut ws = builder(&format!("{url}/upload")).connect().unwrap();
    let data: Vec<u8> = (0..1_000_003u32).map(|i| (i % 253) as u8).collect();
    let mut source = &data[..];
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = std::io::Read::read(&mut source, &mut buf).unwrap();
        ws.send_part(&buf[..n], n == 0).unwrap();
        if n == 0 {
            break;
        }
        ws.ping(b"meanwhile").unwrap();
    }
    // The pongs to the pings come first: they were answered as the parts arrived.
    let mut pongs = 0;
    let echoed = loop {
        match ws.read().unwrap() {
            Message::Pong(_) => pongs += 1,
            other => break other,
        }
    };
    assert_eq!(pongs, 16);
    assert!(echoed == Message::binary(data.clone()), "the echo differs");
    for (i, word) in ["one ", "two ", "three"].iter().enumerate() {
        ws.send_part(*word, i == 2).unwrap();
    }
    assert_eq!(ws.read().unwrap(), Message::text("one two three"));
    ws.close_and_wait(None).unwrap();
    let (_, seen) = server.join().unwrap();
    let data_seen: Vec<&Message> = seen.iter().filter(|m| m.is_data()).collect();
    assert!(
        data_seen == [&Message::binary(data), &Message::text("one two three")],
        "the server saw other messages"
    );
    assert_eq!(
        seen.iter()
            .filter(|m| matches!(m, Message::Ping(_)))
            .count(),
        16
    );
}

/// Big messages both ways through the paths built for them: owned sends go out block by
/// block, borrowed reads get the payload read straight into a reused buffer. Sizes vary, so
/// that a reused buffer bigger than the message is exercised too.
#[test]
fn big_owned_sends_and_borrowed_reads_round_trip_intact() {
    let (url, server) = echo_server();
    let mut ws = builder(&format!("{url}/echo")).connect().unwrap();
    let sizes = [3_000_000usize, 700_000, 4_000_001];
    for (i, &size) in sizes.iter().enumerate() {
        let data: Vec<u8> = (0..size).map(|j| (j * 7 + i) as u8).collect();
        ws.send(Message::binary(data.clone())).unwrap();
        match ws.read_ref().unwrap() {
            wsc::MessageRef::Binary(got) => assert!(got == &data[..], "binary {size} differs"),
            other => panic!("expected binary, got {other:?}"),
        }
        let text = "wsc ü €".repeat(size / 10 + i);
        ws.send(Message::text(text.as_str())).unwrap();
        match ws.read_ref().unwrap() {
            wsc::MessageRef::Text(got) => assert!(got == text, "text of {} differs", text.len()),
            other => panic!("expected text, got {other:?}"),
        }
    }
    // An owned read of a big message after borrowed ones.
    let last: Vec<u8> = (0..2_000_000u32).map(|j| (j % 13) as u8).collect();
    ws.send(Message::binary(last.clone())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(last));
    ws.close_and_wait(None).unwrap();
    let (_, seen) = server.join().unwrap();
    assert_eq!(seen.len(), 2 * sizes.len() + 2);
}

#[test]
fn handshake_sends_headers_protocols_origin_and_url_credentials() {
    let (url, server) = echo_server();
    let url = url.replace("ws://", "ws://alice:s%3Acret@");
    let mut ws = builder(&format!("{url}/chat"))
        .header("X-Api-Key", "k123")
        .protocol("v1")
        .protocol("v2")
        .origin("https://example.test")
        .connect()
        .unwrap();
    assert_eq!(ws.protocol(), Some("v2"));
    assert_eq!(ws.response().unwrap().status, 101);
    ws.close_and_wait(None).unwrap();
    let (request, _) = server.join().unwrap();
    let h = &request.headers;
    assert_eq!(h["x-api-key"], "k123");
    assert_eq!(h["origin"], "https://example.test");
    assert_eq!(request.protocols, ["v1", "v2"]);
    // alice:s:cret, base64
    assert_eq!(h["authorization"], "Basic YWxpY2U6czpjcmV0");
    // Non-default port: included in Host.
    let port = url.rsplit(':').next().unwrap();
    assert!(h["host"].to_str().unwrap().ends_with(&format!(":{port}")));
}

#[test]
fn a_short_spelling_of_an_ipv4_address_connects_to_it_and_is_sent_dotted() {
    let (url, server) = echo_server();
    let port = url.rsplit(':').next().unwrap().to_string();
    let mut ws = builder(&format!("ws://127.1:{port}/")).connect().unwrap();
    ws.send_text("hi").unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("hi"));
    ws.close_and_wait(None).unwrap();
    let (request, _) = server.join().unwrap();
    assert_eq!(
        request.headers["host"],
        format!("127.0.0.1:{port}").as_str()
    );
}

#[test]
fn frames_in_the_same_packet_as_the_101_are_not_lost() {
    let (url, server) = serve_once(|mut tcp| {
        // The 101 and two frames in one write.
        raw_accept(
            &mut tcp,
            &[0x81, 0x05, b'f', b'i', b'r', b's', b't', 0x82, 0x01, 0x2A],
        );
        read_client_frame(&mut tcp)
    });
    let mut ws = builder(&url).connect().unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("first"));
    assert_eq!(ws.read().unwrap(), Message::binary(vec![42]));
    ws.send_text("ack").unwrap();
    assert_eq!(server.join().unwrap(), (1, b"ack".to_vec()));
}

#[test]
fn refusal_reports_status_headers_and_body() {
    let (url, _server) = serve_once(|mut tcp| {
        let mut buf = [0u8; 4096];
        let _ = tcp.read(&mut buf).unwrap();
        tcp.write_all(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nContent-Length: 13\r\n\r\nbad api key\r\n")
            .unwrap();
        thread::sleep(Duration::from_millis(200));
    });
    match builder(&url).connect() {
        Err(Error::Handshake(HandshakeError::Rejected(resp))) => {
            assert_eq!(resp.status, 401);
            assert_eq!(resp.headers["www-authenticate"], "Bearer");
            assert_eq!(&resp.body[..], b"bad api key\r\n");
            let msg = Error::Handshake(HandshakeError::Rejected(resp)).to_string();
            assert!(msg.contains("401") && msg.contains("bad api key"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
}

/// Refuses with a 500 that announces 1000 bytes of body, sends 12 of them, then stalls.
fn stalled_refusal() -> (String, JoinHandle<()>) {
    serve_once(|mut tcp| {
        let mut buf = [0u8; 4096];
        let _ = tcp.read(&mut buf).unwrap();
        tcp.write_all(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 1000\r\n\r\nbackend down",
        )
        .unwrap();
        thread::sleep(Duration::from_secs(6));
    })
}

fn assert_stalled_refusal(result: Result<impl std::fmt::Debug, Error>, start: Instant) {
    match result {
        Err(Error::Handshake(HandshakeError::Rejected(resp))) => {
            assert_eq!(resp.status, 500);
            assert_eq!(&resp.body[..], b"backend down");
        }
        other => panic!("{other:?}"),
    }
    // Within the wait for a body (1 s), not the handshake timeout.
    let took = start.elapsed();
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn a_refusal_whose_body_stalls_is_reported_without_waiting_for_the_rest() {
    let (url, _server) = stalled_refusal();
    let start = Instant::now();
    let result = builder(&url)
        .handshake_timeout(Duration::from_secs(20))
        .connect();
    assert_stalled_refusal(result, start);
}

#[cfg(feature = "tokio")]
#[test]
fn async_a_refusal_whose_body_stalls_is_reported_without_waiting_for_the_rest() {
    let (url, _server) = stalled_refusal();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let start = Instant::now();
    let result = runtime.block_on(
        builder(&url)
            .handshake_timeout(Duration::from_secs(20))
            .connect_async(),
    );
    assert_stalled_refusal(result.map(|(_, response)| response), start);
}

#[test]
fn plain_http_server_without_body_length_is_reported_on_close() {
    let (url, _server) = serve_once(|mut tcp| {
        let mut buf = [0u8; 4096];
        let _ = tcp.read(&mut buf).unwrap();
        tcp.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html>hi</html>")
            .unwrap();
    });
    match builder(&url).connect() {
        Err(Error::Handshake(HandshakeError::Rejected(resp))) => {
            assert_eq!(resp.status, 200);
            assert_eq!(&resp.body[..], b"<html>hi</html>");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn wrong_accept_key_is_rejected() {
    let (url, _server) = serve_once(|mut tcp| {
        let mut buf = [0u8; 4096];
        let _ = tcp.read(&mut buf).unwrap();
        tcp.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: dGhpcyBpcyB3cm9uZw==\r\n\r\n")
            .unwrap();
        thread::sleep(Duration::from_millis(200));
    });
    let err = builder(&url).connect().unwrap_err();
    assert!(
        matches!(err, Error::Handshake(HandshakeError::WrongAccept { .. })),
        "{err}"
    );
}

#[test]
fn silent_server_times_out_in_the_handshake_phase() {
    let (url, server) = serve_once(|mut tcp| {
        let mut buf = [0u8; 4096];
        let _ = tcp.read(&mut buf);
        // Say nothing; wait for the client to give up.
        let _ = tcp.read(&mut buf);
    });
    let start = Instant::now();
    let err = ClientBuilder::new(&url)
        .handshake_timeout(Duration::from_millis(300))
        .connect()
        .unwrap_err();
    assert!(
        matches!(err, Error::Timeout(Phase::WebSocketHandshake)),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(
        err.to_string().starts_with(
            "timed out during the WebSocket handshake (no complete response within \
             ClientBuilder::handshake_timeout"
        ),
        "{err}"
    );
    server.join().unwrap();
}

#[test]
fn the_handshake_timeout_bounds_writing_the_request() {
    // A server that takes the connection and reads nothing; a request bigger than the
    // sockets hold (6 MiB of header). Before, the write waited for the write timeout alone
    // (none by default): here until the server gave up, 4 s later.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        thread::sleep(Duration::from_secs(4));
        drop(tcp);
    });
    let start = Instant::now();
    let opened = ClientBuilder::new(format!("ws://{addr}/"))
        .no_proxy()
        .handshake_timeout(Duration::from_millis(500))
        .header("X-Big", "a".repeat(6 << 20))
        .connect();
    assert!(
        matches!(opened, Err(Error::Timeout(Phase::WebSocketHandshake))),
        "{opened:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    server.join().unwrap();
}

#[test]
fn refused_port_is_a_connect_error() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = builder(&format!("ws://127.0.0.1:{port}/"))
        .connect()
        .unwrap_err();
    match &err {
        Error::Connect { target, source } => {
            assert_eq!(target, &format!("127.0.0.1:{port}"));
            assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().starts_with("cannot connect to 127.0.0.1:"));
}

#[test]
fn bad_urls_fail_before_connecting() {
    for url in ["http://127.0.0.1/", "ws://", "ws://h:99999/", "wss://h/#x"] {
        assert!(matches!(wsc::connect(url), Err(Error::Url(_))), "{url}");
    }
}

#[test]
fn read_timeout_is_reported_and_the_connection_survives() {
    let (timed_out, told) = std::sync::mpsc::channel::<()>();
    let (url, server) = serve_once(move |mut tcp| {
        raw_accept(&mut tcp, &[]);
        // Sends only once the client's read has timed out.
        told.recv_timeout(TIMEOUT).unwrap();
        tcp.write_all(&[0x81, 0x02, b'o', b'k']).unwrap();
        read_client_frame(&mut tcp)
    });
    let mut ws = ClientBuilder::new(&url)
        .read_timeout(Some(Duration::from_millis(100)))
        .connect()
        .unwrap();
    let first = ws.read();
    timed_out.send(()).unwrap();
    assert!(
        matches!(first, Err(Error::Timeout(Phase::Read))),
        "{first:?}"
    );
    ws.set_read_timeout(Some(TIMEOUT)).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("ok"));
    ws.close(None).unwrap();
    assert_eq!(server.join().unwrap(), (8, Vec::new()));
}

#[test]
fn server_protocol_violation_fails_with_close_code_and_keeps_earlier_messages() {
    let (url, server) = serve_once(|mut tcp| {
        raw_accept(&mut tcp, &[]);
        // A good message, then a frame with RSV2 set, in one write.
        tcp.write_all(&[0x81, 0x02, b'h', b'i', 0xA1, 0x00])
            .unwrap();
        let close = read_client_frame(&mut tcp);
        tcp.write_all(&[0x88, 0x02, 0x03, 0xEA]).unwrap();
        close
    });
    let mut ws = builder(&url).connect().unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("hi"));
    let err = ws.read().unwrap_err();
    assert!(
        matches!(err, Error::Protocol(ProtocolError::ReservedBits(2))),
        "{err}"
    );
    assert!(err.to_string().contains("1002"), "{err}");
    let (op, payload) = server.join().unwrap();
    assert_eq!((op, &payload[..2]), (8, &1002u16.to_be_bytes()[..]));
    assert!(matches!(ws.read(), Err(Error::ConnectionClosed)));
}

#[test]
fn oversized_message_is_refused_with_1009() {
    let (url, server) = serve_once(|tcp| {
        let mut ws = wsc::server::accept(tcp).unwrap();
        ws.send_binary(&vec![0u8; 2048]).unwrap();
        match ws.read() {
            Ok(Message::Close(frame)) => frame,
            other => panic!("{other:?}"),
        }
    });
    let mut ws = builder(&url)
        .max_message_size(Some(1024))
        .connect()
        .unwrap();
    let err = ws.read().unwrap_err();
    assert!(
        matches!(
            err,
            Error::Protocol(
                ProtocolError::FrameTooLarge { .. } | ProtocolError::MessageTooLarge { .. }
            )
        ),
        "{err}"
    );
    assert_eq!(
        server.join().unwrap().unwrap().code,
        CloseCode::MESSAGE_TOO_BIG
    );
}

/// Borrowed reads of a burst written at once (lent messages, a ping, fragments and the close
/// in one read buffer): everything comes out in order, the ping is answered between lent
/// messages, and the close is answered.
#[test]
fn borrowed_reads_of_a_mixed_burst_answer_pings_in_order() {
    let (burst, expected) = common::mixed_burst();
    let (url, server) = serve_once(move |mut tcp| {
        raw_accept(&mut tcp, &[]);
        tcp.write_all(&burst).unwrap();
        let pong = read_client_frame(&mut tcp);
        let close = read_client_frame(&mut tcp);
        (pong, close)
    });
    let mut ws = builder(&url).connect().unwrap();
    let mut seen = Vec::new();
    loop {
        match ws.read_ref() {
            Ok(message) => seen.push(common::describe(message)),
            Err(Error::ConnectionClosed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(seen, expected);
    let ((pong_op, pong), (close_op, close)) = server.join().unwrap();
    assert_eq!((pong_op, &pong[..]), (0xA, &b"are you there"[..]));
    assert_eq!((close_op, &close[..2]), (0x8, &1000u16.to_be_bytes()[..]));
}

#[test]
fn server_initiated_close_is_answered_once_and_waits_for_tcp_close() {
    let (url, server) = serve_once(|tcp| {
        let mut ws = wsc::server::accept(tcp).unwrap();
        ws.send(Message::Ping(b"are you there".to_vec().into()))
            .unwrap();
        let pong = ws.read().unwrap();
        ws.close(Some(CloseFrame::new(1001, "restart"))).unwrap();
        let reply = ws.read().unwrap();
        (pong, reply)
    });
    let mut ws = builder(&url).connect().unwrap();
    assert_eq!(
        ws.read().unwrap(),
        Message::Ping(b"are you there".to_vec().into())
    );
    assert_eq!(
        ws.read().unwrap(),
        Message::Close(Some(CloseFrame::new(1001, "restart")))
    );
    assert!(matches!(ws.send_text("late"), Err(Error::ConnectionClosed)));
    let (pong, reply) = server.join().unwrap();
    assert_eq!(pong, Message::Pong(b"are you there".to_vec().into()));
    assert_eq!(reply, Message::Close(Some(CloseFrame::new(1001, ""))));
}

#[test]
fn close_wait_is_bounded_when_the_server_keeps_tcp_open() {
    let (url, server) = serve_once(|mut tcp| {
        raw_accept(&mut tcp, &[0x88, 0x02, 0x03, 0xE8]);
        let reply = read_client_frame(&mut tcp);
        thread::sleep(Duration::from_secs(3)); // never closes in time
        reply
    });
    let mut ws = builder(&url)
        .close_timeout(Some(Duration::from_millis(200)))
        .connect()
        .unwrap();
    let start = Instant::now();
    assert_eq!(
        ws.read().unwrap(),
        Message::Close(Some(CloseFrame::new(1000, "")))
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(server.join().unwrap(), (8, 1000u16.to_be_bytes().to_vec()));
}

/// The server's close is returned at once, as tungstenite and the async client return it,
/// even from a server that keeps TCP open a while; the next read is the one that lets the
/// server close TCP first (RFC 6455 section 7.1.1), within the close timeout. Before, the
/// close itself waited for the TCP close.
#[test]
fn the_servers_close_comes_at_once_and_the_next_read_waits_for_its_tcp_close() {
    let (url, server) = serve_once(|mut tcp| {
        raw_accept(&mut tcp, &[0x88, 0x02, 0x03, 0xE8]);
        let reply = read_client_frame(&mut tcp);
        thread::sleep(Duration::from_millis(1500));
        reply
    });
    let mut ws = builder(&url)
        .close_timeout(Some(Duration::from_secs(5)))
        .connect()
        .unwrap();
    let start = Instant::now();
    assert_eq!(
        ws.read().unwrap(),
        Message::Close(Some(CloseFrame::new(1000, "")))
    );
    let closed_after = start.elapsed();
    assert!(closed_after < Duration::from_secs(1), "{closed_after:?}");
    // The reply went out before the close was returned.
    assert_eq!(server.join().unwrap(), (8, 1000u16.to_be_bytes().to_vec()));
    assert!(matches!(ws.read(), Err(Error::ConnectionClosed)));
    let tcp_closed_after = start.elapsed();
    assert!(
        tcp_closed_after >= Duration::from_millis(1400),
        "{tcp_closed_after:?}"
    );
    assert!(matches!(ws.read(), Err(Error::ConnectionClosed)));
}

/// `close_and_wait` closes as RFC 6455 section 7.1.1 has it: the server, which answers the
/// close and closes TCP a second later, closes first; the client does not drop the
/// connection under it as soon as the close frame is in.
#[test]
fn close_and_wait_lets_the_server_close_tcp_first() {
    let (url, server) = serve_once(|mut tcp| {
        raw_accept(&mut tcp, &[]);
        let close = read_client_frame(&mut tcp);
        tcp.write_all(&[0x88, 0x02, 0x03, 0xE8]).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        // A read of 0 bytes: the client closed its side first.
        let client_closed_first = matches!(tcp.read(&mut [0u8; 16]), Ok(0));
        (close.0, client_closed_first)
    });
    let mut ws = builder(&url)
        .close_timeout(Some(Duration::from_secs(5)))
        .connect()
        .unwrap();
    let frame = ws.close_and_wait(Some(CloseFrame::new(1000, ""))).unwrap();
    assert_eq!(frame, Some(CloseFrame::new(1000, "")));
    drop(ws);
    assert_eq!(server.join().unwrap(), (8, false));
}

#[test]
fn eof_without_close_is_connection_reset() {
    let (url, server) = serve_once(|mut tcp| {
        raw_accept(&mut tcp, &[0x81, 0x01, b'x']);
    });
    let mut ws = builder(&url).connect().unwrap();
    server.join().unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("x"));
    assert!(matches!(ws.read(), Err(Error::ConnectionReset)));
}

#[test]
fn client_over_a_caller_supplied_stream() {
    let (url, server) = echo_server();
    let tcp = TcpStream::connect(url.trim_start_matches("ws://")).unwrap();
    let mut ws = wsc::client(format!("{url}/custom"), tcp).unwrap();
    ws.send_text("over my stream").unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("over my stream"));
    ws.close_and_wait(None).unwrap();
    assert_eq!(server.join().unwrap().0.path, "/custom");
}

#[test]
fn iterator_yields_until_close() {
    let (url, _server) = serve_once(|tcp| {
        let mut ws = wsc::server::accept(tcp).unwrap();
        for i in 0..3 {
            ws.send_text(&i.to_string()).unwrap();
        }
        ws.close(None).unwrap();
        let _ = ws.read();
    });
    let ws = builder(&url).connect().unwrap();
    let got: Vec<Message> = ws.map(Result::unwrap).collect();
    assert_eq!(
        got,
        [
            Message::text("0"),
            Message::text("1"),
            Message::text("2"),
            Message::Close(None)
        ]
    );
}

/// Runs `f` on a thread and fails the test if it does not finish within `limit`.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("did not finish within {limit:?}"))
}

#[test]
fn close_and_wait_is_bounded_when_the_server_keeps_talking() {
    let (url, _server) = serve_once(|mut tcp| {
        raw_accept(&mut tcp, &[]);
        // Never answers the close; sends a message every 100 ms for 5 s.
        for _ in 0..50 {
            if tcp.write_all(&[0x81, 0x01, b'x']).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    });
    let err = within(Duration::from_secs(4), move || {
        let mut ws = ClientBuilder::new(&url)
            .close_timeout(Some(Duration::from_millis(500)))
            .connect()
            .unwrap();
        ws.close_and_wait(None).unwrap_err()
    });
    assert!(matches!(err, Error::Timeout(Phase::Close)), "{err}");
}

#[test]
fn reads_after_close_are_bounded_by_the_close_timeout() {
    // A server that never answers the close (nor closes TCP). Before, `read` after `close`
    // waited for its close forever: only `close_and_wait` counted the close timeout.
    let (url, _server) = serve_once(|mut tcp| {
        raw_accept(&mut tcp, &[]);
        thread::sleep(Duration::from_secs(10));
    });
    let (first, then, elapsed) = within(Duration::from_secs(4), move || {
        let mut ws = ClientBuilder::new(&url)
            .close_timeout(Some(Duration::from_millis(500)))
            .connect()
            .unwrap();
        ws.close(None).unwrap();
        let start = Instant::now();
        let first = ws.read().unwrap_err();
        (first, ws.read().unwrap_err(), start.elapsed())
    });
    assert!(matches!(first, Error::Timeout(Phase::Close)), "{first}");
    assert!(matches!(then, Error::ConnectionClosed), "{then}");
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
}

#[test]
fn writing_the_close_is_bounded_by_the_close_timeout_when_it_is_the_shorter() {
    // A server that reads nothing: a big message stays queued after its write timed out, and
    // the close behind it cannot go out. Before, `close` waited the (longer) write timeout,
    // or forever without one; now the close timeout, and closing is given up.
    let (url, _server) = serve_once(|mut tcp| {
        raw_accept(&mut tcp, &[]);
        thread::sleep(Duration::from_secs(10));
    });
    let (closed, read, elapsed) = within(Duration::from_secs(8), move || {
        let mut ws = ClientBuilder::new(&url)
            .uncompressed()
            .write_timeout(Duration::from_millis(800))
            .close_timeout(Duration::from_millis(200))
            .connect()
            .unwrap();
        let sent = ws.send_binary(&vec![7u8; 32 << 20]).unwrap_err();
        assert!(matches!(sent, Error::Timeout(Phase::Write)), "{sent}");
        let start = Instant::now();
        let closed = ws.close(None).unwrap_err();
        let elapsed = start.elapsed();
        (closed, ws.read().unwrap_err(), elapsed)
    });
    assert!(matches!(closed, Error::Timeout(Phase::Close)), "{closed}");
    assert!(elapsed < Duration::from_millis(700), "{elapsed:?}");
    assert!(matches!(read, Error::ConnectionClosed), "{read}");
}

#[test]
fn a_read_after_close_and_wait_timed_out_does_not_wait_again() {
    let (url, _server) = serve_once(|mut tcp| {
        raw_accept(&mut tcp, &[]);
        thread::sleep(Duration::from_secs(10));
    });
    let (closed, read) = within(Duration::from_secs(4), move || {
        let mut ws = ClientBuilder::new(&url)
            .close_timeout(Some(Duration::from_millis(500)))
            .connect()
            .unwrap();
        let closed = ws.close_and_wait(None).unwrap_err();
        // Before, this read waited for the server's close with no bound at all.
        (closed, ws.read().unwrap_err())
    });
    assert!(matches!(closed, Error::Timeout(Phase::Close)), "{closed}");
    assert!(matches!(read, Error::ConnectionClosed), "{read}");
}

#[test]
fn close_drain_is_bounded_when_the_server_trickles_after_its_close() {
    let (url, _server) = serve_once(|mut tcp| {
        raw_accept(&mut tcp, &[0x88, 0x02, 0x03, 0xE8]);
        for _ in 0..50 {
            if tcp.write_all(b"z").is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    });
    let msg = within(Duration::from_secs(4), move || {
        let mut ws = ClientBuilder::new(&url)
            .close_timeout(Some(Duration::from_millis(500)))
            .connect()
            .unwrap();
        ws.read().unwrap()
    });
    assert_eq!(msg, Message::Close(Some(CloseFrame::new(1000, ""))));
}

#[test]
fn handshake_deadline_holds_against_a_trickling_server() {
    let (url, _server) = serve_once(|mut tcp| {
        let mut buf = [0u8; 4096];
        let _ = tcp.read(&mut buf);
        for b in b"HTTP/1.1 101 Switching Protocols\r\nX-Slow: "
            .iter()
            .chain([b'a'; 100].iter())
        {
            if tcp.write_all(&[*b]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    });
    let start = Instant::now();
    let err = within(Duration::from_secs(5), move || {
        ClientBuilder::new(&url)
            .handshake_timeout(Duration::from_millis(700))
            .connect()
            .unwrap_err()
    });
    assert!(
        matches!(err, Error::Timeout(Phase::WebSocketHandshake)),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[test]
#[cfg(feature = "deflate")]
fn a_failed_transport_ends_the_connection() {
    /// A stream that fails every read after the handshake.
    struct Broken {
        handshake: std::io::Cursor<Vec<u8>>,
        reads: usize,
    }
    impl Read for Broken {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.reads += 1;
            let n = self.handshake.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            Err(std::io::Error::other("link down"))
        }
    }
    impl Write for Broken {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            // Answer the request with a valid 101 computed from its key.
            if let Ok(Some((req, _))) = parse_request(buf, 1 << 16) {
                self.handshake = std::io::Cursor::new(accept_response(&req, None, &[]));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let stream = Broken {
        handshake: std::io::Cursor::new(Vec::new()),
        reads: 0,
    };
    let ws = ClientBuilder::new("ws://example.test/")
        .uncompressed()
        .connect_on(stream)
        .unwrap();
    let results: Vec<_> = ws.take(5).collect();
    assert_eq!(
        results.len(),
        1,
        "one error, then the iterator ends: {results:?}"
    );
    assert!(matches!(results[0], Err(Error::Io(_))));
}

#[test]
fn close_and_wait_after_the_server_closed_is_ok() {
    let (url, _server) = serve_once(|mut tcp| {
        raw_accept(&mut tcp, &[0x88, 0x02, 0x03, 0xE8]);
        let _ = read_client_frame(&mut tcp);
    });
    let mut ws = builder(&url).connect().unwrap();
    assert!(matches!(ws.read().unwrap(), Message::Close(_)));
    // The server's close, though the read above already returned it: before, `None`.
    assert_eq!(
        ws.close_and_wait(None).unwrap(),
        Some(CloseFrame::new(CloseCode::NORMAL, ""))
    );
    // And again: closing is over, its outcome stays.
    assert_eq!(
        ws.close_and_wait(None).unwrap(),
        Some(CloseFrame::new(CloseCode::NORMAL, ""))
    );
}

#[test]
#[cfg(feature = "deflate")]
fn decompression_bomb_is_stopped_with_1009() {
    use wsc::proto::deflate::{Codec, DeflateConfig, DeflateParams};
    let (url, server) = serve_once(|mut tcp| {
        // Accept with permessage-deflate, then send 8 MiB of zeros compressed to ~8 KiB.
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        let req = loop {
            let n = tcp.read(&mut chunk).unwrap();
            buf.extend_from_slice(&chunk[..n]);
            if let Some((req, _)) = parse_request(&buf, 1 << 16).unwrap() {
                break req;
            }
        };
        let ext = (
            "Sec-WebSocket-Extensions".to_string(),
            "permessage-deflate".to_string(),
        );
        tcp.write_all(&accept_response(&req, None, &[ext])).unwrap();
        let params = DeflateParams {
            local_no_context_takeover: false,
            remote_no_context_takeover: false,
            local_max_window_bits: 15,
            remote_max_window_bits: 15,
        };
        let mut codec = Codec::new(params, &DeflateConfig::default());
        let mut bomb = Vec::new();
        codec.compress(&vec![0u8; 8 << 20], &mut bomb).unwrap();
        let mut frame = vec![0xC2, 127];
        frame.extend_from_slice(&(bomb.len() as u64).to_be_bytes());
        frame.extend_from_slice(&bomb);
        tcp.write_all(&frame).unwrap();
        (bomb.len(), read_client_frame(&mut tcp))
    });
    let mut ws = builder(&url)
        .max_message_size(Some(1 << 20))
        .connect()
        .unwrap();
    assert!(ws.connection().deflate_params().is_some());
    let err = ws.read().unwrap_err();
    assert!(
        matches!(
            err,
            Error::Protocol(ProtocolError::MessageTooLarge { max: 1048576, .. })
        ),
        "{err}"
    );
    let (bomb_len, (op, payload)) = server.join().unwrap();
    assert!(bomb_len < 1 << 20, "the bomb itself is small: {bomb_len}");
    assert_eq!((op, &payload[..2]), (8, &1009u16.to_be_bytes()[..]));
}

#[test]
fn fed_messages_go_out_in_batches_and_borrowed_reads_see_every_echo() {
    let (url, server) = echo_server();
    let mut ws = builder(&url).connect().unwrap();
    for i in 0..1000 {
        ws.feed(format!("message {i}")).unwrap();
    }
    // Nothing flushed by hand: the read writes the queue before it waits.
    for i in 0..1000 {
        match ws.read_ref().unwrap() {
            wsc::MessageRef::Text(text) => assert_eq!(text, format!("message {i}")),
            other => panic!("unexpected {other:?}"),
        }
    }
    ws.feed(vec![7u8; 100_000]).unwrap();
    ws.flush().unwrap();
    assert_eq!(ws.read_ref().unwrap().as_payload(), &[7u8; 100_000][..]);
    ws.close_and_wait(None).unwrap();
    let (_, seen) = server.join().unwrap();
    assert_eq!(seen.len(), 1002);
}

#[test]
fn a_read_returns_what_arrived_without_waiting_for_room_for_our_output() {
    let (go, went) = std::sync::mpsc::channel::<()>();
    let (url, server) = serve_once(move |mut tcp| {
        raw_accept(&mut tcp, &[]);
        // Reads nothing; sends when told, then waits until the client has its message.
        let _ = went.recv();
        tcp.write_all(&[0x81, 2, b'h', b'i']).unwrap();
        let _ = went.recv();
    });
    let write_timeout = Duration::from_millis(1500);
    let mut ws = builder(&url)
        .write_timeout(Some(write_timeout))
        .connect()
        .unwrap();
    // More than the sockets hold, none of it taken by the server: the rest stays queued.
    let sent = ws.send_binary(&vec![7u8; 32 << 20]).unwrap_err();
    assert!(matches!(sent, Error::Timeout(Phase::Write)), "{sent}");
    go.send(()).unwrap();
    // The clock starts once "hi" is in the client's socket (a peek on a clone, which
    // shares the socket but neither takes the bytes nor changes its options).
    let peeker = ws.get_ref().tcp().try_clone().unwrap();
    let (arrived, wait) = std::sync::mpsc::channel();
    thread::spawn(move || loop {
        use std::io::ErrorKind::{Interrupted, TimedOut, WouldBlock};
        match peeker.peek(&mut [0u8; 1]) {
            // Interrupted, or a read timeout on the socket ran out: peek again.
            Err(e) if matches!(e.kind(), Interrupted | WouldBlock | TimedOut) => {
                thread::sleep(Duration::from_millis(5))
            }
            got => break arrived.send(got.map_err(|e| e.to_string())).unwrap(),
        }
    });
    let peeked = wait.recv_timeout(TIMEOUT).expect("\"hi\" never arrived");
    assert_eq!(peeked, Ok(1));
    let start = Instant::now();
    assert_eq!(ws.read().unwrap(), Message::text("hi"));
    // Before, the read waited out the write timeout for room first.
    assert!(start.elapsed() < write_timeout / 2, "{:?}", start.elapsed());
    assert!(ws.has_unsent_output());
    go.send(()).unwrap();
    server.join().unwrap();
}

#[test]
fn server_role_reads_a_frame_sent_in_the_same_write_as_the_request() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
        let (mut ws, _request) = wsc::server::Acceptor::new().accept(tcp).unwrap();
        let first = ws.read().unwrap();
        let second = ws.read().unwrap();
        (first, second)
    });
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    // The request, a masked "hi" and a masked close 1000, all in one write: the frames land
    // in the buffer the server read the request into.
    let mut wire = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes();
    let key = [1u8, 2, 3, 4];
    wire.extend_from_slice(&[0x81, 0x82]);
    wire.extend_from_slice(&key);
    wire.extend(b"hi".iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    wire.extend_from_slice(&[0x88, 0x82]);
    wire.extend_from_slice(&key);
    wire.extend(
        [0x03u8, 0xE8]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4]),
    );
    tcp.write_all(&wire).unwrap();
    let mut head = [0u8; 1024];
    let n = tcp.read(&mut head).unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 101"), "{:?}", &head[..n]);
    let (first, second) = server.join().unwrap();
    assert_eq!(first, Message::Text("hi".into()));
    assert!(
        matches!(&second, Message::Close(Some(f)) if f.code == CloseCode::NORMAL),
        "{second:?}"
    );
}

#[test]
fn timeouts_too_long_for_the_clock_mean_none() {
    let (url, server) = echo_server();
    let forever = Duration::MAX;
    let mut ws = ClientBuilder::new(&url)
        .connect_timeout(forever)
        .handshake_timeout(forever)
        .open_timeout(forever)
        .read_timeout(Some(forever))
        .write_timeout(Some(forever))
        .close_timeout(Some(forever))
        .keepalive(wsc::Keepalive::new(forever, forever))
        .connect()
        .unwrap();
    ws.send_text("still here").unwrap();
    assert_eq!(ws.read().unwrap().as_text(), Some("still here"));
    ws.close_and_wait(None).unwrap();
    let (_, seen) = server.join().unwrap();
    assert_eq!(seen[0], Message::Text("still here".into()));
}

/// An unmasked server frame with a payload under 126 bytes.
fn small_frame(head: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut frame = vec![head, payload.len() as u8];
    frame.extend_from_slice(payload);
    frame
}

#[test]
fn a_ping_flood_from_a_peer_that_reads_nothing_does_not_hold_reads_up() {
    const PINGS: usize = 200_000;
    // 25 MB of pings, and their pongs, which the server never reads: far more than the
    // socket buffers hold, so writing the pongs must not wait for room.
    let (url, server) = serve_once(|mut tcp| {
        raw_accept(&mut tcp, &[]);
        let burst = common::ping_burst(1000);
        for _ in 0..PINGS / 1000 {
            tcp.write_all(&burst).unwrap();
        }
        tcp.write_all(&small_frame(0x81, b"done")).unwrap();
        // Keeps TCP open (unread) until the client has read everything.
        thread::sleep(Duration::from_secs(20));
    });
    let pings = within(Duration::from_secs(60), move || {
        let mut ws = builder(&url)
            .read_timeout(Some(Duration::from_secs(5)))
            .connect()
            .unwrap();
        let mut pings = 0;
        loop {
            match ws.read_ref().unwrap() {
                wsc::MessageRef::Ping(_) => pings += 1,
                wsc::MessageRef::Text(t) => {
                    assert_eq!(t, "done");
                    return pings;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    });
    assert_eq!(pings, PINGS);
    drop(server);
}

#[test]
#[cfg(target_os = "linux")] // socket2, for the reset
fn messages_received_before_a_failed_pong_are_delivered_then_the_error() {
    let mut burst = small_frame(0x89, b"ping");
    for text in ["one", "two", "three"] {
        burst.extend(small_frame(0x81, text.as_bytes()));
    }
    let (url, server) = serve_once(move |mut tcp| {
        raw_accept(&mut tcp, &burst);
        // Reset: the client's pong cannot be written.
        socket2::SockRef::from(&tcp)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    });
    let mut ws = builder(&url).connect().unwrap();
    server.join().unwrap();
    until_reset_arrives(&ws);
    assert_eq!(ws.read().unwrap(), Message::Ping("ping".into()));
    for text in ["one", "two", "three"] {
        assert_eq!(ws.read().unwrap(), Message::text(text));
    }
    let err = ws.read().unwrap_err();
    assert!(
        matches!(err, Error::Io(_) | Error::ConnectionReset),
        "{err}"
    );
    assert!(matches!(ws.read(), Err(Error::ConnectionClosed)));
}

#[test]
fn sends_that_time_out_do_not_grow_the_queue_without_bound() {
    // A server that reads nothing, and a caller that goes on sending past write timeouts
    // (each timed-out message stays queued). Before, every send queued its message anyway:
    // 100 timeouts left 6.4 MB queued, growing for as long as the caller went on.
    let (url, _server) = serve_once(|mut tcp| {
        raw_accept(&mut tcp, &[]);
        thread::sleep(Duration::from_secs(20));
    });
    let queued = within(Duration::from_secs(15), move || {
        let mut ws = builder(&url)
            .uncompressed()
            .write_timeout(Some(Duration::from_millis(1)))
            .connect()
            .unwrap();
        let (mut timeouts, mut refused) = (0, 0);
        while timeouts + refused < 100 {
            match ws.send_binary(&[7u8; 64 << 10]) {
                Ok(()) => {}
                // Queued, not written yet.
                Err(Error::Timeout(Phase::Write)) => timeouts += 1,
                // Not queued: the queue is full.
                Err(Error::SendQueueFull { queued }) => {
                    assert_eq!(queued, ws.connection().queued_output());
                    refused += 1
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(refused > 90, "{refused} refused, {timeouts} timed out");
        ws.connection().queued_output()
    });
    // At most the 128 KiB bound and one more message.
    assert!(
        queued <= (128 << 10) + (64 << 10) + 14,
        "{queued} bytes queued"
    );
}

#[test]
fn a_send_after_close_with_a_full_queue_says_already_closed() {
    // A server that reads nothing: a big message stays queued, the close behind it (the write
    // timeout the shorter, so `close` leaves it queued). A send after that is refused for
    // the close, at once: it used to wait the write timeout to make room for a message that
    // could never be sent, then say SendQueueFull ("send it again once the peer reads").
    let (url, _server) = serve_once(|mut tcp| {
        raw_accept(&mut tcp, &[]);
        thread::sleep(Duration::from_secs(10));
    });
    let (sent, elapsed) = within(Duration::from_secs(8), move || {
        let mut ws = builder(&url)
            .uncompressed()
            .write_timeout(Duration::from_millis(300))
            .close_timeout(Duration::from_secs(5))
            .connect()
            .unwrap();
        let sent = ws.send_binary(&vec![7u8; 32 << 20]).unwrap_err();
        assert!(matches!(sent, Error::Timeout(Phase::Write)), "{sent}");
        let closed = ws.close(None).unwrap_err();
        assert!(matches!(closed, Error::Timeout(Phase::Write)), "{closed}");
        let start = Instant::now();
        let sent = ws.send_text("after the close").unwrap_err();
        (sent, start.elapsed())
    });
    assert!(matches!(sent, Error::AlreadyClosed), "{sent}");
    assert!(elapsed < Duration::from_millis(250), "{elapsed:?}");
}

#[test]
fn close_and_wait_waits_the_close_timeout_not_the_shorter_write_timeout() {
    // A server that reads nothing until 600 ms into the close (a big message is queued),
    // then reads it all and answers the close. The close timeout (5 s) bounds closing in all: a write timeout
    // of 50 ms ended close_and_wait with Timeout(Close) at the first stalled write, and the
    // connection was given up with it.
    let (start_reading, told) = std::sync::mpsc::channel::<()>();
    let (url, server) = serve_once(move |mut tcp| {
        raw_accept(&mut tcp, &[]);
        let _ = told.recv();
        thread::sleep(Duration::from_millis(600));
        loop {
            let (opcode, _) = read_client_frame(&mut tcp);
            if opcode == 0x8 {
                tcp.write_all(&[0x88, 2, 0x03, 0xE8]).unwrap();
                return;
            }
        }
    });
    let closed = within(Duration::from_secs(20), move || {
        let mut ws = builder(&url)
            .uncompressed()
            .write_timeout(Duration::from_millis(50))
            .close_timeout(Duration::from_secs(5))
            .connect()
            .unwrap();
        let sent = ws.send_binary(&vec![7u8; 32 << 20]).unwrap_err();
        assert!(matches!(sent, Error::Timeout(Phase::Write)), "{sent}");
        start_reading.send(()).unwrap();
        ws.close_and_wait(None).map_err(|e| e.to_string())
    });
    assert_eq!(closed, Ok(Some(CloseFrame::new(1000, ""))));
    server.join().unwrap();
}

#[test]
fn close_and_wait_bounds_writing_what_is_still_queued() {
    // A server that reads nothing until told (the send below times out with most of its
    // message queued), then reads slowly: each write of the close makes some progress, so only
    // a bound on the whole close (not on each write) ends it.
    let (start_reading, told) = std::sync::mpsc::channel::<()>();
    let (url, _server) = serve_once(move |mut tcp| {
        raw_accept(&mut tcp, &[]);
        let _ = told.recv();
        let mut chunk = vec![0u8; 32 << 10];
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if matches!(tcp.read(&mut chunk), Ok(0) | Err(_)) {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
    });
    let (err, elapsed) = within(Duration::from_secs(30), move || {
        let mut ws = builder(&url)
            .write_timeout(Some(Duration::from_millis(800)))
            .close_timeout(Some(Duration::from_secs(1)))
            .connect()
            .unwrap();
        let sent = ws.send_binary(&vec![7u8; 32 << 20]).unwrap_err();
        assert!(matches!(sent, Error::Timeout(Phase::Write)), "{sent}");
        start_reading.send(()).unwrap();
        let start = Instant::now();
        (ws.close_and_wait(None).unwrap_err(), start.elapsed())
    });
    assert!(matches!(err, Error::Timeout(Phase::Close)), "{err}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

#[test]
fn a_protocol_error_is_reported_at_once_while_the_server_keeps_tcp_open() {
    let (url, _server) = serve_once(|mut tcp| {
        // A frame with a reserved bit set (nothing negotiated one), then silence.
        raw_accept(&mut tcp, &[0xC1, 0x01, b'x']);
        thread::sleep(Duration::from_secs(10));
    });
    let (err, elapsed) = within(Duration::from_secs(20), move || {
        let mut ws = builder(&url)
            .uncompressed()
            .close_timeout(Some(Duration::from_secs(5)))
            .connect()
            .unwrap();
        let start = Instant::now();
        (ws.read().unwrap_err(), start.elapsed())
    });
    assert!(matches!(err, Error::Protocol(_)), "{err}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
}

/// Over a TCP stream the caller connected, `connect_on_tcp` applies the builder's keepalive
/// and read timeout (which `connect_on`, over an unknown stream, cannot).
#[test]
fn connect_on_tcp_applies_keepalive_and_the_read_timeout() {
    let (url, server) = echo_server();
    let tcp = TcpStream::connect(url.trim_start_matches("ws://")).unwrap();
    let mut ws = ClientBuilder::new(format!("{url}/"))
        .handshake_timeout(TIMEOUT)
        .read_timeout(Duration::from_millis(300))
        .keepalive(wsc::Keepalive::new(
            Duration::from_millis(50),
            Duration::from_secs(5),
        ))
        .connect_on_tcp(tcp)
        .unwrap();
    assert_eq!(ws.response().map(|r| r.status.as_u16()), Some(101));
    ws.send_text("own socket").unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("own socket"));
    // Keepalive pings go out while we read: their pongs come back.
    ws.set_read_deadline(Some(Instant::now() + TIMEOUT));
    loop {
        match ws.read().unwrap() {
            Message::Pong(_) => break,
            Message::Text(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // Without keepalive, nothing arrives: the read timeout ends the read.
    ws.set_keepalive(None);
    let started = Instant::now();
    assert!(matches!(ws.read(), Err(Error::Timeout(Phase::Read))));
    assert!(started.elapsed() < TIMEOUT);
    ws.close_and_wait(None).unwrap();
    let (_, seen) = server.join().unwrap();
    assert!(
        seen.iter().any(|m| matches!(m, Message::Ping(_))),
        "{seen:?}"
    );
}

#[test]
fn connect_on_tcp_sets_aside_the_sockets_own_timeouts() {
    // "Everything after connecting applies as in connect": the builder's timeouts (none
    // here), not those the caller's socket came with.
    let (url, server) = serve_once(|tcp| {
        let (mut ws, _) = wsc::server::Acceptor::new().accept(tcp).unwrap();
        thread::sleep(Duration::from_millis(400));
        ws.send(Message::text("late")).unwrap();
        let _ = ws.read();
    });
    let tcp = TcpStream::connect(url.trim_start_matches("ws://")).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut ws = ClientBuilder::new(format!("{url}/"))
        .handshake_timeout(None)
        .read_timeout(None)
        .connect_on_tcp(tcp)
        .unwrap();
    // Before: Timeout(Read) after the socket's 100 ms.
    assert_eq!(ws.read().unwrap(), Message::text("late"));
    ws.close_and_wait(None).unwrap();
    server.join().unwrap();
}

/// The frames of a server that says its last words and closes with 1008 "rate limit".
fn last_words_and_close() -> Vec<u8> {
    let mut frames = small_frame(0x81, b"last words");
    let mut close = 1008u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"rate limit");
    frames.extend(small_frame(0x88, &close));
    frames
}

/// Waits until the client's socket has the peer's reset.
#[cfg(target_os = "linux")]
fn until_reset_arrives(ws: &wsc::WebSocket<wsc::MaybeTlsStream>) {
    use std::os::fd::AsRawFd;
    common::wait_for_reset(ws.get_ref().tcp().as_raw_fd());
}

/// A client of a raw server that sends `frames` once connected and then resets the
/// connection (SO_LINGER 0); returns once the reset has arrived, the frames still unread in
/// the client's socket.
#[cfg(target_os = "linux")] // socket2, for the reset
fn reset_after(frames: Vec<u8>) -> wsc::WebSocket<wsc::MaybeTlsStream> {
    let (go, told) = std::sync::mpsc::channel::<()>();
    let (url, server) = serve_once(move |mut tcp| {
        raw_accept(&mut tcp, &[]);
        told.recv_timeout(TIMEOUT).unwrap();
        tcp.write_all(&frames).unwrap();
        socket2::SockRef::from(&tcp)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    });
    let ws = builder(&url)
        .close_timeout(Some(TIMEOUT))
        .connect()
        .unwrap();
    go.send(()).unwrap();
    server.join().unwrap();
    until_reset_arrives(&ws);
    ws
}

#[test]
#[cfg(target_os = "linux")]
fn close_and_wait_returns_the_close_the_server_sent_before_it_reset() {
    let mut ws = reset_after(last_words_and_close());
    // Our close cannot be written; the server's, sent before, is still read. Before, the
    // failed write was the answer (ConnectionReset) and the server's close was lost.
    let closed = ws.close_and_wait(Some(CloseFrame::new(1000, "bye")));
    assert_eq!(closed.unwrap(), Some(CloseFrame::new(1008, "rate limit")));
    assert!(matches!(ws.read(), Err(Error::ConnectionClosed)));
}

#[test]
#[cfg(target_os = "linux")]
fn close_then_read_delivers_what_the_server_sent_before_it_reset() {
    let mut ws = reset_after(last_words_and_close());
    // The peer is gone: that is for reads to tell, after what it sent before.
    ws.close(None).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("last words"));
    assert_eq!(
        ws.read().unwrap(),
        Message::Close(Some(CloseFrame::new(1008, "rate limit")))
    );
    assert!(matches!(ws.read(), Err(Error::ConnectionClosed)));
}

#[test]
#[cfg(target_os = "linux")]
fn a_reset_without_a_close_still_fails_close_and_wait_with_connection_reset() {
    let mut ws = reset_after(small_frame(0x81, b"last words"));
    let closed = ws.close_and_wait(None);
    assert!(matches!(closed, Err(Error::ConnectionReset)), "{closed:?}");
    assert!(matches!(ws.read(), Err(Error::ConnectionClosed)));
}

#[test]
#[cfg(target_os = "linux")]
fn close_then_read_after_a_reset_without_a_close_delivers_then_reports_the_reset() {
    let mut ws = reset_after(small_frame(0x81, b"last words"));
    ws.close(None).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("last words"));
    let err = ws.read().unwrap_err();
    assert!(matches!(err, Error::ConnectionReset), "{err:?}");
    assert!(matches!(ws.read(), Err(Error::ConnectionClosed)));
}

#[test]
#[cfg(target_os = "linux")]
fn closing_after_a_send_found_the_peer_gone_is_not_an_error() {
    let mut ws = reset_after(last_words_and_close());
    // The send finds the reset: output lost, the state still open (nothing read yet).
    let sent = ws.send_text("too late");
    assert!(matches!(sent, Err(Error::ConnectionReset)), "{sent:?}");
    // Closing then is no error either way (before: ConnectionClosed, and a caller that
    // stopped there never read the server's close).
    ws.close(Some(CloseFrame::new(1000, "bye"))).unwrap();
    ws.send(Message::Close(None)).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("last words"));
    assert_eq!(
        ws.read().unwrap(),
        Message::Close(Some(CloseFrame::new(1008, "rate limit")))
    );
}

#[test]
fn sending_a_close_message_is_bounded_by_the_close_timeout_as_close_is() {
    // A server that reads nothing, and no write timeout: a big message queued ahead of the
    // close can never all go out. Before, `send(Message::Close(..))` waited for room
    // forever (the write timeout, when there was one), where `close` gives up after the
    // close timeout.
    let (url, _server) = serve_once(|mut tcp| {
        raw_accept(&mut tcp, &[]);
        thread::sleep(Duration::from_secs(20));
    });
    let (sent, read) = within(Duration::from_secs(8), move || {
        let mut ws = ClientBuilder::new(&url)
            .uncompressed()
            .close_timeout(Duration::from_millis(300))
            .connect()
            .unwrap();
        ws.queue(Message::binary(vec![7u8; 32 << 20])).unwrap();
        let sent = ws.send(Message::Close(None)).unwrap_err();
        (sent, ws.read().unwrap_err())
    });
    assert!(matches!(sent, Error::Timeout(Phase::Close)), "{sent}");
    // Closing was given up, as after `close`: no wait for a reply that cannot come.
    assert!(matches!(read, Error::ConnectionClosed), "{read}");
}

#[test]
fn flushing_a_fed_or_queued_close_is_bounded_by_the_close_timeout_as_close_is() {
    // As above, with the close queued by `feed` or `queue` and then flushed: before, `feed`
    // (whose queue was over its bound, so it flushed at once) and `flush` waited for room
    // forever, the close timeout's clock never started.
    type Queue = fn(&mut wsc::WebSocket<wsc::MaybeTlsStream>, Message) -> Result<(), Error>;
    let ways: [(&str, Queue); 2] = [("feed", |ws, m| ws.feed(m)), ("queue", |ws, m| ws.queue(m))];
    for (how, queue) in ways {
        let (url, _server) = serve_once(|mut tcp| {
            raw_accept(&mut tcp, &[]);
            thread::sleep(Duration::from_secs(20));
        });
        let (flushed, read) = within(Duration::from_secs(8), move || {
            let mut ws = ClientBuilder::new(&url)
                .uncompressed()
                .close_timeout(Duration::from_millis(300))
                .connect()
                .unwrap();
            ws.queue(Message::binary(vec![7u8; 32 << 20])).unwrap();
            let close = Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "bye")));
            let flushed = queue(&mut ws, close).and_then(|()| ws.flush());
            (flushed.unwrap_err(), ws.read().unwrap_err())
        });
        assert!(
            matches!(flushed, Error::Timeout(Phase::Close)),
            "{how}: {flushed}"
        );
        // Closing was given up, as after `close`.
        assert!(matches!(read, Error::ConnectionClosed), "{how}: {read}");
    }
}

/// A server that resets the connection during the opening handshake: a handshake error, as
/// when it closes it (it was a bare `Error::Io`, "connection reset by peer", naming neither
/// the handshake nor the server), and a refusal it sent before the reset is the answer (a
/// server that refuses with our request unread resets as it closes).
#[test]
#[cfg(target_os = "linux")] // socket2, for the reset
fn a_reset_during_the_handshake_is_a_handshake_error_that_keeps_a_refusal_sent_before_it() {
    for refusal in [&b""[..], b"HTTP/1.1 403 Forbidden\r\n\r\nno entry"] {
        let (url, server) = serve_once(move |mut tcp| {
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                tcp.read_exact(&mut byte).unwrap();
                head.push(byte[0]);
            }
            tcp.write_all(refusal).unwrap();
            socket2::SockRef::from(&tcp)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        });
        let result = builder(&url).connect();
        server.join().unwrap();
        match result {
            Err(Error::Handshake(HandshakeError::ConnectionClosed)) if refusal.is_empty() => {}
            Err(Error::Handshake(HandshakeError::Rejected(response)))
                if !refusal.is_empty() && response.status == 403 => {}
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(refusal)),
        }
    }
}
