//! The WebSocket protocol as a sans-I/O state machine (RFC 6455).
//!
//! Nothing here touches a socket, a clock or a thread: [`Connection`] takes bytes and gives
//! messages, [`handshake`] builds and checks the opening handshake. The blocking client (and any
//! other driver) moves bytes between these and a transport.

pub(crate) mod buffer;
pub mod close;
pub mod connection;
mod copy;
#[cfg(feature = "deflate")]
pub mod deflate;
pub mod frame;
pub mod handshake;
pub mod keepalive;
pub mod mask;
pub mod message;
mod random;
pub(crate) mod redact;
pub mod retry_after;
pub mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use connection::{Config, Connection, Role, State};
pub use keepalive::Keepalive;
pub use message::{Message, MessagePart, MessageRef, Utf8Bytes};
