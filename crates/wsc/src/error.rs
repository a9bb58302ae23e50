//! The crate's error type: one enum, with a sub-enum per area and messages a user can act on.

use std::fmt;
use std::io;

use crate::net::ProxyError;
use crate::proto::close::{CloseCode, ClosePayloadError};
use crate::proto::frame::FrameError;
use crate::proto::handshake::HandshakeError;
use crate::url::UrlError;

/// Everything that can go wrong in `wsc`. [`crate::reconnect::is_retryable`] tells the
/// errors worth another attempt from those that will recur.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The URL could not be used.
    Url(UrlError),
    /// The host name did not resolve.
    Dns {
        /// The host that was looked up.
        host: String,
        /// What the resolver said.
        source: io::Error,
    },
    /// No TCP connection could be made to any address of the host.
    Connect {
        /// The host and port.
        target: String,
        /// The error of the last address tried.
        source: io::Error,
    },
    /// A phase did not finish in time.
    Timeout(Phase),
    /// The proxy refused or botched the tunnel to the server.
    Proxy {
        /// The proxy, as `scheme://host:port`.
        proxy: String,
        /// What went wrong.
        error: ProxyError,
    },
    /// A redirect of the opening handshake could not be followed.
    Redirect(RedirectError),
    /// A keepalive ping got no pong within the deadline, and nothing else arrived either: the
    /// peer, or the path to it, is dead.
    KeepaliveTimeout(std::time::Duration),
    /// The TLS configuration could not be built (certificate files, keys).
    TlsConfig(String),
    /// The TLS handshake or a TLS record failed.
    #[cfg(feature = "tls")]
    Tls {
        /// The server name being verified.
        host: String,
        /// What rustls reported.
        source: rustls::Error,
    },
    /// The server closed or reset the connection during the TLS handshake, without a TLS
    /// alert: a server that does not speak TLS on this port, or one going down.
    TlsClosed {
        /// The server name being connected to.
        host: String,
    },
    /// Reading from or writing to the connection failed.
    Io(io::Error),
    /// The server refused or botched the WebSocket opening handshake.
    Handshake(HandshakeError),
    /// The peer broke the WebSocket protocol; a close frame with
    /// [`ProtocolError::close_code`] was sent to it.
    Protocol(ProtocolError),
    /// The peer closed or reset the TCP connection without a close handshake (also when a
    /// write finds it gone: a reset or a broken pipe). Messages that arrived before are
    /// delivered first. A peer that ended the stream in order (a FIN, not a reset) is told
    /// by [`Connection::peer_ended_stream`](crate::proto::Connection::peer_ended_stream): after our
    /// own close, some servers answer so instead of with a close frame, which a caller may
    /// count as a clean end.
    ConnectionReset,
    /// The connection is closed (the close handshake completed or the connection failed);
    /// nothing more will be received.
    ConnectionClosed,
    /// A reconnecting client is between connections: the message was not sent, nor queued
    /// (send it again after [`crate::reconnect::Event::Reconnected`]).
    NotConnected,
    /// A reconnecting client gave up: `attempts` in a row failed (or, as a failure, dropped
    /// before the connection was stable), reaching [`crate::Reconnect::max_attempts`], or
    /// the last failed with an error no retry can mend. The events and the error returned
    /// before this one say why.
    GaveUp {
        /// The failed attempts in a row, the last one included.
        attempts: u32,
    },
    /// A message or close was sent after this side had already sent a close frame.
    AlreadyClosed,
    /// A message was not sent, nor queued: the peer has not taken the `queued` bytes queued
    /// before it (sends whose writes timed out, or output fed and not yet flushed) within
    /// the write timeout. The
    /// connection stays usable: send the message again once the peer reads (a `flush` that
    /// succeeds, or a read). The async client's `send` and `Sink::poll_ready` say so too,
    /// once the write buffer is full and the write timeout runs out.
    SendQueueFull {
        /// Bytes still queued from earlier sends.
        queued: usize,
    },
    /// Something the caller asked to send is not allowed by the protocol.
    InvalidInput(&'static str),
    /// The operating system could not supply random bytes for masking keys.
    Random(getrandom::Error),
}

/// Why a redirect was not followed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedirectError {
    /// The server redirected more times than allowed.
    TooMany {
        /// The limit.
        max: u32,
        /// Where the last redirect pointed.
        location: String,
    },
    /// A `wss://` server redirected to a `ws://` URL, which is not allowed by default.
    Downgrade {
        /// Where the redirect pointed.
        location: String,
    },
    /// A redirect without a usable `Location` header.
    BadLocation {
        /// The header's value (empty when there was none).
        location: String,
        /// Why it cannot be used.
        error: Option<UrlError>,
    },
}

