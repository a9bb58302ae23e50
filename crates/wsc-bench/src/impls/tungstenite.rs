//! tungstenite, blocking: `client_with_config` over a `std::net::TcpStream`, `read()`.

use std::net::TcpStream;

use bytes::Bytes;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, Utf8Bytes, WebSocket};

use super::{err, Kind, Opts, Result, SyncClient};

pub struct Client {
    ws: WebSocket<TcpStream>,
}

/// Default configuration, without the frame and message size limits.
pub fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None)
}

/// The message to send.
pub fn message(kind: Kind, data: &Bytes) -> Result<Message> {
    Ok(match kind {
        Kind::Text => Message::Text(Utf8Bytes::try_from(data.clone())?),
        Kind::Binary => Message::Binary(data.clone()),
    })
}

fn is_closed(e: &tungstenite::Error) -> bool {
    matches!(
        e,
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed
    )
}

impl Client {
    /// Reads (and drops) until the connection is closed.
    fn drain(&mut self) -> Result<()> {
        loop {
            match self.ws.read() {
                Ok(_) => {}
                Err(e) if is_closed(&e) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl SyncClient for Client {
    fn connect(addr: &str, path: &str, opts: &Opts) -> Result<Self> {
        if opts.compression {
            return Err(err("tungstenite has no permessage-deflate"));
        }
        let tcp = TcpStream::connect(addr)?;
        tcp.set_nodelay(true)?;
        let (ws, _response) = tungstenite::client::client_with_config(
            format!("ws://{addr}{path}"),
            tcp,
            Some(config()),
        )
        .map_err(|e| err(e.to_string()))?;
        Ok(Client { ws })
    }

    fn recv<R>(&mut self, f: impl FnOnce(Kind, &[u8]) -> R) -> Result<Option<R>> {
        loop {
            match self.ws.read() {
                Ok(Message::Text(text)) => return Ok(Some(f(Kind::Text, text.as_bytes()))),
                Ok(Message::Binary(data)) => return Ok(Some(f(Kind::Binary, &data))),
                Ok(Message::Close(_)) => return Ok(None),
                Ok(_) => {}
                Err(e) if is_closed(&e) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn send(&mut self, kind: Kind, data: &Bytes) -> Result<()> {
        self.ws.send(message(kind, data)?)?;
        Ok(())
    }

    fn close(mut self) -> Result<()> {
        self.ws.close(None)?;
        self.drain()
    }

    fn finish(mut self) -> Result<()> {
        // The next read writes the queued close reply and reports the end.
        self.drain()
    }
}
