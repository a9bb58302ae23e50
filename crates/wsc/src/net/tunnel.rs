//! Opening a tunnel through a proxy on a TCP connection to it: the blocking and tokio
//! drivers. The protocol decisions are made by [`Negotiation`] (over the sans-I/O
//! [`super::http_connect`] and [`super::socks5`] modules); the drivers
//! only resolve names, move bytes and keep time.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::connect::{addresses, Overrides};
use super::http_connect::{self, MAX_HEAD};
use super::proxy::{host_port, Proxy, ProxyError, ProxyKind};
use super::socks5::{Socks5, Step};
use crate::error::{Error, Phase};

/// The most read at once while waiting for an HTTP proxy's answer. Reading more than the head
/// is harmless: the server cannot speak before the client, so any byte after the head is an
/// error anyway.
const READ_CHUNK: usize = 1024;

/// What the driver does next.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Read up to [`Negotiation::read_limit`] bytes.
    Read,
    /// Send these bytes, then read.
    Send(Vec<u8>),
    /// The tunnel is open.
    Done,
}

/// A tunnel negotiation in progress, whatever the proxy's kind: the part of the drivers that
/// thinks.
#[derive(Debug)]
enum Negotiation {
    /// Waiting for the answer to CONNECT.
    Http {
        /// `host:port`, for errors.
        target: String,
        /// The answer so far (at most [`MAX_HEAD`] bytes).
        received: Vec<u8>,
    },
    /// A SOCKS5 exchange.
    Socks5(Socks5),
}

impl Negotiation {
    /// Starts a negotiation for a tunnel to `host:port` (`resolved`: the address looked up
    /// locally for `socks5://`), with the first bytes to send.
    fn start(
        proxy: &Proxy,
        host: &str,
        port: u16,
        resolved: Option<IpAddr>,
    ) -> Result<(Negotiation, Vec<u8>), ProxyError> {
        match proxy.kind() {
            ProxyKind::Http => Ok((
                Negotiation::Http {
                    target: host_port(host, port),
                    received: Vec::new(),
                },
                http_connect::request(host, port, proxy.auth()),
            )),
            ProxyKind::Socks5 => {
                let socks = Socks5::new(host, port, resolved, proxy.auth())?;
                let greeting = socks.greeting();
                Ok((Negotiation::Socks5(socks), greeting))
            }
        }
    }

    /// The most bytes to read next: for SOCKS5 exactly what the current message lacks, so
    /// that nothing after the final reply is consumed.
    fn read_limit(&self) -> usize {
        match self {
            Negotiation::Http { received, .. } => READ_CHUNK
                .min(MAX_HEAD.saturating_sub(received.len()))
                .max(1),
            Negotiation::Socks5(socks) => socks.needed().max(1),
        }
    }

    /// The proxy closed the connection before the tunnel was open: right after our SOCKS5
    /// credentials, that is how some proxies reject them.
    fn closed_early(&self) -> ProxyError {
        match self {
            Negotiation::Socks5(socks) if socks.awaits_auth_answer() => {
                ProxyError::ClosedAfterCredentials
            }
            _ => ProxyError::ClosedEarly,
        }
    }

    /// Takes bytes read from the proxy (at most [`Negotiation::read_limit`]).
    fn receive(&mut self, data: &[u8]) -> Result<Next, ProxyError> {
        match self {
            Negotiation::Http { target, received } => {
                received.extend_from_slice(data);
                match http_connect::parse_response(received, target)? {
                    None => Ok(Next::Read),
                    Some(head) if head < received.len() => Err(ProxyError::BadResponse(format!(
                        "{} bytes arrived after the proxy's 200 answer, before anything was \
                         sent through the tunnel",
                        received.len() - head
                    ))),
                    Some(_) => Ok(Next::Done),
                }
            }
            Negotiation::Socks5(socks) => {
                let (used, step) = socks.receive(data)?;
                if used < data.len() {
                    return Err(ProxyError::BadResponse(
                        "the SOCKS5 proxy sent more than its reply".into(),
                    ));
                }
                Ok(match step {
                    Step::NeedMore => Next::Read,
                    Step::Send(bytes) => Next::Send(bytes),
                    Step::Done => Next::Done,
                })
            }
        }
    }
}

