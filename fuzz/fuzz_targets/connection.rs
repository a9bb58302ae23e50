//! A client-role and a server-role `Connection` fed the same arbitrary bytes in arbitrary
//! chunks, drained with `next_message` after each chunk as a driver does.
//!
//! Checked: no panic; messages respect the limits and the protocol (text is UTF-8, control
//! payloads fit in 125 bytes); after an error or a close nothing more comes out; what the
//! connection queues for the peer is a well-formed frame sequence, masked iff client, with
//! nothing after a close frame; the split into chunks does not change any of that (compared
//! with a run that gets all bytes at once).
//!
//! Flags: bit 0 enables permessage-deflate (bits 4-7 pick its parameters), bit 1 uses tiny
//! limits (frame 64 bytes, message 200 bytes) instead of 1 MiB, bit 2 feeds bytes through
//! `receive_with` instead of `receive`, bit 3 has the connection start its own close first,
//! bit 4 reads with `stage_next`/`staged` (borrowed) instead of `next_message`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsc::proto::deflate::{Codec, DeflateConfig, DeflateParams};
use wsc::proto::frame::{FrameHeader, OpCode, MAX_CONTROL_PAYLOAD};
use wsc::proto::mask::apply_mask;
use wsc::proto::{Config, Connection, Message, Role, State};
use wsc_fuzz::Input;

const MIB: usize = 1 << 20;

fn limits(flags: u8) -> (usize, usize) {
    if flags & 2 != 0 {
        (64, 200)
    } else {
        (MIB, MIB)
    }
}

fn connection(role: Role, flags: u8) -> Connection {
    let (frame, message) = limits(flags);
    let config = Config::default()
        .max_frame_size(Some(frame))
        .max_message_size(Some(message));
    if flags & 1 == 0 {
        return Connection::new(role, config);
    }
    let bits = 8 + ((flags >> 6) & 3) * 2 + 1; // 9, 11, 13, 15
    let params = DeflateParams {
        local_no_context_takeover: flags & 0x10 != 0,
        remote_no_context_takeover: flags & 0x20 != 0,
        local_max_window_bits: bits,
        remote_max_window_bits: bits,
    };
    let codec = Codec::new(params, &DeflateConfig::default());
    Connection::with_deflate(role, config, Some(codec))
}

/// Watches what the connection sends, as its peer would.
#[derive(Default)]
struct Peer {
    sent: Vec<u8>,
    close_seen: bool,
    /// Every complete frame sent: opcode and unmasked payload.
    frames: Vec<(u8, Vec<u8>)>,
}

impl Peer {
    fn take_output(&mut self, conn: &mut Connection) {
        let out = conn.pending_output();
        // Sometimes write only part of it, like a short socket write.
        let n = if out.len() > 3 && out[0] & 1 == 0 {
            out.len() - 3
        } else {
            out.len()
        };
        self.sent.extend_from_slice(&out[..n]);
        conn.consume_output(n);
        self.parse(conn.role());
    }

    fn parse(&mut self, role: Role) {
        loop {
            let (h, hl) = match FrameHeader::decode(&self.sent) {
                Ok(Some(decoded)) => decoded,
                Ok(None) => return,
                Err(e) => panic!("the connection sent a bad header: {e}"),
            };
            let end = hl + h.payload_len as usize;
            if self.sent.len() < end {
                return;
            }
            assert!(!self.close_seen, "a frame was sent after a close frame");
            assert_eq!(h.mask.is_some(), role == Role::Client, "wrong masking");
            assert!(!h.rsv[1] && !h.rsv[2]);
            let mut payload = self.sent[hl..end].to_vec();
            if let Some(key) = h.mask {
                apply_mask(&mut payload, key, 0);
            }
            match h.opcode {
                OpCode::Close => {
                    self.close_seen = true;
                    assert!(payload.len() != 1 && payload.len() <= MAX_CONTROL_PAYLOAD);
                    if payload.len() >= 2 {
                        let code = u16::from_be_bytes([payload[0], payload[1]]);
                        assert!(
                            wsc::CloseCode(code).is_valid_on_wire(),
                            "sent close code {code}"
                        );
                    }
                }
                OpCode::Ping | OpCode::Pong => assert!(payload.len() <= MAX_CONTROL_PAYLOAD),
                _ => {}
            }
            self.frames.push((h.opcode.as_u8(), payload));
            self.sent.drain(..end);
        }
    }
}

