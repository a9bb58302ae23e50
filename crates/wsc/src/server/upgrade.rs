//! An upgrade request that was read and not answered yet: the server looks at it, may await
//! whatever its decision needs (a token lookup), then answers with [`Accept`] or
//! [`Refusal`].

use std::io::{Read, Write};

use super::{Accept, Acceptor, Refusal, Reply};
use crate::blocking::WebSocket;
use crate::error::Error;
use crate::proto::buffer::ReadBuffer;
use crate::proto::handshake::Request;

/// A valid upgrade request read from `stream`, waiting for its answer; from
/// [`Acceptor::read_request`] (or `read_request_async` on tokio). Answering it consumes it;
/// dropping it closes the stream unanswered.
///
/// ```no_run
/// use wsc::server::{Accept, Acceptor, Refusal};
///
/// # fn token_is_valid(_: &[u8]) -> bool { true }
/// let acceptor = Acceptor::new();
/// let listener = std::net::TcpListener::bind("127.0.0.1:9001")?;
/// let (tcp, _) = listener.accept()?;
/// let upgrade = acceptor.read_request(tcp)?;
/// let decision = match upgrade.request().headers.get("authorization") {
///     Some(token) if token_is_valid(token.as_bytes()) => Ok(Accept::new()),
///     _ => Err(Refusal::new(401).header("WWW-Authenticate", "Bearer")),
/// };
/// let (ws, request) = upgrade.answer(decision)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use = "the client waits for an answer: call answer"]
pub struct Upgrade<'a, S> {
    pub(crate) acceptor: &'a Acceptor,
    pub(crate) stream: S,
    pub(crate) request: Request,
    /// What the client sent after the request head (frames, if it did not wait for the 101).
    pub(crate) received: ReadBuffer,
}

impl<S> Upgrade<'_, S> {
    /// The request: path, headers, offered subprotocols.
    pub fn request(&self) -> &Request {
        &self.request
    }
}

impl<S: Read + Write> Upgrade<'_, S> {
    /// Answers the request: [`Accept`] opens the connection; [`Refusal`] sends its HTTP
    /// response and returns [`HandshakeError::CallbackRefused`](crate::HandshakeError).
    /// Returns the connection and the request.
    pub fn answer(
        self,
        decision: Result<Accept, Refusal>,
    ) -> Result<(WebSocket<S>, Request), Error> {
        let Upgrade {
            acceptor,
            mut stream,
            request,
            received,
        } = self;
        let (response, mut conn) = match acceptor.reply(&request, decision) {
            Reply::Open(response, conn) => (response, conn),
            Reply::Refuse(response, e) => {
                let _ = stream.write_all(&response);
                let _ = stream.flush();
                return Err(Error::Handshake(e));
            }
        };
        stream.write_all(&response)?;
        stream.flush()?;
        conn.adopt_read_buffer(received);
        Ok((WebSocket::from_connection(stream, conn, &[]), request))
    }
}
