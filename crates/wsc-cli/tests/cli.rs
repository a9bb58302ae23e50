//! The real `wsc` binary against real servers on loopback: `wsc serve`, Python `websockets`
//! (from the project's .venv, installed by scripts/test.sh), and raw TCP servers that
//! misbehave on purpose.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{ChildStderr, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "../../../tests/peers/spawn.rs"]
mod peers;
use peers::Proc;

mod common;
use common::{exits_with, finish, stderr, stdout, WSC};

/// Runs `wsc` with `args` and `stdin`, with a deadline so that no test can hang.
fn wsc(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(WSC)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    finish(child, &args)
}

/// Starts `wsc serve` on a free port and returns its ws:// base URL.
fn wsc_serve(extra: &[&str]) -> (Proc, String, BufReader<ChildStderr>) {
    let (child, url, err) = common::spawn_serve(extra);
    (Proc(child), url, err)
}

/// Starts the Python `websockets` server; returns it, its URL and its events.
fn py_server(args: &[&str]) -> (peers::Peer, String) {
    let peer = peers::python_server(args);
    let url = peer.url.clone();
    (peer, url)
}

/// A raw TCP server on loopback running `serve` on one connection.
fn raw_server(serve: impl FnOnce(TcpStream) + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        if let Ok((tcp, _)) = listener.accept() {
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            serve(tcp);
        }
    });
    format!("ws://{addr}")
}

/// Answers a WebSocket upgrade on a raw socket.
fn raw_upgrade(tcp: &mut TcpStream) {
    raw_upgrade_with(tcp, &[]);
}

/// Answers a WebSocket upgrade on a raw socket, with `extra` headers in the answer.
fn raw_upgrade_with(tcp: &mut TcpStream, extra: &[(String, String)]) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let (req, _) = loop {
        let n = tcp.read(&mut chunk).unwrap();
        buf.extend_from_slice(&chunk[..n]);
        if let Some(done) = wsc::proto::handshake::parse_request(&buf, 1 << 16).unwrap() {
            break done;
        }
    };
    tcp.write_all(&wsc::proto::handshake::accept_response(&req, None, extra))
        .unwrap();
}

/// Starts `wsc` with `args` and no input, its output ignored and its stderr piped.
fn spawn_quiet(args: &[&str]) -> Proc {
    let child = Command::new(WSC)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Proc(child)
}

/// Sends `signal` (e.g. "-INT") to a running process.
fn send_signal(child: &Proc, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits until a client started with `-v` (stderr piped) has its connection open, then
/// reads the rest of its stderr in the background (all of it is the thread's result).
fn once_open(child: &mut Proc) -> thread::JoinHandle<String> {
    let mut err = BufReader::new(child.0.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "no connection: {seen}"
        );
        seen.push_str(&line);
        if line.starts_with("< HTTP/1.1 101") {
            break;
        }
    }
    thread::spawn(move || {
        err.read_to_string(&mut seen).unwrap();
        seen
    })
}

#[test]
fn echo_round_trip_with_wsc_serve() {
    let (_server, url, _) = wsc_serve(&["--echo"]);
    let out = wsc(&[&url], b"hello\nworld\r\n\nlast line without newline");
    exits_with(&out, 0);
    assert_eq!(stdout(&out), "hello\nworld\n\nlast line without newline\n");
}

/// `--close-code` and `--close-reason` are the close of an end as asked; the server echoing
/// the code back is a clean end. Codes that cannot be sent and reasons too long are refused.
#[test]
fn close_code_and_reason_are_sent_at_the_end_of_input() {
    let (_server, url, mut log) = wsc_serve(&["--echo"]);
    let out = wsc(
        &[
            &url,
            "-v",
            "--close-code",
            "4000",
            "--close-reason",
            "bye now",
        ],
        b"hi\n",
    );
    let err = exits_with(&out, 0);
    assert_eq!(stdout(&out), "hi\n");
    assert!(err.contains("> close 4000 (end of input)"), "{err}");
    let mut line = String::new();
    log.read_line(&mut line).unwrap();
    assert!(
        line.contains("closed 4000 (private use): \"bye now\""),
        "{line}"
    );
    for args in [
        &["--close-code", "1005"][..],
        &["--close-code", "5000"],
        &["--close-code", "x"],
        &["--close-reason", &"x".repeat(124)],
    ] {
        let out = wsc(&[&[url.as_str()][..], args].concat(), b"");
        let err = exits_with(&out, 2);
        assert!(err.contains("--close-"), "{err}");
    }
}

/// `wsc` against `wsc serve --feed`: subscribes to ETH-USD with `--send` and counts `count`
/// messages, with stdin empty (it ends at once); `extra` are more arguments.
fn subscribe_and_count(count: &str, extra: &[&str]) -> Output {
    let (_server, url, _) = wsc_serve(&["--feed", "--rate", "50"]);
    let url = format!("{url}/market");
    let mut args = vec![
        url.as_str(),
        "--send",
        r#"{"op":"subscribe","symbols":["ETH-USD"]}"#,
        "--count",
        count,
    ];
    args.extend_from_slice(extra);
    wsc(&args, b"")
}

#[test]
fn send_and_count_against_the_feed() {
    let out = subscribe_and_count("4", &["-n"]);
    exits_with(&out, 0);
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["type"], "subscribed");
    assert_eq!(lines[0]["symbols"][0], "ETH-USD");
    assert!(lines[1..]
        .iter()
        .all(|t| t["type"] == "tick" && t["symbol"] == "ETH-USD"));
}

#[test]
fn json_output_parses_back() {
    let (_server, url, _) = wsc_serve(&[]);
    let out = wsc(
        &[&url, "--json", "--send", "héllo", "--count", "1", "-n"],
        b"",
    );
    exits_with(&out, 0);
    let text = stdout(&out);
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first = &events[0];
    assert_eq!(first["type"], "text");
    assert_eq!(first["data"], "héllo");
    assert_eq!(first["size"], 6);
    assert!(first["ts"].as_str().unwrap().ends_with('Z'));
    // The server's close is reported too.
    let last = events.last().unwrap();
    assert_eq!(
        (last["type"].as_str(), last["code"].as_u64()),
        (Some("close"), Some(1000))
    );
}

#[test]
fn binary_mode_round_trips_raw_bytes() {
    let (_server, url, _) = wsc_serve(&[]);
    let data: Vec<u8> = (0..=255u8).collect();
    let out = wsc(&[&url, "--binary", "--count", "1"], &data);
    exits_with(&out, 0);
    assert_eq!(out.stdout, data);
}

#[test]
fn binary_input_is_cut_at_the_message_size_limit() {
    let (_server, url, _) = wsc_serve(&["--max-message-size", "100"]);
    let data: Vec<u8> = (0..250u32).map(|i| i as u8).collect();
    // Before, one 250-byte message: the server closed with 1009 (exit 11).
    let out = wsc(&[&url, "--binary", "--max-message-size", "100"], &data);
    exits_with(&out, 0);
    assert_eq!(out.stdout, data);
}

#[test]
fn binary_messages_print_as_hex_by_default() {
    let url = raw_server(|mut tcp| {
        raw_upgrade(&mut tcp);
        tcp.write_all(&[0x82, 0x03, 0xDE, 0xAD, 0x01, 0x88, 0x02, 0x03, 0xE8])
            .unwrap();
        let mut rest = Vec::new();
        let _ = tcp.read_to_end(&mut rest);
    });
    let out = wsc(&[&url, "-n"], b"");
    exits_with(&out, 0);
    assert_eq!(stdout(&out), "dead01\n");
}

#[test]
fn python_websockets_echo_headers_and_protocol() {
    let (py, url) = py_server(&["--send-headers", "--subprotocol", "chat.v2"]);
    let out = wsc(
        &[
            &format!("{url}/room?id=7"),
            "-H",
            "X-Token: abc 123",
            "-H",
            "Authorization: Bearer t0k",
            "--protocol",
            "chat.v1",
            "--protocol",
            "chat.v2",
            "--origin",
            "https://app.example",
            "-v",
            "--keep-open",
            "--count",
            "2",
        ],
        b"ping me\n",
    );
    exits_with(&out, 0);
    let mut lines = stdout(&out)
        .lines()
        .map(String::from)
        .collect::<Vec<_>>()
        .into_iter();
    let headers: Value = serde_json::from_str(&lines.next().unwrap()).unwrap();
    assert_eq!(headers["x-token"], "abc 123");
    assert_eq!(headers["authorization"], "Bearer t0k");
    assert_eq!(headers["origin"], "https://app.example");
    assert_eq!(lines.next().as_deref(), Some("ping me"));
    let seen = py.event("headers");
    assert_eq!(seen["path"], "/room?id=7");
    assert_eq!(seen["subprotocol"], "chat.v2");
    // -v shows the handshake on stderr.
    let err = stderr(&out);
    assert!(err.contains("> GET /room?id=7 HTTP/1.1"), "{err}");
    assert!(err.contains("< HTTP/1.1 101 Switching Protocols"), "{err}");
    assert!(err.contains("sec-websocket-protocol: chat.v2"), "{err}");
    // --count reached: closed with 1000.
    assert_eq!(py.event("closed")["code"], 1000);
}

#[test]
fn python_websockets_large_and_many_messages() {
    let (py, url) = py_server(&[]);
    let big = "x".repeat(200_000);
    let mut input = String::new();
    for i in 0..200 {
        input.push_str(&format!("message {i}\n"));
    }
    input.push_str(&big);
    input.push('\n');
    // Python's server stops echoing once it sees our close, so keep the connection open
    // until every echo is back.
    let out = wsc(&[&url, "--keep-open", "--count", "201"], input.as_bytes());
    exits_with(&out, 0);
    let got = stdout(&out);
    assert_eq!(got.len(), input.len());
    assert!(got == input, "echoed text differs");
    assert_eq!(py.event("closed")["code"], 1000);
}

