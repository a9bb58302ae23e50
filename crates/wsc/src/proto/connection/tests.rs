//! The connection's unit tests: parsing, staging and lending, assembly of fragments and big
//! frames, control frames, the close handshake, and the output queue.

use super::outgoing::{MAX_KEPT_OUTPUT, OUTPUT_BLOCK};
use super::*;
use crate::proto::close::{CloseCode, CloseFrame};
use proptest::prelude::*;

/// A frame as a server sends it (unmasked) or, with `mask`, as a client does.
fn frame(opcode: u8, fin: bool, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::new();
    let header = FrameHeader {
        fin,
        rsv: [false; 3],
        opcode: OpCode::from_u8(opcode).unwrap(),
        mask,
        payload_len: payload.len() as u64,
    };
    header.encode(&mut out);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key, 0);
    }
    out
}

fn client() -> Connection {
    Connection::new(Role::Client, Config::default())
}

fn server() -> Connection {
    Connection::new(Role::Server, Config::default())
}

/// Decodes the frames a connection queued (as the peer would see them, unmasked).
fn sent_frames(conn: &mut Connection) -> Vec<(FrameHeader, Vec<u8>)> {
    let mut out = conn.pending_output().to_vec();
    let n = out.len();
    conn.consume_output(n);
    let mut frames = Vec::new();
    let mut pos = 0;
    while pos < out.len() {
        let (h, hl) = FrameHeader::decode(&out[pos..]).unwrap().unwrap();
        let start = pos + hl;
        let end = start + h.payload_len as usize;
        if let Some(key) = h.mask {
            apply_mask(&mut out[start..end], key, 0);
        }
        frames.push((h, out[start..end].to_vec()));
        pos = end;
    }
    frames
}

fn feed_all(conn: &mut Connection, bytes: &[u8]) -> Vec<Result<Message, Error>> {
    conn.receive(bytes);
    drain(conn)
}

fn drain(conn: &mut Connection) -> Vec<Result<Message, Error>> {
    let mut out = Vec::new();
    loop {
        match conn.next_message() {
            Ok(Some(m)) => out.push(Ok(m)),
            Ok(None) => return out,
            Err(e) => {
                out.push(Err(e));
                return out;
            }
        }
    }
}

fn protocol_error(result: &Result<Message, Error>) -> &ProtocolError {
    match result {
        Err(Error::Protocol(e)) => e,
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

/// The close code of the single close frame the connection queued.
fn sent_close_code(conn: &mut Connection) -> Option<u16> {
    let frames = sent_frames(conn);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].0.opcode, OpCode::Close);
    let p = &frames[0].1;
    (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]))
}

// ----- masking -----

#[test]
fn client_masks_every_frame_with_fresh_keys() {
    let mut c = client();
    c.send_text("hello").unwrap();
    c.send_text("hello").unwrap();
    c.send_ping(b"p").unwrap();
    let frames = sent_frames(&mut c);
    assert!(frames.iter().all(|(h, _)| h.mask.is_some()));
    assert_ne!(frames[0].0.mask, frames[1].0.mask);
    assert_eq!(frames[0].1, b"hello");
    // On the wire the payload is masked, not plain.
    c.send_text("hello").unwrap();
    assert!(!c.pending_output().windows(5).any(|w| w == b"hello"));
}

#[test]
fn server_sends_unmasked() {
    let mut s = server();
    s.send_binary(&[1, 2, 3]).unwrap();
    assert_eq!(s.pending_output(), &[0x82, 0x03, 1, 2, 3]);
}

#[test]
fn client_rejects_masked_frames() {
    let mut c = client();
    let out = feed_all(&mut c, &frame(1, true, b"hi", Some([1, 2, 3, 4])));
    assert_eq!(
        protocol_error(&out[0]),
        &ProtocolError::MaskedFrameFromServer
    );
    assert_eq!(sent_close_code(&mut c), Some(1002));
}

#[test]
fn server_rejects_unmasked_frames_and_unmasks() {
    let mut s = server();
    let out = feed_all(&mut s, &frame(1, true, b"hi", Some([9, 8, 7, 6])));
    assert_eq!(out[0].as_ref().unwrap(), &Message::text("hi"));
    let out = feed_all(&mut s, &frame(1, true, b"hi", None));
    assert_eq!(
        protocol_error(&out[0]),
        &ProtocolError::UnmaskedFrameFromClient
    );
}

// ----- framing -----

#[test]
fn reserved_bits_and_opcodes_fail_with_1002() {
    for bytes in [
        vec![0xC1, 0x00],
        vec![0xA1, 0x00],
        vec![0x91, 0x00],
        vec![0x83, 0x00],
        vec![0x8B, 0x00],
    ] {
        let mut c = client();
        let out = feed_all(&mut c, &bytes);
        assert!(matches!(out[0], Err(Error::Protocol(_))), "{bytes:x?}");
        assert_eq!(sent_close_code(&mut c), Some(1002), "{bytes:x?}");
    }
}

#[test]
fn frame_split_at_every_byte() {
    let mut bytes = frame(2, true, &[7u8; 300], None);
    bytes.extend(frame(9, true, b"ping", None));
    bytes.extend(frame(1, false, "κό".as_bytes(), None));
    bytes.extend(frame(0, true, "σμε".as_bytes(), None));
    for split in 0..bytes.len() {
        let mut c = client();
        let mut out = feed_all(&mut c, &bytes[..split]);
        out.extend(feed_all(&mut c, &bytes[split..]));
        let out: Vec<Message> = out.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            out,
            [
                Message::binary(vec![7u8; 300]),
                Message::Ping(Bytes::from_static(b"ping")),
                Message::text("κόσμε")
            ],
            "split at {split}"
        );
    }
}

#[test]
fn byte_by_byte_feed() {
    let mut bytes = frame(1, true, b"hello", None);
    bytes.extend(frame(10, true, b"", None));
    let mut c = client();
    let mut got = Vec::new();
    for b in &bytes {
        got.extend(feed_all(&mut c, &[*b]).into_iter().map(Result::unwrap));
    }
    assert_eq!(got, [Message::text("hello"), Message::Pong(Bytes::new())]);
}

#[test]
fn empty_messages() {
    let mut c = client();
    let out = feed_all(
        &mut c,
        &[frame(1, true, b"", None), frame(2, true, b"", None)].concat(),
    );
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].as_ref().unwrap(), &Message::text(""));
    assert_eq!(out[1].as_ref().unwrap(), &Message::binary(Vec::new()));
}

// ----- fragmentation -----

#[test]
fn fragments_reassemble_with_control_frames_between() {
    let bytes = [
        frame(2, false, b"ab", None),
        frame(9, true, b"1", None),
        frame(0, false, b"", None),
        frame(10, true, b"2", None),
        frame(0, true, b"cd", None),
    ]
    .concat();
    let mut c = client();
    let out: Vec<Message> = feed_all(&mut c, &bytes)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        out,
        [
            Message::Ping(Bytes::from_static(b"1")),
            Message::Pong(Bytes::from_static(b"2")),
            Message::binary(&b"abcd"[..])
        ]
    );
    // The ping was answered with the same payload.
    let frames = sent_frames(&mut c);
    assert_eq!(frames.len(), 1);
    assert_eq!(
        (frames[0].0.opcode, frames[0].1.as_slice()),
        (OpCode::Pong, &b"1"[..])
    );
}