/// Whether the server's name must be resolved here: SOCKS5 without remote DNS
/// (`socks5://`), for a host that is not already an address.
fn resolves_locally(proxy: &Proxy, host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    proxy.kind() == ProxyKind::Socks5 && !proxy.is_remote_dns() && bare.parse::<IpAddr>().is_err()
}

/// The error for a name that resolved to nothing.
fn no_addresses(host: &str) -> Error {
    Error::Dns {
        host: host.to_string(),
        source: io::Error::new(io::ErrorKind::NotFound, "the host has no addresses"),
    }
}

/// Wraps a protocol failure with the proxy's name (never its credentials).
fn proxy_error(proxy: &Proxy) -> impl Fn(ProxyError) -> Error + '_ {
    move |error| Error::Proxy {
        proxy: proxy.display_name(),
        error,
    }
}

/// The addresses to ask the proxy for, one per attempt: those of the server's name when it
/// was resolved here (`resolved`, for `socks5://`; without repeats, in the resolver's
/// order), else a single `None` (the proxy gets the name, or the address as given).
fn targets(host: &str, resolved: Option<Vec<SocketAddr>>) -> Result<Vec<Option<IpAddr>>, Error> {
    let Some(addrs) = resolved else {
        return Ok(vec![None]);
    };
    let mut ips = Vec::with_capacity(addrs.len());
    for addr in addrs {
        if !ips.contains(&Some(addr.ip())) {
            ips.push(Some(addr.ip()));
        }
    }
    if ips.is_empty() {
        return Err(no_addresses(host));
    }
    Ok(ips)
}

/// Whether the proxy said it could not reach the address asked for: another address of the
/// same name may still work. Any reply but "command not supported" (7) may be about the
/// address: proxies answer a refused connection with "general failure" (1), rule sets and
/// "address type not supported" (8) may hold for IPv6 only. Other failures (credentials, a
/// malformed answer, a hang-up) are the proxy's and would recur.
fn address_failed(e: &Error) -> bool {
    matches!(
        e,
        Error::Proxy {
            error: ProxyError::Socks5Reply { code, .. },
            ..
        } if *code != 0x07
    )
}

/// Opens a tunnel to `host:port` (an IPv6 literal without brackets) through `proxy`, over
/// `tcp`, a connection already made to the proxy; everything ends by `deadline`. On success
/// `tcp` carries the server's bytes, none of them consumed, and its read and write timeouts
/// are `None` (also after a failure).
///
/// With `socks5://` the server's name is resolved here and each of its addresses is asked
/// for in turn until one opens (localhost may be `::1` and `127.0.0.1`, and the server may
/// listen on one only); the proxy ends the connection after a failed CONNECT (RFC 1928
/// section 6), so each further address goes over a new one from `redial`, which gets the
/// time left. The last address's failure is reported.
pub(crate) fn open_blocking(
    tcp: &mut TcpStream,
    proxy: &Proxy,
    (host, port): (&str, u16),
    overrides: &Overrides,
    deadline: Option<Instant>,
    mut redial: impl FnMut(Option<Duration>) -> Result<TcpStream, Error>,
) -> Result<(), Error> {
    let resolved = match resolves_locally(proxy, host) {
        true => Some(
            addresses(host, port, overrides, deadline).map_err(|e| match e {
                Error::Timeout(_) => Error::Timeout(Phase::Proxy),
                other => other,
            })?,
        ),
        false => None,
    };
    let mut last = None;
    for (i, ip) in targets(host, resolved)?.into_iter().enumerate() {
        if i > 0 {
            let left = time_left(deadline)?;
            *tcp = redial(left).map_err(|e| match time_left(deadline) {
                Err(timeout) => timeout,
                Ok(_) => e,
            })?;
        }
        match attempt_blocking(tcp, proxy, (host, port), ip, deadline) {
            Err(e) if address_failed(&e) => last = Some(e),
            done => return done,
        }
    }
    Err(last.unwrap_or_else(|| no_addresses(host)))
}

