//! The library's errors as a command line user reads them. The library's hints name its API
//! (`TlsOptions::add_ca_pem_file`, `ClientBuilder::max_redirects`) for the programs that use
//! it; the tool's name its flags. Errors whose library message names no method are shown as
//! the library words them.

use std::fmt;

use wsc::rustls::{self, AlertDescription, CertificateError};
use wsc::{Error, HandshakeError, Phase, ProtocolError, RedirectError, Response};

/// An error shown in the tool's words, for `format!` and logs (`wsc serve`).
pub struct Described<'a>(pub &'a Error);

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_error(f, self.0)
    }
}

/// A client's error in the tool's words (see [`write_client_error`]): a reconnect attempt's.
pub struct DescribedForClient<'a>(pub &'a Error);

impl fmt::Display for DescribedForClient<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_client_error(f, self.0)
    }
}

/// Writes `e`, which ended the client, in the tool's words: as [`write_error`], and an
/// opening that timed out names the flag that bounds it (not for `wsc serve`'s logs).
pub fn write_client_error(f: &mut fmt::Formatter<'_>, e: &Error) -> fmt::Result {
    match e {
        Error::Timeout(phase @ (Phase::Connect | Phase::WebSocketHandshake)) => write!(
            f,
            "timed out during the {phase} (--connect-timeout bounds the whole opening)"
        ),
        Error::Timeout(Phase::TlsHandshake) => f.write_str(
            "timed out during the TLS handshake (--connect-timeout bounds the whole opening; \
             a server without TLS on this port waits for a request instead: for that, use a \
             ws:// URL)",
        ),
        _ => write_error(f, e),
    }
}

/// Writes `e` in the tool's words.
pub fn write_error(f: &mut fmt::Formatter<'_>, e: &Error) -> fmt::Result {
    match e {
        Error::Protocol(
            violation @ (ProtocolError::FrameTooLarge { size, max }
            | ProtocolError::MessageTooLarge { size, max }),
        ) => {
            // A frame's length is announced; a message's size is what it reached when it
            // passed the limit (more fragments, or more inflated bytes, may have followed).
            let more = match violation {
                ProtocolError::FrameTooLarge { .. } => "",
                _ => " or more",
            };
            write!(
                f,
                "a message of {size} bytes{more} exceeds the limit of {max} bytes"
            )?;
            let hint = if *size >= 1 << 48 {
                // No real message is 256 TiB: the length itself is the fault.
                "no real message is that big: a broken or hostile server"
            } else {
                "raise it with --max-message-size"
            };
            write!(f, " ({hint}; closed with {})", violation.close_code())
        }
        Error::Tls { host, source } => match tls_hint(source) {
            Some(hint) => write!(f, "TLS error with {host}: {source} ({hint})"),
            None => write!(f, "{e}"),
        },
        Error::Redirect(RedirectError::TooMany { max, location }) => write!(
            f,
            "redirect not followed: more than {max} redirects (the last to {location}); raise \
             the limit with --max-redirects"
        ),
        Error::Redirect(RedirectError::Downgrade { location }) => write!(
            f,
            "redirect not followed: refusing to follow a redirect from wss:// to unencrypted \
             {location}; allow it with --allow-insecure-redirects"
        ),
        Error::Handshake(HandshakeError::Rejected(resp)) => match location(resp) {
            Some(to) => write_redirect_refusal(f, resp, &to),
            None => write!(f, "{e}"),
        },
        _ => write!(f, "{e}"),
    }
}

/// The flags that mend a TLS failure whose library hint names methods.
fn tls_hint(source: &rustls::Error) -> Option<&'static str> {
    match source {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => Some(
            "the certificate is not signed by a trusted CA; trust its CA with --cacert FILE, or \
             skip verification only for testing with -k",
        ),
        // webpki's reason, which rustls passes on as it is (its debug name).
        rustls::Error::InvalidCertificate(CertificateError::Other(other))
            if other.to_string().contains("CaUsedAsEndEntity") =>
        {
            Some(
                "the server presents a CA certificate as its own: it needs a certificate for \
                 its name, issued by that CA, or trust the very certificate it presents with \
                 --cacert FILE",
            )
        }
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => {
            Some("the server requires a client certificate: give one with --cert FILE --key FILE")
        }
        _ => None,
    }
}

/// Where a refusal that is a redirect points.
fn location(resp: &Response) -> Option<String> {
    if !resp.status.is_redirection() {
        return None;
    }
    let to = resp.headers.get("location")?;
    Some(String::from_utf8_lossy(to.as_bytes()).into_owned())
}

/// A redirect not followed (no `-L`): the status, where it points, the flag, the body's start.
fn write_redirect_refusal(f: &mut fmt::Formatter<'_>, resp: &Response, to: &str) -> fmt::Result {
    write!(
        f,
        "WebSocket handshake failed: the server answered {} instead of 101 Switching \
         Protocols, a redirect to {to:?} (follow redirects with -L, --location)",
        resp.status
    )?;
    match resp.body_preview() {
        Some(preview) => write!(f, ": {preview:?}"),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `e` as the tool shows it.
    fn shown(e: Error) -> String {
        Described(&e).to_string()
    }

    #[test]
    fn a_size_limit_names_the_flag_unless_the_length_is_bogus() {
        let too_big = |size| {
            shown(Error::Protocol(ProtocolError::MessageTooLarge {
                size,
                max: 1 << 20,
            }))
        };
        assert_eq!(
            too_big(2 << 20),
            "a message of 2097152 bytes or more exceeds the limit of 1048576 bytes (raise it \
             with --max-message-size; closed with 1009 (message too big))"
        );
        assert!(too_big(i64::MAX as u64).contains("broken or hostile server"));
        // A frame's length is exact.
        let frame = shown(Error::Protocol(ProtocolError::FrameTooLarge {
            size: 5000,
            max: 4096,
        }));
        assert!(
            frame.starts_with("a message of 5000 bytes exceeds the limit of 4096 bytes ("),
            "{frame}"
        );
    }

    #[test]
    fn redirect_limits_name_the_flags() {
        let too_many = shown(Error::Redirect(RedirectError::TooMany {
            max: 2,
            location: "ws://127.0.0.1:1/x".into(),
        }));
        assert!(too_many.contains("--max-redirects"), "{too_many}");
        let downgrade = shown(Error::Redirect(RedirectError::Downgrade {
            location: "ws://127.0.0.1:1/x".into(),
        }));
        assert!(
            downgrade.contains("--allow-insecure-redirects"),
            "{downgrade}"
        );
        for message in [too_many, downgrade] {
            assert!(!message.contains("max_redirects"), "{message}");
            assert!(!message.contains("allow_insecure"), "{message}");
        }
    }
}
