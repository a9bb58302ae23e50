//! What the server sends is shown on a terminal, never obeyed by it: control characters in
//! text (escape sequences that retitle the window, move the cursor, rewrite what was printed,
//! or worse on some terminals) and the bidirectional embeddings, overrides and isolates
//! (which make a line display in another order than it reads, as in "Trojan Source") are
//! printed as visible escapes (`\x1b`, `\r`, `\u{9b}`, `\u{202e}`) when the stream is a
//! terminal. Piped or redirected output stays byte for byte.
//!
//! Backslashes are left as they are: JSON text is full of them, and doubling every one (to
//! set a `\x1b` the server typed apart from an escape of ours) would make all of it harder
//! to read.

use std::borrow::Cow;
use std::io::{self, IsTerminal, Write};
use std::sync::OnceLock;

/// Whether stderr is a terminal (asked once).
pub fn stderr_is_terminal() -> bool {
    static TERMINAL: OnceLock<bool> = OnceLock::new();
    *TERMINAL.get_or_init(|| std::io::stderr().is_terminal())
}

/// Whether `c` must not reach a terminal as it is: the control characters (C0, DEL and C1,
/// where U+009B is a CSI on terminals that read them) but newline and tab, and the
/// bidirectional formatting characters that reorder what follows them (LRE, RLE, PDF, LRO,
/// RLO, LRI, RLI, FSI, PDI). The marks (LRM, RLM, ALM) affect only their neighbours and are
/// part of right-to-left text, and zero-width joiners build emoji: those pass.
fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || is_bidi_override(c)
}

/// Whether `c` is a bidirectional embedding, override or isolate (U+202A to U+202E, U+2066
/// to U+2069): what follows it displays in another order than it reads.
pub fn is_bidi_override(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with its control characters (but newline, tab and the CR of a CRLF, which only
/// ends a line) and bidirectional overrides written as escapes: `\r`, `\x1b` (C0 and DEL),
/// `\u{9b}` (C1), `\u{202e}`. Borrowed when there are none, the common case.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.char_indices().any(|(i, c)| needs_escape(text, i, c)) {
        return Cow::Borrowed(text);
    }
    let mut out = Vec::with_capacity(text.len() + 16);
    // Writing to a Vec cannot fail, and what is written is `text`'s UTF-8 and ASCII escapes.
    let _ = write_escaped(&mut out, text);
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// Writes `text` as [`escape_controls`] shows it, a run at a time: a big message costs no
/// copy of itself (64 MiB of ESC made a 256 MiB string).
pub fn write_escaped(out: &mut impl Write, text: &str) -> io::Result<()> {
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if !needs_escape(text, i, c) {
            continue;
        }
        out.write_all(&text.as_bytes()[start..i])?;
        match c {
            '\r' => out.write_all(b"\\r")?,
            c if (c as u32) < 0x80 => write!(out, "\\x{:02x}", c as u32)?,
            c => write!(out, "\\u{{{:x}}}", c as u32)?,
        }
        start = i + c.len_utf8();
    }
    out.write_all(&text.as_bytes()[start..])
}

/// Whether `c`, at byte `i` of `text`, is shown as an escape: an unsafe character, but for a
/// CR right before its LF.
fn needs_escape(text: &str, i: usize, c: char) -> bool {
    is_unsafe(c) && !(c == '\r' && text.as_bytes().get(i + 1) == Some(&b'\n'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_newlines_and_tabs_pass_unchanged_and_unallocated() {
        for text in [
            "",
            "{\"p\":1}",
            "two\nlines\tand a tab",
            "héllo ✓ 日本",
            "crlf\r\nends a line\r\n",
            // RLM in Hebrew text, a ZWJ emoji sequence, a zero-width space
            "שלום\u{200f}!",
            "👩\u{200d}💻",
            "a\u{200b}b",
        ] {
            assert!(matches!(escape_controls(text), Cow::Borrowed(t) if t == text));
        }
    }

    #[test]
    fn controls_become_visible_escapes() {
        assert_eq!(
            escape_controls("\x1b]0;owned\x07title\x1b[2J"),
            "\\x1b]0;owned\\x07title\\x1b[2J"
        );
        assert_eq!(escape_controls("done\rfake"), "done\\rfake");
        assert_eq!(escape_controls("a\0b\x7fc"), "a\\x00b\\x7fc");
        assert_eq!(escape_controls("x\u{9b}31my"), "x\\u{9b}31my");
        assert_eq!(escape_controls("\u{85}é\u{a0}"), "\\u{85}é\u{a0}");
        // A CR is harmless only right before its LF.
        assert_eq!(escape_controls("a\r\nb\rc\r"), "a\r\nb\\rc\\r");
        assert_eq!(escape_controls("\n\r\r\n"), "\n\\r\r\n");
    }

    #[test]
    fn bidirectional_overrides_become_visible_escapes() {
        // "Trojan Source": RLO makes the rest of the line display reversed.
        assert_eq!(
            escape_controls("price: \u{202e}001\u{202c} USD"),
            "price: \\u{202e}001\\u{202c} USD"
        );
        assert_eq!(
            escape_controls("\u{2066}x\u{2069}\u{202a}"),
            "\\u{2066}x\\u{2069}\\u{202a}"
        );
    }
}
