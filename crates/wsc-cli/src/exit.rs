//! Exit statuses: one per kind of failure, so scripts can tell them apart.

use std::fmt;
use std::io::ErrorKind;

use wsc::{CloseFrame, Error, HandshakeError, ProxyError};

use crate::describe;

pub const EXIT_STATUS_HELP: &str = "\
Exit status:
  0   clean close (the server closed with 1000/1001, or --count reached, end of input,
      Ctrl-C, SIGTERM, SIGHUP, or stdout closed: the reader of `wsc URL | head` gone, which
      wsc closes with 1001); also a server that answers our close by closing TCP (a FIN,
      not a reset) without a close frame of its own
  1   other error
  2   bad arguments or URL (a header or subprotocol that cannot be sent included; a proxy
      URL, from --proxy or the environment, that cannot be used)
  3   cannot resolve the host (DNS)
  4   cannot connect (refused, unreachable; also the proxy, whose name does not resolve
      or that does not answer in time)
  5   TLS error (certificate, handshake)
  6   WebSocket handshake refused or invalid (the HTTP status is in the message; also the
      connection closed or reset before the server answered), or a redirect not followed
  7   timeout (connect, proxy, TLS or WebSocket handshake, --idle-timeout), or, while we
      close, the server taking nothing more from us (our input was not all sent) or not
      answering our close within 3 s
  8   protocol violation by the server, or a message from it past --max-message-size
      (the close code sent, such as 1002 or 1009, is in the message)
  9   an open connection lost without a close handshake (closed or reset; while we
      close, reset, or closed before our output was all out), or --reconnect gave up on
      connections that kept dropping soon after they opened
  10  no pong within the ping timeout
  11  the server closed with an error code (not 1000/1001, nor the --close-code sent)
  12  I/O error (stdin that cannot be read, a stdin line over --max-message-size or not
      UTF-8, stdout that cannot be written: reported after closing with 1001; the lines
      before it are sent)
  13  the proxy refused or failed (the proxy and its answer are in the message)
  14  the server closed cleanly (1000/1001) before --count messages arrived: fewer than
      asked for
  130 Ctrl-C before the connection is open, while --reconnect waits to reconnect, or a
      second Ctrl-C (143: SIGTERM, 129: SIGHUP)";

/// Why the command line tool failed.
#[derive(Debug)]
pub enum CliError {
    /// An error from the library.
    Wsc(Error),
    /// Bad arguments.
    Usage(String),
    /// The server closed with a code that signals a problem.
    ClosedWithError(CloseFrame),
    /// Local I/O (stdin, stdout, binding a port).
    Io(String, std::io::Error),
    /// No text or binary message for `--idle-timeout`.
    Idle(std::time::Duration),
    /// Closing, everything was sent but the server did not answer our close for this long.
    NoCloseReply(std::time::Duration),
    /// Closing, the server took none of our remaining output (input, the close) for this
    /// long: it was never all sent.
    Unsent(std::time::Duration),
    /// Stopped by a signal while `--reconnect` waited to reconnect (the signal came as the
    /// connection was lost, or during an attempt): nothing to close.
    Interrupted,
    /// `--reconnect` gave up: connections kept dropping soon after they opened (the last
    /// drop's cause).
    GaveUp(String),
    /// The server closed or reset the connection during the opening handshake, before it
    /// answered our upgrade request. `after_tls_without_cert`: over TLS, with no client
    /// certificate offered, where this is how some servers requiring one refuse (TLS 1.3 ends
    /// our side of the TLS handshake before the server has checked our certificate, and not
    /// every server sends the certificate_required alert). `plain`: a ws:// URL, where this
    /// is how a server that wants TLS on the port answers. `proxy`: the proxy the
    /// connection went through, which may be the one that closed it.
    ClosedInHandshake {
        error: Error,
        after_tls_without_cert: bool,
        plain: bool,
        proxy: Option<String>,
    },
    /// The server closed cleanly after `received` of the `count` messages of `--count`: a
    /// script asking for `count` can tell it got fewer.
    CountShort {
        received: u64,
        count: u64,
        frame: Option<CloseFrame>,
    },
    /// `--reconnect` gave up on reconnecting: `--reconnect-max-attempts` failed attempts in
    /// a row, or one no retry can mend (the last attempt's error, whose status is used).
    ReconnectFailed(Error),
}

impl CliError {
    /// An error of the opening (TCP, proxy, TLS, WebSocket handshake) as the tool reports it:
    /// the connection closed or reset before the server answered is a failed handshake
    /// (status 6), not a connection lost (9), which only an open connection can be.
    /// `secure`: the URL is wss://; `with_cert`: --cert was given; `proxy`: the proxy in use,
    /// if any.
    pub fn opening(error: Error, secure: bool, with_cert: bool, proxy: Option<&str>) -> CliError {
        let closed = match &error {
            Error::Handshake(HandshakeError::ConnectionClosed) | Error::ConnectionReset => true,
            // TLS and the proxy report their own phases' ends: this one is the handshake's.
            Error::Io(e) => matches!(
                e.kind(),
                ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe
                    | ErrorKind::UnexpectedEof
            ),
            _ => false,
        };
        if closed {
            CliError::ClosedInHandshake {
                error,
                after_tls_without_cert: secure && !with_cert,
                plain: !secure,
                proxy: proxy.map(str::to_string),
            }
        } else {
            CliError::Wsc(error)
        }
    }

