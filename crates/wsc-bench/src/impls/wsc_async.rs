//! wsc, async: `ClientBuilder::connect_async()`, `WebSocketStream::recv_ref()` (borrowed).

use bytes::Bytes;
use wsc::tokio::{TokioStream, WebSocketStream};
use wsc::MessageRef;

use super::wsc::{builder, message};
use super::{AsyncClient, Kind, Opts, Result};

pub struct Client {
    ws: WebSocketStream<TokioStream>,
}

impl AsyncClient for Client {
    async fn connect(addr: &str, path: &str, opts: &Opts) -> Result<Self> {
        let (ws, _response) = builder(addr, path, opts).connect_async().await?;
        Ok(Client { ws })
    }

    async fn recv<R>(&mut self, f: impl FnOnce(Kind, &[u8]) -> R) -> Result<Option<R>> {
        // The borrowed read: whole messages are lent from the read buffer, not copied.
        loop {
            match self.ws.recv_ref().await {
                Some(Ok(MessageRef::Text(text))) => {
                    return Ok(Some(f(Kind::Text, text.as_bytes())))
                }
                Some(Ok(MessageRef::Binary(data))) => return Ok(Some(f(Kind::Binary, data))),
                Some(Ok(MessageRef::Close(_))) | None => return Ok(None),
                Some(Err(wsc::Error::ConnectionClosed)) => return Ok(None),
                Some(Ok(MessageRef::Ping(_) | MessageRef::Pong(_))) => {}
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }

    async fn send(&mut self, kind: Kind, data: &Bytes) -> Result<()> {
        self.ws.send(message(kind, data)?).await?;
        Ok(())
    }

    async fn close(mut self) -> Result<()> {
        self.ws.close(None).await?;
        Ok(())
    }

    async fn finish(mut self) -> Result<()> {
        // Flushes the close reply and lets the server close TCP first.
        while self.ws.recv().await.is_some() {}
        Ok(())
    }
}
