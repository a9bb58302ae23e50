//! Micro-benchmarks of wsc's hot paths, through its public sans-I/O API (`wsc::proto`):
//! frame header decoding, masking, UTF-8 validation, and message reassembly in a client-role
//! `Connection`.
//!
//! ```text
//! cargo bench -p wsc-bench --bench micro
//! cargo bench -p wsc-bench --bench micro -- --output-format bencher   # one line per bench
//! ```
//!
//! Each benchmark warms up for 0.5 s and measures for 1.5 s (command-line options such as
//! `--measurement-time` override that), so the whole file runs in about a minute.
//! `scripts/bench.sh` runs it and copies the figures into BENCHMARKS.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wsc::proto::frame::{FrameHeader, OpCode};
use wsc::proto::mask::apply_mask;
use wsc::proto::utf8::{self, Utf8Validator};
use wsc::proto::{Config, Connection, MessageRef, Role};

// ----- inputs -----

/// The header of an unmasked frame (server to client) with `payload_len` bytes of payload,
/// in the shortest length form: 2 bytes up to 125, 4 up to 65535, 10 beyond.
fn header(opcode: OpCode, fin: bool, payload_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(14);
    FrameHeader {
        fin,
        rsv: [false; 3],
        opcode,
        mask: None,
        payload_len: payload_len as u64,
    }
    .encode(&mut out);
    out
}

/// `len` bytes of printable ASCII (JSON-like).
fn ascii_text(len: usize) -> Vec<u8> {
    const SAMPLE: &[u8] =
        br#"{"sym":"BTC-USD","px":64123.5,"qty":0.0125,"side":"buy","seq":1234567} "#;
    SAMPLE.iter().copied().cycle().take(len).collect()
}

/// `len` bytes of valid UTF-8 where most characters take 2, 3 or 4 bytes (Greek, CJK, symbols,
/// a little ASCII), cut at a character boundary and padded with ASCII to the exact length.
fn multibyte_text(len: usize) -> Vec<u8> {
    const SAMPLE: &str = "κόσμε 日本語のテキスト € 𝄞 😀 Ωμέγα ünïcödé 中文 ";
    let mut out = String::with_capacity(len + 8);
    'fill: loop {
        for c in SAMPLE.chars() {
            if out.len() + c.len_utf8() > len {
                break 'fill;
            }
            out.push(c);
        }
    }
    while out.len() < len {
        out.push('.');
    }
    let out = out.into_bytes();
    assert_eq!(out.len(), len);
    assert!(!out.is_ascii());
    out
}

/// `count` single-frame text messages of `size` bytes, as a server sends them.
fn text_feed(count: usize, size: usize) -> Vec<u8> {
    let payload = ascii_text(size);
    let mut out = Vec::with_capacity(count * (size + 4));
    for _ in 0..count {
        out.extend_from_slice(&header(OpCode::Text, true, size));
        out.extend_from_slice(&payload);
    }
    out
}

/// One message (`payload`) in `fragments` frames (first `opcode`, then continuations).
fn fragmented(opcode: OpCode, payload: &[u8], fragments: usize) -> Vec<u8> {
    let piece = payload.len().div_ceil(fragments);
    let mut out = Vec::with_capacity(payload.len() + fragments * 14);
    for (i, chunk) in payload.chunks(piece).enumerate() {
        let op = if i == 0 { opcode } else { OpCode::Continuation };
        let fin = (i + 1) * piece >= payload.len();
        out.extend_from_slice(&header(op, fin, chunk.len()));
        out.extend_from_slice(chunk);
    }
    out
}

/// A client-role connection, open, with the default limits (16 MiB frames, 64 MiB messages).
fn client() -> Connection {
    Connection::new(Role::Client, Config::default())
}

// ----- benchmarks -----

fn frame_header(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_header_decode");
    for (name, bytes) in [
        ("2B_len100", header(OpCode::Text, true, 100)),
        ("4B_len16384", header(OpCode::Binary, true, 16384)),
        ("10B_len1MiB", header(OpCode::Binary, true, 1 << 20)),
    ] {
        let expected_len = bytes.len();
        assert_eq!(
            FrameHeader::decode(&bytes).unwrap().map(|(_, n)| n),
            Some(expected_len)
        );
        g.throughput(Throughput::Elements(1));
        g.bench_function(name, |b| {
            b.iter(|| FrameHeader::decode(black_box(&bytes[..])))
        });
    }
    g.finish();
}

