//! The messages the server sends, generated the same way in the server and the client (so a
//! client can check that it received exactly what was sent).

use wsc::proto::deflate::{Codec, DeflateConfig, DeflateParams};
use wsc::proto::frame::{FrameHeader, OpCode};

use crate::impls::{err, Result};

/// Distinct ticker messages in the compressed feed, cycled.
pub const TICKERS: usize = 1000;

/// A feed message of exactly `size` bytes: JSON-ish ASCII (valid UTF-8), different per `seq`.
pub fn feed_message(seq: u64, size: usize) -> Vec<u8> {
    let head = format!(r#"{{"seq":{seq},"data":""#);
    let tail = r#""}"#;
    let mut out = Vec::with_capacity(size);
    if size >= head.len() + tail.len() {
        out.extend_from_slice(head.as_bytes());
        let fill = size - head.len() - tail.len();
        out.extend((0..fill).map(|i| b'a' + ((i as u64 + seq) % 26) as u8));
        out.extend_from_slice(tail.as_bytes());
    } else {
        out.extend((0..size).map(|i| b'a' + ((i as u64 + seq) % 26) as u8));
    }
    debug_assert_eq!(out.len(), size);
    out
}

/// A market-data tick like an exchange sends (about 200 bytes): repeated keys, nearby numbers.
pub fn ticker(seq: u64) -> String {
    let cents = 6_400_000 + (seq * 7919) % 500_000;
    let price = cents as f64 / 100.0;
    let symbols = ["BTC-USD", "ETH-USD", "SOL-USD", "BTC-EUR"];
    format!(
        r#"{{"type":"ticker","product_id":"{}","sequence":{},"price":"{price:.2}","best_bid":"{:.2}","best_ask":"{:.2}","volume_24h":"{}.{:04}","side":"{}","time":"2026-11-24T18:{:02}:{:02}.{:06}Z","last_size":"0.{:05}"}}"#,
        symbols[(seq % 4) as usize],
        90_000_000 + seq,
        price - 0.01,
        price + 0.01,
        10_000 + (seq * 31) % 5000,
        (seq * 97) % 10_000,
        ["sell", "buy", "buy"][(seq % 3) as usize],
        (seq / 60) % 60,
        seq % 60,
        (seq * 104_729) % 1_000_000,
        (seq * 7) % 100_000,
    )
}

/// The ticker messages of the compressed feed, in order.
pub fn tickers() -> Vec<String> {
    (0..TICKERS as u64).map(ticker).collect()
}

/// Total payload bytes of the first `count` messages of the compressed feed.
pub fn tickers_total(tickers: &[String], count: u64) -> u64 {
    let n = tickers.len() as u64;
    let cycle: u64 = tickers.iter().map(|t| t.len() as u64).sum();
    let rest: u64 = tickers[..(count % n) as usize]
        .iter()
        .map(|t| t.len() as u64)
        .sum();
    (count / n) * cycle + rest
}

/// Appends an unmasked single-frame message.
pub fn frame(out: &mut Vec<u8>, opcode: OpCode, compressed: bool, payload: &[u8]) {
    FrameHeader {
        fin: true,
        rsv: [compressed, false, false],
        opcode,
        mask: None,
        payload_len: payload.len() as u64,
    }
    .encode(out);
    out.extend_from_slice(payload);
}

/// The compressed ticker feed, encoded once: every message compressed on its own (no
/// context takeover), so that any sequence of them is a valid stream.
pub struct CompressedFeed {
    /// All the frames, back to back.
    pub frames: Vec<u8>,
    /// Where each frame starts, and the end of the last.
    pub offsets: Vec<usize>,
}

impl CompressedFeed {
    /// Compresses the tickers (zlib level 6, a 15-bit window) and frames them (RSV1 set).
    pub fn new() -> Result<Self> {
        let params = DeflateParams {
            local_no_context_takeover: true,
            remote_no_context_takeover: false,
            local_max_window_bits: 15,
            remote_max_window_bits: 15,
        };
        let mut codec = Codec::new(params, &DeflateConfig::default());
        let mut frames = Vec::new();
        let mut offsets = vec![0];
        let mut compressed = Vec::new();
        for tick in tickers() {
            compressed.clear();
            codec
                .compress(tick.as_bytes(), &mut compressed)
                .map_err(err)?;
            frame(&mut frames, OpCode::Text, true, &compressed);
            offsets.push(frames.len());
        }
        Ok(CompressedFeed { frames, offsets })
    }

    /// Distinct messages (one cycle).
    pub fn messages(&self) -> u64 {
        (self.offsets.len() - 1) as u64
    }

    /// Bytes on the wire (frames, headers included) of the first `count` messages.
    pub fn wire_bytes(&self, count: u64) -> u64 {
        let n = self.messages();
        (count / n) * self.frames.len() as u64 + self.offsets[(count % n) as usize] as u64
    }
}

/// The bytes of a frame header (server to client, unmasked) for a payload of `len` bytes.
pub fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_messages_have_the_exact_size() {
        for size in [0, 1, 10, 20, 100, 16384] {
            for seq in [0, 7, 123_456_789] {
                let m = feed_message(seq, size);
                assert_eq!(m.len(), size);
                assert!(std::str::from_utf8(&m).is_ok());
            }
        }
    }

    #[test]
    fn tickers_are_about_200_bytes_and_distinct() {
        let t = tickers();
        let mut sorted = t.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), TICKERS);
        for m in &t {
            assert!((180..=260).contains(&m.len()), "{} bytes: {m}", m.len());
        }
        assert_eq!(tickers_total(&t, 0), 0);
        assert_eq!(
            tickers_total(&t, TICKERS as u64 + 2),
            tickers_total(&t, TICKERS as u64) + (t[0].len() + t[1].len()) as u64
        );
    }

    #[test]
    fn compressed_frames_inflate_to_the_tickers() {
        let feed = CompressedFeed::new().unwrap();
        assert_eq!(feed.messages(), TICKERS as u64);
        let params = DeflateParams {
            local_no_context_takeover: false,
            remote_no_context_takeover: true,
            local_max_window_bits: 15,
            remote_max_window_bits: 15,
        };
        let mut codec = Codec::new(params, &DeflateConfig::default());
        for (i, tick) in tickers().iter().enumerate() {
            let frame = &feed.frames[feed.offsets[i]..feed.offsets[i + 1]];
            let (header, len) = FrameHeader::decode(frame).unwrap().unwrap();
            assert!(header.fin && header.rsv[0] && header.opcode == OpCode::Text);
            let mut out = Vec::new();
            codec.decompress(&frame[len..], &mut out, 1 << 20).unwrap();
            assert_eq!(out, tick.as_bytes());
        }
        assert_eq!(feed.wire_bytes(0), 0);
        assert_eq!(
            feed.wire_bytes(TICKERS as u64 + 1),
            (feed.frames.len() + feed.offsets[1]) as u64
        );
    }
}