#[test]
fn continuation_without_message_fails() {
    let mut c = client();
    let out = feed_all(&mut c, &frame(0, true, b"x", None));
    assert_eq!(
        protocol_error(&out[0]),
        &ProtocolError::UnexpectedContinuation
    );
    assert_eq!(sent_close_code(&mut c), Some(1002));
}

#[test]
fn new_message_during_fragmented_one_fails() {
    let mut c = client();
    let out = feed_all(
        &mut c,
        &[frame(1, false, b"a", None), frame(1, true, b"b", None)].concat(),
    );
    assert_eq!(
        protocol_error(&out[0]),
        &ProtocolError::ExpectedContinuation
    );
}

#[test]
fn fragmented_control_frame_fails() {
    let mut c = client();
    let out = feed_all(&mut c, &frame(9, false, b"", None));
    assert!(matches!(protocol_error(&out[0]), ProtocolError::Frame(_)));
}

#[test]
fn sends_fragmented() {
    let mut c = client();
    c.send_fragmented(&Message::text("abcdefg"), 3).unwrap();
    let frames = sent_frames(&mut c);
    let summary: Vec<(OpCode, bool, &[u8])> = frames
        .iter()
        .map(|(h, p)| (h.opcode, h.fin, p.as_slice()))
        .collect();
    assert_eq!(
        summary,
        [
            (OpCode::Text, false, &b"abc"[..]),
            (OpCode::Continuation, false, &b"def"[..]),
            (OpCode::Continuation, true, &b"g"[..])
        ]
    );
    // A server role parses it back into one message.
    let mut s = server();
    let mut c = client();
    c.send_fragmented(&Message::binary(vec![5u8; 1000]), 7)
        .unwrap();
    let out = feed_all(&mut s, c.pending_output());
    assert_eq!(out[0].as_ref().unwrap(), &Message::binary(vec![5u8; 1000]));
}

#[test]
fn a_message_sent_in_parts_goes_out_a_frame_per_part_with_controls_between() {
    let mut c = client();
    c.send_part("hé", false).unwrap();
    assert!(c.is_sending_parts());
    c.send_ping(b"p").unwrap();
    c.send_part("llo", false).unwrap();
    c.send_part("", true).unwrap();
    assert!(!c.is_sending_parts());
    c.send_part(&[1u8, 2], true).unwrap();
    let wire = c.pending_output().to_vec();
    let frames = sent_frames(&mut c);
    let summary: Vec<(OpCode, bool, bool, &[u8])> = frames
        .iter()
        .map(|(h, p)| (h.opcode, h.fin, h.rsv[0], p.as_slice()))
        .collect();
    assert_eq!(
        summary,
        [
            (OpCode::Text, false, false, "hé".as_bytes()),
            (OpCode::Ping, true, false, &b"p"[..]),
            (OpCode::Continuation, false, false, &b"llo"[..]),
            (OpCode::Continuation, true, false, &b""[..]),
            (OpCode::Binary, true, false, &[1u8, 2][..]),
        ]
    );
    let got: Vec<Message> = feed_all(&mut server(), &wire)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        got,
        [
            Message::Ping("p".into()),
            Message::text("héllo"),
            Message::binary(vec![1u8, 2])
        ]
    );
}

#[test]
fn no_other_message_starts_inside_one_sent_in_parts() {
    let mut c = client();
    c.send_part(&b"ab"[..], false).unwrap();
    let refused = [
        c.send_text("x"),
        c.send(Message::binary(vec![1u8])),
        c.send_fragmented(&Message::text("xy"), 1),
        c.send_part("text", true),
    ];
    for result in refused {
        assert!(matches!(result, Err(Error::InvalidInput(_))), "{result:?}");
    }
    c.send_part(&b"c"[..], true).unwrap();
    c.send_text("x").unwrap();
    let got: Vec<Message> = feed_all(&mut server(), c.pending_output())
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, [Message::binary(&b"abc"[..]), Message::text("x")]);
}

/// Parts go out uncompressed, and the compressed messages around them still inflate (the
/// compression context is not touched).
#[cfg(feature = "deflate")]
#[test]
fn parts_go_out_uncompressed_between_compressed_messages() {
    let (mut c, mut s) = deflate_pair(false);
    let text = "compressible ".repeat(20);
    c.send_text(&text).unwrap();
    c.send_part("part one, ", false).unwrap();
    c.send_part("part two", true).unwrap();
    c.send_text(&text).unwrap();
    let wire = c.pending_output().to_vec();
    let rsv1: Vec<bool> = sent_frames(&mut c).iter().map(|(h, _)| h.rsv[0]).collect();
    assert_eq!(rsv1, [true, false, false, true]);
    let got: Vec<Message> = feed_all(&mut s, &wire)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        got,
        [
            Message::text(text.as_str()),
            Message::text("part one, part two"),
            Message::text(text.as_str())
        ]
    );
}

// ----- text -----

/// Drains the output in writes of `write` bytes, as a driver does; returns the wire.
fn drain_output(conn: &mut Connection, write: usize) -> Vec<u8> {
    let mut wire = Vec::new();
    while conn.has_pending_output() {
        let n = conn.pending_output().len().min(write);
        wire.extend_from_slice(&conn.pending_output()[..n]);
        conn.consume_output(n);
    }
    assert_eq!(conn.queued_output(), 0);
    wire
}

#[test]
fn big_messages_go_out_block_by_block_in_order() {
    let big: Vec<u8> = (0..(3 * OUTPUT_BLOCK + 3))
        .map(|i| (i % 251) as u8)
        .collect();
    for role in [Role::Client, Role::Server] {
        let mut sender = Connection::new(role, Config::default());
        sender.send(Message::binary(big.clone())).unwrap();
        // The whole frame is queued, but only a block of it sits in the output buffer.
        let header = if role == Role::Client { 14 } else { 10 };
        assert_eq!(sender.queued_output(), header + big.len());
        assert!(sender.pending_output().len() <= header + OUTPUT_BLOCK);
        // Partly written, then more frames are queued: they go after the big one.
        let mut wire = sender.pending_output()[..1000].to_vec();
        sender.consume_output(1000);
        sender.send_ping(b"p").unwrap();
        sender.send(Message::text("after")).unwrap();
        // They wait behind it without pulling the rest of it into the buffer.
        assert!(sender.pending_output().len() <= header + OUTPUT_BLOCK);
        wire.extend(drain_output(&mut sender, 100_003));
        assert!(sender.out.capacity() <= MAX_KEPT_OUTPUT);

        let peer_role = match role {
            Role::Client => Role::Server,
            Role::Server => Role::Client,
        };
        let mut receiver = Connection::new(peer_role, Config::default());
        let got: Vec<Message> = wire
            .chunks(65_537)
            .flat_map(|chunk| feed_all(&mut receiver, chunk))
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            got,
            vec![
                Message::binary(big.clone()),
                Message::Ping(Bytes::from_static(b"p")),
                Message::text("after"),
            ]
        );
    }
}

