//! The transport under a client connection: plain TCP or TLS over TCP, and how it is opened.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::error::{Error, Phase};
use crate::proto::handshake::HandshakeError;

/// The deadline `timeout` from now, if any (none for a timeout the clock cannot count to).
pub(crate) fn deadline_in(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// A TCP stream with an optional deadline: while one is set, every read waits at most until
/// it, however many reads an operation takes. rustls reads until a whole record is in, so a
/// per-read timeout alone lets a peer that trickles bytes stretch a handshake forever.
#[derive(Debug)]
pub struct DeadlineTcp {
    tcp: TcpStream,
    deadline: Option<Instant>,
    /// The caller's read deadline (`WebSocket::set_read_deadline`), bounding reads beside
    /// `deadline`: over TLS one read of ours is as many socket reads as a record takes to
    /// trickle in, and only a deadline here bounds them all.
    read_deadline: Option<Instant>,
    /// The idle-read timeout still applies under the deadline (off while closing, where only
    /// the close timeout counts).
    idle_under_deadline: bool,
    read_timeout: Option<Duration>,
    /// The timeout the socket has now, and since when: re-arming costs a system call, so a
    /// value armed moments ago is kept.
    armed: Option<Duration>,
    armed_at: Option<Instant>,
    /// Writes take what the socket has room for now and never wait (see [`send_nowait`]).
    nowait_writes: bool,
    /// While set, every blocking write waits at most until it: over TLS, one write of ours
    /// is many socket writes (rustls writes all it holds), and a timeout set once per write
    /// of ours would let a slow reader stretch it to many times the bound.
    write_deadline: Option<Instant>,
    /// The socket's send timeout outside write deadlines (the write timeout), and whether a
    /// deadline has armed another since (to be set back when the deadline is lifted).
    write_timeout: Option<Duration>,
    write_armed: bool,
    /// Reads fail at once with `WouldBlock`: set while rustls writes, which would otherwise
    /// wait to read whenever a write is blocked (and so outlast the write timeout).
    refuse_reads: bool,
    /// Reads take only what has arrived and never wait (`WouldBlock` when nothing has).
    nowait_reads: bool,
}

/// A socket timeout armed this recently is not re-armed for the next read (the deadline is
/// then overshot by at most this much).
const REARM_SLACK: Duration = Duration::from_millis(5);

impl DeadlineTcp {
    /// Over `tcp`, whose send timeout outside write deadlines is `write_timeout` (as the
    /// caller set it): lifting a deadline sets it back.
    fn new(tcp: TcpStream, write_timeout: Option<Duration>) -> Self {
        DeadlineTcp {
            tcp,
            deadline: None,
            read_deadline: None,
            idle_under_deadline: true,
            read_timeout: None,
            armed: None,
            armed_at: None,
            nowait_writes: false,
            write_deadline: None,
            write_timeout,
            write_armed: false,
            refuse_reads: false,
            nowait_reads: false,
        }
    }

    /// Gives the socket this read timeout, unless it has it already.
    fn arm(&mut self, timeout: Option<Duration>, now: Option<Instant>) -> io::Result<()> {
        if self.armed != timeout {
            self.tcp.set_read_timeout(timeout)?;
            self.armed = timeout;
        }
        self.armed_at = now;
        Ok(())
    }

    fn set_deadline(&mut self, deadline: Option<Instant>, idle: bool) -> io::Result<()> {
        if deadline != self.deadline || idle != self.idle_under_deadline {
            // A new deadline is armed afresh on the next read.
            self.armed_at = None;
        }
        self.deadline = deadline;
        self.idle_under_deadline = idle;
        // Without a deadline, the next read restores the read timeout if it must: a
        // connection that ends first (after its handshake, after its close) spares the call.
        Ok(())
    }

    fn set_write_deadline(&mut self, deadline: Option<Instant>) {
        self.write_deadline = deadline;
        if deadline.is_none() && std::mem::take(&mut self.write_armed) {
            // Should it fail, the next write under a deadline sets the timeout anyway, and
            // plain writes are bounded by the deadline's last timeout at worst.
            let _ = self.tcp.set_write_timeout(self.write_timeout);
        }
    }

    fn set_read_deadline(&mut self, deadline: Option<Instant>) {
        if deadline != self.read_deadline {
            self.armed_at = None;
        }
        self.read_deadline = deadline;
    }

    /// The earlier of the deadlines, if any.
    fn next_deadline(&self) -> Option<Instant> {
        match (self.deadline, self.read_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        // Refused now, as the socket would refuse it, rather than at the next read.
        if timeout == Some(Duration::ZERO) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a read timeout of zero is not allowed; use None for no timeout",
            ));
        }
        // Armed by the next read that needs it (see `set_deadline`).
        self.read_timeout = timeout;
        Ok(())
    }
}

