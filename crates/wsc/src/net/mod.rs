//! Reaching the server: resolving and connecting (all addresses, IPv6 and IPv4 raced as in
//! Happy Eyeballs) and tunnelling through HTTP CONNECT or SOCKS5 proxies.

#[cfg(feature = "tokio")]
pub(crate) mod acked;
pub(crate) mod connect;
mod http_connect;
pub mod proxy;
mod socks5;
pub(crate) mod tunnel;

pub use proxy::{Proxy, ProxyConfig, ProxyError, ProxyKind};
