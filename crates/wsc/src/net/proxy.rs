//! Proxies: what a proxy is ([`Proxy`]), where it comes from ([`ProxyConfig`]: the
//! environment by default, as curl and most HTTP clients do), and how tunnelling through one
//! fails ([`ProxyError`]).
//!
//! Two kinds are supported: HTTP proxies, through which the connection is tunnelled with
//! `CONNECT host:port` (RFC 9110 section 9.3.6), and SOCKS5 proxies (RFC 1928, with the
//! user name/password authentication of RFC 1929). TLS to the proxy itself (`https://`
//! proxies) is not supported; TLS to the WebSocket server (`wss://`) works through either
//! kind, end to end.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use crate::url::percent_decode;

/// The protocol spoken to a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyKind {
    /// An HTTP proxy, asked for a tunnel with `CONNECT` (`http://` proxy URLs).
    Http,
    /// A SOCKS5 proxy (`socks5://` and `socks5h://` proxy URLs).
    Socks5,
}

/// A proxy to tunnel connections through.
///
/// Build one from a URL with [`Proxy::parse`] (`http://user:pass@proxy:3128`,
/// `socks5h://127.0.0.1:1080`, ...) or with [`Proxy::http`] / [`Proxy::socks5`], and hand it
/// to a client as [`ProxyConfig::Explicit`]. Its `Debug` output and [`Proxy::display_name`]
/// never show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    kind: ProxyKind,
    /// Lowercase; an IPv6 literal without brackets.
    host: String,
    port: u16,
    credentials: Option<(String, String)>,
    /// SOCKS5 only: whether the proxy resolves the server's name (`socks5h://`).
    remote_dns: bool,
}

/// The port of an `http://` proxy URL without one: the scheme's own port. (curl assumes 1080
/// for every proxy scheme; a bare `host` in wsc follows the URL's scheme instead.)
const DEFAULT_HTTP_PORT: u16 = 80;

/// The port of a `socks5://` or `socks5h://` proxy URL without one (the SOCKS port, as in
/// curl).
const DEFAULT_SOCKS5_PORT: u16 = 1080;

impl Proxy {
    /// An HTTP proxy at `host:port`, asked for tunnels with `CONNECT`. An IPv6 literal may
    /// be given with or without brackets.
    pub fn http(host: impl Into<String>, port: u16) -> Proxy {
        Proxy::new(ProxyKind::Http, host.into(), port, true)
    }

    /// A SOCKS5 proxy at `host:port`. The server's host name is sent to the proxy for it to
    /// resolve (as `socks5h://`), which is what a proxy that sits in front of a private
    /// network needs; [`Proxy::remote_dns`]`(false)` resolves it locally instead.
    pub fn socks5(host: impl Into<String>, port: u16) -> Proxy {
        Proxy::new(ProxyKind::Socks5, host.into(), port, true)
    }

