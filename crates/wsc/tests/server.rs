//! The server role's answer chosen by its user (`Acceptor::accept_with`, `accept_async_with`,
//! `read_request` and `Upgrade::answer`) against real clients on loopback: our own blocking
//! and async clients, Python `websockets` (from the venv), and a raw TCP client that reads
//! the refusal byte for byte.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use wsc::server::{Accept, Acceptor, Refusal};
use wsc::{ClientBuilder, Error, HandshakeError, Message};

#[path = "../../../tests/peers/spawn.rs"]
mod peers;

const LIMIT: Duration = Duration::from_secs(5);

/// A server that accepts `count` connections with `acceptor` and `decide`, echoes one
/// message on each it opens, and returns what each accept call returned (the path, or the
/// error).
fn serve<F>(
    acceptor: Acceptor,
    count: usize,
    decide: F,
) -> (String, JoinHandle<Vec<Result<String, Error>>>)
where
    F: Fn(&wsc::proto::handshake::Request) -> Result<Accept, Refusal> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let server = thread::spawn(move || {
        let mut results = Vec::new();
        for _ in 0..count {
            let (tcp, _) = listener.accept().unwrap();
            tcp.set_read_timeout(Some(LIMIT)).unwrap();
            match acceptor.accept_with(tcp, &decide) {
                Ok((mut ws, request)) => {
                    if let Ok(msg) = ws.read() {
                        let _ = ws.send(msg);
                    }
                    let _ = ws.close_and_wait(None);
                    results.push(Ok(request.path));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        results
    });
    (url, server)
}

fn client(url: &str) -> ClientBuilder {
    ClientBuilder::new(url)
        .connect_timeout(LIMIT)
        .handshake_timeout(LIMIT)
}

/// The client's view of a refusal: the server's response.
fn refused(result: Result<wsc::WebSocket<wsc::MaybeTlsStream>, Error>) -> Box<wsc::Response> {
    match result {
        Err(Error::Handshake(HandshakeError::Rejected(response))) => response,
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(_) => panic!("expected a refusal, the connection opened"),
    }
}

fn refused_with(result: &Result<String, Error>) -> u16 {
    match result {
        Err(Error::Handshake(HandshakeError::CallbackRefused { status })) => status.as_u16(),
        other => panic!("expected CallbackRefused, got {other:?}"),
    }
}

/// Sends one message and expects it back, so the connection is known to work.
fn echo(ws: &mut wsc::WebSocket<wsc::MaybeTlsStream>) {
    ws.send_text("ping?").unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("ping?"));
    ws.close_and_wait(None).unwrap();
}

#[test]
fn a_wrong_path_is_refused_with_the_callbacks_404_and_body() {
    let (url, server) = serve(Acceptor::new(), 2, |request| match request.path.as_str() {
        "/feed" => Ok(Accept::new()),
        _ => Err(Refusal::new(404).body("no such feed\n")),
    });
    let response = refused(client(&format!("{url}/nope")).connect());
    assert_eq!(response.status, 404);
    assert_eq!(&response.body[..], b"no such feed\n");
    assert_eq!(
        response.headers["content-type"],
        "text/plain; charset=utf-8"
    );
    let mut ws = client(&format!("{url}/feed")).connect().unwrap();
    echo(&mut ws);
    let results = server.join().unwrap();
    assert_eq!(refused_with(&results[0]), 404);
    let e = results[0].as_ref().unwrap_err().to_string();
    assert!(
        e.contains("accept callback refused") && e.contains("404"),
        "{e}"
    );
    assert_eq!(results[1].as_ref().unwrap(), "/feed");
}

#[test]
fn a_missing_token_is_refused_with_the_callbacks_401_headers_and_content_type() {
    let (url, server) = serve(Acceptor::new(), 2, |request| {
        match request.headers.get("authorization") {
            Some(token) if token == "Bearer s3cret" => Ok(Accept::new()),
            _ => Err(Refusal::new(401)
                .header("WWW-Authenticate", "Bearer realm=\"feed\"")
                .header("Content-Type", "application/json")
                .body(r#"{"error":"token required"}"#)),
        }
    });
    let response = refused(client(&url).connect());
    assert_eq!(response.status, 401);
    assert_eq!(
        response.headers["www-authenticate"],
        "Bearer realm=\"feed\""
    );
    let types: Vec<_> = response.headers.get_all("content-type").iter().collect();
    assert_eq!(types, ["application/json"]);
    assert_eq!(&response.body[..], br#"{"error":"token required"}"#);
    let mut ws = client(&url)
        .header("Authorization", "Bearer s3cret")
        .connect()
        .unwrap();
    echo(&mut ws);
    let results = server.join().unwrap();
    assert_eq!(refused_with(&results[0]), 401);
    assert!(results[1].is_ok(), "{:?}", results[1]);
}

#[test]
fn an_accepting_callback_adds_headers_and_chooses_the_subprotocol() {
    // The acceptor's own list would choose v1; the callback prefers v2.
    let acceptor = Acceptor::new().protocol("v1");
    let (url, server) = serve(acceptor, 1, |request| {
        assert_eq!(request.protocols, ["v1", "v2"]);
        Ok(Accept::new()
            .header("Set-Cookie", "session=abc; HttpOnly")
            .header("Set-Cookie", "theme=dark")
            .protocol("v2"))
    });
    let mut ws = client(&url)
        .protocol("v1")
        .protocol("v2")
        .connect()
        .unwrap();
    assert_eq!(ws.protocol(), Some("v2"));
    let response = ws.response().unwrap();
    let cookies: Vec<_> = response.headers.get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["session=abc; HttpOnly", "theme=dark"]);
    echo(&mut ws);
    assert!(server.join().unwrap()[0].is_ok());
}

#[test]
fn an_answer_that_cannot_be_sent_is_a_500_and_a_typed_error() {
    let answers: Vec<fn() -> Result<Accept, Refusal>> = vec![
        || Ok(Accept::new().header("Sec-WebSocket-Protocol", "v1")),
        || Ok(Accept::new().header("X-Bad", "line\r\nbreak")),
        || Ok(Accept::new().protocol("never-offered")),
        || Err(Refusal::new(101)),
        || Err(Refusal::new(403).header("Content-Length", "0")),
        || Err(Refusal::new(204).body("gone")),
        || {
            Err(Refusal::new(304)
                .header("ETag", "\"v1\"")
                .body("not modified"))
        },
        || Ok(Accept::new().header("Sec-WebSocket-Version", "13")),
    ];
    let count = answers.len();
    let next = std::sync::Mutex::new(answers.into_iter());
    let (url, server) = serve(Acceptor::new(), count, move |_| {
        (next.lock().unwrap().next().unwrap())()
    });
    for _ in 0..count {
        let response = refused(client(&url).protocol("v1").connect());
        assert_eq!(response.status, 500);
    }
    let results = server.join().unwrap();
    let reasons: Vec<String> = results
        .iter()
        .map(|r| match r {
            Err(e @ Error::Handshake(HandshakeError::InvalidAnswer(_))) => e.to_string(),
            other => panic!("expected InvalidAnswer, got {other:?}"),
        })
        .collect();
    assert!(reasons[0].contains("Accept::protocol"), "{}", reasons[0]);
    assert!(reasons[1].contains("x-bad"), "{}", reasons[1]);
    assert!(reasons[2].contains("never-offered"), "{}", reasons[2]);
    assert!(reasons[3].contains("final status"), "{}", reasons[3]);
    assert!(reasons[4].contains("content-length"), "{}", reasons[4]);
    assert!(
        reasons[7].contains("sec-websocket-version"),
        "{}",
        reasons[7]
    );
    for (reason, status) in reasons[5..].iter().zip(["204", "304"]) {
        assert!(
            reason.contains(status) && reason.contains("cannot have a body"),
            "{reason}"
        );
    }
}

/// Sends an upgrade request for `path` over raw TCP and reads the answer to the end (the server closes
/// after a refusal): its status line, header lines and body.
fn raw_refusal(url: &str, path: &str) -> (String, Vec<String>, String) {
    let mut tcp = TcpStream::connect(url.trim_start_matches("ws://")).unwrap();
    tcp.set_read_timeout(Some(LIMIT)).unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n").map(str::to_owned);
    let status = lines.next().unwrap();
    (status, lines.collect(), body.to_owned())
}

#[test]
fn a_request_trickled_a_byte_at_a_time_is_answered_and_a_bad_line_at_its_end() {
    // The head is parsed once a line ends (not once a byte, from its start each time): the
    // answers must not change.
    let (url, server) = serve(Acceptor::new(), 2, |_| Ok(Accept::new()));
    let addr = url.trim_start_matches("ws://");
    let request = "GET /slow HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_nodelay(true).unwrap();
    tcp.set_read_timeout(Some(LIMIT)).unwrap();
    for byte in request.as_bytes() {
        tcp.write_all(&[*byte]).unwrap();
        thread::sleep(Duration::from_micros(200));
    }
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    // Closes, with no message: the server's echo loop ends.
    drop(tcp);
    // A request line that is not HTTP is answered once that line ends, without waiting for
    // the rest of the head.
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(LIMIT)).unwrap();
    tcp.write_all(b"GET /pot HTCPCP/1.0\r\n").unwrap();
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 400");
    let results = server.join().unwrap();
    assert!(
        matches!(&results[0], Ok(path) if path == "/slow"),
        "{results:?}"
    );
    assert!(results[1].is_err(), "{results:?}");
}

#[test]
fn a_refusal_is_a_complete_http_response_then_the_connection_closes() {
    let (url, server) = serve(Acceptor::new(), 1, |_| {
        Err(Refusal::new(403).header("X-Why", "banned").body("go away"))
    });
    // To the end: the server closes after the refusal.
    let (status, headers, body) = raw_refusal(&url, "/x");
    assert_eq!(status, "HTTP/1.1 403 Forbidden");
    for expected in ["Content-Length: 7", "Connection: close", "x-why: banned"] {
        assert!(
            headers.iter().any(|h| h == expected),
            "{expected} not in {headers:?}"
        );
    }
    assert!(
        !headers
            .iter()
            .any(|h| h.starts_with("Sec-WebSocket-Accept")),
        "{headers:?}"
    );
    assert_eq!(body, "go away");
    assert_eq!(refused_with(&server.join().unwrap()[0]), 403);
}

/// A 204 or 304 refusal carries neither a body nor `Content-Length` (HTTP forbids both:
/// RFC 9110 section 8.6), nor a `Content-Type` for content it does not have.
#[test]
fn a_bodiless_refusal_has_no_content_length() {
    let (url, server) = serve(Acceptor::new(), 2, |request| match request.path.as_str() {
        "/204" => Err(Refusal::new(204).header("X-Why", "gone")),
        _ => Err(Refusal::new(304).header("ETag", "\"v1\"")),
    });
    for (path, line) in [
        ("/204", "HTTP/1.1 204 No Content"),
        ("/304", "HTTP/1.1 304 Not Modified"),
    ] {
        let (status, headers, body) = raw_refusal(&url, path);
        assert_eq!(status, line);
        assert!(
            headers.iter().any(|h| h == "Connection: close"),
            "{headers:?}"
        );
        for framing in ["Content-Length", "Content-Type", "Transfer-Encoding"] {
            assert!(
                !headers.iter().any(|h| h.starts_with(framing)),
                "{framing} in {headers:?}"
            );
        }
        assert_eq!(body, "");
    }
    let results = server.join().unwrap();
    assert_eq!(refused_with(&results[0]), 204);
    assert_eq!(refused_with(&results[1]), 304);
}

/// Python `websockets` (another implementation, from the project's venv) as the client: it
/// reads the refusal's status, header and body, and the accepting answer's subprotocol and
/// cookie.
#[test]
fn python_websockets_reads_the_callbacks_refusal_and_acceptance() {
    let (url, server) = serve(Acceptor::new(), 2, |request| {
        let authorized = request
            .headers
            .get("authorization")
            .is_some_and(|token| token == "Bearer s3cret");
        match (request.path.as_str(), authorized) {
            ("/feed", true) => Ok(Accept::new()
                .header("Set-Cookie", "session=abc")
                .protocol("v2")),
            _ => Err(Refusal::new(401)
                .header("WWW-Authenticate", "Bearer")
                .body("token required")),
        }
    });
    let script = r#"
import json, sys
from websockets.sync.client import connect
from websockets.exceptions import InvalidStatus
url, out = sys.argv[1], {}
try:
    with connect(url + "/feed", open_timeout=5):
        out["refused"] = None
except InvalidStatus as e:
    r = e.response
    out["refused"] = [r.status_code, r.headers.get("WWW-Authenticate"), r.body.decode()]
with connect(url + "/feed", subprotocols=["v1", "v2"], open_timeout=5,
             additional_headers={"Authorization": "Bearer s3cret"}) as ws:
    out["protocol"] = ws.subprotocol
    out["cookie"] = ws.response.headers.get("Set-Cookie")
    ws.send("hello")
    out["echo"] = ws.recv(timeout=5)
print(json.dumps(out))
"#;
    let output = std::process::Command::new(peers::python())
        .args(["-c", script, &url])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        seen["refused"],
        serde_json::json!([401, "Bearer", "token required"])
    );
    assert_eq!(seen["protocol"], "v2");
    assert_eq!(seen["cookie"], "session=abc");
    assert_eq!(seen["echo"], "hello");
    let results = server.join().unwrap();
    assert_eq!(refused_with(&results[0]), 401);
    assert!(results[1].is_ok(), "{:?}", results[1]);
}

/// An upgrade request and, in the same write, a first frame (a client that does not wait for
/// the 101): masked text "hi".
const REQUEST_AND_FRAME: &[u8] = b"GET /early HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n\x81\x82\x01\x02\x03\x04\x69\x6b";

#[test]
fn read_request_then_answer_keeps_the_frames_that_came_with_the_request() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut client = TcpStream::connect(addr).unwrap();
    client.write_all(REQUEST_AND_FRAME).unwrap();
    let (tcp, _) = listener.accept().unwrap();
    tcp.set_read_timeout(Some(LIMIT)).unwrap();
    let acceptor = Acceptor::new();
    let upgrade = acceptor.read_request(tcp).unwrap();
    assert_eq!(upgrade.request().path, "/early");
    let (mut ws, request) = upgrade
        .answer(Ok(Accept::new().header("X-Seen", "yes")))
        .unwrap();
    assert_eq!(request.path, "/early");
    assert_eq!(ws.read().unwrap(), Message::text("hi"));
    client.set_read_timeout(Some(LIMIT)).unwrap();
    let mut head = vec![0u8; 4096];
    let n = client.read(&mut head).unwrap();
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(head.contains("\r\nx-seen: yes\r\n"), "{head}");
}

