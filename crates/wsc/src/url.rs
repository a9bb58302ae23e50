//! WebSocket URLs (RFC 6455 section 3): `ws://` and `wss://`, with host, port, path and query.

use std::fmt::{self, Write as _};

mod ipv4;

use ipv4::Ipv4Host;

/// A parsed `ws://` or `wss://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// `wss://`: TLS.
    pub secure: bool,
    /// The host: a lowercase name, an IPv4 address in dotted decimal (whatever spelling the
    /// URL used: `127.1` is `127.0.0.1`), or an IPv6 address without brackets.
    pub host: String,
    /// The port (80 or 443 when the URL gives none).
    pub port: u16,
    /// The request target: path (at least `/`) and query.
    pub path: String,
    /// `user:password` from the URL, percent-decoded, for Basic authorization.
    pub credentials: Option<(String, String)>,
}

/// Why a URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlError {
    /// No `scheme://`.
    MissingScheme,
    /// `ws:` or `wss:` not followed by `//` (`ws:/host`, `wss:host`).
    MissingSlashes,
    /// A scheme other than ws or wss.
    UnsupportedScheme(String),
    /// Nothing between `//` and the path.
    MissingHost,
    /// A port that is not a number from 1 to 65535.
    InvalidPort(String),
    /// A malformed host (a bad IPv6 literal, forbidden characters).
    InvalidHost(String),
    /// A host written in a form this crate does not take, and how to write it instead
    /// (an internationalized name, percent-escapes, an IPv6 address without brackets).
    UnsupportedHost {
        /// The host as given.
        host: String,
        /// Why, and what to give instead.
        why: &'static str,
    },
    /// A `#fragment`, which WebSocket URLs must not have.
    Fragment,
    /// Whitespace or control characters.
    InvalidCharacter,
    /// A user name or password whose percent-escapes decode to bytes that are not UTF-8.
    InvalidCredentials,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::MissingScheme => {
                f.write_str("missing scheme; use ws://host/path or wss://host/path")
            }
            UrlError::MissingSlashes => f.write_str(
                "the scheme must be followed by two slashes: ws://host/path or wss://host/path",
            ),
            UrlError::UnsupportedScheme(s) => {
                write!(f, "unsupported scheme {s:?}; use ws:// or wss://")
            }
            UrlError::MissingHost => f.write_str("missing host"),
            UrlError::InvalidPort(p) => write!(f, "invalid port {p:?}"),
            UrlError::InvalidHost(h) => write!(f, "invalid host {h:?}"),
            UrlError::UnsupportedHost { host, why } => write!(f, "invalid host {host:?} ({why})"),
            UrlError::Fragment => f.write_str("WebSocket URLs cannot have a #fragment"),
            UrlError::InvalidCharacter => f.write_str("whitespace or control character in URL"),
            UrlError::InvalidCredentials => f.write_str(
                "the user name or password in the URL decodes to bytes that are not UTF-8; \
                 percent-encode UTF-8 text",
            ),
        }
    }
}

impl std::error::Error for UrlError {}

/// Decodes `%XX` escapes (anything else is kept as written), for the user and password of
/// URLs (ours and proxies'); `None` if the bytes are not UTF-8: sent with U+FFFD in their
/// place, they would be credentials the user never gave.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Whether `s` is a URL scheme (RFC 3986 section 3.1: a letter, then letters, digits, `+`,
/// `-` or `.`), so that `/login?next=https://x` is not read as one.
fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
}

/// Resolves `.` and `..` segments in an absolute path (RFC 3986 section 5.2.4).
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            other => out.push(other),
        }
    }
    format!("/{}", out.join("/"))
}

