//! Proxies on loopback: the client tunnels through HTTP CONNECT and SOCKS5 proxies of ours
//! (tests/peers/proxy.rs, which record what they were asked) and through the third-party
//! `pproxy` (Python, from the project's venv), blocking and async, ws:// and wss://; and
//! every way a proxy can fail: refusals, credentials, nothing listening, no answer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use wsc::{ClientBuilder, Error, MaybeTlsStream, Message, Phase, Proxy, ProxyError, WebSocket};

#[path = "../../../tests/peers/spawn.rs"]
mod peers;
#[path = "../../../tests/peers/proxy.rs"]
mod proxy;
use proxy::{Host, HttpMode, Pproxy, SocksMode, TestProxy};

/// Bounds every phase, so that no test can hang.
const TIMEOUT: Duration = Duration::from_secs(5);

const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// A password that must never appear in an error message.
const SECRET: &str = "s3cret-Pa55";

fn builder(url: &str) -> ClientBuilder {
    ClientBuilder::new(url)
        .connect_timeout(TIMEOUT)
        .handshake_timeout(TIMEOUT)
        .read_timeout(Some(TIMEOUT))
        .close_timeout(Some(TIMEOUT))
}

/// A WebSocket echo server on 127.0.0.1 (and on ::1 at the same port when this machine has
/// IPv6 loopback and the port is free there), serving any number of connections, each on a
/// thread of its own, until the test process ends. It records the peer address of every
/// connection.
struct EchoServer {
    port: u16,
    v6: bool,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
}

impl EchoServer {
    fn start() -> EchoServer {
        let peers = Arc::new(Mutex::new(Vec::new()));
        for _ in 0..20 {
            let v4 = TcpListener::bind((V4, 0)).unwrap();
            let port = v4.local_addr().unwrap().port();
            let v6 = TcpListener::bind((V6, port)).ok();
            if v6.is_none() && TcpListener::bind((V6, 0)).is_ok() {
                // IPv6 works here but the port is taken on it: try another port.
                continue;
            }
            let has_v6 = v6.is_some();
            for listener in std::iter::once(v4).chain(v6) {
                let peers = peers.clone();
                thread::spawn(move || {
                    for tcp in listener.incoming().map_while(Result::ok) {
                        peers.lock().unwrap().push(tcp.peer_addr().unwrap());
                        thread::spawn(move || echo(tcp));
                    }
                });
            }
            return EchoServer {
                port,
                v6: has_v6,
                peers,
            };
        }
        panic!("no port free on both loopback families");
    }

    /// `ws://host:port/echo`.
    fn url(&self, host: &str) -> String {
        format!("ws://{host}:{}/echo", self.port)
    }

    /// The peer addresses of the connections accepted so far.
    fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().unwrap().clone()
    }
}

/// Echoes data messages until the client closes.
fn echo(tcp: TcpStream) {
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    let Ok(mut ws) = wsc::server::accept(tcp) else {
        return;
    };
    while let Ok(message) = ws.read() {
        if message.is_data() && ws.send(message).is_err() {
            return;
        }
    }
}

/// Sends a message, checks it comes back, and closes cleanly.
fn assert_echoes(mut ws: WebSocket<MaybeTlsStream>) {
    ws.send_text("through the tunnel").unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("through the tunnel"));
    ws.send_binary(&[0u8, 1, 2, 0xff][..]).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(&[0u8, 1, 2, 0xff][..]));
    ws.close_and_wait(None).unwrap();
}

/// Asserts that `ws` runs over a TCP connection to `proxy` (not to the server).
fn assert_connected_to(ws: &WebSocket<MaybeTlsStream>, proxy: SocketAddr) {
    assert_eq!(
        ws.get_ref().tcp().peer_addr().unwrap(),
        proxy,
        "the client's TCP peer must be the proxy"
    );
}

/// The proxy error of a failed connection: the proxy it names and what went wrong, with the
/// whole message.
fn proxy_failure(result: Result<WebSocket<MaybeTlsStream>, Error>) -> (String, ProxyError, String) {
    match result {
        Err(e @ Error::Proxy { .. }) => {
            let message = e.to_string();
            let Error::Proxy { proxy, error } = e else {
                unreachable!()
            };
            (proxy, error, message)
        }
        Err(other) => panic!("expected a proxy error, got {other:?}"),
        Ok(_) => panic!("expected a proxy error, the connection opened"),
    }
}

/// Asserts that no rendering of `error` shows the password.
fn assert_no_secret(error: &str) {
    assert!(!error.contains(SECRET), "the password leaked: {error}");
}

// ---------------------------------------------------------------------------------------------
// HTTP CONNECT
// ---------------------------------------------------------------------------------------------

