//! The opening handshake (RFC 6455 section 4), both directions, sans I/O.
//!
//! The client builds its upgrade request and checks the server's answer with a real HTTP parser
//! (httparse); the server parses a request and answers it. Bytes that follow the response in the
//! same read belong to the first frames: parsers report how much they consumed.

use std::fmt;
use std::mem::MaybeUninit;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;

use super::redact;

/// Request headers the handshake itself sets: a caller's own would contradict them.
const HANDSHAKE_HEADERS: [&str; 6] = [
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
];

/// The GUID appended to the key before hashing (RFC 6455 section 1.3).
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Most headers accepted in a handshake message.
const MAX_HEADERS: usize = 100;

/// How much of a refusing server's body is kept for the error.
pub const MAX_ERROR_BODY: usize = 4096;

/// How long a refused handshake's announced body is waited for once its head is in: it
/// usually follows at once, and the refusal matters more than the rest of its body (a
/// server that stalls after the head would otherwise hold the error the whole handshake
/// timeout).
pub const REFUSAL_BODY_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Default limit on the size of the handshake response (or request) head.
pub const DEFAULT_MAX_HANDSHAKE_SIZE: usize = 64 << 10;

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    BASE64.encode(sha.digest().bytes())
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64-encoded.
pub fn generate_key() -> Result<String, getrandom::Error> {
    let mut raw = [0u8; 16];
    super::random::fill(&mut raw)?;
    Ok(BASE64.encode(raw))
}

/// Why an opening handshake failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The server answered with something other than 101 Switching Protocols.
    Rejected(Box<Response>),
    /// The response (or request) is not valid HTTP/1.1.
    InvalidHttp(String),
    /// The server answered the upgrade request with TLS: a `wss://` port reached with a
    /// `ws://` URL. Trying again cannot help; the URL must change.
    TlsAnswer,
    /// The response (or request) head has more headers than the parser takes.
    TooManyHeaders {
        /// The most headers a head may have.
        max: usize,
    },
    /// The response (or request) head exceeds the configured limit.
    TooLarge {
        /// The limit in bytes.
        max: usize,
    },
    /// The connection closed before the handshake completed.
    ConnectionClosed,
    /// A required header is missing or has the wrong value.
    BadHeader {
        /// The header's name.
        name: &'static str,
        /// What was received, if anything.
        found: Option<String>,
        /// What was expected.
        expected: &'static str,
    },
    /// `Sec-WebSocket-Accept` does not match the key we sent.
    WrongAccept {
        /// The value received.
        found: String,
        /// The value expected.
        expected: String,
    },
    /// The server chose a subprotocol the client did not offer, or more than one (all it
    /// chose, comma-separated).
    UnexpectedProtocol(String),
    /// The server enabled an extension the client did not offer.
    UnexpectedExtension(String),
    /// The server's permessage-deflate parameters break RFC 7692 or our offer.
    BadExtension(String),
    /// A header the caller asked to send is not a valid HTTP header.
    InvalidRequestHeader(String),
    /// The request is not a WebSocket upgrade (server role): answer with this status.
    BadRequest {
        /// The status to answer with.
        status: StatusCode,
        /// Why.
        reason: String,
    },
    /// The server's own accept callback refused the request (server role,
    /// [`crate::server::Acceptor::accept_with`], or a [`crate::server::Refusal`] given to
    /// [`crate::server::Upgrade::answer`]); the client was answered with `status`.
    CallbackRefused {
        /// The status the client was answered with.
        status: StatusCode,
    },
    /// The server's own accept callback answered with something that cannot be sent (a
    /// header the handshake sets itself, an invalid header, an unoffered subprotocol, a 1xx
    /// refusal, a body on a 204, 205 or 304 refusal); the client was answered 500 Internal
    /// Server Error.
    InvalidAnswer(String),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Rejected(resp) => {
                write!(
                    f,
                    "the server answered {} instead of 101 Switching Protocols",
                    resp.status
                )?;
                if resp.status.is_redirection() {
                    if let Some(to) = resp.headers.get(http::header::LOCATION) {
                        write!(
                            f,
                            ", a redirect to {:?} (follow redirects with \
                             ClientBuilder::max_redirects)",
                            String::from_utf8_lossy(to.as_bytes())
                        )?;
                    }
                }
                match resp.body_preview() {
                    Some(preview) => write!(f, ": {preview:?}"),
                    None => Ok(()),
                }
            }
            HandshakeError::InvalidHttp(e) => write!(f, "not a valid HTTP/1.1 message: {e}"),
            HandshakeError::TlsAnswer => {
                f.write_str("the server answered with TLS, not HTTP: use a wss:// URL")
            }
            HandshakeError::TooManyHeaders { max } => {
                write!(f, "handshake head with more than {max} headers")
            }
            HandshakeError::TooLarge { max } => {
                write!(f, "handshake head larger than {max} bytes")
            }
            HandshakeError::ConnectionClosed => {
                f.write_str("the connection closed before the handshake completed")
            }
            HandshakeError::BadHeader {
                name,
                found,
                expected,
            } => match found {
                Some(v) => write!(f, "header {name} is {v:?}, expected {expected}"),
                None => write!(f, "header {name} is missing, expected {expected}"),
            },
            HandshakeError::WrongAccept { found, expected } => write!(
                f,
                "Sec-WebSocket-Accept is {found:?} but the key we sent requires {expected:?}"
            ),
            // (A subprotocol is a token: a comma means the server chose more than one.)
            HandshakeError::UnexpectedProtocol(p) if p.contains(',') => write!(
                f,
                "the server chose several subprotocols ({p}); it must choose at most one of \
                 those offered"
            ),
            HandshakeError::UnexpectedProtocol(p) => {
                write!(
                    f,
                    "the server chose subprotocol {p:?}, which the client did not offer"
                )
            }
            HandshakeError::UnexpectedExtension(e) => {
                write!(
                    f,
                    "the server enabled extension {e:?}, which the client did not offer"
                )
            }
            HandshakeError::BadExtension(e) => {
                write!(f, "unacceptable permessage-deflate answer: {e}")
            }
            HandshakeError::InvalidRequestHeader(h) => write!(f, "invalid request header: {h}"),
            HandshakeError::BadRequest { status, reason } => {
                write!(
                    f,
                    "not a valid WebSocket upgrade request ({status}): {reason}"
                )
            }
            HandshakeError::CallbackRefused { status } => {
                write!(f, "the accept callback refused the request with {status}")
            }
            HandshakeError::InvalidAnswer(why) => write!(
                f,
                "the accept callback's answer cannot be sent ({why}); the client was answered \
                 500 Internal Server Error"
            ),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// The server's answer to the upgrade request.
#[derive(Clone)]
#[non_exhaustive]
pub struct Response {
    /// The HTTP status.
    pub status: StatusCode,
    /// All response headers (`Debug` redacts `Set-Cookie` values).
    pub headers: HeaderMap,
    /// The subprotocol the server chose, if any.
    pub protocol: Option<String>,
    /// For a refusal, the start of the body (at most [`MAX_ERROR_BODY`] bytes).
    pub body: Bytes,
    /// The permessage-deflate parameters agreed on, if compression was negotiated.
    #[cfg(feature = "deflate")]
    pub deflate: Option<super::deflate::DeflateParams>,
    /// The redirects followed on the way to this response, in order (empty when the first
    /// server answered; see `ClientBuilder::max_redirects`).
    pub redirects: Vec<Redirect>,
    /// For a refusal, the upgrade request it answers, as sent (for logging what was asked
    /// beside what was answered; an accepted connection has it in `WebSocket::request_head`).
    /// It holds the credentials sent (`Authorization`, `Cookie`): `Debug` leaves it out.
    pub request_head: Option<String>,
}