impl WsUrl {
    /// Parses a `ws://` or `wss://` URL.
    pub fn parse(input: &str) -> Result<WsUrl, UrlError> {
        let input = input.trim();
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(UrlError::InvalidCharacter);
        }
        let Some((scheme, rest)) = input.split_once("://") else {
            let ws_scheme = input.split_once(':').is_some_and(|(scheme, _)| {
                scheme.eq_ignore_ascii_case("ws") || scheme.eq_ignore_ascii_case("wss")
            });
            return Err(if ws_scheme {
                UrlError::MissingSlashes
            } else {
                UrlError::MissingScheme
            });
        };
        let secure = match scheme.to_ascii_lowercase().as_str() {
            "ws" => false,
            "wss" => true,
            _ => return Err(UrlError::UnsupportedScheme(scheme.to_string())),
        };
        if rest.contains('#') {
            return Err(UrlError::Fragment);
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split);
        let path = match target {
            "" => "/".to_string(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_string(),
        };
        // The request line is ASCII: percent-encode anything else (UTF-8 bytes).
        let path = if path.is_ascii() {
            path
        } else {
            path.bytes()
                .map(|b| {
                    if b.is_ascii() {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect()
        };
        let (credentials, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => {
                let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                let decoded = percent_decode(user).zip(percent_decode(pass));
                (Some(decoded.ok_or(UrlError::InvalidCredentials)?), hostport)
            }
            None => (None, authority),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (addr, after) = v6
                .split_once(']')
                .ok_or_else(|| UrlError::InvalidHost(hostport.to_string()))?;
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(UrlError::InvalidHost(addr.to_string()));
            }
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| UrlError::InvalidHost(hostport.to_string()))?,
                ),
            };
            (addr.to_ascii_lowercase(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, _)) if h.contains(':') => {
                    return Err(UrlError::UnsupportedHost {
                        host: hostport.to_string(),
                        why: "IPv6 addresses go in brackets: [::1]",
                    })
                }
                Some((h, p)) => (h.to_ascii_lowercase(), Some(p)),
                None => (hostport.to_ascii_lowercase(), None),
            }
        };
        if host.is_empty() {
            return Err(UrlError::MissingHost);
        }
        if host.contains('%') {
            // A percent-escaped name would go to DNS, the Host header and TLS as typed.
            return Err(UrlError::UnsupportedHost {
                host,
                why: "percent-escapes in a host name are not supported: give it as it is, an \
                      internationalized name in its ASCII form, xn--...",
            });
        }
        if !host.is_ascii() {
            // Its ASCII form (punycode, after the IDNA mapping) takes Unicode tables this
            // crate does not carry; sent as it is, the name would reach DNS, the Host header
            // and TLS in three different ways.
            return Err(UrlError::UnsupportedHost {
                host,
                why: "give an internationalized name in its ASCII form, xn--...",
            });
        }
        let valid_host_char = |c: char| c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:".contains(c);
        if !host.chars().all(valid_host_char) {
            return Err(UrlError::InvalidHost(host));
        }
        // An IPv6 address (checked above) is no IPv4 spelling, though it may end in dotted
        // IPv4: `::ffff:1.2.3.4`.
        let classified = if hostport.starts_with('[') {
            Ipv4Host::Name
        } else {
            ipv4::classify(&host)
        };
        let host = match classified {
            Ipv4Host::Name => host,
            Ipv4Host::Address(ip) => ip.to_string(),
            Ipv4Host::Invalid => {
                return Err(UrlError::InvalidHost(format!(
                    "{host} (ends in a number, but is not an IPv4 address)"
                )))
            }
        };
        let default_port = if secure { 443 } else { 80 };
        let port = match port {
            None | Some("") => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(UrlError::InvalidPort(p.to_string())),
            },
        };
        Ok(WsUrl {
            secure,
            host,
            port,
            path,
            credentials,
        })
    }

    /// Resolves a redirect's `Location` against this URL: absolute (`http`/`https` map to
    /// `ws`/`wss`), scheme-relative (`//host/path`), absolute-path or relative. A fragment is
    /// dropped.
    pub fn join(&self, location: &str) -> Result<WsUrl, UrlError> {
        let location = location.trim();
        let location = location.split_once('#').map_or(location, |(l, _)| l);
        let scheme = if self.secure { "wss" } else { "ws" };
        if let Some((given, rest)) = location.split_once("://").filter(|(s, _)| is_scheme(s)) {
            let mapped = match given.to_ascii_lowercase().as_str() {
                "http" | "ws" => "ws",
                "https" | "wss" => "wss",
                _ => return Err(UrlError::UnsupportedScheme(given.to_string())),
            };
            return WsUrl::parse(&format!("{mapped}://{rest}"));
        }
        if let Some(rest) = location.strip_prefix("//") {
            return WsUrl::parse(&format!("{scheme}://{rest}"));
        }
        let origin = format!("{scheme}://{}", self.host_header());
        let path_only = self.path.split('?').next().unwrap_or("/");
        let target = if location.starts_with('/') {
            location.to_string()
        } else if location.starts_with('?') || location.is_empty() {
            format!("{path_only}{location}")
        } else {
            let dir = path_only.rsplit_once('/').map_or("", |(dir, _)| dir);
            format!("{dir}/{location}")
        };
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target.as_str(), None),
        };
        let mut target = remove_dot_segments(path);
        if let Some(query) = query {
            target.push('?');
            target.push_str(query);
        }
        WsUrl::parse(&format!("{origin}{target}"))
    }

    /// Whether `other` has the same scheme, host and port (credentials may follow a redirect
    /// only within one origin).
    pub fn same_origin(&self, other: &WsUrl) -> bool {
        self.secure == other.secure && self.host == other.host && self.port == other.port
    }

    /// The port the scheme uses when none is given.
    pub fn default_port(&self) -> u16 {
        if self.secure {
            443
        } else {
            80
        }
    }

    /// The host as written in a `Host` header or a `host:port` pair (IPv6 in brackets).
    pub fn host_for_header(&self) -> String {
        let mut out = String::with_capacity(self.host.len() + 2);
        self.push_host(&mut out);
        out
    }

    /// Appends [`WsUrl::host_for_header`] to `out`.
    fn push_host(&self, out: &mut String) {
        let bracketed = self.host.contains(':');
        if bracketed {
            out.push('[');
        }
        out.push_str(&self.host);
        if bracketed {
            out.push(']');
        }
    }

    /// The `Host` header value: the port is included only when it is not the default.
    pub fn host_header(&self) -> String {
        // Built in place, one allocation: it is part of every connection's cost.
        let mut out = String::with_capacity(self.host.len() + 8);
        self.push_host(&mut out);
        if self.port != self.default_port() {
            // Writing to a String cannot fail.
            let _ = write!(out, ":{}", self.port);
        }
        out
    }

    /// `host:port`, for messages and for connecting.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host_for_header(), self.port)
    }
}