#[test]
fn http_connect_tunnels_ws_through_the_proxy() {
    let server = EchoServer::start();
    let proxy = TestProxy::http(HttpMode::Open);
    let ws = builder(&server.url("127.0.0.1"))
        .proxy(Proxy::http("127.0.0.1", proxy.port()))
        .connect()
        .unwrap();
    assert_connected_to(&ws, proxy.addr);
    assert_eq!(proxy.tunnels(), 1);
    let request = proxy.only_request();
    assert_eq!(
        (request.host, request.port, request.credentials),
        (Host::V4(Ipv4Addr::LOCALHOST), server.port, None)
    );
    // The server's peer is the proxy's side of the tunnel, not the client's socket.
    let client_local = ws.get_ref().tcp().local_addr().unwrap();
    assert_echoes(ws);
    assert_eq!(server.peers().len(), 1);
    assert_ne!(server.peers()[0], client_local);
}

#[test]
fn http_connect_names_the_target_as_the_url_does() {
    let server = EchoServer::start();
    let proxy = TestProxy::http(HttpMode::Open);
    let mut hosts = vec!["localhost"];
    if server.v6 {
        hosts.push("[::1]");
    } else {
        eprintln!("SKIPPED: no IPv6 loopback here; the [::1] target was not tried");
    }
    for host in &hosts {
        let ws = builder(&server.url(host))
            .proxy(Proxy::parse(&proxy.url("http")).unwrap())
            .connect()
            .unwrap_or_else(|e| panic!("{host}: {e}"));
        assert_connected_to(&ws, proxy.addr);
        assert_echoes(ws);
    }
    assert_eq!(proxy.tunnels(), hosts.len());
    let targets: Vec<(Host, u16)> = proxy
        .requests()
        .into_iter()
        .map(|r| (r.host, r.port))
        .collect();
    let mut expected = vec![(Host::Name("localhost".into()), server.port)];
    if server.v6 {
        expected.push((Host::V6(Ipv6Addr::LOCALHOST), server.port));
    }
    assert_eq!(targets, expected);
}

#[test]
fn http_connect_with_percent_encoded_credentials_from_the_url() {
    let server = EchoServer::start();
    let (user, password) = ("us@er", "p:ss w%rd/");
    let proxy = TestProxy::http(HttpMode::auth(user, password));
    let url = format!(
        "http://us%40er:p%3Ass%20w%25rd%2F@127.0.0.1:{}",
        proxy.port()
    );
    let parsed = Proxy::parse(&url).unwrap();
    assert_eq!(parsed.user(), Some(user));
    let ws = builder(&server.url("127.0.0.1"))
        .proxy(parsed)
        .connect()
        .unwrap();
    assert_connected_to(&ws, proxy.addr);
    assert_echoes(ws);
    assert_eq!(proxy.tunnels(), 1);
    assert_eq!(
        proxy.only_request().credentials,
        Some((user.to_string(), password.to_string()))
    );
}

#[test]
fn http_proxy_credentials_from_the_builder() {
    let server = EchoServer::start();
    let proxy = TestProxy::http(HttpMode::auth("alice", SECRET));
    let ws = builder(&server.url("127.0.0.1"))
        .proxy(Proxy::http("127.0.0.1", proxy.port()).credentials("alice", SECRET))
        .connect()
        .unwrap();
    assert_connected_to(&ws, proxy.addr);
    assert_echoes(ws);
    assert_eq!(proxy.tunnels(), 1);
}

#[test]
fn http_proxy_wrong_credentials_fail_with_407_without_showing_the_password() {
    let server = EchoServer::start();
    let proxy = TestProxy::http(HttpMode::auth("alice", "the-right-one"));
    let url = format!("http://alice:{SECRET}@127.0.0.1:{}", proxy.port());
    let result = builder(&server.url("127.0.0.1"))
        .proxy(Proxy::parse(&url).unwrap())
        .connect();
    let debug = format!("{result:?}");
    let (named, error, message) = proxy_failure(result);
    assert_eq!(named, format!("http://127.0.0.1:{}", proxy.port()));
    assert!(
        matches!(&error, ProxyError::HttpStatus { status: 407, .. }),
        "{error:?}"
    );
    assert!(message.contains("407"), "{message}");
    assert!(
        message.contains(&format!("127.0.0.1:{}", proxy.port())),
        "{message}"
    );
    assert_no_secret(&message);
    assert_no_secret(&debug);
    assert_eq!(proxy.logins(), [("alice".to_string(), SECRET.to_string())]);
    assert_eq!(proxy.tunnels(), 0);
    assert!(server.peers().is_empty());
}

#[test]
fn http_proxy_requiring_credentials_fails_with_407_when_none_are_given() {
    let proxy = TestProxy::http(HttpMode::auth("alice", SECRET));
    let result = builder("ws://127.0.0.1:9/")
        .proxy(Proxy::http("127.0.0.1", proxy.port()))
        .connect();
    let (_, error, message) = proxy_failure(result);
    assert!(
        matches!(&error, ProxyError::HttpStatus { status: 407, .. }),
        "{error:?}"
    );
    assert!(message.contains("credentials"), "{message}");
    assert_eq!(proxy.only_request().credentials, None);
    assert_eq!(proxy.tunnels(), 0);
}

