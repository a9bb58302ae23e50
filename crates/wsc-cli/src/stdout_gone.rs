//! Noticing that nobody reads our stdout any more (`wsc URL | head -n 3` after `head` has
//! exited), without writing to it: a quiet session (waiting for messages, printing nothing)
//! must notice too, and close the connection instead of holding it open for no reader.

/// Whether stdout is a pipe or socket whose reader has gone: the kernel reports an error or
/// a hang-up on its write end. A closed descriptor (`wsc URL >&-`) does not count: writes to
/// it are dropped on purpose, so the user wants the session all the same.
#[cfg(unix)]
pub fn stdout_gone() -> bool {
    // No event asked for: POLLERR and POLLHUP are reported regardless.
    poll_stdout(0, 0) & (libc::POLLERR | libc::POLLHUP) != 0
}

/// Polls stdout for `events` (POLLERR, POLLHUP and POLLNVAL come regardless), waiting up to
/// `timeout_ms`: the events that came, none when it timed out or a signal cut it short.
#[cfg(unix)]
pub fn poll_stdout(events: libc::c_short, timeout_ms: libc::c_int) -> libc::c_short {
    let mut fd = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd: poll only fills in `revents`.
    match unsafe { libc::poll(&mut fd, 1, timeout_ms) } {
        1.. => fd.revents,
        _ => 0,
    }
}

/// Elsewhere the closed pipe is noticed by the next write.
#[cfg(not(unix))]
pub fn stdout_gone() -> bool {
    false
}