#[test]
fn linger_prints_the_replies_to_the_last_input() {
    // Python's server drops the echoes of what arrives just before our close: without
    // --linger, the replies to a short input are usually lost.
    let (py, url) = py_server(&[]);
    let input = "one\ntwo\nthree\n";
    let out = wsc(&[&url, "--linger", "1"], input.as_bytes());
    exits_with(&out, 0);
    assert_eq!(stdout(&out), input);
    assert_eq!(py.event("closed")["code"], 1000);
}

#[test]
fn unreachable_port_is_a_connect_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = wsc(&[&format!("ws://127.0.0.1:{port}/"), "-n"], b"");
    let err = exits_with(&out, 4);
    assert!(
        err.starts_with("wsc: cannot connect to 127.0.0.1:"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn plain_http_server_reports_its_status() {
    let url = raw_server(|mut tcp| {
        let mut buf = [0u8; 2048];
        let _ = tcp.read(&mut buf);
        let _ = tcp.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nno route\n");
    });
    let out = wsc(&[&url, "-n"], b"");
    let err = exits_with(&out, 6);
    assert!(
        err.contains("404 Not Found") && err.contains("no route"),
        "{err}"
    );
}

#[test]
fn protocol_violation_exits_8_and_closes_with_1002() {
    let (tx, rx) = mpsc::channel();
    let url = raw_server(move |mut tcp| {
        raw_upgrade(&mut tcp);
        // A good message, then an unmasked frame with a reserved opcode (0x3).
        tcp.write_all(&[0x81, 0x02, b'o', b'k', 0x83, 0x00])
            .unwrap();
        let mut frame = [0u8; 8];
        let _ = tcp.read_exact(&mut frame);
        let mask = [frame[2], frame[3], frame[4], frame[5]];
        let code = u16::from_be_bytes([frame[6] ^ mask[0], frame[7] ^ mask[1]]);
        let _ = tx.send((frame[0], code));
    });
    let out = wsc(&[&url, "-n", "-v"], b"");
    let err = exits_with(&out, 8);
    assert_eq!(
        stdout(&out),
        "ok\n",
        "messages before the error are printed"
    );
    assert!(err.contains("closed with 1002"), "{err}");
    // -v shows the close we sent, as it shows the closes we start.
    assert!(err.contains("> close 1002 (protocol error)"), "{err}");
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        (0x88, 1002)
    );
}

/// A message past --max-message-size: exit 8, the close code we sent (1009) in the message
/// as for any other violation (it was left out), and shown by -v.
#[test]
fn a_message_past_the_limit_exits_8_and_closes_with_1009() {
    let (tx, rx) = mpsc::channel();
    let url = raw_server(move |mut tcp| {
        raw_upgrade(&mut tcp);
        let mut frame = vec![0x81, 126, 0, 200];
        frame.extend_from_slice(&[b'x'; 200]);
        tcp.write_all(&frame).unwrap();
        let mut close = [0u8; 8];
        let _ = tcp.read_exact(&mut close);
        let mask = [close[2], close[3], close[4], close[5]];
        let code = u16::from_be_bytes([close[6] ^ mask[0], close[7] ^ mask[1]]);
        let _ = tx.send((close[0], code));
    });
    let out = wsc(&[&url, "-n", "-v", "--max-message-size", "100"], b"");
    let err = exits_with(&out, 8);
    assert!(err.contains("exceeds the limit of 100 bytes"), "{err}");
    assert!(err.contains("closed with 1009 (message too big)"), "{err}");
    assert!(err.contains("> close 1009 (message too big)"), "{err}");
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        (0x88, 1009)
    );
}

#[test]
fn server_close_with_error_code_exits_11() {
    let url = raw_server(|mut tcp| {
        raw_upgrade(&mut tcp);
        tcp.write_all(&[0x88, 0x06, 0x03, 0xF3, b'o', b'o', b'p', b's'])
            .unwrap();
        let mut rest = [0u8; 64];
        let _ = tcp.read(&mut rest);
    });
    let out = wsc(&[&url, "-n"], b"");
    let err = exits_with(&out, 11);
    assert!(err.contains("1011"), "{err}");
}

#[test]
fn ctrl_c_sends_close_1000() {
    let (py, url) = py_server(&[]);
    let mut child = spawn_quiet(&[&url, "-n", "-v"]);
    // Once the client says it is open (the server's "headers" came before the client had
    // the answer: a Ctrl-C then killed it before it could close).
    let _err = once_open(&mut child);
    send_signal(&child, "-INT");
    assert_eq!(py.event("closed")["code"], 1000);
    let code = child.0.wait().unwrap().code();
    assert_eq!(code, Some(0));
}

/// A raw server that floods text frames until the client's close arrives, then answers it;
/// the close code the client sent comes on the channel.
fn flooding_server() -> (String, mpsc::Receiver<u16>) {
    let (tx, rx) = mpsc::channel();
    let url = raw_server(move |mut tcp| {
        raw_upgrade(&mut tcp);
        tcp.set_read_timeout(None).unwrap();
        let closing = Arc::new(AtomicUsize::new(0));
        let mut writer = tcp.try_clone().unwrap();
        let flood = thread::spawn({
            let closing = closing.clone();
            move || {
                let mut frame = vec![0x81, 126, 0x04, 0x00];
                frame.extend([b'x'; 1024]);
                while closing.load(Ordering::SeqCst) == 0 {
                    if writer.write_all(&frame).is_err() {
                        return;
                    }
                }
                let _ = writer.write_all(&[0x88, 0x02, 0x03, 0xE8]);
            }
        });
        // With -n and no keepalive, the client's first frame is its close.
        let mut head = [0u8; 2];
        if tcp.read_exact(&mut head).is_err() || head[0] != 0x88 {
            return;
        }
        let mut rest = vec![0u8; 4 + usize::from(head[1] & 0x7F)];
        if tcp.read_exact(&mut rest).is_err() || rest.len() < 6 {
            return;
        }
        let code = u16::from_be_bytes([rest[4] ^ rest[0], rest[5] ^ rest[1]]);
        closing.store(1, Ordering::SeqCst);
        let _ = tx.send(code);
        let _ = flood.join();
    });
    (url, rx)
}

/// SIGTERM while stdout's reader takes nothing (`wsc URL | stalled`): the write that waits
/// for room gives way, the close goes out, and wsc exits as after any stop. Before, the
/// signal waited behind the write, for as long as the reader stalled (a second signal
/// killed it, with no close sent).
#[test]
fn a_stop_signal_is_heeded_while_stdouts_reader_takes_nothing() {
    let (url, closes) = flooding_server();
    let mut child = Command::new(WSC)
        .args([&url, "-n", "-v", "--no-compression"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map(Proc)
        .unwrap();
    // Held, never read: the pipe fills at once.
    let _stalled = child.0.stdout.take().unwrap();
    let err = once_open(&mut child);
    thread::sleep(Duration::from_millis(500));
    send_signal(&child, "-TERM");
    let code = closes
        .recv_timeout(Duration::from_secs(5))
        .expect("no close from wsc within 5 s of SIGTERM");
    assert_eq!(code, 1000);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "wsc still runs 5 s after its close went out"
        );
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "{}", err.join().unwrap());
}