#[test]
fn http_proxy_refusal_names_the_status_and_the_proxy() {
    let server = EchoServer::start();
    let proxy = TestProxy::http(HttpMode::refuse(403, "Forbidden"));
    let result = builder(&server.url("127.0.0.1"))
        .proxy(Proxy::http("127.0.0.1", proxy.port()))
        .connect();
    let (named, error, message) = proxy_failure(result);
    assert_eq!(named, format!("http://127.0.0.1:{}", proxy.port()));
    assert_eq!(
        error,
        ProxyError::HttpStatus {
            target: format!("127.0.0.1:{}", server.port),
            status: 403,
            reason: "Forbidden".into(),
        }
    );
    assert!(message.contains("403"), "{message}");
    assert!(message.contains(&named), "{message}");
    assert!(!error.is_retryable());
    assert_eq!(proxy.tunnels(), 0);
    assert!(server.peers().is_empty());
}

#[test]
fn http_proxy_that_cannot_reach_the_server_is_a_retryable_502() {
    let proxy = TestProxy::http(HttpMode::Open);
    let closed = proxy::free_port();
    let result = builder(&format!("ws://127.0.0.1:{closed}/"))
        .proxy(Proxy::http("127.0.0.1", proxy.port()))
        .connect();
    let (_, error, _) = proxy_failure(result);
    assert!(
        matches!(&error, ProxyError::HttpStatus { status: 502, .. }),
        "{error:?}"
    );
    assert!(error.is_retryable());
}

#[test]
fn redirects_are_followed_through_the_same_proxy() {
    let server = EchoServer::start();
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let redirector = listener.local_addr().unwrap();
    let location = server.url("127.0.0.1");
    thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut tcp, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8];
        while !head.ends_with(b"\r\n\r\n") {
            tcp.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let answer =
            format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n");
        tcp.write_all(answer.as_bytes()).unwrap();
    });
    let proxy = TestProxy::http(HttpMode::Open);
    let ws = builder(&format!("ws://{redirector}/old"))
        .max_redirects(1)
        .proxy(Proxy::http("127.0.0.1", proxy.port()))
        .connect()
        .unwrap();
    assert_connected_to(&ws, proxy.addr);
    assert_echoes(ws);
    let targets: Vec<u16> = proxy.requests().into_iter().map(|r| r.port).collect();
    assert_eq!(targets, [redirector.port(), server.port]);
    assert_eq!(proxy.tunnels(), 2);
}

#[test]
fn the_proxy_host_is_resolved_with_the_overrides() {
    let server = EchoServer::start();
    let proxy = TestProxy::http(HttpMode::Open);
    let ws = builder(&server.url("127.0.0.1"))
        .resolve("proxy.wsc-proxy.test", [V4])
        .proxy(Proxy::http("proxy.wsc-proxy.test", proxy.port()))
        .connect()
        .unwrap();
    assert_connected_to(&ws, proxy.addr);
    assert_echoes(ws);
    assert_eq!(proxy.tunnels(), 1);
}

// ---------------------------------------------------------------------------------------------
// SOCKS5
// ---------------------------------------------------------------------------------------------

#[test]
fn socks5_local_dns_sends_the_address_wsc_resolved() {
    let server = EchoServer::start();
    let proxy = TestProxy::socks5(SocksMode::NoAuth);
    let parsed = Proxy::parse(&proxy.url("socks5")).unwrap();
    assert!(!parsed.is_remote_dns());
    let ws = builder(&server.url("localhost"))
        .proxy(parsed)
        .connect()
        .unwrap();
    assert_connected_to(&ws, proxy.addr);
    assert_echoes(ws);
    assert_eq!(proxy.tunnels(), 1);
    let request = proxy.only_request();
    assert!(
        matches!(&request.host, Host::V4(ip) if ip.is_loopback())
            || request.host == Host::V6(Ipv6Addr::LOCALHOST),
        "socks5:// must send an address, not the name: {request:?}"
    );
    assert_eq!(request.port, server.port);
}

#[test]
fn socks5h_with_credentials_lets_the_proxy_resolve_the_name() {
    let server = EchoServer::start();
    let proxy = TestProxy::socks5(SocksMode::auth("bob", SECRET));
    let url = format!("socks5h://bob:{SECRET}@127.0.0.1:{}", proxy.port());
    let ws = builder(&server.url("localhost"))
        .proxy(Proxy::parse(&url).unwrap())
        .connect()
        .unwrap();
    assert_connected_to(&ws, proxy.addr);
    assert_echoes(ws);
    assert_eq!(proxy.tunnels(), 1);
    assert_eq!(
        proxy.only_request(),
        proxy::Request {
            host: Host::Name("localhost".into()),
            port: server.port,
            credentials: Some(("bob".into(), SECRET.into())),
        }
    );
}

