//! A minimal hand-written client handshake, for the impls that have none without extra
//! dependencies (fastwebsockets without hyper, and the raw TCP reader): write the GET, read
//! the response head up to `\r\n\r\n`, check the 101 status and the accept key.

use std::io::{Read, Write};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;

use super::{err, Result};

/// Largest response head accepted.
const MAX_HEAD: usize = 8 << 10;

/// The upgrade request and the key it carries.
fn request(addr: &str, path: &str) -> Result<(String, String)> {
    let key = wsc::proto::handshake::generate_key()?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    Ok((req, key))
}

/// Where the head ends (just past `\r\n\r\n`), if it is complete.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Checks the status line and `Sec-WebSocket-Accept`.
fn check(head: &[u8], key: &str) -> Result<()> {
    let head = std::str::from_utf8(head).map_err(|_| err("response head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    if !status.starts_with("HTTP/1.1 101") {
        return Err(err(format!("handshake refused: {status}")));
    }
    let expected = wsc::proto::handshake::accept_key(key);
    let accepted = lines
        .filter_map(|l| l.split_once(':'))
        .any(|(name, value)| {
            name.trim().eq_ignore_ascii_case("sec-websocket-accept") && value.trim() == expected
        });
    if !accepted {
        return Err(err("missing or wrong Sec-WebSocket-Accept"));
    }
    Ok(())
}

/// Blocking handshake. Returns the bytes read past the head (the start of the frames).
pub fn client_blocking(tcp: &mut std::net::TcpStream, addr: &str, path: &str) -> Result<Vec<u8>> {
    let (req, key) = request(addr, path)?;
    tcp.write_all(req.as_bytes())?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = head_end(&buf) {
            check(&buf[..end], &key)?;
            return Ok(buf.split_off(end));
        }
        if buf.len() > MAX_HEAD {
            return Err(err("response head too large"));
        }
        let n = tcp.read(&mut chunk)?;
        if n == 0 {
            return Err(err("connection closed during the handshake"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Async handshake that consumes exactly the response head (peeking first), so that frames
/// sent right behind it stay in the socket for the WebSocket layer, which takes a bare stream.
pub async fn client_async(tcp: &mut tokio::net::TcpStream, addr: &str, path: &str) -> Result<()> {
    let (req, key) = request(addr, path)?;
    tcp.write_all(req.as_bytes()).await?;
    let mut buf = vec![0u8; MAX_HEAD];
    loop {
        let n = tcp.peek(&mut buf).await?;
        if n == 0 {
            return Err(err("connection closed during the handshake"));
        }
        if let Some(end) = head_end(&buf[..n]) {
            tcp.read_exact(&mut buf[..end]).await?;
            return check(&buf[..end], &key);
        }
        if n == buf.len() {
            return Err(err("response head too large"));
        }
        // Only part of the head has arrived (rare on loopback): peek again shortly.
        tokio::time::sleep(Duration::from_micros(50)).await;
    }
}