/// Stdout is written in batches, yet nothing waits in them while the server is quiet: a
/// burst of 2,000 messages followed by the first half of another frame, then silence, is
/// all on stdout while the connection is still open; the frame's second half completes it.
#[test]
fn a_burst_is_all_printed_before_a_quiet_spell_even_after_a_partial_frame() {
    let (go_on, go_on_rx) = mpsc::channel::<()>();
    let url = raw_server(move |mut tcp| {
        raw_upgrade(&mut tcp);
        let mut burst = Vec::new();
        for n in 0..2000 {
            let text = format!("message {n:04}");
            burst.extend([0x81, text.len() as u8]);
            burst.extend(text.as_bytes());
        }
        let last = b"the last one";
        burst.extend([0x81, last.len() as u8]);
        burst.extend(&last[..4]);
        tcp.write_all(&burst).unwrap();
        let _ = go_on_rx.recv_timeout(Duration::from_secs(10));
        tcp.write_all(&last[4..]).unwrap();
        tcp.write_all(&[0x88, 0x02, 0x03, 0xE8]).unwrap();
        let mut rest = Vec::new();
        let _ = tcp.read_to_end(&mut rest);
    });
    let mut child = Command::new(WSC)
        .args([&url, "-n", "--no-compression"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map(Proc)
        .unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let out = BufReader::new(child.0.stdout.take().unwrap());
    thread::spawn(move || {
        for line in out.lines() {
            let Ok(line) = line else { return };
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    for n in 0..2000 {
        let line = lines
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("message {n} not printed while the server is quiet"));
        assert_eq!(line, format!("message {n:04}"));
    }
    assert!(lines.recv_timeout(Duration::from_millis(200)).is_err());
    go_on.send(()).unwrap();
    assert_eq!(
        lines.recv_timeout(Duration::from_secs(5)).unwrap(),
        "the last one"
    );
    assert_eq!(child.0.wait().unwrap().code(), Some(0));
}

#[test]
fn ctrl_c_with_input_the_server_never_takes_reports_it_unsent() {
    // A server that completes the handshake, then never reads, until the client is done.
    let (done, done_rx) = mpsc::channel::<()>();
    let url = raw_server(move |mut tcp| {
        raw_upgrade(&mut tcp);
        let _ = done_rx.recv_timeout(Duration::from_secs(90));
    });
    let mut child = Command::new(WSC)
        .args([&url, "--no-compression", "-v"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // More than the socket buffers hold: some of it cannot be sent.
    let mut stdin = child.stdin.take().unwrap();
    let fed = Arc::new(AtomicUsize::new(0));
    let feeder = thread::spawn({
        let fed = fed.clone();
        move || {
            let line = "x".repeat(1023) + "\n";
            for _ in 0..(48 << 10) {
                if stdin.write_all(line.as_bytes()).is_err() {
                    return;
                }
                fed.fetch_add(line.len(), Ordering::Relaxed);
            }
        }
    });
    let mut child = Proc(child);
    let err = once_open(&mut child);
    // Until the socket buffers are full: the client stops taking its input, which stalls the
    // feeder. A fixed wait lost that race on a busy machine, and so did a short stall: there
    // loopback traffic can pause for a while (its softirq starved) and then go on.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = (0, Instant::now());
    while last.0 < (1 << 20) || last.1.elapsed() < Duration::from_secs(2) {
        assert!(
            Instant::now() < deadline,
            "the client never stopped taking input"
        );
        thread::sleep(Duration::from_millis(50));
        let now = fed.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    send_signal(&child, "-INT");
    let code = child.0.wait().unwrap().code();
    let err = err.join().unwrap();
    assert_eq!(code, Some(7), "{err}");
    assert!(err.contains("was not all sent"), "{err}");
    drop((child, done));
    let _ = feeder.join();
}

#[test]
fn reconnect_gives_up_on_a_server_that_closes_every_connection_at_once() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { return };
            raw_upgrade(&mut tcp);
            // Close 1011, "boom", then TCP.
            let _ = tcp.write_all(&[0x88, 6, 0x03, 0xF3, b'b', b'o', b'o', b'm']);
        }
    });
    let out = wsc(
        &[
            &url,
            "-n",
            "--json",
            "--reconnect",
            "--reconnect-max-attempts",
            "2",
        ],
        b"",
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(9), "{err}");
    assert!(err.contains("giving up"), "{err}");
    // The first connection and two reconnects, each closed at once.
    assert_eq!(err.matches("reconnected").count(), 2, "{err}");
    // On stdout, each server's close (as without --reconnect), the gaps, and the end.
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let types: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "close",
            "disconnected",
            "reconnected",
            "close",
            "disconnected",
            "reconnected",
            "close",
            "gave_up"
        ],
        "{lines:?}"
    );
    assert_eq!(lines[0]["code"], 1011, "{lines:?}");
    let reason = lines[7]["reason"].as_str().unwrap();
    assert!(reason.starts_with("giving up"), "{reason}");
}

#[test]
fn count_not_reached_before_the_servers_clean_close_exits_14() {
    // A script asking for 5 messages can tell it got fewer: it used to exit 0.
    let url = raw_server(|mut tcp| {
        raw_upgrade(&mut tcp);
        // "one", then close 1000.
        tcp.write_all(&[0x81, 3, b'o', b'n', b'e', 0x88, 2, 0x03, 0xE8])
            .unwrap();
        let _ = tcp.read(&mut [0u8; 64]);
    });
    let out = wsc(&[&url, "-n", "--count", "5"], b"");
    let err = exits_with(&out, 14);
    assert_eq!(stdout(&out), "one\n");
    assert!(
        err.contains("the server closed the connection (1000")
            && err.contains("after 1 of the 5 messages of --count"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "said once: {err}");

    // A server going away (1001, wsc serve stopping) before any message: the same.
    let (mut server, url, _) = wsc_serve(&[]);
    let mut client = spawn_quiet(&[&url, "-n", "-v", "--count", "3"]);
    let err = once_open(&mut client);
    send_signal(&server, "-TERM");
    let code = client.0.wait().unwrap().code();
    let err = err.join().unwrap();
    assert_eq!(code, Some(14), "{err}");
    assert!(
        err.contains("after 0 of the 3 messages of --count"),
        "{err}"
    );
    assert_eq!(server.0.wait().unwrap().code(), Some(0));
}

#[test]
fn missing_pong_is_reported() {
    // A server that completes the handshake, then never reads again.
    let url = raw_server(|mut tcp| {
        raw_upgrade(&mut tcp);
        thread::sleep(Duration::from_secs(4));
    });
    let out = wsc(
        &[
            &url,
            "-n",
            "--ping-interval",
            "0.2",
            "--ping-timeout",
            "0.5",
        ],
        b"",
    );
    let err = exits_with(&out, 10);
    assert!(
        err.contains("no pong within 0.5 s of a keepalive ping, nor any other data since"),
        "{err}"
    );
}

#[test]
fn broadcast_reaches_other_clients() {
    let (_server, url, _) = wsc_serve(&["--broadcast"]);
    let listener = Command::new(WSC)
        .args([&url, "-n", "-v", "--count", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut listener = Proc(listener);
    // The server subscribes a client before its 101: once open, it hears what follows.
    let _err = once_open(&mut listener);
    let mut stdout = listener.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut got = String::new();
        let _ = stdout.read_to_string(&mut got);
        let _ = tx.send(got);
    });
    let out = wsc(&[&url, "--count", "1"], b"to everyone\n");
    exits_with(&out, 0);
    let got = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the listener got nothing in 20 s");
    assert_eq!(got, "to everyone\n");
}

#[test]
fn broadcast_closes_a_client_that_falls_too_far_behind_with_1008() {
    let (_server, url, mut log) = wsc_serve(&["--broadcast", "--no-compression"]);
    // Takes nothing while 40 MiB are published: more than the sockets hold and the 16 MiB
    // the server keeps for a client. Before, it missed messages without being told, and
    // the server held up to 1024 messages for it.
    let mut stalled = wsc::ClientBuilder::new(&url)
        .read_timeout(Duration::from_secs(10))
        .connect()
        .unwrap();
    let mut sender = wsc::ClientBuilder::new(&url).connect().unwrap();
    let chunk = vec![7u8; 1 << 20];
    for _ in 0..40 {
        sender.send_binary(&chunk).unwrap();
        assert_eq!(sender.read().unwrap().len(), chunk.len());
    }
    sender.close_and_wait(None).unwrap();
    let mut got = 0;
    let close = loop {
        match stalled.read().unwrap() {
            wsc::Message::Binary(data) => {
                assert_eq!(data.len(), chunk.len());
                got += 1;
            }
            wsc::Message::Close(frame) => break frame.unwrap(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(close.code, wsc::CloseCode::POLICY_VIOLATION);
    assert!(close.reason.contains("too slow"), "{close}");
    assert!(got < 40, "{got}");
    let mut lines = String::new();
    for _ in 0..2 {
        log.read_line(&mut lines).unwrap();
    }
    assert!(lines.contains("closed 1008"), "{lines}");
}

#[test]
fn serve_stopping_closes_its_clients_with_1001() {
    let (mut server, url, mut log) = wsc_serve(&[]);
    let mut client = spawn_quiet(&[&url, "-n", "-v"]);
    let err = once_open(&mut client);
    send_signal(&server, "-TERM");
    // 1001 is a clean end for the client, not a lost connection (exit 9).
    let code = client.0.wait().unwrap().code();
    let err = err.join().unwrap();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(server.0.wait().unwrap().code(), Some(0));
    let mut line = String::new();
    log.read_line(&mut line).unwrap();
    assert!(line.contains("closed 1001 (going away)"), "{line}");
}

#[test]
fn a_half_sent_handshake_does_not_hold_the_servers_stop() {
    let (mut server, url, _log) = wsc_serve(&[]);
    let mut tcp = TcpStream::connect(url.trim_start_matches("ws://")).unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    thread::sleep(Duration::from_millis(200));
    let stopping = Instant::now();
    send_signal(&server, "-TERM");
    assert_eq!(server.0.wait().unwrap().code(), Some(0));
    // Before, the pending handshake held the stop for the whole 2 s grace.
    let took = stopping.elapsed();
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

#[test]
fn the_idle_timeout_closes_with_1001_before_it_exits_7() {
    let (_server, url, mut log) = wsc_serve(&[]);
    let out = wsc(&[&url, "-n", "--idle-timeout", "0.3"], b"");
    exits_with(&out, 7);
    assert!(stderr(&out).contains("0.3"), "{}", stderr(&out));
    // Before, the server saw the connection dropped without a closing handshake.
    let mut line = String::new();
    log.read_line(&mut line).unwrap();
    assert!(line.contains("closed 1001"), "{line}");
}

#[test]
fn ctrl_c_while_opening_exits_130_even_with_sigint_ignored_at_start() {
    // A server that takes the connection and never answers the upgrade.
    let url = raw_server(|tcp| {
        thread::sleep(Duration::from_secs(15));
        drop(tcp);
    });
    // As a non-interactive shell starts a background job: SIGINT ignored.
    let child = Command::new("bash")
        .args(["-c", r#"trap "" INT; exec "$0" "$@""#, WSC, &url, "-n"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Proc(child);
    thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    send_signal(&child, "-INT");
    // Before, the handshake ran to its timeout (30 s) and exited 7.
    assert_eq!(child.0.wait().unwrap().code(), Some(130));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn broadcast_sender_gets_all_its_messages_before_the_close() {
    let (_server, url, _) = wsc_serve(&["--broadcast"]);
    for _ in 0..3 {
        let out = wsc(&[&url], b"1\n2\n3\n4\n5\n");
        exits_with(&out, 0);
        assert_eq!(stdout(&out), "1\n2\n3\n4\n5\n");
    }
}

#[test]
fn serve_quiet_logs_no_line_per_connection() {
    let (mut server, url, mut log) = wsc_serve(&["-q"]);
    let out = wsc(&[&url], b"a\n");
    exits_with(&out, 0);
    send_signal(&server, "-TERM");
    assert_eq!(server.0.wait().unwrap().code(), Some(0));
    let mut rest = String::new();
    log.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "");
}

#[test]
fn serve_logs_one_line_per_connection() {
    let (_server, url, mut log) = wsc_serve(&[]);
    let out = wsc(&[&format!("{url}/logged")], b"a\nb\n");
    exits_with(&out, 0);
    let mut line = String::new();
    log.read_line(&mut line).unwrap();
    assert!(
        line.contains("GET /logged, deflate: 2 in, 2 out, closed 1000"),
        "{line}"
    );
}

#[test]
fn location_follows_a_redirect_and_verbose_shows_the_hop() {
    let (_server, target, _) = wsc_serve(&["--echo"]);
    let hop = raw_server(move |mut tcp| {
        let mut buf = [0u8; 4096];
        let _ = tcp.read(&mut buf);
        let head = format!(
            "HTTP/1.1 301 Moved Permanently\r\nLocation: {target}/moved\r\n\
             Content-Length: 0\r\n\r\n"
        );
        tcp.write_all(head.as_bytes()).unwrap();
    });
    let from = format!("{hop}/old");
    let out = wsc(&[&from, "-L", "-v"], b"after the hop\n");
    exits_with(&out, 0);
    assert_eq!(stdout(&out), "after the hop\n");
    let err = stderr(&out);
    let line = format!("* {from} answered 301 Moved Permanently: following it to ");
    assert!(err.contains(&line), "{err}");
    assert!(err.contains("> GET /moved HTTP/1.1"), "{err}");
}

/// A server that answers every handshake with a redirect to `to` (`None`: to itself).
fn redirecting_server(to: Option<String>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let to = to.unwrap_or_else(|| format!("{url}/again"));
    thread::spawn(move || {
        for mut tcp in listener.incoming().map_while(Result::ok) {
            let mut buf = [0u8; 4096];
            let _ = tcp.read(&mut buf);
            let head =
                format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 5\r\n\r\nmoved");
            let _ = tcp.write_all(head.as_bytes());
        }
    });
    url
}

#[test]
fn redirects_not_followed_name_the_flags_that_follow_them() {
    let url = redirecting_server(None);
    let out = wsc(&[&url, "-n"], b"");
    let err = exits_with(&out, 6);
    assert!(err.contains("302 Found"), "{err}");
    assert!(err.contains("-L, --location"), "{err}");
    assert!(err.contains("\"moved\""), "{err}");
    assert!(
        !err.contains("::"),
        "a library method in a CLI message: {err}"
    );

    let out = wsc(&[&url, "-n", "-L", "--max-redirects", "2"], b"");
    let err = exits_with(&out, 6);
    assert!(err.contains("more than 2 redirects"), "{err}");
    assert!(err.contains("--max-redirects"), "{err}");
    assert!(
        !err.contains("max_redirects"),
        "a library method in a CLI message: {err}"
    );
}

#[test]
fn verbose_shows_the_request_without_its_credentials() {
    let (_server, url, _) = wsc_serve(&[]);
    let with_password = url.replacen("ws://", "ws://alice:hunter2@", 1);
    let out = wsc(
        &[
            &with_password,
            "-v",
            "--linger",
            "0",
            "-H",
            "Cookie: session=s3ssion; theme=dark",
            "-H",
            "X-Trace: kept",
        ],
        b"",
    );
    let err = exits_with(&out, 0);
    // The URL's user and password, sent as Basic authorization.
    assert!(err.contains("> Authorization: Basic ***"), "{err}");
    assert!(err.contains("> Cookie: session=***; theme=***"), "{err}");
    assert!(err.contains("> X-Trace: kept"), "{err}");
    for secret in ["hunter2", "YWxpY2U6aHVudGVyMg", "s3ssion", "dark"] {
        assert!(!err.contains(secret), "{secret} shown: {err}");
    }
}

#[test]
fn verbose_hides_the_values_of_set_cookie_keeping_names_and_attributes() {
    let cookies = [
        (
            "Set-Cookie",
            "session=s3ss10n-t0ken; Path=/; HttpOnly; SameSite=Strict",
        ),
        ("Set-Cookie", "csrf=c5rf-t0ken"),
        ("X-Trace", "kept"),
    ]
    .map(|(name, value)| (name.to_string(), value.to_string()));
    // Accepted, then closed at once by the server.
    let accepted = cookies.clone();
    let url = raw_server(move |mut tcp| {
        raw_upgrade_with(&mut tcp, &accepted);
        tcp.write_all(&[0x88, 2, 0x03, 0xE8]).unwrap();
        let _ = tcp.read(&mut [0u8; 64]);
    });
    let out = wsc(&[&url, "-n", "-v"], b"");
    let accepted = exits_with(&out, 0);
    // Refused, the cookie set all the same.
    let url = raw_server(|mut tcp| {
        let _ = tcp.read(&mut [0u8; 4096]);
        let head = "HTTP/1.1 403 Forbidden\r\nSet-Cookie: session=s3ss10n-t0ken; Secure\r\n\
                    Content-Length: 0\r\n\r\n";
        tcp.write_all(head.as_bytes()).unwrap();
    });
    let out = wsc(&[&url, "-n", "-v"], b"");
    let refused = exits_with(&out, 6);
    for err in [&accepted, &refused] {
        for secret in ["s3ss10n-t0ken", "c5rf-t0ken"] {
            assert!(!err.contains(secret), "{secret} shown: {err}");
        }
    }
    // The names and the attributes say which cookie was set and why a browser would keep
    // it or not.
    assert!(
        accepted.contains("< set-cookie: session=***; Path=/; HttpOnly; SameSite=Strict"),
        "{accepted}"
    );
    assert!(accepted.contains("< set-cookie: csrf=***"), "{accepted}");
    assert!(accepted.contains("< x-trace: kept"), "{accepted}");
    assert!(
        refused.contains("< set-cookie: session=***; Secure"),
        "{refused}"
    );
}

#[test]
fn verbose_shows_the_head_of_a_refusal() {
    let url = raw_server(|mut tcp| {
        let mut buf = [0u8; 4096];
        let _ = tcp.read(&mut buf);
        let head = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"feed\"\r\n\
                    Content-Length: 0\r\n\r\n";
        tcp.write_all(head.as_bytes()).unwrap();
    });
    let out = wsc(
        &[
            &url,
            "-n",
            "-v",
            "-H",
            "Authorization: Bearer expired-t0ken",
        ],
        b"",
    );
    let err = exits_with(&out, 6);
    // What we asked, as curl -v shows it, credentials hidden; then what was answered.
    let (asked, answered) = err.split_once("< HTTP/1.1 401 Unauthorized").expect(&err);
    assert!(asked.contains("> GET / HTTP/1.1"), "{err}");
    assert!(asked.contains("> Authorization: Bearer ***"), "{err}");
    assert!(!err.contains("expired-t0ken"), "{err}");
    assert!(!answered.contains("> "), "{err}");
    assert!(
        err.contains("< www-authenticate: Bearer realm=\"feed\""),
        "{err}"
    );
}

#[test]
fn bad_arguments_exit_2() {
    let out = wsc(&["http://example.com/"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unsupported scheme"));
    let out = wsc(&["ws://127.0.0.1:1/", "-H", "no-colon"], b"");
    assert_eq!(out.status.code(), Some(2));
    // A client option before `serve`: clap's message alone spoke of a URL and a subcommand
    // named after the address.
    // Also alone (read as the URL) and before one of its own options.
    for args in [
        &["-v", "serve", "127.0.0.1:0"][..],
        &["-v", "serve"],
        &["-v", "serve", "--feed"],
        &["-n", "demo"],
    ] {
        let out = wsc(args, b"");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let name = args[1];
        assert!(
            stderr(&out).contains(&format!("hint: `{name}` comes first")),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    // A message that reads as a subcommand, after the URL: no such hint.
    let out = wsc(&["ws://127.0.0.1:1/", "--send", "demo", "--bogus"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(!stderr(&out).contains("hint:"), "{}", stderr(&out));
    // Values that made a feed server panic (a rate whose period no Duration holds, a ping
    // period rounded to zero) or a client ping in a tight loop are refused up front.
    for args in [
        &["serve", "127.0.0.1:0", "--feed", "--rate", "1e-300"][..],
        &["serve", "127.0.0.1:0", "--feed", "--feed-ping", "1e-12"],
        &["ws://127.0.0.1:1/", "--ping-interval", "1e-12"],
    ] {
        let out = wsc(args, b"");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn demo_runs_offline_and_exits_0() {
    // Our ping goes at 1.5 s after the open: its pong comes well before the close.
    let out = wsc(&["demo", "--duration", "2.5"], b"");
    exits_with(&out, 0);
    let ticks = stdout(&out)
        .lines()
        .filter(|l| l.contains("\"tick\""))
        .count();
    assert!(ticks >= 4, "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("< pong"), "{err}");
    assert!(err.contains("< close 1000"), "{err}");
}

#[test]
fn help_documents_exit_statuses() {
    let out = wsc(&["--help"], b"");
    let text = stdout(&out);
    for needle in [
        "Exit status:",
        "8   protocol violation",
        "14  the server closed cleanly (1000/1001) before --count messages arrived",
        "--ping-interval",
        "--cacert",
    ] {
        assert!(text.contains(needle), "{needle} missing from --help");
    }
}

#[test]
fn compression_is_negotiated_and_can_be_turned_off() {
    let (_server, url, mut log) = wsc_serve(&[]);
    let out = wsc(
        &[&url, "-v", "--count", "1", "--keep-open"],
        b"squeeze me\n",
    );
    exits_with(&out, 0);
    assert_eq!(stdout(&out), "squeeze me\n");
    assert!(
        stderr(&out).contains("* compression: permessage-deflate"),
        "{}",
        stderr(&out)
    );
    let mut line = String::new();
    log.read_line(&mut line).unwrap();
    assert!(line.contains(", deflate:"), "{line}");

    let out = wsc(
        &[
            &url,
            "-v",
            "--no-compression",
            "--count",
            "1",
            "--keep-open",
        ],
        b"plain\n",
    );
    let err = exits_with(&out, 0);
    assert!(err.contains("* compression: off"), "{err}");
    assert!(
        !stderr(&out).contains("Sec-WebSocket-Extensions"),
        "{}",
        stderr(&out)
    );
    let mut line = String::new();
    log.read_line(&mut line).unwrap();
    assert!(!line.contains("deflate"), "{line}");
}

#[test]
fn count_is_exact_even_when_more_arrives_at_once() {
    let (_server, url, _) = wsc_serve(&["--feed", "--rate", "50"]);
    let subscribe = r#"{"op":"subscribe","symbols":["A","B","C","D"]}"#;
    let out = wsc(&[&url, "-n", "--send", subscribe, "--count", "2"], b"");
    exits_with(&out, 0);
    assert_eq!(stdout(&out).lines().count(), 2, "{}", stdout(&out));
    let out = wsc(&[&url, "-n", "--count", "0"], b"");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn local_mistakes_exit_2() {
    let out = wsc(&["ws://127.0.0.1:1/", "-H", "X-A: b\r\nX-Injected: y"], b"");
    exits_with(&out, 2);
    let out = wsc(&["serve", "not-an-address"], b"");
    exits_with(&out, 2);
}

#[test]
fn serve_handles_many_clients_at_once() {
    let (_server, url, _) = wsc_serve(&["--echo"]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let echoed = runtime.block_on(async move {
        let mut tasks = Vec::new();
        for i in 0..1000 {
            let url = format!("{url}/client-{i}");
            tasks.push(tokio::spawn(async move {
                let (mut ws, _) = wsc::ClientBuilder::new(url)
                    .compression(false)
                    .connect_async()
                    .await?;
                ws.send_text(&format!("hello {i}")).await?;
                let reply = ws.recv().await.ok_or(wsc::Error::ConnectionClosed)??;
                ws.close(None).await?;
                Ok::<_, wsc::Error>(reply == wsc::Message::text(format!("hello {i}")))
            }));
        }
        let mut ok = 0;
        for t in tasks {
            if tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("a client hung")
                .expect("task panicked")
                .expect("client failed")
            {
                ok += 1;
            }
        }
        ok
    });
    assert_eq!(echoed, 1000);
}

/// Starts `wsc serve --echo` on a given address; waits until it listens. The address was
/// released a moment ago: another test's outgoing connection may hold it as its local port
/// for a while, so a start that finds it in use is tried again.
fn wsc_serve_at(addr: &str) -> Proc {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut child = Command::new(WSC)
            .args(["serve", addr, "--echo"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if line.contains("ws://") {
            return Proc(child);
        }
        let _ = child.wait();
        assert!(
            line.contains("in use") && Instant::now() < deadline,
            "wsc serve did not start: {line:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn reconnect_survives_a_killed_server_resubscribes_and_reports_the_gap() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let mut server = wsc_serve_at(&addr);
    let mut client = Command::new(WSC)
        .args([&format!("ws://{addr}/"), "-n", "--json", "--reconnect"])
        .args(["--send", "subscribe", "--count", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client_id = client.id();
    let (tx, rx) = mpsc::channel::<Value>();
    let out = client.stdout.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            let _ = tx.send(serde_json::from_str(&line).unwrap());
        }
    });
    let next = || {
        rx.recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| {
                let _ = Command::new("kill")
                    .arg("-9")
                    .arg(client_id.to_string())
                    .status();
                panic!("no line from the client")
            })
    };
    let first = next();
    assert_eq!(
        (first["type"].as_str(), first["data"].as_str()),
        (Some("text"), Some("subscribe"))
    );

    // Kill the server outright, keep it down a moment, start a new one on the same port.
    let _ = server.0.kill();
    let _ = server.0.wait();
    let gone = next();
    assert_eq!(gone["type"], "disconnected", "{gone}");
    thread::sleep(Duration::from_millis(700));
    server = wsc_serve_at(&addr);

    // Each attempt refused while it was down is a line, then the reconnect counts them.
    let mut back = next();
    let mut failed = 0;
    while back["type"] == "attempt_failed" {
        failed += 1;
        assert_eq!(back["attempt"], failed, "{back}");
        assert!(
            back["error"].as_str().unwrap().contains("refused"),
            "{back}"
        );
        assert!(back["retry_in_ms"].as_u64().unwrap() > 0, "{back}");
        assert!(back["retry_after_ms"].is_null(), "{back}");
        back = next();
    }
    assert_eq!(back["type"], "reconnected", "{back}");
    assert!(back["downtime_ms"].as_u64().unwrap() >= 500, "{back}");
    assert_eq!(back["attempts"], failed + 1, "{back}");
    // The subscription was sent again on the new connection and echoed.
    let again = next();
    assert_eq!(
        (again["type"].as_str(), again["data"].as_str()),
        (Some("text"), Some("subscribe"))
    );
    let status = client.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut err = String::new();
    client
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        err.contains("connection lost") && err.contains("reconnected after"),
        "{err}"
    );
    drop(server);
}

#[test]
fn reconnect_says_each_failed_attempt_and_waits_out_a_retry_after() {
    // A server that drops us, then refuses with 429 and Retry-After: 1 (a service that limits
    // its rate), then takes us back: the refusal is said with the wait, which is the
    // server's, not the backoff's 0.5 s at most.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let server = thread::spawn(move || {
        let refused_at;
        {
            let (tcp, _) = listener.accept().unwrap();
            let mut ws = wsc::server::accept(tcp).unwrap();
            ws.send_text("first").unwrap();
        }
        {
            let (mut tcp, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let _ = tcp.read(&mut request).unwrap();
            tcp.write_all(
                b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n",
            )
            .unwrap();
            refused_at = Instant::now();
        }
        let (tcp, _) = listener.accept().unwrap();
        let waited = refused_at.elapsed();
        let mut ws = wsc::server::accept(tcp).unwrap();
        ws.send_text("second").unwrap();
        while ws.read().is_ok() {}
        waited
    });
    let out = wsc(&[&url, "-n", "--reconnect", "--count", "2"], b"");
    let err = exits_with(&out, 0);
    assert_eq!(stdout(&out), "first\nsecond\n");
    assert!(
        err.contains("wsc: attempt 1 failed: ")
            && err.contains("429")
            && (err.contains("; next in 1.0 s") || err.contains("; next in 1.1 s"))
            && err.contains("(the server's Retry-After: 1 s)")
            && err.contains("reconnected after"),
        "{err}"
    );
    assert!(server.join().unwrap() >= Duration::from_millis(950));
}

#[test]
fn a_big_binary_input_round_trips_through_an_echo_server() {
    // 8 MiB: far more than the socket buffers hold both ways, so the session must read the
    // echo while its input still waits to go out (the server blocks writing to it).
    let (_server, url, _) = wsc_serve(&[]);
    let data: Vec<u8> = (0..8u32 << 20).map(|i| (i * 7 + i / 4099) as u8).collect();
    let out = wsc(&[&url, "--binary"], &data);
    exits_with(&out, 0);
    assert_eq!(out.stdout.len(), data.len());
    assert!(out.stdout == data, "the echo differs from the input");
}

#[test]
fn a_reset_before_the_handshake_answer_is_a_failed_handshake_exit_6() {
    // Lost, exit 9, is for an open connection; this one never opened.
    let url = raw_server(|mut tcp| {
        let mut request = [0u8; 4096];
        let _ = tcp.read(&mut request);
        socket2::SockRef::from(&tcp)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    });
    let out = wsc(&[&url, "-n"], b"");
    let err = exits_with(&out, 6);
    assert!(
        err.contains("before answering our upgrade request"),
        "{err}"
    );
    // Not over TLS: no client certificate to suggest, but perhaps TLS is what it wants.
    assert!(!err.contains("--cert"), "{err}");
    assert!(err.contains("then use wss://"), "{err}");
}

#[test]
fn a_reset_is_a_lost_connection_exit_9() {
    let url = raw_server(|mut tcp| {
        raw_upgrade(&mut tcp);
        tcp.write_all(&[0x81, 0x02, b'h', b'i']).unwrap();
        socket2::SockRef::from(&tcp)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    });
    let out = wsc(&[&url, "-n"], b"");
    exits_with(&out, 9);
    assert_eq!(stdout(&out), "hi\n");
}

#[test]
fn idle_timeout_fires_even_while_pings_are_answered() {
    let (_server, url, _) = wsc_serve(&[]);
    let start = std::time::Instant::now();
    let out = wsc(
        &[&url, "-n", "--ping-interval", "0.2", "--idle-timeout", "1"],
        b"",
    );
    let err = exits_with(&out, 7);
    assert!(err.contains("--idle-timeout"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn idle_timeout_counts_per_connection_not_while_reconnecting() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let mut server = wsc_serve_at(&addr);
    let client = Command::new(WSC)
        .args([
            &format!("ws://{addr}/"),
            "-n",
            "--reconnect",
            "--send",
            "hi",
        ])
        .args(["--count", "2", "--idle-timeout", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut client = Proc(client);
    let mut out = BufReader::new(client.0.stdout.take().unwrap());
    let mut echo = String::new();
    out.read_line(&mut echo).unwrap();
    assert_eq!(echo, "hi\n");
    // Down for longer than --idle-timeout: the gap is not idleness of a connection.
    let _ = server.0.kill();
    let _ = server.0.wait();
    thread::sleep(Duration::from_millis(1600));
    let _server = wsc_serve_at(&addr);
    echo.clear();
    out.read_line(&mut echo).unwrap();
    assert_eq!(echo, "hi\n", "no echo after the reconnect");
    let status = client.0.wait().unwrap();
    let mut err = String::new();
    client
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
}

#[test]
fn ctrl_c_while_reconnecting_ends_the_client() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let mut server = wsc_serve_at(&addr);
    let mut client = Command::new(WSC)
        .args([
            &format!("ws://{addr}/"),
            "-n",
            "--reconnect",
            "--send",
            "hi",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(client.stderr.take().unwrap());
    // Connected once: the echo of --send came back. Stdout stays open: a client whose
    // reader is gone would end on that alone.
    let mut echo = String::new();
    let mut out = BufReader::new(client.stdout.take().unwrap());
    out.read_line(&mut echo).unwrap();
    assert_eq!(echo, "hi\n");
    let _ = server.0.kill();
    let _ = server.0.wait();
    // Wait until the client knows the server is gone.
    let mut line = String::new();
    while !line.contains("connection lost") {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "stderr ended");
    }
    let mut client = Proc(client);
    send_signal(&client, "-INT");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = client.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "one Ctrl-C did not end a reconnecting client"
        );
        thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130));
    drop(out);
}

#[test]
fn count_is_waited_for_after_the_end_of_stdin() {
    // stdin is empty and ends at once; the feed needs a subscription and then ticks.
    let out = subscribe_and_count("3", &[]);
    exits_with(&out, 0);
    assert_eq!(stdout(&out).lines().count(), 3, "{}", stdout(&out));
}

#[test]
fn request_headers_the_handshake_sets_are_refused_and_host_is_replaced() {
    for header in ["Sec-WebSocket-Key: abc", "Upgrade: h2c"] {
        let out = wsc(&["ws://127.0.0.1:1/", "-n", "-H", header], b"");
        assert_eq!(out.status.code(), Some(2), "{header}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("handshake itself"),
            "{}",
            stderr(&out)
        );
    }
    let out = wsc(&["ws://127.0.0.1:1/", "-n", "--protocol", ""], b"");
    exits_with(&out, 2);
    // Two Origins (servers refuse them): refused before anything is sent.
    let out = wsc(
        &[
            "ws://127.0.0.1:1/",
            "-n",
            "-H",
            "Origin: http://x",
            "--origin",
            "http://y",
        ],
        b"",
    );
    let err = exits_with(&out, 2);
    assert!(err.contains("more than one Origin"), "{err}");

    let (py, url) = py_server(&[]);
    let out = wsc(
        &[
            &url,
            "-n",
            "-H",
            "Host: virtual.example",
            "-s",
            "x",
            "-c",
            "1",
        ],
        b"",
    );
    exits_with(&out, 0);
    let headers = py.event("headers");
    assert_eq!(headers["headers"]["host"], "virtual.example", "{headers}");
}

#[test]
fn serve_takes_a_port_alone() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _server = wsc_serve_at(&port.to_string());
    let out = wsc(
        &[
            &format!("ws://127.0.0.1:{port}/"),
            "-n",
            "-s",
            "hi",
            "-c",
            "1",
        ],
        b"",
    );
    exits_with(&out, 0);
    assert_eq!(stdout(&out), "hi\n");
}

#[test]
fn ctrl_c_is_heard_while_a_big_message_trickles_in() {
    // One 8 MB binary message, 4 KiB every 2 ms (about 4 s in all), then the close is read.
    let (tx, rx) = mpsc::channel();
    let url = raw_server(move |mut tcp| {
        raw_upgrade(&mut tcp);
        let mut reader = tcp.try_clone().unwrap();
        thread::spawn(move || {
            let mut frame = [0u8; 8];
            let _ = reader.read_exact(&mut frame);
            let _ = tx.send(frame[0]);
        });
        let size: u64 = 8 << 20;
        let mut head = vec![0x82, 0x7F];
        head.extend_from_slice(&size.to_be_bytes());
        tcp.write_all(&head).unwrap();
        let chunk = [7u8; 4096];
        for _ in 0..size / 4096 {
            if tcp.write_all(&chunk).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(2));
        }
    });
    let mut child = spawn_quiet(&[&url, "-n", "-v"]);
    let err = once_open(&mut child);
    thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    send_signal(&child, "-INT");
    // The close goes out at once, not after the message is in.
    let sent = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(sent, 0x88);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    drop(child);
    let _ = err.join();
}

#[test]
fn a_bad_proxy_url_is_shown_without_its_password() {
    let out = wsc(
        &[
            "ws://127.0.0.1:9/",
            "--proxy",
            "http://alice:hunter2@127.0.0.1:80x",
        ],
        b"",
    );
    let err = exits_with(&out, 2);
    assert!(!err.contains("hunter2"), "{err}");
    assert!(err.contains("alice:***@127.0.0.1:80x"), "{err}");
}

#[test]
fn piped_requests_get_their_replies_from_a_server_that_stops_at_our_close() {
    // As Python's websockets does: a reply takes a moment, and once our close has come the
    // server sends nothing more. Closing at the end of stdin lost every reply.
    let url = raw_server(|mut tcp| {
        raw_upgrade(&mut tcp);
        let mut request = [0u8; 8]; // "hi", masked
        tcp.read_exact(&mut request).unwrap();
        // Long enough for a close sent at the end of stdin to be here, well within the
        // linger (1 s) on a busy machine.
        thread::sleep(Duration::from_millis(100));
        tcp.set_nonblocking(true).unwrap();
        let mut next = [0u8; 1];
        let closed = matches!(tcp.peek(&mut next), Ok(1) if next[0] == 0x88);
        tcp.set_nonblocking(false).unwrap();
        if !closed {
            tcp.write_all(&[0x81, 0x05, b'r', b'e', b'p', b'l', b'y'])
                .unwrap();
        }
        let mut close = [0u8; 8];
        let _ = tcp.read_exact(&mut close);
        let _ = tcp.write_all(&[0x88, 0x02, 0x03, 0xE8]);
    });
    let out = wsc(&[&url, "--no-compression"], b"hi\n");
    exits_with(&out, 0);
    assert_eq!(stdout(&out), "reply\n");
}

/// The end of input against a feed that never goes quiet: the wait for quiet is bounded
/// (10 x --linger after the end of input). Before, `echo request | wsc URL` never exited
/// against a server that sends more often than --linger (a ticker, heartbeats).
#[test]
fn linger_ends_against_a_server_that_never_goes_quiet() {
    let (_server, url, _) = wsc_serve(&["--feed", "--rate", "20"]);
    let url = format!("{url}/market");
    let start = Instant::now();
    let out = wsc(
        &[&url, "--linger", "0.5"],
        br#"{"op":"subscribe","symbols":["ETH-USD"]}
"#,
    );
    exits_with(&out, 0);
    let took = start.elapsed();
    // Ticks all along: it closed for the bound, not for a quiet spell.
    let ticks = stdout(&out).lines().count();
    assert!(ticks >= 40, "{ticks} ticks in {took:?}");
    assert!(took >= Duration::from_secs(5), "{took:?}");
}

#[test]
fn linger_without_stdin_closes_after_the_send_messages() {
    let (_py, url) = py_server(&[]);
    let start = Instant::now();
    let out = wsc(&[&url, "-n", "-s", "status", "--linger", "1"], b"");
    exits_with(&out, 0);
    assert_eq!(stdout(&out), "status\n");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn sighup_closes_cleanly_as_ctrl_c_does() {
    let (py, url) = py_server(&[]);
    let mut child = spawn_quiet(&[&url, "-n", "-v"]);
    let _err = once_open(&mut child);
    send_signal(&child, "-HUP");
    assert_eq!(py.event("closed")["code"], 1000);
    assert_eq!(child.0.wait().unwrap().code(), Some(0));
}

/// A server that answers our close by ending TCP, with no close frame of its own: `reset`
/// ends it with a reset (SO_LINGER 0) rather than a FIN. It sends "x" first.
fn server_hanging_up_on_our_close(reset: bool) -> String {
    raw_server(move |mut tcp| {
        raw_upgrade(&mut tcp);
        tcp.write_all(&[0x81, 0x01, b'x']).unwrap();
        // Reads up to the end of our close frame (opcode 8, masked, 2-byte code).
        let mut head = [0u8; 2];
        loop {
            tcp.read_exact(&mut head).unwrap();
            let len = usize::from(head[1] & 0x7f) + 4;
            let mut rest = vec![0u8; len];
            tcp.read_exact(&mut rest).unwrap();
            if head[0] & 0x0f == 8 {
                break;
            }
        }
        if reset {
            socket2::SockRef::from(&tcp)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
    })
}

#[test]
fn a_server_hanging_up_on_our_close_is_a_clean_end_exit_0_but_a_reset_is_not() {
    // Many servers answer a close by ending TCP: once our close is out, a FIN says the
    // server read it all (each way out that closes: the end of stdin, --count, Ctrl-C; with
    // --reconnect too). A reset says nothing of the kind: a server closing with our data
    // unread resets.
    let url = server_hanging_up_on_our_close(false);
    let out = wsc(&[&url, "--no-compression", "--linger", "0"], b"");
    exits_with(&out, 0);
    assert_eq!(stdout(&out), "x\n");
    for extra in [&[][..], &["--reconnect"]] {
        let url = server_hanging_up_on_our_close(false);
        let mut args = vec![url.as_str(), "-n", "--count", "1", "-v"];
        args.extend_from_slice(extra);
        let out = wsc(&args, b"");
        exits_with(&out, 0);
        let err = stderr(&out);
        assert!(
            err.contains("the server ended the connection without answering our close"),
            "{extra:?}: {err}"
        );
    }
    let url = server_hanging_up_on_our_close(false);
    let mut child = spawn_quiet(&[&url, "-n", "-v"]);
    let _err = once_open(&mut child);
    send_signal(&child, "-INT");
    assert_eq!(child.0.wait().unwrap().code(), Some(0));

    let url = server_hanging_up_on_our_close(true);
    let out = wsc(&[&url, "-n", "--count", "1"], b"");
    exits_with(&out, 9);
}

#[test]
fn a_server_that_never_answers_the_upgrade_is_a_timeout_naming_the_flag() {
    let url = raw_server(|mut tcp| {
        let mut sink = [0u8; 1024];
        while tcp.read(&mut sink).is_ok_and(|n| n > 0) {}
    });
    let out = wsc(&[&url, "-n", "--connect-timeout", "0.3"], b"");
    exits_with(&out, 7);
    let err = stderr(&out);
    assert!(
        err.contains("timed out during the WebSocket handshake (--connect-timeout bounds"),
        "{err}"
    );
}

#[test]
fn a_close_the_server_never_answers_is_a_timeout_exit_7() {
    let url = raw_server(|mut tcp| {
        raw_upgrade(&mut tcp);
        tcp.write_all(&[0x81, 0x01, b'x']).unwrap();
        // Reads our close, answers nothing, keeps TCP open.
        let mut sink = [0u8; 64];
        let until = Instant::now() + Duration::from_secs(8);
        while Instant::now() < until && tcp.read(&mut sink).is_ok_and(|n| n > 0) {}
    });
    let out = wsc(&[&url, "-n", "--count", "1"], b"");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert_eq!(stdout(&out), "x\n");
    assert!(err.contains("did not answer our close within 3 s"), "{err}");
}

#[test]
fn whole_sends_all_of_stdin_as_one_message() {
    let (_server, url, _) = wsc_serve(&[]);
    let request = b"{\n  \"op\": \"subscribe\",\n  \"symbols\": [\"BTC-USD\"]\n}\n";
    let out = wsc(&[&url, "--whole", "--json"], request);
    exits_with(&out, 0);
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &Value| v["type"] == "text")
        .collect();
    assert_eq!(lines.len(), 1, "{}", stdout(&out));
    let sent = std::str::from_utf8(request).unwrap().trim_end_matches('\n');
    assert_eq!(lines[0]["data"], sent);

    // Binary: every byte, in one message.
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let out = wsc(&[&url, "--whole", "--binary"], &data);
    exits_with(&out, 0);
    assert!(out.stdout == data, "the echo differs");

    // Past the message limit: refused, not sent.
    let out = wsc(
        &[&url, "--whole", "--max-message-size", "10"],
        b"0123456789abcdef",
    );
    let err = exits_with(&out, 12);
    assert!(err.contains("more than 10 bytes"), "{err}");
}

/// `wsc URL -n -v` started with `signal` ("HUP", "INT") ignored, as `nohup` or a
/// non-interactive shell's background job starts it; returned once it says it is open.
fn open_with_ignored(signal: &str, url: &str) -> Proc {
    let script = format!("trap '' {signal}; exec \"$0\" \"$1\" -n -v");
    let child = Command::new("sh")
        .args(["-c", &script, WSC, url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Proc(child);
    let _err = once_open(&mut child);
    child
}

#[test]
fn a_hangup_ignored_at_start_stays_ignored_as_under_nohup() {
    let (py, url) = py_server(&[]);
    let mut child = open_with_ignored("HUP", &url);
    send_signal(&child, "-HUP");
    thread::sleep(Duration::from_millis(500));
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "a SIGHUP under nohup ended it"
    );
    send_signal(&child, "-INT");
    assert_eq!(py.event("closed")["code"], 1000);
    assert_eq!(child.0.wait().unwrap().code(), Some(0));
}

#[test]
fn ctrl_c_closes_cleanly_even_when_sigint_was_ignored_at_start() {
    // A non-interactive shell's background job (a CI runner's) starts with SIGINT ignored.
    let (py, url) = py_server(&[]);
    let mut child = open_with_ignored("INT", &url);
    send_signal(&child, "-INT");
    assert_eq!(py.event("closed")["code"], 1000);
    assert_eq!(child.0.wait().unwrap().code(), Some(0));
}

#[test]
fn a_stdin_line_past_the_message_limit_is_an_error_not_unbounded_memory() {
    // Without a bound, a stream with no newline (a binary file, /dev/zero) grew one line
    // until memory ran out (gigabytes within seconds).
    let (_server, url, mut log) = wsc_serve(&[]);
    let mut input = b"ok\r\n".to_vec();
    input.extend(std::iter::repeat_n(b'z', 2000));
    let out = wsc(&[&url, "--max-message-size", "1K"], &input);
    let err = exits_with(&out, 12);
    assert!(err.contains("line 2 is longer than 1024 bytes"), "{err}");
    assert!(err.contains("--max-message-size"), "{err}");
    // The line before was sent and its echo printed, and the connection closed properly.
    assert_eq!(stdout(&out), "ok\n");
    let mut line = String::new();
    log.read_line(&mut line).unwrap();
    assert!(line.contains("closed 1001 (going away)"), "{line}");

    // A line of exactly the limit, even ended by \r\n, is sent.
    let out = wsc(
        &[&url, "--max-message-size", "16"],
        b"aaaaaaaaaaaaaaaa\r\nwxyz",
    );
    exits_with(&out, 0);
    assert_eq!(stdout(&out), "aaaaaaaaaaaaaaaa\nwxyz\n");
}

#[test]
fn a_stdin_line_that_is_not_utf8_is_an_error_naming_the_line_after_a_clean_close() {
    // It used to be skipped with a warning, and the lines after it sent: exit 0.
    let (_server, url, mut log) = wsc_serve(&[]);
    let out = wsc(&[&url], b"first\nsecond\r\nlatin-1 caf\xe9\nnever sent\n");
    let err = exits_with(&out, 12);
    assert!(err.contains("line 3 is not UTF-8"), "{err}");
    assert!(err.contains("--binary"), "{err}");
    // The lines before it were sent and their echoes printed; none after it was sent, and
    // the connection closed properly, going away.
    assert_eq!(stdout(&out), "first\nsecond\n");
    let mut line = String::new();
    log.read_line(&mut line).unwrap();
    assert!(line.contains("closed 1001 (going away)"), "{line}");
}

#[test]
fn a_compressed_message_at_the_size_limit_is_accepted_both_ways() {
    // Incompressible bytes: deflate makes them a few bytes bigger on the wire. A frame limit
    // equal to --max-message-size refused such a message of exactly the limit: wsc serve
    // closed with 1009 (the client exited 11), and the client refused the echo (exit 8).
    let mut x: u32 = 12345;
    let data: Vec<u8> = (0..3000)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();
    let (_server, url, _) = wsc_serve(&["--max-message-size", "3000"]);
    let out = wsc(&[&url, "-W", "-b", "--max-message-size", "3000"], &data);
    exits_with(&out, 0);
    assert!(out.stdout == data, "the echo differs");
}

#[test]
fn reconnect_that_cannot_reach_the_server_again_says_it_gave_up() {
    // One connection, closed with 1001; then the port is closed (the listener dropped).
    let url = raw_server(|mut tcp| {
        raw_upgrade(&mut tcp);
        let _ = tcp.write_all(&[0x88, 2, 0x03, 0xE9]);
    });
    let out = wsc(
        &[&url, "-n", "--reconnect", "--reconnect-max-attempts", "1"],
        b"",
    );
    // The status of the last attempt's error; its message alone ("cannot connect to ...")
    // read as if the first connection had failed.
    let err = exits_with(&out, 4);
    assert!(
        err.contains("could not reconnect, giving up: cannot connect"),
        "{err}"
    );
}

#[test]
fn the_environment_proxy_is_not_used_for_loopback_as_help_says() {
    // --help said only "minus NO_PROXY": a user testing a proxy on 127.0.0.1 with
    // HTTP_PROXY set saw it bypassed with no word of why.
    let help = stdout(&wsc(&["--help"], b""));
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(help.contains("never for loopback hosts"), "{help}");

    let (_server, url, _) = wsc_serve(&[]);
    let mut child = Command::new(WSC)
        .arg(&url)
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"direct\n").unwrap();
    let out = finish(child, &["HTTP_PROXY=... wsc", &url]);
    exits_with(&out, 0);
    assert_eq!(stdout(&out), "direct\n");
}

/// Starts `wsc` with `args` and no input, stdout and stderr piped.
fn spawn_piped(args: &[&str]) -> Proc {
    let child = Command::new(WSC)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Proc(child)
}

#[test]
fn a_quiet_session_notices_its_stdout_reader_gone_and_closes_with_1001() {
    // The server sends nothing: no write to stdout can fail, yet the reader's exit is seen.
    let (py, url) = py_server(&[]);
    let mut child = spawn_piped(&[&url, "-n", "-v"]);
    let err = once_open(&mut child);
    // `| head` exiting: the read end of the pipe closes.
    drop(child.0.stdout.take());
    assert_eq!(py.event("closed")["code"], 1001);
    let code = child.0.wait().unwrap().code();
    let err = err.join().unwrap();
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("> close 1001 (stdout closed)"), "{err}");
    // The handshake completed: the server's answer came back.
    assert!(err.contains("< close 1001"), "{err}");
}

#[test]
fn head_taking_the_first_lines_of_a_feed_gets_a_close_handshake_with_1001() {
    let (_server, url, mut log) = wsc_serve(&["--feed", "--rate", "50"]);
    let mut child = spawn_piped(&[&url, "-n", "-v", "--send", "subscribe"]);
    let err = once_open(&mut child);
    // `head -n 3`: three lines, then gone while ticks keep coming.
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    for _ in 0..3 {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0);
    }
    drop(out);
    let code = child.0.wait().unwrap().code();
    let err = err.join().unwrap();
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("< close 1001"), "{err}");
    let mut line = String::new();
    log.read_line(&mut line).unwrap();
    assert!(line.contains("closed 1001 (going away)"), "{line}");
}

#[test]
fn verbose_output_into_head_closes_cleanly_instead_of_panicking() {
    // `wsc -v URL 2>&1 | head -n 3`: stderr is the closed pipe too, and -v writes to it.
    let (py, url) = py_server(&[]);
    let child = Command::new("sh")
        .args(["-c", "exec \"$0\" \"$@\" 2>&1", WSC, &url, "-n", "-v"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Proc(child);
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    for _ in 0..3 {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0);
    }
    drop(out);
    assert_eq!(py.event("closed")["code"], 1001);
    // Not 101, a panic on the first line nobody could read.
    assert_eq!(child.0.wait().unwrap().code(), Some(0));
}

#[test]
fn serve_logs_a_message_over_its_limit_naming_its_flag() {
    let (_server, url, mut log) = wsc_serve(&["--max-message-size", "10"]);
    let out = wsc(&[&url], b"0123456789abcdef\n");
    let err = exits_with(&out, 11);
    assert!(err.contains("1009"), "{err}");
    let mut line = String::new();
    log.read_line(&mut line).unwrap();
    assert!(line.contains("exceeds the limit of 10 bytes"), "{line}");
    assert!(line.contains("--max-message-size"), "{line}");
    assert!(!line.contains("max_message_size"), "{line}");
}

#[test]
fn a_stdout_that_cannot_be_written_is_an_error_after_a_clean_close() {
    // A full disk: the session still closes properly (the server sees 1001, not a dropped
    // connection), then reports the failed write.
    let (py, url) = py_server(&[]);
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let child = Command::new(WSC)
        .args([&url, "--linger", "5"])
        .stdin(Stdio::piped())
        .stdout(full)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Proc(child);
    let mut stdin = child.0.stdin.take().unwrap();
    stdin.write_all(b"echo me\n").unwrap();
    assert_eq!(py.event("closed")["code"], 1001);
    drop(stdin);
    let mut err = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(child.0.wait().unwrap().code(), Some(12), "{err}");
    assert!(
        err.contains("cannot write to stdout: No space left"),
        "{err}"
    );
}

#[test]
fn a_ping_after_our_close_is_not_said_to_be_answered() {
    // The server pings after our close: the library rightly sends nothing more, and -v
    // must not claim a pong went out.
    let (tx, after_close) = mpsc::channel();
    let url = raw_server(move |mut tcp| {
        raw_upgrade(&mut tcp);
        // Our close: 2 header bytes, a 4-byte mask, no payload or a 2-byte code.
        let mut close = [0u8; 8];
        tcp.read_exact(&mut close[..2]).unwrap();
        assert_eq!(close[0], 0x88, "expected the client's close");
        let len = usize::from(close[1] & 0x7f);
        tcp.read_exact(&mut close[2..6 + len]).unwrap();
        tcp.write_all(&[0x89, 0x04, b'l', b'a', b't', b'e'])
            .unwrap();
        tcp.write_all(&[0x88, 0x02, 0x03, 0xe8]).unwrap();
        tcp.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        let _ = tcp.read_to_end(&mut rest);
        let _ = tx.send(rest);
    });
    let out = wsc(&[&url, "-n", "-v", "--linger", "0"], b"");
    let err = exits_with(&out, 0);
    assert!(err.contains("< ping \"late\""), "{err}");
    assert!(!err.contains("> pong"), "{err}");
    let rest = after_close.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(rest.is_empty(), "sent after its close: {rest:?}");
}

#[test]
fn closing_for_a_gone_stdout_is_bounded_by_the_close_timeout() {
    // `| head` gone, and a server that never answers our close: no hang, the timeout's 7.
    let url = raw_server(|mut tcp| {
        raw_upgrade(&mut tcp);
        tcp.write_all(&[0x81, 0x01, b'x']).unwrap();
        let mut sink = [0u8; 64];
        let until = Instant::now() + Duration::from_secs(8);
        while Instant::now() < until && tcp.read(&mut sink).is_ok_and(|n| n > 0) {}
    });
    let mut child = Command::new(WSC)
        .args([&url, "-n"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "x\n");
    drop(out);
    let out = finish(child, &"a client whose stdout is gone");
    let err = exits_with(&out, 7);
    assert!(err.contains("did not answer our close within 3 s"), "{err}");
}

/// On a terminal, what the server sends cannot drive it: the escape sequences of a text
/// message (stdout) and of a close reason (stderr, `-v`) are shown as `\x1b`, not obeyed, and
/// a bidirectional override as `\u{202e}`, not applied.
/// `wsc` runs on a pseudo-terminal made by Python's `pty`; piped, the text stays exact.
#[test]
fn a_servers_escape_sequences_are_shown_not_obeyed_on_a_terminal() {
    let text = "\x1b]0;owned\x07title\x1b[2J \u{202e}gnp.exe";
    let reason = "\x1b[31mbye";
    // A C1 control (U+009B, CSI) in a header, shown with -v.
    let header = ("X-Note".to_string(), "\u{9b}7mfine".to_string());
    let serve = move |mut tcp: TcpStream| {
        raw_upgrade_with(&mut tcp, &[header]);
        let mut frames = vec![0x81, text.len() as u8];
        frames.extend_from_slice(text.as_bytes());
        frames.extend_from_slice(&[0x88, 2 + reason.len() as u8, 0x03, 0xE8]);
        frames.extend_from_slice(reason.as_bytes());
        tcp.write_all(&frames).unwrap();
        let _ = tcp.read_to_end(&mut Vec::new());
    };
    let url = raw_server(serve.clone());
    let child = Command::new("python3")
        .args([
            "-c",
            "import pty, sys; sys.exit(pty.spawn(sys.argv[1:]) >> 8)",
            WSC,
            &url,
            "-n",
            "-v",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = finish(child, &"wsc on a pty");
    let shown = exits_with(&out, 0);
    let shown = shown + &stdout(&out);
    assert!(
        !shown.contains(['\x1b', '\u{9b}', '\u{202e}']),
        "an escape reached the terminal: {shown:?}"
    );
    assert!(
        shown.contains(r"\x1b]0;owned\x07title\x1b[2J \u{202e}gnp.exe"),
        "{shown}"
    );
    assert!(shown.contains(r"\u{9b}7mfine"), "{shown}");
    assert!(shown.contains("[31mbye"), "{shown}");

    // Piped, the message is the server's, byte for byte.
    let url = raw_server(serve);
    let out = wsc(&[&url, "-n"], b"");
    exits_with(&out, 0);
    assert_eq!(stdout(&out), format!("{text}\n"));
}

/// With --reconnect, --idle-timeout replaces a connection gone silent: closed with 1001
/// "idle timeout", then a new one, where the --send messages go again. Before, it ended the
/// session with exit 7.
#[test]
fn idle_timeout_with_reconnect_replaces_a_silent_connection() {
    let (_server, url, mut log) = wsc_serve(&["--echo"]);
    let out = wsc(
        &[
            &url,
            "-n",
            "--reconnect",
            "--send",
            "hi",
            "--idle-timeout",
            "0.5",
            "--count",
            "2",
        ],
        b"",
    );
    let err = exits_with(&out, 0);
    assert_eq!(stdout(&out), "hi\nhi\n", "{err}");
    assert!(
        err.contains("no message in 0.5 s (--idle-timeout); reconnecting"),
        "{err}"
    );
    let mut first = String::new();
    log.read_line(&mut first).unwrap();
    assert!(
        first.contains("1 in, 1 out, closed 1001") && first.contains("idle timeout"),
        "{first}"
    );
}

/// A 0.7 s session with `wsc serve`, pinging every 0.2 s, shown as `output` says (`-v` or
/// `--json`); it ends with the idle timeout (exit 7), its stderr returned with the output.
fn keepalive_session(output: &str) -> (Output, String) {
    let (_server, url, _) = wsc_serve(&["--echo"]);
    let out = wsc(
        &[
            &url,
            "-n",
            output,
            "--ping-interval",
            "0.2",
            "--idle-timeout",
            "0.7",
        ],
        b"",
    );
    let err = exits_with(&out, 7);
    (out, err)
}

/// `-v` with `--ping-interval` shows each keepalive pong's round trip.
#[test]
fn verbose_keepalive_shows_the_round_trip_of_each_ping() {
    let (_, err) = keepalive_session("-v");
    let rtts: Vec<f64> = err
        .lines()
        .filter_map(|l| l.strip_prefix("* round trip: "))
        .map(|ms| ms.trim_end_matches(" ms").parse().unwrap())
        .collect();
    assert!(!rtts.is_empty(), "{err}");
    assert!(rtts.iter().all(|&ms| ms < 500.0), "{rtts:?}");
}

/// `--json` with `--ping-interval`: each keepalive pong's line carries its round trip.
#[test]
fn json_keepalive_pongs_carry_their_round_trip() {
    let (out, _) = keepalive_session("--json");
    let pongs: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "pong")
        .collect();
    assert!(!pongs.is_empty(), "{}", stdout(&out));
    for pong in &pongs {
        let ms = pong["rtt_ms"].as_f64().unwrap_or_else(|| panic!("{pong}"));
        assert!(ms > 0.0 && ms < 500.0, "{pong}");
    }
}
