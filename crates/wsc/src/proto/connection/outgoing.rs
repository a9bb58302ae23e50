//! The output side of a connection: frames encoded (masked, compressed) into the output
//! buffer, and big payloads queued by reference and copied into it a block at a time as it
//! drains.

use bytes::Bytes;

use super::{Connection, Role, State};
use crate::error::Error;
use crate::proto::close::CloseFrame;
use crate::proto::copy;
use crate::proto::frame::{FrameHeader, OpCode, MAX_CONTROL_PAYLOAD};
use crate::proto::mask::mask_into;
use crate::proto::message::{Message, MessagePart};

/// The largest output buffer kept after it drained (the default frame size limit: messages
/// up to it reuse the buffer).
pub(super) const MAX_KEPT_OUTPUT: usize = 16 << 20;

/// Outgoing payloads are copied and masked in blocks of this size (a multiple of 4, small
/// enough to stay in the L1 cache between zeroing the room and writing it).
const MASK_BLOCK: usize = 16 << 10;

/// Payloads of owned messages bigger than this are not copied into the output buffer at once:
/// they are copied (and masked) a block of this size at a time as the output drains, so the
/// buffer stays bounded and in the L2 cache, however big the message. Blocks of 256 KiB made
/// the 16 MiB echo about 9% slower here (four times the writes, each handing the kernel
/// less to pack); 2 and 4 MiB were no faster than 1 MiB.
pub(super) const OUTPUT_BLOCK: usize = 1 << 20;

/// The part of a big outgoing payload not yet copied into the output buffer.
#[derive(Debug)]
pub(super) struct OutgoingPayload {
    pub(super) data: Bytes,
    /// How much of `data` went into the output buffer already.
    pub(super) pos: usize,
    pub(super) mask: Option<[u8; 4]>,
}

impl Connection {
    /// Queues a message, ping, pong or close frame.
    pub fn send(&mut self, message: Message) -> Result<(), Error> {
        match message {
            Message::Text(text) => self.send_data_owned(OpCode::Text, text.into_bytes()),
            Message::Binary(data) => self.send_data_owned(OpCode::Binary, data),
            Message::Ping(data) => self.send_control(OpCode::Ping, &data),
            Message::Pong(data) => self.send_control(OpCode::Pong, &data),
            Message::Close(frame) => self.close(frame),
        }
    }

    /// Queues a text message.
    pub fn send_text(&mut self, text: &str) -> Result<(), Error> {
        self.send_data(OpCode::Text, text.as_bytes())
    }

