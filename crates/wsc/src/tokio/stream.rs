//! The stream a tokio client connects over: TCP, or TLS on TCP.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use ::tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use ::tokio::net::TcpStream;

/// TCP, with TLS on top for `wss://`.
#[derive(Debug)]
#[non_exhaustive]
pub enum TokioStream {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`.
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl TokioStream {
    /// Queues TLS close_notify (RFC 8446 section 6.1) after the close handshake; the next
    /// flush sends it. TCP stays open: the server closes it first.
    pub(crate) fn close_notify(&mut self) {
        #[cfg(feature = "tls")]
        if let TokioStream::Tls(s) = self {
            s.get_mut().1.send_close_notify();
        }
    }

    /// The TCP stream underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            TokioStream::Plain(s) => s,
            #[cfg(feature = "tls")]
            TokioStream::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for TokioStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TokioStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            TokioStream::Tls(s) => {
                // A record failed: the plaintext before it, then its error, without waiting
                // on the socket again (which tokio-rustls would do first).
                if let Some(read) = read_after_failure(s, buf) {
                    return Poll::Ready(read);
                }
                match Pin::new(s.as_mut()).poll_read(cx, buf) {
                    // A server that closes TCP without close_notify after the WebSocket close
                    // is common; the WebSocket layer decides whether the close was clean.
                    Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        Poll::Ready(Ok(()))
                    }
                    // The records the same socket read brought in before the bad one.
                    Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::InvalidData => {
                        Poll::Ready(read_after_failure(s, buf).unwrap_or(Err(e)))
                    }
                    other => other,
                }
            }
        }
    }
}

/// [`crate::tls::read_after_failure`] into a `ReadBuf`.
#[cfg(feature = "tls")]
fn read_after_failure(
    tls: &mut tokio_rustls::client::TlsStream<TcpStream>,
    buf: &mut ReadBuf<'_>,
) -> Option<io::Result<()>> {
    let conn = tls.get_mut().1;
    // Checked first: the buffer may be spare capacity, which is not zeroed for a sound read.
    let failure = crate::tls::failure(conn)?;
    let read = crate::tls::read_plaintext_left(conn, failure, buf.initialize_unfilled());
    Some(read.map(|n| buf.advance(n)))
}

impl AsyncWrite for TokioStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            TokioStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            TokioStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TokioStream::Plain(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "tls")]
            TokioStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TokioStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(feature = "tls")]
            TokioStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
