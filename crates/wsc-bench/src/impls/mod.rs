//! The clients under test, each behind the same small interface, so that the scenarios are
//! written once and an adapter can change (for instance to a faster read API) on its own.
//!
//! The interface hands each received message to a closure as a borrowed slice: an adapter over
//! an API that returns owned messages borrows from them, one over a zero-copy API can pass its
//! buffer straight through.

pub mod fastwebsockets;
pub mod handshake;
pub mod raw;
pub mod tokio_tungstenite;
pub mod tungstenite;
pub mod wsc;
pub mod wsc_async;
pub mod yawc;

use bytes::Bytes;

/// Any error, with its message.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// Results of the adapters and scenarios.
pub type Result<T> = std::result::Result<T, Error>;

/// An error from a message.
pub fn err(msg: impl Into<String>) -> Error {
    msg.into().into()
}

/// The kind of a data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Binary,
}

/// What the scenario asks of the connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Opts {
    /// Offer permessage-deflate (the `compressed` scenario); otherwise no compression.
    pub compression: bool,
}

/// Limits raised where a library's default would reject the 16 MiB message of `large`
/// (yawc: 1 MiB by default). 1 GiB: far above anything the scenarios send.
pub const BIG_LIMIT: usize = 1 << 30;

/// A blocking client: one thread, blocking reads and writes.
pub trait SyncClient: Sized {
    /// Connects to `ws://{addr}{path}` (TCP_NODELAY on) and completes the opening handshake.
    fn connect(addr: &str, path: &str, opts: &Opts) -> Result<Self>;
    /// The next data message, handed to `f`; control frames are skipped (pings are answered
    /// as the library does by itself). `None` when the server closed (its close frame came).
    fn recv<R>(&mut self, f: impl FnOnce(Kind, &[u8]) -> R) -> Result<Option<R>>;
    /// Sends a data message (`Text` payloads are valid UTF-8) and flushes it.
    fn send(&mut self, kind: Kind, data: &Bytes) -> Result<()>;
    /// Client-initiated closing handshake: send close 1000, wait for the server's close.
    fn close(self) -> Result<()>;
    /// After `recv` returned `None`: finish the server-initiated close (the reply goes out)
    /// and let go of the connection.
    fn finish(self) -> Result<()>;
}

/// An async client on tokio (driven by a current-thread runtime).
#[allow(async_fn_in_trait)]
pub trait AsyncClient: Sized {
    /// See [`SyncClient::connect`].
    async fn connect(addr: &str, path: &str, opts: &Opts) -> Result<Self>;
    /// See [`SyncClient::recv`].
    async fn recv<R>(&mut self, f: impl FnOnce(Kind, &[u8]) -> R) -> Result<Option<R>>;
    /// See [`SyncClient::send`].
    async fn send(&mut self, kind: Kind, data: &Bytes) -> Result<()>;
    /// See [`SyncClient::close`].
    async fn close(self) -> Result<()>;
    /// See [`SyncClient::finish`].
    async fn finish(self) -> Result<()>;
}
