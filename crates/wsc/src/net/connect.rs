//! Resolving a host and opening TCP to it: every address is tried, and IPv6 and IPv4 are
//! raced as in Happy Eyeballs (RFC 8305), so a family that is broken on this network (a
//! black-holed IPv6 route, a port open on only one family) costs at most a short delay
//! instead of the whole connect timeout.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::proxy::host_port;
use crate::error::{Error, Phase};

/// How long an attempt gets before the next address is tried beside it (RFC 8305 section
/// 5 recommends 250 ms).
pub(crate) const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Fixed addresses for host names, set by the caller instead of the resolver (as curl's
/// `--resolve`): the names are matched case-insensitively, the port of the URL is kept.
pub(crate) type Overrides = Vec<(String, Vec<IpAddr>)>;

/// The addresses set for `host` in `overrides`, if any: the last set, as a later option
/// overrides an earlier one. A name ending with the root's dot (`example.com.`) is the same
/// name.
pub(crate) fn overridden(overrides: &Overrides, host: &str, port: u16) -> Option<Vec<SocketAddr>> {
    fn bare(name: &str) -> &str {
        name.strip_suffix('.').unwrap_or(name)
    }
    let host = bare(host);
    overrides
        .iter()
        .rev()
        .find(|(name, _)| bare(name).eq_ignore_ascii_case(host))
        .map(|(_, ips)| ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect())
}

/// Orders addresses for connection attempts (RFC 8305 section 4): duplicates dropped, then
/// the two families interleaved, starting with the family the resolver listed first (its
/// preference).
pub(crate) fn interleave(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    // One address (an IP literal, most names): nothing to order.
    if addrs.len() < 2 {
        return addrs;
    }
    let mut unique: Vec<SocketAddr> = Vec::with_capacity(addrs.len());
    for addr in addrs {
        if !unique.contains(&addr) {
            unique.push(addr);
        }
    }
    let Some(first) = unique.first() else {
        return unique;
    };
    let first_v6 = first.is_ipv6();
    let (preferred, other): (Vec<_>, Vec<_>) =
        unique.into_iter().partition(|a| a.is_ipv6() == first_v6);
    let mut ordered = Vec::with_capacity(preferred.len() + other.len());
    let mut preferred = preferred.into_iter();
    let mut other = other.into_iter();
    loop {
        match (preferred.next(), other.next()) {
            (None, None) => return ordered,
            (a, b) => ordered.extend(a.into_iter().chain(b)),
        }
    }
}

/// The error after every address failed: the last failure, or a timeout if the time ran out.
fn all_failed(host: &str, port: u16, last: Option<io::Error>) -> Error {
    Error::Connect {
        target: host_port(host, port),
        source: last.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "the host has no addresses")
        }),
    }
}

/// The addresses of `host`: itself if it is an IP literal, the overrides if it has some, else
/// what the resolver says by `deadline`.
pub(crate) fn addresses(
    host: &str,
    port: u16,
    overrides: &Overrides,
    deadline: Option<Instant>,
) -> Result<Vec<SocketAddr>, Error> {
    match (host.parse::<IpAddr>(), overridden(overrides, host, port)) {
        (Ok(ip), _) => Ok(vec![SocketAddr::new(ip, port)]),
        (Err(_), Some(addrs)) => Ok(addrs),
        (Err(_), None) => resolve(host, port, deadline),
    }
}

