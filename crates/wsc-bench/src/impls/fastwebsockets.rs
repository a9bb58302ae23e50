//! fastwebsockets: the upgrade by hand (no hyper), then `WebSocket::after_handshake`, wrapped
//! in a `FragmentCollector` so that fragmented messages come out whole, as with the others.
//! Default settings: auto-pong and auto-close on, 64 MiB message limit.

use bytes::Bytes;
use fastwebsockets::{FragmentCollector, Frame, OpCode, Payload, Role, WebSocket, WebSocketError};
use tokio::net::TcpStream;

use super::{err, handshake, AsyncClient, Kind, Opts, Result};

pub struct Client {
    ws: FragmentCollector<TcpStream>,
}

impl AsyncClient for Client {
    async fn connect(addr: &str, path: &str, opts: &Opts) -> Result<Self> {
        if opts.compression {
            return Err(err("fastwebsockets has no permessage-deflate"));
        }
        let mut tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        handshake::client_async(&mut tcp, addr, path).await?;
        let ws = WebSocket::after_handshake(tcp, Role::Client);
        Ok(Client {
            ws: FragmentCollector::new(ws),
        })
    }

    async fn recv<R>(&mut self, f: impl FnOnce(Kind, &[u8]) -> R) -> Result<Option<R>> {
        loop {
            let frame = match self.ws.read_frame().await {
                Ok(frame) => frame,
                Err(WebSocketError::ConnectionClosed) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            match frame.opcode {
                OpCode::Text => return Ok(Some(f(Kind::Text, &frame.payload))),
                OpCode::Binary => return Ok(Some(f(Kind::Binary, &frame.payload))),
                OpCode::Close => return Ok(None),
                _ => {}
            }
        }
    }

    async fn send(&mut self, kind: Kind, data: &Bytes) -> Result<()> {
        let opcode = match kind {
            Kind::Text => OpCode::Text,
            Kind::Binary => OpCode::Binary,
        };
        self.ws
            .write_frame(Frame::new(true, opcode, None, Payload::Borrowed(data)))
            .await?;
        Ok(())
    }

    async fn close(mut self) -> Result<()> {
        self.ws.write_frame(Frame::close(1000, &[])).await?;
        loop {
            match self.ws.read_frame().await {
                Ok(frame) if frame.opcode == OpCode::Close => return Ok(()),
                Ok(_) => {}
                Err(WebSocketError::ConnectionClosed | WebSocketError::UnexpectedEOF) => {
                    return Ok(())
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn finish(self) -> Result<()> {
        // `read_frame` already wrote the close reply (auto-close).
        Ok(())
    }
}
