//! Printing what arrives: plain lines, raw or hex binary, or JSON lines. The session flushes
//! them before it waits for more, so pipelines (`| grep`, `| jq`) see each message as it
//! comes.

use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use serde_json::json;
use wsc::Message;

use crate::json_line;
use crate::redact;
use crate::terminal;

/// How received messages are shown.
#[derive(Debug, Clone, Copy, Default)]
pub struct Format {
    /// One JSON object per line, control frames included.
    pub json: bool,
    /// Binary messages as raw bytes instead of hex.
    pub raw_binary: bool,
    /// Control frames on stderr.
    pub verbose: bool,
    /// Text shown with its control characters escaped (stdout is a terminal).
    pub escape_text: bool,
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Writes `bytes` as lowercase hex a piece at a time: a big binary message costs a small
/// buffer, not a string twice its size.
fn write_hex(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let mut buf = [0u8; 8192];
    for piece in bytes.chunks(buf.len() / 2) {
        for (pair, b) in buf.chunks_exact_mut(2).zip(piece) {
            pair[0] = HEX_DIGITS[usize::from(b >> 4)];
            pair[1] = HEX_DIGITS[usize::from(b & 0xf)];
        }
        out.write_all(&buf[..piece.len() * 2])?;
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    // Writing to a Vec cannot fail, and hex digits are ASCII.
    let _ = write_hex(&mut out, bytes);
    String::from_utf8_lossy(&out).into_owned()
}

/// A short, printable view of a control frame payload.
fn preview(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => format!("{s:?}"),
        Err(_) => format!("0x{}", hex(bytes)),
    }
}

impl Format {
    /// Prints a received message (`rtt`: the keepalive round trip a pong gave) to `out`, for
    /// the caller to flush (before a control frame's note on stderr too, to keep the order).
    pub fn received(
        &self,
        out: &mut impl Write,
        message: &Message,
        rtt: Option<Duration>,
    ) -> io::Result<()> {
        if self.json {
            return json_line::write_message(out, message, SystemTime::now(), rtt);
        }
        match message {
            Message::Text(t) if self.escape_text => {
                terminal::write_escaped(out, t)?;
                out.write_all(b"\n")
            }
            Message::Text(t) => writeln!(out, "{t}"),
            Message::Binary(b) if self.raw_binary => out.write_all(b),
            Message::Binary(b) => {
                write_hex(out, b)?;
                out.write_all(b"\n")
            }
            Message::Ping(b) => self.note_ok(&format!("< ping {}", preview(b))),
            Message::Pong(b) => self.note_ok(&format!("< pong {}", preview(b))),
            Message::Close(Some(frame)) => self.note_ok(&format!("< close {frame}")),
            Message::Close(None) => self.note_ok("< close (no status)"),
        }
    }

    /// [`Format::note`], for a control frame that prints nothing on stdout.
    fn note_ok(&self, text: &str) -> io::Result<()> {
        self.note(text);
        Ok(())
    }

    /// A drop (`--reconnect`): always on stderr, and as a JSON line to `out` in `--json`
    /// mode so a consumer can mark the gap.
    pub fn event_disconnected(&self, out: &mut impl Write, why: &str) -> io::Result<()> {
        say!("wsc: connection lost: {why}; reconnecting");
        self.json_event(out, "disconnected", json!({ "reason": why }))
    }

    /// A failed attempt to reconnect (`--reconnect`) and the wait before the next one, like
    /// [`Format::event_disconnected`]: a server down for long says so at each attempt.
    pub fn event_attempt_failed(
        &self,
        out: &mut impl Write,
        attempt: u32,
        error: &wsc::Error,
        retry_in: std::time::Duration,
        retry_after: Option<std::time::Duration>,
    ) -> io::Result<()> {
        let asked = match retry_after {
            Some(wait) => format!(" (the server's Retry-After: {} s)", wait.as_secs()),
            None => String::new(),
        };
        let error = crate::describe::DescribedForClient(error).to_string();
        say!(
            "wsc: attempt {attempt} failed: {error}; next in {:.1} s{asked}",
            retry_in.as_secs_f64()
        );
        let fields = json!({
            "attempt": attempt,
            "error": error,
            "retry_in_ms": retry_in.as_millis() as u64,
            "retry_after_ms": retry_after.map(|w| w.as_millis() as u64),
        });
        self.json_event(out, "attempt_failed", fields)
    }

