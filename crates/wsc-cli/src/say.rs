//! Lines on stderr that never panic: `eprintln!` panics when stderr is a closed pipe
//! (`wsc -v URL 2>&1 | head` once `head` has exited), which ended a session with status 101
//! and no close handshake. A line nobody can read is dropped. On a terminal, control
//! characters in it (from a server's close reason, headers or refusal) are shown as escapes
//! (`terminal.rs`), not obeyed.

/// `eprintln!`, with a failed write ignored and, on a terminal, control characters escaped.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let line = format!($($arg)*);
        let line = if $crate::terminal::stderr_is_terminal() {
            $crate::terminal::escape_controls(&line)
        } else {
            std::borrow::Cow::Borrowed(line.as_str())
        };
        let _ = writeln!(std::io::stderr(), "{line}");
    }};
}