/// Feeds `wire` through `receive_with` in reads of at most `read` bytes, staging after
/// each; returns the sizes of the slices the reads were offered and the staged messages
/// (owned copies), or the first error.
fn read_through(
    conn: &mut Connection,
    wire: &[u8],
    read: usize,
) -> (Vec<usize>, Result<Vec<Message>, Error>) {
    let (mut offered, mut got, mut pos) = (Vec::new(), Vec::new(), 0);
    while pos < wire.len() {
        conn.receive_with(1024, |buf: &mut [u8]| {
            offered.push(buf.len());
            let n = buf.len().min(read).min(wire.len() - pos);
            buf[..n].copy_from_slice(&wire[pos..pos + n]);
            pos += n;
            Ok::<_, ()>(n)
        })
        .unwrap();
        loop {
            match conn.stage_next() {
                Ok(true) => got.push(conn.staged().unwrap().to_owned()),
                Ok(false) => break,
                Err(e) => return (offered, Err(e)),
            }
        }
    }
    (offered, Ok(got))
}

/// A client and a server that agreed on permessage-deflate (15-bit windows).
#[cfg(feature = "deflate")]
fn deflate_pair(no_context_takeover: bool) -> (Connection, Connection) {
    use crate::proto::deflate::{DeflateConfig, DeflateParams};
    let params = DeflateParams {
        local_no_context_takeover: no_context_takeover,
        remote_no_context_takeover: no_context_takeover,
        local_max_window_bits: 15,
        remote_max_window_bits: 15,
    };
    let codec = || Some(Codec::new(params, &DeflateConfig::default()));
    (
        Connection::with_deflate(Role::Client, Config::default(), codec()),
        Connection::with_deflate(Role::Server, Config::default(), codec()),
    )
}

/// A compressed big message is queued block by block too, and inflates intact.
#[cfg(feature = "deflate")]
#[test]
fn big_compressed_messages_go_out_block_by_block() {
    let (mut c, mut s) = deflate_pair(false);
    // Pseudo-random bytes: they stay big when compressed.
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let big: Vec<u8> = (0..(2 << 20))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    c.send(Message::binary(big.clone())).unwrap();
    assert!(c.queued_output() > 2 * OUTPUT_BLOCK);
    assert!(c.pending_output().len() <= 14 + OUTPUT_BLOCK);
    let wire = drain_output(&mut c, 50_000);
    let got: Vec<Message> = wire
        .chunks(70_001)
        .flat_map(|chunk| feed_all(&mut s, chunk))
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, vec![Message::binary(big)]);
}

/// A message at the size limit that deflate could not shrink arrives a few bytes bigger than
/// the limit: it is held to the limit once inflated, not on its wire size.
#[cfg(feature = "deflate")]
#[test]
fn an_incompressible_message_at_the_limit_is_received_compressed() {
    use crate::proto::deflate::{DeflateConfig, DeflateParams};
    let params = DeflateParams {
        local_no_context_takeover: true,
        remote_no_context_takeover: true,
        local_max_window_bits: 15,
        remote_max_window_bits: 15,
    };
    let codec = || Some(Codec::new(params, &DeflateConfig::default()));
    let limited = Config::default().max_message_size(Some(1000));
    let mut c = Connection::with_deflate(Role::Client, limited, codec());
    let mut s = Connection::with_deflate(Role::Server, Config::default(), codec());
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    let (at_limit, over) = (noise(1000), noise(1001));
    s.send(Message::binary(at_limit.clone())).unwrap();
    s.send_fragmented(&Message::binary(at_limit.clone()), 300)
        .unwrap();
    let wire = drain_output(&mut s, usize::MAX);
    // (Before, refused: "message of 1006 bytes or more exceeds ... 1000 bytes".)
    assert!(wire.len() > 2 * 1000 + 8, "it did not grow: {}", wire.len());
    let got: Vec<Message> = feed_all(&mut c, &wire)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, vec![Message::binary(at_limit.clone()); 2]);
    // One byte more is still refused, once inflated.
    s.send(Message::binary(over)).unwrap();
    let out = feed_all(&mut c, &drain_output(&mut s, usize::MAX));
    assert!(
        matches!(
            protocol_error(&out[0]),
            ProtocolError::MessageTooLarge { max: 1000, .. }
        ),
        "{out:?}"
    );
}

/// Compressed messages are inflated into one reused buffer and lent from it; they can
/// still be taken owned.
#[cfg(feature = "deflate")]
#[test]
fn compressed_messages_are_inflated_into_a_reused_buffer() {
    let (mut c, mut s) = deflate_pair(true);
    let texts: Vec<String> = (0..3)
        .map(|i| format!("{{\"ticker\":\"BTC-USD\",\"seq\":{i}}}").repeat(20))
        .collect();
    for t in &texts {
        c.send(Message::text(t.as_str())).unwrap();
    }
    s.receive(&drain_output(&mut c, usize::MAX));
    let mut at = None;
    for t in &texts[..2] {
        assert!(s.stage_next().unwrap());
        let Some(MessageRef::Text(got)) = s.staged() else {
            panic!("not text")
        };
        assert_eq!(got, t);
        let ptr = got.as_ptr();
        assert_eq!(*at.get_or_insert(ptr), ptr, "not the same buffer");
    }
    assert!(s.stage_next().unwrap());
    assert_eq!(s.take_staged(), Some(Message::text(texts[2].as_str())));
}

#[test]
fn big_frames_are_read_straight_into_a_reused_message_buffer() {
    let big: Vec<u8> = (0..(1 << 20) + 5).map(|i| (i % 253) as u8).collect();
    let text = "ü".repeat(300_000);
    for role in [Role::Client, Role::Server] {
        let mask = (role == Role::Server).then_some([9, 8, 7, 6]);
        let mut wire = frame(2, true, &big, mask);
        wire.extend(frame(1, true, text.as_bytes(), mask));
        wire.extend(frame(2, true, &big[..70_000], mask));
        wire.extend(frame(1, true, b"small", mask));
        let mut conn = Connection::new(role, Config::default());
        let (offered, got) = read_through(&mut conn, &wire, 100_000);
        let want = vec![
            Message::binary(big.clone()),
            Message::text(text.as_str()),
            Message::binary(big[..70_000].to_vec()),
            Message::text("small"),
        ];
        assert_eq!(got.unwrap(), want);
        // Past the first read, the rest of the big frame was offered straight, in
        // cache-sized pieces.
        let direct = offered.iter().filter(|&&n| n == DIRECT_MAX).count();
        assert!(direct >= 3, "{offered:?}");
        assert!(conn.assembled.len() >= big.len());
    }

    // The buffer is reused: the next big message is lent from the same memory.
    let mut conn = client();
    let mut first = None;
    for round in 0..2u8 {
        let payload = vec![round; 500_000];
        let wire = frame(2, true, &payload, None);
        let mut pos = 0;
        while !conn.stage_next().unwrap() {
            conn.receive_with(1024, |buf: &mut [u8]| {
                let n = buf.len().min(wire.len() - pos);
                buf[..n].copy_from_slice(&wire[pos..pos + n]);
                pos += n;
                Ok::<_, ()>(n)
            })
            .unwrap();
        }
        let Some(MessageRef::Binary(data)) = conn.staged() else {
            panic!("not binary")
        };
        assert_eq!(data, &payload[..]);
        let at = data.as_ptr();
        assert_eq!(*first.get_or_insert(at), at);
        // On a page boundary (see `PAGE`).
        assert_eq!(at as usize % PAGE, 0);
    }
    // Taken owned, it is moved out, not copied.
    let owned = conn.take_staged().unwrap();
    assert_eq!(owned, Message::binary(vec![1u8; 500_000]));
}

