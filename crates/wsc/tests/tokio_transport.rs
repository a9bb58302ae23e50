//! The async driver against a scripted transport: a stream whose reads and writes the test
//! controls, to pin down behaviour when the socket is full, fails, or the peer stops reading.
#![cfg(feature = "tokio")]

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use wsc::proto::{Config, Connection, Role};
use wsc::tokio::WebSocketStream;
use wsc::{CloseCode, CloseFrame, Error, Message};

/// What the scripted transport does.
#[derive(Default)]
struct Script {
    incoming: VecDeque<u8>,
    read_error: Option<io::ErrorKind>,
    read_waker: Option<Waker>,
    writable: bool,
    write_error: Option<io::ErrorKind>,
    written: Vec<u8>,
    write_waker: Option<Waker>,
}

#[derive(Clone, Default)]
struct Scripted(Arc<Mutex<Script>>);

impl Scripted {
    fn change(&self, f: impl FnOnce(&mut Script)) {
        let wakers = {
            let mut s = self.0.lock().unwrap();
            f(&mut s);
            [s.read_waker.take(), s.write_waker.take()]
        };
        wakers.into_iter().flatten().for_each(Waker::wake);
    }

    fn written(&self) -> usize {
        self.0.lock().unwrap().written.len()
    }
}

impl AsyncRead for Scripted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut s = self.0.lock().unwrap();
        if let Some(kind) = s.read_error.take() {
            return Poll::Ready(Err(kind.into()));
        }
        if s.incoming.is_empty() {
            s.read_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.remaining().min(s.incoming.len());
        let bytes: Vec<u8> = s.incoming.drain(..n).collect();
        buf.put_slice(&bytes);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Scripted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut s = self.0.lock().unwrap();
        if let Some(kind) = s.write_error {
            return Poll::Ready(Err(kind.into()));
        }
        if !s.writable {
            s.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        s.written.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// An unmasked server frame with a short payload.
fn frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![first_byte, payload.len() as u8];
    v.extend_from_slice(payload);
    v
}

fn client(transport: &Scripted) -> WebSocketStream<Scripted> {
    let conn = Connection::new(Role::Client, Config::default());
    let mut ws = WebSocketStream::from_connection(transport.clone(), conn, &[]);
    ws.set_close_timeout(Some(Duration::from_millis(200)));
    ws
}

#[tokio::test]
async fn a_send_waiting_on_a_full_socket_fails_when_the_transport_dies() {
    let transport = Scripted::default();
    let (mut reader, mut writer) = client(&transport).split();
    let sending = tokio::spawn(async move { writer.send(Message::text("important")).await });
    let reading = tokio::spawn(async move { reader.recv().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!sending.is_finished(), "the socket is full: send waits");
    transport.change(|s| s.read_error = Some(io::ErrorKind::ConnectionReset));
    let read = reading.await.unwrap();
    assert!(
        matches!(read, Some(Err(Error::ConnectionReset))),
        "{read:?}"
    );
    let sent = tokio::time::timeout(Duration::from_secs(5), sending)
        .await
        .unwrap()
        .unwrap();
    assert!(
        sent.is_err(),
        "a frame that was never written must not be reported sent"
    );
    assert_eq!(transport.written(), 0);
}

#[tokio::test]
async fn a_write_error_is_reported_before_the_stream_ends() {
    let transport = Scripted::default();
    transport.change(|s| {
        s.write_error = Some(io::ErrorKind::PermissionDenied);
        s.incoming.extend(frame(0x89, b"p"));
    });
    let mut ws = client(&transport);
    let mut seen = Vec::new();
    while let Some(item) = tokio::time::timeout(Duration::from_secs(5), ws.recv())
        .await
        .unwrap()
    {
        seen.push(item);
    }
    assert!(
        matches!(seen.first(), Some(Ok(Message::Ping(_)))),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|r| matches!(r, Err(Error::Io(_)))),
        "the error is not lost: {seen:?}"
    );
}

#[tokio::test]
async fn the_close_reply_is_flushed_within_the_close_timeout_or_given_up() {
    // The server closes, then stops reading: the close reply cannot be written.
    let transport = Scripted::default();
    transport.change(|s| s.incoming.extend(frame(0x88, &[0x03, 0xE8])));
    let mut ws = client(&transport);
    assert!(matches!(ws.recv().await, Some(Ok(Message::Close(_)))));
    let start = Instant::now();
    let next = tokio::time::timeout(Duration::from_secs(5), ws.recv())
        .await
        .unwrap();
    assert!(next.is_none());
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );

    // When the socket does take it, close() flushes the reply instead of dropping it.
    let transport = Scripted::default();
    transport.change(|s| s.incoming.extend(frame(0x88, &[0x03, 0xE8])));
    let mut ws = client(&transport);
    assert!(matches!(ws.recv().await, Some(Ok(Message::Close(_)))));
    let opener = transport.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        opener.change(|s| s.writable = true);
    });
    // The server's close, which the recv above returned already.
    assert_eq!(
        ws.close(None).await.unwrap(),
        Some(CloseFrame::new(CloseCode::NORMAL, ""))
    );
    assert_eq!(
        transport.written(),
        2 + 4 + 2,
        "the masked close reply with code 1000"
    );
}

#[tokio::test]
async fn after_a_write_finds_the_peer_gone_what_it_sent_before_is_still_read() {
    // The pong cannot be written (the peer reset the connection), but the text and the close
    // it sent before are in the socket, and then the stream ends.
    let transport = Scripted::default();
    transport.change(|s| {
        s.write_error = Some(io::ErrorKind::BrokenPipe);
        s.incoming.extend(frame(0x89, b"p"));
    });
    let mut ws = client(&transport);
    assert!(matches!(ws.recv().await, Some(Ok(Message::Ping(_)))));
    transport.change(|s| {
        s.incoming.extend(frame(0x81, b"last"));
        s.incoming.extend(frame(0x88, &[0x03, 0xf0]));
    });
    assert_eq!(ws.recv().await.unwrap().unwrap().as_text(), Some("last"));
    match ws.recv().await {
        Some(Ok(Message::Close(Some(close)))) => assert_eq!(close.code.0, 1008),
        other => panic!("expected the close, got {other:?}"),
    }
    transport.change(|s| s.read_error = Some(io::ErrorKind::ConnectionReset));
    assert!(ws.recv().await.is_none());
    assert_eq!(transport.written(), 0);
}