/// What a run produced: every `next_message` outcome, and every frame sent.
type Trace = (Vec<String>, Vec<(u8, Vec<u8>)>);

fn run(role: Role, flags: u8, chunks: &[&[u8]]) -> Trace {
    let (_, max_message) = limits(flags);
    let mut conn = connection(role, flags);
    let mut peer = Peer::default();
    if flags & 8 != 0 {
        conn.close(None).expect("close on an open connection");
        assert_eq!(conn.state(), State::CloseSent);
        peer.take_output(&mut conn);
    }
    let mut failed = false;
    let mut closed = false;
    let mut received = 0usize;
    let mut events = Vec::new();
    for &chunk in chunks {
        received += chunk.len();
        if flags & 4 != 0 {
            let filled = conn.receive_with(chunk.len(), |buf: &mut [u8]| {
                assert!(buf.len() >= chunk.len());
                buf[..chunk.len()].copy_from_slice(chunk);
                Ok::<_, ()>(chunk.len())
            });
            assert_eq!(filled, Ok(chunk.len()));
        } else {
            conn.receive(chunk);
        }
        // Each call consumes at least one header's worth of bytes or stops, so this bound
        // only trips on a loop that makes no progress.
        for calls in 0.. {
            assert!(
                calls <= received + 2,
                "next_message keeps returning without consuming"
            );
            let next = if flags & 0x10 != 0 {
                // The borrowed read, copied out here to be checked the same way.
                conn.stage_next()
                    .map(|ready| ready.then(|| conn.staged().map(|m| m.to_owned())).flatten())
            } else {
                conn.next_message()
            };
            match &next {
                Ok(None) => {}
                Ok(Some(m)) => events.push(format!("{m:?}")),
                Err(e) => events.push(format!("error {e:?}")),
            }
            match next {
                Ok(Some(message)) => {
                    assert!(!failed, "a message came out after an error: {message:?}");
                    assert!(!closed, "a message came out after the close: {message:?}");
                    match &message {
                        Message::Text(t) => {
                            assert!(std::str::from_utf8(t.as_bytes()).is_ok());
                            assert!(t.len() <= max_message);
                        }
                        Message::Binary(b) => assert!(b.len() <= max_message),
                        Message::Ping(p) | Message::Pong(p) => {
                            assert!(p.len() <= MAX_CONTROL_PAYLOAD)
                        }
                        Message::Close(frame) => {
                            if let Some(f) = frame {
                                assert!(f.reason.len() <= MAX_CONTROL_PAYLOAD - 2);
                            }
                            closed = true;
                            assert_eq!(conn.state(), State::Closed);
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    assert!(!failed, "a second error came out: {e}");
                    assert!(!closed, "an error came out after the close: {e}");
                    let _ = e.to_string();
                    failed = true;
                    assert_eq!(conn.state(), State::Failed);
                    assert!(conn.is_terminated());
                }
            }
            peer.take_output(&mut conn);
        }
        peer.take_output(&mut conn);
    }
    // Whatever is left is sent in full.
    let n = conn.pending_output().len();
    peer.sent.extend_from_slice(conn.pending_output());
    conn.consume_output(n);
    peer.parse(role);
    assert!(!conn.has_pending_output());
    assert!(
        peer.sent.is_empty(),
        "the connection queued a truncated frame"
    );
    if failed || closed {
        assert!(peer.close_seen, "terminated without sending a close");
        assert!(conn.next_message().unwrap().is_none());
        assert!(conn.send_text("late").is_err());
    }
    let terminated = conn.is_terminated();
    assert_eq!(conn.receive_eof().is_ok(), terminated);
    assert!(conn.is_terminated());
    (events, peer.frames)
}

fuzz_target!(|data: &[u8]| {
    let input = Input::new(data);
    let chunks = input.chunks();
    for role in [Role::Client, Role::Server] {
        let chunked = run(role, input.flags, &chunks);
        // How the bytes were split must not matter: the same messages, errors and replies as
        // when everything arrives at once.
        if chunks.len() > 1 {
            let whole = run(role, input.flags, &[input.stream]);
            assert_eq!(
                chunked, whole,
                "{role:?}: the input split changed the outcome"
            );
        }
    }
});