impl Read for DeadlineTcp {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.refuse_reads {
            return Err(io::Error::from(io::ErrorKind::WouldBlock));
        }
        if self.nowait_reads {
            return recv_nowait(&self.tcp, buf);
        }
        if let Some(deadline) = self.next_deadline() {
            let now = Instant::now();
            let left = deadline.saturating_duration_since(now);
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline expired"));
            }
            let left = match self.read_timeout {
                Some(idle) if self.idle_under_deadline => idle.min(left),
                _ => left,
            };
            // Only a timeout that may end the read a little late, never early, is kept.
            let recent = self
                .armed_at
                .is_some_and(|at| now.duration_since(at) < REARM_SLACK)
                && self
                    .armed
                    .is_some_and(|armed| armed >= left && armed <= left + REARM_SLACK);
            if !recent {
                // What has arrived is taken without arming the timeout (a system call): the
                // answer to a handshake or a close is often here before we read.
                #[cfg(target_os = "linux")]
                match recv_nowait(&self.tcp, buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    done => return done,
                }
                self.arm(Some(left), Some(now))?;
            }
        } else if self.armed != self.read_timeout {
            self.arm(self.read_timeout, None)?;
        }
        self.tcp.read(buf)
    }
}

impl Write for DeadlineTcp {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.nowait_writes {
            return send_nowait(&self.tcp, buf);
        }
        if let Some(deadline) = self.write_deadline {
            // Most writes fit in the socket: only one that would wait arms the timeout (a
            // system call, and another to set it back).
            #[cfg(target_os = "linux")]
            match send_nowait(&self.tcp, buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => return done,
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline expired"));
            }
            self.tcp.set_write_timeout(Some(left))?;
            self.write_armed = true;
        }
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

/// A TCP stream, with TLS on top for `wss://`.
#[derive(Debug)]
#[non_exhaustive]
pub enum MaybeTlsStream {
    /// `ws://`.
    Plain(DeadlineTcp),
    /// `wss://`.
    #[cfg(feature = "tls")]
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, DeadlineTcp>>),
}

impl MaybeTlsStream {
    pub(crate) fn plain(tcp: TcpStream, write_timeout: Option<Duration>) -> Self {
        MaybeTlsStream::Plain(DeadlineTcp::new(tcp, write_timeout))
    }

    fn inner(&self) -> &DeadlineTcp {
        match self {
            MaybeTlsStream::Plain(s) => s,
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => &s.sock,
        }
    }

    fn inner_mut(&mut self) -> &mut DeadlineTcp {
        match self {
            MaybeTlsStream::Plain(s) => s,
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => &mut s.sock,
        }
    }

    /// The TCP stream underneath. Set timeouts through the `WebSocket`
    /// (`set_read_timeout`, deadlines), not on this stream: the socket's read timeout is
    /// cached to spare system calls, and a value set here behind that cache's back may be
    /// kept or lost.
    pub fn tcp(&self) -> &TcpStream {
        &self.inner().tcp
    }