/// One negotiation for `resolved` (or the name), restoring the stream's timeouts after.
fn attempt_blocking(
    tcp: &mut TcpStream,
    proxy: &Proxy,
    (host, port): (&str, u16),
    resolved: Option<IpAddr>,
    deadline: Option<Instant>,
) -> Result<(), Error> {
    let result = negotiate_blocking(tcp, proxy, host, port, resolved, deadline);
    let restored = tcp
        .set_read_timeout(None)
        .and_then(|()| tcp.set_write_timeout(None));
    result?;
    restored.map_err(Error::Io)
}

/// The blocking driver's loop, without the timeout restoration.
fn negotiate_blocking(
    tcp: &mut TcpStream,
    proxy: &Proxy,
    host: &str,
    port: u16,
    resolved: Option<IpAddr>,
    deadline: Option<Instant>,
) -> Result<(), Error> {
    let (mut negotiation, first) =
        Negotiation::start(proxy, host, port, resolved).map_err(proxy_error(proxy))?;
    send_blocking(tcp, &first, deadline)?;
    let mut scratch = vec![0u8; READ_CHUNK];
    loop {
        let limit = negotiation.read_limit().min(scratch.len());
        tcp.set_read_timeout(time_left(deadline)?)?;
        let n = match tcp.read(&mut scratch[..limit]) {
            Ok(0) => return Err(proxy_error(proxy)(negotiation.closed_early())),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error(e)),
        };
        match negotiation
            .receive(&scratch[..n])
            .map_err(proxy_error(proxy))?
        {
            Next::Read => {}
            Next::Send(bytes) => send_blocking(tcp, &bytes, deadline)?,
            Next::Done => return Ok(()),
        }
    }
}

/// Writes all of `bytes` by the deadline.
fn send_blocking(
    tcp: &mut TcpStream,
    bytes: &[u8],
    deadline: Option<Instant>,
) -> Result<(), Error> {
    tcp.set_write_timeout(time_left(deadline)?)?;
    tcp.write_all(bytes).map_err(io_error)?;
    tcp.flush().map_err(io_error)
}

/// The time left before the deadline (`None`: no deadline); none left is a timeout. (A zero
/// duration must not reach `set_read_timeout`, which rejects it.)
fn time_left(deadline: Option<Instant>) -> Result<Option<Duration>, Error> {
    match deadline {
        None => Ok(None),
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                Err(Error::Timeout(Phase::Proxy))
            } else {
                Ok(Some(left))
            }
        }
    }
}

/// An I/O error during the negotiation: socket timeouts mean the deadline passed.
fn io_error(e: io::Error) -> Error {
    if crate::stream::is_timeout(&e) {
        Error::Timeout(Phase::Proxy)
    } else {
        Error::Io(e)
    }
}

/// The async driver: opens a tunnel to `host:port` through `proxy` over `stream`, a
/// connection already made to the proxy, trying each address of the name in turn for
/// `socks5://` (each further one over a new connection from `redial`), as
/// [`open_blocking`]. It sets no timeouts: the caller bounds the whole future (and maps the
/// expiry to [`Phase::Proxy`]). On success the stream carries the server's bytes, none of
/// them consumed. Only small state (a `Vec` buffer, the negotiation) lives across the
/// awaits.
#[cfg(feature = "tokio")]
pub(crate) async fn open_async<S, F>(
    stream: &mut S,
    proxy: &Proxy,
    (host, port): (&str, u16),
    overrides: &Overrides,
    mut redial: impl FnMut() -> F,
) -> Result<(), Error>
where
    S: ::tokio::io::AsyncRead + ::tokio::io::AsyncWrite + Unpin,
    F: std::future::Future<Output = Result<S, Error>>,
{
    let resolved = match resolves_locally(proxy, host) {
        true => Some(super::connect::tokio::addresses(host, port, overrides).await?),
        false => None,
    };
    let mut last = None;
    for (i, ip) in targets(host, resolved)?.into_iter().enumerate() {
        if i > 0 {
            *stream = redial().await?;
        }
        match attempt_async(stream, proxy, (host, port), ip).await {
            Err(e) if address_failed(&e) => last = Some(e),
            done => return done,
        }
    }
    Err(last.unwrap_or_else(|| no_addresses(host)))
}