#[test]
fn socks5_sends_ipv4_and_ipv6_literals_as_addresses() {
    let server = EchoServer::start();
    let proxy = TestProxy::socks5(SocksMode::NoAuth);
    let mut cases = vec![("127.0.0.1", Host::V4(Ipv4Addr::LOCALHOST))];
    if server.v6 {
        cases.push(("[::1]", Host::V6(Ipv6Addr::LOCALHOST)));
    } else {
        eprintln!("SKIPPED: no IPv6 loopback here; the [::1] target was not tried");
    }
    // Remote DNS or not, an address in the URL goes as an address.
    for (host, _) in &cases {
        let ws = builder(&server.url(host))
            .proxy(Proxy::socks5("127.0.0.1", proxy.port()))
            .connect()
            .unwrap_or_else(|e| panic!("{host}: {e}"));
        assert_connected_to(&ws, proxy.addr);
        assert_echoes(ws);
    }
    let seen: Vec<Host> = proxy.requests().into_iter().map(|r| r.host).collect();
    let expected: Vec<Host> = cases.into_iter().map(|(_, h)| h).collect();
    assert_eq!(seen, expected);
    assert_eq!(proxy.tunnels(), expected.len());
}

#[test]
fn socks5_wrong_credentials_fail_without_showing_the_password() {
    let server = EchoServer::start();
    let proxy = TestProxy::socks5(SocksMode::auth("bob", "the-right-one"));
    let result = builder(&server.url("127.0.0.1"))
        .proxy(Proxy::socks5("127.0.0.1", proxy.port()).credentials("bob", SECRET))
        .connect();
    let debug = format!("{result:?}");
    let (named, error, message) = proxy_failure(result);
    assert_eq!(named, format!("socks5h://127.0.0.1:{}", proxy.port()));
    assert_eq!(error, ProxyError::Socks5AuthFailed);
    assert!(message.contains(&named), "{message}");
    assert_no_secret(&message);
    assert_no_secret(&debug);
    assert_eq!(proxy.logins(), [("bob".to_string(), SECRET.to_string())]);
    assert!(proxy.requests().is_empty());
    assert_eq!(proxy.tunnels(), 0);
}

#[test]
fn socks5_requiring_credentials_when_none_are_given() {
    let proxy = TestProxy::socks5(SocksMode::auth("bob", SECRET));
    let result = builder("ws://127.0.0.1:9/")
        .proxy(Proxy::socks5("127.0.0.1", proxy.port()))
        .connect();
    let (_, error, message) = proxy_failure(result);
    assert_eq!(
        error,
        ProxyError::Socks5NoAcceptableAuth {
            offered_credentials: false
        }
    );
    assert!(message.contains("user name and password"), "{message}");
    assert_eq!(proxy.tunnels(), 0);
}

#[test]
fn socks5_refusal_reply_names_the_reason() {
    let server = EchoServer::start();
    let proxy = TestProxy::socks5(SocksMode::Fail(0x05));
    let result = builder(&server.url("127.0.0.1"))
        .proxy(Proxy::socks5("127.0.0.1", proxy.port()))
        .connect();
    let (named, error, message) = proxy_failure(result);
    assert_eq!(
        error,
        ProxyError::Socks5Reply {
            target: format!("127.0.0.1:{}", server.port),
            code: 0x05
        }
    );
    assert!(message.contains("refused"), "{message}");
    assert!(message.contains(&named), "{message}");
    assert_eq!(proxy.requests().len(), 1);
    assert_eq!(proxy.tunnels(), 0);
    assert!(server.peers().is_empty());
}

/// `ClientBuilder::resolve` says it replaces the resolver for a host; with `socks5://` wsc
/// resolves the server's name itself, so the override should be what it sends.
#[test]
fn socks5_local_dns_honours_resolve_overrides() {
    let server = EchoServer::start();
    let proxy = TestProxy::socks5(SocksMode::NoAuth);
    let result = builder(&server.url("echo.wsc-proxy.test"))
        .resolve("echo.wsc-proxy.test", [V4])
        .proxy(Proxy::socks5("127.0.0.1", proxy.port()).remote_dns(false))
        .connect();
    let ws = result.unwrap();
    assert_echoes(ws);
    assert_eq!(proxy.only_request().host, Host::V4(Ipv4Addr::LOCALHOST));
}

/// With `socks5://` wsc resolves the name itself; when the proxy cannot reach the first
/// address (as `::1` for a `localhost` server listening on 127.0.0.1 only), the next is
/// asked for, over a new connection to the proxy: a failed CONNECT ends the first one.
#[test]
fn socks5_local_dns_tries_the_next_address_when_the_proxy_cannot_reach_one() {
    let server = EchoServer::start();
    let proxy = TestProxy::socks5(SocksMode::ReachOnly(V4));
    let ws = builder(&server.url("echo.wsc-proxy.test"))
        .resolve("echo.wsc-proxy.test", [V6, V4])
        .proxy(Proxy::socks5("127.0.0.1", proxy.port()).remote_dns(false))
        .connect()
        .unwrap();
    assert_connected_to(&ws, proxy.addr);
    assert_echoes(ws);
    let hosts: Vec<Host> = proxy.requests().into_iter().map(|r| r.host).collect();
    assert_eq!(
        hosts,
        [Host::V6(Ipv6Addr::LOCALHOST), Host::V4(Ipv4Addr::LOCALHOST)]
    );
    assert_eq!(proxy.connections(), 2);
    assert_eq!(proxy.tunnels(), 1);
}