    fn new(kind: ProxyKind, host: String, port: u16, remote_dns: bool) -> Proxy {
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&host)
            .to_ascii_lowercase();
        Proxy {
            kind,
            host,
            port,
            credentials: None,
            remote_dns,
        }
    }

    /// Authenticates with this user name and password: HTTP Basic (`Proxy-Authorization`)
    /// for an HTTP proxy, RFC 1929 for SOCKS5 (at most 255 bytes each).
    #[must_use]
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Proxy {
        self.credentials = Some((user.into(), password.into()));
        self
    }

    /// SOCKS5: whether the proxy resolves the server's host name (`true`, `socks5h://`) or
    /// wsc resolves it and sends the address (`false`, `socks5://`). HTTP proxies always
    /// resolve the name themselves; this setting does not apply to them.
    #[must_use]
    pub fn remote_dns(mut self, remote: bool) -> Proxy {
        self.remote_dns = remote;
        self
    }

    /// Parses a proxy URL:
    ///
    /// - `http://[user:password@]host[:port][/]`: an HTTP proxy (port 80 by default);
    /// - `socks5://...`: a SOCKS5 proxy, the server's name resolved locally (port 1080 by
    ///   default);
    /// - `socks5h://...`: a SOCKS5 proxy that resolves the server's name itself;
    /// - `host:port` (no scheme): an HTTP proxy, as in `http_proxy=proxy.corp:3128`.
    ///
    /// The user name and password are percent-decoded (`%40` for `@`, `%3A` for `:`). IPv6
    /// literals go in brackets. `https://` proxies (TLS to the proxy) are not supported.
    pub fn parse(url: &str) -> Result<Proxy, ProxyError> {
        let url = url.trim();
        if url.is_empty() {
            return Err(ProxyError::InvalidUrl("the proxy URL is empty".into()));
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ProxyError::InvalidUrl(
                "whitespace or control character in the proxy URL".into(),
            ));
        }
        let (scheme, rest) = match url.split_once("://") {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
            None => ("http".to_string(), url),
        };
        let (kind, remote_dns, default_port) = match scheme.as_str() {
            "http" => (ProxyKind::Http, true, DEFAULT_HTTP_PORT),
            "socks5" => (ProxyKind::Socks5, false, DEFAULT_SOCKS5_PORT),
            "socks5h" => (ProxyKind::Socks5, true, DEFAULT_SOCKS5_PORT),
            "https" => {
                return Err(ProxyError::Unsupported(
                    "https:// proxies (TLS to the proxy) are not supported; most proxies \
                     that tunnel TLS take plain http:// for the CONNECT request"
                        .into(),
                ))
            }
            "socks4" | "socks4a" => {
                return Err(ProxyError::Unsupported(format!(
                    "{scheme}:// proxies are not supported; use socks5:// or socks5h://"
                )))
            }
            _ => {
                return Err(ProxyError::Unsupported(format!(
                    "proxy scheme {scheme:?}; use http://, socks5:// or socks5h://"
                )))
            }
        };
        // Everything up to the first '/' is the authority; only an empty path is allowed.
        let (authority, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
        if !path.is_empty() && path != "/" {
            // A '/', '?' or '#' before an '@': most likely in the password, not encoded.
            let hint = match path.contains('@') {
                true => {
                    "; a '/', '?' or '#' in the user name or password must be \
                         percent-encoded (%2F, %3F, %23)"
                }
                false => "",
            };
            return Err(ProxyError::InvalidUrl(format!(
                "a proxy URL has no path, query or fragment (just scheme://host:port){hint}"
            )));
        }
        let (credentials, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => {
                let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                let decoded = percent_decode(user).zip(percent_decode(password));
                let credentials = decoded.ok_or_else(|| {
                    ProxyError::InvalidUrl(
                        "the proxy URL's user name or password decodes to bytes that are not \
                         UTF-8; percent-encode UTF-8 text"
                            .into(),
                    )
                })?;
                (Some(credentials), hostport)
            }
            None => (None, authority),
        };
        let (host, port) = split_host_port(hostport)?;
        if host.is_empty() {
            return Err(ProxyError::InvalidUrl(
                "the proxy URL has no host name".into(),
            ));
        }
        let valid = |c: char| c.is_ascii_alphanumeric() || "-._~%".contains(c) || !c.is_ascii();
        if !host.contains(':') && !host.chars().all(valid) {
            return Err(ProxyError::InvalidUrl(format!(
                "invalid proxy host name {host:?}"
            )));
        }
        let port = match port {
            None | Some("") => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
                // Quoted only if it is digits: `http://user:password` (the host forgotten)
                // has the password where the port would be.
                _ if p.bytes().all(|b| b.is_ascii_digit()) => {
                    return Err(ProxyError::InvalidUrl(format!(
                        "invalid proxy port {p:?} (1 to 65535)"
                    )))
                }
                _ => {
                    return Err(ProxyError::InvalidUrl(
                        "invalid proxy port: not a number from 1 to 65535 (a URL with \
                         user:password needs @host after it)"
                            .into(),
                    ))
                }
            },
        };
        Ok(Proxy {
            kind,
            host: host.to_ascii_lowercase(),
            port,
            credentials,
            remote_dns,
        })
    }

    /// The protocol spoken to the proxy.
    pub fn kind(&self) -> ProxyKind {
        self.kind
    }

    /// The proxy's host: a name, or an IP address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user name it authenticates with, if any (the password is not exposed).
    pub fn user(&self) -> Option<&str> {
        self.credentials.as_ref().map(|(user, _)| user.as_str())
    }

    /// SOCKS5: whether the proxy resolves the server's name (see [`Proxy::remote_dns`]).
    pub fn is_remote_dns(&self) -> bool {
        self.remote_dns
    }

    /// The user name and password, for the tunnel drivers.
    pub(crate) fn auth(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(user, password)| (user.as_str(), password.as_str()))
    }

    /// `scheme://host:port`, without credentials: how the proxy is named in errors and logs,
    /// where a password must never appear.
    pub fn display_name(&self) -> String {
        let scheme = match (self.kind, self.remote_dns) {
            (ProxyKind::Http, _) => "http",
            (ProxyKind::Socks5, false) => "socks5",
            (ProxyKind::Socks5, true) => "socks5h",
        };
        format!("{scheme}://{}", host_port(&self.host, self.port))
    }
}

impl fmt::Debug for Proxy {
    // By hand, so that the password never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user())
            .field(
                "password",
                &self
                    .credentials
                    .as_ref()
                    .map(|_| crate::proto::redact::REDACTED),
            )
            .field("remote_dns", &self.remote_dns)
            .finish()
    }
}

impl std::str::FromStr for Proxy {
    type Err = ProxyError;
    fn from_str(s: &str) -> Result<Proxy, ProxyError> {
        Proxy::parse(s)
    }
}

