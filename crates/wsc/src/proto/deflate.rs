//! permessage-deflate (RFC 7692): negotiation for both roles, and the message codec.
//!
//! Negotiation: the client sends one or more offers (in preference order); the server accepts
//! at most one and says which parameters apply; the client checks the answer strictly (section
//! 7: unknown, repeated or out-of-range parameters, or ones it did not allow, fail the
//! handshake).
//!
//! Codec: a message is compressed as one raw DEFLATE stream flushed with a sync flush, whose
//! trailing `00 00 ff ff` is removed on send and added back on receive. Context takeover keeps
//! the LZ77 window between messages unless a side negotiated not to. zlib cannot compress
//! with an 8-bit window (it silently uses 9, which a peer with an 8-bit window cannot read), so
//! when our side must use 8 bits we send messages uncompressed, which the extension allows.
//! Inflating always uses a 15-bit window: it reads streams made with any smaller window.

use std::fmt;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The extension's registered name.
pub const NAME: &str = "permessage-deflate";

const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What a client offers, or what a server is willing to accept.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// Client: ask the server to reset its compressor after each message. Server: agree to it
    /// even when not asked (saves memory on the server).
    pub server_no_context_takeover: bool,
    /// Client: promise to reset our compressor after each message. Server: require it.
    pub client_no_context_takeover: bool,
    /// Client: the largest window the server may compress with (8-15; `None`: 15, not sent).
    /// Server: the window we compress with (we answer with it when below 15).
    pub server_max_window_bits: Option<u8>,
    /// Client: the window we compress with; `Some(15)` offers the bare parameter so the server
    /// may pick a smaller one. Server: the largest client window we accept.
    pub client_max_window_bits: Option<u8>,
    /// Client only: also offer a second, fallback offer with `client_no_context_takeover`
    /// (some servers only compress for clients that reset their context).
    pub fallback_offer: bool,
    /// Messages smaller than this are sent uncompressed (default 0: compress everything, as
    /// browsers do; with context takeover even short messages shrink).
    pub threshold: usize,
    /// zlib compression level, 0-9 (default 6; 1 is several times faster on big messages).
    pub level: u32,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: None,
            client_max_window_bits: Some(15),
            fallback_offer: true,
            threshold: 0,
            level: 6,
        }
    }
}

impl DeflateConfig {
    /// Sets `server_no_context_takeover`.
    pub fn server_no_context_takeover(mut self, on: bool) -> Self {
        self.server_no_context_takeover = on;
        self
    }

    /// Sets `client_no_context_takeover`.
    pub fn client_no_context_takeover(mut self, on: bool) -> Self {
        self.client_no_context_takeover = on;
        self
    }

    /// Sets `server_max_window_bits` (8-15).
    pub fn server_max_window_bits(mut self, bits: Option<u8>) -> Self {
        self.server_max_window_bits = bits.map(|b| b.clamp(8, 15));
        self
    }

    /// Sets `client_max_window_bits` (8-15).
    pub fn client_max_window_bits(mut self, bits: Option<u8>) -> Self {
        self.client_max_window_bits = bits.map(|b| b.clamp(8, 15));
        self
    }

    /// Whether to send the fallback offer with `client_no_context_takeover`.
    pub fn fallback_offer(mut self, on: bool) -> Self {
        self.fallback_offer = on;
        self
    }

    /// Messages smaller than `bytes` are sent uncompressed.
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// zlib compression level, 0-9.
    pub fn level(mut self, level: u32) -> Self {
        self.level = level.min(9);
        self
    }

    fn one_offer(&self, client_no_context_takeover: bool) -> String {
        let mut offer = NAME.to_string();
        if self.server_no_context_takeover {
            offer.push_str("; server_no_context_takeover");
        }
        if client_no_context_takeover {
            offer.push_str("; client_no_context_takeover");
        }
        if let Some(bits) = self.server_max_window_bits {
            offer.push_str(&format!("; server_max_window_bits={}", bits.clamp(8, 15)));
        }
        match self.client_max_window_bits {
            Some(15) => offer.push_str("; client_max_window_bits"),
            Some(bits) => {
                offer.push_str(&format!("; client_max_window_bits={}", bits.clamp(8, 15)))
            }
            None => {}
        }
        offer
    }