    /// Sets the timeout of each blocking read (the idle-read timeout).
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.inner_mut().set_read_timeout(timeout)
    }

    /// Bounds every read until `deadline` (`None` lifts it); the read timeout still applies
    /// to each read.
    pub fn set_deadline(&mut self, deadline: Option<Instant>) -> io::Result<()> {
        self.inner_mut().set_deadline(deadline, true)
    }

    /// Bounds every read until `deadline` alone, the read timeout set aside (for closing).
    pub(crate) fn set_close_deadline(&mut self, deadline: Option<Instant>) -> io::Result<()> {
        self.inner_mut().set_deadline(deadline, false)
    }

    /// The caller's read deadline: bounds every read beside the deadline above, however many
    /// socket reads a TLS record takes (`None` lifts it).
    pub(crate) fn set_read_deadline(&mut self, deadline: Option<Instant>) {
        self.inner_mut().set_read_deadline(deadline);
    }

    /// Sets the timeout of each blocking write.
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let inner = self.inner_mut();
        inner.write_timeout = timeout;
        inner.write_armed = false;
        inner.tcp.set_write_timeout(timeout)
    }

    /// Bounds every blocking write until `deadline`; `None` lifts it, and gives the socket
    /// its write timeout back if a write under the deadline changed it.
    pub(crate) fn set_write_deadline(&mut self, deadline: Option<Instant>) {
        self.inner_mut().set_write_deadline(deadline);
    }

    /// Makes writes take only what the socket has room for now (`WouldBlock` when it has
    /// none), or wait again as usual. Over TLS, what rustls has accepted may wait in its own
    /// buffer: the next write, flush or read sends it.
    pub(crate) fn set_write_nowait(&mut self, nowait: bool) {
        self.inner_mut().nowait_writes = nowait;
    }

    /// Whether rustls holds TLS records the socket has not taken yet (a nowait write left
    /// them behind).
    pub(crate) fn holds_output(&self) -> bool {
        match self {
            MaybeTlsStream::Plain(_) => false,
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => s.conn.wants_write(),
        }
    }

    /// Drops the TLS records rustls holds for writing: the peer is gone, and reading what it
    /// sent before must not first try to write them (and fail).
    pub(crate) fn discard_output(&mut self) {
        #[cfg(feature = "tls")]
        if let MaybeTlsStream::Tls(s) = self {
            write_tls_records(&mut s.conn, &mut io::sink());
        }
    }

    /// Sends TLS close_notify (RFC 8446 section 6.1) after the close handshake, if the socket
    /// has room for it now: our side of the TLS session is over, and a server that checks
    /// for truncation sees a clean end. TCP stays open: the server closes it first.
    pub(crate) fn close_notify(&mut self) {
        #[cfg(feature = "tls")]
        if let MaybeTlsStream::Tls(s) = self {
            s.conn.send_close_notify();
            let nowait = std::mem::replace(&mut s.sock.nowait_writes, true);
            write_tls_records(&mut s.conn, &mut s.sock);
            s.sock.nowait_writes = nowait;
        }
    }

    /// Makes reads take only what has arrived (`WouldBlock` when nothing has), or wait again
    /// as usual. Over TLS, a record that has only partly arrived stays in rustls's buffer.
    pub(crate) fn set_read_nowait(&mut self, nowait: bool) {
        self.inner_mut().nowait_reads = nowait;
    }
}

/// Writes the TLS records rustls holds to `out` until it holds none or `out` takes no more.
#[cfg(feature = "tls")]
fn write_tls_records(conn: &mut rustls::ClientConnection, out: &mut impl Write) {
    while conn.wants_write() {
        if !matches!(conn.write_tls(out), Ok(n) if n > 0) {
            break;
        }
    }
}