impl Response {
    /// The start of a refusal's body for an error message: text (invalid UTF-8 replaced),
    /// trimmed, at most 200 characters; `None` when it is empty or blank.
    pub fn body_preview(&self) -> Option<String> {
        let body = String::from_utf8_lossy(&self.body);
        let body = body.trim();
        (!body.is_empty()).then(|| body.chars().take(200).collect())
    }

    /// For a refusal (429, 503), how long the server asks us to wait before trying again,
    /// as of `now`: its `Retry-After` ([`super::retry_after::retry_after`]).
    pub fn retry_after(&self, now: std::time::SystemTime) -> Option<std::time::Duration> {
        super::retry_after::retry_after(&self.headers, now)
    }
}

/// By hand, to leave the request head and the cookies set out: an error printed with `{:?}`
/// (a `main` returning `Result`, a log line) must not show a password or a token.
impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Response");
        d.field("status", &self.status)
            .field("headers", &redact::ShownHeaderMap(&self.headers))
            .field("protocol", &self.protocol)
            .field("body", &self.body);
        #[cfg(feature = "deflate")]
        d.field("deflate", &self.deflate);
        d.field("redirects", &self.redirects)
            .field(
                "request_head",
                &self.request_head.as_ref().map(|_| redact::HEAD_NOT_SHOWN),
            )
            .finish()
    }
}

/// A redirect of the handshake that the client followed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Redirect {
    /// The URL that answered with the redirect.
    pub from: String,
    /// Its status: 301, 302, 303, 307 or 308.
    pub status: StatusCode,
    /// The URL followed: the `Location` header, resolved against `from`.
    pub to: String,
}

/// What the client puts in its upgrade request (`Debug` redacts credential headers).
#[derive(Clone, Default)]
pub struct ClientRequest {
    /// The `Host` header: the host, with the port unless it is the scheme's default.
    pub host: String,
    /// The request target: path and query.
    pub path: String,
    /// Subprotocols to offer, in order of preference.
    pub protocols: Vec<String>,
    /// The `Origin` header, if any.
    pub origin: Option<String>,
    /// Extension offers for `Sec-WebSocket-Extensions`, if any (besides permessage-deflate).
    pub extensions: Option<String>,
    /// The permessage-deflate offer, if compression is wanted.
    #[cfg(feature = "deflate")]
    pub deflate: Option<super::deflate::DeflateConfig>,
    /// More headers, sent as given (a `Host` among them replaces [`ClientRequest::host`]; the
    /// handshake's own headers are refused).
    pub headers: Vec<(String, String)>,
}

/// The client side of the opening handshake (`Debug` leaves out the request it sent).
pub struct ClientHandshake {
    expected_accept: String,
    #[cfg(feature = "deflate")]
    deflate: Option<super::deflate::DeflateConfig>,
    protocols: Vec<String>,
    max_size: usize,
    /// A refusal whose head has been parsed while we wait for (some of) its body.
    refusal: Option<(Response, usize, usize)>,
    /// The request as sent, handed out with a refusal (see [`Response::request_head`]).
    request_head: String,
}

impl fmt::Debug for ClientRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ClientRequest");
        d.field("host", &self.host)
            .field("path", &self.path)
            .field("protocols", &self.protocols)
            .field("origin", &self.origin)
            .field("extensions", &self.extensions);
        #[cfg(feature = "deflate")]
        d.field("deflate", &self.deflate);
        d.field("headers", &redact::shown_headers(&self.headers))
            .finish()
    }
}

impl fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ClientHandshake");
        d.field("expected_accept", &self.expected_accept);
        #[cfg(feature = "deflate")]
        d.field("deflate", &self.deflate);
        d.field("protocols", &self.protocols)
            .field("max_size", &self.max_size)
            .field("refusal", &self.refusal)
            .field("request_head", &redact::HEAD_NOT_SHOWN)
            .finish()
    }
}

/// The first line of what the server sent, quoted and shortened, for an error message: what
/// answered instead of a WebSocket server.
fn first_line(buf: &[u8]) -> String {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let line: String = line.trim_end_matches('\r').chars().take(80).collect();
    format!("{line:?}")
}

/// The error for a head httparse refused. Too many headers is a variant of its own: unlike a
/// garbled head, it is no accident of the way, so reconnecting will not retry it.
fn http_error(e: httparse::Error) -> HandshakeError {
    match e {
        httparse::Error::TooManyHeaders => HandshakeError::TooManyHeaders { max: MAX_HEADERS },
        e => HandshakeError::InvalidHttp(e.to_string()),
    }
}

fn header_str(value: &HeaderValue) -> String {
    String::from_utf8_lossy(value.as_bytes()).into_owned()
}

/// Splits comma-separated header values of every occurrence of `name` into trimmed tokens.
fn header_tokens<'a>(headers: &'a HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    header_tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token))
}

/// The parsed headers of the head `buf[..head_len]` as a map. The values are slices of one
/// copy of the head, not a copy each.
fn to_header_map(
    parsed: &[httparse::Header<'_>],
    buf: &[u8],
    head_len: usize,
) -> Result<HeaderMap, HandshakeError> {
    let head = Bytes::copy_from_slice(&buf[..head_len]);
    let mut map = HeaderMap::with_capacity(parsed.len());
    for h in parsed {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| HandshakeError::InvalidHttp(format!("bad header name {:?}", h.name)))?;
        // httparse's values lie in the head; were one not to, it would be copied.
        let start = (h.value.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
        let value = match start.checked_add(h.value.len()) {
            Some(end) if end <= head.len() => {
                HeaderValue::from_maybe_shared(head.slice(start..end))
            }
            _ => HeaderValue::from_bytes(h.value),
        }
        .map_err(|_| HandshakeError::InvalidHttp(format!("bad value for header {}", h.name)))?;
        map.append(name, value);
    }
    Ok(map)
}

fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Decodes as much of a chunked body as `data` holds (for error messages only).
fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < MAX_ERROR_BODY {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            break;
        };
        let size = std::str::from_utf8(&data[..line_end])
            .ok()
            .and_then(|line| line.split(';').next())
            .and_then(|hex| usize::from_str_radix(hex.trim(), 16).ok());
        let Some(size @ 1..) = size else { break };
        data = &data[line_end + 2..];
        let take = size.min(data.len());
        out.extend_from_slice(&data[..take]);
        // (A size the peer made as big as `usize` allows must not overflow.)
        if data.len() < size.saturating_add(2) {
            break;
        }
        data = &data[size + 2..];
    }
    out
}

fn validate_header(name: &str, value: &str) -> Result<(), HandshakeError> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| HandshakeError::InvalidRequestHeader(format!("bad header name {name:?}")))?;
    // What `HeaderValue` accepts (no control characters but tab), checked without building
    // one: that would copy the value.
    if !value
        .bytes()
        .all(|b| (b >= b' ' && b != 0x7f) || b == b'\t')
    {
        return Err(HandshakeError::InvalidRequestHeader(format!(
            "bad value for {name}"
        )));
    }
    Ok(())
}

