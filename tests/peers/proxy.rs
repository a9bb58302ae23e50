//! Proxies for tests: an HTTP CONNECT proxy and a SOCKS5 proxy written here (std threads,
//! 127.0.0.1 only), a proxy that accepts connections and never answers, and the third-party
//! `pproxy` (Python, from the project's venv).
//!
//! Each of our proxies counts the tunnels it opened and records what every client asked for
//! (the CONNECT target, the SOCKS5 address and its type, the credentials), so that a test can
//! prove its connection went through the proxy, and how.
//!
//! Shared by the test crates with `#[path = ".../tests/peers/proxy.rs"] mod proxy;`. Uses the
//! `base64` crate, a dependency of both `wsc` and `wsc-cli`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs,
};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// How long a proxy waits for a client's next bytes during a negotiation.
const NEGOTIATION_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a proxy waits for the server when it opens the connection to it.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(5);

/// The host of a tunnel's target, as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// An IPv4 address (SOCKS5 address type 0x01, or an IPv4 literal in a CONNECT).
    V4(Ipv4Addr),
    /// An IPv6 address (SOCKS5 address type 0x04, or `[v6]` in a CONNECT).
    V6(Ipv6Addr),
    /// A host name for the proxy to resolve (SOCKS5 address type 0x03, or a name in a
    /// CONNECT).
    Name(String),
}

impl Host {
    /// Parses the host part of a CONNECT authority (an IPv6 literal in brackets).
    fn from_authority_host(host: &str) -> Host {
        if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            if let Ok(ip) = v6.parse() {
                return Host::V6(ip);
            }
        }
        match host.parse::<Ipv4Addr>() {
            Ok(ip) => Host::V4(ip),
            Err(_) => Host::Name(host.to_string()),
        }
    }
}

/// What one client asked a proxy for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The target's host.
    pub host: Host,
    /// The target's port.
    pub port: u16,
    /// The user name and password the client presented (Basic for HTTP, whether accepted or
    /// not; RFC 1929 for SOCKS5, accepted: rejected ones end before the request).
    pub credentials: Option<(String, String)>,
}

/// What an HTTP proxy does with a CONNECT.
#[derive(Debug, Clone)]
pub enum HttpMode {
    /// Opens every tunnel.
    Open,
    /// Opens tunnels for clients presenting these Basic credentials, answers 407 with
    /// `Proxy-Authenticate` to the others.
    Auth { user: String, password: String },
    /// Refuses every CONNECT with this status and reason phrase.
    Refuse { status: u16, reason: String },
}

impl HttpMode {
    /// [`HttpMode::Auth`] from string slices.
    pub fn auth(user: &str, password: &str) -> HttpMode {
        HttpMode::Auth {
            user: user.into(),
            password: password.into(),
        }
    }

    /// [`HttpMode::Refuse`] from a status and a reason phrase.
    pub fn refuse(status: u16, reason: &str) -> HttpMode {
        HttpMode::Refuse {
            status,
            reason: reason.into(),
        }
    }
}

/// What a SOCKS5 proxy does with a client.
#[derive(Debug, Clone)]
pub enum SocksMode {
    /// No authentication (method 0x00).
    NoAuth,
    /// User name and password required (method 0x02); other credentials get RFC 1929 status
    /// 0x01 and the connection is closed.
    Auth { user: String, password: String },
    /// No authentication, and every CONNECT is answered with this reply code (never 0).
    Fail(u8),
    /// No authentication; a CONNECT to any other address (or a name) is answered with 0x04,
    /// host unreachable, without trying it: a target address the proxy cannot reach.
    ReachOnly(IpAddr),
}

impl SocksMode {
    /// [`SocksMode::Auth`] from string slices.
    pub fn auth(user: &str, password: &str) -> SocksMode {
        SocksMode::Auth {
            user: user.into(),
            password: password.into(),
        }
    }
}

/// The protocol a [`TestProxy`] speaks.
#[derive(Debug, Clone)]
enum Kind {
    Http(HttpMode),
    Socks5(SocksMode),
    /// Accepts connections, reads everything, never answers.
    Silent,
}