/// One write of what the socket has room for now, without waiting: one system call, the
/// socket staying in blocking mode.
#[cfg(target_os = "linux")]
fn send_nowait(tcp: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    socket2::SockRef::from(tcp).send_with_flags(buf, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
}

/// One write of what the socket has room for now, without waiting (non-blocking mode for
/// the write).
#[cfg(not(target_os = "linux"))]
fn send_nowait(tcp: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    nonblocking(tcp, |mut tcp| tcp.write(buf))
}

/// One read of what has arrived, without waiting (`WouldBlock` when nothing has): one
/// system call, the socket staying in blocking mode.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn recv_nowait(tcp: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and recv only writes initialised
    // bytes into the buffer, so it stays a valid `[u8]`.
    let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [std::mem::MaybeUninit<u8>]) };
    socket2::SockRef::from(tcp).recv_with_flags(uninit, libc::MSG_DONTWAIT)
}

/// One read of what has arrived, without waiting: the socket in non-blocking mode for it
/// (three system calls; only reads made while our own output is held up come here).
#[cfg(not(target_os = "linux"))]
fn recv_nowait(tcp: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    nonblocking(tcp, |mut tcp| tcp.read(buf))
}

/// Runs one read or write with the socket in non-blocking mode.
#[cfg(not(target_os = "linux"))]
fn nonblocking(
    tcp: &TcpStream,
    op: impl FnOnce(&TcpStream) -> io::Result<usize>,
) -> io::Result<usize> {
    tcp.set_nonblocking(true)?;
    let done = op(tcp);
    // Bytes moved are reported as moved even if this fails (the next call then fails).
    let _ = tcp.set_nonblocking(false);
    done
}

impl Read for MaybeTlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            MaybeTlsStream::Plain(s) => s.read(buf),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => {
                // A record failed: the plaintext before it, then its error, without reading
                // the socket again (which rustls would do first).
                if let Some(read) = crate::tls::read_after_failure(&mut s.conn, buf) {
                    return read;
                }
                // rustls first writes what it holds (pongs the socket had no room for): that
                // must not hold the read up.
                let nowait = std::mem::replace(&mut s.sock.nowait_writes, true);
                let read = match s.read(buf) {
                    // The records the same socket read brought in before the bad one.
                    Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                        crate::tls::read_after_failure(&mut s.conn, buf).unwrap_or(Err(e))
                    }
                    // Those bytes could not go out, and rustls reads no more (the peer's
                    // close_notify came): it returns the write's WouldBlock before it looks
                    // at what it received. That is all there will be: a WouldBlock here would
                    // be a read timeout at once, every time.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock && !s.conn.wants_read() => {
                        s.conn.reader().read(buf)
                    }
                    other => other,
                };
                s.sock.nowait_writes = nowait;
                match read {
                    // A peer that closes TCP without close_notify after the WebSocket close
                    // is common; the WebSocket layer decides whether the close was clean.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                    other => other,
                }
            }
        }
    }
}

impl Write for MaybeTlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            MaybeTlsStream::Plain(s) => s.write(buf),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => {
                s.sock.refuse_reads = true;
                let written = s.write(buf);
                s.sock.refuse_reads = false;
                written
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            MaybeTlsStream::Plain(s) => s.flush(),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => {
                s.sock.refuse_reads = true;
                let flushed = s.flush();
                s.sock.refuse_reads = false;
                flushed
            }
        }
    }
}

/// Whether an I/O error means a socket timeout expired.
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Whether an I/O error means the peer is gone: it reset the connection, or closed it and
/// we wrote anyway. What it sent before may still wait in the socket.
pub(crate) fn is_peer_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected
    )
}

/// Turns an I/O error during `phase` into the crate error: timeouts name the phase, TLS
/// failures carry rustls' reason and the host, and on an open connection a peer that reset
/// or closed it is [`Error::ConnectionReset`], as when it closes TCP without a close
/// handshake (one error for a dropped connection, whichever way TCP said it).
pub(crate) fn map_io_error(e: io::Error, phase: Phase, host: &str) -> Error {
    if is_timeout(&e) {
        return Error::Timeout(phase);
    }
    if matches!(phase, Phase::Read | Phase::Write | Phase::Close) && is_peer_gone(&e) {
        return Error::ConnectionReset;
    }
    // As when the server closes it: which way TCP said it is no news to the user.
    if phase == Phase::WebSocketHandshake && is_peer_gone(&e) {
        return Error::Handshake(HandshakeError::ConnectionClosed);
    }
    if phase == Phase::TlsHandshake
        && (e.kind() == io::ErrorKind::UnexpectedEof || is_peer_gone(&e))
    {
        return Error::TlsClosed {
            host: host.to_string(),
        };
    }
    #[cfg(feature = "tls")]
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return Error::Tls {
            host: host.to_string(),
            source: tls.clone(),
        };
    }
    let _ = host;
    Error::Io(e)
}