/// Checks what the caller adds to an upgrade request (headers, subprotocols, origin), so that
/// a mistake is reported before any network activity: header names and values HTTP allows,
/// none of the handshake's own headers, subprotocols that are tokens.
pub fn check_request_parts(
    headers: &[(String, String)],
    protocols: &[String],
    origin: Option<&str>,
) -> Result<(), HandshakeError> {
    let hosts = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("host"))
        .count();
    if hosts > 1 {
        return Err(HandshakeError::InvalidRequestHeader(
            "more than one Host header".into(),
        ));
    }
    for (name, value) in headers {
        if HANDSHAKE_HEADERS
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
        {
            return Err(HandshakeError::InvalidRequestHeader(format!(
                "{name} is set by the WebSocket handshake itself \
                 (subprotocols and extensions have their own options)"
            )));
        }
        validate_header(name, value)?;
    }
    let origins = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("origin"))
        .count()
        + usize::from(origin.is_some());
    if origins > 1 {
        // Servers refuse a request with two (Python's websockets: 400).
        return Err(HandshakeError::InvalidRequestHeader(
            "more than one Origin (as a header and with the origin option): give one".into(),
        ));
    }
    if let Some(origin) = origin {
        validate_header("Origin", origin)?;
    }
    for p in protocols {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
            return Err(HandshakeError::InvalidRequestHeader(format!(
                "subprotocol {p:?} is not a token"
            )));
        }
    }
    Ok(())
}

/// Where the final response starts in `buf`: past any interim 1xx heads other than 101
/// (100 Continue, 103 Early Hints), which a client skips (RFC 9110 section 15.2). `None`
/// while one of them is still incomplete.
fn final_response_start(buf: &[u8], max: usize) -> Result<Option<usize>, HandshakeError> {
    let mut start = 0;
    // Most answers are the 101 itself or a refusal: one look at the status code.
    while let Some(code) = buf.get(start + 9..start + 12) {
        if !buf[start..].starts_with(b"HTTP/1.1 1") || code == b"101" {
            break;
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut interim = httparse::Response::new(&mut headers);
        match interim.parse(&buf[start..]) {
            Ok(httparse::Status::Complete(n)) => start += n,
            Ok(httparse::Status::Partial) if buf.len() <= max => return Ok(None),
            // Too big, or not HTTP: the parser of the final response says so.
            _ => break,
        }
        if start > max {
            return Err(HandshakeError::TooLarge { max });
        }
    }
    Ok(Some(start))
}

impl ClientHandshake {
    /// Builds the upgrade request with a fresh random key. Returns the handshake state and the
    /// bytes to send.
    pub fn new(request: &ClientRequest, max_size: usize) -> Result<(Self, Vec<u8>), crate::Error> {
        let key = generate_key()?;
        Ok(Self::with_key(request, &key, max_size)?)
    }

    /// Builds the upgrade request with a given key (tests use this to be deterministic).
    pub fn with_key(
        request: &ClientRequest,
        key: &str,
        max_size: usize,
    ) -> Result<(Self, Vec<u8>), HandshakeError> {
        check_request_parts(
            &request.headers,
            &request.protocols,
            request.origin.as_deref(),
        )?;
        let mut out = String::with_capacity(256);
        let path = if request.path.is_empty() {
            "/"
        } else {
            &request.path
        };
        let is_host = |(name, _): &&(String, String)| name.eq_ignore_ascii_case("host");
        let host = match request.headers.iter().find(is_host) {
            Some((_, value)) => value,
            None => &request.host,
        };
        validate_header("Host", host)?;
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(HandshakeError::InvalidRequestHeader(format!(
                "request path {path:?} contains spaces or control characters"
            )));
        }
        // Appended piece by piece, not formatted: this runs for every connection.
        for part in [
            "GET ",
            path,
            " HTTP/1.1\r\nHost: ",
            host,
            "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ",
            key,
            "\r\nSec-WebSocket-Version: 13\r\n",
        ] {
            out.push_str(part);
        }
        let mut header = |name: &str, value: &str| {
            for part in [name, ": ", value, "\r\n"] {
                out.push_str(part);
            }
        };
        if let Some(origin) = &request.origin {
            header("Origin", origin);
        }
        if !request.protocols.is_empty() {
            header("Sec-WebSocket-Protocol", &request.protocols.join(", "));
        }
        #[cfg_attr(not(feature = "deflate"), allow(unused_mut))]
        let mut offers: Vec<String> = request.extensions.iter().cloned().collect();
        #[cfg(feature = "deflate")]
        offers.extend(request.deflate.as_ref().map(|d| d.offer()));
        if !offers.is_empty() {
            let ext = offers.join(", ");
            validate_header("Sec-WebSocket-Extensions", &ext)?;
            header("Sec-WebSocket-Extensions", &ext);
        }
        for (name, value) in &request.headers {
            if !name.eq_ignore_ascii_case("host") {
                // (A Host is sent above, in place of the URL's.)
                header(name, value);
            }
        }
        out.push_str("\r\n");
        let handshake = ClientHandshake {
            expected_accept: accept_key(key),
            #[cfg(feature = "deflate")]
            deflate: request.deflate.clone(),
            protocols: request.protocols.clone(),
            max_size,
            refusal: None,
            request_head: out.clone(),
        };
        Ok((handshake, out.into_bytes()))
    }

    /// Parses the response from the start of `buf` (all bytes received so far).
    ///
    /// Returns `Ok(None)` while more bytes are needed, or the accepted response and how many
    /// bytes of `buf` it used: the rest is frame data.
    pub fn parse_response(
        &mut self,
        all: &[u8],
    ) -> Result<Option<(Response, usize)>, HandshakeError> {
        if let Some((_, head_len, want)) = &self.refusal {
            if all.len() >= head_len + want {
                return Err(self
                    .take_refusal(all)
                    .unwrap_or(HandshakeError::ConnectionClosed));
            }
            return Ok(None);
        }
        match all {
            // A TLS alert or handshake record: a TLS port reached with ws://.
            [0x15 | 0x16, 0x03, ..] => return Err(HandshakeError::TlsAnswer),
            // Its first byte alone: whether it is TLS (not retried) or garbage (an HTTP
            // error) must not depend on where the read split it.
            [0x15 | 0x16] => return Ok(None),
            _ => {}
        }
        let Some(start) = final_response_start(all, self.max_size)? else {
            return Ok(None);
        };
        let buf = &all[start..];
        let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut []);
        let config = httparse::ParserConfig::default();
        let head_len =
            match config.parse_response_with_uninit_headers(&mut parsed, buf, &mut headers) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) => {
                    if buf.len() > self.max_size {
                        return Err(HandshakeError::TooLarge { max: self.max_size });
                    }
                    return Ok(None);
                }
                Err(e) => {
                    return Err(match http_error(e) {
                        HandshakeError::InvalidHttp(why) => {
                            HandshakeError::InvalidHttp(format!("{why}: {}", first_line(buf)))
                        }
                        other => other,
                    })
                }
            };
        if head_len > self.max_size {
            return Err(HandshakeError::TooLarge { max: self.max_size });
        }
        if parsed.version != Some(1) {
            return Err(HandshakeError::InvalidHttp(format!(
                "the response is not HTTP/1.1: {}",
                first_line(buf)
            )));
        }
        let status = parsed
            .code
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or_else(|| HandshakeError::InvalidHttp("bad status code".into()))?;
        let headers = to_header_map(parsed.headers, buf, head_len)?;
        let mut response = Response {
            status,
            headers,
            protocol: None,
            body: Bytes::new(),
            #[cfg(feature = "deflate")]
            deflate: None,
            redirects: Vec::new(),
            request_head: None,
        };
        if status != StatusCode::SWITCHING_PROTOCOLS {
            let body = &buf[head_len..];
            let no_body = status.is_informational()
                || status == StatusCode::NO_CONTENT
                || status == StatusCode::NOT_MODIFIED;
            if no_body {
                return Err(self.refused(response));
            }
            if let Some(length) = content_length(&response.headers) {
                // Wait for the announced body (up to the bound): it usually follows at once.
                let head_end = start + head_len;
                self.refusal = Some((response, head_end, length.min(MAX_ERROR_BODY)));
                return self.parse_response(all);
            }
            // Chunked or unframed: keep what came with the head rather than wait for the end
            // of a body that may never end.
            let chunked = response
                .headers
                .get(header::TRANSFER_ENCODING)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
            let mut body = if chunked {
                dechunk(body)
            } else {
                body.to_vec()
            };
            body.truncate(MAX_ERROR_BODY);
            response.body = Bytes::from(body);
            return Err(self.refused(response));
        }
        self.verify(&mut response)?;
        Ok(Some((response, start + head_len)))
    }

    /// Whether a refusal's head has arrived and its announced body is being waited for: a
    /// driver bounds that wait by [`REFUSAL_BODY_WAIT`], then calls
    /// [`ClientHandshake::take_refusal`].
    pub fn awaits_refusal_body(&self) -> bool {
        self.refusal.is_some()
    }

    /// After the peer closed (or time ran out): the refusal, if its head had arrived, with as
    /// much body as there is.
    pub fn take_refusal(&mut self, buf: &[u8]) -> Option<HandshakeError> {
        let (mut response, head_len, want) = self.refusal.take()?;
        let end = buf.len().min(head_len + want);
        response.body = Bytes::copy_from_slice(buf.get(head_len..end).unwrap_or(&[]));
        Some(self.refused(response))
    }

    /// A refusal, with the request it answers.
    fn refused(&self, mut response: Response) -> HandshakeError {
        response.request_head = Some(self.request_head.clone());
        HandshakeError::Rejected(Box::new(response))
    }

    fn verify(&self, response: &mut Response) -> Result<(), HandshakeError> {
        let h = &response.headers;
        if !has_token(h, &header::UPGRADE, "websocket") {
            return Err(HandshakeError::BadHeader {
                name: "Upgrade",
                found: h.get(header::UPGRADE).map(header_str),
                expected: "\"websocket\"",
            });
        }
        if !has_token(h, &header::CONNECTION, "upgrade") {
            return Err(HandshakeError::BadHeader {
                name: "Connection",
                found: h.get(header::CONNECTION).map(header_str),
                expected: "\"Upgrade\"",
            });
        }
        let accept = h
            .get(header::SEC_WEBSOCKET_ACCEPT)
            .ok_or(HandshakeError::BadHeader {
                name: "Sec-WebSocket-Accept",
                found: None,
                expected: "the hash of our key",
            })?;
        // It must not appear more than once (RFC 6455 section 11.3.3): a second value, right
        // or wrong, is an answer that was not computed for this request alone.
        let accepts = h.get_all(header::SEC_WEBSOCKET_ACCEPT).iter().count();
        if accepts > 1 || accept.as_bytes() != self.expected_accept.as_bytes() {
            let found: Vec<String> = h
                .get_all(header::SEC_WEBSOCKET_ACCEPT)
                .iter()
                .map(header_str)
                .collect();
            return Err(HandshakeError::WrongAccept {
                found: found.join(", "),
                expected: self.expected_accept.clone(),
            });
        }
        let mut chosen = header_tokens(h, &header::SEC_WEBSOCKET_PROTOCOL);
        if let Some(protocol) = chosen.next() {
            if chosen.next().is_some() || !self.protocols.iter().any(|p| p == protocol) {
                let all: Vec<&str> = header_tokens(h, &header::SEC_WEBSOCKET_PROTOCOL).collect();
                return Err(HandshakeError::UnexpectedProtocol(all.join(", ")));
            }
            response.protocol = Some(protocol.to_string());
        }
        let answers: Vec<String> = h
            .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
            .iter()
            .map(header_str)
            .collect();
        let answer = answers.join(", ");
        #[cfg(feature = "deflate")]
        {
            response.deflate = self.accept_extensions(&answer)?;
        }
        #[cfg(not(feature = "deflate"))]
        if let Some(ext) = answer
            .split([',', ';'])
            .map(str::trim)
            .find(|e| !e.is_empty())
        {
            return Err(HandshakeError::UnexpectedExtension(ext.to_string()));
        }
        Ok(())
    }

    /// Checks the extensions the server enabled: only permessage-deflate, once, as offered.
    #[cfg(feature = "deflate")]
    fn accept_extensions(
        &self,
        answer: &str,
    ) -> Result<Option<super::deflate::DeflateParams>, HandshakeError> {
        use super::deflate::{client_accept, parse_extensions, NAME};
        let mut agreed = None;
        for (name, params) in parse_extensions(answer) {
            match &self.deflate {
                Some(config) if name == NAME && agreed.is_none() => {
                    let params = client_accept(config, &params)
                        .map_err(|e| HandshakeError::BadExtension(e.to_string()))?;
                    agreed = Some(params);
                }
                // Offered, but enabled twice: not an extension we did not offer.
                Some(_) if name == NAME => {
                    return Err(HandshakeError::BadExtension(format!(
                        "{NAME} enabled more than once"
                    )))
                }
                _ => return Err(HandshakeError::UnexpectedExtension(name.to_string())),
            }
        }
        Ok(agreed)
    }
}