/// What a proxy shares with its threads.
#[derive(Default)]
struct State {
    /// Client connections accepted.
    connections: AtomicUsize,
    /// Tunnels opened (the proxy connected to the server and said so to the client).
    tunnels: Arc<AtomicUsize>,
    /// What the clients asked for, in order.
    requests: Mutex<Vec<Request>>,
    /// The credentials every client presented (SOCKS5: also those rejected before a
    /// request), in order.
    logins: Mutex<Vec<(String, String)>>,
    /// Host names the proxy resolves to fixed addresses instead of asking the resolver.
    hosts: Mutex<HashMap<String, IpAddr>>,
    /// Set when the proxy is dropped: the accept loop ends.
    stopped: AtomicBool,
}

/// A proxy of ours on 127.0.0.1, serving until dropped (tunnels already open stay open).
pub struct TestProxy {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl TestProxy {
    /// An HTTP CONNECT proxy.
    pub fn http(mode: HttpMode) -> TestProxy {
        TestProxy::start(Kind::Http(mode))
    }

    /// A SOCKS5 proxy.
    pub fn socks5(mode: SocksMode) -> TestProxy {
        TestProxy::start(Kind::Socks5(mode))
    }

    /// A proxy that accepts TCP connections and never answers (it reads and drops what the
    /// client sends, until the client closes).
    pub fn silent() -> TestProxy {
        TestProxy::start(Kind::Silent)
    }

    fn start(kind: Kind) -> TestProxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the test proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let state = Arc::new(State::default());
        let shared = state.clone();
        thread::Builder::new()
            .name("test-proxy".into())
            .spawn(move || {
                for tcp in listener.incoming() {
                    if shared.stopped.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(tcp) = tcp else { continue };
                    shared.connections.fetch_add(1, Ordering::SeqCst);
                    let kind = kind.clone();
                    let state = shared.clone();
                    thread::spawn(move || {
                        let _ = serve(tcp, &kind, &state);
                    });
                }
            })
            .expect("start the proxy thread");
        TestProxy { addr, state }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:port`, `socks5://...`: the proxy's URL with `scheme`.
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.addr)
    }

    /// The tunnel counter, shared with the proxy's threads.
    pub fn tunnel_counter(&self) -> Arc<AtomicUsize> {
        self.state.tunnels.clone()
    }

    /// Tunnels opened so far.
    pub fn tunnels(&self) -> usize {
        self.state.tunnels.load(Ordering::SeqCst)
    }

    /// Client connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Waits up to 5 s until `count` client connections were accepted (a client can be done
    /// before the accept thread has counted it), then checks there were no more.
    pub fn wait_for_connections(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.connections() < count && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(self.connections(), count);
    }

    /// What the clients asked for so far.
    pub fn requests(&self) -> Vec<Request> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The credentials the clients presented so far, accepted or not.
    pub fn logins(&self) -> Vec<(String, String)> {
        self.state.logins.lock().unwrap().clone()
    }

    /// The single request made so far (panics if there is not exactly one).
    pub fn only_request(&self) -> Request {
        let requests = self.requests();
        assert_eq!(requests.len(), 1, "requests to the proxy: {requests:?}");
        requests.into_iter().next().unwrap()
    }

    /// Makes the proxy resolve `name` to `ip` (for names no resolver knows, such as
    /// `something.test`).
    pub fn map_host(&self, name: &str, ip: IpAddr) {
        self.state
            .hosts
            .lock()
            .unwrap()
            .insert(name.to_ascii_lowercase(), ip);
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// Serves one client connection.
fn serve(mut tcp: TcpStream, kind: &Kind, state: &State) -> io::Result<()> {
    tcp.set_read_timeout(Some(NEGOTIATION_TIMEOUT))?;
    match kind {
        Kind::Http(mode) => serve_http(tcp, mode, state),
        Kind::Socks5(mode) => serve_socks5(tcp, mode, state),
        Kind::Silent => {
            tcp.set_read_timeout(None)?;
            let mut sink = [0u8; 1024];
            while tcp.read(&mut sink)? > 0 {}
            Ok(())
        }
    }
}

/// Opens the connection to the server for a tunnel: every address of `host` in turn.
fn connect_upstream(host: &Host, port: u16, state: &State) -> io::Result<TcpStream> {
    let addrs: Vec<SocketAddr> = match host {
        Host::V4(ip) => vec![SocketAddr::new((*ip).into(), port)],
        Host::V6(ip) => vec![SocketAddr::new((*ip).into(), port)],
        Host::Name(name) => {
            let mapped = state
                .hosts
                .lock()
                .unwrap()
                .get(&name.to_ascii_lowercase())
                .copied();
            match mapped {
                Some(ip) => vec![SocketAddr::new(ip, port)],
                None => (name.as_str(), port).to_socket_addrs()?.collect(),
            }
        }
    };
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no addresses");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, UPSTREAM_TIMEOUT) {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Copies bytes both ways between the client and the server, one thread per direction; each
/// direction passes the end of its stream on (shutdown of the write side) when it ends.
fn relay(client: TcpStream, server: TcpStream) -> io::Result<()> {
    client.set_read_timeout(None)?;
    let mut client_read = client.try_clone()?;
    let mut server_write = server.try_clone()?;
    let mut server_read = server;
    let mut client_write = client;
    let up = thread::spawn(move || {
        let _ = io::copy(&mut client_read, &mut server_write);
        let _ = server_write.shutdown(Shutdown::Write);
    });
    let _ = io::copy(&mut server_read, &mut client_write);
    let _ = client_write.shutdown(Shutdown::Write);
    let _ = up.join();
    Ok(())
}

// ----- HTTP CONNECT -----

/// The most an HTTP request head may take.
const MAX_HEAD: usize = 16 * 1024;

/// Reads a request head up to the blank line, byte by byte (so that nothing after it is
/// consumed).
fn read_head(tcp: &mut TcpStream) -> io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "head too big"));
        }
        tcp.read_exact(&mut byte)?;
        head.push(byte[0]);
    }
    String::from_utf8(head).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The user name and password of a `Basic` authorization value, if it is one.