    pub fn exit_status(&self) -> u8 {
        match self {
            CliError::ClosedInHandshake { .. } => 6,
            CliError::Usage(_) => 2,
            CliError::ClosedWithError(_) => 11,
            CliError::Io(..) => 12,
            CliError::Idle(_) | CliError::Unsent(_) | CliError::NoCloseReply(_) => 7,
            CliError::GaveUp(_) => 9,
            CliError::CountShort { .. } => 14,
            CliError::Interrupted => 130,
            CliError::Wsc(e) | CliError::ReconnectFailed(e) => wsc_status(e),
        }
    }
}

/// The exit status for a library error.
fn wsc_status(e: &Error) -> u8 {
    match e {
        Error::Url(_) | Error::TlsConfig(_) | Error::InvalidInput(_) => 2,
        Error::Dns { .. } => 3,
        Error::Connect { .. } => 4,
        Error::Tls { .. } | Error::TlsClosed { .. } => 5,
        // Our own request is at fault (a header, a subprotocol): the arguments.
        Error::Handshake(HandshakeError::InvalidRequestHeader(_)) => 2,
        Error::Handshake(_) | Error::Redirect(_) => 6,
        Error::Timeout(_) | Error::SendQueueFull { .. } => 7,
        Error::Protocol(_) => 8,
        Error::ConnectionReset => 9,
        Error::KeepaliveTimeout(_) => 10,
        // A proxy URL (--proxy, or from the environment) that cannot be used.
        Error::Proxy {
            error: ProxyError::InvalidUrl(_) | ProxyError::Unsupported(_),
            ..
        } => 2,
        Error::Proxy { .. } => 13,
        // A reset is the connection lost, as an end without a close is.
        Error::Io(e)
            if matches!(
                e.kind(),
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
            ) =>
        {
            9
        }
        Error::Io(_) => 12,
        _ => 1,
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The library's hints name its methods; the tool's name flags.
            CliError::Wsc(e) => describe::write_client_error(f, e),
            CliError::Usage(msg) => write!(f, "{msg}"),
            CliError::ClosedWithError(frame) => {
                write!(f, "the server closed the connection: {frame}")
            }
            CliError::Io(what, e) => write!(f, "{what}: {e}"),
            CliError::Idle(limit) => write!(
                f,
                "no message in {:.1} s (--idle-timeout)",
                limit.as_secs_f64()
            ),
            CliError::CountShort {
                received,
                count,
                frame,
            } => {
                f.write_str("the server closed the connection ")?;
                match frame {
                    Some(frame) => write!(f, "({frame})")?,
                    None => f.write_str("(no status)")?,
                }
                write!(f, " after {received} of the {count} messages of --count")
            }
            CliError::Interrupted => {
                f.write_str("interrupted while the connection was down (--reconnect)")
            }
            CliError::GaveUp(last) => write!(
                f,
                "giving up: connections keep dropping soon after they open \
                 (--reconnect-max-attempts); the last: {last}"
            ),
            CliError::ClosedInHandshake {
                error,
                after_tls_without_cert,
                plain,
                proxy,
            } => {
                f.write_str(
                    "WebSocket handshake failed: the server closed the connection before \
                     answering our upgrade request",
                )?;
                if let Error::Io(e) = error {
                    write!(f, " ({e})")?;
                }
                if let Some(proxy) = proxy {
                    // Some proxies say the tunnel is open before they have reached the
                    // server, and close it when they cannot.
                    write!(
                        f,
                        " through the proxy {proxy} (or the proxy did, unable to reach the \
                         server)"
                    )?;
                }
                if *after_tls_without_cert {
                    // A guess, said as one: rustls does not tell whether the server asked
                    // for a certificate.
                    f.write_str(
                        ", right after the TLS handshake: a server that requires a client \
                         certificate may refuse this way; give one with --cert FILE --key FILE",
                    )?;
                }
                if *plain {
                    // As a TLS server takes a request that is no TLS handshake.
                    f.write_str(
                        "; a server that speaks TLS on this port answers a ws:// URL this way: \
                         then use wss://",
                    )?;
                }
                Ok(())
            }
            CliError::ReconnectFailed(e) => {
                f.write_str("could not reconnect, giving up: ")?;
                describe::write_client_error(f, e)
            }
            CliError::NoCloseReply(waited) => write!(
                f,
                "the server did not answer our close within {} s",
                waited.as_secs()
            ),
            CliError::Unsent(waited) => write!(
                f,
                "closing, the server took nothing more from us in {} s: what we still had \
                 to send (input, or the close itself) was not all sent",
                waited.as_secs()
            ),
        }
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        CliError::Wsc(e)
    }
}