/// A client's upgrade request, as the server sees it (`Debug` redacts credential headers).
#[derive(Clone)]
pub struct Request {
    /// The resource name: path and query (`/chat?room=1`), also when the client sent an
    /// absolute URI as the target (`GET http://host/chat?room=1`).
    pub path: String,
    /// All request headers (`Debug` redacts `Authorization`, `Cookie` and the like).
    pub headers: HeaderMap,
    /// The client's `Sec-WebSocket-Key`.
    pub key: String,
    /// Subprotocols offered, in the client's order of preference.
    pub protocols: Vec<String>,
    /// The `Sec-WebSocket-Extensions` offers, all headers joined.
    pub extensions: String,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("path", &self.path)
            .field("headers", &redact::ShownHeaderMap(&self.headers))
            .field("key", &self.key)
            .field("protocols", &self.protocols)
            .field("extensions", &self.extensions)
            .finish()
    }
}

fn bad_request(status: StatusCode, reason: impl Into<String>) -> HandshakeError {
    HandshakeError::BadRequest {
        status,
        reason: reason.into(),
    }
}

/// The resource name (path and query) of a request target: the target as sent, or the path
/// and query of an absolute URI, which RFC 6455 section 4.2.1 allows (`GET http://h/x?q`).
fn resource_name(target: &str) -> String {
    for scheme in ["http://", "https://", "ws://", "wss://"] {
        let Some(rest) = target
            .get(..scheme.len())
            .filter(|s| s.eq_ignore_ascii_case(scheme))
            .and_then(|_| target.get(scheme.len()..))
        else {
            continue;
        };
        return match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => rest[i..].to_string(),
            Some(i) => format!("/{}", &rest[i..]),
            None => "/".to_string(),
        };
    }
    target.to_string()
}

