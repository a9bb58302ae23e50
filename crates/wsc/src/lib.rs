//! # wsc: a complete, fast and light WebSocket client
//!
//! `wsc` speaks the whole of RFC 6455: every frame type, fragmentation, ping/pong, the closing
//! handshake, UTF-8 validation, limits on what the peer may send, and TLS with rustls.
//!
//! The protocol lives in [`proto`], a sans-I/O state machine (bytes in, messages out), so it
//! can be driven by any runtime; [`WebSocket`] drives it over a blocking stream, and
//! `wsc::tokio::WebSocketStream` (feature `tokio`) over an async one, as a `Stream` and a
//! `Sink` that can be split between two tasks.
//!
//! ## Connect, subscribe, stream
//!
//! ```no_run
//! use wsc::Message;
//!
//! let mut ws = wsc::connect("wss://stream.example.com/ws")?;
//! ws.send_text(r#"{"op":"subscribe","channel":"ticker"}"#)?;
//! loop {
//!     match ws.read()? {
//!         Message::Text(text) => println!("{text}"),
//!         Message::Binary(data) => println!("{} bytes", data.len()),
//!         Message::Close(frame) => {
//!             println!("closed: {frame:?}");
//!             break;
//!         }
//!         Message::Ping(_) | Message::Pong(_) => {} // pongs are sent automatically
//!     }
//! }
//! # Ok::<(), wsc::Error>(())
//! ```
//!
//! ## Async (tokio)
//!
//! With the `tokio` feature, [`ClientBuilder`] connects with `connect_async` (the same options;
//! `connect_async_on` over a stream of your own), and `wsc::tokio::WebSocketStream` is a
//! `Stream` and a `Sink`; `split()` gives a reading and a writing half for two tasks, and
//! `recv()` is cancellation safe in `select!`:
//!
//! ```no_run
//! # #[cfg(feature = "tokio")]
//! # async fn run(mut shutdown: tokio::sync::oneshot::Receiver<()>) -> Result<(), wsc::Error> {
//! use wsc::{CloseCode, CloseFrame, Message};
//!
//! let (ws, _response) = wsc::ClientBuilder::new("wss://stream.example.com/ws")
//!     .connect_async()
//!     .await?;
//! let (mut reader, mut writer) = ws.split();
//! writer.send(r#"{"op":"subscribe","channel":"ticker"}"#).await?;
//! loop {
//!     tokio::select! {
//!         message = reader.recv() => match message {
//!             Some(Ok(Message::Text(text))) => println!("{text}"),
//!             Some(Ok(_)) => {}
//!             Some(Err(e)) => return Err(e),
//!             None => break, // closed
//!         },
//!         _ = &mut shutdown => {
//!             writer.close(Some(CloseFrame::new(CloseCode::NORMAL, "bye"))).await?;
//!             // The server's close arrives on the reader; wait for it.
//!             while let Some(Ok(_)) = reader.recv().await {}
//!             break;
//!         }
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! ## Options
//!
//! [`ClientBuilder`] sets headers, subprotocols, the origin, limits, timeouts and TLS options
//! (custom CA, client certificate, or skipping verification for tests):
//!
//! ```no_run
//! # #[cfg(feature = "tls")]
//! # fn main() -> Result<(), wsc::Error> {
//! use std::time::Duration;
//! let tls = wsc::TlsOptions::new().add_ca_pem_file("ca.pem")?;
//! let ws = wsc::ClientBuilder::new("wss://internal.example:8443/events")
//!     .header("Authorization", "Bearer secret")
//!     .protocol("events.v1")
//!     .connect_timeout(Duration::from_secs(5))
//!     .read_timeout(Some(Duration::from_secs(60)))
//!     .tls(tls)
//!     .connect()?;
//! # Ok(()) }
//! # #[cfg(not(feature = "tls"))]
//! # fn main() {}
//! ```
//!
//! ## Compression
//!
//! permessage-deflate (RFC 7692, feature `deflate`, on by default) is offered by every client
//! and accepted by the server role; tune it with [`proto::deflate::DeflateConfig`] or turn it
//! off:
//!
//! ```no_run
//! # #[cfg(feature = "deflate")]
//! # fn main() -> Result<(), wsc::Error> {
//! use wsc::proto::deflate::DeflateConfig;
//! let ws = wsc::ClientBuilder::new("wss://stream.example.com/ws")
//!     .deflate(Some(DeflateConfig::default().server_max_window_bits(Some(12)).level(1)))
//!     .connect()?;
//! println!("negotiated: {:?}", ws.connection().deflate_params());
//! # Ok(()) }
//! # #[cfg(not(feature = "deflate"))]
//! # fn main() {}
//! ```
//!
//! Inflated messages are bounded by the maximum message size, so a small "bomb" frame is
//! stopped with close code 1009 before it can exhaust memory.
//!
//! ## Real networks
//!
//! Every address of the host is tried, IPv6 and IPv4 raced as in Happy Eyeballs (RFC 8305).
//! Proxies (HTTP CONNECT, SOCKS5) come from the environment (`WSS_PROXY` or `HTTPS_PROXY`
//! for `wss://`, `WS_PROXY` or `HTTP_PROXY` for `ws://`, `ALL_PROXY`, `NO_PROXY`; lowercase
//! too) or from [`ClientBuilder::proxy`]; [`ClientBuilder::keepalive`] detects a dead peer;
//! [`ClientBuilder::max_redirects`] follows redirects; and [`reconnect`] re-opens a dropped
//! connection, replays its subscriptions and reports the gap:
//!
//! ```no_run
//! use std::time::Duration;
//! use wsc::reconnect::{Event, Reconnect};
//!
//! let mut feed = wsc::ClientBuilder::new("wss://stream.example.com/ws")
//!     .keepalive(wsc::Keepalive::new(Duration::from_secs(20), Duration::from_secs(10)))
//!     .connect_reconnecting(Reconnect::new())?;
//! feed.subscribe(r#"{"op":"subscribe","channel":"ticker"}"#)?;
//! while let Ok(event) = feed.next_event() {
//!     if let Event::Reconnected(r) = event {
//!         eprintln!("missed up to {:?} of messages", r.downtime);
//!     }
//! }
//! # Ok::<(), wsc::Error>(())
//! ```
//!
//! ## Errors
//!
//! Everything fails with [`Error`], whose variants say what went wrong and where: DNS, connect,
//! a [`Phase`] that timed out, TLS, the handshake (with the server's status and body), or a
//! [`ProtocolError`] by the peer (with the close code that was sent to it).
//! [`reconnect::is_retryable`] says whether trying again could help (the reconnecting clients
//! use it):
//!
//! ```no_run
//! use wsc::{Error, HandshakeError};
//!
//! match wsc::connect("wss://stream.example.com/ws") {
//!     Ok(ws) => { /* ... */ }
//!     Err(Error::Handshake(HandshakeError::Rejected(response))) if response.status == 401 => {
//!         eprintln!("refresh the token: {}", String::from_utf8_lossy(&response.body));
//!     }
//!     Err(e) if wsc::reconnect::is_retryable(&e) => eprintln!("try again later: {e}"),
//!     Err(e) => return Err(e),
//! }
//! # Ok::<(), wsc::Error>(())
//! ```
//!
//! ## A round trip, runnable
//!
//! ```
//! use std::net::TcpListener;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = TcpListener::bind("127.0.0.1:0")?;
//! let url = format!("ws://{}/echo", listener.local_addr()?);
//! let server = std::thread::spawn(move || -> Result<(), wsc::Error> {
//!     let (tcp, _) = listener.accept()?;
//!     let mut ws = wsc::server::accept(tcp)?;
//!     loop {
//!         match ws.read()? {
//!             msg @ (wsc::Message::Text(_) | wsc::Message::Binary(_)) => ws.send(msg)?,
//!             wsc::Message::Close(_) => return Ok(()),
//!             _ => {}
//!         }
//!     }
//! });
//!
//! let mut ws = wsc::connect(&url)?;
//! ws.send_text("hello")?;
//! assert_eq!(ws.read()?.as_text(), Some("hello"));
//! ws.close_and_wait(None)?;
//! server.join().unwrap()?;
//! # Ok(())
//! # }
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod blocking;
mod client;
pub mod error;
pub mod net;
pub mod proto;
pub mod reconnect;
#[cfg(feature = "tokio")]
mod reconnect_tokio;
pub mod server;
mod stream;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "tokio")]
pub mod tokio;
pub mod url;

pub use blocking::WebSocket;
pub use client::{client, connect, ClientBuilder};
pub use error::{Error, Phase, ProtocolError, RedirectError, Result};
pub use net::{Proxy, ProxyConfig, ProxyError, ProxyKind};
pub use proto::handshake::{HandshakeError, Redirect, Response};
pub use proto::{
    CloseCode, CloseFrame, Config, Keepalive, Message, MessagePart, MessageRef, Utf8Bytes,
};
pub use reconnect::{Reconnect, Reconnecting};
pub use stream::MaybeTlsStream;
#[cfg(feature = "tls")]
pub use tls::{Roots, TlsOptions};
pub use url::{UrlError, WsUrl};

/// Re-exported so users can name payload and TLS types without adding the crates themselves.
pub use bytes;
#[cfg(feature = "tls")]
pub use rustls;

/// The README's Rust examples, compiled as doctests so that they stay true.
#[cfg(all(doctest, feature = "tokio", feature = "deflate"))]
#[doc = include_str!("../../../README.md")]
struct ReadmeExamples;