/// Runs the TLS handshake over `tcp` within `timeout`.
#[cfg(feature = "tls")]
pub(crate) fn tls_handshake(
    tcp: TcpStream,
    host: &str,
    config: std::sync::Arc<rustls::ClientConfig>,
    timeout: Option<Duration>,
    write_timeout: Option<Duration>,
) -> Result<MaybeTlsStream, Error> {
    let name = crate::tls::server_name(host)?;
    let mut conn = rustls::ClientConnection::new(config, name).map_err(|source| Error::Tls {
        host: host.to_string(),
        source,
    })?;
    let mut sock = DeadlineTcp::new(tcp, write_timeout);
    let deadline = deadline_in(timeout);
    sock.set_deadline(deadline, true)?;
    // Our handshake messages are written by the same deadline (a client certificate chain
    // can be more than the socket takes at once).
    sock.set_write_deadline(deadline);
    while conn.is_handshaking() {
        match conn.complete_io(&mut sock) {
            Ok((0, 0)) if conn.is_handshaking() => {
                return Err(Error::TlsClosed {
                    host: host.to_string(),
                })
            }
            Ok(_) => {}
            Err(e) => return Err(map_io_error(e, Phase::TlsHandshake, host)),
        }
    }
    sock.set_deadline(None, true)?;
    sock.set_write_deadline(None);
    Ok(MaybeTlsStream::Tls(Box::new(rustls::StreamOwned::new(
        conn, sock,
    ))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A stream over loopback TCP, and its peer.
    fn connected() -> (DeadlineTcp, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (peer, _) = listener.accept().unwrap();
        (DeadlineTcp::new(client, None), peer)
    }

    #[test]
    fn a_zero_read_timeout_is_refused_when_set() {
        let (mut stream, _peer) = connected();
        let err = stream.set_read_timeout(Some(Duration::ZERO)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
    }

    #[test]
    fn a_lifted_deadline_no_longer_bounds_reads() {
        let (mut stream, mut peer) = connected();
        let mut buf = [0u8; 16];
        peer.write_all(b"x").unwrap();
        stream
            .set_deadline(Some(Instant::now() + Duration::from_millis(50)), true)
            .unwrap();
        assert_eq!(stream.read(&mut buf).unwrap(), 1);
        // Lifted: a read that waits past the old deadline gets its data.
        stream.set_deadline(None, true).unwrap();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            peer.write_all(b"y").unwrap();
            peer
        });
        assert_eq!(stream.read(&mut buf).unwrap(), 1);
        assert_eq!(stream.tcp.read_timeout().unwrap(), None);
        writer.join().unwrap();
    }

    #[test]
    fn a_short_timeout_armed_moments_ago_does_not_cut_a_longer_deadline() {
        let (mut stream, mut peer) = connected();
        let mut buf = [0u8; 16];
        peer.write_all(b"x").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        // A 10 ms deadline, met at once by the waiting byte...
        stream
            .set_deadline(Some(Instant::now() + Duration::from_millis(10)), true)
            .unwrap();
        assert_eq!(stream.read(&mut buf).unwrap(), 1);
        // ...then a long one: the read must wait for data arriving later, not time out.
        stream
            .set_deadline(Some(Instant::now() + Duration::from_secs(5)), true)
            .unwrap();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            peer.write_all(b"y").unwrap();
            peer
        });
        assert_eq!(stream.read(&mut buf).unwrap(), 1);
        writer.join().unwrap();
    }
}