/// One async negotiation for `resolved` (or the name).
#[cfg(feature = "tokio")]
async fn attempt_async<S>(
    stream: &mut S,
    proxy: &Proxy,
    (host, port): (&str, u16),
    resolved: Option<IpAddr>,
) -> Result<(), Error>
where
    S: ::tokio::io::AsyncRead + ::tokio::io::AsyncWrite + Unpin,
{
    use ::tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (mut negotiation, first) =
        Negotiation::start(proxy, host, port, resolved).map_err(proxy_error(proxy))?;
    stream.write_all(&first).await?;
    stream.flush().await?;
    let mut scratch = vec![0u8; READ_CHUNK];
    loop {
        let limit = negotiation.read_limit().min(scratch.len());
        let n = stream.read(&mut scratch[..limit]).await?;
        if n == 0 {
            return Err(proxy_error(proxy)(negotiation.closed_early()));
        }
        match negotiation
            .receive(&scratch[..n])
            .map_err(proxy_error(proxy))?
        {
            Next::Read => {}
            Next::Send(bytes) => {
                stream.write_all(&bytes).await?;
                stream.flush().await?;
            }
            Next::Done => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread::JoinHandle;

    /// A one-connection fake proxy on loopback running `script` on the accepted socket.
    fn fake_proxy(script: impl FnOnce(TcpStream) + Send + 'static) -> (SocketAddr, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let handle = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().expect("accept");
            tcp.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            script(tcp);
        });
        (addr, handle)
    }

    /// Reads an HTTP request head (up to the blank line).
    fn read_head(tcp: &mut TcpStream) -> Vec<u8> {
        let mut head = Vec::new();
        let mut byte = [0u8];
        while !head.ends_with(b"\r\n\r\n") {
            tcp.read_exact(&mut byte).expect("request head");
            head.push(byte[0]);
        }
        head
    }

    fn read_n(tcp: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        tcp.read_exact(&mut buf).expect("read from client");
        buf
    }

    /// For a single attempt: a second connection to the proxy is a bug.
    fn no_redial(_: Option<Duration>) -> Result<TcpStream, Error> {
        panic!("no second connection to the proxy expected")
    }

    #[cfg(feature = "tokio")]
    async fn no_redial_async() -> Result<::tokio::net::TcpStream, Error> {
        panic!("no second connection to the proxy expected")
    }

    fn soon() -> Option<Instant> {
        Some(Instant::now() + Duration::from_secs(10))
    }

    fn proxy_err(result: Result<(), Error>) -> ProxyError {
        match result {
            Err(Error::Proxy { error, .. }) => error,
            other => panic!("expected a proxy error, got {other:?}"),
        }
    }

    #[test]
    fn http_connect_success_leaves_the_stream_to_the_server() {
        let (addr, proxy_thread) = fake_proxy(|mut tcp| {
            assert_eq!(
                read_head(&mut tcp),
                b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\
                  Proxy-Authorization: Basic dTpw\r\n\r\n"
            );
            tcp.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .unwrap();
            // The client speaks first through the tunnel; echo it back.
            let hello = read_n(&mut tcp, 5);
            tcp.write_all(&hello).unwrap();
        });
        let proxy = Proxy::http("127.0.0.1", addr.port()).credentials("u", "p");
        let mut tcp = TcpStream::connect(addr).unwrap();
        open_blocking(
            &mut tcp,
            &proxy,
            ("example.com", 443),
            &Vec::new(),
            soon(),
            no_redial,
        )
        .unwrap();
        assert_eq!(tcp.read_timeout().unwrap(), None);
        assert_eq!(tcp.write_timeout().unwrap(), None);
        tcp.write_all(b"hello").unwrap();
        assert_eq!(read_n(&mut tcp, 5), b"hello");
        proxy_thread.join().unwrap();
    }

    #[test]
    fn http_connect_refused_reports_the_status() {
        let (addr, proxy_thread) = fake_proxy(|mut tcp| {
            read_head(&mut tcp);
            tcp.write_all(
                b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 4\r\n\r\nnope",
            )
            .unwrap();
        });
        let proxy = Proxy::http("127.0.0.1", addr.port());
        let mut tcp = TcpStream::connect(addr).unwrap();
        let result = open_blocking(
            &mut tcp,
            &proxy,
            ("::1", 8080),
            &Vec::new(),
            soon(),
            no_redial,
        );
        let message = result.as_ref().map_err(ToString::to_string).unwrap_err();
        assert!(
            message.starts_with(&format!(
                "proxy http://127.0.0.1:{}: refused the tunnel to [::1]:8080 with 407",
                addr.port()
            )),
            "{message}"
        );
        assert!(matches!(
            proxy_err(result),
            ProxyError::HttpStatus { status: 407, .. }
        ));
        proxy_thread.join().unwrap();
    }

    /// Opens a tunnel through `proxy`, listening at `addr`, to `h:80`.
    fn open_to_h(proxy: &Proxy, addr: SocketAddr, deadline: Option<Instant>) -> Result<(), Error> {
        let mut tcp = TcpStream::connect(addr).unwrap();
        open_blocking(&mut tcp, proxy, ("h", 80), &Vec::new(), deadline, no_redial)
    }

    #[test]
    fn bytes_after_the_200_are_a_bad_response() {
        let (addr, proxy_thread) = fake_proxy(|mut tcp| {
            read_head(&mut tcp);
            tcp.write_all(b"HTTP/1.1 200 OK\r\n\r\nSURPRISE").unwrap();
        });
        let proxy = Proxy::http("127.0.0.1", addr.port());
        let error = proxy_err(open_to_h(&proxy, addr, soon()));
        assert!(
            matches!(&error, ProxyError::BadResponse(m) if m.contains("8 bytes")),
            "{error}"
        );
        proxy_thread.join().unwrap();
    }

    #[test]
    fn a_silent_proxy_times_out_in_the_proxy_phase() {
        let (addr, proxy_thread) = fake_proxy(|mut tcp| {
            read_head(&mut tcp);
            // Say nothing until the client gives up and closes.
            let mut rest = Vec::new();
            let _ = tcp.read_to_end(&mut rest);
        });
        let proxy = Proxy::http("127.0.0.1", addr.port());
        let mut tcp = TcpStream::connect(addr).unwrap();
        let started = Instant::now();
        let deadline = Some(started + Duration::from_millis(200));
        let result = open_blocking(
            &mut tcp,
            &proxy,
            ("h", 80),
            &Vec::new(),
            deadline,
            no_redial,
        );
        assert!(
            matches!(result, Err(Error::Timeout(Phase::Proxy))),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(tcp.read_timeout().unwrap(), None);
        drop(tcp);
        proxy_thread.join().unwrap();
    }

    #[test]
    fn a_proxy_that_hangs_up_closed_early() {
        let (addr, proxy_thread) = fake_proxy(|mut tcp| {
            read_head(&mut tcp);
        });
        let proxy = Proxy::http("127.0.0.1", addr.port());
        let error = proxy_err(open_to_h(&proxy, addr, None));
        assert_eq!(error, ProxyError::ClosedEarly);
        proxy_thread.join().unwrap();
    }

    #[test]
    fn a_socks5_proxy_hanging_up_on_our_credentials_is_said_to_have_likely_rejected_them() {
        // As pproxy does, instead of RFC 1929's failure status.
        let (addr, proxy_thread) = fake_proxy(|mut tcp| {
            assert_eq!(read_n(&mut tcp, 4), [5, 2, 0, 2]);
            tcp.write_all(&[5, 2]).unwrap();
            assert_eq!(read_n(&mut tcp, 10), b"\x01\x04user\x03bad");
        });
        let proxy = Proxy::socks5("127.0.0.1", addr.port()).credentials("user", "bad");
        let error = proxy_err(open_to_h(&proxy, addr, soon()));
        assert_eq!(error, ProxyError::ClosedAfterCredentials);
        assert!(error.to_string().contains("likely rejected"), "{error}");
        proxy_thread.join().unwrap();
    }

    /// A SOCKS5 proxy expecting user/password and a CONNECT to `expected_target` (the bytes
    /// after ATYP's predecessor), answering with `reply` plus server bytes in one write.
    fn socks5_script(
        expected_target: Vec<u8>,
        reply: Vec<u8>,
    ) -> impl FnOnce(TcpStream) + Send + 'static {
        move |mut tcp| {
            assert_eq!(read_n(&mut tcp, 4), [5, 2, 0, 2]);
            tcp.write_all(&[5, 2]).unwrap();
            assert_eq!(read_n(&mut tcp, 9), b"\x01\x04user\x02pw");
            tcp.write_all(&[1, 0]).unwrap();
            assert_eq!(read_n(&mut tcp, 3), [5, 1, 0]);
            assert_eq!(read_n(&mut tcp, expected_target.len()), expected_target);
            tcp.write_all(&reply).unwrap();
            let _ = read_n(&mut tcp, 1);
        }
    }

    #[test]
    fn socks5_with_credentials_reads_exactly_the_reply() {
        let mut target = vec![3, 11];
        target.extend_from_slice(b"example.com");
        target.extend_from_slice(&443u16.to_be_bytes());
        // The reply (domain bound address) and the server's first bytes in one segment.
        let mut reply = vec![5, 0, 0, 3, 4];
        reply.extend_from_slice(b"bind\x00\x50SERVER");
        let (addr, proxy_thread) = fake_proxy(socks5_script(target, reply));
        let proxy = Proxy::socks5("127.0.0.1", addr.port()).credentials("user", "pw");
        let mut tcp = TcpStream::connect(addr).unwrap();
        open_blocking(
            &mut tcp,
            &proxy,
            ("example.com", 443),
            &Vec::new(),
            soon(),
            no_redial,
        )
        .unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(read_n(&mut tcp, 6), b"SERVER");
        tcp.write_all(b"x").unwrap();
        proxy_thread.join().unwrap();
    }

    /// A fake SOCKS5 proxy (no authentication) expecting a CONNECT to `ip`:80 and answering
    /// it with `code`.
    fn socks5_answering(ip: IpAddr, code: u8) -> impl FnOnce(TcpStream) + Send + 'static {
        move |mut tcp| {
            assert_eq!(read_n(&mut tcp, 3), [5, 1, 0]);
            tcp.write_all(&[5, 0]).unwrap();
            let (atyp, octets) = match ip {
                IpAddr::V4(v4) => (1, v4.octets().to_vec()),
                IpAddr::V6(v6) => (4, v6.octets().to_vec()),
            };
            assert_eq!(read_n(&mut tcp, 4), [5, 1, 0, atyp]);
            assert_eq!(read_n(&mut tcp, octets.len()), octets);
            assert_eq!(read_n(&mut tcp, 2), [0, 80]);
            tcp.write_all(&[5, code, 0, 1, 0, 0, 0, 0, 0, 0]).unwrap();
        }
    }

    fn two_addresses() -> (Overrides, [IpAddr; 2]) {
        let ips = [
            IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            IpAddr::from(std::net::Ipv4Addr::LOCALHOST),
        ];
        (vec![("two.test".to_string(), ips.to_vec())], ips)
    }

    #[test]
    fn only_replies_that_may_be_about_the_address_move_on_to_the_next() {
        let reply = |code| Error::Proxy {
            proxy: "socks5://127.0.0.1:1080".into(),
            error: ProxyError::Socks5Reply {
                target: "localhost:80 (::1)".into(),
                code,
            },
        };
        for code in [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x08] {
            assert!(address_failed(&reply(code)), "{code:#04x}");
        }
        assert!(!address_failed(&reply(0x07)));
        let hang_up = Error::Proxy {
            proxy: "socks5://127.0.0.1:1080".into(),
            error: ProxyError::ClosedEarly,
        };
        assert!(!address_failed(&hang_up));
    }

    #[test]
    fn socks5_local_dns_asks_for_the_next_address_over_a_new_connection() {
        let (overrides, [v6, v4]) = two_addresses();
        let (first, first_thread) = fake_proxy(socks5_answering(v6, 4));
        let (second, second_thread) = fake_proxy(socks5_answering(v4, 0));
        let proxy = Proxy::socks5("127.0.0.1", first.port()).remote_dns(false);
        let mut tcp = TcpStream::connect(first).unwrap();
        let mut redials = 0;
        open_blocking(
            &mut tcp,
            &proxy,
            ("two.test", 80),
            &overrides,
            soon(),
            |left| {
                redials += 1;
                assert!(
                    left.is_some_and(|l| l <= Duration::from_secs(10)),
                    "{left:?}"
                );
                Ok(TcpStream::connect(second).unwrap())
            },
        )
        .unwrap();
        assert_eq!(redials, 1);
        assert_eq!(tcp.peer_addr().unwrap(), second);
        first_thread.join().unwrap();
        second_thread.join().unwrap();
    }

    #[test]
    fn socks5_next_address_is_bounded_by_the_deadline() {
        let (overrides, [v6, _]) = two_addresses();
        let (first, first_thread) = fake_proxy(socks5_answering(v6, 4));
        let proxy = Proxy::socks5("127.0.0.1", first.port()).remote_dns(false);
        let mut tcp = TcpStream::connect(first).unwrap();
        let started = Instant::now();
        let deadline = Some(started + Duration::from_millis(300));
        // A redial that takes all the time it is given and fails.
        let result = open_blocking(
            &mut tcp,
            &proxy,
            ("two.test", 80),
            &overrides,
            deadline,
            |left| {
                let left = left.expect("a deadline was set");
                assert!(left <= Duration::from_millis(300), "{left:?}");
                std::thread::sleep(left);
                Err(Error::Timeout(Phase::Connect))
            },
        );
        assert!(
            matches!(result, Err(Error::Timeout(Phase::Proxy))),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        first_thread.join().unwrap();
    }

    #[test]
    fn socks5_local_dns_sends_an_address() {
        let (addr, proxy_thread) = fake_proxy(|mut tcp| {
            assert_eq!(read_n(&mut tcp, 3), [5, 1, 0]);
            tcp.write_all(&[5, 0]).unwrap();
            let head = read_n(&mut tcp, 4);
            let len = match head[3] {
                1 => 4,
                4 => 16,
                other => panic!("address type {other}"),
            };
            let addr = read_n(&mut tcp, len + 2);
            assert!(addr[..len].iter().any(|&b| b != 0));
            assert_eq!(&addr[len..], &[0, 80]);
            tcp.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).unwrap();
        });
        let proxy = Proxy::socks5("127.0.0.1", addr.port()).remote_dns(false);
        let mut tcp = TcpStream::connect(addr).unwrap();
        open_blocking(
            &mut tcp,
            &proxy,
            ("localhost", 80),
            &Vec::new(),
            soon(),
            no_redial,
        )
        .unwrap();
        proxy_thread.join().unwrap();
    }

    #[test]
    fn socks5_refusal_names_the_target() {
        let (addr, proxy_thread) = fake_proxy(|mut tcp| {
            read_n(&mut tcp, 3);
            tcp.write_all(&[5, 0]).unwrap();
            read_n(&mut tcp, 10);
            tcp.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).unwrap();
        });
        let proxy = Proxy::socks5("127.0.0.1", addr.port());
        let mut tcp = TcpStream::connect(addr).unwrap();
        let error = proxy_err(open_blocking(
            &mut tcp,
            &proxy,
            ("10.9.8.7", 9),
            &Vec::new(),
            soon(),
            no_redial,
        ));
        assert_eq!(
            error,
            ProxyError::Socks5Reply {
                target: "10.9.8.7:9".into(),
                code: 5
            }
        );
        proxy_thread.join().unwrap();
    }

    #[test]
    fn negotiation_bounds_http_reads() {
        let proxy = Proxy::http("p", 1);
        let (mut n, _) = Negotiation::start(&proxy, "h", 1, None).unwrap();
        assert_eq!(n.read_limit(), READ_CHUNK);
        // A head that never ends: one endless header line, in reads of at most the limit.
        let mut fed = b"HTTP/1.1 200 OK\r\nX-Endless: ".to_vec();
        assert_eq!(n.receive(&fed), Ok(Next::Read));
        let result = loop {
            let limit = n.read_limit();
            assert!(limit <= READ_CHUNK && fed.len() + limit <= MAX_HEAD);
            fed.resize(fed.len() + limit, b'a');
            match n.receive(&fed[fed.len() - limit..]) {
                Ok(Next::Read) => {}
                other => break other,
            }
        };
        assert_eq!(fed.len(), MAX_HEAD);
        assert!(matches!(result, Err(ProxyError::BadResponse(_))));
    }

    #[cfg(feature = "tokio")]
    #[tokio::test]
    async fn async_driver_http_and_socks5() {
        let (addr, proxy_thread) = fake_proxy(|mut tcp| {
            read_head(&mut tcp);
            tcp.write_all(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
        });
        let proxy = Proxy::http("127.0.0.1", addr.port());
        let mut tcp = ::tokio::net::TcpStream::connect(addr).await.unwrap();
        open_async(&mut tcp, &proxy, ("h", 80), &Vec::new(), no_redial_async)
            .await
            .unwrap();
        proxy_thread.join().unwrap();

        let mut target = vec![3, 11];
        target.extend_from_slice(b"example.com");
        target.extend_from_slice(&443u16.to_be_bytes());
        let mut reply = vec![5, 0, 0, 4];
        reply.extend_from_slice(&[0; 18]);
        reply.extend_from_slice(b"SERVER");
        let (addr, proxy_thread) = fake_proxy(socks5_script(target, reply));
        let proxy = Proxy::socks5("127.0.0.1", addr.port()).credentials("user", "pw");
        let mut tcp = ::tokio::net::TcpStream::connect(addr).await.unwrap();
        open_async(
            &mut tcp,
            &proxy,
            ("example.com", 443),
            &Vec::new(),
            no_redial_async,
        )
        .await
        .unwrap();
        let mut server = [0u8; 6];
        ::tokio::io::AsyncReadExt::read_exact(&mut tcp, &mut server)
            .await
            .unwrap();
        assert_eq!(&server, b"SERVER");
        ::tokio::io::AsyncWriteExt::write_all(&mut tcp, b"x")
            .await
            .unwrap();
        proxy_thread.join().unwrap();

        let (addr, proxy_thread) = fake_proxy(|mut tcp| {
            read_n(&mut tcp, 3);
            tcp.write_all(&[5, 0xFF]).unwrap();
        });
        let proxy = Proxy::socks5("127.0.0.1", addr.port());
        let mut tcp = ::tokio::net::TcpStream::connect(addr).await.unwrap();
        let error =
            proxy_err(open_async(&mut tcp, &proxy, ("h", 1), &Vec::new(), no_redial_async).await);
        assert_eq!(
            error,
            ProxyError::Socks5NoAcceptableAuth {
                offered_credentials: false
            }
        );
        proxy_thread.join().unwrap();
    }
}