#[test]
fn bad_text_read_directly_fails_before_the_frame_ends() {
    let mut bad = "a".repeat(1 << 20).into_bytes();
    bad[200_000] = 0xFF;
    let wire = frame(1, true, &bad, None);
    let mut conn = client();
    let (_, got) = read_through(&mut conn, &wire[..400_000], 150_000);
    assert!(matches!(
        got,
        Err(Error::Protocol(ProtocolError::InvalidUtf8))
    ));
    assert_eq!(sent_close_code(&mut conn), Some(1007));
}

#[test]
fn invalid_utf8_fails_with_1007() {
    let mut c = client();
    let out = feed_all(&mut c, &frame(1, true, &[0xCE, 0xBA, 0xFF], None));
    assert_eq!(protocol_error(&out[0]), &ProtocolError::InvalidUtf8);
    assert_eq!(sent_close_code(&mut c), Some(1007));
}

#[test]
fn invalid_utf8_fails_fast_inside_an_incomplete_frame() {
    // A 1000-byte text frame whose first bytes are already invalid: fail before the rest.
    let mut c = client();
    let mut bytes = frame(1, true, &[b'a'; 1000], None);
    bytes[4 + 10] = 0xFF;
    let out = feed_all(&mut c, &bytes[..30]);
    assert_eq!(protocol_error(&out[0]), &ProtocolError::InvalidUtf8);
}

#[test]
fn invalid_utf8_fails_fast_across_fragments() {
    let mut c = client();
    let out = feed_all(&mut c, &frame(1, false, "κόσμε".as_bytes(), None));
    assert!(out.is_empty());
    let out = feed_all(&mut c, &frame(0, false, &[0xF4, 0x90], None));
    assert_eq!(protocol_error(&out[0]), &ProtocolError::InvalidUtf8);
}

#[test]
fn code_point_split_across_fragments_is_fine() {
    let euro = "€".as_bytes();
    let bytes = [
        frame(1, false, &euro[..1], None),
        frame(0, false, &euro[1..2], None),
        frame(0, true, &euro[2..], None),
    ]
    .concat();
    let out = feed_all(&mut client(), &bytes);
    assert_eq!(out[0].as_ref().unwrap(), &Message::text("€"));
}

#[test]
fn text_ending_mid_code_point_fails() {
    let euro = "€".as_bytes();
    let bytes = [frame(1, false, &euro[..2], None), frame(0, true, b"", None)].concat();
    let out = feed_all(&mut client(), &bytes);
    assert_eq!(protocol_error(&out[0]), &ProtocolError::InvalidUtf8);
}

// ----- ping / pong -----

#[test]
fn ping_is_answered_with_same_payload_and_returned() {
    let mut c = client();
    let payload = [0xFEu8; 125];
    let out = feed_all(&mut c, &frame(9, true, &payload, None));
    assert_eq!(
        out[0].as_ref().unwrap(),
        &Message::Ping(Bytes::copy_from_slice(&payload))
    );
    let frames = sent_frames(&mut c);
    assert_eq!(
        (frames[0].0.opcode, frames[0].1.as_slice()),
        (OpCode::Pong, &payload[..])
    );
}

/// Queues a ping from the client side into `server` and handles it.
fn ping_server(server: &mut Connection, payload: &[u8]) {
    let ping = frame(9, true, payload, Some([1, 2, 3, 4]));
    server.receive(&ping);
    assert!(matches!(server.next_message(), Ok(Some(Message::Ping(_)))));
}

#[test]
fn pings_during_a_big_send_are_answered_behind_it() {
    for size in [100 << 10, 512 << 10, 3 * OUTPUT_BLOCK] {
        let mut s = server();
        s.send(Message::Binary(Bytes::from(vec![7u8; size])))
            .unwrap();
        let before = s.queued_output();
        ping_server(&mut s, b"keepalive");
        // A pong (2 header bytes) queued behind the message, nothing written yet.
        assert_eq!(s.queued_output(), before + 2 + 9, "size {size}");
        let wire = drain_output(&mut s, 64 << 10);
        let (header, len) = FrameHeader::decode(&wire).unwrap().unwrap();
        assert_eq!(
            (header.opcode, header.payload_len),
            (OpCode::Binary, size as u64)
        );
        assert_eq!(
            &wire[len + size..],
            &[0x8A, 9, b'k', b'e', b'e', b'p', b'a', b'l', b'i', b'v', b'e']
        );
    }
}

#[test]
fn a_ping_flood_while_nothing_is_written_queues_a_bounded_number_of_pongs() {
    let mut s = server();
    for _ in 0..10 * MAX_UNSENT_PONGS {
        ping_server(&mut s, &[0xAB; 125]);
    }
    assert_eq!(s.queued_output(), MAX_UNSENT_PONGS as usize * (2 + 125));
    // Once they are written, pings are answered again.
    drain_output(&mut s, 4096);
    ping_server(&mut s, b"again");
    assert_eq!(
        drain_output(&mut s, 4096),
        [0x8A, 5, b'a', b'g', b'a', b'i', b'n']
    );
    // Written in part: the count goes on from where it was until the last pong is out.
    for _ in 0..MAX_UNSENT_PONGS {
        ping_server(&mut s, b"x");
    }
    s.consume_output(3);
    ping_server(&mut s, b"y");
    assert_eq!(s.queued_output(), MAX_UNSENT_PONGS as usize * 3 - 3);
}

#[test]
fn keepalive_settings_too_long_for_the_clock_are_capped_however_built() {
    let mut c = client();
    let forever = std::time::Duration::MAX;
    let now = Instant::now();
    c.set_keepalive(
        Some(Keepalive {
            interval: forever,
            timeout: forever,
        }),
        now,
    );
    assert_eq!(
        c.poll_keepalive(now).unwrap().map(|at| at > now),
        Some(true)
    );
    assert!(!c.keepalive_overdue(now));
}

