//! The physical limit of each scenario it runs: the least work any WebSocket client could do
//! for it over the same server, with plain socket calls.
//!
//! - `feed`: the `/feed` byte stream read with plain `read` calls into one buffer (64 KiB
//!   unless `--read-buf` says otherwise), counting bytes until the expected total (M frames
//!   of known length) has arrived. No parsing, no validation, no copies beyond the kernel's.
//! - `echo` and `large`: one frame, encoded (masked) once before the clock starts, written
//!   per round trip; the echoed frame read back into a reused buffer, its header compared with
//!   the one expected, nothing else looked at (no UTF-8 check). The mask key is zero, so the
//!   payload goes out as it is: a conforming client picks a fresh random key per frame and
//!   masks with it, a pass over the payload that the limit leaves out (the server unmasks
//!   either way).
//! - `feed` as `raw-utf8`: the same reads, and each text payload checked for UTF-8 (whole
//!   with `simdutf8`'s fast check, or piece by piece where a read splits it), as RFC 6455
//!   requires of every client: the limit of a conforming client, not of a socket.
//! - `connect`: a pre-built upgrade request with a fixed key, the response read up to its
//!   blank line and only its status line checked (not the accept key), a pre-encoded close,
//!   reads until EOF.
//!
//! Why 64 KiB for the feed: on the project's machine, reads into 128 KiB or 256 KiB buffers
//! moved 16 KiB frames at 3-4 GB/s against about 6 GB/s with 16-64 KiB (the buffer no longer
//! stays in the core's caches), below what wsc-async (16 KiB reads) reached: not a limit.
//!
//! Where each feed read lands: after the partial frame that a buffering client would keep at
//! the front of its buffer (the stream's offset within the current frame), not always at the
//! buffer's start. On AMD Zen 4 (this project's machine in December 2026) the kernel's copy
//! into the same page offset read after read ran at half speed: 16 KiB frames at 2.0-2.6 GB/s
//! whatever that offset was (0 to 4080 tried), 3.5-5.0 GB/s with it moving. A reader at
//! half the speed of real clients is no limit; the moving offset costs no copy.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Instant;

use wsc::proto::frame::{FrameHeader, OpCode};
use wsc::proto::utf8::{self, Utf8Validator};

use super::{err, handshake, Kind, Result};
use crate::payload::header_len;
use crate::report::Report;
use crate::scenario::{
    connects, echo_payload, echo_route, round_trips, timed_rounds, Params, Scenario,
};

/// Close 1000, masked with a zero key.
const CLOSE: [u8; 8] = [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8];
/// The echoed payload of `large` is read in pieces of this size, one after another into the
/// 16 MiB buffer (`/sink` reads it in pieces of the same size).
const PIECE: usize = 256 << 10;
/// Largest response head accepted by `connect`.
const MAX_HEAD: usize = 4096;

/// Runs `p.scenario` (`read_buf`: the feed's buffer; `check_utf8`: `raw-utf8`, which also
/// validates the feed's text).
pub fn run(p: &Params, read_buf: usize, check_utf8: bool, report: &mut Report) -> Result<()> {
    match p.scenario {
        Scenario::Feed => {
            let check = check_utf8.then(|| TextCheck::new(p.size));
            feed(&p.addr, p.size, p.count, p.warmup, read_buf, check, report)
        }
        Scenario::Echo | Scenario::Large => echo(p, report),
        Scenario::Connect => connect(p, report),
        Scenario::Compressed | Scenario::Idle => Err(err("no raw limit for this scenario")),
    }
}

/// The UTF-8 check of `raw-utf8`: the feed's frames all have the same length, so where each
/// payload starts and ends in the byte stream is known without parsing a header.
struct TextCheck {
    frame_len: u64,
    header_len: u64,
    /// For payloads split across reads.
    pieces: Utf8Validator,
}

impl TextCheck {
    fn new(size: usize) -> Self {
        TextCheck {
            frame_len: (header_len(size) + size) as u64,
            header_len: header_len(size) as u64,
            pieces: Utf8Validator::new(),
        }
    }

    /// Checks the payload bytes in `chunk`, which starts at offset `at` of the stream of
    /// frames.
    fn check(&mut self, mut at: u64, mut chunk: &[u8]) -> Result<()> {
        while !chunk.is_empty() {
            let in_frame = at % self.frame_len;
            let take = (self.frame_len - in_frame).min(chunk.len() as u64);
            let ends = in_frame + take == self.frame_len;
            if in_frame + take > self.header_len {
                let skip = self.header_len.saturating_sub(in_frame) as usize;
                let payload = &chunk[skip..take as usize];
                let ok = if in_frame <= self.header_len && ends {
                    utf8::validate(payload).is_ok()
                } else {
                    self.pieces.feed(payload).is_ok() && (!ends || self.pieces.finish().is_ok())
                };
                if !ok {
                    return Err(err(format!(
                        "invalid UTF-8 in message {}",
                        at / self.frame_len + 1
                    )));
                }
            }
            at += take;
            chunk = &chunk[take as usize..];
        }
        Ok(())
    }
}