/// Resolves `host` (unless it is an IP literal or overridden) and connects to the first of its
/// addresses to answer, all within `timeout` (if given).
pub(crate) fn connect_tcp(
    host: &str,
    port: u16,
    overrides: &Overrides,
    timeout: Option<Duration>,
) -> Result<TcpStream, Error> {
    let deadline = crate::stream::deadline_in(timeout);
    let addrs = addresses(host, port, overrides, deadline)?;
    let tcp = race(interleave(addrs), deadline).map_err(|e| match e {
        RaceError::TimedOut => Error::Timeout(Phase::Connect),
        RaceError::Failed(last) => all_failed(host, port, last),
    })?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// Why no address answered.
enum RaceError {
    TimedOut,
    Failed(Option<io::Error>),
}

/// Connects to `addrs` in order, starting the next attempt when the previous one fails or
/// after [`ATTEMPT_DELAY`], whichever comes first; the first connection made wins. A single
/// address is tried on this thread; with more, each attempt runs on a thread of its own, and
/// the losers close their sockets when they finish (at the deadline, or without one when the
/// system gives up on them).
fn race(addrs: Vec<SocketAddr>, deadline: Option<Instant>) -> Result<TcpStream, RaceError> {
    let left = |deadline: Instant| deadline.saturating_duration_since(Instant::now());
    let attempt = move |addr: SocketAddr| match deadline {
        Some(d) if left(d).is_zero() => Err(io::Error::from(io::ErrorKind::TimedOut)),
        Some(d) => connect_by(addr, d),
        None => TcpStream::connect(addr),
    };
    let timed_out = || deadline.is_some_and(|d| left(d).is_zero());
    if addrs.is_empty() {
        return Err(RaceError::Failed(None));
    }
    if let [addr] = addrs[..] {
        return attempt(addr).map_err(|e| {
            if timed_out() {
                RaceError::TimedOut
            } else {
                RaceError::Failed(Some(e))
            }
        });
    }
    let (tx, rx) = mpsc::channel::<io::Result<TcpStream>>();
    let mut next = addrs.into_iter();
    let mut running = 0usize;
    let mut start_next = |running: &mut usize| -> bool {
        let Some(addr) = next.next() else {
            return false;
        };
        let thread_tx = tx.clone();
        let spawned = std::thread::Builder::new()
            .name("wsc-connect".into())
            .spawn(move || {
                // The receiver is gone once another attempt won: the stream is then dropped.
                let _ = thread_tx.send(attempt(addr));
            });
        match spawned {
            Ok(_) => *running += 1,
            Err(_) => {
                // No thread for this attempt: count it as failed rather than give up.
                let _ = tx.send(Err(io::Error::other("cannot start a connect thread")));
                *running += 1;
            }
        }
        true
    };
    start_next(&mut running);
    loop {
        let mut wait = ATTEMPT_DELAY;
        if let Some(d) = deadline {
            wait = wait.min(left(d));
        }
        match rx.recv_timeout(wait) {
            Ok(Ok(tcp)) => return Ok(tcp),
            Ok(Err(e)) => {
                running -= 1;
                if !start_next(&mut running) && running == 0 {
                    return Err(if timed_out() {
                        RaceError::TimedOut
                    } else {
                        RaceError::Failed(Some(e))
                    });
                }
            }
            Err(_) if timed_out() => return Err(RaceError::TimedOut),
            Err(_) => {
                // The delay passed with the attempts still pending: start another beside them.
                start_next(&mut running);
            }
        }
    }
}

/// Connects to `addr` by `deadline`. On Linux, a blocking `connect` gives up when the socket's
/// send timeout expires, so the attempt is one system call between setting and clearing that
/// timeout, and a connection the kernel can make at once (loopback, a near host) is made
/// inside it; std's `connect_timeout` costs a non-blocking connect, a poll and two mode
/// switches (connect + close, loopback: about 4% more connections per second this way).
#[cfg(target_os = "linux")]
fn connect_by(addr: SocketAddr, deadline: Instant) -> io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    let target = addr.into();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::from(io::ErrorKind::TimedOut));
        }
        // At least a microsecond: a timeout that rounds to zero would mean none at all.
        socket.set_write_timeout(Some(left.max(Duration::from_micros(1))))?;
        match socket.connect(&target) {
            Ok(()) => break,
            // The timeout expired (EINPROGRESS the first time, EALREADY after a retry), or a
            // signal interrupted the wait: the handshake goes on, and connecting again waits
            // for it (or reports how it failed) until the deadline.
            Err(e)
                if e.kind() == io::ErrorKind::Interrupted
                    || matches!(e.raw_os_error(), Some(libc::EINPROGRESS | libc::EALREADY)) => {}
            // Connected while interrupted.
            Err(e) if e.raw_os_error() == Some(libc::EISCONN) => break,
            Err(e) => return Err(e),
        }
    }
    // Writes get the caller's write timeout, if any, later; none until then.
    socket.set_write_timeout(None)?;
    Ok(socket.into())
}

/// Connects to `addr` by `deadline` (non-blocking connect and poll).
#[cfg(not(target_os = "linux"))]
fn connect_by(addr: SocketAddr, deadline: Instant) -> io::Result<TcpStream> {
    TcpStream::connect_timeout(&addr, deadline.saturating_duration_since(Instant::now()))
}

/// Resolves `host` with the system resolver, within the deadline. The resolver call cannot be
/// interrupted, so it runs on its own thread, which is left to finish in the background if
/// the deadline passes first.
pub(crate) fn resolve(
    host: &str,
    port: u16,
    deadline: Option<Instant>,
) -> Result<Vec<SocketAddr>, Error> {
    let dns_error = |source| Error::Dns {
        host: host.to_string(),
        source,
    };
    let Some(deadline) = deadline else {
        return Ok((host, port).to_socket_addrs().map_err(dns_error)?.collect());
    };
    let (tx, rx) = mpsc::channel();
    let name = host.to_string();
    std::thread::Builder::new()
        .name("wsc-resolve".into())
        .spawn(move || {
            let result: io::Result<Vec<SocketAddr>> = (name.as_str(), port)
                .to_socket_addrs()
                .map(Iterator::collect);
            let _ = tx.send(result);
        })
        .map_err(Error::Io)?;
    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(result) => result.map_err(dns_error),
        Err(_) => Err(Error::Timeout(Phase::Connect)),
    }
}

/// The async counterpart: resolution on tokio's blocking pool, attempts raced as futures.
#[cfg(feature = "tokio")]
pub(crate) mod tokio {
    use std::future::{poll_fn, Future};
    use std::io;
    use std::net::{IpAddr, SocketAddr};
    use std::pin::Pin;
    use std::task::Poll;