impl fmt::Display for RedirectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedirectError::TooMany { max, location } => write!(
                f,
                "more than {max} redirects (the last to {}); raise the limit with \
                 max_redirects (--max-redirects)",
                shortened(location)
            ),
            RedirectError::Downgrade { location } => write!(
                f,
                "refusing to follow a redirect from wss:// to unencrypted {}; allow it \
                 with allow_insecure_redirects (--allow-insecure-redirects)",
                shortened(location)
            ),
            RedirectError::BadLocation { location, error } => {
                write!(
                    f,
                    "the redirect's Location {:?} is not usable",
                    shortened(location)
                )?;
                if let Some(e) = error {
                    write!(f, ": {e}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for RedirectError {}

/// A location as a message shows it: its first 200 characters, and how long it is when
/// longer (a server's Location may fill the whole 64 KiB head).
fn shortened(location: &str) -> std::borrow::Cow<'_, str> {
    const SHOWN: usize = 200;
    match location.char_indices().nth(SHOWN) {
        None => location.into(),
        Some((cut, _)) => format!("{}... ({} bytes)", &location[..cut], location.len()).into(),
    }
}

/// The phase of a connection that ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Resolving the host and opening the TCP connection.
    Connect,
    /// Opening the tunnel through a proxy (HTTP CONNECT or SOCKS5).
    Proxy,
    /// The TLS handshake.
    TlsHandshake,
    /// Sending the upgrade request and receiving the server's response.
    WebSocketHandshake,
    /// Waiting for data on an open connection (the read timeout).
    Read,
    /// Writing to a peer that does not accept data.
    Write,
    /// Closing: our close frame was not written, or not answered by the peer's, within the
    /// close timeout (the connection was then dropped). A server that answers but keeps TCP
    /// open is no error: the close handshake is done, and the wait for TCP ends quietly.
    Close,
}

impl Phase {
    /// What bounded the phase and what a timeout in it means, for [`Error`]'s message.
    fn timeout_hint(self) -> &'static str {
        match self {
            Phase::Connect => {
                "no answer within ClientBuilder::connect_timeout or open_timeout: the host is \
                 down, or a firewall drops the packets"
            }
            Phase::Proxy => {
                "the tunnel did not open in time; a proxy of another kind than its URL says \
                 never answers: http:// is for HTTP CONNECT, socks5:// and socks5h:// for SOCKS5"
            }
            Phase::TlsHandshake => {
                "not done within ClientBuilder::handshake_timeout or open_timeout; a server \
                 without TLS on this port waits for a request instead: for that, use a ws:// URL"
            }
            Phase::WebSocketHandshake => {
                "no complete response within ClientBuilder::handshake_timeout or open_timeout: \
                 is this a WebSocket endpoint?"
            }
            Phase::Read => "nothing arrived within the read timeout; the connection stays open",
            Phase::Write => {
                "the peer took none of our data within the write timeout; what was not written \
                 stays queued and the connection open"
            }
            Phase::Close => {
                "our close was not written or not answered within the close timeout; the \
                 connection was dropped"
            }
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Connect => "TCP connect",
            Phase::Proxy => "proxy handshake",
            Phase::TlsHandshake => "TLS handshake",
            Phase::WebSocketHandshake => "WebSocket handshake",
            Phase::Read => "read",
            Phase::Write => "write",
            Phase::Close => "closing handshake",
        })
    }
}

/// A violation of RFC 6455 by the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A malformed frame header.
    Frame(FrameError),
    /// RSV bits set that no negotiated extension claims.
    ReservedBits(u8),
    /// A server sent a masked frame.
    MaskedFrameFromServer,
    /// A client sent an unmasked frame.
    UnmaskedFrameFromClient,
    /// A continuation frame arrived with no fragmented message in progress.
    UnexpectedContinuation,
    /// A new text or binary frame arrived while a fragmented message was still in progress.
    ExpectedContinuation,
    /// A text message (or close reason) that is not valid UTF-8.
    InvalidUtf8,
    /// A close frame with a bad payload.
    InvalidClose(ClosePayloadError),
    /// A compressed message that is not a valid DEFLATE stream.
    BadCompression(String),
    /// A frame bigger than the configured maximum.
    FrameTooLarge {
        /// The announced payload length.
        size: u64,
        /// The configured limit.
        max: usize,
    },
    /// A message bigger than the configured maximum.
    MessageTooLarge {
        /// The size the message would reach.
        size: u64,
        /// The configured limit.
        max: usize,
    },
}