/// Bytes that came with the handshake response, whether adopted with its buffer (the
/// blocking client) or handed to `receive` (the async one), arrived before any ping could be
/// in flight: they do not put off a pong's deadline either way, so `adopt_read_buffer` need
/// not mark them heard. A byte after the ping does (the check is sensitive to `heard`).
#[test]
fn bytes_that_came_with_the_handshake_do_not_put_off_a_pong_deadline() {
    let secs = std::time::Duration::from_secs;
    let t0 = Instant::now();
    let early = frame(1, true, b"hello", None);
    // A client whose first frame came with the handshake, read, then a ping due at once.
    let pinged = |adopt: bool| {
        let mut c = client();
        if adopt {
            let mut buf = ReadBuffer::default();
            buf.extend_from_slice(&early);
            c.adopt_read_buffer(buf);
        } else {
            c.receive(&early);
        }
        c.set_keepalive(Some(Keepalive::new(secs(10), secs(3))), t0);
        assert_eq!(c.next_message().unwrap(), Some(Message::text("hello")));
        assert_eq!(
            c.poll_keepalive(t0 + secs(10)).unwrap(),
            Some(t0 + secs(13))
        );
        assert_eq!(c.queued_output(), 2 + 4 + 4, "the masked ping");
        c
    };
    for adopt in [true, false] {
        let mut c = pinged(adopt);
        assert!(c.keepalive_overdue(t0 + secs(13)), "adopted: {adopt}");
        assert!(
            matches!(
                c.poll_keepalive(t0 + secs(13)),
                Err(Error::KeepaliveTimeout(_))
            ),
            "adopted: {adopt}"
        );
        let mut c = pinged(adopt);
        c.receive(&[0x81]);
        assert!(!c.keepalive_overdue(t0 + secs(13)), "adopted: {adopt}");
        assert_eq!(
            c.poll_keepalive(t0 + secs(12)).unwrap(),
            Some(t0 + secs(13))
        );
        assert_eq!(
            c.poll_keepalive(t0 + secs(13)).unwrap(),
            Some(t0 + secs(15))
        );
    }
}

/// A ping queued behind a big upload reaches the peer only after it: while the upload goes
/// out, the peer is alive (it takes our data) and cannot have answered. The pong's deadline
/// used to run from when the ping was queued, and a peer reading a 50 MiB upload at 10 MiB/s
/// was declared dead after 2 s, the upload thrown away.
#[test]
fn output_draining_ahead_of_a_keepalive_ping_keeps_the_connection_alive() {
    let ms = std::time::Duration::from_millis;
    let t0 = Instant::now();
    let drain = |c: &mut Connection, max: usize| {
        let n = c.pending_output().len().min(max);
        c.consume_output(n);
    };
    let mut c = client();
    c.set_keepalive(Some(Keepalive::new(ms(1000), ms(1000))), t0);
    c.send(Message::binary(vec![0u8; 50 << 20])).unwrap();
    let mut tick = 0;
    let mut upload_out = None;
    // The peer reads 1 MiB every 100 ms and sends nothing: the ping, queued at 1 s behind
    // all of it, reaches the peer at about 5 s.
    while c.has_pending_output() {
        tick += 1;
        drain(&mut c, 1 << 20);
        let now = t0 + ms(100 * tick);
        assert!(!c.keepalive_overdue(now), "overdue at {} ms", 100 * tick);
        c.poll_keepalive(now).unwrap();
        // Only the ping's 10 bytes left (header, mask key, 4 bytes of payload).
        if upload_out.is_none() && c.queued_output() <= 10 {
            upload_out = Some(now);
        }
    }
    assert!(tick > 50, "{tick}");
    // Then no pong and nothing else: dead a timeout after the last of the upload went out
    // (the ping's own bytes prove nothing).
    let last = upload_out.unwrap();
    assert!(c.poll_keepalive(last + ms(900)).is_ok());
    assert!(matches!(
        c.poll_keepalive(last + ms(1000)),
        Err(Error::KeepaliveTimeout(_))
    ));
    // A peer that stops reading is still found dead: the output stops moving.
    let mut c = client();
    c.set_keepalive(Some(Keepalive::new(ms(1000), ms(1000))), t0);
    c.send(Message::binary(vec![0u8; 50 << 20])).unwrap();
    for tick in 1..=15 {
        drain(&mut c, 1 << 20);
        c.poll_keepalive(t0 + ms(100 * tick)).unwrap();
    }
    // Nothing written after 1.5 s: dead at 2.5 s.
    assert!(c.poll_keepalive(t0 + ms(2400)).is_ok());
    assert!(matches!(
        c.poll_keepalive(t0 + ms(2500)),
        Err(Error::KeepaliveTimeout(_))
    ));
}

/// The ping's own bytes going out prove nothing: only output queued ahead of it does. A
/// driver that wrote the ping and next ran the clock at its deadline had the deadline pushed
/// back a timeout (a dead peer found after interval + 2 x timeout, not interval + timeout).
#[test]
fn writing_the_keepalive_ping_itself_does_not_put_off_its_deadline() {
    let ms = std::time::Duration::from_millis;
    let t0 = Instant::now();
    let mut c = client();
    c.set_keepalive(Some(Keepalive::new(ms(500), ms(500))), t0);
    assert_eq!(c.poll_keepalive(t0 + ms(500)).unwrap(), Some(t0 + ms(1000)));
    let ping = c.pending_output().len();
    assert!(ping > 0);
    c.consume_output(ping);
    assert!(c.keepalive_overdue(t0 + ms(1000)));
    assert!(matches!(
        c.poll_keepalive(t0 + ms(1000)),
        Err(Error::KeepaliveTimeout(_))
    ));
}

/// Nothing is parsed after the close handshake or a failure: bytes a peer goes on sending
/// were kept in the read buffer, without bound, by a driver that kept handing them over.
#[test]
fn bytes_after_the_connection_ended_are_dropped_not_buffered() {
    // Closed: the server's close answered ours.
    let mut c = client();
    c.close(None).unwrap();
    let close = frame(0x8, true, &1000u16.to_be_bytes(), None);
    assert!(matches!(
        feed_all(&mut c, &close)[..],
        [Ok(Message::Close(_))]
    ));
    assert!(c.is_terminated());
    for _ in 0..100 {
        c.receive(&[0x81; 64 << 10]);
    }
    assert_eq!(c.buffered_input(), 0);
    let n = c
        .receive_with(1024, |buf: &mut [u8]| {
            buf.fill(0x82);
            Ok::<_, ()>(buf.len())
        })
        .unwrap();
    assert!(n >= 1024);
    assert_eq!(c.buffered_input(), 0);
    // Failed: a frame the protocol forbids.
    let mut c = client();
    assert!(feed_all(&mut c, &[0x83, 0x00])[0].is_err());
    assert!(c.is_terminated());
    c.receive(&[0x81; 1 << 10]);
    assert_eq!(c.buffered_input(), 0);
}

/// `receive_with` offers at most 64 KiB however big a `chunk` it is asked for: a huge one
/// overflowed the buffer's size arithmetic (or asked the allocator for a terabyte).
#[test]
fn a_huge_read_chunk_counts_as_64_kib() {
    for chunk in [usize::MAX, 1 << 40, 65 << 10] {
        let mut c = client();
        let offered = c
            .receive_with(chunk, |buf: &mut [u8]| Ok::<_, ()>(buf.len()))
            .unwrap();
        assert!((1..=64 << 10).contains(&offered), "{chunk}: {offered}");
    }
}

