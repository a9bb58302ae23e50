//! Messages and events as JSON lines (`--json`), serialized straight into the output: a big
//! message costs no copy of itself, of its base64 or of the line (a 64 MiB binary message
//! took 245 MB when the line was built first), and nothing in a line can drive a terminal.

use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use base64::display::Base64Display;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::ser::{SerializeMap, Serializer as _};
use serde::Serialize;
use serde_json::ser::{Formatter, Serializer};
use wsc::Message;

use crate::terminal::is_bidi_override;

/// serde_json's compact form, with DEL, the C1 controls (U+007F to U+009F) and the
/// bidirectional overrides (U+202A to U+202E, U+2066 to U+2069) also written as `\uXXXX`, as
/// serde_json writes the controls below U+0020: the same JSON, but none of it can drive a
/// terminal (U+009B is a CSI on terminals that read C1) nor show a line in another order
/// than it reads. These appear only inside strings.
struct TerminalSafe;

impl Formatter for TerminalSafe {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut rest = fragment;
        while let Some((at, c)) = rest.char_indices().find(|&(_, c)| drives_terminals(c)) {
            writer.write_all(&rest.as_bytes()[..at])?;
            write!(writer, "\\u{:04x}", u32::from(c))?;
            rest = &rest[at + c.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }
}

/// The characters serde_json leaves as they are that a terminal would obey.
fn drives_terminals(c: char) -> bool {
    ('\u{7f}'..='\u{9f}').contains(&c) || is_bidi_override(c)
}

/// Bytes as a base64 string, encoded a piece at a time into the output.
struct Base64<'a>(&'a [u8]);

impl Serialize for Base64<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&Base64Display::new(self.0, &BASE64))
    }
}

/// Writes `value` (a reconnect event) as one JSON line.
pub fn write_value(out: &mut impl Write, value: &impl Serialize) -> io::Result<()> {
    value.serialize(&mut Serializer::with_formatter(&mut *out, TerminalSafe))?;
    out.write_all(b"\n")
}

/// Writes the JSON line of a message: `type`, `ts`, `size`, then `data` (text as it is,
/// binary and control payloads as base64) or a close's `code` and `reason`; a pong that
/// answered a keepalive ping carries its round trip (`rtt_ms`).
pub fn write_message(
    out: &mut impl Write,
    message: &Message,
    now: SystemTime,
    rtt: Option<Duration>,
) -> io::Result<()> {
    let ts = humantime::format_rfc3339_millis(now).to_string();
    let (kind, size) = match message {
        Message::Text(t) => ("text", t.len()),
        Message::Binary(b) => ("binary", b.len()),
        Message::Ping(b) => ("ping", b.len()),
        Message::Pong(b) => ("pong", b.len()),
        Message::Close(frame) => ("close", frame.as_ref().map_or(0, |f| 2 + f.reason.len())),
    };
    let mut serializer = Serializer::with_formatter(&mut *out, TerminalSafe);
    let mut line = serializer.serialize_map(None)?;
    line.serialize_entry("type", kind)?;
    line.serialize_entry("ts", &ts)?;
    line.serialize_entry("size", &size)?;
    match message {
        Message::Text(t) => line.serialize_entry("data", t.as_str())?,
        Message::Binary(b) | Message::Ping(b) => line.serialize_entry("data", &Base64(b))?,
        Message::Pong(b) => {
            line.serialize_entry("data", &Base64(b))?;
            if let Some(rtt) = rtt {
                // In whole microseconds: nanoseconds in binary floating point printed as
                // 0.12186200000000001.
                line.serialize_entry("rtt_ms", &(rtt.as_micros() as f64 / 1e3))?;
            }
        }
        Message::Close(frame) => {
            line.serialize_entry("code", &frame.as_ref().map(|f| f.code.0))?;
            line.serialize_entry("reason", &frame.as_ref().map(|f| f.reason.as_str()))?;
        }
    }
    line.end()?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line of `message` at the epoch, without its newline.
    fn json_line(message: &Message, rtt: Option<Duration>) -> String {
        let mut out = Vec::new();
        write_message(&mut out, message, SystemTime::UNIX_EPOCH, rtt).unwrap();
        assert_eq!(out.pop(), Some(b'\n'));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_lines_parse_back() {
        let line = json_line(&Message::binary(vec![0, 255]), None);
        assert_eq!(
            line,
            r#"{"type":"binary","ts":"1970-01-01T00:00:00.000Z","size":2,"data":"AP8="}"#
        );
        let close = Message::Close(Some(wsc::CloseFrame::new(1001, "bye")));
        let v: serde_json::Value = serde_json::from_str(&json_line(&close, None)).unwrap();
        assert_eq!(
            (v["code"].as_u64(), v["reason"].as_str(), v["size"].as_u64()),
            (Some(1001), Some("bye"), Some(5))
        );
        let v: serde_json::Value =
            serde_json::from_str(&json_line(&Message::Close(None), None)).unwrap();
        assert!(v["code"].is_null() && v["reason"].is_null(), "{v}");
        // Base64 written in pieces is the same as at once.
        let big: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let v: serde_json::Value =
            serde_json::from_str(&json_line(&Message::binary(big.clone()), None)).unwrap();
        use base64::Engine as _;
        assert_eq!(v["data"].as_str(), Some(BASE64.encode(&big).as_str()));
    }

    #[test]
    fn json_lines_carry_controls_and_bidi_overrides_escaped_as_the_same_json() {
        let text = "b\u{9b}31m\u{7f}\x1b é \u{202e}txt.exe\u{2066}\u{200f}";
        let line = json_line(&Message::text(text), None);
        assert!(
            !line.contains(['\u{9b}', '\u{7f}', '\x1b', '\u{202e}', '\u{2066}']),
            "{line}"
        );
        assert!(
            line.contains(r"b\u009b31m\u007f\u001b é \u202etxt.exe\u2066"),
            "{line}"
        );
        // RLM, part of right-to-left text, passes.
        assert!(line.contains('\u{200f}'), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["data"], text);
        // Events too.
        let mut out = Vec::new();
        let event = serde_json::json!({ "type": "disconnected", "reason": "\u{9b}2J" });
        write_value(&mut out, &event).unwrap();
        let line = String::from_utf8(out).unwrap();
        assert!(line.contains(r"\u009b2J") && line.ends_with('\n'), "{line}");
    }

    #[test]
    fn a_keepalive_pong_carries_its_round_trip_in_json() {
        let pong = Message::Pong(wsc::bytes::Bytes::from_static(b"\0\0\0\x01"));
        let rtt = Some(Duration::from_micros(1500));
        let v: serde_json::Value = serde_json::from_str(&json_line(&pong, rtt)).unwrap();
        assert_eq!(
            (v["type"].as_str(), v["rtt_ms"].as_f64()),
            (Some("pong"), Some(1.5))
        );
        let v: serde_json::Value = serde_json::from_str(&json_line(&pong, None)).unwrap();
        assert!(v.get("rtt_ms").is_none(), "{v}");
        // Microseconds, without the noise of binary fractions.
        let line = json_line(&pong, Some(Duration::from_nanos(121_862)));
        assert!(line.ends_with(r#""rtt_ms":0.121}"#), "{line}");
    }
}
