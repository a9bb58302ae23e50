//! Stdout for the messages a session prints, whose writes a stop signal can cut short. A
//! pipe whose reader takes nothing (`wsc URL | stalled`, or a full FIFO) would otherwise
//! hold a write, and the session with it, past Ctrl-C or SIGTERM: no close went out, and
//! only a second signal ended the process. Messages are written only when the pipe has room
//! (looking at the stop flag meanwhile), in pieces a pipe with room takes without blocking.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

#[cfg(unix)]
use crate::stdout_gone::poll_stdout;

/// How often a wait for room in stdout looks at the stop flag, in milliseconds.
#[cfg(unix)]
const STOP_POLL_MS: libc::c_int = 100;

/// At most this much per write: a pipe that polls writable has a free page, which takes
/// this much without blocking (POSIX's PIPE_BUF).
#[cfg(unix)]
const PIECE: usize = 4096;

/// The error of a write that gave way to a stop signal (see the module docs).
#[derive(Debug)]
pub struct StoppedWhileBlocked;

impl fmt::Display for StoppedWhileBlocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stopped while stdout's reader took nothing")
    }
}

impl std::error::Error for StoppedWhileBlocked {}

/// Whether `e` is a write that gave way to a stop signal.
pub fn is_stopped_while_blocked(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<StoppedWhileBlocked>())
}

/// Unbuffered stdout (buffer it: every write is a system call or two) whose writes wait for
/// room, not in the kernel, and give way once `stop` is set.
pub struct StopAwareStdout<'a> {
    stop: &'a AtomicBool,
}

impl<'a> StopAwareStdout<'a> {
    pub fn new(stop: &'a AtomicBool) -> Self {
        StopAwareStdout { stop }
    }
}

#[cfg(unix)]
impl Write for StopAwareStdout<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let piece = &buf[..buf.len().min(PIECE)];
        loop {
            if !self.wait_for_room()? {
                continue;
            }
            // SAFETY: a valid buffer of `piece.len()` bytes, written to fd 1.
            let n = unsafe { libc::write(libc::STDOUT_FILENO, piece.as_ptr().cast(), piece.len()) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                // Closed (`wsc URL >&-`): dropped, as std's stdout drops it, on purpose.
                Some(libc::EBADF) => Ok(buf.len()),
                Some(libc::EAGAIN) => continue,
                _ => Err(e),
            };
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(unix)]
impl StopAwareStdout<'_> {
    /// Waits up to `STOP_POLL_MS` for stdout to take a write: `true` when it will (or
    /// the write will fail at once: a reader gone, a closed descriptor), `false` to look
    /// again; the error once stopped with no room.
    fn wait_for_room(&self) -> io::Result<bool> {
        // Room now: no wait, whatever the flag says (a stop still prints what fits).
        if poll_stdout(libc::POLLOUT, 0) != 0 {
            return Ok(true);
        }
        if self.stop.load(Ordering::Relaxed) {
            return Err(io::Error::other(StoppedWhileBlocked));
        }
        // Interrupted by the signal itself, or no room yet: the flag is looked at again.
        Ok(poll_stdout(libc::POLLOUT, STOP_POLL_MS) != 0)
    }
}

/// Elsewhere, std's stdout: a stop waits for the write.
#[cfg(not(unix))]
impl Write for StopAwareStdout<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = self.stop;
        io::stdout().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stdout().flush()
    }
}
