//! Proxy configuration (stub: being written).

/// A proxy to tunnel through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {}

/// Where a connection's proxy comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ProxyConfig {
    /// From the environment.
    #[default]
    FromEnv,
    /// No proxy.
    None,
    /// This proxy.
    Explicit(Proxy),
}

/// How a proxy failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyError {}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, _f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {}
    }
}

impl std::error::Error for ProxyError {}
