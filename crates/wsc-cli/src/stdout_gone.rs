//! Noticing that nobody reads our stdout any more (`wsc URL | head -n 3` after `head` has
//! exited), without writing to it: a quiet session (waiting for messages, printing nothing)
//! must notice too, and close the connection instead of holding it open for no reader.

/// Whether stdout is a pipe or socket whose reader has gone: the kernel reports an error or
/// a hang-up on its write end. A closed descriptor (`wsc URL >&-`) does not count: writes to
/// it are dropped on purpose, so the user wants the session all the same.
#[cfg(unix)]
pub fn stdout_gone() -> bool {
    let mut fd = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        // No event asked for: POLLERR and POLLHUP are reported regardless.
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, and a zero timeout: poll only fills in `revents`.
    let ready = unsafe { libc::poll(&mut fd, 1, 0) };
    ready > 0 && fd.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

/// Elsewhere the closed pipe is noticed by the next write.
#[cfg(not(unix))]
pub fn stdout_gone() -> bool {
    false
}