impl ProtocolError {
    /// The close code sent to the peer for this violation.
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8
            | ProtocolError::BadCompression(_)
            | ProtocolError::InvalidClose(ClosePayloadError::InvalidReason) => {
                CloseCode::INVALID_PAYLOAD
            }
            ProtocolError::FrameTooLarge { .. } | ProtocolError::MessageTooLarge { .. } => {
                CloseCode::MESSAGE_TOO_BIG
            }
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Frame(e) => write!(f, "{e}"),
            ProtocolError::ReservedBits(bits) => {
                write!(
                    f,
                    "reserved bits {bits:#05b} set on a frame where no negotiated extension \
                     allows them"
                )
            }
            ProtocolError::MaskedFrameFromServer => f.write_str("the server sent a masked frame"),
            ProtocolError::UnmaskedFrameFromClient => {
                f.write_str("the client sent an unmasked frame")
            }
            ProtocolError::UnexpectedContinuation => {
                f.write_str("continuation frame without a message in progress")
            }
            ProtocolError::ExpectedContinuation => {
                f.write_str("new data frame while a fragmented message is in progress")
            }
            ProtocolError::InvalidUtf8 => f.write_str("text is not valid UTF-8"),
            ProtocolError::BadCompression(why) => {
                write!(
                    f,
                    "compressed message is not valid permessage-deflate data: {why}"
                )
            }
            ProtocolError::InvalidClose(ClosePayloadError::Truncated) => {
                f.write_str("close frame with a 1-byte payload")
            }
            ProtocolError::InvalidClose(ClosePayloadError::InvalidCode(code)) => {
                write!(f, "close frame with invalid status code {code}")
            }
            ProtocolError::InvalidClose(ClosePayloadError::InvalidReason) => {
                f.write_str("close frame whose reason is not valid UTF-8")
            }
            ProtocolError::FrameTooLarge { size, max } => write!(
                f,
                "frame of {size} bytes exceeds the maximum frame size of {max} bytes \
                 (raise it with max_frame_size)"
            ),
            ProtocolError::MessageTooLarge { size, max } => write!(
                f,
                "message of {size} bytes or more exceeds the maximum message size of {max} bytes \
                 (raise it with max_message_size)"
            ),
        }
    }
}

