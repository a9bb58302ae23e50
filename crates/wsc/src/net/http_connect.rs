//! HTTP CONNECT tunnels (RFC 9110 section 9.3.6), sans-I/O: the request to send and a parser
//! for the proxy's answer. The drivers in [`super::tunnel`] move the bytes.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::proxy::{host_port, ProxyError};

/// The most a proxy's response head may take: a CONNECT answer is a status line and a few
/// headers, and a peer must not make us buffer without bound.
pub(crate) const MAX_HEAD: usize = 16 * 1024;

/// The most header lines parsed in a response (on the stack, only while parsing).
const MAX_HEADERS: usize = 64;

/// The longest reason phrase kept for an error message.
const MAX_REASON: usize = 100;

/// The request asking the proxy for a tunnel to `host:port`, with Basic credentials if given.
/// `host` is an IPv6 literal without brackets, or a name or IPv4 address already validated by
/// the URL parser (no spaces or control characters).
pub(crate) fn request(host: &str, port: u16, credentials: Option<(&str, &str)>) -> Vec<u8> {
    let authority = host_port(host, port);
    let mut req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some((user, password)) = credentials {
        req.push_str("Proxy-Authorization: Basic ");
        req.push_str(&STANDARD.encode(format!("{user}:{password}")));
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.into_bytes()
}

/// Parses the proxy's answer from the bytes received so far: `Ok(None)` if the head is not
/// complete yet, `Ok(Some(len))` once a 2xx head is in, `len` bytes from the start (any bytes
/// after it are not part of the answer: the caller decides what they mean). Interim 1xx
/// heads before it are skipped, as RFC 9110 section 15.2 requires of clients. A non-2xx
/// final status is [`ProxyError::HttpStatus`] naming `target`; a malformed head, or heads
/// over [`MAX_HEAD`] in all, is [`ProxyError::BadResponse`].
///
/// `Content-Length` and `Transfer-Encoding` in a 2xx answer are ignored, as RFC 9110 requires
/// of clients: a 2xx answer to CONNECT has no body, and the tunnel starts right after the head.
pub(crate) fn parse_response(buf: &[u8], target: &str) -> Result<Option<usize>, ProxyError> {
    let mut start = 0;
    loop {
        match parse_head(&buf[start..], buf.len() >= MAX_HEAD, target)? {
            Head::Partial => return Ok(None),
            Head::Interim(len) => start += len,
            Head::Final(len) => return Ok(Some(start + len)),
        }
        if start > MAX_HEAD {
            return Err(too_big());
        }
    }
}

/// One head of the proxy's answer.
enum Head {
    Partial,
    /// A 1xx head of this length.
    Interim(usize),
    /// A 2xx head of this length.
    Final(usize),
}

/// [`parse_response`] for the head at the start of `buf`; `full`: the bytes received have
/// reached [`MAX_HEAD`], so a head still incomplete never will be.
fn parse_head(buf: &[u8], full: bool, target: &str) -> Result<Head, ProxyError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if full => return Err(too_big()),
        Ok(httparse::Status::Partial) => return Ok(Head::Partial),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ProxyError::BadResponse(format!(
                "more than {MAX_HEADERS} header lines in the answer to CONNECT"
            )))
        }
        Err(e) => {
            let hint = if buf.first() == Some(&0x05) {
                " (it looks like a SOCKS5 proxy: use socks5h://)"
            } else {
                ""
            };
            return Err(ProxyError::BadResponse(format!(
                "the answer to CONNECT is not valid HTTP: {e}{hint}"
            )));
        }
    };
    if head_len > MAX_HEAD {
        return Err(too_big());
    }
    let status = response.code.unwrap_or(0);
    if (200..300).contains(&status) {
        return Ok(Head::Final(head_len));
    }
    // 1xx heads are interim, but 101: a switch of protocols was not asked for, and opens
    // no tunnel.
    if (100..200).contains(&status) && status != 101 {
        return Ok(Head::Interim(head_len));
    }
    let mut reason: String = response.reason.unwrap_or("").trim().to_string();
    if reason.is_empty() {
        reason = http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("")
            .to_string();
    }
    if let Some((cut, _)) = reason.char_indices().nth(MAX_REASON) {
        reason.truncate(cut);
        reason.push_str("...");
    }
    Err(ProxyError::HttpStatus {
        target: target.to_string(),
        status,
        reason,
    })
}

