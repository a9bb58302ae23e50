//! yawc: `WebSocket::handshake` over a `tokio::net::TcpStream` (its hyper-based HTTP/1.1
//! upgrade), `next_frame()`. Default options except: the size limits raised (1 MiB by
//! default), UTF-8 validation of text on (off by default in yawc, on in every other client
//! here, and required by RFC 6455), and permessage-deflate offered in `compressed`
//! (`Options::with_balanced_compression`: level 6, context takeover).

use std::time::Duration;

use bytes::Bytes;
use futures_util::SinkExt;
use tokio::net::TcpStream;
use yawc::close::CloseCode;
use yawc::{Frame, OpCode, Options, WebSocket, WebSocketError};

use super::{AsyncClient, Kind, Opts, Result, BIG_LIMIT};

pub struct Client {
    ws: WebSocket<TcpStream>,
}

fn options(opts: &Opts) -> Options {
    let options = Options::default()
        .with_limits(BIG_LIMIT, BIG_LIMIT)
        .with_utf8();
    if opts.compression {
        options.with_balanced_compression()
    } else {
        options
    }
}

impl AsyncClient for Client {
    async fn connect(addr: &str, path: &str, opts: &Opts) -> Result<Self> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let url = format!("ws://{addr}{path}").parse()?;
        let ws = WebSocket::handshake(url, tcp, options(opts)).await?;
        Ok(Client { ws })
    }

    async fn recv<R>(&mut self, f: impl FnOnce(Kind, &[u8]) -> R) -> Result<Option<R>> {
        loop {
            let frame = match self.ws.next_frame().await {
                Ok(frame) => frame,
                Err(WebSocketError::ConnectionClosed) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            match frame.opcode() {
                OpCode::Text => return Ok(Some(f(Kind::Text, frame.payload()))),
                OpCode::Binary => return Ok(Some(f(Kind::Binary, frame.payload()))),
                OpCode::Close => return Ok(None),
                _ => {}
            }
        }
    }

    async fn send(&mut self, kind: Kind, data: &Bytes) -> Result<()> {
        let frame = match kind {
            Kind::Text => Frame::text(data.clone()),
            Kind::Binary => Frame::binary(data.clone()),
        };
        self.ws.send(frame).await?;
        Ok(())
    }

    async fn close(mut self) -> Result<()> {
        self.ws.send(Frame::close(CloseCode::Normal, [])).await?;
        loop {
            match self.ws.next_frame().await {
                Ok(frame) if frame.opcode() == OpCode::Close => return Ok(()),
                Ok(_) => {}
                Err(WebSocketError::ConnectionClosed) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn finish(mut self) -> Result<()> {
        // The close reply is queued; yawc writes it when a read finds nothing to read (its
        // `flush` does not), and the server then closes TCP, which ends the stream.
        let drain = async { while self.ws.next_frame().await.is_ok() {} };
        let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
        Ok(())
    }
}