impl fmt::Display for WsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.secure { "wss" } else { "ws" };
        write!(f, "{scheme}://{}{}", self.host_header(), self.path)
    }
}

/// By hand, to leave the password out of logs: the user name is shown, the password not.
impl fmt::Debug for WsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsUrl")
            .field("secure", &self.secure)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("path", &self.path)
            .field(
                "credentials",
                &self
                    .credentials
                    .as_ref()
                    .map(|(user, _)| (user, crate::proto::redact::REDACTED)),
            )
            .finish()
    }
}

impl std::str::FromStr for WsUrl {
    type Err = UrlError;
    fn from_str(s: &str) -> Result<Self, UrlError> {
        WsUrl::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_user_but_not_the_password() {
        let url = WsUrl::parse("wss://alice:s3cret@example.com/feed").unwrap();
        assert_eq!(url.credentials, Some(("alice".into(), "s3cret".into())));
        let shown = format!("{url:?}");
        assert!(
            shown.contains("alice") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    #[test]
    fn parses_common_forms() {
        let u = WsUrl::parse("wss://Stream.Example.com/ws/v1?sub=btc&x=1").unwrap();
        assert!(u.secure);
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("stream.example.com", 443, "/ws/v1?sub=btc&x=1")
        );
        assert_eq!(u.host_header(), "stream.example.com");

        let u = WsUrl::parse("ws://127.0.0.1:9001").unwrap();
        assert_eq!(
            (u.port, u.path.as_str(), u.host_header().as_str()),
            (9001, "/", "127.0.0.1:9001")
        );

        let u = WsUrl::parse("ws://[::1]:9001/x").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9001));
        assert_eq!(u.host_header(), "[::1]:9001");

        let u = WsUrl::parse("ws://[::1]").unwrap();
        assert_eq!((u.port, u.host_header().as_str()), (80, "[::1]"));

        for (url, host) in [
            ("ws://h:1", "h:1"),
            ("ws://h:65535", "h:65535"),
            ("ws://h:443", "h:443"),
            ("wss://h:80", "h:80"),
            ("wss://[fe80::1]:443", "[fe80::1]"),
        ] {
            assert_eq!(WsUrl::parse(url).unwrap().host_header(), host, "{url}");
        }

        let u = WsUrl::parse("ws://h/caf\u{e9}?q=\u{e9}").unwrap();
        assert_eq!(u.path, "/caf%C3%A9?q=%C3%A9");

        let u = WsUrl::parse("ws://h?q=1").unwrap();
        assert_eq!(u.path, "/?q=1");

        let u = WsUrl::parse("ws://us%40er:p%3Ass@h:80/").unwrap();
        assert_eq!(u.credentials, Some(("us@er".into(), "p:ss".into())));
        let u = WsUrl::parse("ws://%C3%A9:%E2%82%AC@h/").unwrap();
        assert_eq!(u.credentials, Some(("\u{e9}".into(), "\u{20ac}".into())));
        assert_eq!(u.host_header(), "h");
    }