#[test]
fn oversized_ping_fails() {
    let mut c = client();
    let out = feed_all(&mut c, &[0x89, 0x7E, 0x00, 0x7E]);
    assert!(matches!(protocol_error(&out[0]), ProtocolError::Frame(_)));
    assert_eq!(sent_close_code(&mut c), Some(1002));
}

#[test]
fn caller_cannot_send_oversized_control_frames() {
    let mut c = client();
    assert!(matches!(
        c.send_ping(&[0; 126]),
        Err(Error::InvalidInput(_))
    ));
    assert!(c.send_ping(&[0; 125]).is_ok());
}

// ----- close -----

#[test]
fn close_is_echoed_once_and_nothing_sent_after() {
    let mut c = client();
    assert_eq!(c.peer_close(), None);
    let out = feed_all(&mut c, &frame(8, true, b"\x03\xe9bye", None));
    assert_eq!(
        out[0].as_ref().unwrap(),
        &Message::Close(Some(CloseFrame::new(1001, "bye")))
    );
    assert_eq!(sent_close_code(&mut c), Some(1001));
    assert_eq!(c.state(), State::Closed);
    // Kept once taken, for a driver's `close` after the caller's read.
    assert_eq!(c.peer_close(), Some(&CloseFrame::new(1001, "bye")));
    // Another close, a ping and data after the close are ignored; nothing more is sent.
    let out = feed_all(
        &mut c,
        &[
            frame(8, true, b"", None),
            frame(9, true, b"", None),
            frame(1, true, b"x", None),
        ]
        .concat(),
    );
    assert!(out.is_empty());
    assert!(!c.has_pending_output());
    assert!(matches!(c.send_text("late"), Err(Error::ConnectionClosed)));
    assert!(c.receive_eof().is_ok());
    // The ignored second close changed nothing.
    assert_eq!(c.peer_close(), Some(&CloseFrame::new(1001, "bye")));
}

#[test]
fn empty_close_is_answered_with_empty_close() {
    let mut c = client();
    let out = feed_all(&mut c, &frame(8, true, b"", None));
    assert_eq!(out[0].as_ref().unwrap(), &Message::Close(None));
    assert_eq!(sent_close_code(&mut c), None);
}

#[test]
fn invalid_close_payloads() {
    let cases: [(&[u8], u16); 5] = [
        (b"\x03", 1002),
        (b"\x03\xed", 1002),     // 1005
        (b"\x03\xf7", 1002),     // 1015
        (b"\x13\x88", 1002),     // 5000
        (b"\x03\xe8\xff", 1007), // bad reason
    ];
    for (payload, code) in cases {
        let mut c = client();
        let out = feed_all(&mut c, &frame(8, true, payload, None));
        assert!(matches!(
            out[0],
            Err(Error::Protocol(ProtocolError::InvalidClose(_)))
        ));
        assert_eq!(sent_close_code(&mut c), Some(code), "{payload:x?}");
    }
}

#[test]
fn client_initiated_close() {
    let mut c = client();
    c.close(Some(CloseFrame::new(CloseCode::NORMAL, "done")))
        .unwrap();
    assert_eq!(sent_close_code(&mut c), Some(1000));
    assert!(matches!(c.send_text("x"), Err(Error::AlreadyClosed)));
    assert!(matches!(c.close(None), Err(Error::AlreadyClosed)));
    // Messages in flight still arrive, a ping is not answered, then the server's close.
    let out = feed_all(
        &mut c,
        &[
            frame(1, true, b"late", None),
            frame(9, true, b"", None),
            frame(8, true, b"\x03\xe8", None),
        ]
        .concat(),
    );
    assert_eq!(out.len(), 3);
    assert_eq!(
        out[2].as_ref().unwrap(),
        &Message::Close(Some(CloseFrame::new(1000, "")))
    );
    assert!(!c.has_pending_output());
    assert_eq!(c.state(), State::Closed);
}

#[test]
fn caller_close_codes_are_checked() {
    let mut c = client();
    assert!(c.close(Some(CloseFrame::new(1005, ""))).is_err());
    assert!(c
        .close(Some(CloseFrame::new(1000, "x".repeat(124))))
        .is_err());
    assert!(c
        .close(Some(CloseFrame::new(4000, "x".repeat(123))))
        .is_ok());
}

// ----- EOF -----

#[test]
fn eof_without_close_is_an_error() {
    let mut c = client();
    feed_all(&mut c, &frame(1, false, b"partial", None));
    assert!(matches!(c.receive_eof(), Err(Error::ConnectionReset)));
    assert!(c.is_terminated());
}

// ----- limits -----

