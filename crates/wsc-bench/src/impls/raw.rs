//! The physical limit: the same `/feed` byte stream read with plain `read` calls into one
//! buffer (64 KiB unless `--read-buf` says otherwise), counting bytes until the expected
//! total (M frames of known length) has arrived. No parsing, no validation, no copies beyond
//! the kernel's.
//!
//! Why 64 KiB: on the project's machine, reads into 128 KiB or 256 KiB buffers moved 16 KiB
//! frames at 3-4 GB/s against about 6 GB/s with 16-64 KiB (the buffer no longer stays in
//! the core's caches), below what wsc-async (16 KiB reads) reached: not a limit.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use super::{err, handshake, Result};
use crate::payload::header_len;
use crate::report::Report;

/// Reads the feed of `count` messages of `size` bytes, `read_buf` bytes at most per read;
/// the clock starts once the first `warmup` messages' bytes have arrived.
pub fn feed(
    addr: &str,
    size: usize,
    count: u64,
    warmup: u64,
    read_buf: usize,
    report: &mut Report,
) -> Result<()> {
    let mut tcp = TcpStream::connect(addr)?;
    tcp.set_nodelay(true)?;
    let path = format!("/feed?size={size}&count={count}");
    // Written once, so that its pages are mapped before the clock starts.
    let mut buf = vec![1u8; read_buf.max(1)];
    let leftover = handshake::client_blocking(&mut tcp, addr, &path)?;
    let mut start = Instant::now();
    let frame_len = (header_len(size) + size) as u64;
    let expected = count * frame_len;
    let warm = warmup * frame_len;
    let mut got = leftover.len() as u64;
    // With a warm-up, the clock starts at the first read that ends past it.
    let mut measured_from = if warm == 0 { Some(0) } else { None };
    while got < expected {
        let n = tcp.read(&mut buf)?;
        if n == 0 {
            return Err(err(format!("EOF after {got} of {expected} bytes")));
        }
        got += n as u64;
        if measured_from.is_none() && got >= warm {
            start = Instant::now();
            measured_from = Some(got);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    // Close 1000, masked (with a zero key), then let go; the server ends on EOF.
    let _ = tcp.write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8]);
    // Bytes and messages of the measured part (frames are all the same size).
    let wire = expected - measured_from.unwrap_or(0).min(expected);
    let msgs = wire as f64 / frame_len as f64;
    let payload = (msgs * size as f64) as u64;
    report.secs = Some(secs);
    report.bytes = Some(payload);
    report.wire_bytes = Some(wire);
    report.msgs_per_sec = Some(msgs / secs);
    report.mb_per_sec = Some(payload as f64 / secs / 1e6);
    report.notes = Some(format!(
        "reads the raw TCP stream into a {read_buf}-byte buffer, counts bytes only"
    ));
    Ok(())
}