/// `host:port`, with brackets around an IPv6 literal: how targets and proxies are named in
/// requests and errors.
pub(crate) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Splits `host[:port]` or `[v6][:port]`; the host comes back without brackets.
fn split_host_port(hostport: &str) -> Result<(&str, Option<&str>), ProxyError> {
    if let Some(v6) = hostport.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or_else(|| {
            ProxyError::InvalidUrl(format!("unclosed '[' in proxy host {hostport:?}"))
        })?;
        if addr.parse::<Ipv6Addr>().is_err() {
            return Err(ProxyError::InvalidUrl(format!(
                "invalid IPv6 address {addr:?} in the proxy URL"
            )));
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| {
                ProxyError::InvalidUrl(format!("invalid proxy host {hostport:?}"))
            })?),
        };
        return Ok((addr, port));
    }
    match hostport.rsplit_once(':') {
        Some((h, _)) if h.contains(':') => Err(ProxyError::InvalidUrl(format!(
            "invalid proxy host {hostport:?} (IPv6 addresses go in brackets: [::1]:1080)"
        ))),
        Some((h, p)) => Ok((h, Some(p))),
        None => Ok((hostport, None)),
    }
}

/// Where a connection's proxy comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ProxyConfig {
    /// From the environment, read when each connection is opened, as curl does:
    /// `wss_proxy` / `WSS_PROXY`, then `https_proxy` / `HTTPS_PROXY` for `wss://`;
    /// `ws_proxy` / `WS_PROXY`, then `http_proxy` / `HTTP_PROXY` for `ws://`; then
    /// `all_proxy` / `ALL_PROXY`. Hosts listed in `no_proxy` / `NO_PROXY` are reached
    /// directly, and so are loopback hosts (`localhost`, `127.0.0.0/8`, `::1`). Empty
    /// variables count as unset; `HTTP_PROXY` is ignored when `REQUEST_METHOD` is set (a CGI
    /// program, where a request's `Proxy:` header would arrive as `HTTP_PROXY`). A variable
    /// that is set but not UTF-8 is an error, as an unparsable one is.
    #[default]
    FromEnv,
    /// No proxy, whatever the environment says.
    None,
    /// This proxy, for every host (`no_proxy` does not apply).
    Explicit(Proxy),
}

impl From<Proxy> for ProxyConfig {
    fn from(proxy: Proxy) -> ProxyConfig {
        ProxyConfig::Explicit(proxy)
    }
}

impl ProxyConfig {
    /// The proxy to use for a connection to `host:port` (`secure`: `wss://`), or `None` to
    /// connect directly. An unparsable proxy variable is an error rather than a silent direct
    /// connection, which could leak traffic the user meant to send through the proxy.
    pub(crate) fn resolve(
        &self,
        secure: bool,
        host: &str,
        port: u16,
    ) -> Result<Option<Proxy>, ProxyError> {
        match self {
            ProxyConfig::FromEnv => {
                if let Some(name) = ENV_VARS
                    .into_iter()
                    .find(|name| std::env::var_os(name).is_some_and(|v| v.to_str().is_none()))
                {
                    return Err(ProxyError::InvalidUrl(format!(
                        "environment variable {name} is not UTF-8 text"
                    )));
                }
                from_env(secure, host, port, |name| std::env::var(name).ok())
            }
            ProxyConfig::None => Ok(None),
            ProxyConfig::Explicit(proxy) => Ok(Some(proxy.clone())),
        }
    }
}

/// Every variable [`from_env`] may read.
const ENV_VARS: [&str; 13] = [
    "wss_proxy",
    "WSS_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "ws_proxy",
    "WS_PROXY",
    "http_proxy",
    "HTTP_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
    "REQUEST_METHOD",
];

/// The proxy the environment sets for `host:port`, with the variables read through `var` (so
/// that tests need not touch the process environment). See [`ProxyConfig::FromEnv`] for the
/// rules.
pub(crate) fn from_env(
    secure: bool,
    host: &str,
    port: u16,
    var: impl Fn(&str) -> Option<String>,
) -> Result<Option<Proxy>, ProxyError> {
    let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    let cgi = get("REQUEST_METHOD").is_some();
    let scheme_vars: [&str; 4] = if secure {
        ["wss_proxy", "WSS_PROXY", "https_proxy", "HTTPS_PROXY"]
    } else {
        ["ws_proxy", "WS_PROXY", "http_proxy", "HTTP_PROXY"]
    };
    let found = scheme_vars
        .into_iter()
        .filter(|name| !(cgi && *name == "HTTP_PROXY"))
        .chain(["all_proxy", "ALL_PROXY"])
        .find_map(|name| get(name).map(|value| (name, value)));
    let Some((name, value)) = found else {
        return Ok(None);
    };
    if is_loopback(host) {
        return Ok(None);
    }
    if let Some(list) = get("no_proxy").or_else(|| get("NO_PROXY")) {
        if no_proxy_matches(&list, host, port) {
            return Ok(None);
        }
    }
    Proxy::parse(&value).map(Some).map_err(|e| match e {
        ProxyError::InvalidUrl(why) | ProxyError::Unsupported(why) => {
            ProxyError::InvalidUrl(format!("environment variable {name}: {why}"))
        }
        other => other,
    })
}