    /// The client's `Sec-WebSocket-Extensions` value: the offer, then the fallback if enabled.
    pub fn offer(&self) -> String {
        let first = self.one_offer(self.client_no_context_takeover);
        if self.fallback_offer && !self.client_no_context_takeover {
            format!("{first}, {}", self.one_offer(true))
        } else {
            first
        }
    }
}

/// The parameters in force on a connection, as seen from one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// Reset our compressor after each message.
    pub local_no_context_takeover: bool,
    /// The peer resets its compressor after each message (we reset our inflater too).
    pub remote_no_context_takeover: bool,
    /// The window we compress with (8-15).
    pub local_max_window_bits: u8,
    /// The window the peer compresses with (8-15).
    pub remote_max_window_bits: u8,
}

impl fmt::Display for DeflateParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{NAME} (our window {} bits{}, peer's window {} bits{})",
            self.local_max_window_bits,
            if self.local_no_context_takeover {
                ", no context takeover"
            } else {
                ""
            },
            self.remote_max_window_bits,
            if self.remote_no_context_takeover {
                ", no context takeover"
            } else {
                ""
            },
        )
    }
}

/// Why a server's permessage-deflate answer is unacceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiationError(pub String);

impl fmt::Display for NegotiationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One extension from a header: its name and `(parameter, value)` pairs.
type Extension<'a> = (&'a str, Vec<(&'a str, Option<&'a str>)>);

/// Parses a `Sec-WebSocket-Extensions` value into extensions (comma-separated) with their
/// parameters (semicolon-separated, values optionally quoted).
pub fn parse_extensions(header: &str) -> Vec<Extension<'_>> {
    header
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|ext| {
            let mut parts = ext.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let params = parts
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"'))),
                    None => (p, None),
                })
                .collect();
            (name, params)
        })
        .collect()
}

fn window_bits(value: Option<&str>, name: &str) -> Result<u8, NegotiationError> {
    let value = value.ok_or_else(|| NegotiationError(format!("{name} needs a value")))?;
    match value.parse::<u8>() {
        Ok(bits @ 8..=15) if !value.starts_with('0') && !value.starts_with('+') => Ok(bits),
        _ => Err(NegotiationError(format!(
            "{name}={value} is not a window size from 8 to 15"
        ))),
    }
}

/// Client side: checks the server's accepted extension parameters against our offer(s).
pub fn client_accept(
    config: &DeflateConfig,
    params: &[(&str, Option<&str>)],
) -> Result<DeflateParams, NegotiationError> {
    let mut seen: Vec<&str> = Vec::new();
    let mut result = DeflateParams {
        local_no_context_takeover: config.client_no_context_takeover,
        remote_no_context_takeover: false,
        local_max_window_bits: config.client_max_window_bits.unwrap_or(15),
        remote_max_window_bits: 15,
    };
    for &(name, value) in params {
        if seen.contains(&name) {
            return Err(NegotiationError(format!("parameter {name} repeated")));
        }
        seen.push(name);
        match name {
            "server_no_context_takeover" => {
                if value.is_some() {
                    return Err(NegotiationError(format!("{name} takes no value")));
                }
                result.remote_no_context_takeover = true;
            }
            "client_no_context_takeover" => {
                if value.is_some() {
                    return Err(NegotiationError(format!("{name} takes no value")));
                }
                result.local_no_context_takeover = true;
            }
            "server_max_window_bits" => {
                let bits = window_bits(value, name)?;
                if let Some(limit) = config.server_max_window_bits {
                    if bits > limit {
                        return Err(NegotiationError(format!(
                            "server_max_window_bits={bits} exceeds the {limit} we asked for"
                        )));
                    }
                }
                result.remote_max_window_bits = bits;
            }
            "client_max_window_bits" => {
                let Some(offered) = config.client_max_window_bits else {
                    return Err(NegotiationError(
                        "client_max_window_bits in the answer, but we did not offer it".into(),
                    ));
                };
                let bits = window_bits(value, name)?;
                if bits > offered {
                    return Err(NegotiationError(format!(
                        "client_max_window_bits={bits} exceeds the {offered} we offered"
                    )));
                }
                result.local_max_window_bits = bits;
            }
            other => return Err(NegotiationError(format!("unknown parameter {other:?}"))),
        }
    }
    if config.server_no_context_takeover && !result.remote_no_context_takeover {
        // We asked; the server must agree (RFC 7692 section 7.1.1.1) or decline the offer.
        return Err(NegotiationError(
            "the server ignored our server_no_context_takeover request".into(),
        ));
    }
    Ok(result)
}