impl std::error::Error for ProtocolError {}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Url(e) => write!(f, "invalid URL: {e}"),
            Error::Dns { host, source } => write!(f, "cannot resolve host {host:?}: {source}"),
            Error::Connect { target, source } => write!(f, "cannot connect to {target}: {source}"),
            Error::Timeout(phase) => {
                write!(f, "timed out during the {phase} ({})", phase.timeout_hint())
            }
            Error::Proxy { proxy, error } => write!(f, "proxy {proxy}: {error}"),
            Error::Redirect(e) => write!(f, "redirect not followed: {e}"),
            Error::KeepaliveTimeout(waited) => write!(
                f,
                "no pong within {:.1} s of a keepalive ping, nor any other data since: the \
                 peer or the network path to it is dead",
                waited.as_secs_f64()
            ),
            Error::TlsConfig(msg) => write!(f, "TLS configuration: {msg}"),
            Error::TlsClosed { host } => write!(
                f,
                "{host} closed the connection during the TLS handshake, without saying why (a \
                 TLS alert): it refused something of ours, most often a missing client \
                 certificate it requires (TlsOptions::client_cert_pem_files, --cert/--key) or \
                 a signature algorithm it cannot use; or it went down meanwhile; or it does \
                 not speak TLS on this port (then use a ws:// URL)"
            ),
            #[cfg(feature = "tls")]
            Error::Tls { host, source } => {
                match source {
                    // rustls says it with the algorithm's DER bytes and a list of numbers.
                    rustls::Error::InvalidCertificate(
                        rustls::CertificateError::UnsupportedSignatureAlgorithmContext {
                            signature_algorithm_id,
                            ..
                        },
                    ) => write!(
                        f,
                        "TLS error with {host}: invalid peer certificate: signed with {}, \
                         which this client does not accept (SHA-1 and MD5 are broken; the \
                         server needs a certificate signed with SHA-256 or better)",
                        signature_algorithm_name(signature_algorithm_id)
                    )?,
                    _ => write!(f, "TLS error with {host}: {source}")?,
                }
                if let rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) =
                    source
                {
                    // The first bytes back were no TLS record: plain HTTP, most often.
                    f.write_str(" (the server does not speak TLS on this port: use a ws:// URL?)")?;
                }
                if let rustls::Error::InvalidCertificate(cert) = source {
                    let hint = match cert {
                        rustls::CertificateError::NotValidForName
                        | rustls::CertificateError::NotValidForNameContext { .. } => {
                            " (the certificate does not name this host: its subjectAltName \
                             must list the name or address, a common name (CN) alone does not \
                             count)"
                        }
                        rustls::CertificateError::Expired
                        | rustls::CertificateError::ExpiredContext { .. } => {
                            " (the certificate has expired)"
                        }
                        rustls::CertificateError::UnknownIssuer => {
                            " (the certificate is not signed by a trusted CA; trust its CA with \
                             TlsOptions::add_ca_pem_file (--cacert), or skip verification only \
                             for testing (danger_accept_invalid_certs, -k))"
                        }
                        rustls::CertificateError::BadSignature => {
                            " (its signature does not verify with the key of the trusted CA \
                             of its issuer's name: a key too weak to be accepted signs it or \
                             is its own (RSA under 2048 bits), another CA by that name is \
                             trusted (as in SSL_CERT_FILE or SSL_CERT_DIR), the certificate \
                             was altered, or the server signs with a key that is not its \
                             certificate's)"
                        }
                        rustls::CertificateError::NotValidYet
                        | rustls::CertificateError::NotValidYetContext { .. } => {
                            " (the certificate is not valid yet: is this machine's clock right?)"
                        }
                        // webpki's reason, which rustls passes on as it is (its debug name).
                        rustls::CertificateError::Other(other)
                            if other.to_string().contains("CaUsedAsEndEntity") =>
                        {
                            " (the server presents a CA certificate as its own: it needs a \
                             certificate for its name, issued by that CA, or trust the very \
                             certificate it presents with TlsOptions::add_ca_pem_file \
                             (--cacert))"
                        }
                        _ => "",
                    };
                    f.write_str(hint)?;
                }
                if let rustls::Error::AlertReceived(alert) = source {
                    let hint = match alert {
                        rustls::AlertDescription::CertificateRequired => {
                            " (the server requires a client certificate: TlsOptions::\
                             client_cert_pem_files, --cert/--key)"
                        }
                        rustls::AlertDescription::ProtocolVersion => {
                            " (the server speaks no TLS version this client does: TLS 1.2 \
                             and 1.3; older ones are insecure and not offered)"
                        }
                        // Alerts about a certificate, from a server: about ours.
                        rustls::AlertDescription::UnknownCA
                        | rustls::AlertDescription::BadCertificate
                        | rustls::AlertDescription::UnsupportedCertificate
                        | rustls::AlertDescription::CertificateExpired
                        | rustls::AlertDescription::CertificateRevoked
                        | rustls::AlertDescription::CertificateUnknown
                        | rustls::AlertDescription::AccessDenied => {
                            " (the server refused our client certificate (--cert/--key): not \
                             issued by a CA it trusts, expired, revoked, or not one it \
                             accepts)"
                        }
                        rustls::AlertDescription::HandshakeFailure => {
                            " (the server refused the handshake: no cipher suite in common, \
                             or, with TLS 1.2, a client certificate it requires: --cert/--key)"
                        }
                        _ => "",
                    };
                    f.write_str(hint)?;
                }
                Ok(())
            }
            Error::Io(e) => write!(f, "I/O error: {e}"),
            // Our own request, refused before anything was sent.
            Error::Handshake(e @ HandshakeError::InvalidRequestHeader(_)) => {
                write!(f, "cannot send the upgrade request: {e}")
            }
            Error::Handshake(e) => write!(f, "WebSocket handshake failed: {e}"),
            Error::Protocol(e) => {
                write!(
                    f,
                    "protocol violation by the peer: {e} (closed with {})",
                    e.close_code()
                )
            }
            Error::ConnectionReset => {
                f.write_str("the peer closed the connection without a closing handshake")
            }
            Error::ConnectionClosed => f.write_str("the connection is closed"),
            Error::NotConnected => f.write_str(
                "not sent: the connection dropped and the client is reconnecting (send it \
                 again once reconnected)",
            ),
            Error::GaveUp { attempts } => write!(
                f,
                "reconnecting gave up after {attempts} failed attempt{} in a row (a connection \
                 that drops before Reconnect::stable_after counts as one; \
                 Reconnect::max_attempts bounds them)",
                if *attempts == 1 { "" } else { "s" }
            ),
            Error::AlreadyClosed => f.write_str("cannot send: a close frame was already sent"),
            Error::SendQueueFull { queued } => write!(
                f,
                "message not sent: the peer has not taken the {queued} bytes queued before it \
                 within the write timeout (send it again once the peer reads)"
            ),
            Error::InvalidInput(what) => write!(f, "invalid input: {what}"),
            Error::Random(e) => write!(f, "no randomness for masking keys: {e}"),
        }
    }
}

