//! tokio-tungstenite: `client_async_with_config` over a `tokio::net::TcpStream`, `next()`.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use super::tungstenite::{config, message};
use super::{err, AsyncClient, Kind, Opts, Result};

pub struct Client {
    ws: WebSocketStream<TcpStream>,
}

fn is_closed(e: &tungstenite::Error) -> bool {
    matches!(
        e,
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed
    )
}

impl Client {
    /// Reads (and drops) until the stream ends.
    async fn drain(&mut self) -> Result<()> {
        loop {
            match self.ws.next().await {
                Some(Ok(_)) => {}
                None => return Ok(()),
                Some(Err(e)) if is_closed(&e) => return Ok(()),
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }
}

impl AsyncClient for Client {
    async fn connect(addr: &str, path: &str, opts: &Opts) -> Result<Self> {
        if opts.compression {
            return Err(err("tokio-tungstenite has no permessage-deflate"));
        }
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (ws, _response) = tokio_tungstenite::client_async_with_config(
            format!("ws://{addr}{path}"),
            tcp,
            Some(config()),
        )
        .await?;
        Ok(Client { ws })
    }

    async fn recv<R>(&mut self, f: impl FnOnce(Kind, &[u8]) -> R) -> Result<Option<R>> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => return Ok(Some(f(Kind::Text, text.as_bytes()))),
                Some(Ok(Message::Binary(data))) => return Ok(Some(f(Kind::Binary, &data))),
                Some(Ok(Message::Close(_))) | None => return Ok(None),
                Some(Ok(_)) => {}
                Some(Err(e)) if is_closed(&e) => return Ok(None),
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
        self.drain().await
    }

    async fn finish(mut self) -> Result<()> {
        // Polling again writes the queued close reply; the stream then ends.
        self.drain().await
    }
}