/// Server side: picks the first acceptable offer. Returns the parameters and the response
/// header value, or `None` to decline compression.
pub fn server_accept(
    config: &DeflateConfig,
    offers: &[Extension<'_>],
) -> Option<(DeflateParams, String)> {
    'offers: for (name, params) in offers {
        if *name != NAME {
            continue;
        }
        let mut answer = NAME.to_string();
        let mut result = DeflateParams {
            local_no_context_takeover: config.server_no_context_takeover,
            remote_no_context_takeover: config.client_no_context_takeover,
            local_max_window_bits: config.server_max_window_bits.unwrap_or(15),
            remote_max_window_bits: 15,
        };
        let mut client_bits_allowed = false;
        let mut seen: Vec<&str> = Vec::new();
        for &(param, value) in params {
            if seen.contains(&param) {
                continue 'offers;
            }
            seen.push(param);
            match (param, value) {
                ("server_no_context_takeover", None) => result.local_no_context_takeover = true,
                ("client_no_context_takeover", None) => result.remote_no_context_takeover = true,
                ("server_max_window_bits", Some(_)) => match window_bits(value, param) {
                    Ok(bits) => {
                        result.local_max_window_bits = result.local_max_window_bits.min(bits)
                    }
                    Err(_) => continue 'offers,
                },
                ("client_max_window_bits", None) => client_bits_allowed = true,
                ("client_max_window_bits", Some(_)) => match window_bits(value, param) {
                    Ok(bits) => {
                        client_bits_allowed = true;
                        result.remote_max_window_bits = bits;
                    }
                    Err(_) => continue 'offers,
                },
                _ => continue 'offers,
            }
        }
        if let Some(limit) = config.client_max_window_bits.filter(|b| *b < 15) {
            if !client_bits_allowed {
                continue; // we need a smaller client window, but the client cannot do it
            }
            result.remote_max_window_bits = result.remote_max_window_bits.min(limit);
        }
        if result.local_no_context_takeover {
            answer.push_str("; server_no_context_takeover");
        }
        if result.remote_no_context_takeover {
            answer.push_str("; client_no_context_takeover");
        }
        if result.local_max_window_bits < 15 {
            answer.push_str(&format!(
                "; server_max_window_bits={}",
                result.local_max_window_bits
            ));
        }
        if client_bits_allowed && result.remote_max_window_bits < 15 {
            answer.push_str(&format!(
                "; client_max_window_bits={}",
                result.remote_max_window_bits
            ));
        }
        return Some((result, answer));
    }
    None
}

/// Why inflating a message failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InflateError {
    /// Not a valid DEFLATE stream.
    Corrupt(String),
    /// It inflates past the limit.
    TooLarge,
}

/// The per-connection codec: a compressor and an inflater, created on first use.
pub struct Codec {
    params: DeflateParams,
    level: u32,
    threshold: usize,
    compressor: Option<Compress>,
    inflater: Option<Decompress>,
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Codec")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl Codec {
    /// A codec for negotiated `params`.
    pub fn new(params: DeflateParams, config: &DeflateConfig) -> Self {
        Codec {
            params,
            level: config.level.min(9),
            threshold: config.threshold,
            compressor: None,
            inflater: None,
        }
    }