fn basic_credentials(value: &str) -> Option<(String, String)> {
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(token.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Splits a CONNECT authority `host:port` / `[v6]:port`.
fn split_authority(authority: &str) -> Option<(Host, u16)> {
    let (host, port) = authority.rsplit_once(':')?;
    Some((Host::from_authority_host(host), port.parse().ok()?))
}

fn serve_http(mut tcp: TcpStream, mode: &HttpMode, state: &State) -> io::Result<()> {
    let head = read_head(&mut tcp)?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, authority) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let credentials = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("proxy-authorization"))
        .and_then(|(_, value)| basic_credentials(value));
    let answer = |tcp: &mut TcpStream, status: u16, reason: &str, extra: &str| {
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        tcp.write_all(response.as_bytes())
    };
    if method != "CONNECT" {
        return answer(&mut tcp, 405, "Method Not Allowed", "Allow: CONNECT\r\n");
    }
    let Some((host, port)) = split_authority(authority) else {
        return answer(&mut tcp, 400, "Bad Request", "");
    };
    if let Some(given) = &credentials {
        state.logins.lock().unwrap().push(given.clone());
    }
    state.requests.lock().unwrap().push(Request {
        host: host.clone(),
        port,
        credentials: credentials.clone(),
    });
    match mode {
        HttpMode::Open => {}
        HttpMode::Auth { user, password } => {
            if credentials.as_ref() != Some(&(user.clone(), password.clone())) {
                return answer(
                    &mut tcp,
                    407,
                    "Proxy Authentication Required",
                    "Proxy-Authenticate: Basic realm=\"wsc-test\"\r\n",
                );
            }
        }
        HttpMode::Refuse { status, reason } => return answer(&mut tcp, *status, reason, ""),
    }
    let server = match connect_upstream(&host, port, state) {
        Ok(server) => server,
        Err(_) => return answer(&mut tcp, 502, "Bad Gateway", ""),
    };
    // No Content-Length or Connection headers: a 2xx answer to CONNECT has no body.
    tcp.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
    state.tunnels.fetch_add(1, Ordering::SeqCst);
    relay(tcp, server)
}