#[cfg(feature = "tokio")]
mod on_tokio {
    use super::*;
    use futures_util::StreamExt;

    /// One async accept with `decide`; the connection, if it opens, echoes one message.
    async fn serve_once<F>(decide: F) -> (String, tokio::task::JoinHandle<Result<(), Error>>)
    where
        F: FnOnce(&wsc::proto::handshake::Request) -> Result<Accept, Refusal> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let (mut ws, _) = Acceptor::new().accept_async_with(tcp, decide).await?;
            if let Some(Ok(msg)) = ws.next().await {
                ws.send(msg).await?;
            }
            ws.close(None).await.map(drop)
        });
        (url, server)
    }

    #[tokio::test]
    async fn the_async_accept_sends_the_callbacks_refusal() {
        let (url, server) = serve_once(|request| {
            assert_eq!(request.path, "/admin");
            Err(Refusal::new(403).body("admins only"))
        })
        .await;
        let opened = tokio::time::timeout(LIMIT, client(&format!("{url}/admin")).connect_async())
            .await
            .unwrap();
        match opened {
            Err(Error::Handshake(HandshakeError::Rejected(response))) => {
                assert_eq!(response.status, 403);
                assert_eq!(&response.body[..], b"admins only");
            }
            Err(e) => panic!("expected a refusal, got {e}"),
            Ok(_) => panic!("expected a refusal, the connection opened"),
        }
        match server.await.unwrap() {
            Err(Error::Handshake(HandshakeError::CallbackRefused { status })) => {
                assert_eq!(status, 403)
            }
            other => panic!("expected CallbackRefused, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_async_accept_adds_the_callbacks_headers_and_subprotocol() {
        let (url, server) =
            serve_once(|_| Ok(Accept::new().header("Set-Cookie", "a=1").protocol("v2"))).await;
        let opening = client(&url).protocol("v1").protocol("v2").connect_async();
        let (mut ws, response) = tokio::time::timeout(LIMIT, opening).await.unwrap().unwrap();
        assert_eq!(response.protocol.as_deref(), Some("v2"));
        assert_eq!(response.headers["set-cookie"], "a=1");
        ws.send(Message::text("hi")).await.unwrap();
        let echoed = tokio::time::timeout(LIMIT, ws.next()).await.unwrap();
        assert_eq!(echoed.unwrap().unwrap(), Message::text("hi"));
        drop(ws);
        let _ = tokio::time::timeout(LIMIT, server).await.unwrap();
    }

    /// The decision awaits something else (here, a verdict from another task) between
    /// reading the request and answering it.
    #[tokio::test]
    async fn read_request_async_lets_the_decision_await() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let (verdict_tx, verdict_rx) = tokio::sync::oneshot::channel::<bool>();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = Acceptor::new();
            let upgrade = acceptor.read_request_async(tcp).await?;
            assert_eq!(upgrade.request().path, "/vip");
            let decision = match verdict_rx.await {
                Ok(true) => Ok(Accept::new()),
                _ => Err(Refusal::new(403).body("not on the list")),
            };
            upgrade.answer_async(decision).await.map(drop)
        });
        let opening = tokio::spawn(client(&format!("{url}/vip")).connect_async());
        tokio::time::sleep(Duration::from_millis(50)).await;
        verdict_tx.send(false).unwrap();
        match tokio::time::timeout(LIMIT, opening).await.unwrap().unwrap() {
            Err(Error::Handshake(HandshakeError::Rejected(response))) => {
                assert_eq!(response.status, 403);
                assert_eq!(&response.body[..], b"not on the list");
            }
            Err(e) => panic!("expected a refusal, got {e}"),
            Ok(_) => panic!("expected a refusal, the connection opened"),
        }
        match server.await.unwrap() {
            Err(Error::Handshake(HandshakeError::CallbackRefused { status })) => {
                assert_eq!(status, 403)
            }
            other => panic!("expected CallbackRefused, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn read_request_async_keeps_the_frames_that_came_with_the_request() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut client, REQUEST_AND_FRAME)
            .await
            .unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        let acceptor = Acceptor::new();
        let upgrade = acceptor.read_request_async(tcp).await.unwrap();
        let (mut ws, _) = upgrade.answer_async(Ok(Accept::new())).await.unwrap();
        let first = tokio::time::timeout(LIMIT, ws.next()).await.unwrap();
        assert_eq!(first.unwrap().unwrap(), Message::text("hi"));
    }
}