    /// The negotiated parameters.
    pub fn params(&self) -> &DeflateParams {
        &self.params
    }

    /// Whether a message of `len` bytes should be sent compressed.
    pub fn should_compress(&self, len: usize) -> bool {
        // zlib cannot honour an 8-bit window: send uncompressed (see the module docs).
        self.params.local_max_window_bits >= 9 && len >= self.threshold
    }

    /// Compresses a whole message, appending to `out` (without the trailing `00 00 ff ff`).
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let bits = self.params.local_max_window_bits.clamp(9, 15);
        let level = self.level;
        let c = self.compressor.get_or_insert_with(|| {
            Compress::new_with_window_bits(Compression::new(level), false, bits)
        });
        let start = out.len();
        let base_in = c.total_in();
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve((input.len() / 2).max(256));
            }
            let consumed = (c.total_in() - base_in) as usize;
            c.compress_vec(&input[consumed..], out, FlushCompress::Sync)
                .map_err(|e| e.to_string())?;
            let consumed = (c.total_in() - base_in) as usize;
            if consumed == input.len() && out.len() < out.capacity() {
                break;
            }
        }
        if out.len() >= start + 4 && out[out.len() - 4..] == TAIL {
            out.truncate(out.len() - 4);
        }
        if out.len() == start {
            // zlib emits nothing for an empty message right after a flush; an empty payload
            // would leave the peer's inflater mid-block. RFC 7692 section 7.2.3.6: send 0x00.
            out.push(0x00);
        }
        if self.params.local_no_context_takeover {
            // Free the state instead of resetting it: it is ~300 KiB, and idle connections
            // should not hold it.
            self.compressor = None;
        }
        Ok(())
    }

    /// Inflates a whole message (`input` without its tail), appending to `out`, failing as
    /// soon as the output would exceed `max` bytes.
    pub fn decompress(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), InflateError> {
        let result = self.inflate_into(input, out, max);
        if result.is_err() || self.params.remote_no_context_takeover {
            // After an error the stream state is unknown; without context takeover it is
            // not needed. Either way, start the next message from scratch: reset, which
            // keeps the state's memory (allocating it anew per message cost more than the
            // inflating on a feed of small messages).
            if let Some(d) = self.inflater.as_mut() {
                d.reset(false);
            }
        }
        result
    }

    fn inflate_into(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), InflateError> {
        if input.is_empty() {
            // Not valid DEFLATE data, but harmless: an empty message. Leave the inflater
            // untouched rather than feed it half a stored block.
            return Ok(());
        }
        let start = out.len();
        let limit = max.saturating_add(1);
        // A peer that left the tail on (against RFC 7692 section 7.2.1) would have ours put
        // the inflater in the middle of a stored block, and with context takeover every later
        // message would inflate to garbage without an error. A conforming payload never ends
        // with it: its last byte holds the empty stored block's header bits and zero padding
        // (never 0xff), or it ends a final block, after which the tail is not read.
        let tail: &[u8] = if input.ends_with(&TAIL) { &[] } else { &TAIL };
        let pieces = [input, tail];
        let (mut index, mut offset) = (0, 0);
        loop {
            while index < pieces.len() && offset == pieces[index].len() {
                index += 1;
                offset = 0;
            }
            let produced = out.len() - start;
            if produced > max {
                return Err(InflateError::TooLarge);
            }
            let input_left = index < pieces.len();
            if !input_left && out.len() < out.capacity() {
                return Ok(());
            }
            if out.capacity() - out.len() < 1024 {
                // Grow geometrically, but never past the limit: zlib fills all spare room.
                let room = limit - produced;
                // The first step guesses from the input (small messages are the common case),
                // then each step doubles what is there.
                let guess = input.len().saturating_mul(4).clamp(1024, 64 << 10);
                let step = (out.capacity() - start).max(guess);
                // Memory that cannot be had (a limit raised past what the machine holds)
                // fails the message as too large rather than aborting the process.
                out.try_reserve_exact(step.min(room))
                    .map_err(|_| InflateError::TooLarge)?;
            }
            let d = self
                .inflater
                .get_or_insert_with(|| Decompress::new_with_window_bits(false, 15));
            let (before_in, before_out) = (d.total_in(), d.total_out());
            let piece = if input_left {
                &pieces[index][offset..]
            } else {
                &[][..]
            };
            let status = d
                .decompress_vec(piece, out, FlushDecompress::Sync)
                .map_err(|e| InflateError::Corrupt(e.to_string()))?;
            offset += (d.total_in() - before_in) as usize;
            if status == Status::StreamEnd {
                // A final block ends this DEFLATE stream (RFC 7692 section 7.2.3.4 allows
                // it): the next message starts a fresh one, and so does any data that
                // follows in this message (such as the empty stored block of the RFC's
                // example). Our own appended tail is not needed after a final block.
                d.reset(false);
                if index == 0 && offset < pieces[0].len() {
                    continue;
                }
                return if out.len() - start > max {
                    Err(InflateError::TooLarge)
                } else {
                    Ok(())
                };
            }
            let progressed = d.total_in() != before_in || d.total_out() != before_out;
            if !progressed && out.len() < out.capacity() {
                return if input_left {
                    Err(InflateError::Corrupt(
                        "the inflater made no progress".into(),
                    ))
                } else {
                    Ok(())
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(bits: u8, no_takeover: bool) -> DeflateParams {
        DeflateParams {
            local_no_context_takeover: no_takeover,
            remote_no_context_takeover: no_takeover,
            local_max_window_bits: bits,
            remote_max_window_bits: bits,
        }
    }

    #[test]
    fn rfc_7692_hello_example() {
        // Section 7.2.3.1: "Hello" compressed is f2 48 cd c9 c9 07 00.
        let mut codec = Codec::new(params(15, false), &DeflateConfig::default());
        let mut out = Vec::new();
        codec
            .decompress(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out, 100)
            .unwrap();
        assert_eq!(out, b"Hello");
        let mut c = Vec::new();
        codec.compress(b"Hello", &mut c).unwrap();
        assert_eq!(c, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    }

    #[test]
    fn context_takeover_shrinks_repeats_and_round_trips() {
        for no_takeover in [false, true] {
            for bits in [9u8, 12, 15] {
                let mut tx = Codec::new(params(bits, no_takeover), &DeflateConfig::default());
                let mut rx = Codec::new(params(bits, no_takeover), &DeflateConfig::default());
                let msg = br#"{"type":"tick","symbol":"BTC-USD","price":64000.25,"qty":1.5}"#;
                let mut sizes = Vec::new();
                for _ in 0..3 {
                    let mut c = Vec::new();
                    tx.compress(msg, &mut c).unwrap();
                    sizes.push(c.len());
                    let mut d = Vec::new();
                    rx.decompress(&c, &mut d, 1 << 20).unwrap();
                    assert_eq!(d, msg);
                }
                if no_takeover {
                    assert_eq!(sizes[0], sizes[2]);
                } else {
                    assert!(sizes[2] < sizes[0] / 2, "{sizes:?}");
                }
            }
        }
    }

    #[test]
    fn a_peer_that_leaves_the_tail_on_is_still_read_right() {
        for no_takeover in [false, true] {
            let mut tx = Codec::new(params(15, no_takeover), &DeflateConfig::default());
            let mut rx = Codec::new(params(15, no_takeover), &DeflateConfig::default());
            for msg in [&b"abc"[..], b"xyz", b"abcxyz abcxyz", b"\xff\xff"] {
                let mut c = Vec::new();
                tx.compress(msg, &mut c).unwrap();
                c.extend_from_slice(&TAIL);
                let mut d = Vec::new();
                rx.decompress(&c, &mut d, 1 << 20).unwrap();
                assert_eq!(d, msg, "no_takeover {no_takeover}");
            }
        }
    }

    #[test]
    fn bomb_is_stopped_at_the_limit() {
        let mut tx = Codec::new(params(15, false), &DeflateConfig::default());
        let mut c = Vec::new();
        tx.compress(&vec![0u8; 20 << 20], &mut c).unwrap();
        assert!(c.len() < 100 << 10, "{}", c.len());
        let mut rx = Codec::new(params(15, false), &DeflateConfig::default());
        let mut out = Vec::new();
        assert_eq!(
            rx.decompress(&c, &mut out, 1 << 20),
            Err(InflateError::TooLarge)
        );
        assert!(
            out.capacity() <= (1 << 20) + 1,
            "allocated {}",
            out.capacity()
        );
    }

    #[test]
    fn unlimited_size_does_not_overflow() {
        let mut tx = Codec::new(params(15, false), &DeflateConfig::default());
        let mut c = Vec::new();
        tx.compress(b"no limit", &mut c).unwrap();
        let mut rx = Codec::new(params(15, false), &DeflateConfig::default());
        let mut out = Vec::new();
        rx.decompress(&c, &mut out, usize::MAX).unwrap();
        assert_eq!(out, b"no limit");
    }

    #[test]
    fn final_block_ends_the_stream_cleanly() {
        // RFC 7692 section 7.2.3.4: "Hello" in a final (BFINAL=1) block, then an empty
        // stored block.
        let hello_final = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        let mut rx = Codec::new(params(15, false), &DeflateConfig::default());
        let mut out = Vec::new();
        rx.decompress(&hello_final, &mut out, 100).unwrap();
        assert_eq!(out, b"Hello");
        let mut out = Vec::new();
        rx.decompress(&hello_final[..7], &mut out, 100).unwrap();
        assert_eq!(out, b"Hello");
        // The next message starts a fresh stream and is not silently empty.
        let mut tx = Codec::new(params(15, true), &DeflateConfig::default());
        let mut world = Vec::new();
        tx.compress(b"World", &mut world).unwrap();
        let mut out = Vec::new();
        rx.decompress(&world, &mut out, 100).unwrap();
        assert_eq!(out, b"World");
    }

    #[test]
    fn empty_payload_leaves_the_inflater_intact() {
        let mut tx = Codec::new(params(15, false), &DeflateConfig::default());
        let mut rx = Codec::new(params(15, false), &DeflateConfig::default());
        let mut out = Vec::new();
        rx.decompress(&[], &mut out, 100).unwrap();
        assert!(out.is_empty());
        let mut c = Vec::new();
        tx.compress(b"after", &mut c).unwrap();
        rx.decompress(&c, &mut out, 100).unwrap();
        assert_eq!(out, b"after");
    }

    #[test]
    fn inflation_never_allocates_much_past_the_limit() {
        let mut tx = Codec::new(params(15, false), &DeflateConfig::default());
        let mut c = Vec::new();
        tx.compress(&vec![7u8; 30 << 20], &mut c).unwrap();
        let mut rx = Codec::new(params(15, false), &DeflateConfig::default());
        let mut out = Vec::new();
        let max = 10 << 20;
        assert_eq!(
            rx.decompress(&c, &mut out, max),
            Err(InflateError::TooLarge)
        );
        assert!(out.capacity() <= max + 1, "capacity {}", out.capacity());
    }

    #[test]
    fn corrupt_input_is_an_error() {
        let mut rx = Codec::new(params(15, false), &DeflateConfig::default());
        let mut out = Vec::new();
        assert!(matches!(
            rx.decompress(&[0xff, 0xff, 0xff], &mut out, 1000),
            Err(InflateError::Corrupt(_))
        ));
    }

    #[test]
    fn eight_bit_window_sends_uncompressed() {
        let codec = Codec::new(params(8, false), &DeflateConfig::default());
        assert!(!codec.should_compress(1000));
        let codec = Codec::new(params(9, false), &DeflateConfig::default().threshold(32));
        assert!(codec.should_compress(1000));
        assert!(!codec.should_compress(10));
    }

    #[test]
    fn offers() {
        assert_eq!(
            DeflateConfig::default().offer(),
            "permessage-deflate; client_max_window_bits, \
             permessage-deflate; client_no_context_takeover; client_max_window_bits"
        );
        let c = DeflateConfig::default()
            .fallback_offer(false)
            .server_no_context_takeover(true)
            .server_max_window_bits(Some(10))
            .client_max_window_bits(Some(12));
        assert_eq!(
            c.offer(),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12"
        );
    }

    fn accept(config: &DeflateConfig, answer: &str) -> Result<DeflateParams, NegotiationError> {
        let exts = parse_extensions(answer);
        assert_eq!(exts.len(), 1);
        client_accept(config, &exts[0].1)
    }

    #[test]
    fn client_validates_answers() {
        let c = DeflateConfig::default();
        let p = accept(
            &c,
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=9",
        )
        .unwrap();
        assert_eq!((p.remote_max_window_bits, p.local_max_window_bits), (10, 9));
        let p = accept(
            &c,
            "permessage-deflate; client_no_context_takeover; server_no_context_takeover",
        )
        .unwrap();
        assert!(p.local_no_context_takeover && p.remote_no_context_takeover);
        let p = accept(&c, "permessage-deflate; server_max_window_bits=\"12\"").unwrap();
        assert_eq!(p.remote_max_window_bits, 12);
        for bad in [
            "permessage-deflate; foo",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
        ] {
            assert!(accept(&c, bad).is_err(), "{bad}");
        }
        // Not offered, or above what we allowed.
        let no_client_bits = DeflateConfig::default().client_max_window_bits(None);
        assert!(accept(
            &no_client_bits,
            "permessage-deflate; client_max_window_bits=10"
        )
        .is_err());
        let limited = DeflateConfig::default().server_max_window_bits(Some(10));
        assert!(accept(&limited, "permessage-deflate; server_max_window_bits=12").is_err());
        let asked = DeflateConfig::default().server_no_context_takeover(true);
        assert!(accept(&asked, "permessage-deflate").is_err());
    }

    #[test]
    fn server_answers_offers() {
        let server = DeflateConfig::default().client_max_window_bits(None);
        let offers = parse_extensions(
            "x-unknown, permessage-deflate; client_max_window_bits; server_max_window_bits=10, permessage-deflate",
        );
        let (p, answer) = server_accept(&server, &offers).unwrap();
        assert_eq!(answer, "permessage-deflate; server_max_window_bits=10");
        assert_eq!(
            (p.local_max_window_bits, p.remote_max_window_bits),
            (10, 15)
        );
        // The answer is acceptable to a client that made the offer.
        let client = DeflateConfig::default().server_max_window_bits(Some(10));
        let exts = parse_extensions(&answer);
        assert!(client_accept(&client, &exts[0].1).is_ok());
        // An offer with a bad parameter is skipped for the next one.
        let offers = parse_extensions(
            "permessage-deflate; bogus, permessage-deflate; client_no_context_takeover",
        );
        let (p, answer) = server_accept(&server, &offers).unwrap();
        assert_eq!(answer, "permessage-deflate; client_no_context_takeover");
        assert!(p.remote_no_context_takeover);
        assert!(server_accept(&server, &parse_extensions("x-other")).is_none());
    }
}
#[cfg(test)]
mod sequence_tests {
    use super::*;

    #[test]
    fn empty_and_short_messages_in_sequence() {
        let p = DeflateParams {
            local_no_context_takeover: false,
            remote_no_context_takeover: false,
            local_max_window_bits: 15,
            remote_max_window_bits: 15,
        };
        let mut tx = Codec::new(p, &DeflateConfig::default());
        let mut rx = Codec::new(p, &DeflateConfig::default());
        for msg in [
            &b"hello"[..],
            b"world",
            b"",
            b"last line without newline",
            b"",
            b"x",
        ] {
            let mut c = Vec::new();
            tx.compress(msg, &mut c).unwrap();
            let mut d = Vec::new();
            rx.decompress(&c, &mut d, 1000)
                .unwrap_or_else(|e| panic!("{msg:?} -> {c:x?}: {e:?}"));
            assert_eq!(d, msg);
        }
    }
}
