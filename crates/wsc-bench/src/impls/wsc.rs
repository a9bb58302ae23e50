//! wsc, blocking: `ClientBuilder::connect()`, `WebSocket::read_ref()` (borrowed messages).

use bytes::Bytes;
use wsc::{ClientBuilder, MaybeTlsStream, Message, MessageRef, Utf8Bytes, WebSocket};

use super::{Kind, Opts, Result, SyncClient};

pub struct Client {
    ws: WebSocket<MaybeTlsStream>,
}

/// The builder every wsc scenario uses (blocking and async alike): no proxy from the
/// environment, compression only when asked, no size limits (16 MiB frames in `large`).
/// wsc sets TCP_NODELAY on the sockets it opens.
pub fn builder(addr: &str, path: &str, opts: &Opts) -> ClientBuilder {
    ClientBuilder::new(format!("ws://{addr}{path}"))
        .no_proxy()
        .compression(opts.compression)
        .max_message_size(None)
        .max_frame_size(None)
}

/// The message to send.
pub fn message(kind: Kind, data: &Bytes) -> Result<Message> {
    Ok(match kind {
        Kind::Text => Message::Text(Utf8Bytes::try_from_bytes(data.clone())?),
        Kind::Binary => Message::Binary(data.clone()),
    })
}

impl SyncClient for Client {
    fn connect(addr: &str, path: &str, opts: &Opts) -> Result<Self> {
        let ws = builder(addr, path, opts).connect()?;
        Ok(Client { ws })
    }

    fn recv<R>(&mut self, f: impl FnOnce(Kind, &[u8]) -> R) -> Result<Option<R>> {
        // The borrowed read: whole messages are lent from the read buffer, not copied.
        loop {
            match self.ws.read_ref() {
                Ok(MessageRef::Text(text)) => return Ok(Some(f(Kind::Text, text.as_bytes()))),
                Ok(MessageRef::Binary(data)) => return Ok(Some(f(Kind::Binary, data))),
                Ok(MessageRef::Close(_)) | Err(wsc::Error::ConnectionClosed) => return Ok(None),
                Ok(MessageRef::Ping(_) | MessageRef::Pong(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn send(&mut self, kind: Kind, data: &Bytes) -> Result<()> {
        self.ws.send(message(kind, data)?)?;
        Ok(())
    }

    fn close(mut self) -> Result<()> {
        self.ws.close_and_wait(None)?;
        Ok(())
    }

    fn finish(self) -> Result<()> {
        // `read` answered the close and waited for the server to close TCP.
        Ok(())
    }
}