/// Whether `host` is this machine's loopback (never sent through a proxy from the
/// environment: a proxy elsewhere would reach its own loopback, not ours).
fn is_loopback(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    // An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) is the IPv4 one.
    unbracket(&host)
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// `s` without the brackets of `[v6]`.
fn unbracket(s: &str) -> &str {
    s.strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(s)
}

/// Whether a `no_proxy` list names `host:port`. Entries are separated by commas and/or
/// whitespace:
///
/// - `*` matches every host;
/// - `example.com`, `.example.com` and `*.example.com` match example.com and its subdomains
///   (case-insensitively, trailing dots ignored);
/// - an IP address matches that address (IPv6 with or without brackets);
/// - a CIDR block (`10.0.0.0/8`, `fd00::/8`) matches IP addresses inside it (host names are
///   not resolved to check);
/// - `entry:port` (`[v6]:port` for IPv6) matches only that port.
///
/// Malformed entries (a bad port or prefix length) match nothing.
pub(crate) fn no_proxy_matches(list: &str, host: &str, port: u16) -> bool {
    let host = unbracket(host.trim_end_matches('.')).to_ascii_lowercase();
    // An IPv4-mapped IPv6 address is checked as the IPv4 one (against `10.0.0.0/8`, say).
    let host_ip = host.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
    list.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|entry| !entry.is_empty())
        .any(|entry| entry_matches(entry, &host, host_ip, port))
}

/// One `no_proxy` entry against a lowercase host (`ip`: the host as an address, if it is one).
fn entry_matches(entry: &str, host: &str, ip: Option<IpAddr>, port: u16) -> bool {
    if entry == "*" {
        return true;
    }
    // Split off a port: `[v6]:port`, `name:port`, `v4:port`; a bare IPv6 address (two or
    // more colons) has none.
    let (name, entry_port) = if let Some(v6) = entry.strip_prefix('[') {
        match v6.split_once(']') {
            Some((addr, "")) => (addr, None),
            Some((addr, after)) => match after.strip_prefix(':') {
                Some(p) => (addr, Some(p)),
                None => return false,
            },
            None => return false,
        }
    } else if entry.matches(':').count() == 1 {
        match entry.split_once(':') {
            Some((name, p)) => (name, Some(p)),
            None => (entry, None),
        }
    } else {
        (entry, None)
    };
    if let Some(p) = entry_port {
        match p.parse::<u16>() {
            Ok(p) if p == port => {}
            _ => return false,
        }
    }
    if let Some((net, bits)) = name.split_once('/') {
        let (Ok(net), Ok(bits), Some(ip)) = (net.parse::<IpAddr>(), bits.parse::<u8>(), ip) else {
            return false;
        };
        return in_cidr(ip, net, bits);
    }
    if let Ok(entry_ip) = name.parse::<IpAddr>() {
        return ip == Some(entry_ip);
    }
    if ip.is_some() {
        // An address is matched by address and CIDR entries only, never as a domain suffix.
        return false;
    }
    let domain = name
        .trim_start_matches('*')
        .trim_start_matches('.')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if domain.is_empty() {
        return false;
    }
    host == domain
        || (host.len() > domain.len()
            && host.ends_with(&domain)
            && host.as_bytes()[host.len() - domain.len() - 1] == b'.')
}

/// Whether `ip` is in `net/bits` (the families must agree; a prefix longer than the address
/// matches nothing).
fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    fn prefix_eq(a: u128, b: u128, bits: u8, width: u8) -> bool {
        if bits > width {
            return false;
        }
        if bits == 0 {
            return true;
        }
        let shift = u32::from(width - bits);
        (a >> shift) == (b >> shift)
    }
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            prefix_eq(u32::from(a).into(), u32::from(n).into(), bits, 32)
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => prefix_eq(u128::from(a), u128::from(n), bits, 128),
        _ => false,
    }
}

/// How opening a tunnel through a proxy failed, or why a proxy cannot be used. Shown after
/// `proxy scheme://host:port: ` in [`Error::Proxy`](crate::Error::Proxy).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyError {
    /// The proxy URL is malformed (for one from the environment, the message names the
    /// variable).
    InvalidUrl(String),
    /// A proxy kind or feature wsc does not implement (`https://` proxies, SOCKS4, ...).
    Unsupported(String),
    /// The HTTP proxy answered `CONNECT` with a status other than 2xx.
    HttpStatus {
        /// The server the tunnel was for, as `host:port`.
        target: String,
        /// The status code.
        status: u16,
        /// The reason phrase (shortened if long).
        reason: String,
    },
    /// The proxy's answer is not valid for the protocol (malformed or oversized, or data
    /// after a successful answer, before the client has sent anything through the tunnel).
    BadResponse(String),
    /// The SOCKS5 proxy accepted none of the authentication methods offered.
    Socks5NoAcceptableAuth {
        /// Whether user name/password authentication was among them.
        offered_credentials: bool,
    },
    /// The SOCKS5 proxy rejected the user name and password.
    Socks5AuthFailed,
    /// The SOCKS5 proxy could not open the connection to the server (RFC 1928 section 6).
    Socks5Reply {
        /// The server the tunnel was for, as `host:port`.
        target: String,
        /// The reply code (`REP`), never 0.
        code: u8,
    },
    /// The proxy closed the connection before the tunnel was open.
    ClosedEarly,
    /// The SOCKS5 proxy closed the connection right after our user name and password,
    /// instead of answering them: how some proxies reject credentials.
    ClosedAfterCredentials,
    /// A SOCKS5 user name or password is longer than the protocol's 255 bytes.
    CredentialsTooLong,
}

