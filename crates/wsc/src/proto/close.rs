//! Close codes (RFC 6455 section 7.4) and close frame payloads.

use std::fmt;

use bytes::Bytes;

use super::message::Utf8Bytes;

/// A close status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection is fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a kind of data the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: no code was present (never sent on the wire).
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: the connection closed without a close frame (never sent on the wire).
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: a text message was not valid UTF-8 (or data was inconsistent with its type).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a message violated the endpoint's policy.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message was too big to process.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client needed an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server hit an unexpected condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: the server is restarting (IANA registry); reconnecting later may work.
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: the server is overloaded (IANA registry); try again later.
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1014: a gateway got a bad answer from the server behind it (IANA registry).
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);

    /// Whether a peer may send this code in a close frame.
    ///
    /// 1000-1003 and 1007-1011 are RFC 6455's codes for the wire, 1012-1014 were added to
    /// IANA's registry since (servers send them when restarting or overloaded), 3000-4999
    /// are for libraries and applications; everything else (1004-1006 and 1015 are reserved,
    /// 1016-2999 unassigned) is a protocol error.
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        CloseCode(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            1000 => "normal closure",
            1001 => "going away",
            1002 => "protocol error",
            1003 => "unsupported data",
            1005 => "no status",
            1006 => "abnormal closure",
            1007 => "invalid payload data",
            1008 => "policy violation",
            1009 => "message too big",
            1010 => "mandatory extension",
            1011 => "internal error",
            1012 => "service restart",
            1013 => "try again later",
            1014 => "bad gateway",
            3000..=3999 => "registered",
            4000..=4999 => "private use",
            _ => "unknown",
        };
        write!(f, "{} ({name})", self.0)
    }
}

/// The code and reason of a close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// The reason, at most 123 bytes of UTF-8.
    pub reason: Utf8Bytes,
}

impl CloseFrame {
    /// A close frame with a code and a reason.
    pub fn new(code: impl Into<CloseCode>, reason: impl Into<Utf8Bytes>) -> Self {
        CloseFrame {
            code: code.into(),
            reason: reason.into(),
        }
    }

    /// Whether this frame may be sent: a code allowed on the wire and a reason that fits in
    /// a control frame.
    pub(crate) fn check_sendable(&self) -> Result<(), crate::Error> {
        if !self.code.is_valid_on_wire() {
            return Err(crate::Error::InvalidInput(
                "close code must be 1000-1003, 1007-1014 or 3000-4999",
            ));
        }
        if self.reason.len() > super::frame::MAX_CONTROL_PAYLOAD - 2 {
            return Err(crate::Error::InvalidInput(
                "close reason longer than 123 bytes",
            ));
        }
        Ok(())
    }
}

impl fmt::Display for CloseFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reason.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{}: {:?}", self.code, self.reason.as_str())
        }
    }
}

/// Why a received close payload is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosePayloadError {
    /// A one-byte payload: half a status code.
    Truncated,
    /// A status code that may not appear on the wire.
    InvalidCode(u16),
    /// The reason is not UTF-8.
    InvalidReason,
}

/// Parses a received close payload: empty, or a valid code followed by a UTF-8 reason.
pub fn parse_close_payload(payload: Bytes) -> Result<Option<CloseFrame>, ClosePayloadError> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(ClosePayloadError::Truncated),
        _ => {
            let code = CloseCode(u16::from_be_bytes([payload[0], payload[1]]));
            if !code.is_valid_on_wire() {
                return Err(ClosePayloadError::InvalidCode(code.0));
            }
            let reason = Utf8Bytes::try_from_bytes(payload.slice(2..))
                .map_err(|_| ClosePayloadError::InvalidReason)?;
            Ok(Some(CloseFrame { code, reason }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_validity() {
        let valid = [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
            4000, 4999,
        ];
        let invalid = [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ];
        for c in valid {
            assert!(CloseCode(c).is_valid_on_wire(), "{c}");
        }
        for c in invalid {
            assert!(!CloseCode(c).is_valid_on_wire(), "{c}");
        }
    }

    #[test]
    fn payloads() {
        assert_eq!(parse_close_payload(Bytes::new()), Ok(None));
        assert_eq!(
            parse_close_payload(Bytes::from_static(&[3])),
            Err(ClosePayloadError::Truncated)
        );
        assert_eq!(
            parse_close_payload(Bytes::from_static(&[0x03, 0xED])),
            Err(ClosePayloadError::InvalidCode(1005))
        );
        assert_eq!(
            parse_close_payload(Bytes::from_static(&[0x03, 0xE8, 0xFF])),
            Err(ClosePayloadError::InvalidReason)
        );
        let frame = parse_close_payload(Bytes::from_static(b"\x03\xe8bye"))
            .unwrap()
            .unwrap();
        assert_eq!(frame, CloseFrame::new(1000, "bye"));
    }
}