/// Parses and validates an upgrade request from the start of `buf` (server role).
///
/// Returns `Ok(None)` while more bytes are needed, or the request and how many bytes it used.
pub fn parse_request(
    buf: &[u8],
    max_size: usize,
) -> Result<Option<(Request, usize)>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > max_size => {
            return Err(HandshakeError::TooLarge { max: max_size })
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(http_error(e)),
    };
    if head_len > max_size {
        return Err(HandshakeError::TooLarge { max: max_size });
    }
    if parsed.method != Some("GET") {
        return Err(bad_request(
            StatusCode::METHOD_NOT_ALLOWED,
            "the method must be GET",
        ));
    }
    if parsed.version != Some(1) {
        return Err(bad_request(
            StatusCode::BAD_REQUEST,
            "the request must be HTTP/1.1",
        ));
    }
    let path = resource_name(parsed.path.unwrap_or("/"));
    let headers = to_header_map(parsed.headers, buf, head_len)?;
    if !headers.contains_key(header::HOST) {
        return Err(bad_request(StatusCode::BAD_REQUEST, "missing Host header"));
    }
    // Each at most once (RFC 9112 section 3.2, RFC 6455 section 11.3.1): which one would
    // count is anybody's guess.
    for name in [
        header::HOST,
        header::SEC_WEBSOCKET_KEY,
        header::SEC_WEBSOCKET_VERSION,
    ] {
        if headers.get_all(&name).iter().nth(1).is_some() {
            return Err(bad_request(
                StatusCode::BAD_REQUEST,
                format!("more than one {name} header"),
            ));
        }
    }
    if !has_token(&headers, &header::UPGRADE, "websocket") {
        return Err(bad_request(
            StatusCode::UPGRADE_REQUIRED,
            "missing Upgrade: websocket",
        ));
    }
    if !has_token(&headers, &header::CONNECTION, "upgrade") {
        return Err(bad_request(
            StatusCode::BAD_REQUEST,
            "missing Connection: Upgrade",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return Err(bad_request(
            StatusCode::UPGRADE_REQUIRED,
            "Sec-WebSocket-Version must be 13",
        ));
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|k| k.to_str().ok())
        .map(str::trim)
        .filter(|k| BASE64.decode(k).map(|raw| raw.len() == 16).unwrap_or(false))
        .ok_or_else(|| bad_request(StatusCode::BAD_REQUEST, "bad Sec-WebSocket-Key"))?
        .to_string();
    let protocols = header_tokens(&headers, &header::SEC_WEBSOCKET_PROTOCOL)
        .map(str::to_string)
        .collect();
    let extensions = headers
        .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .map(header_str)
        .collect::<Vec<_>>()
        .join(", ");
    let request = Request {
        path,
        headers,
        key,
        protocols,
        extensions,
    };
    Ok(Some((request, head_len)))
}

/// The 101 response accepting `request`, with the chosen subprotocol (which must be one the
/// client offered) and extra headers (invalid ones are left out).
pub fn accept_response(
    request: &Request,
    protocol: Option<&str>,
    extra_headers: &[(String, String)],
) -> Vec<u8> {
    let mut extra = HeaderMap::new();
    for (name, value) in extra_headers {
        if validate_header(name, value).is_ok() {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(value.as_bytes()),
            ) {
                extra.append(name, value);
            }
        }
    }
    accept_response_with(request, protocol, &extra)
}

/// [`accept_response`] with the extra headers as a map. They must not be the handshake's own
/// (`Upgrade`, `Connection`, `Sec-WebSocket-*`) nor body framing: the server role checks that
/// first (see [`crate::server::Accept`]).
pub fn accept_response_with(
    request: &Request,
    protocol: Option<&str>,
    extra: &HeaderMap,
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        accept_key(&request.key)
    )
    .into_bytes();
    if let Some(p) = protocol.filter(|p| request.protocols.iter().any(|o| o == p)) {
        out.extend_from_slice(format!("Sec-WebSocket-Protocol: {p}\r\n").as_bytes());
    }
    write_headers(&mut out, extra);
    out.extend_from_slice(b"\r\n");
    out
}

/// An HTTP error response refusing an upgrade.
pub fn reject_response(status: StatusCode, body: &str) -> Vec<u8> {
    refusal_response(status, &HeaderMap::new(), body.as_bytes())
}

/// Whether HTTP forbids content in a final response with `status` (RFC 9110 sections 6.4.1
/// and 15.3.6): 204 No Content, 205 Reset Content and 304 Not Modified.
pub(crate) fn forbids_body(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::NO_CONTENT | StatusCode::RESET_CONTENT | StatusCode::NOT_MODIFIED
    )
}