// ----- SOCKS5 (RFC 1928, RFC 1929) -----

fn read_bytes(tcp: &mut TcpStream, n: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    tcp.read_exact(&mut buf)?;
    Ok(buf)
}

/// A CONNECT reply with `code` and the bound address `bound`.
fn socks_reply(code: u8, bound: SocketAddr) -> Vec<u8> {
    let mut reply = vec![5, code, 0];
    match bound.ip() {
        IpAddr::V4(ip) => {
            reply.push(1);
            reply.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            reply.push(4);
            reply.extend_from_slice(&ip.octets());
        }
    }
    reply.extend_from_slice(&bound.port().to_be_bytes());
    reply
}

fn serve_socks5(mut tcp: TcpStream, mode: &SocksMode, state: &State) -> io::Result<()> {
    let head = read_bytes(&mut tcp, 2)?;
    if head[0] != 5 {
        return Ok(());
    }
    let methods = read_bytes(&mut tcp, usize::from(head[1]))?;
    let mut credentials = None;
    match mode {
        SocksMode::Auth { user, password } => {
            if !methods.contains(&2) {
                return tcp.write_all(&[5, 0xFF]);
            }
            tcp.write_all(&[5, 2])?;
            let version = read_bytes(&mut tcp, 1)?[0];
            let len = usize::from(read_bytes(&mut tcp, 1)?[0]);
            let given_user = read_bytes(&mut tcp, len)?;
            let len = usize::from(read_bytes(&mut tcp, 1)?[0]);
            let given_password = read_bytes(&mut tcp, len)?;
            let given = (
                String::from_utf8_lossy(&given_user).into_owned(),
                String::from_utf8_lossy(&given_password).into_owned(),
            );
            let ok = version == 1 && given == (user.clone(), password.clone());
            state.logins.lock().unwrap().push(given.clone());
            if !ok {
                // RFC 1929: a non-zero status, then the server closes the connection.
                return tcp.write_all(&[1, 1]);
            }
            credentials = Some(given);
            tcp.write_all(&[1, 0])?;
        }
        SocksMode::NoAuth | SocksMode::Fail(_) | SocksMode::ReachOnly(_) => {
            if !methods.contains(&0) {
                return tcp.write_all(&[5, 0xFF]);
            }
            tcp.write_all(&[5, 0])?;
        }
    }
    let request = read_bytes(&mut tcp, 4)?;
    let unspecified = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0);
    if request[0] != 5 {
        return Ok(());
    }
    let host = match request[3] {
        1 => {
            let b = read_bytes(&mut tcp, 4)?;
            Host::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        }
        4 => {
            let b: [u8; 16] = read_bytes(&mut tcp, 16)?.try_into().unwrap();
            Host::V6(Ipv6Addr::from(b))
        }
        3 => {
            let len = usize::from(read_bytes(&mut tcp, 1)?[0]);
            Host::Name(String::from_utf8_lossy(&read_bytes(&mut tcp, len)?).into_owned())
        }
        _ => return tcp.write_all(&socks_reply(8, unspecified)),
    };
    let port = u16::from_be_bytes(read_bytes(&mut tcp, 2)?.try_into().unwrap());
    state.requests.lock().unwrap().push(Request {
        host: host.clone(),
        port,
        credentials,
    });
    if request[1] != 1 {
        return tcp.write_all(&socks_reply(7, unspecified));
    }
    if let SocksMode::Fail(code) = mode {
        return tcp.write_all(&socks_reply(*code, unspecified));
    }
    if let SocksMode::ReachOnly(only) = mode {
        let reachable = match (&host, only) {
            (Host::V4(ip), IpAddr::V4(only)) => ip == only,
            (Host::V6(ip), IpAddr::V6(only)) => ip == only,
            _ => false,
        };
        if !reachable {
            return tcp.write_all(&socks_reply(4, unspecified));
        }
    }
    let server = match connect_upstream(&host, port, state) {
        Ok(server) => server,
        Err(_) => return tcp.write_all(&socks_reply(5, unspecified)),
    };
    tcp.write_all(&socks_reply(0, server.local_addr()?))?;
    state.tunnels.fetch_add(1, Ordering::SeqCst);
    relay(tcp, server)
}