    /// A reconnect (`--reconnect`), like [`Format::event_disconnected`].
    pub fn event_reconnected(
        &self,
        out: &mut impl Write,
        attempts: u32,
        downtime: std::time::Duration,
    ) -> io::Result<()> {
        say!(
            "wsc: reconnected after {:.1} s ({attempts} attempt{})",
            downtime.as_secs_f64(),
            if attempts == 1 { "" } else { "s" }
        );
        let fields = json!({
            "attempts": attempts,
            "downtime_ms": downtime.as_millis() as u64,
        });
        self.json_event(out, "reconnected", fields)
    }

    /// Reconnecting given up (`--reconnect`): in `--json` mode a last event line with the
    /// reason wsc exits with (which stderr says as well).
    pub fn event_gave_up(&self, out: &mut impl Write, why: &str) -> io::Result<()> {
        self.json_event(out, "gave_up", json!({ "reason": why }))
    }

    /// In `--json` mode, a reconnect event as a JSON line to `out` (among the messages, for
    /// the caller to flush): `fields`, its `type` and the time.
    fn json_event(
        &self,
        out: &mut impl Write,
        kind: &str,
        mut fields: serde_json::Value,
    ) -> io::Result<()> {
        if !self.json {
            return Ok(());
        }
        fields["type"] = kind.into();
        fields["ts"] = humantime::format_rfc3339_millis(SystemTime::now())
            .to_string()
            .into();
        json_line::write_value(out, &fields)
    }

    /// A note on stderr in verbose mode.
    pub fn note(&self, text: &str) {
        if self.verbose {
            say!("{text}");
        }
    }

    /// The handshake, in verbose mode.
    pub fn handshake(&self, request: Option<&str>, response: Option<&wsc::Response>) {
        if !self.verbose {
            return;
        }
        for hop in response.map_or(&[][..], |r| &r.redirects) {
            say!(
                "* {} answered {}: following it to {}",
                hop.from,
                hop.status,
                hop.to
            );
        }
        print_request_head(request.unwrap_or(""));
        if let Some(resp) = response {
            print_response_head(resp);
        }
    }

    /// With `-v`, a refused handshake's request and response heads: the response's headers
    /// (`WWW-Authenticate`, `Location`, `Retry-After`) often say why, the request what it
    /// answers (the headers, the subprotocols, the path sent), and the error message shows
    /// only the status.
    pub fn refusal(&self, error: &wsc::Error) {
        if let wsc::Error::Handshake(wsc::HandshakeError::Rejected(resp)) = error {
            if self.verbose {
                print_request_head(resp.request_head.as_deref().unwrap_or(""));
                print_response_head(resp);
            }
        }
    }
}

/// `> ` and each line of the request head, credentials hidden, on stderr.
fn print_request_head(head: &str) {
    for line in head.lines().filter(|l| !l.is_empty()) {
        say!("> {}", redact::header_line(line));
    }
}

/// `< ` and the status line, then each header, credentials (`Set-Cookie`) hidden, on stderr.
fn print_response_head(resp: &wsc::Response) {
    say!("< HTTP/1.1 {}", resp.status);
    for (name, value) in &resp.headers {
        let line = format!("{name}: {}", String::from_utf8_lossy(value.as_bytes()));
        say!("< {}", redact::header_line(&line));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_hex() {
        let f = Format::default();
        let mut out = Vec::new();
        f.received(&mut out, &Message::text("hi"), None).unwrap();
        f.received(&mut out, &Message::binary(vec![0xde, 0xad]), None)
            .unwrap();
        assert_eq!(out, b"hi\ndead\n");
    }

    #[test]
    fn text_for_a_terminal_has_its_controls_escaped_and_piped_text_is_exact() {
        let text = Message::text("\x1b]0;owned\x07ok\r");
        let mut out = Vec::new();
        let terminal = Format {
            escape_text: true,
            ..Format::default()
        };
        terminal.received(&mut out, &text, None).unwrap();
        assert_eq!(out, b"\\x1b]0;owned\\x07ok\\r\n");
        out.clear();
        Format::default().received(&mut out, &text, None).unwrap();
        assert_eq!(out, b"\x1b]0;owned\x07ok\r\n");
    }

    #[test]
    fn hex_of_a_message_longer_than_one_piece_is_whole_and_in_order() {
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let mut out = Vec::new();
        Format::default()
            .received(&mut out, &Message::binary(bytes.clone()), None)
            .unwrap();
        let expected: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(String::from_utf8(out).unwrap(), expected + "\n");
        assert_eq!(preview(&[0xff, 0x00]), "0xff00");
    }
}