fn mask(c: &mut Criterion) {
    let mut g = c.benchmark_group("apply_mask");
    for (name, len) in [("16KiB", 16usize << 10), ("1MiB", 1 << 20)] {
        let mut buf = ascii_text(len);
        let key = [0x37, 0xfa, 0x21, 0x3d];
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(name, |b| {
            b.iter(|| apply_mask(black_box(&mut buf[..]), black_box(key), 0))
        });
    }
    g.finish();
}

/// Pieces fed to the incremental validator: 4 KiB, so multi-byte characters straddle them.
const VALIDATOR_PIECE: usize = 4096;

fn utf8_validation(c: &mut Criterion) {
    let inputs = [
        ("ascii_100B", ascii_text(100)),
        ("ascii_16KiB", ascii_text(16 << 10)),
        ("multibyte_100B", multibyte_text(100)),
        ("multibyte_16KiB", multibyte_text(16 << 10)),
    ];
    let mut g = c.benchmark_group("utf8_is_valid");
    for (name, text) in &inputs {
        assert!(utf8::is_valid(text));
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(*name, |b| b.iter(|| utf8::is_valid(black_box(&text[..]))));
    }
    g.finish();

    let mut g = c.benchmark_group("utf8_validator_4KiB_pieces");
    let validate = |text: &[u8]| {
        let mut v = Utf8Validator::new();
        for piece in text.chunks(VALIDATOR_PIECE) {
            v.feed(piece)?;
        }
        v.finish()
    };
    for (name, text) in &inputs {
        assert_eq!(validate(text), Ok(()));
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(*name, |b| b.iter(|| validate(black_box(&text[..]))));
    }
    g.finish();
}

/// Messages in the small-message feed, and their size.
const FEED_COUNT: usize = 1000;
const FEED_SIZE: usize = 100;

fn reassembly(c: &mut Criterion) {
    // (a) 1000 single-frame 100-byte text messages: one `receive` of the whole buffer, then
    // every message taken out, borrowed (stage_next/staged) or owned (next_message).
    let feed = text_feed(FEED_COUNT, FEED_SIZE);
    let drain_lent = |conn: &mut Connection| {
        let mut n = 0usize;
        let mut check = 0u64;
        while conn.stage_next().expect("valid feed") {
            if let Some(MessageRef::Text(t)) = conn.staged() {
                n += 1;
                check += u64::from(t.as_bytes()[t.len() - 1]);
            }
        }
        (n, check)
    };
    let drain_owned = |conn: &mut Connection| {
        let mut n = 0usize;
        let mut check = 0u64;
        while let Some(m) = conn.next_message().expect("valid feed") {
            let p = m.as_payload();
            n += 1;
            check += u64::from(p[p.len() - 1]);
        }
        (n, check)
    };
    {
        let mut conn = client();
        conn.receive(&feed);
        assert_eq!(drain_lent(&mut conn).0, FEED_COUNT);
        conn.receive(&feed);
        assert_eq!(drain_owned(&mut conn).0, FEED_COUNT);
    }

    let mut g = c.benchmark_group("reassembly_1000x100B_text");
    g.throughput(Throughput::Elements(FEED_COUNT as u64));
    let mut conn = client();
    g.bench_function("stage_next_staged", |b| {
        b.iter(|| {
            conn.receive(black_box(&feed));
            drain_lent(&mut conn)
        })
    });
    let mut conn = client();
    g.bench_function("next_message", |b| {
        b.iter(|| {
            conn.receive(black_box(&feed));
            drain_owned(&mut conn)
        })
    });
    g.finish();

    // (b) one 1 MiB message in 64 fragments of 16 KiB, text (validated piece by piece) and
    // binary, taken out with next_message.
    let mut g = c.benchmark_group("reassembly_1MiB_in_64_fragments");
    let text = ascii_text(1 << 20);
    for (name, opcode) in [("text", OpCode::Text), ("binary", OpCode::Binary)] {
        let wire = fragmented(opcode, &text, 64);
        let mut conn = client();
        conn.receive(&wire);
        let m = conn.next_message().unwrap().expect("one message");
        assert_eq!(m.len(), text.len());
        assert!(conn.next_message().unwrap().is_none());

        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(BenchmarkId::new("next_message", name), |b| {
            b.iter(|| {
                conn.receive(black_box(&wire));
                conn.next_message().expect("valid message").map(|m| m.len())
            })
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(50)
}

criterion_group! {
    name = micro;
    config = config();
    targets = frame_header, mask, utf8_validation, reassembly
}
criterion_main!(micro);