// ----- pproxy -----

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `pproxy` (https://pypi.org/project/pproxy/), run as `python -u -m pproxy -v` with the
/// venv's Python; killed when dropped. With `-v` it prints a line per tunnel, such as
/// `http 127.0.0.1:40000 -> localhost:8080`, which [`Pproxy::tunnels_to`] counts.
pub struct Pproxy {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it printed so far (stdout and stderr).
    log: Arc<Mutex<String>>,
}

impl Pproxy {
    /// Starts `pproxy -l <scheme>://127.0.0.1:<port>[#user:password]` with `python` (the
    /// venv's, which has pproxy installed) and waits until it says it is serving.
    /// Authentication is checked on every connection (`--auth 0`: pproxy otherwise trusts
    /// an IP address for 30 days after one successful login).
    pub fn start(python: &Path, scheme: &str, credentials: Option<(&str, &str)>) -> Pproxy {
        let port = free_port();
        let mut listen = format!("{scheme}://127.0.0.1:{port}");
        if let Some((user, password)) = credentials {
            listen.push_str(&format!("#{user}:{password}"));
        }
        let mut child = Command::new(python)
            .args(["-u", "-m", "pproxy", "-v", "--auth", "0", "-l", &listen])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start pproxy with {}: {e}", python.display()));
        let log = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        collect_lines(stdout, log.clone());
        collect_lines(stderr, log.clone());
        let addr = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port);
        let mut proxy = Pproxy { child, addr, log };
        proxy.wait_until_serving();
        proxy
    }

    fn wait_until_serving(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.log().contains("Serving on") {
            if let Some(status) = self.child.try_wait().expect("pproxy's status") {
                // Give the readers a moment to collect the last lines.
                thread::sleep(Duration::from_millis(100));
                panic!(
                    "pproxy exited with {status} before serving (is it installed in the venv? \
                     run scripts/test.sh): {}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "pproxy did not serve on {} within 15 s: {}",
                self.addr,
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
        // It prints the line once the socket listens; check anyway.
        TcpListener::bind(self.addr).expect_err("pproxy is not listening on its port");
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// What it printed so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The tunnels it logged to `port` on any host (lines `<proto> <client> -> <host>:<port>`).
    pub fn tunnels_to(&self, port: u16) -> usize {
        let suffix = format!(":{port}");
        self.log()
            .lines()
            .filter(|line| line.contains(" -> ") && line.trim_end().ends_with(&suffix))
            .count()
    }

    /// Waits up to 5 s until it has logged `count` tunnels to `port`; panics with the log
    /// if it does not.
    pub fn wait_for_tunnels_to(&self, port: u16, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.tunnels_to(port) < count {
            assert!(
                Instant::now() < deadline,
                "pproxy logged {} tunnels to port {port}, not {count}; its log:\n{}",
                self.tunnels_to(port),
                self.log()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Appends the lines of `pipe` to `log` on a thread, until the pipe closes.
fn collect_lines(pipe: impl Read + Send + 'static, log: Arc<Mutex<String>>) {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let mut all = log.lock().unwrap();
            all.push_str(&line);
            all.push('\n');
        }
    });
}

impl Drop for Pproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_and_basic_credentials_parse() {
        assert_eq!(
            split_authority("[::1]:8080"),
            Some((Host::V6(Ipv6Addr::LOCALHOST), 8080))
        );
        assert_eq!(
            split_authority("127.0.0.1:1"),
            Some((Host::V4(Ipv4Addr::LOCALHOST), 1))
        );
        assert_eq!(
            split_authority("example.test:443"),
            Some((Host::Name("example.test".into()), 443))
        );
        assert_eq!(
            basic_credentials("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
            Some(("Aladdin".into(), "open sesame".into()))
        );
        assert_eq!(basic_credentials("Bearer x"), None);
    }
}