/// The error for a head over [`MAX_HEAD`].
fn too_big() -> ProxyError {
    ProxyError::BadResponse(format!(
        "the answer to CONNECT exceeds {} KiB without ending",
        MAX_HEAD / 1024
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_without_and_with_credentials() {
        assert_eq!(
            request("example.com", 443, None),
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
        );
        assert_eq!(
            request("::1", 8080, Some(("Aladdin", "open sesame"))),
            b"CONNECT [::1]:8080 HTTP/1.1\r\nHost: [::1]:8080\r\n\
              Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n"
        );
    }

    #[test]
    fn interim_1xx_heads_before_the_2xx_are_skipped() {
        let answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\nX: y\r\n\r\n\
                       HTTP/1.1 200 Connection established\r\n\r\n";
        assert_eq!(parse_response(answer, "t:1"), Ok(Some(answer.len())));
        // The final head not in yet: wait for it.
        let interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2";
        assert_eq!(parse_response(interim, "t:1"), Ok(None));
        // A refusal after an interim head is the refusal.
        let refused = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 407 Auth\r\n\r\n";
        assert!(matches!(
            parse_response(refused, "t:1"),
            Err(ProxyError::HttpStatus { status: 407, .. })
        ));
        // 101 is no interim head here, and interim heads are bounded like one head.
        let switched = b"HTTP/1.1 101 Switching\r\n\r\nHTTP/1.1 200 OK\r\n\r\n";
        assert!(matches!(
            parse_response(switched, "t:1"),
            Err(ProxyError::HttpStatus { status: 101, .. })
        ));
        let endless = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_HEAD / 25 + 1);
        assert!(matches!(
            parse_response(&endless, "t:1"),
            Err(ProxyError::BadResponse(_))
        ));
    }

    #[test]
    fn a_2xx_head_is_accepted_with_its_length() {
        let head = b"HTTP/1.1 200 Connection established\r\nVia: squid\r\n\r\n";
        assert_eq!(parse_response(head, "t:1"), Ok(Some(head.len())));
        let mut more = head.to_vec();
        more.extend_from_slice(b"extra");
        assert_eq!(parse_response(&more, "t:1"), Ok(Some(head.len())));
        // HTTP/1.0 and an empty reason phrase are fine; so is any 2xx.
        let head = b"HTTP/1.0 204 \r\n\r\n";
        assert_eq!(parse_response(head, "t:1"), Ok(Some(head.len())));
        // Content-Length and Transfer-Encoding are ignored on a 2xx answer (RFC 9110).
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse_response(head, "t:1"), Ok(Some(head.len())));
    }

    #[test]
    fn partial_heads_need_more_bytes() {
        let head = b"HTTP/1.1 200 Connection established\r\n\r\n";
        for end in 0..head.len() {
            assert_eq!(parse_response(&head[..end], "t:1"), Ok(None), "{end}");
        }
    }

    #[test]
    fn non_2xx_is_a_status_error_with_the_target() {
        let head = b"HTTP/1.1 407 Proxy Authentication Required\r\n\
                     Proxy-Authenticate: Basic realm=\"x\"\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(
            parse_response(head, "example.com:443"),
            Err(ProxyError::HttpStatus {
                target: "example.com:443".into(),
                status: 407,
                reason: "Proxy Authentication Required".into(),
            })
        );
        let head = b"HTTP/1.1 403 \r\n\r\n";
        assert_eq!(
            parse_response(head, "h:1"),
            Err(ProxyError::HttpStatus {
                target: "h:1".into(),
                status: 403,
                reason: "Forbidden".into(),
            })
        );
        let long = format!("HTTP/1.1 502 {}\r\n\r\n", "x".repeat(500));
        match parse_response(long.as_bytes(), "h:1") {
            Err(ProxyError::HttpStatus {
                status: 502,
                reason,
                ..
            }) => {
                assert_eq!(reason.len(), MAX_REASON + 3)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_and_oversized_heads_are_bad_responses() {
        for bad in [
            &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/2 200\r\n\r\n",
            b"\x05\x00",
        ] {
            assert!(
                matches!(parse_response(bad, "t:1"), Err(ProxyError::BadResponse(_))),
                "{bad:?}"
            );
        }
        let socks = parse_response(b"\x05\xff", "t:1").unwrap_err().to_string();
        assert!(socks.contains("SOCKS5"), "{socks}");

        let mut big = b"HTTP/1.1 200 OK\r\nX-Filler: ".to_vec();
        big.resize(MAX_HEAD, b'a');
        assert!(matches!(
            parse_response(&big, "t:1"),
            Err(ProxyError::BadResponse(_))
        ));
        big.extend_from_slice(b"\r\n\r\n");
        assert!(matches!(
            parse_response(&big, "t:1"),
            Err(ProxyError::BadResponse(_))
        ));

        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for _ in 0..=MAX_HEADERS {
            many.extend_from_slice(b"A: b\r\n");
        }
        many.extend_from_slice(b"\r\n");
        assert!(matches!(
            parse_response(&many, "t:1"),
            Err(ProxyError::BadResponse(_))
        ));
    }
}