/// When the proxy reaches none of the addresses, each was asked for once and the error is
/// the last one's, naming the address.
#[test]
fn socks5_local_dns_reports_the_last_address_when_none_is_reachable() {
    let server = EchoServer::start();
    let proxy = TestProxy::socks5(SocksMode::Fail(0x05));
    let result = builder(&server.url("echo.wsc-proxy.test"))
        .resolve("echo.wsc-proxy.test", [V6, V4])
        .proxy(Proxy::socks5("127.0.0.1", proxy.port()).remote_dns(false))
        .connect();
    let (_, error, message) = proxy_failure(result);
    let target = format!("echo.wsc-proxy.test:{} (127.0.0.1)", server.port);
    assert_eq!(error, ProxyError::Socks5Reply { target, code: 5 });
    assert!(message.contains("refused"), "{message}");
    assert_eq!(proxy.requests().len(), 2);
    assert_eq!(proxy.connections(), 2);
    assert!(server.peers().is_empty());
}

/// Failures that are the proxy's, not the address's (here, credentials), are not repeated
/// for the next address.
#[test]
fn socks5_local_dns_does_not_retry_a_refusal_of_the_credentials() {
    let server = EchoServer::start();
    let proxy = TestProxy::socks5(SocksMode::auth("bob", "the-right-one"));
    let result = builder(&server.url("echo.wsc-proxy.test"))
        .resolve("echo.wsc-proxy.test", [V6, V4])
        .proxy(
            Proxy::socks5("127.0.0.1", proxy.port())
                .remote_dns(false)
                .credentials("bob", SECRET),
        )
        .connect();
    let (_, error, _) = proxy_failure(result);
    assert_eq!(error, ProxyError::Socks5AuthFailed);
    assert_eq!(proxy.connections(), 1);
}

// ---------------------------------------------------------------------------------------------
// Proxies that cannot be reached or do not answer
// ---------------------------------------------------------------------------------------------

#[test]
fn a_proxy_where_nothing_listens_is_a_connect_error_naming_the_proxy() {
    let port = proxy::free_port();
    for proxy in [
        Proxy::http("127.0.0.1", port),
        Proxy::socks5("127.0.0.1", port),
    ] {
        let name = proxy.display_name();
        match builder("ws://127.0.0.1:9/").proxy(proxy).connect() {
            Err(e @ Error::Connect { .. }) => {
                let message = e.to_string();
                let Error::Connect { target, .. } = e else {
                    unreachable!()
                };
                assert_eq!(target, format!("the proxy {name}"));
                assert!(message.contains(&name), "{message}");
            }
            Err(other) => panic!("expected a connect error, got {other:?}"),
            Ok(_) => panic!("connected through nothing"),
        }
    }
}