/// The name of a certificate's signature algorithm, from its DER `AlgorithmIdentifier`, for
/// the broken ones a server may still present; others are "an unsupported algorithm".
#[cfg(feature = "tls")]
fn signature_algorithm_name(der: &[u8]) -> &'static str {
    // The OIDs in DER: PKCS #1 1.2.840.113549.1.1.{5,4}, ANSI X9.62 1.2.840.10045.4.1.
    const NAMED: [(&[u8], &str); 3] = [
        (
            &[
                0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05,
            ],
            "SHA-1 with RSA",
        ),
        (
            &[
                0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x04,
            ],
            "MD5 with RSA",
        ),
        (
            &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01],
            "ECDSA with SHA-1",
        ),
    ];
    NAMED
        .iter()
        .find(|(oid, _)| der.windows(oid.len()).any(|w| w == *oid))
        .map_or("an unsupported algorithm", |(_, name)| name)
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Url(e) => Some(e),
            Error::Proxy { error, .. } => Some(error),
            Error::Redirect(e) => Some(e),
            Error::Dns { source, .. } | Error::Connect { source, .. } => Some(source),
            #[cfg(feature = "tls")]
            Error::Tls { source, .. } => Some(source),
            Error::Io(e) => Some(e),
            Error::Handshake(e) => Some(e),
            Error::Protocol(e) => Some(e),
            Error::Random(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<HandshakeError> for Error {
    fn from(e: HandshakeError) -> Self {
        Error::Handshake(e)
    }
}

impl From<UrlError> for Error {
    fn from(e: UrlError) -> Self {
        Error::Url(e)
    }
}

impl From<getrandom::Error> for Error {
    fn from(e: getrandom::Error) -> Self {
        Error::Random(e)
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "tls")]
    fn tls(source: rustls::Error) -> String {
        let host = "feed.test".to_string();
        Error::Tls { host, source }.to_string()
    }

    #[test]
    #[cfg(feature = "tls")]
    fn a_certificate_signed_with_sha1_is_said_so_not_in_der_bytes() {
        let sha1_rsa = vec![
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05, 0x05, 0x00,
        ];
        let message = tls(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnsupportedSignatureAlgorithmContext {
                signature_algorithm_id: sha1_rsa,
                supported_algorithms: vec![],
            },
        ));
        assert!(
            message.contains("signed with SHA-1 with RSA, which"),
            "{message}"
        );
        assert!(!message.contains("[6, 9"), "{message}");
        let message = tls(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnsupportedSignatureAlgorithmContext {
                signature_algorithm_id: vec![0x06, 0x03, 0x2b, 0x65, 0x71],
                supported_algorithms: vec![],
            },
        ));
        assert!(
            message.contains("signed with an unsupported algorithm"),
            "{message}"
        );
    }

    #[test]
    #[cfg(feature = "tls")]
    fn a_servers_alert_about_a_certificate_is_about_ours() {
        let message = tls(rustls::Error::AlertReceived(
            rustls::AlertDescription::UnknownCA,
        ));
        assert!(
            message.contains("refused our client certificate"),
            "{message}"
        );
    }

    #[test]
    fn a_long_redirect_location_is_shortened_in_messages() {
        let location = format!("ws://h/{}", "a".repeat(60_000));
        let message = RedirectError::TooMany {
            max: 10,
            location: location.clone(),
        }
        .to_string();
        assert!(message.len() < 400, "{}", message.len());
        assert!(message.contains("... (60007 bytes)"), "{message}");
        let short = RedirectError::Downgrade {
            location: "ws://h/x".into(),
        };
        assert!(
            short.to_string().contains("unencrypted ws://h/x;"),
            "{short}"
        );
    }
}