    /// Queues a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), Error> {
        self.send_data(OpCode::Binary, data)
    }

    /// Queues a ping (at most 125 bytes of payload).
    pub fn send_ping(&mut self, data: &[u8]) -> Result<(), Error> {
        self.send_control(OpCode::Ping, data)
    }

    /// Queues an unsolicited pong (at most 125 bytes of payload).
    pub fn send_pong(&mut self, data: &[u8]) -> Result<(), Error> {
        self.send_control(OpCode::Pong, data)
    }

    /// Queues a message split into frames of at most `fragment_size` bytes of payload.
    pub fn send_fragmented(
        &mut self,
        message: &Message,
        fragment_size: usize,
    ) -> Result<(), Error> {
        let (opcode, payload) = match message {
            Message::Text(t) => (OpCode::Text, t.as_bytes()),
            Message::Binary(b) => (OpCode::Binary, &b[..]),
            _ => return Err(Error::InvalidInput("control frames cannot be fragmented")),
        };
        if fragment_size == 0 {
            return Err(Error::InvalidInput("fragment size must be at least 1"));
        }
        self.check_message_start()?;
        let compressed = self.compress(payload);
        let (payload, rsv1) = match &compressed {
            Some(c) => (&c[..], true),
            None => (payload, false),
        };
        let mut chunks = payload.chunks(fragment_size).peekable();
        if chunks.peek().is_none() {
            return self.write_frame(opcode, true, rsv1, &[]);
        }
        let mut first = true;
        while let Some(chunk) = chunks.next() {
            let op = if first { opcode } else { OpCode::Continuation };
            self.write_frame(op, chunks.peek().is_none(), rsv1 && first, chunk)?;
            first = false;
        }
        Ok(())
    }

    /// Queues one part of a message sent in parts, whose size need not be known up front
    /// (streamed from a file or a generator): the first part starts a text or binary message
    /// (by the part's kind), the next ones continue it, and the one with `last` ends it. Each
    /// part goes out as one frame as it is, uncompressed (the message is not known whole).
    /// Pings, pongs and the close may go between parts; other messages wait for the last
    /// part (sending one before is an error, as is switching between text and binary).
    pub fn send_part<'a>(
        &mut self,
        part: impl Into<MessagePart<'a>>,
        last: bool,
    ) -> Result<(), Error> {
        let (kind, payload) = match part.into() {
            MessagePart::Text(text) => (OpCode::Text, text.as_bytes()),
            MessagePart::Binary(data) => (OpCode::Binary, data),
        };
        self.check_open()?;
        let opcode = match self.sending_parts {
            None => kind,
            Some(sending) if sending == kind => OpCode::Continuation,
            Some(_) => {
                return Err(Error::InvalidInput(
                    "a message sent in parts is all text or all binary",
                ))
            }
        };
        self.write_frame(opcode, last, false, payload)?;
        self.sending_parts = (!last).then_some(kind);
        Ok(())
    }

    /// Whether a message sent in parts still waits for its last part.
    pub fn is_sending_parts(&self) -> bool {
        self.sending_parts.is_some()
    }

    /// Starts the closing handshake: queues a close frame. Messages may still arrive until the
    /// peer's close frame.
    pub fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), Error> {
        self.check_open()?;
        let mut payload = Vec::new();
        if let Some(frame) = &frame {
            frame.check_sendable()?;
            payload.extend_from_slice(&frame.code.0.to_be_bytes());
            payload.extend_from_slice(frame.reason.as_bytes());
        }
        self.write_frame(OpCode::Close, true, false, &payload)?;
        self.state = State::CloseSent;
        Ok(())
    }

    fn check_open(&self) -> Result<(), Error> {
        match self.state {
            State::Open if self.output_lost => Err(Error::ConnectionClosed),
            State::Open => Ok(()),
            State::CloseSent => Err(Error::AlreadyClosed),
            State::Closed | State::Failed => Err(Error::ConnectionClosed),
        }
    }

    /// [`Connection::check_open`], and no message sent in parts is waiting for its last part
    /// (a new message cannot start inside it).
    fn check_message_start(&self) -> Result<(), Error> {
        self.check_open()?;
        if self.sending_parts.is_some() {
            return Err(Error::InvalidInput(
                "a message sent in parts is not finished: send its last part first",
            ));
        }
        Ok(())
    }

    fn send_data(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), Error> {
        self.check_message_start()?;
        match self.compress(payload) {
            Some(compressed) => self.write_frame(opcode, true, true, &compressed),
            None => self.write_frame(opcode, true, false, payload),
        }
    }

    /// [`Connection::send_data`] for a payload the connection may keep: a big one is queued
    /// by reference and copied into the output a block at a time.
    fn send_data_owned(&mut self, opcode: OpCode, payload: Bytes) -> Result<(), Error> {
        self.check_message_start()?;
        let (payload, rsv1) = match self.compress(&payload) {
            Some(compressed) => (Bytes::from(compressed), true),
            None => (payload, false),
        };
        if payload.len() <= OUTPUT_BLOCK || self.out_rest.is_some() {
            // Small, or behind another big one: copied whole.
            return self.write_frame(opcode, true, rsv1, &payload);
        }
        let mask = self.write_header(opcode, true, rsv1, payload.len(), OUTPUT_BLOCK)?;
        self.out_rest = Some(Box::new(OutgoingPayload {
            data: payload,
            pos: 0,
            mask,
        }));
        self.refill_output(OUTPUT_BLOCK);
        Ok(())
    }

    /// The compressed payload, if compression is on and worth it for this message.
    #[cfg(feature = "deflate")]
    fn compress(&mut self, payload: &[u8]) -> Option<Vec<u8>> {
        let codec = self.deflate.as_mut()?;
        if !codec.should_compress(payload.len()) {
            return None;
        }
        let mut out = Vec::with_capacity(payload.len() / 2 + 64);
        // A compressor failure (never expected) falls back to sending uncompressed.
        codec.compress(payload, &mut out).ok()?;
        Some(out)
    }

    #[cfg(not(feature = "deflate"))]
    fn compress(&mut self, _: &[u8]) -> Option<Vec<u8>> {
        None
    }

    fn send_control(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), Error> {
        self.check_open()?;
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(Error::InvalidInput(
                "ping and pong payloads are at most 125 bytes",
            ));
        }
        self.write_frame(opcode, true, false, payload)
    }

    /// Appends one frame to the output, masked if we are the client.
    pub(super) fn write_frame(
        &mut self,
        opcode: OpCode,
        fin: bool,
        rsv1: bool,
        payload: &[u8],
    ) -> Result<(), Error> {
        if self.output_lost {
            // Replies (pongs, a close) to a peer that takes nothing more.
            return Ok(());
        }
        let mask = self.write_header(opcode, fin, rsv1, payload.len(), payload.len())?;
        copy_masked(self.frame_target(), payload, mask, 0);
        Ok(())
    }

    /// Appends a frame header for a payload of `len` bytes that the caller appends next, with
    /// room for `follows` bytes of it (one allocation for both, where the output buffer was
    /// freed while idle); returns the masking key (client role). Whatever is queued before
    /// stays before.
    fn write_header(
        &mut self,
        opcode: OpCode,
        fin: bool,
        rsv1: bool,
        len: usize,
        follows: usize,
    ) -> Result<Option<[u8; 4]>, Error> {
        let mask = match self.role {
            Role::Client => Some(self.keys.next_key()?),
            Role::Server => None,
        };
        let header = FrameHeader {
            fin,
            rsv: [rsv1, false, false],
            opcode,
            mask,
            payload_len: len as u64,
        };
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
        let out = self.frame_target();
        out.reserve(header.encoded_len() + follows);
        header.encode(out);
        Ok(mask)
    }

    /// Where the next frame goes: behind a big payload still being queued, if there is one.
    fn frame_target(&mut self) -> &mut Vec<u8> {
        if self.out_rest.is_some() {
            &mut self.out_after
        } else {
            &mut self.out
        }
    }

    /// Copies up to `limit` more bytes of a big payload being queued into the output buffer;
    /// once it is all there, the frames queued behind it follow.
    fn refill_output(&mut self, limit: usize) {
        let Some(rest) = self.out_rest.as_mut() else {
            return;
        };
        let block = &rest.data[rest.pos..];
        let block = &block[..block.len().min(limit)];
        self.out.reserve(block.len());
        copy_masked(&mut self.out, block, rest.mask, rest.pos);
        rest.pos += block.len();
        if rest.pos == rest.data.len() {
            self.out_rest = None;
            self.out.append(&mut self.out_after);
        }
    }

    /// The next bytes to write to the peer: a part of what is queued (the rest follows once
    /// they are consumed).
    pub fn pending_output(&self) -> &[u8] {
        &self.out[self.out_pos..]
    }

    /// How many bytes are queued for the peer in all (more than
    /// [`Connection::pending_output`] while a big message goes out).
    pub fn queued_output(&self) -> usize {
        let rest = self
            .out_rest
            .as_ref()
            .map_or(0, |rest| rest.data.len() - rest.pos);
        self.out.len() - self.out_pos + rest + self.out_after.len()
    }

    /// Marks `n` bytes of [`Connection::pending_output`] as written.
    pub fn consume_output(&mut self, n: usize) {
        let n = n.min(self.out.len() - self.out_pos);
        self.written += n as u64;
        self.out_pos += n;
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
            if self.out.capacity() > MAX_KEPT_OUTPUT {
                // A very big message went out; give the memory back. Smaller buffers are
                // kept: allocating (and faulting in) megabytes per message costs more than
                // the copy itself.
                self.out = Vec::new();
            }
            self.refill_output(OUTPUT_BLOCK);
        }
    }

    /// Whether frames are waiting to be written.
    pub fn has_pending_output(&self) -> bool {
        // A big payload being queued always has its next block in `out`.
        self.out_pos < self.out.len()
    }
}

/// Appends `payload` to `out`, masked with `mask` from payload offset `offset` (client role).
fn copy_masked(out: &mut Vec<u8>, payload: &[u8], mask: Option<[u8; 4]>, offset: usize) {
    match mask {
        None => copy::append(out, payload),
        Some(key) => {
            // Block by block, so that the zeroed room is still in the cache when it is
            // written (see `mask_into` for why not a copy, then the mask).
            for (i, block) in payload.chunks(MASK_BLOCK).enumerate() {
                let start = out.len();
                out.resize(start + block.len(), 0);
                mask_into(&mut out[start..], block, key, offset + i * MASK_BLOCK);
            }
        }
    }
}