#[test]
fn a_proxy_that_never_answers_times_out_in_the_proxy_phase() {
    let silent = TestProxy::silent();
    for proxy in [
        Proxy::http("127.0.0.1", silent.port()),
        Proxy::socks5("127.0.0.1", silent.port()),
    ] {
        let start = Instant::now();
        let result = builder("ws://127.0.0.1:9/")
            .handshake_timeout(Duration::from_millis(300))
            .proxy(proxy)
            .connect();
        let took = start.elapsed();
        assert!(
            matches!(result, Err(Error::Timeout(Phase::Proxy))),
            "{:?}",
            result.map(|_| ())
        );
        assert!(took >= Duration::from_millis(250), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
    // The open timeout bounds the proxy phase too.
    let start = Instant::now();
    let result = builder("ws://127.0.0.1:9/")
        .handshake_timeout(None)
        .open_timeout(Duration::from_millis(300))
        .proxy(Proxy::http("127.0.0.1", silent.port()))
        .connect();
    assert!(
        matches!(result, Err(Error::Timeout(Phase::Proxy))),
        "{:?}",
        result.map(|_| ())
    );
    assert!(start.elapsed() < Duration::from_secs(2));
    // The proxy never answered, so its accept thread may not have counted them all yet.
    silent.wait_for_connections(3);
}

// ---------------------------------------------------------------------------------------------
// wss:// through the proxies
// ---------------------------------------------------------------------------------------------

#[cfg(feature = "tls")]
mod tls {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use wsc::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use wsc::rustls::{self, ServerConfig, ServerConnection, StreamOwned};
    use wsc::{Roots, TlsOptions};

    /// A TLS echo server on 127.0.0.1 with a certificate for `localhost` from a fresh CA, and
    /// client options trusting only that CA.
    pub(super) fn tls_echo_server() -> (u16, TlsOptions) {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let key_der: PrivateKeyDer<'static> = PrivatePkcs8KeyDer::from(key.serialize_der()).into();
        let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
        let config = Arc::new(
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, key_der)
                .unwrap(),
        );
        let listener = TcpListener::bind((V4, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            for tcp in listener.incoming().map_while(Result::ok) {
                let config = config.clone();
                thread::spawn(move || {
                    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
                    let conn = ServerConnection::new(config).unwrap();
                    let Ok(mut ws) = wsc::server::accept(StreamOwned::new(conn, tcp)) else {
                        return;
                    };
                    while let Ok(message) = ws.read() {
                        if message.is_data() && ws.send(message).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let tls = TlsOptions::new()
            .roots(Roots::None)
            .add_ca_der(ca.der().clone());
        (port, tls)
    }

    #[test]
    fn wss_through_an_http_connect_proxy() {
        let (port, tls) = tls_echo_server();
        let proxy = TestProxy::http(HttpMode::Open);
        let ws = builder(&format!("wss://localhost:{port}/secure"))
            .tls(tls)
            .proxy(Proxy::http("127.0.0.1", proxy.port()))
            .connect()
            .unwrap();
        assert!(matches!(ws.get_ref(), MaybeTlsStream::Tls(_)));
        assert_connected_to(&ws, proxy.addr);
        assert_echoes(ws);
        assert_eq!(proxy.tunnels(), 1);
        let request = proxy.only_request();
        assert_eq!(
            (request.host, request.port),
            (Host::Name("localhost".into()), port)
        );
    }

    #[test]
    fn wss_through_a_socks5h_proxy() {
        let (port, tls) = tls_echo_server();
        let proxy = TestProxy::socks5(SocksMode::NoAuth);
        let ws = builder(&format!("wss://localhost:{port}/secure"))
            .tls(tls)
            .proxy(Proxy::parse(&proxy.url("socks5h")).unwrap())
            .connect()
            .unwrap();
        assert!(matches!(ws.get_ref(), MaybeTlsStream::Tls(_)));
        assert_connected_to(&ws, proxy.addr);
        assert_echoes(ws);
        assert_eq!(proxy.only_request().host, Host::Name("localhost".into()));
        assert_eq!(proxy.tunnels(), 1);
    }
}

// ---------------------------------------------------------------------------------------------
// The async client
// ---------------------------------------------------------------------------------------------

#[cfg(feature = "tokio")]
mod async_client {
    use super::*;
    use wsc::tokio::{TokioStream, WebSocketStream};

    async fn assert_echoes_async(mut ws: WebSocketStream<TokioStream>) {
        ws.send_text("async through the tunnel").await.unwrap();
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::text("async through the tunnel")
        );
        ws.close(None).await.unwrap();
    }

    fn async_proxy_failure(
        result: Result<(WebSocketStream<TokioStream>, wsc::Response), Error>,
    ) -> (String, ProxyError, String) {
        proxy_failure(result.map(|_| panic!("expected a proxy error, the connection opened")))
    }

    #[tokio::test]
    async fn async_http_connect_with_credentials() {
        let server = EchoServer::start();
        let proxy = TestProxy::http(HttpMode::auth("carol", SECRET));
        let url = format!("http://carol:{SECRET}@127.0.0.1:{}", proxy.port());
        let (ws, _) = builder(&server.url("localhost"))
            .proxy(Proxy::parse(&url).unwrap())
            .connect_async()
            .await
            .unwrap();
        assert_eq!(ws.get_ref().tcp().peer_addr().unwrap(), proxy.addr);
        assert_echoes_async(ws).await;
        assert_eq!(proxy.tunnels(), 1);
        assert_eq!(proxy.only_request().host, Host::Name("localhost".into()));
    }

    #[tokio::test]
    async fn async_socks5_local_and_remote_dns() {
        let server = EchoServer::start();
        let proxy = TestProxy::socks5(SocksMode::auth("dave", SECRET));
        for scheme in ["socks5", "socks5h"] {
            let url = format!("{scheme}://dave:{SECRET}@127.0.0.1:{}", proxy.port());
            let (ws, _) = builder(&server.url("localhost"))
                .proxy(Proxy::parse(&url).unwrap())
                .connect_async()
                .await
                .unwrap_or_else(|e| panic!("{scheme}: {e}"));
            assert_eq!(ws.get_ref().tcp().peer_addr().unwrap(), proxy.addr);
            assert_echoes_async(ws).await;
        }
        assert_eq!(proxy.tunnels(), 2);
        let hosts: Vec<Host> = proxy.requests().into_iter().map(|r| r.host).collect();
        assert!(
            matches!(&hosts[0], Host::V4(ip) if ip.is_loopback())
                || hosts[0] == Host::V6(Ipv6Addr::LOCALHOST),
            "socks5:// must send an address: {hosts:?}"
        );
        assert_eq!(hosts[1], Host::Name("localhost".into()));
    }

    #[tokio::test]
    async fn async_proxy_failures() {
        // An HTTP refusal.
        let refusing = TestProxy::http(HttpMode::refuse(403, "Forbidden"));
        let result = builder("ws://127.0.0.1:9/")
            .proxy(Proxy::http("127.0.0.1", refusing.port()))
            .connect_async()
            .await;
        let (named, error, message) = async_proxy_failure(result);
        assert_eq!(named, format!("http://127.0.0.1:{}", refusing.port()));
        assert!(
            matches!(error, ProxyError::HttpStatus { status: 403, .. }),
            "{message}"
        );

        // A SOCKS5 refusal.
        let failing = TestProxy::socks5(SocksMode::Fail(0x05));
        let result = builder("ws://127.0.0.1:9/")
            .proxy(Proxy::socks5("127.0.0.1", failing.port()))
            .connect_async()
            .await;
        let (_, error, message) = async_proxy_failure(result);
        assert!(
            matches!(error, ProxyError::Socks5Reply { code: 5, .. }),
            "{message}"
        );
        assert!(message.contains("refused"), "{message}");

        // Wrong SOCKS5 credentials.
        let auth = TestProxy::socks5(SocksMode::auth("dave", "right"));
        let result = builder("ws://127.0.0.1:9/")
            .proxy(Proxy::socks5("127.0.0.1", auth.port()).credentials("dave", SECRET))
            .connect_async()
            .await;
        let (_, error, message) = async_proxy_failure(result);
        assert_eq!(error, ProxyError::Socks5AuthFailed);
        assert_no_secret(&message);

        // Nothing listening.
        let port = proxy::free_port();
        match builder("ws://127.0.0.1:9/")
            .proxy(Proxy::http("127.0.0.1", port))
            .connect_async()
            .await
        {
            Err(Error::Connect { target, .. }) => {
                assert_eq!(target, format!("the proxy http://127.0.0.1:{port}"))
            }
            other => panic!("expected a connect error, got {:?}", other.map(|_| ())),
        }

        // No answer.
        let silent = TestProxy::silent();
        let start = Instant::now();
        let result = builder("ws://127.0.0.1:9/")
            .handshake_timeout(Duration::from_millis(300))
            .proxy(Proxy::http("127.0.0.1", silent.port()))
            .connect_async()
            .await;
        let took = start.elapsed();
        assert!(
            matches!(result, Err(Error::Timeout(Phase::Proxy))),
            "{:?}",
            result.map(|_| ())
        );
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(2),
            "{took:?}"
        );
        for proxy in [&refusing, &failing, &auth] {
            assert_eq!(proxy.tunnels(), 0);
        }
    }

    /// The async twin of `socks5_local_dns_honours_resolve_overrides`.
    #[tokio::test]
    async fn async_socks5_local_dns_honours_resolve_overrides() {
        let server = EchoServer::start();
        let proxy = TestProxy::socks5(SocksMode::NoAuth);
        let (ws, _) = builder(&server.url("echo.wsc-proxy.test"))
            .resolve("echo.wsc-proxy.test", [V4])
            .proxy(Proxy::socks5("127.0.0.1", proxy.port()).remote_dns(false))
            .connect_async()
            .await
            .unwrap();
        assert_echoes_async(ws).await;
        assert_eq!(proxy.only_request().host, Host::V4(Ipv4Addr::LOCALHOST));
    }

    /// The async twin of
    /// `socks5_local_dns_tries_the_next_address_when_the_proxy_cannot_reach_one`.
    #[tokio::test]
    async fn async_socks5_local_dns_tries_the_next_address() {
        let server = EchoServer::start();
        let proxy = TestProxy::socks5(SocksMode::ReachOnly(V4));
        let (ws, _) = builder(&server.url("echo.wsc-proxy.test"))
            .resolve("echo.wsc-proxy.test", [V6, V4])
            .proxy(Proxy::socks5("127.0.0.1", proxy.port()).remote_dns(false))
            .connect_async()
            .await
            .unwrap();
        assert_echoes_async(ws).await;
        let hosts: Vec<Host> = proxy.requests().into_iter().map(|r| r.host).collect();
        assert_eq!(
            hosts,
            [Host::V6(Ipv6Addr::LOCALHOST), Host::V4(Ipv4Addr::LOCALHOST)]
        );
        assert_eq!(proxy.connections(), 2);

        // None reachable: the last address's refusal.
        let failing = TestProxy::socks5(SocksMode::Fail(0x04));
        let result = builder(&server.url("echo.wsc-proxy.test"))
            .resolve("echo.wsc-proxy.test", [V6, V4])
            .proxy(Proxy::socks5("127.0.0.1", failing.port()).remote_dns(false))
            .connect_async()
            .await;
        let (_, error, _) = async_proxy_failure(result);
        let target = format!("echo.wsc-proxy.test:{} (127.0.0.1)", server.port);
        assert_eq!(error, ProxyError::Socks5Reply { target, code: 4 });
        assert_eq!(failing.connections(), 2);
    }

    #[cfg(feature = "tls")]
    #[tokio::test]
    async fn async_wss_through_an_http_connect_proxy() {
        let (port, tls) = super::tls::tls_echo_server();
        let proxy = TestProxy::http(HttpMode::Open);
        let (ws, _) = builder(&format!("wss://localhost:{port}/"))
            .tls(tls)
            .proxy(Proxy::http("127.0.0.1", proxy.port()))
            .connect_async()
            .await
            .unwrap();
        assert!(matches!(ws.get_ref(), TokioStream::Tls(_)));
        assert_eq!(ws.get_ref().tcp().peer_addr().unwrap(), proxy.addr);
        assert_echoes_async(ws).await;
        assert_eq!(proxy.tunnels(), 1);
    }
}

// ---------------------------------------------------------------------------------------------
// pproxy, a third-party proxy (Python, installed in the venv by scripts/test.sh)
// ---------------------------------------------------------------------------------------------

/// Connects through `proxy`, which is `pproxy`, and checks the tunnel: the client's peer is
/// pproxy, pproxy logged a tunnel to the server, the server's peer is not the client, and
/// the echo works.
fn assert_tunnel_through(server: &EchoServer, proxy: Proxy, pproxy: &Pproxy) {
    let before = server.peers().len();
    let logged = pproxy.tunnels_to(server.port);
    let ws = builder(&server.url("localhost"))
        .proxy(proxy)
        .connect()
        .unwrap();
    assert_connected_to(&ws, pproxy.addr);
    let client_local = ws.get_ref().tcp().local_addr().unwrap();
    assert_echoes(ws);
    pproxy.wait_for_tunnels_to(server.port, logged + 1);
    let peers = server.peers();
    assert_eq!(peers.len(), before + 1);
    assert_ne!(peers[before], client_local);
}

#[test]
fn pproxy_http_connect_and_socks5() {
    let server = EchoServer::start();
    let python = peers::python();
    let http = Pproxy::start(&python, "http", None);
    assert_tunnel_through(&server, Proxy::http("127.0.0.1", http.port()), &http);
    let socks = Pproxy::start(&python, "socks5", None);
    for remote_dns in [false, true] {
        let proxy = Proxy::socks5("127.0.0.1", socks.port()).remote_dns(remote_dns);
        assert_tunnel_through(&server, proxy, &socks);
    }
    // socks5:// sent the address wsc resolved, socks5h:// the name.
    let log = socks.log();
    assert!(
        log.contains(&format!("-> 127.0.0.1:{}", server.port)),
        "{log}"
    );
    assert!(
        log.contains(&format!("-> localhost:{}", server.port)),
        "{log}"
    );
}

#[test]
fn pproxy_with_credentials() {
    let server = EchoServer::start();
    let python = peers::python();
    let http = Pproxy::start(&python, "http", Some(("erin", SECRET)));
    let socks = Pproxy::start(&python, "socks5", Some(("erin", SECRET)));

    let good = format!("http://erin:{SECRET}@127.0.0.1:{}", http.port());
    assert_tunnel_through(&server, Proxy::parse(&good).unwrap(), &http);
    let good = format!("socks5h://erin:{SECRET}@127.0.0.1:{}", socks.port());
    assert_tunnel_through(&server, Proxy::parse(&good).unwrap(), &socks);

    // pproxy answers wrong HTTP credentials with 407.
    let result = builder(&server.url("localhost"))
        .proxy(Proxy::http("127.0.0.1", http.port()).credentials("erin", "wrong"))
        .connect();
    let (named, error, message) = proxy_failure(result);
    assert_eq!(named, format!("http://127.0.0.1:{}", http.port()));
    assert!(
        matches!(error, ProxyError::HttpStatus { status: 407, .. }),
        "{message}"
    );
    // pproxy hangs up on wrong SOCKS5 credentials, without the RFC 1929 status.
    let result = builder(&server.url("localhost"))
        .proxy(Proxy::socks5("127.0.0.1", socks.port()).credentials("erin", "wrong"))
        .connect();
    let (_, error, message) = proxy_failure(result);
    assert!(
        matches!(
            error,
            ProxyError::ClosedAfterCredentials | ProxyError::Socks5AuthFailed
        ),
        "{message}"
    );
    assert_eq!(
        server.peers().len(),
        2,
        "only the good credentials get through"
    );
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn pproxy_async_http_connect_and_socks5h() {
    let server = EchoServer::start();
    let python = peers::python();
    let http = Pproxy::start(&python, "http", Some(("frank", SECRET)));
    let socks = Pproxy::start(&python, "socks5", None);
    let proxies = [
        (
            Proxy::http("127.0.0.1", http.port()).credentials("frank", SECRET),
            http.addr,
        ),
        (
            Proxy::socks5("127.0.0.1", socks.port()).remote_dns(true),
            socks.addr,
        ),
    ];
    for (proxy, addr) in proxies {
        let name = proxy.display_name();
        let (mut ws, _) = builder(&server.url("localhost"))
            .proxy(proxy)
            .connect_async()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(ws.get_ref().tcp().peer_addr().unwrap(), addr, "{name}");
        ws.send_text("via pproxy").await.unwrap();
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::text("via pproxy")
        );
        ws.close(None).await.unwrap();
    }
    http.wait_for_tunnels_to(server.port, 1);
    socks.wait_for_tunnels_to(server.port, 1);
    assert_eq!(server.peers().len(), 2);
}