impl ProxyError {
    /// Whether another attempt could succeed: the proxy hung up, or it (or the server behind
    /// it) is failing or unreachable for now (HTTP 5xx, 408, 429; SOCKS5 general failure,
    /// unreachable, refused, TTL expired). Configuration mistakes and refusals (bad URL,
    /// credentials, 403/407, a ruleset that forbids the destination, a malformed answer) are
    /// not retried.
    pub fn is_retryable(&self) -> bool {
        match self {
            // Credentials are likely wrong, but a proxy restarting looks the same.
            ProxyError::ClosedEarly | ProxyError::ClosedAfterCredentials => true,
            ProxyError::HttpStatus { status, .. } => {
                *status >= 500 || *status == 408 || *status == 429
            }
            ProxyError::Socks5Reply { code, .. } => matches!(code, 0x01 | 0x03..=0x06),
            _ => false,
        }
    }

    /// The meaning of a SOCKS5 reply code (RFC 1928 section 6).
    fn socks5_reply_meaning(code: u8) -> &'static str {
        match code {
            0x01 => "general SOCKS server failure",
            0x02 => "connection not allowed by the proxy's rules",
            0x03 => "network unreachable",
            0x04 => "host unreachable",
            0x05 => "connection refused",
            0x06 => "TTL expired",
            0x07 => "command not supported",
            0x08 => "address type not supported",
            _ => "unknown reply code",
        }
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::InvalidUrl(why) => write!(f, "invalid proxy URL: {why}"),
            ProxyError::Unsupported(what) => write!(f, "not supported: {what}"),
            ProxyError::HttpStatus {
                target,
                status,
                reason,
            } => {
                write!(f, "refused the tunnel to {target} with {status}")?;
                if !reason.is_empty() {
                    write!(f, " {reason}")?;
                }
                match status {
                    // (Some proxies, tinyproxy among them, answer bad credentials so.)
                    401 | 407 => f.write_str(
                        " (the proxy requires credentials, or rejected the ones given: \
                         http://user:password@host:port)",
                    ),
                    403 => f.write_str(" (the proxy's rules forbid this destination or port)"),
                    _ => Ok(()),
                }
            }
            ProxyError::BadResponse(why) => write!(f, "bad response: {why}"),
            ProxyError::Socks5NoAcceptableAuth {
                offered_credentials: false,
            } => f.write_str(
                "accepts no connection without authentication; give a user name and \
                 password (socks5h://user:password@host:port)",
            ),
            ProxyError::Socks5NoAcceptableAuth {
                offered_credentials: true,
            } => f.write_str(
                "accepts neither no authentication nor user name/password \
                 (it may require GSSAPI, which wsc does not support)",
            ),
            ProxyError::Socks5AuthFailed => f.write_str("rejected the user name and password"),
            ProxyError::Socks5Reply { target, code } => write!(
                f,
                "could not open the tunnel to {target}: {} (SOCKS5 reply {code:#04x})",
                ProxyError::socks5_reply_meaning(*code)
            ),
            ProxyError::ClosedEarly => {
                f.write_str("closed the connection before the tunnel was open")
            }
            ProxyError::ClosedAfterCredentials => f.write_str(
                "closed the connection right after our user name and password, instead of \
                 answering them: it likely rejected them (check those of the proxy URL)",
            ),
            ProxyError::CredentialsTooLong => f.write_str(
                "SOCKS5 allows at most 255 bytes for the user name and for the password",
            ),
        }
    }
}

