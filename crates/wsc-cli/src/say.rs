//! Lines on stderr that never panic: `eprintln!` panics when stderr is a closed pipe
//! (`wsc -v URL 2>&1 | head` once `head` has exited), which ended a session with status 101
//! and no close handshake. A line nobody can read is dropped.

/// `eprintln!`, with a failed write ignored.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
