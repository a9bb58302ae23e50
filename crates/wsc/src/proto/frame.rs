//! Frame headers (RFC 6455 section 5.2): decoding what the peer sent, encoding what we send.
//!
//! Only the header is handled here; payloads stay where they are (in the read buffer or the
//! caller's slice) so that nothing is copied on the way.

use std::fmt;

/// A frame's opcode. Reserved opcodes are rejected when the header is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// A later fragment of a fragmented message.
    Continuation,
    /// The first (or only) frame of a text message.
    Text,
    /// The first (or only) frame of a binary message.
    Binary,
    /// The close control frame.
    Close,
    /// The ping control frame.
    Ping,
    /// The pong control frame.
    Pong,
}

impl OpCode {
    /// The opcode for a 4-bit value, or `None` if the value is reserved.
    pub fn from_u8(value: u8) -> Option<OpCode> {
        Some(match value {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// The 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Close, ping and pong are control frames.
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// The most payload a control frame may carry.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// The longest possible header: 2 bytes, 8 bytes of length, 4 bytes of mask.
pub const MAX_HEADER_LEN: usize = 14;

/// A decoded or to-be-encoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// This is the last frame of its message.
    pub fin: bool,
    /// RSV1 (claimed by permessage-deflate), RSV2, RSV3.
    pub rsv: [bool; 3],
    /// What the frame carries.
    pub opcode: OpCode,
    /// The masking key, present exactly on frames sent by a client.
    pub mask: Option<[u8; 4]>,
    /// The payload length in bytes.
    pub payload_len: u64,
}

/// A header that breaks the framing rules; the connection must fail with close code 1002.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Opcodes 3-7 and 11-15 are reserved.
    ReservedOpcode(u8),
    /// The 64-bit length had its most significant bit set.
    LengthOverflow,
    /// A control frame longer than 125 bytes.
    ControlFrameTooLong(u64),
    /// A control frame without FIN.
    FragmentedControlFrame,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            FrameError::LengthOverflow => {
                f.write_str("64-bit payload length with the most significant bit set")
            }
            FrameError::ControlFrameTooLong(n) => {
                write!(
                    f,
                    "control frame with {n} bytes of payload (at most 125 allowed)"
                )
            }
            FrameError::FragmentedControlFrame => f.write_str("fragmented control frame"),
        }
    }
}