    #[test]
    fn an_ipv4_address_in_any_spelling_becomes_dotted_decimal() {
        for (url, host, header) in [
            ("ws://127.1:9/", "127.0.0.1", "127.0.0.1:9"),
            ("wss://0x7F000001/", "127.0.0.1", "127.0.0.1"),
            ("ws://0177.0.0.1./x", "127.0.0.1", "127.0.0.1"),
            ("ws://u:p@2130706433:8080", "127.0.0.1", "127.0.0.1:8080"),
            ("ws://10.258/", "10.0.1.2", "10.0.1.2"),
        ] {
            let u = WsUrl::parse(url).unwrap();
            assert_eq!(
                (u.host.as_str(), u.host_header().as_str()),
                (host, header),
                "{url}"
            );
        }
        for url in [
            "ws://256.1.1.1/",
            "ws://1.2.3.4.5:80/",
            "wss://example.123/",
        ] {
            assert!(
                matches!(WsUrl::parse(url), Err(UrlError::InvalidHost(ref h)) if h.contains("IPv4")),
                "{url}"
            );
        }
        assert_eq!(WsUrl::parse("ws://1.2.3.x/").unwrap().host, "1.2.3.x");
        // IPv6 addresses that end in dotted IPv4 stay as they are.
        for (url, host) in [
            ("ws://[::ffff:1.2.3.4]/", "::ffff:1.2.3.4"),
            ("ws://[::1.2.3.4]:80/", "::1.2.3.4"),
            ("wss://[64:ff9b::192.0.2.33]/", "64:ff9b::192.0.2.33"),
        ] {
            assert_eq!(WsUrl::parse(url).unwrap().host, host, "{url}");
        }
    }

    #[test]
    fn rejects_bad_urls() {
        let cases = [
            ("http://h/", UrlError::UnsupportedScheme("http".into())),
            ("h/path", UrlError::MissingScheme),
            ("ws:/h/path", UrlError::MissingSlashes),
            (
                "ws://ex%41mple.com/",
                UrlError::UnsupportedHost {
                    host: "ex%41mple.com".into(),
                    why: "percent-escapes in a host name are not supported: give it as it is, \
                          an internationalized name in its ASCII form, xn--...",
                },
            ),
            ("WSS:h", UrlError::MissingSlashes),
            ("localhost:8080", UrlError::MissingScheme),
            (
                "ws://ünï.test/",
                UrlError::UnsupportedHost {
                    host: "ünï.test".into(),
                    why: "give an internationalized name in its ASCII form, xn--...",
                },
            ),
            ("ws:///path", UrlError::MissingHost),
            ("ws://h:0/", UrlError::InvalidPort("0".into())),
            ("ws://h:70000/", UrlError::InvalidPort("70000".into())),
            ("ws://h:+1/", UrlError::InvalidPort("+1".into())),
            ("ws://[::1/", UrlError::InvalidHost("[::1".into())),
            ("ws://[zz::1]/", UrlError::InvalidHost("zz::1".into())),
            ("ws://h/#frag", UrlError::Fragment),
            ("ws://h/a b", UrlError::InvalidCharacter),
            ("ws://h<x>/", UrlError::InvalidHost("h<x>".into())),
            ("ws://u:%E9t%E9@h/", UrlError::InvalidCredentials),
            ("ws://%FF@h/", UrlError::InvalidCredentials),
            (
                "ws://a:b:80/",
                UrlError::UnsupportedHost {
                    host: "a:b:80".into(),
                    why: "IPv6 addresses go in brackets: [::1]",
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(WsUrl::parse(input), Err(expected), "{input}");
        }
        // The advice follows the host, outside its quotes.
        assert_eq!(
            WsUrl::parse("ws://ünï.test/").unwrap_err().to_string(),
            "invalid host \"ünï.test\" (give an internationalized name in its ASCII form, xn--...)"
        );
    }

    #[test]
    fn redirect_locations_resolve_against_the_url() {
        let base = WsUrl::parse("wss://feed.example:8443/v1/stream?x=1").unwrap();
        let join = |l: &str| base.join(l).unwrap().to_string();
        assert_eq!(join("https://other.example/ws"), "wss://other.example/ws");
        assert_eq!(
            join("http://other.example:81/ws"),
            "ws://other.example:81/ws"
        );
        assert_eq!(join("ws://other.example/ws#frag"), "ws://other.example/ws");
        assert_eq!(join("//mirror.example/a"), "wss://mirror.example/a");
        assert_eq!(join("/v2/stream"), "wss://feed.example:8443/v2/stream");
        assert_eq!(join("next?y=2"), "wss://feed.example:8443/v1/next?y=2");
        assert_eq!(join("?y=2"), "wss://feed.example:8443/v1/stream?y=2");
        assert_eq!(
            join("/login?next=https://x.example/v1"),
            "wss://feed.example:8443/login?next=https://x.example/v1"
        );
        assert_eq!(join("../v2/stream"), "wss://feed.example:8443/v2/stream");
        assert_eq!(join("./a/./b/../c"), "wss://feed.example:8443/v1/a/c");
        assert_eq!(join("/a/b/.."), "wss://feed.example:8443/a/");
        assert_eq!(join("../../../x"), "wss://feed.example:8443/x");
        assert_eq!(
            base.join("ftp://x.example/").unwrap_err(),
            UrlError::UnsupportedScheme("ftp".into())
        );
        assert!(base.same_origin(&base.join("/other").unwrap()));
        assert!(!base.same_origin(&base.join("ws://feed.example:8443/").unwrap()));
    }
}
