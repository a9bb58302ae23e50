//! What a server's accept callback answers an upgrade request with: [`Accept`] (extra
//! response headers, the subprotocol) or [`Refusal`] (an HTTP error response). Both are plain
//! values checked when the answer is sent, so a mistake in one becomes a typed error and a
//! 500 response, never a malformed one.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;

use crate::proto::handshake::{forbids_body, Request};

/// Headers an accepted upgrade's 101 response gets from the handshake itself, or must not
/// have (every `Sec-WebSocket-*` of RFC 6455: the key and version are the request's).
const ACCEPT_OWNED: [&str; 9] = [
    "upgrade",
    "connection",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "sec-websocket-key",
    "sec-websocket-version",
    "content-length",
    "transfer-encoding",
];

/// Headers a refusal gets from its framing: it has exactly the body given, then closes.
const REFUSAL_OWNED: [&str; 3] = ["content-length", "transfer-encoding", "connection"];

/// Accepts an upgrade request, with extra response headers and, optionally, the
/// subprotocol. Without [`Accept::protocol`] the [`Acceptor`](super::Acceptor)'s own list
/// chooses, as in a plain accept.
///
/// ```
/// let accept = wsc::server::Accept::new()
///     .header("Set-Cookie", "session=abc; HttpOnly")
///     .protocol("v2.feed");
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct Accept {
    headers: Vec<(String, String)>,
    protocol: Option<String>,
}

impl Accept {
    /// Accepts with no extra headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a response header (repeatable, e.g. several `Set-Cookie`). The handshake's own
    /// headers (`Upgrade`, `Connection`, `Sec-WebSocket-*`) and body framing are not allowed:
    /// the accept call refuses such an answer with 500 and
    /// [`HandshakeError::InvalidAnswer`](crate::HandshakeError::InvalidAnswer).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Chooses the subprotocol, which must be one the client offered (see
    /// [`Request::protocols`]).
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocol = Some(protocol.into());
        self
    }

    /// The chosen subprotocol (checked against the offer) and the headers as a map.
    pub(crate) fn check(self, request: &Request) -> Result<(Option<String>, HeaderMap), String> {
        if let Some(p) = &self.protocol {
            if !request.protocols.contains(p) {
                return Err(format!(
                    "subprotocol {p:?} was not offered by the client (it offered {:?})",
                    request.protocols
                ));
            }
        }
        let headers = header_map(&self.headers, &ACCEPT_OWNED, "a 101 response")?;
        Ok((self.protocol, headers))
    }
}

/// Refuses an upgrade request with an HTTP response: a status, headers and a body (plain
/// text unless a `Content-Type` header says otherwise). The connection closes after it.
///
/// ```
/// let refusal = wsc::server::Refusal::new(401)
///     .header("WWW-Authenticate", "Bearer")
///     .body("a token is required\n");
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Refusal {
    status: Result<StatusCode, String>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Refusal {
    /// A refusal with `status` (a [`StatusCode`] or a `u16`) and an empty body. It must be a
    /// final status, not 1xx; 204, 205 and 304 take no body (HTTP forbids one).
    pub fn new<S>(status: S) -> Self
    where
        S: TryInto<StatusCode>,
        S::Error: std::fmt::Display,
    {
        let status = status
            .try_into()
            .map_err(|e| format!("bad status: {e}"))
            .and_then(|s| match s.is_informational() {
                true => Err(format!("a refusal needs a final status, not {s}")),
                false => Ok(s),
            });
        Refusal {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a response header (repeatable). `Content-Length`, `Transfer-Encoding` and
    /// `Connection` come from the framing and are not allowed.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The response body. A 204, 205 or 304 refusal with a non-empty body cannot be sent
    /// (HTTP forbids one there): the accept call answers 500 and returns
    /// [`HandshakeError::InvalidAnswer`](crate::HandshakeError::InvalidAnswer) rather than
    /// drop it silently.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The status, headers and body to send.
    pub(crate) fn check(self) -> Result<(StatusCode, HeaderMap, Vec<u8>), String> {
        let status = self.status?;
        if !self.body.is_empty() && forbids_body(status) {
            return Err(format!(
                "a {status} refusal cannot have a body (HTTP forbids one): drop the body or \
                 choose another status"
            ));
        }
        let headers = header_map(&self.headers, &REFUSAL_OWNED, "a refusal")?;
        Ok((status, headers, self.body))
    }
}

/// The headers as a map, if each is valid HTTP and none is one of `owned`.
fn header_map(
    headers: &[(String, String)],
    owned: &[&str],
    response: &str,
) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("{name:?} is not a valid header name"))?;
        if owned.contains(&name.as_str()) {
            let hint = match name.as_str() {
                "sec-websocket-protocol" => " (choose it with Accept::protocol)",
                _ => "",
            };
            return Err(format!("{response} gets its {name} header from wsc{hint}"));
        }
        let value = HeaderValue::from_bytes(value.as_bytes())
            .map_err(|_| format!("the value of {name} is not a valid header value"))?;
        map.append(name, value);
    }
    Ok(map)
}