impl FrameHeader {
    /// Decodes a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` if `buf` does not hold the whole header yet, otherwise the header and
    /// its length in bytes. Any payload length the peer chooses is accepted (longer forms than
    /// needed included); limits are the connection's business.
    pub fn decode(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, FrameError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        let opcode = OpCode::from_u8(b0 & 0x0F).ok_or(FrameError::ReservedOpcode(b0 & 0x0F))?;
        let fin = b0 & 0x80 != 0;
        let masked = b1 & 0x80 != 0;
        let (payload_len, mut len) = match b1 & 0x7F {
            126 => {
                let Some(bytes) = buf.get(2..4) else {
                    return Ok(None);
                };
                (u64::from(u16::from_be_bytes([bytes[0], bytes[1]])), 4)
            }
            127 => {
                let Some(bytes) = buf.get(2..10) else {
                    return Ok(None);
                };
                let mut be = [0u8; 8];
                be.copy_from_slice(bytes);
                let n = u64::from_be_bytes(be);
                if n >> 63 != 0 {
                    return Err(FrameError::LengthOverflow);
                }
                (n, 10)
            }
            n => (u64::from(n), 2),
        };
        if opcode.is_control() {
            if !fin {
                return Err(FrameError::FragmentedControlFrame);
            }
            if payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(FrameError::ControlFrameTooLong(payload_len));
            }
        }
        let mask = if masked {
            let Some(bytes) = buf.get(len..len + 4) else {
                return Ok(None);
            };
            len += 4;
            Some([bytes[0], bytes[1], bytes[2], bytes[3]])
        } else {
            None
        };
        let header = FrameHeader {
            fin,
            rsv: [b0 & 0x40 != 0, b0 & 0x20 != 0, b0 & 0x10 != 0],
            opcode,
            mask,
            payload_len,
        };
        Ok(Some((header, len)))
    }

    /// The encoded length of this header (using the shortest length form).
    pub fn encoded_len(&self) -> usize {
        let len_bytes = match self.payload_len {
            0..=125 => 0,
            126..=0xFFFF => 2,
            _ => 8,
        };
        2 + len_bytes + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Appends the header to `out`, always with the shortest length form.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut b0 = self.opcode.as_u8();
        if self.fin {
            b0 |= 0x80;
        }
        for (bit, set) in [0x40, 0x20, 0x10].into_iter().zip(self.rsv) {
            if set {
                b0 |= bit;
            }
        }
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        out.push(b0);
        match self.payload_len {
            n @ 0..=125 => out.push(mask_bit | n as u8),
            n @ 126..=0xFFFF => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&n.to_be_bytes());
            }
        }
        if let Some(key) = self.mask {
            out.extend_from_slice(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(opcode: OpCode, len: u64, mask: Option<[u8; 4]>) -> FrameHeader {
        FrameHeader {
            fin: true,
            rsv: [false; 3],
            opcode,
            mask,
            payload_len: len,
        }
    }

    #[test]
    fn rfc_examples_decode() {
        // Unmasked "Hello" from RFC 6455 section 5.7.
        let (h, n) = FrameHeader::decode(&[0x81, 0x05, b'H']).unwrap().unwrap();
        assert_eq!((h, n), (header(OpCode::Text, 5, None), 2));
        // 256 bytes binary, 16-bit length.
        let (h, n) = FrameHeader::decode(&[0x82, 0x7E, 0x01, 0x00])
            .unwrap()
            .unwrap();
        assert_eq!((h.payload_len, n), (256, 4));
        // 64 KiB binary, 64-bit length: eight bytes, not four.
        let (h, n) = FrameHeader::decode(&[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0])
            .unwrap()
            .unwrap();
        assert_eq!((h.payload_len, n), (65536, 10));
        // Above 4 GiB only fits if all eight bytes are read.
        let (h, _) = FrameHeader::decode(&[0x82, 0x7F, 0, 0, 0, 1, 0, 0, 0, 5])
            .unwrap()
            .unwrap();
        assert_eq!(h.payload_len, (1 << 32) + 5);
    }

    #[test]
    fn incomplete_headers_wait() {
        let full = [0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4];
        for cut in 0..full.len() {
            assert_eq!(FrameHeader::decode(&full[..cut]), Ok(None), "cut at {cut}");
        }
        let (h, n) = FrameHeader::decode(&full).unwrap().unwrap();
        assert_eq!((h.mask, n), (Some([1, 2, 3, 4]), 14));
    }

    #[test]
    fn rejects_bad_headers() {
        for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(
                FrameHeader::decode(&[0x80 | op, 0]),
                Err(FrameError::ReservedOpcode(op))
            );
        }
        assert_eq!(
            FrameHeader::decode(&[0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            Err(FrameError::LengthOverflow)
        );
        assert_eq!(
            FrameHeader::decode(&[0x89, 0x7E, 0, 126]),
            Err(FrameError::ControlFrameTooLong(126))
        );
        assert_eq!(
            FrameHeader::decode(&[0x09, 0x00]),
            Err(FrameError::FragmentedControlFrame)
        );
    }

    #[test]
    fn accepts_non_minimal_length() {
        let (h, n) = FrameHeader::decode(&[0x81, 0x7E, 0x00, 0x05])
            .unwrap()
            .unwrap();
        assert_eq!((h.payload_len, n), (5, 4));
    }

    #[test]
    fn encodes_shortest_form() {
        for (len, expect) in [(0u64, 2usize), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let mut out = Vec::new();
            let h = header(OpCode::Binary, len, None);
            h.encode(&mut out);
            assert_eq!(out.len(), expect);
            assert_eq!(h.encoded_len(), expect);
        }
    }

    fn any_opcode() -> impl Strategy<Value = OpCode> {
        prop_oneof![
            Just(OpCode::Continuation),
            Just(OpCode::Text),
            Just(OpCode::Binary),
            Just(OpCode::Close),
            Just(OpCode::Ping),
            Just(OpCode::Pong),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(opcode in any_opcode(), fin in any::<bool>(), rsv in any::<[bool; 3]>(),
                      mask in any::<Option<[u8; 4]>>(), len in 0u64..(1 << 40)) {
            let (fin, len) = if opcode.is_control() { (true, len % 126) } else { (fin, len) };
            let h = FrameHeader { fin, rsv, opcode, mask, payload_len: len };
            let mut out = Vec::new();
            h.encode(&mut out);
            out.extend_from_slice(b"trailing payload");
            let (decoded, n) = FrameHeader::decode(&out).unwrap().unwrap();
            prop_assert_eq!(decoded, h);
            prop_assert_eq!(n, h.encoded_len());
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..20)) {
            let _ = FrameHeader::decode(&bytes);
        }
    }
}