    use ::tokio::net::TcpStream;
    use ::tokio::time::{sleep, Instant};

    use super::{all_failed, interleave, overridden, Overrides, ATTEMPT_DELAY};
    use crate::error::Error;

    type Attempt = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

    /// The addresses of `host`, as [`super::addresses`], resolved on tokio's blocking pool.
    /// The caller bounds it.
    pub(crate) async fn addresses(
        host: &str,
        port: u16,
        overrides: &Overrides,
    ) -> Result<Vec<SocketAddr>, Error> {
        match (host.parse::<IpAddr>(), overridden(overrides, host, port)) {
            (Ok(ip), _) => Ok(vec![SocketAddr::new(ip, port)]),
            (Err(_), Some(addrs)) => Ok(addrs),
            (Err(_), None) => Ok(::tokio::net::lookup_host((host, port))
                .await
                .map_err(|source| Error::Dns {
                    host: host.to_string(),
                    source,
                })?
                .collect()),
        }
    }

    /// Resolves `host` (unless it is an IP literal or overridden) and races connections to
    /// its addresses. The caller bounds it with the connect timeout.
    pub(crate) async fn connect_tcp(
        host: &str,
        port: u16,
        overrides: &Overrides,
    ) -> Result<TcpStream, Error> {
        let addrs = addresses(host, port, overrides).await?;
        let tcp = race(interleave(addrs))
            .await
            .map_err(|last| all_failed(host, port, last))?;
        tcp.set_nodelay(true)?;
        Ok(tcp)
    }

    /// Connects to `addrs` in order, starting the next attempt when the previous one fails
    /// or after [`ATTEMPT_DELAY`]; the first connection made wins and the others are dropped.
    async fn race(addrs: Vec<SocketAddr>) -> Result<TcpStream, Option<io::Error>> {
        if let [addr] = addrs[..] {
            return TcpStream::connect(addr).await.map_err(Some);
        }
        let mut next = addrs.into_iter();
        let mut pending: Vec<Attempt> = Vec::new();
        let mut last = None;
        let mut timer = Box::pin(sleep(ATTEMPT_DELAY));
        poll_fn(|cx| loop {
            let due = pending.is_empty() || timer.as_mut().poll(cx).is_ready();
            if due {
                if let Some(addr) = next.next() {
                    pending.push(Box::pin(TcpStream::connect(addr)));
                    timer.as_mut().reset(Instant::now() + ATTEMPT_DELAY);
                    continue;
                }
                if pending.is_empty() {
                    return Poll::Ready(Err(last.take()));
                }
            }
            let mut failed = false;
            let mut i = 0;
            while i < pending.len() {
                match pending[i].as_mut().poll(cx) {
                    Poll::Ready(Ok(tcp)) => return Poll::Ready(Ok(tcp)),
                    Poll::Ready(Err(e)) => {
                        last = Some(e);
                        drop(pending.swap_remove(i));
                        failed = true;
                    }
                    Poll::Pending => i += 1,
                }
            }
            if failed {
                // A failure starts the next attempt at once (RFC 8305 section 5).
                if let Some(addr) = next.next() {
                    pending.push(Box::pin(TcpStream::connect(addr)));
                    timer.as_mut().reset(Instant::now() + ATTEMPT_DELAY);
                }
                continue;
            }
            return Poll::Pending;
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn interleave_alternates_families_starting_with_the_first() {
        let got = interleave(vec![
            a("[::1]:1"),
            a("[::2]:1"),
            a("[::3]:1"),
            a("10.0.0.1:1"),
            a("[::1]:1"),
        ]);
        assert_eq!(
            got,
            vec![a("[::1]:1"), a("10.0.0.1:1"), a("[::2]:1"), a("[::3]:1")]
        );
        let got = interleave(vec![a("10.0.0.1:1"), a("10.0.0.2:1"), a("[::1]:1")]);
        assert_eq!(got, vec![a("10.0.0.1:1"), a("[::1]:1"), a("10.0.0.2:1")]);
        assert!(interleave(Vec::new()).is_empty());
    }

    #[test]
    fn overrides_match_names_case_insensitively_and_keep_the_port() {
        let overrides: Overrides = vec![("Feed.Example".into(), vec!["::1".parse().unwrap()])];
        assert_eq!(
            overridden(&overrides, "feed.example", 443),
            Some(vec![a("[::1]:443")])
        );
        assert_eq!(overridden(&overrides, "other.example", 443), None);
    }

    #[test]
    fn overrides_match_a_name_with_or_without_its_root_dot_and_the_last_one_wins() {
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        let v6: IpAddr = "::1".parse().unwrap();
        let overrides: Overrides = vec![
            ("feed.example.".into(), vec![v6]),
            ("FEED.example".into(), vec![v4]),
        ];
        for host in ["feed.example", "feed.example."] {
            assert_eq!(
                overridden(&overrides, host, 80),
                Some(vec![SocketAddr::new(v4, 80)]),
                "{host}"
            );
        }
    }
}
