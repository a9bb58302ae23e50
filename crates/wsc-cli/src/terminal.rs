//! What the server sends is shown on a terminal, never obeyed by it: control characters in
//! text (escape sequences that retitle the window, move the cursor, rewrite what was printed,
//! or worse on some terminals) are printed as visible escapes (`\x1b`, `\r`, `\u{9b}`)
//! when the stream is a terminal. Piped or redirected output stays byte for byte.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::OnceLock;

/// Whether stderr is a terminal (asked once).
pub fn stderr_is_terminal() -> bool {
    static TERMINAL: OnceLock<bool> = OnceLock::new();
    *TERMINAL.get_or_init(|| std::io::stderr().is_terminal())
}

/// Whether `c` must not reach a terminal as it is: the control characters (C0, DEL and C1,
/// where U+009B is a CSI on terminals that read them) but newline and tab.
fn is_unsafe(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

/// `text` with its control characters (but newline and tab) written as escapes: `\r`,
/// `\x1b` (C0 and DEL), `\u{9b}` (C1). Borrowed when there are none, the common case.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.contains(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            c if is_unsafe(c) && (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_newlines_and_tabs_pass_unchanged_and_unallocated() {
        for text in ["", "{\"p\":1}", "two\nlines\tand a tab", "héllo ✓ 日本"] {
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
    }
}