/// An HTTP response refusing an upgrade, with the caller's headers and body; the connection
/// closes after it. `headers` must not hold the framing headers this sets (`Content-Length`,
/// `Transfer-Encoding`, `Connection`); `Content-Type` is plain text unless `headers` has one.
///
/// A status that forbids a body (204, 205, 304) gets none, whatever `body` holds (the server
/// role refuses such an answer before it gets here), and 204 and 304 no `Content-Length`
/// either (RFC 9110 section 8.6): a client would otherwise read the body as the start of the
/// next response.
pub fn refusal_response(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .into_bytes();
    let bodiless = forbids_body(status);
    let body = if bodiless { &[][..] } else { body };
    if !bodiless && !headers.contains_key(header::CONTENT_TYPE) {
        out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n");
    }
    // 205 may say its content is empty; 204 and 304 must not say anything.
    if !matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED) {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    if status == StatusCode::UPGRADE_REQUIRED {
        // RFC 9110 section 15.5.22: a 426 names the protocol to upgrade to, and a sender of
        // Upgrade also sends the "upgrade" connection option (section 7.8).
        out.extend_from_slice(b"Connection: Upgrade, close\r\n");
        if !headers.contains_key(header::UPGRADE) {
            out.extend_from_slice(b"Upgrade: websocket\r\n");
        }
        if !headers.contains_key(header::SEC_WEBSOCKET_VERSION) {
            out.extend_from_slice(b"Sec-WebSocket-Version: 13\r\n");
        }
    } else {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    // RFC 9110 section 15.5.6: a 405 says which methods the resource takes.
    if status == StatusCode::METHOD_NOT_ALLOWED && !headers.contains_key(header::ALLOW) {
        out.extend_from_slice(b"Allow: GET\r\n");
    }
    write_headers(&mut out, headers);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// Writes each header as `name: value\r\n` (a `HeaderMap` holds only valid names and values).
fn write_headers(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
#[allow(clippy::needless_update)] // `..Default::default()` fills the feature-gated fields
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn request() -> ClientRequest {
        ClientRequest {
            host: "example.com:8080".into(),
            path: "/chat?room=1".into(),
            protocols: vec!["chat".into(), "superchat".into()],
            origin: Some("http://example.com".into()),
            extensions: None,
            headers: vec![("Authorization".into(), "Bearer x".into())],
            ..Default::default()
        }
    }

    fn ok_response(extra: &str) -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n{extra}\r\n"
        )
    }

    #[test]
    fn rfc_accept_key() {
        assert_eq!(accept_key(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn generated_keys_are_16_random_bytes() {
        let a = generate_key().unwrap();
        let b = generate_key().unwrap();
        assert_ne!(a, b);
        assert_eq!(BASE64.decode(&a).unwrap().len(), 16);
    }

    #[test]
    fn request_is_parsed_by_server_side() {
        let (_, bytes) = ClientHandshake::with_key(&request(), KEY, 1024).unwrap();
        let (req, n) = parse_request(&bytes, 4096).unwrap().unwrap();
        assert_eq!(n, bytes.len());
        assert_eq!(req.path, "/chat?room=1");
        assert_eq!(req.key, KEY);
        assert_eq!(req.protocols, ["chat", "superchat"]);
        assert_eq!(req.headers["host"], "example.com:8080");
        assert_eq!(req.headers["origin"], "http://example.com");
        assert_eq!(req.headers["authorization"], "Bearer x");
    }

    #[test]
    fn interim_responses_before_the_101_are_skipped() {
        let (mut hs, _) = ClientHandshake::with_key(&request(), KEY, 1024).unwrap();
        let mut bytes =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n".to_vec();
        bytes.extend(ok_response("").into_bytes());
        let head = bytes.len();
        bytes.extend_from_slice(&[0x81, 0x02, b'h', b'i']);
        for cut in 0..head {
            assert!(hs.parse_response(&bytes[..cut]).unwrap().is_none(), "{cut}");
        }
        let (resp, n) = hs.parse_response(&bytes).unwrap().unwrap();
        assert_eq!((resp.status, n), (StatusCode::SWITCHING_PROTOCOLS, head));
        // A refusal after an interim response keeps its body.
        let (mut hs, _) = ClientHandshake::with_key(&request(), KEY, 1024).unwrap();
        let refused =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno";
        match hs.parse_response(refused) {
            Err(HandshakeError::Rejected(r)) => {
                assert_eq!((r.status.as_u16(), &r.body[..]), (403, &b"no"[..]))
            }
            other => panic!("{other:?}"),
        }
        // Endless interim responses hit the size limit.
        let (mut hs, _) = ClientHandshake::with_key(&request(), KEY, 1024).unwrap();
        let endless = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(100);
        assert!(matches!(
            hs.parse_response(&endless),
            Err(HandshakeError::TooLarge { max: 1024 })
        ));
    }

    #[test]
    fn an_answer_that_is_not_http_1_1_is_quoted_in_the_error() {
        for (answer, quoted) in [
            (
                &b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n<html>"[..],
                "HTTP/1.0 200 OK",
            ),
            (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "SSH-2.0-OpenSSH_9.2"),
        ] {
            let (mut hs, _) = ClientHandshake::with_key(&request(), KEY, 1024).unwrap();
            match hs.parse_response(answer) {
                Err(e @ HandshakeError::InvalidHttp(_)) => {
                    assert!(e.to_string().contains(quoted), "{e}")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn accepts_valid_response_and_keeps_trailing_bytes() {
        let (mut hs, _) = ClientHandshake::with_key(&request(), KEY, 1024).unwrap();
        let mut bytes = ok_response("Sec-WebSocket-Protocol: superchat\r\n").into_bytes();
        let head = bytes.len();
        bytes.extend_from_slice(&[0x81, 0x02, b'h', b'i']);
        for cut in 0..head {
            assert!(hs.parse_response(&bytes[..cut]).unwrap().is_none());
        }
        let (resp, n) = hs.parse_response(&bytes).unwrap().unwrap();
        assert_eq!(n, head);
        assert_eq!(resp.protocol.as_deref(), Some("superchat"));
    }

    #[test]
    fn rejects_bad_responses() {
        let cases = [
            ok_response("").replace("WebSocket\r\n", "h2c\r\n"),
            ok_response("").replace("keep-alive, Upgrade", "keep-alive"),
            ok_response("").replace(
                "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
                "AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            ),
            ok_response("Sec-WebSocket-Protocol: other\r\n"),
            ok_response("Sec-WebSocket-Extensions: permessage-deflate\r\n"),
            ok_response("").replace("HTTP/1.1", "HTTP/1.0"),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade websocket\r\n\r\n".to_string(),
        ];
        for case in cases {
            let (mut hs, _) = ClientHandshake::with_key(&request(), KEY, 1024).unwrap();
            assert!(
                hs.parse_response(case.as_bytes()).is_err(),
                "accepted: {case}"
            );
        }
    }

    #[test]
    fn a_repeated_accept_header_is_rejected_even_when_one_is_right() {
        let right = "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n";
        for extra in [
            "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n",
            right,
        ] {
            let (mut hs, _) = ClientHandshake::with_key(&request(), KEY, 1024).unwrap();
            match hs.parse_response(ok_response(extra).as_bytes()) {
                Err(e @ HandshakeError::WrongAccept { .. }) => {
                    assert!(e.to_string().contains(", "), "{e}")
                }
                other => panic!("{extra}: {other:?}"),
            }
        }
    }

    #[test]
    fn several_chosen_subprotocols_are_named_as_such() {
        for (answer, says) in [
            (
                "Sec-WebSocket-Protocol: chat, superchat\r\n",
                "several subprotocols (chat, superchat)",
            ),
            (
                "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: chat\r\n",
                "several",
            ),
            (
                "Sec-WebSocket-Protocol: other\r\n",
                "\"other\", which the client did not offer",
            ),
        ] {
            let (mut hs, _) = ClientHandshake::with_key(&request(), KEY, 1024).unwrap();
            match hs.parse_response(ok_response(answer).as_bytes()) {
                Err(e @ HandshakeError::UnexpectedProtocol(_)) => {
                    assert!(e.to_string().contains(says), "{e}")
                }
                other => panic!("{answer}: {other:?}"),
            }
        }
    }

    #[cfg(feature = "deflate")]
    #[test]
    fn permessage_deflate_enabled_twice_is_not_called_unoffered() {
        let mut req = request();
        req.deflate = Some(crate::proto::deflate::DeflateConfig::default());
        let (mut hs, _) = ClientHandshake::with_key(&req, KEY, 1024).unwrap();
        let answer =
            ok_response("Sec-WebSocket-Extensions: permessage-deflate, permessage-deflate\r\n");
        match hs.parse_response(answer.as_bytes()) {
            Err(e @ HandshakeError::BadExtension(_)) => {
                assert!(e.to_string().contains("more than once"), "{e}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refusal_carries_status_headers_and_body() {
        let (mut hs, _) = ClientHandshake::with_key(&request(), KEY, 1024).unwrap();
        let resp =
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 11\r\nX-Why: token\r\n\r\nno access!!";
        assert!(hs
            .parse_response(&resp[..resp.len() - 3])
            .unwrap()
            .is_none());
        match hs.parse_response(resp) {
            Err(HandshakeError::Rejected(r)) => {
                assert_eq!(r.status, 403);
                assert_eq!(r.headers["x-why"], "token");
                assert_eq!(&r.body[..], b"no access!!");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_chunk_size_as_big_as_usize_is_cut_short_without_overflow() {
        let (mut hs, _) = ClientHandshake::with_key(&request(), KEY, 1024).unwrap();
        let resp = b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n\
                     ffffffffffffffff\r\nhello";
        match hs.parse_response(resp) {
            Err(HandshakeError::Rejected(r)) => assert_eq!(&r.body[..], b"hello"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_refusal_is_framed_by_its_length_and_keeps_the_callers_content_type() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.append(header::SET_COOKIE, HeaderValue::from_static("a=1"));
        let out = refusal_response(StatusCode::UPGRADE_REQUIRED, &headers, b"{}");
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\n{}"), "{text}");
        for line in [
            "Content-Length: 2",
            "Connection: Upgrade, close",
            "Sec-WebSocket-Version: 13",
        ] {
            assert!(
                text.contains(&format!("\r\n{line}\r\n")),
                "{line} in {text}"
            );
        }
        assert!(
            text.contains("\r\ncontent-type: application/json\r\n"),
            "{text}"
        );
        assert!(!text.contains("text/plain"), "{text}");
        // What the client parses back.
        let (mut hs, _) = ClientHandshake::with_key(&request(), KEY, 1024).unwrap();
        match hs.parse_response(text.as_bytes()) {
            Err(HandshakeError::Rejected(r)) => {
                assert_eq!(r.status, 426);
                assert_eq!(r.headers["set-cookie"], "a=1");
                assert_eq!(&r.body[..], b"{}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refusals_whose_status_forbids_a_body_get_none_nor_its_length() {
        for (status, length) in [
            (StatusCode::NO_CONTENT, None),
            (StatusCode::NOT_MODIFIED, None),
            (StatusCode::RESET_CONTENT, Some("Content-Length: 0")),
        ] {
            let out = refusal_response(status, &HeaderMap::new(), b"dropped");
            let text = String::from_utf8(out).unwrap();
            assert!(text.ends_with("\r\nConnection: close\r\n\r\n"), "{text}");
            assert!(!text.contains("Content-Type"), "{text}");
            match length {
                Some(line) => assert!(text.contains(&format!("\r\n{line}\r\n")), "{text}"),
                None => assert!(!text.contains("Content-Length"), "{text}"),
            }
        }
    }

    #[test]
    fn refusal_body_is_bounded() {
        let (mut hs, _) = ClientHandshake::with_key(&request(), KEY, 1024).unwrap();
        let mut resp = b"HTTP/1.1 500 Oops\r\nContent-Length: 100000\r\n\r\n".to_vec();
        resp.extend(std::iter::repeat(b'x').take(3 * MAX_ERROR_BODY));
        match hs.parse_response(&resp) {
            Err(HandshakeError::Rejected(r)) => assert_eq!(r.body.len(), MAX_ERROR_BODY),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn requests_and_handshakes_printed_with_debug_show_no_credentials() {
        let mut req = request();
        req.headers.push(("cookie".into(), "session=c00kie".into()));
        req.headers
            .push(("Proxy-Authorization".into(), "Basic cHJveHk=".into()));
        req.headers.push(("X-Client".into(), "tests".into()));
        let (hs, sent) = ClientHandshake::with_key(&req, KEY, 1024).unwrap();
        let sent = String::from_utf8(sent).unwrap();
        for shown in [format!("{req:?}"), format!("{hs:?}")] {
            for secret in ["Bearer x", "c00kie", "cHJveHk="] {
                assert!(sent.contains(secret), "{secret} not sent");
                assert!(!shown.contains(secret), "{secret} in {shown}");
            }
        }
        let shown = format!("{req:?}");
        for kept in [
            "example.com:8080",
            "/chat?room=1",
            "X-Client",
            "tests",
            "cookie",
        ] {
            assert!(shown.contains(kept), "{kept} not in {shown}");
        }
        assert!(format!("{hs:?}").contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    }

    #[test]
    fn requests_and_responses_printed_with_debug_show_no_credentials_in_their_headers() {
        // What a server sees: the client's Authorization and Cookie.
        let mut req = request();
        req.headers.push(("Cookie".into(), "session=c00kie".into()));
        req.headers.push(("X-Client".into(), "tests".into()));
        let (mut hs, bytes) = ClientHandshake::with_key(&req, KEY, 1024).unwrap();
        let (seen, _) = parse_request(&bytes, 4096).unwrap().unwrap();
        assert_eq!(seen.headers["cookie"], "session=c00kie");
        let shown = format!("{seen:?}");
        for secret in ["Bearer x", "c00kie"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        for kept in [
            "\"authorization\": \"<redacted>\"",
            "\"x-client\": \"tests\"",
            KEY,
        ] {
            assert!(shown.contains(kept), "{kept} not in {shown}");
        }
        // What a client sees: a session cookie set with the 101.
        let answer = ok_response("Set-Cookie: session=s3ss10n; Path=/\r\nX-Served-By: edge-1\r\n");
        let (response, _) = hs.parse_response(answer.as_bytes()).unwrap().unwrap();
        let shown = format!("{response:?}");
        assert!(!shown.contains("s3ss10n"), "{shown}");
        for kept in [
            "\"set-cookie\": \"<redacted>\"",
            "\"x-served-by\": \"edge-1\"",
        ] {
            assert!(shown.contains(kept), "{kept} not in {shown}");
        }
    }

    #[test]
    fn a_refusal_printed_with_debug_does_not_show_the_credentials_sent() {
        let (mut hs, _) = ClientHandshake::with_key(&request(), KEY, 1024).unwrap();
        let error = hs
            .parse_response(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
            .unwrap_err();
        let HandshakeError::Rejected(r) = &error else {
            panic!("{error:?}")
        };
        // Kept for the caller, who may print it redacted (as `wsc -v` does)...
        assert!(r.request_head.as_deref().unwrap().contains("Bearer x"));
        // ...but not by `{:?}`, which a `main` returning `Result` uses.
        let shown = format!("{:?}", crate::Error::Handshake(error));
        assert!(shown.contains("401"), "{shown}");
        assert!(!shown.contains("Bearer x"), "{shown}");
    }

    #[test]
    fn a_refusals_body_preview_is_trimmed_text_of_at_most_200_characters() {
        let refusal = |body: &[u8]| {
            let (mut hs, _) = ClientHandshake::with_key(&request(), KEY, 1024).unwrap();
            let mut resp = format!(
                "HTTP/1.1 403 Forbidden\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            resp.extend_from_slice(body);
            match hs.parse_response(&resp) {
                Err(HandshakeError::Rejected(r)) => r.body_preview(),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(refusal(b" \r\n\t"), None);
        assert_eq!(refusal(b"\n no token \n").as_deref(), Some("no token"));
        assert_eq!(
            refusal(b"bad \xff byte").as_deref(),
            Some("bad \u{fffd} byte")
        );
        let long = "\u{e9}".repeat(300);
        assert_eq!(refusal(long.as_bytes()), Some("\u{e9}".repeat(200)));
    }

    #[test]
    fn refusals_without_length_do_not_wait() {
        let (mut hs, _) = ClientHandshake::with_key(&request(), KEY, 1024).unwrap();
        let resp = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nnope!\r\n3\r\n...\r\n0\r\n\r\n";
        match hs.parse_response(resp) {
            Err(HandshakeError::Rejected(r)) => assert_eq!(&r.body[..], b"nope!..."),
            other => panic!("{other:?}"),
        }
        let (mut hs, _) = ClientHandshake::with_key(&request(), KEY, 1024).unwrap();
        match hs.parse_response(b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n") {
            Err(HandshakeError::Rejected(r)) => assert!(r.body.is_empty()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_tls_answer_is_recognised_however_it_is_split() {
        // A read that got only the first byte of the alert (it was an HTTP error, retried).
        let alert = b"\x15\x03\x01\x00\x02\x02\x46";
        let (mut hs, _) = ClientHandshake::with_key(&request(), KEY, 1024).unwrap();
        assert!(matches!(hs.parse_response(&alert[..1]), Ok(None)));
        for split in 2..=alert.len() {
            let answer = hs.parse_response(&alert[..split]);
            assert!(
                matches!(answer, Err(HandshakeError::TlsAnswer)),
                "{answer:?}"
            );
        }
    }

    #[test]
    fn oversized_head_is_an_error() {
        let (mut hs, _) = ClientHandshake::with_key(&request(), KEY, 100).unwrap();
        let mut resp = b"HTTP/1.1 101 Switching Protocols\r\nX-Big: ".to_vec();
        resp.extend(std::iter::repeat(b'a').take(200));
        assert!(matches!(
            hs.parse_response(&resp),
            Err(HandshakeError::TooLarge { max: 100 })
        ));
    }

    #[test]
    fn server_rejects_bad_requests() {
        let good =
            String::from_utf8(ClientHandshake::with_key(&request(), KEY, 1024).unwrap().1).unwrap();
        let cases = [
            good.replace("GET", "POST"),
            good.replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
            good.replace(KEY, "c2hvcnQ="),
            good.replace("Upgrade: websocket\r\n", ""),
            good.replace("Host: example.com:8080\r\n", ""),
            // Twice: which would count?
            good.replace("Host: example.com:8080\r\n", "Host: a\r\nHost: b\r\n"),
            good.replace(
                "Sec-WebSocket-Version: 13\r\n",
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13\r\n",
            ),
            good.replace(
                &format!("Sec-WebSocket-Key: {KEY}\r\n"),
                &format!("Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Key: {KEY}\r\n"),
            ),
        ];
        for case in cases {
            assert!(
                parse_request(case.as_bytes(), 4096).is_err(),
                "accepted: {case}"
            );
        }
    }

    #[test]
    fn an_absolute_request_target_gives_its_resource_name() {
        let good =
            String::from_utf8(ClientHandshake::with_key(&request(), KEY, 1024).unwrap().1).unwrap();
        let line = good.lines().next().unwrap().to_string();
        for (target, path) in [
            ("http://example.com:8080/chat?room=1", "/chat?room=1"),
            ("HTTPS://example.com/x", "/x"),
            ("ws://example.com", "/"),
            ("http://example.com?q=1", "/?q=1"),
            ("/plain?x", "/plain?x"),
        ] {
            let case = good.replace(&line, &format!("GET {target} HTTP/1.1"));
            let (parsed, _) = parse_request(case.as_bytes(), 4096).unwrap().unwrap();
            assert_eq!(parsed.path, path, "{target}");
        }
    }

    #[test]
    fn a_426_names_the_upgrade_and_a_405_the_method_allowed() {
        let text =
            |status| String::from_utf8(refusal_response(status, &HeaderMap::new(), b"")).unwrap();
        let upgrade = text(StatusCode::UPGRADE_REQUIRED);
        for line in [
            "Upgrade: websocket\r\n",
            "Connection: Upgrade, close\r\n",
            "Sec-WebSocket-Version: 13\r\n",
        ] {
            assert!(upgrade.contains(line), "{upgrade}");
        }
        let method = text(StatusCode::METHOD_NOT_ALLOWED);
        assert!(method.contains("Allow: GET\r\n"), "{method}");
        assert!(method.contains("Connection: close\r\n"), "{method}");
    }

    #[test]
    fn rejects_header_injection() {
        let mut req = request();
        req.headers
            .push(("X-Evil".into(), "a\r\nInjected: yes".into()));
        assert!(ClientHandshake::with_key(&req, KEY, 1024).is_err());
        let mut req = request();
        req.path = "/a b".into();
        assert!(ClientHandshake::with_key(&req, KEY, 1024).is_err());
    }

    #[test]
    fn too_many_headers_says_how_many_are_allowed() {
        let mut hs = ClientHandshake::with_key(&request(), KEY, 1 << 16)
            .unwrap()
            .0;
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        let err = hs
            .parse_response(ok_response(&many).as_bytes())
            .unwrap_err();
        assert!(
            matches!(err, HandshakeError::TooManyHeaders { max: MAX_HEADERS }),
            "{err:?}"
        );
        assert!(err.to_string().contains("more than 100 headers"), "{err}");
        // Exactly the limit is fine.
        let mut hs = ClientHandshake::with_key(&request(), KEY, 1 << 16)
            .unwrap()
            .0;
        let most: String = (0..MAX_HEADERS - 3)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect();
        assert!(hs.parse_response(ok_response(&most).as_bytes()).is_ok());
    }

    #[test]
    fn a_host_header_replaces_the_urls_and_handshake_headers_are_refused() {
        let mut req = request();
        req.headers.push(("host".into(), "virtual.example".into()));
        let (_, bytes) = ClientHandshake::with_key(&req, KEY, 1024).unwrap();
        let (parsed, _) = parse_request(&bytes, 1 << 16).unwrap().unwrap();
        let hosts: Vec<_> = parsed.headers.get_all(header::HOST).iter().collect();
        assert_eq!(hosts, ["virtual.example"]);
        for name in [
            "Sec-WebSocket-Key",
            "upgrade",
            "Connection",
            "sec-websocket-protocol",
        ] {
            let mut req = request();
            req.headers.push((name.into(), "x".into()));
            let err = ClientHandshake::with_key(&req, KEY, 1024).unwrap_err();
            assert!(
                matches!(err, HandshakeError::InvalidRequestHeader(ref m) if m.contains(name)),
                "{err}"
            );
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// The value check that spares building a `HeaderValue` accepts exactly what
            /// `HeaderValue` accepts.
            #[test]
            fn header_values_are_checked_as_http_checks_them(
                value in "[\\x00-\\x21\\x7e-\\u{a0}a]{0,8}"
            ) {
                prop_assert_eq!(
                    validate_header("X-Test", &value).is_ok(),
                    HeaderValue::from_str(&value).is_ok()
                );
            }

            #[test]
            fn request_round_trip(path in "/[a-zA-Z0-9/?=&%._~-]{0,40}",
                                  protocols in proptest::collection::vec("[a-z][a-z0-9.]{0,10}", 0..4),
                                  headers in proptest::collection::vec(("X-[A-Za-z]{1,10}", "[ -~]{0,30}"), 0..5)) {
                let headers: Vec<(String, String)> =
                    headers.into_iter().map(|(n, v)| (n, v.trim().to_string())).collect();
                let req = ClientRequest { host: "h:1".into(), path: path.clone(), protocols: protocols.clone(),
                                          origin: None, extensions: None, headers: headers.clone(), ..Default::default() };
                let (_, bytes) = ClientHandshake::with_key(&req, KEY, 1 << 16).unwrap();
                let (parsed, n) = parse_request(&bytes, 1 << 16).unwrap().unwrap();
                prop_assert_eq!(n, bytes.len());
                prop_assert_eq!(parsed.path, path);
                prop_assert_eq!(parsed.protocols, protocols);
                for (name, value) in &headers {
                    prop_assert!(parsed.headers.get_all(name.as_str()).iter().any(|v| v.as_bytes() == value.as_bytes()));
                }
            }

            #[test]
            fn response_round_trip(offer in proptest::collection::vec("[a-z]{1,8}", 1..4), pick in 0usize..4) {
                let req = ClientRequest { host: "h".into(), path: "/".into(), protocols: offer.clone(),
                                          ..Default::default() };
                let (mut hs, bytes) = ClientHandshake::with_key(&req, KEY, 1 << 16).unwrap();
                let (parsed, _) = parse_request(&bytes, 1 << 16).unwrap().unwrap();
                let chosen = offer.get(pick).map(String::as_str);
                let resp = accept_response(&parsed, chosen, &[]);
                let (response, n) = hs.parse_response(&resp).unwrap().unwrap();
                prop_assert_eq!(n, resp.len());
                prop_assert_eq!(response.protocol.as_deref(), chosen);
            }

            #[test]
            fn response_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
                let (mut hs, _) = ClientHandshake::with_key(&request(), KEY, 1024).unwrap();
                let _ = hs.parse_response(&bytes);
            }
        }
    }
}