impl std::error::Error for ProxyError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_brackets_ipv6() {
        assert_eq!(host_port("::1", 80), "[::1]:80");
        assert_eq!(host_port("example.com", 80), "example.com:80");
    }
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn parses_http_socks5_and_bare_forms() {
        let p = Proxy::parse("http://Proxy.Corp:3128/").unwrap();
        assert_eq!(p, Proxy::http("proxy.corp", 3128));
        assert_eq!(p.kind(), ProxyKind::Http);
        assert_eq!((p.host(), p.port(), p.user()), ("proxy.corp", 3128, None));

        assert_eq!(Proxy::parse("http://proxy").unwrap().port(), 80);
        assert_eq!(
            Proxy::parse("proxy.corp:8080").unwrap(),
            Proxy::http("proxy.corp", 8080)
        );
        assert_eq!(Proxy::parse("proxy.corp").unwrap().port(), 80);

        let p = Proxy::parse("socks5://127.0.0.1").unwrap();
        assert_eq!(p, Proxy::socks5("127.0.0.1", 1080).remote_dns(false));
        assert!(!p.is_remote_dns());
        let p = Proxy::parse("SOCKS5H://[::1]:9050").unwrap();
        assert_eq!(p, Proxy::socks5("[::1]", 9050));
        assert_eq!(p.host(), "::1");
        assert!(p.is_remote_dns());
    }

    #[test]
    fn a_raw_slash_or_hash_in_a_password_is_said_to_need_encoding() {
        for url in [
            "http://u:p#zz9@h:1",
            "socks5://u:p/zz9@h",
            "http://u:p?zz9@h:1/",
        ] {
            let err = Proxy::parse(url).unwrap_err().to_string();
            assert!(
                err.contains("must be percent-encoded (%2F, %3F, %23)"),
                "{err}"
            );
            assert!(!err.contains("zz9"), "{err}");
        }
        let err = Proxy::parse("http://h:1/path").unwrap_err().to_string();
        assert!(!err.contains("percent-encoded"), "{err}");
    }

    #[test]
    fn parses_and_decodes_credentials() {
        let p = Proxy::parse("http://us%40er:p%3Ass%25@h:1/").unwrap();
        assert_eq!(p.auth(), Some(("us@er", "p:ss%")));
        assert_eq!(p, Proxy::http("h", 1).credentials("us@er", "p:ss%"));
        let p = Proxy::parse("socks5h://user@h").unwrap();
        assert_eq!(p.auth(), Some(("user", "")));
        // The last '@' separates the host; a raw '@' in the password still works.
        let p = Proxy::parse("http://u:p@ss@h:1").unwrap();
        assert_eq!((p.auth(), p.host()), (Some(("u", "p@ss")), "h"));
        let p = Proxy::parse("http://u:%E2%82%AC@h:1").unwrap();
        assert_eq!(p.auth(), Some(("u", "\u{20ac}")));
        // Bytes that are not UTF-8 (Latin-1 here) are refused, not sent as U+FFFD; the
        // message does not repeat the password.
        let err = Proxy::parse("http://u:s%E9cret@h:1").unwrap_err();
        assert!(
            matches!(&err, ProxyError::InvalidUrl(m) if m.contains("UTF-8") && !m.contains("cret")),
            "{err}"
        );
    }

    #[test]
    fn rejects_bad_proxy_urls() {
        let invalid = [
            "",
            "http://",
            "http://:3128",
            "http://u:p@",
            "http://h:0",
            "http://h:65536",
            "http://h:x",
            "http://h:+1",
            "http://[::1",
            "http://[zz]:1",
            "http://::1:80",
            "http://h/path",
            "http://h?x",
            "http://h <x>",
            "http://h<x>",
        ];
        for url in invalid {
            assert!(
                matches!(Proxy::parse(url), Err(ProxyError::InvalidUrl(_))),
                "{url}: {:?}",
                Proxy::parse(url)
            );
        }
        for url in ["https://h:443", "socks4://h", "ftp://h"] {
            assert!(
                matches!(Proxy::parse(url), Err(ProxyError::Unsupported(_))),
                "{url}"
            );
        }
        let msg = Proxy::parse("https://h").unwrap_err().to_string();
        assert!(msg.contains("https:// proxies"), "{msg}");
    }

    #[test]
    fn names_and_debug_never_show_the_password() {
        let p = Proxy::parse("socks5h://alice:hunter2@[2001:db8::1]:1080").unwrap();
        assert_eq!(p.display_name(), "socks5h://[2001:db8::1]:1080");
        let debug = format!("{p:?}");
        assert!(
            !debug.contains("hunter2") && debug.contains("alice"),
            "{debug}"
        );
        assert_eq!(
            Proxy::parse("socks5://h").unwrap().display_name(),
            "socks5://h:1080"
        );
        assert_eq!(
            Proxy::http("h", 3128).credentials("a", "b").display_name(),
            "http://h:3128"
        );
    }

    #[test]
    fn env_picks_the_variable_for_the_scheme() {
        let vars = env(&[
            ("http_proxy", "http://plain:1"),
            ("HTTPS_PROXY", "http://secure:2"),
            ("all_proxy", "socks5h://all:3"),
        ]);
        let get = |secure| from_env(secure, "example.com", 443, &vars).unwrap();
        assert_eq!(get(false), Some(Proxy::http("plain", 1)));
        assert_eq!(get(true), Some(Proxy::http("secure", 2)));

        // Lowercase first; empty counts as unset; ALL_PROXY as the fallback.
        let vars = env(&[
            ("https_proxy", ""),
            ("HTTPS_PROXY", " "),
            ("http_proxy", "h:1"),
            ("ALL_PROXY", "socks5://all:3"),
        ]);
        let got = from_env(true, "example.com", 443, &vars).unwrap();
        assert_eq!(got, Some(Proxy::socks5("all", 3).remote_dns(false)));
        let vars = env(&[("http_proxy", "lower:1"), ("HTTP_PROXY", "upper:2")]);
        let got = from_env(false, "example.com", 80, &vars).unwrap();
        assert_eq!(got, Some(Proxy::http("lower", 1)));

        assert_eq!(from_env(false, "example.com", 80, env(&[])).unwrap(), None);

        // ws_proxy / wss_proxy first, as curl reads them for ws:// and wss://.
        let vars = env(&[
            ("WS_PROXY", "ws-proxy:1"),
            ("http_proxy", "http-proxy:2"),
            ("wss_proxy", "wss-proxy:3"),
            ("https_proxy", "https-proxy:4"),
        ]);
        assert_eq!(get_with(&vars, false), Some(Proxy::http("ws-proxy", 1)));
        assert_eq!(get_with(&vars, true), Some(Proxy::http("wss-proxy", 3)));
    }

    fn get_with(vars: &impl Fn(&str) -> Option<String>, secure: bool) -> Option<Proxy> {
        from_env(secure, "example.com", 443, vars).unwrap()
    }

    #[test]
    fn a_password_in_place_of_the_port_is_not_quoted_in_the_error() {
        // `http://alice:s3cret` (the host forgotten) reads the password as the port.
        let msg = Proxy::parse("http://alice:s3cret").unwrap_err().to_string();
        assert!(!msg.contains("s3cret") && msg.contains("port"), "{msg}");
        let msg = Proxy::parse("http://h:99999").unwrap_err().to_string();
        assert!(msg.contains("\"99999\""), "{msg}");
    }

    #[test]
    fn env_ignores_uppercase_http_proxy_under_cgi() {
        let vars = env(&[("HTTP_PROXY", "evil:1"), ("REQUEST_METHOD", "GET")]);
        assert_eq!(from_env(false, "example.com", 80, &vars).unwrap(), None);
        let vars = env(&[("http_proxy", "ok:1"), ("REQUEST_METHOD", "GET")]);
        assert_eq!(
            from_env(false, "example.com", 80, &vars).unwrap(),
            Some(Proxy::http("ok", 1))
        );
    }

    #[test]
    fn env_no_proxy_and_loopback_bypass() {
        let vars = env(&[
            ("https_proxy", "p:1"),
            ("no_proxy", "internal.corp"),
            ("NO_PROXY", "example.com"),
        ]);
        assert_eq!(from_env(true, "a.internal.corp", 443, &vars).unwrap(), None);
        // The lowercase list wins over the uppercase one.
        assert!(from_env(true, "example.com", 443, &vars).unwrap().is_some());
        let vars = env(&[("https_proxy", "p:1"), ("NO_PROXY", "example.com")]);
        assert_eq!(from_env(true, "example.com", 443, &vars).unwrap(), None);

        for host in [
            "localhost",
            "LocalHost.",
            "app.localhost",
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "::ffff:127.0.0.1",
            "[::ffff:127.0.0.1]",
        ] {
            assert_eq!(from_env(true, host, 443, &vars).unwrap(), None, "{host}");
        }
        // An IPv4-mapped IPv6 address is matched as the IPv4 one by a CIDR entry too.
        let vars = env(&[("https_proxy", "p:1"), ("no_proxy", "10.0.0.0/8")]);
        assert_eq!(from_env(true, "::ffff:10.1.2.3", 443, &vars).unwrap(), None);
        assert!(from_env(true, "::ffff:11.1.2.3", 443, &vars)
            .unwrap()
            .is_some());
        // Other spellings of IPv4 addresses (which the resolver reads as addresses too) are
        // the addresses, as the URL parser makes them.
        let vars = env(&[("https_proxy", "p:1"), ("no_proxy", "10.0.0.0/8")]);
        for url in ["wss://127.1/", "wss://0x7f000001/", "wss://10.258/"] {
            let url = crate::url::WsUrl::parse(url).unwrap();
            assert_eq!(
                from_env(true, &url.host, 443, &vars).unwrap(),
                None,
                "{url}"
            );
        }
    }

    #[test]
    fn env_bad_url_names_the_variable() {
        let vars = env(&[("https_proxy", "http://h:bad")]);
        let err = from_env(true, "example.com", 443, &vars).unwrap_err();
        assert!(
            matches!(&err, ProxyError::InvalidUrl(m) if m.contains("https_proxy") && m.contains("port")),
            "{err}"
        );
        let vars = env(&[("ALL_PROXY", "https://h")]);
        let err = from_env(false, "example.com", 80, &vars).unwrap_err();
        assert!(err.to_string().contains("ALL_PROXY"), "{err}");
        // ... but not when the host is excluded anyway.
        let vars = env(&[("https_proxy", "http://h:bad"), ("no_proxy", "*")]);
        assert_eq!(from_env(true, "example.com", 443, &vars).unwrap(), None);
    }

    #[test]
    fn resolve_explicit_and_none() {
        let p = Proxy::http("h", 1);
        let got = ProxyConfig::Explicit(p.clone()).resolve(true, "localhost", 1);
        assert_eq!(got.unwrap(), Some(p));
        assert_eq!(ProxyConfig::None.resolve(true, "x", 1).unwrap(), None);
    }

    #[test]
    fn no_proxy_star_matches_everything() {
        assert!(no_proxy_matches("*", "example.com", 443));
        assert!(no_proxy_matches("a.b, *", "10.1.2.3", 1));
        assert!(!no_proxy_matches("", "example.com", 443));
        assert!(!no_proxy_matches(" , ", "example.com", 443));
    }

    #[test]
    fn no_proxy_domains_match_subdomains() {
        for entry in [
            "example.com",
            ".example.com",
            "*.example.com",
            "EXAMPLE.COM.",
        ] {
            for host in [
                "example.com",
                "a.example.com",
                "A.B.Example.Com.",
                "[example.com]",
            ] {
                assert!(no_proxy_matches(entry, host, 443), "{entry} {host}");
            }
            for host in ["notexample.com", "example.com.evil", "com", "example.org"] {
                assert!(!no_proxy_matches(entry, host, 443), "{entry} {host}");
            }
        }
        assert!(no_proxy_matches(
            "foo.org  example.com,bar",
            "x.example.com",
            1
        ));
    }

    #[test]
    fn no_proxy_ip_addresses_match_exactly() {
        assert!(no_proxy_matches("10.0.0.1", "10.0.0.1", 80));
        assert!(!no_proxy_matches("10.0.0.1", "10.0.0.10", 80));
        for entry in ["2001:db8::1", "[2001:db8::1]", "2001:DB8:0::1"] {
            for host in ["2001:db8::1", "[2001:db8::1]"] {
                assert!(no_proxy_matches(entry, host, 80), "{entry} {host}");
            }
            assert!(!no_proxy_matches(entry, "2001:db8::2", 80));
        }
        // An address entry is not a domain suffix.
        assert!(!no_proxy_matches("0.0.1", "10.0.0.1", 80));
    }

    #[test]
    fn no_proxy_cidr_blocks_match_ip_hosts() {
        assert!(no_proxy_matches("10.0.0.0/8", "10.200.3.4", 80));
        assert!(!no_proxy_matches("10.0.0.0/8", "11.0.0.1", 80));
        assert!(no_proxy_matches("192.168.1.0/24", "192.168.1.255", 80));
        assert!(!no_proxy_matches("192.168.1.0/24", "192.168.2.1", 80));
        assert!(no_proxy_matches("0.0.0.0/0", "8.8.8.8", 80));
        assert!(no_proxy_matches("::1/128", "::1", 80));
        assert!(no_proxy_matches("fd00::/8", "[fd12:3456::1]", 80));
        assert!(!no_proxy_matches("fd00::/8", "fe80::1", 80));
        // Families must agree; host names are not resolved; bad prefixes match nothing.
        assert!(!no_proxy_matches("0.0.0.0/0", "::1", 80));
        assert!(!no_proxy_matches("10.0.0.0/8", "ten.example", 80));
        assert!(!no_proxy_matches("10.0.0.0/33", "10.0.0.1", 80));
        assert!(!no_proxy_matches("10.0.0.0/x", "10.0.0.1", 80));
    }

    #[test]
    fn no_proxy_ports_restrict_entries() {
        assert!(no_proxy_matches("example.com:8080", "a.example.com", 8080));
        assert!(!no_proxy_matches("example.com:8080", "a.example.com", 443));
        assert!(no_proxy_matches("10.0.0.1:443", "10.0.0.1", 443));
        assert!(!no_proxy_matches("10.0.0.1:443", "10.0.0.1", 80));
        assert!(no_proxy_matches("[::1]:443", "::1", 443));
        assert!(!no_proxy_matches("[::1]:443", "::1", 80));
        assert!(!no_proxy_matches("example.com:bad", "example.com", 443));
        assert!(!no_proxy_matches("[::1]x", "::1", 443));
    }

    #[test]
    fn transient_failures_are_retryable() {
        let http = |status| ProxyError::HttpStatus {
            target: "h:1".into(),
            status,
            reason: String::new(),
        };
        let socks = |code| ProxyError::Socks5Reply {
            target: "h:1".into(),
            code,
        };
        for e in [
            ProxyError::ClosedEarly,
            http(502),
            http(503),
            http(429),
            socks(1),
            socks(5),
        ] {
            assert!(e.is_retryable(), "{e}");
        }
        for e in [
            http(403),
            http(407),
            socks(2),
            socks(7),
            ProxyError::Socks5AuthFailed,
            ProxyError::BadResponse("x".into()),
            ProxyError::InvalidUrl("x".into()),
        ] {
            assert!(!e.is_retryable(), "{e}");
        }
        assert_eq!(http(599).to_string(), "refused the tunnel to h:1 with 599");
    }

    #[test]
    fn error_messages_read_after_the_proxy_name() {
        let e = ProxyError::HttpStatus {
            target: "example.com:443".into(),
            status: 403,
            reason: "Forbidden".into(),
        };
        assert!(e
            .to_string()
            .starts_with("refused the tunnel to example.com:443 with 403 Forbidden"));
        let e = ProxyError::HttpStatus {
            target: "h:1".into(),
            status: 407,
            reason: "Proxy Authentication Required".into(),
        };
        assert!(e.to_string().contains("requires credentials"), "{e}");
        let e = ProxyError::HttpStatus {
            target: "h:1".into(),
            status: 401,
            reason: "Unauthorized".into(),
        };
        assert!(e.to_string().contains("requires credentials"), "{e}");
        let e = ProxyError::Socks5Reply {
            target: "h:1".into(),
            code: 5,
        };
        assert_eq!(
            e.to_string(),
            "could not open the tunnel to h:1: connection refused (SOCKS5 reply 0x05)"
        );
        for code in 1..=9u8 {
            let e = ProxyError::Socks5Reply {
                target: "h:1".into(),
                code,
            };
            assert!(!e.to_string().is_empty());
        }
    }
}