/// Reads the feed of `count` messages of `size` bytes, `read_buf` bytes at most per read
/// (checking the text on the way with `check`); the clock starts once the first `warmup`
/// messages' bytes have arrived.
fn feed(
    addr: &str,
    size: usize,
    count: u64,
    warmup: u64,
    read_buf: usize,
    mut check: Option<TextCheck>,
    report: &mut Report,
) -> Result<()> {
    let mut tcp = TcpStream::connect(addr)?;
    tcp.set_nodelay(true)?;
    let path = format!("/feed?size={size}&count={count}");
    let read_buf = read_buf.max(1);
    // Written once, so that its pages are mapped before the clock starts; a page more than
    // a read, for the moving offset (see the module's doc).
    let mut buf = vec![1u8; read_buf + 4096];
    let leftover = handshake::client_blocking(&mut tcp, addr, &path)?;
    let mut start = Instant::now();
    let frame_len = (header_len(size) + size) as u64;
    let expected = count * frame_len;
    let warm = warmup * frame_len;
    let mut got = leftover.len() as u64;
    if let Some(c) = check.as_mut() {
        c.check(0, &leftover[..got.min(expected) as usize])?;
    }
    // With a warm-up, the clock starts at the first read that ends past it.
    let mut measured_from = if warm == 0 { Some(0) } else { None };
    while got < expected {
        let at = (got % frame_len % 4096) as usize;
        let n = tcp.read(&mut buf[at..at + read_buf])?;
        if n == 0 {
            return Err(err(format!("EOF after {got} of {expected} bytes")));
        }
        if let Some(c) = check.as_mut() {
            // Not the close frame that may follow the last message.
            let frames = n.min((expected - got) as usize);
            c.check(got, &buf[at..at + frames])?;
        }
        got += n as u64;
        if measured_from.is_none() && got >= warm {
            start = Instant::now();
            measured_from = Some(got);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    // Close, then let go; the server ends on EOF.
    let _ = tcp.write_all(&CLOSE);
    // Bytes and messages of the measured part (frames are all the same size).
    let wire = expected - measured_from.unwrap_or(0).min(expected);
    let msgs = wire as f64 / frame_len as f64;
    let payload = (msgs * size as f64) as u64;
    report.secs = Some(secs);
    report.bytes = Some(payload);
    report.wire_bytes = Some(wire);
    report.msgs_per_sec = Some(msgs / secs);
    report.mb_per_sec = Some(payload as f64 / secs / 1e6);
    report.notes = Some(match check {
        Some(_) => format!(
            "reads the raw TCP stream into a {read_buf}-byte buffer, checks each payload's UTF-8"
        ),
        None => {
            format!("reads the raw TCP stream into a {read_buf}-byte buffer, counts bytes only")
        }
    });
    Ok(())
}

/// The frame to send (masked, zero key) and the header the server echoes it with.
fn echo_frames(kind: Kind, payload: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let header = FrameHeader {
        fin: true,
        rsv: [false; 3],
        opcode: match kind {
            Kind::Text => OpCode::Text,
            Kind::Binary => OpCode::Binary,
        },
        mask: Some([0; 4]),
        payload_len: payload.len() as u64,
    };
    let mut frame = Vec::with_capacity(header.encoded_len() + payload.len());
    header.encode(&mut frame);
    frame.extend_from_slice(payload);
    let mut echoed = Vec::with_capacity(header_len(payload.len()));
    FrameHeader {
        mask: None,
        ..header
    }
    .encode(&mut echoed);
    (frame, echoed)
}

/// `echo` and `large`: `p.count` round trips of one pre-encoded frame, after `p.warmup`.
fn echo(p: &Params, report: &mut Report) -> Result<()> {
    let (kind, payload) = echo_payload(p);
    let (frame, head) = echo_frames(kind, &payload);
    let mut tcp = TcpStream::connect(&p.addr)?;
    tcp.set_nodelay(true)?;
    if !handshake::client_blocking(&mut tcp, &p.addr, echo_route(p.scenario))?.is_empty() {
        return Err(err("data from the server before the first message"));
    }
    // The echoed frame, header and payload; written once, so that its pages are mapped before
    // the clock starts.
    let mut buf = vec![1u8; head.len() + payload.len()];
    // The header with the start of the payload (all of it for `echo`) in one read, as a
    // buffered client reads them; the server sends nothing else until the next frame.
    let first = buf.len().min(head.len() + PIECE);
    let (samples, secs) = timed_rounds(p, |i| {
        tcp.write_all(&frame)?;
        tcp.read_exact(&mut buf[..first])?;
        if buf[..head.len()] != head[..] {
            return Err(err(format!(
                "round trip {i}: got a frame starting {:02x?}, expected {head:02x?}",
                &buf[..head.len()]
            )));
        }
        for piece in buf[first..].chunks_mut(PIECE) {
            tcp.read_exact(piece)?;
        }
        Ok(())
    })?;
    close(tcp, &mut buf)?;
    round_trips(p, samples, secs, report);
    report.notes = Some(
        "writes a pre-encoded frame (mask key 0), reads the echo into a reused buffer \
         and compares its header only"
            .into(),
    );
    Ok(())
}

/// `connect`: `p.count` connections to `/close`, after `p.warmup`.
fn connect(p: &Params, report: &mut Report) -> Result<()> {
    // Resolved once: a client given an address does not parse it per connection either.
    let addr = p
        .addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| err(format!("{}: no address", p.addr)))?;
    // The key of RFC 6455's example: the server answers any valid key alike.
    let request = format!(
        "GET /close HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        p.addr
    );
    let mut buf = [0u8; MAX_HEAD];
    let (samples, secs) = timed_rounds(p, |_| {
        let mut tcp = TcpStream::connect(addr)?;
        tcp.set_nodelay(true)?;
        tcp.write_all(request.as_bytes())?;
        read_head(&mut tcp, &mut buf)?;
        close(tcp, &mut buf)
    })?;
    connects(p, samples, secs, report);
    report.notes = Some(
        "pre-built upgrade request (fixed key), checks the 101 status line only, \
         pre-encoded close (mask key 0), reads until EOF"
            .into(),
    );
    Ok(())
}

/// Reads the response head into `buf` and checks its status line. The server sends nothing
/// behind the head until the client's close, so the head ends where the bytes read so far end.
fn read_head(tcp: &mut TcpStream, buf: &mut [u8]) -> Result<()> {
    let mut got = 0;
    while !buf[..got].ends_with(b"\r\n\r\n") {
        if got == buf.len() {
            return Err(err("response head too large"));
        }
        match tcp.read(&mut buf[got..])? {
            0 => return Err(err("connection closed during the handshake")),
            n => got += n,
        }
    }
    if !buf.starts_with(b"HTTP/1.1 101") {
        let line = buf[..got].split(|&b| b == b'\r').next().unwrap_or_default();
        return Err(err(format!(
            "handshake refused: {}",
            String::from_utf8_lossy(line)
        )));
    }
    Ok(())
}

/// Sends close 1000 and reads (into `buf`, dropped) until EOF: the server answers the close,
/// then closes TCP. The socket is closed on return, inside the caller's timing.
fn close(mut tcp: TcpStream, buf: &mut [u8]) -> Result<()> {
    tcp.write_all(&CLOSE)?;
    while tcp.read(buf)? > 0 {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_frames_are_a_masked_frame_and_its_unmasked_echo() {
        for (kind, opcode, len) in [
            (Kind::Text, OpCode::Text, 32),
            (Kind::Binary, OpCode::Binary, 70_000),
        ] {
            let payload = vec![7u8; len];
            let (frame, head) = echo_frames(kind, &payload);
            let (sent, n) = FrameHeader::decode(&frame).unwrap().unwrap();
            assert_eq!((sent.opcode, sent.mask), (opcode, Some([0; 4])));
            assert!(sent.fin);
            assert_eq!(&frame[n..], &payload[..]);
            let (echoed, m) = FrameHeader::decode(&head).unwrap().unwrap();
            assert_eq!(m, head.len());
            assert_eq!((echoed.opcode, echoed.mask), (opcode, None));
            assert_eq!(echoed.payload_len, len as u64);
        }
        let (close, n) = FrameHeader::decode(&CLOSE).unwrap().unwrap();
        assert_eq!(
            (close.opcode, close.mask, n),
            (OpCode::Close, Some([0; 4]), 6)
        );
        assert_eq!(&CLOSE[n..], &1000u16.to_be_bytes());
    }

    /// Frames as the feed sends them: unmasked text, `size` bytes each.
    fn stream(payloads: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            crate::payload::frame(&mut out, OpCode::Text, false, p);
        }
        out
    }

    #[test]
    fn text_check_follows_frames_across_any_split() {
        // Two-byte and three-byte code points, so that splits fall inside them too; the frame
        // headers (0x81 ...) are not UTF-8 and must be skipped.
        let text = "é€ab".repeat(22).into_bytes();
        let size = text.len();
        let bytes = stream(&[text.clone(), text.clone(), text]);
        for split in 0..=bytes.len() {
            let mut c = TextCheck::new(size);
            c.check(0, &bytes[..split]).unwrap();
            c.check(split as u64, &bytes[split..]).unwrap();
        }
    }

    #[test]
    fn text_check_finds_invalid_text_wherever_it_is_split() {
        let good = vec![b'a'; 200];
        let mut bad = good.clone();
        bad[150] = 0xC3; // a lead byte followed by ASCII
        let bytes = stream(&[good, bad]);
        for split in [0, 100, 204 + 4 + 150, 204 + 4 + 151, bytes.len()] {
            let mut c = TextCheck::new(200);
            let first = c.check(0, &bytes[..split]);
            let result = first.and_then(|()| c.check(split as u64, &bytes[split..]));
            let e = result.expect_err("the second message is not UTF-8");
            assert!(e.to_string().contains("message 2"), "{e}");
        }
    }
}