#[test]
fn frame_limit_fails_with_1009_before_payload_arrives() {
    let mut c = Connection::new(Role::Client, Config::default().max_frame_size(Some(100)));
    // Only the header of a 64 KiB frame: rejected on its announced length.
    let out = feed_all(&mut c, &[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
    assert_eq!(
        protocol_error(&out[0]),
        &ProtocolError::FrameTooLarge {
            size: 65536,
            max: 100
        }
    );
    assert_eq!(sent_close_code(&mut c), Some(1009));
}

#[test]
fn message_limit_counts_all_fragments() {
    let mut c = Connection::new(Role::Client, Config::default().max_message_size(Some(10)));
    let out = feed_all(
        &mut c,
        &[
            frame(2, false, &[0; 6], None),
            frame(0, true, &[0; 5], None),
        ]
        .concat(),
    );
    assert!(matches!(
        protocol_error(&out[0]),
        ProtocolError::MessageTooLarge { size: 11, max: 10 }
    ));
    assert_eq!(sent_close_code(&mut c), Some(1009));
}

#[test]
fn a_single_frame_arriving_in_pieces_is_waited_for_but_bad_text_fails_at_once() {
    let text = "é".repeat(500);
    let wire = frame(1, true, text.as_bytes(), None);
    let mut c = client();
    for piece in wire.chunks(97) {
        c.receive(piece);
        if c.buffered_input() < wire.len() {
            assert!(
                !c.stage_next().unwrap(),
                "nothing before the frame is whole"
            );
        }
    }
    assert!(c.stage_next().unwrap());
    assert_eq!(c.staged(), Some(MessageRef::Text(&text)));

    // The invalid byte comes with the piece that completes the frame: the part checked
    // while waiting is not checked again, the rest is.
    let mut bad = text.clone().into_bytes();
    let at = bad.len() - 3;
    bad[at] = 0xFF;
    let wire = frame(1, true, &bad, None);
    let mut c = client();
    let split = wire.len() - 50;
    c.receive(&wire[..split]);
    assert!(!c.stage_next().unwrap());
    assert!(c.wait_checked > 0);
    c.receive(&wire[split..]);
    assert!(matches!(
        c.stage_next(),
        Err(Error::Protocol(ProtocolError::InvalidUtf8))
    ));

    // The first piece already holds an invalid byte: the error comes with it.
    let mut bad = text.clone().into_bytes();
    bad[10] = 0xFF;
    let wire = frame(1, true, &bad, None);
    let mut c = client();
    c.receive(&wire[..100]);
    assert!(matches!(
        c.stage_next(),
        Err(Error::Protocol(ProtocolError::InvalidUtf8))
    ));
}

#[test]
fn huge_announced_length_allocates_nothing_big() {
    let mut c = Connection::new(
        Role::Client,
        Config::default()
            .max_frame_size(None)
            .max_message_size(None),
    );
    let out = feed_all(
        &mut c,
        &[0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
    );
    assert!(out.is_empty() || matches!(out[0], Err(Error::Protocol(_))));
    assert!(c.partial.as_ref().map_or(0, |p| p.data.capacity()) <= PARTIAL_INITIAL_CAPACITY);
}

/// Feeds `wire` to `c` in reads of at most the sizes `reads` (cycled), as a socket driver
/// does, until a message is staged.
fn stage_in_reads(c: &mut Connection, wire: &[u8], reads: &[usize]) -> Result<(), Error> {
    let mut at = 0;
    for n in reads.iter().cycle() {
        if c.stage_next()? {
            return Ok(());
        }
        assert!(at < wire.len(), "the whole message was read but not staged");
        c.receive_with(64 << 10, |buf: &mut [u8]| {
            let n = buf.len().min(*n).min(wire.len() - at);
            buf[..n].copy_from_slice(&wire[at..at + n]);
            at += n;
            Ok::<_, ()>(n)
        })
        .unwrap();
    }
    unreachable!()
}

/// Receives one binary message from `wire` with reads of at most 256 KiB and returns
/// where the lent payload lies and its length.
fn receive_in_reads(c: &mut Connection, wire: &[u8]) -> (*const u8, usize) {
    stage_in_reads(c, wire, &[256 << 10]).unwrap();
    let Some(MessageRef::Binary(data)) = c.staged() else {
        panic!("not binary")
    };
    (data.as_ptr(), data.len())
}

#[test]
fn a_stream_of_16_mib_messages_reuses_one_buffer() {
    // The default message limit, in one frame: the buffer must end at exactly that size
    // (growing by doubling overshot it, and a buffer over the kept size was dropped and
    // allocated again, zeroed, for every message).
    let payload: Vec<u8> = (0..16u32 << 20).map(|i| (i % 251) as u8).collect();
    let wire = frame(2, true, &payload, None);
    let (c, first) = receives_in_one_buffer(&wire, &payload, 3);
    assert_eq!(first as usize % PAGE, 0);
    assert_eq!(c.assembled.capacity(), payload.len() + PAGE);
}

/// Receives the message `payload`, sent as `wire`, `times` times on one connection:
/// the same buffer holds it every time. The connection and where that buffer lent it.
fn receives_in_one_buffer(wire: &[u8], payload: &[u8], times: usize) -> (Connection, *const u8) {
    let mut c = client();
    let (first, _) = receive_in_reads(&mut c, wire);
    for round in 1..times {
        let (again, len) = receive_in_reads(&mut c, wire);
        assert_eq!(len, payload.len());
        assert_eq!(again, first, "round {round}: not reused");
    }
    let Some(MessageRef::Binary(data)) = c.staged() else {
        panic!("not binary")
    };
    assert!(data == payload);
    (c, first)
}

#[test]
fn big_fragmented_text_moved_onto_a_page_boundary_stays_whole_and_checked() {
    // Fragments of very different sizes, text with 2-byte characters split across
    // fragments and reads; the buffer grows (and its payload moves to a page boundary)
    // while parts of it are already checked.
    let text = "é".repeat(600_000) + "end";
    let bytes = text.as_bytes();
    let cuts = [0, 101, 200_001, 200_006, 900_001, bytes.len()];
    let fragmented = |bytes: &[u8]| {
        let mut wire = Vec::new();
        for (i, w) in cuts.windows(2).enumerate() {
            let opcode = if i == 0 { 1 } else { 0 };
            wire.extend(frame(opcode, w[1] == bytes.len(), &bytes[w[0]..w[1]], None));
        }
        wire
    };
    let wire = fragmented(bytes);
    for reads in [
        &[1000usize, 70_000, 300_000][..],
        &[7, 65_536, 1 << 20],
        &[4096],
    ] {
        let mut c = client();
        for round in 0..2 {
            stage_in_reads(&mut c, &wire, reads).unwrap();
            let Some(MessageRef::Text(got)) = c.staged() else {
                panic!("not text")
            };
            assert!(got == text, "reads {reads:?}, round {round}");
            assert_eq!(got.as_ptr() as usize % PAGE, 0);
        }
        let Some(Message::Text(owned)) = c.take_staged() else {
            panic!("not text")
        };
        assert_eq!(owned.as_str(), text);
    }
    // An invalid byte after the move is still caught.
    let mut bad = bytes.to_vec();
    bad[800_000] = 0xFF;
    let err =
        stage_in_reads(&mut client(), &fragmented(&bad), &[1000, 70_000, 300_000]).unwrap_err();
    assert!(
        matches!(err, Error::Protocol(ProtocolError::InvalidUtf8)),
        "{err:?}"
    );
}

#[test]
fn a_stream_of_100_kib_messages_reuses_one_buffer() {
    // Too small to be aligned: its payload starts the buffer, wherever that is.
    let payload: Vec<u8> = (0..100u32 << 10).map(|i| (i % 251) as u8).collect();
    let wire = frame(2, true, &payload, None);
    receives_in_one_buffer(&wire, &payload, 4);
}

#[test]
fn a_stream_of_fragmented_16_mib_messages_reuses_one_buffer() {
    // Doubling from fragment to fragment stops at the kept size (with the page lead
    // added at each step it overshot it, and the buffer was dropped after each message).
    let payload: Vec<u8> = (0..16u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut wire = Vec::new();
    for (i, piece) in payload.chunks(1 << 20).enumerate() {
        wire.extend(frame(if i == 0 { 2 } else { 0 }, i == 15, piece, None));
    }
    let (c, first) = receives_in_one_buffer(&wire, &payload, 3);
    assert_eq!(first as usize % PAGE, 0);
    assert!(c.assembled.capacity() <= KEPT_INPUT_CAPACITY);
}

#[test]
fn fragmented_messages_with_a_small_first_fragment_reuse_the_buffer_too() {
    let payload: Vec<u8> = (0..2u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut wire = frame(2, false, &payload[..1000], None);
    for (i, piece) in payload[1000..].chunks(300_000).enumerate() {
        wire.extend(frame(
            0,
            1000 + (i + 1) * 300_000 >= payload.len(),
            piece,
            None,
        ));
    }
    receives_in_one_buffer(&wire, &payload, 3);
}

#[test]
fn an_announced_big_frame_gets_memory_only_as_its_data_arrives() {
    // 16 MiB announced (within the default limits), one byte sent.
    let mut c = client();
    let mut wire = vec![0x82, 0x7F];
    wire.extend_from_slice(&(16u64 << 20).to_be_bytes());
    wire.push(7);
    c.receive(&wire);
    assert!(!c.stage_next().unwrap());
    let capacity = c.partial.as_ref().map_or(0, |p| p.data.capacity());
    assert!(capacity <= PARTIAL_INITIAL_CAPACITY, "{capacity}");
    // A direct read zeroes no more than it is offered.
    c.receive_with(1024, |buf: &mut [u8]| {
        assert!(buf.len() <= DIRECT_MAX);
        Ok::<_, ()>(10)
    })
    .unwrap();
    assert!(!c.stage_next().unwrap());
    let len = c.partial.as_ref().map_or(0, |p| p.data.len() - p.start);
    assert!(len <= 1 + DIRECT_MAX, "{len}");
}

/// Owned takes of big messages keep no more than `MAX_KEPT_INPUT` and hand out buffers
/// trimmed to the message.
#[cfg(feature = "deflate")]
#[test]
fn owned_takes_of_big_messages_keep_and_pin_nothing_big() {
    let (mut c, mut s) = deflate_pair(false);
    // 20 MiB of zeros: a small compressed message that inflates past the kept size.
    c.send(Message::binary(vec![0u8; 20 << 20])).unwrap();
    s.receive(&drain_output(&mut c, usize::MAX));
    assert!(s.stage_next().unwrap());
    let Some(Message::Binary(big)) = s.take_staged() else {
        panic!("not binary")
    };
    assert_eq!(big.len(), 20 << 20);
    assert!(s.assembled.capacity() <= MAX_KEPT_INPUT);
    // A fragmented 100 KB message after it comes out at its own size.
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 7) as u8).collect();
    c.send_fragmented(&Message::binary(data.clone()), 30_000)
        .unwrap();
    s.receive(&drain_output(&mut c, usize::MAX));
    assert!(s.stage_next().unwrap());
    let Some(Message::Binary(got)) = s.take_staged() else {
        panic!("not binary")
    };
    assert_eq!(&got[..], &data[..]);
}

#[test]
fn messages_before_a_violation_are_delivered_first() {
    let mut c = client();
    let bytes = [
        frame(1, true, b"one", None),
        frame(2, true, b"two", None),
        vec![0xC1, 0x00],
    ]
    .concat();
    let out = feed_all(&mut c, &bytes);
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].as_ref().unwrap(), &Message::text("one"));
    assert!(matches!(
        out[2],
        Err(Error::Protocol(ProtocolError::ReservedBits(4)))
    ));
    // Failed: nothing more comes out, sending is refused.
    assert!(feed_all(&mut c, &frame(1, true, b"x", None)).is_empty());
    assert!(c.send_text("x").is_err());
}

proptest! {
    /// Whatever a client sends (any message, any fragmentation), the server role receives
    /// exactly that, however the bytes are split.
    #[test]
    fn client_to_server_round_trip(
        messages in proptest::collection::vec((any::<bool>(), ".{0,50}", 1usize..20), 1..6),
        split in 1usize..64,
    ) {
        let mut c = client();
        let mut expected = Vec::new();
        for (binary, text, frag) in &messages {
            let m = if *binary { Message::binary(text.clone().into_bytes()) } else { Message::text(text.as_str()) };
            c.send_fragmented(&m, *frag).unwrap();
            expected.push(m);
        }
        let wire = c.pending_output().to_vec();
        let mut s = server();
        let mut got = Vec::new();
        for chunk in wire.chunks(split) {
            got.extend(feed_all(&mut s, chunk).into_iter().map(Result::unwrap));
        }
        prop_assert_eq!(got, expected);
    }

    /// Borrowing staged messages gives exactly what taking them does: the same messages
    /// and the same errors, for any input split anywhere, both roles.
    #[test]
    fn borrowed_and_owned_reads_agree(
        messages in proptest::collection::vec((any::<bool>(), ".{0,50}", 1usize..20), 1..6),
        noise in proptest::collection::vec(any::<u8>(), 0..8),
        split in 1usize..64,
    ) {
        let mut c = client();
        for (binary, text, frag) in &messages {
            let m = if *binary { Message::binary(text.clone().into_bytes()) } else { Message::text(text.as_str()) };
            c.send_fragmented(&m, *frag).unwrap();
        }
        let mut wire = c.pending_output().to_vec();
        wire.extend_from_slice(&noise);
        let (mut owned, mut borrowed) = (server(), server());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for chunk in wire.chunks(split) {
            owned.receive(chunk);
            a.extend(drain(&mut owned).into_iter().map(|r| r.map_err(|e| e.to_string())));
            borrowed.receive(chunk);
            loop {
                match borrowed.stage_next() {
                    Ok(true) => b.push(Ok(borrowed.staged().unwrap().to_owned())),
                    Ok(false) => break,
                    Err(e) => { b.push(Err(e.to_string())); break; }
                }
            }
        }
        prop_assert_eq!(a, b);
    }

    #[test]
    fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), split in 1usize..32) {
        for role in [Role::Client, Role::Server] {
            let mut conn = Connection::new(role, Config::default().max_message_size(Some(1 << 16)));
            for chunk in bytes.chunks(split) {
                conn.receive(chunk);
                let _ = drain(&mut conn);
            }
        }
    }
}

#[test]
fn after_the_output_is_lost_messages_and_the_close_still_arrive_and_nothing_is_queued() {
    let mut conn = client();
    conn.send_text("queued, never written").unwrap();
    conn.lose_output();
    assert!(!conn.has_pending_output());
    assert!(!conn.can_send());
    assert!(matches!(
        conn.send_text("more"),
        Err(Error::ConnectionClosed)
    ));
    assert!(matches!(conn.close(None), Err(Error::ConnectionClosed)));
    let mut wire = frame(0x1, true, b"before", None);
    wire.extend(frame(0x9, true, b"ping", None));
    wire.extend(frame(0x8, true, &[0x03, 0xf0], None));
    let got = feed_all(&mut conn, &wire);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0].as_ref().unwrap().as_text(), Some("before"));
    assert!(matches!(got[1], Ok(Message::Ping(_))));
    match &got[2] {
        Ok(Message::Close(Some(close))) => assert_eq!(close.code, CloseCode(1008)),
        other => panic!("expected the close, got {other:?}"),
    }
    // No pong, no close reply: there is nowhere to send them.
    assert!(!conn.has_pending_output());
    assert_eq!(conn.state(), State::Closed);
    assert!(conn.receive_eof().is_ok());
}

#[test]
fn by_default_the_message_limit_bounds_single_frames_before_their_payload_arrives() {
    let config = Config::default();
    assert_eq!(config.max_frame_size, None);
    // A 20 MiB frame under the default 64 MiB message limit is fine (the header alone here).
    let mut c = client();
    assert!(feed_all(&mut c, &[0x82, 0x7F, 0, 0, 0, 0, 1, 0x40, 0, 0]).is_empty());
    // One that announces more than the message limit fails on its header.
    let mut c = Connection::new(Role::Client, config.max_message_size(Some(1000)));
    let out = feed_all(&mut c, &[0x82, 0x7F, 0x40, 0, 0, 0, 0, 0, 0, 0]);
    assert!(
        matches!(
            protocol_error(&out[0]),
            ProtocolError::MessageTooLarge { max: 1000, .. }
        ),
        "{out:?}"
    );
    assert_eq!(sent_close_code(&mut c), Some(1009));
}
