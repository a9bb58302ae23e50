//! The real `wsc` binary through proxies: `--proxy`, the proxy environment variables
//! (HTTPS_PROXY / HTTP_PROXY / ALL_PROXY, lower-case first, minus NO_PROXY), `--no-proxy`,
//! and the exit statuses of proxy failures. The proxies are ours (tests/peers/proxy.rs), which
//! record every tunnel, and `pproxy` from the project's venv; the server is `wsc serve --echo`.
//!
//! Every child starts with all proxy variables removed, so that the machine's environment
//! cannot interfere. Targets that must be reachable through an environment proxy use a name
//! (`echo.wsc-proxy.test`), because loopback hosts never use the environment's proxy; the
//! proxies map that name to 127.0.0.1, and `--resolve` does the same for direct connections.

use std::io::BufRead;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::Duration;

#[path = "../../../tests/peers/spawn.rs"]
mod peers;
#[path = "../../../tests/peers/proxy.rs"]
mod proxy;
use peers::Proc;
use proxy::{Host, HttpMode, Pproxy, SocksMode, TestProxy};

mod common;
use common::{exits_with, finish, stderr, stdout, WSC};

/// A name no resolver knows: the proxies and `--resolve` map it to 127.0.0.1.
const NAME: &str = "echo.wsc-proxy.test";

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Every variable that could send the child through a proxy.
const PROXY_VARIABLES: [&str; 13] = [
    "ws_proxy",
    "WS_PROXY",
    "wss_proxy",
    "WSS_PROXY",
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
    "REQUEST_METHOD",
];

/// A password that must never appear in the output.
const SECRET: &str = "s3cret-Pa55";

/// `wsc serve --echo` on a free port of 127.0.0.1; killed when dropped.
struct Server {
    _proc: Proc,
    port: u16,
}

impl Server {
    fn start() -> Server {
        // (A server reads no proxy variables.)
        let (child, url, err) = common::spawn_serve(&["--echo"]);
        // Keep draining stderr so that the server never blocks on it.
        thread::spawn(move || for _ in err.lines().map_while(Result::ok) {});
        let port = url
            .trim_start_matches("ws://")
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse().ok())
            .unwrap_or_else(|| panic!("no port in {url:?}"));
        Server {
            _proc: Proc(child),
            port,
        }
    }

    /// `ws://host:port/`.
    fn url(&self, host: &str) -> String {
        format!("ws://{host}:{}/", self.port)
    }

    /// `ws://echo.wsc-proxy.test:port/` and the `--resolve` argument that maps the name to
    /// 127.0.0.1 for direct connections.
    fn named_url(&self) -> (String, String) {
        (self.url(NAME), format!("{NAME}:127.0.0.1"))
    }
}

trait ClearProxies {
    fn env_clear_proxies(&mut self) -> &mut Self;
}

impl ClearProxies for Command {
    fn env_clear_proxies(&mut self) -> &mut Self {
        for name in PROXY_VARIABLES {
            self.env_remove(name);
        }
        self
    }
}

/// Runs `wsc` with `args` and the environment variables `env` (and no other proxy
/// variables), stdin closed, within 20 s.
fn wsc(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(WSC);
    command
        .args(args)
        .env_clear_proxies()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    finish(command.spawn().unwrap(), &args)
}

/// Sends `hello` to `url` and waits for one message, with `extra` arguments and `env`.
fn hello(url: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut args = vec![url, "-n", "--send", "hello", "--count", "1"];
    args.extend_from_slice(extra);
    wsc(&args, env)
}

/// Asserts the echo worked: exit 0 and `hello` printed.
fn assert_echoed(out: &Output) {
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(out));
    assert_eq!(stdout(out), "hello\n", "stderr: {}", stderr(out));
}

/// An HTTP proxy that opens tunnels and maps [`NAME`] to 127.0.0.1.
fn http_proxy() -> TestProxy {
    let proxy = TestProxy::http(HttpMode::Open);
    proxy.map_host(NAME, LOCALHOST);
    proxy
}

// ---------------------------------------------------------------------------------------------
// --proxy
// ---------------------------------------------------------------------------------------------

#[test]
fn proxy_option_tunnels_through_an_http_proxy() {
    let server = Server::start();
    let proxy = http_proxy();
    let out = hello(
        &server.url("127.0.0.1"),
        &["--proxy", &proxy.url("http")],
        &[],
    );
    assert_echoed(&out);
    assert_eq!(proxy.tunnels(), 1);
    let request = proxy.only_request();
    assert_eq!(
        (request.host, request.port),
        (Host::V4(Ipv4Addr::LOCALHOST), server.port)
    );
}

#[test]
fn proxy_option_socks5h_with_percent_encoded_credentials() {
    let server = Server::start();
    let proxy = TestProxy::socks5(SocksMode::auth("us@er", "p:ss"));
    let url = format!("socks5h://us%40er:p%3Ass@127.0.0.1:{}", proxy.port());
    let out = hello(&server.url("localhost"), &["--proxy", &url], &[]);
    assert_echoed(&out);
    assert_eq!(proxy.tunnels(), 1);
    assert_eq!(
        proxy.only_request(),
        proxy::Request {
            host: Host::Name("localhost".into()),
            port: server.port,
            credentials: Some(("us@er".into(), "p:ss".into())),
        }
    );
}

#[test]
fn proxy_option_applies_even_to_hosts_in_no_proxy() {
    let server = Server::start();
    let proxy = http_proxy();
    let out = hello(
        &server.url("127.0.0.1"),
        &["--proxy", &proxy.url("http")],
        &[("NO_PROXY", "*"), ("no_proxy", "127.0.0.1")],
    );
    assert_echoed(&out);
    assert_eq!(proxy.tunnels(), 1);
}

// ---------------------------------------------------------------------------------------------
// The environment
// ---------------------------------------------------------------------------------------------

#[test]
fn http_proxy_variable_is_used_for_ws() {
    let server = Server::start();
    let proxy = http_proxy();
    let (url, resolve) = server.named_url();
    let out = hello(
        &url,
        &["--resolve", &resolve, "-v"],
        &[("HTTP_PROXY", &proxy.url("http"))],
    );
    assert_echoed(&out);
    // -v tells a proxied connection from a direct one, and where the proxy came from.
    let said = format!("* proxy: {} (from the environment)", proxy.url("http"));
    assert!(stderr(&out).contains(&said), "{}", stderr(&out));
    assert_eq!(proxy.tunnels(), 1);
    let request = proxy.only_request();
    assert_eq!(
        (request.host, request.port),
        (Host::Name(NAME.into()), server.port)
    );
}

#[test]
fn lower_case_http_proxy_is_used_and_wins_over_upper_case() {
    let server = Server::start();
    let proxy = http_proxy();
    let refusing = TestProxy::http(HttpMode::refuse(403, "Forbidden"));
    let (url, resolve) = server.named_url();
    // Alone.
    let out = hello(
        &url,
        &["--resolve", &resolve],
        &[("http_proxy", &proxy.url("http"))],
    );
    assert_echoed(&out);
    assert_eq!(proxy.tunnels(), 1);
    // With HTTP_PROXY naming another proxy: the lower-case one is used.
    let out = hello(
        &url,
        &["--resolve", &resolve],
        &[
            ("http_proxy", &proxy.url("http")),
            ("HTTP_PROXY", &refusing.url("http")),
        ],
    );
    assert_echoed(&out);
    assert_eq!(proxy.tunnels(), 2);
    assert_eq!(refusing.connections(), 0);
}

#[test]
fn all_proxy_socks5h_variable_is_used() {
    let server = Server::start();
    let proxy = TestProxy::socks5(SocksMode::NoAuth);
    proxy.map_host(NAME, LOCALHOST);
    let (url, resolve) = server.named_url();
    let out = hello(
        &url,
        &["--resolve", &resolve],
        &[("ALL_PROXY", &proxy.url("socks5h"))],
    );
    assert_echoed(&out);
    assert_eq!(proxy.tunnels(), 1);
    assert_eq!(proxy.only_request().host, Host::Name(NAME.into()));
}

#[test]
fn the_scheme_variable_wins_over_all_proxy_and_https_proxy_is_not_for_ws() {
    let server = Server::start();
    let proxy = http_proxy();
    let refusing = TestProxy::http(HttpMode::refuse(403, "Forbidden"));
    let (url, resolve) = server.named_url();
    let out = hello(
        &url,
        &["--resolve", &resolve],
        &[
            ("HTTPS_PROXY", &refusing.url("http")),
            ("ALL_PROXY", &refusing.url("http")),
            ("HTTP_PROXY", &proxy.url("http")),
        ],
    );
    assert_echoed(&out);
    assert_eq!(proxy.tunnels(), 1);
    // HTTPS_PROXY alone does not apply to ws://: the connection is direct.
    let out = hello(
        &url,
        &["--resolve", &resolve],
        &[("HTTPS_PROXY", &refusing.url("http"))],
    );
    assert_echoed(&out);
    assert_eq!(refusing.connections(), 0);
}

#[test]
fn no_proxy_hosts_are_reached_directly() {
    let server = Server::start();
    let proxy = http_proxy();
    let (url, resolve) = server.named_url();
    for (name, list) in [
        ("NO_PROXY", NAME),
        ("no_proxy", "example.com, .wsc-proxy.test"),
        ("NO_PROXY", "*"),
    ] {
        let out = hello(
            &url,
            &["--resolve", &resolve],
            &[("HTTP_PROXY", &proxy.url("http")), (name, list)],
        );
        assert_echoed(&out);
        assert_eq!(proxy.connections(), 0, "{name}={list}");
    }
    // A list that does not name the host leaves it to the proxy.
    let out = hello(
        &url,
        &["--resolve", &resolve],
        &[
            ("HTTP_PROXY", &proxy.url("http")),
            ("NO_PROXY", "example.com,127.0.0.1"),
        ],
    );
    assert_echoed(&out);
    assert_eq!(proxy.tunnels(), 1);
}

#[test]
fn loopback_targets_never_use_the_environment_proxy() {
    let server = Server::start();
    let proxy = http_proxy();
    for env in [
        vec![("HTTP_PROXY", proxy.url("http"))],
        vec![
            ("HTTP_PROXY", proxy.url("http")),
            ("NO_PROXY", "127.0.0.1".to_string()),
        ],
        vec![("ALL_PROXY", proxy.url("socks5h"))],
    ] {
        let env: Vec<(&str, &str)> = env.iter().map(|(n, v)| (*n, v.as_str())).collect();
        for host in ["127.0.0.1", "localhost"] {
            let out = hello(&server.url(host), &[], &env);
            assert_echoed(&out);
        }
    }
    assert_eq!(proxy.connections(), 0);
}

#[test]
fn an_empty_proxy_option_connects_directly_as_curls_does() {
    let server = Server::start();
    let proxy = http_proxy();
    let (url, resolve) = server.named_url();
    let out = hello(
        &url,
        &["--resolve", &resolve, "--proxy", ""],
        &[("HTTP_PROXY", &proxy.url("http"))],
    );
    assert_echoed(&out);
    assert_eq!(proxy.connections(), 0);
}

#[test]
fn no_proxy_option_ignores_the_environment() {
    let server = Server::start();
    let proxy = http_proxy();
    let (url, resolve) = server.named_url();
    let out = hello(
        &url,
        &["--resolve", &resolve, "--no-proxy"],
        &[
            ("HTTP_PROXY", &proxy.url("http")),
            ("http_proxy", &proxy.url("http")),
            ("ALL_PROXY", &proxy.url("http")),
        ],
    );
    assert_echoed(&out);
    assert_eq!(proxy.connections(), 0);
    // The same without --no-proxy goes through the proxy: the variables were in effect.
    let out = hello(
        &url,
        &["--resolve", &resolve],
        &[("HTTP_PROXY", &proxy.url("http"))],
    );
    assert_echoed(&out);
    assert_eq!(proxy.tunnels(), 1);
}

#[test]
fn upper_case_http_proxy_is_ignored_in_a_cgi_program() {
    let server = Server::start();
    let proxy = http_proxy();
    let (url, resolve) = server.named_url();
    // REQUEST_METHOD set: HTTP_PROXY could come from a request's `Proxy:` header.
    let out = hello(
        &url,
        &["--resolve", &resolve],
        &[
            ("REQUEST_METHOD", "GET"),
            ("HTTP_PROXY", &proxy.url("http")),
        ],
    );
    assert_echoed(&out);
    assert_eq!(proxy.connections(), 0);
    // The lower-case variable cannot come from a header, and still applies.
    let out = hello(
        &url,
        &["--resolve", &resolve],
        &[
            ("REQUEST_METHOD", "GET"),
            ("http_proxy", &proxy.url("http")),
        ],
    );
    assert_echoed(&out);
    assert_eq!(proxy.tunnels(), 1);
}

#[test]
fn an_unusable_proxy_variable_is_an_error_naming_it() {
    let (url, resolve) = (format!("ws://{NAME}:9/"), format!("{NAME}:127.0.0.1"));
    let out = hello(
        &url,
        &["--resolve", &resolve],
        &[("HTTP_PROXY", "https://proxy.example:3128")],
    );
    // A setting that cannot be used, as a bad --proxy is: exit 2, not a proxy's failure.
    let err = exits_with(&out, 2);
    assert!(err.contains("HTTP_PROXY"), "{err}");
}

#[test]
fn a_proxy_variable_that_is_not_utf8_is_an_error_not_a_direct_connection() {
    // It read as unset, and the connection went out directly: traffic the user meant for
    // the proxy (here a Latin-1 password) left without it.
    use std::os::unix::ffi::OsStrExt;
    let (url, resolve) = (format!("ws://{NAME}:9/"), format!("{NAME}:127.0.0.1"));
    let mut command = Command::new(WSC);
    command
        .args([&url, "-n", "--resolve", &resolve])
        .env_clear_proxies()
        .env(
            "http_proxy",
            std::ffi::OsStr::from_bytes(b"http://u:p\xe9ss@proxy.example:3128"),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = finish(command.spawn().unwrap(), &["(http_proxy not UTF-8)"]);
    let err = exits_with(&out, 2);
    assert!(err.contains("http_proxy") && err.contains("UTF-8"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Failures
// ---------------------------------------------------------------------------------------------

#[test]
fn a_refusing_proxy_exits_13_naming_the_proxy_and_the_status() {
    let server = Server::start();
    let proxy = TestProxy::http(HttpMode::refuse(403, "Forbidden"));
    let out = hello(
        &server.url("127.0.0.1"),
        &["--proxy", &proxy.url("http")],
        &[],
    );
    let err = exits_with(&out, 13);
    assert!(err.contains(&proxy.url("http")), "{err}");
    assert!(err.contains("403"), "{err}");
    assert_eq!(stdout(&out), "");
    assert_eq!(proxy.tunnels(), 0);
}

#[test]
fn a_refusing_environment_proxy_exits_13_too() {
    let proxy = TestProxy::http(HttpMode::refuse(403, "Forbidden"));
    let out = hello(
        &format!("ws://{NAME}:9/"),
        &[],
        &[("HTTP_PROXY", &proxy.url("http"))],
    );
    let err = exits_with(&out, 13);
    assert!(err.contains(&proxy.url("http")), "{err}");
    assert_eq!(proxy.only_request().host, Host::Name(NAME.into()));
}

#[test]
fn rejected_proxy_credentials_exit_13_without_showing_the_password() {
    let server = Server::start();
    let http = TestProxy::http(HttpMode::auth("alice", "right"));
    let socks = TestProxy::socks5(SocksMode::auth("alice", "right"));
    for (proxy, scheme, expected) in [(&http, "http", "407"), (&socks, "socks5h", "rejected")] {
        let url = format!("{scheme}://alice:{SECRET}@127.0.0.1:{}", proxy.port());
        let out = hello(&server.url("127.0.0.1"), &["--proxy", &url, "-v"], &[]);
        let err = exits_with(&out, 13);
        assert!(err.contains(expected), "{err}");
        assert!(err.contains(&proxy.url(scheme)), "{err}");
        let said = format!("* proxy: {} (--proxy)", proxy.url(scheme));
        assert!(err.contains(&said), "{err}");
        assert!(!err.contains(SECRET), "the password leaked: {err}");
        assert!(!stdout(&out).contains(SECRET), "the password leaked");
        assert_eq!(proxy.logins(), [("alice".to_string(), SECRET.to_string())]);
        assert_eq!(proxy.tunnels(), 0);
    }
}

#[test]
fn a_socks5_refusal_exits_13() {
    let server = Server::start();
    let proxy = TestProxy::socks5(SocksMode::Fail(0x05));
    let out = hello(
        &server.url("127.0.0.1"),
        &["--proxy", &proxy.url("socks5")],
        &[],
    );
    let err = exits_with(&out, 13);
    assert!(err.contains("refused"), "{err}");
    assert!(err.contains(&proxy.url("socks5")), "{err}");
}

#[test]
fn a_server_closing_before_it_answers_through_a_proxy_names_the_proxy() {
    // Also what a proxy that reports the tunnel open before it reaches the server looks like.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for tcp in listener.incoming() {
            drop(tcp);
        }
    });
    let proxy = TestProxy::http(HttpMode::Open);
    let out = hello(
        &format!("ws://127.0.0.1:{port}/"),
        &["--proxy", &proxy.url("http")],
        &[],
    );
    let err = exits_with(&out, 6);
    assert!(
        err.contains(&format!("through the proxy {}", proxy.url("http"))),
        "{err}"
    );
}

#[test]
fn an_unreachable_proxy_exits_4_naming_the_proxy() {
    let port = proxy::free_port();
    let out = hello(
        "ws://127.0.0.1:9/",
        &["--proxy", &format!("http://127.0.0.1:{port}")],
        &[],
    );
    let err = exits_with(&out, 4);
    assert!(
        err.contains(&format!("the proxy http://127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn a_silent_proxy_times_out_with_exit_7() {
    let proxy = TestProxy::silent();
    let started = std::time::Instant::now();
    let out = hello(
        "ws://127.0.0.1:9/",
        &["--proxy", &proxy.url("http"), "--connect-timeout", "0.3"],
        &[],
    );
    let err = exits_with(&out, 7);
    assert!(err.contains("proxy handshake"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The proxy never answered, so its accept thread may not have counted it yet.
    proxy.wait_for_connections(1);
}

#[test]
fn a_bad_proxy_option_is_a_usage_error() {
    for bad in ["ftp://proxy:21", "https://proxy:443", "http://proxy:99999"] {
        let out = hello("ws://127.0.0.1:9/", &["--proxy", bad], &[]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        assert!(stderr(&out).contains("--proxy"), "{}", stderr(&out));
    }
    let out = hello(
        "ws://127.0.0.1:9/",
        &["--proxy", "http://p:1", "--no-proxy"],
        &[],
    );
    exits_with(&out, 2);
}

// ---------------------------------------------------------------------------------------------
// pproxy
// ---------------------------------------------------------------------------------------------

#[test]
fn through_pproxy_http_with_credentials_and_socks5h() {
    let server = Server::start();
    let python = peers::python();
    let http = Pproxy::start(&python, "http", Some(("gina", SECRET)));
    let socks = Pproxy::start(&python, "socks5", None);

    let url = format!("http://gina:{SECRET}@127.0.0.1:{}", http.port());
    let out = hello(&server.url("localhost"), &["--proxy", &url], &[]);
    assert_echoed(&out);
    http.wait_for_tunnels_to(server.port, 1);

    let out = hello(
        &server.url("localhost"),
        &["--proxy", &format!("socks5h://127.0.0.1:{}", socks.port())],
        &[],
    );
    assert_echoed(&out);
    socks.wait_for_tunnels_to(server.port, 1);
    assert!(
        socks
            .log()
            .contains(&format!("-> localhost:{}", server.port)),
        "{}",
        socks.log()
    );
}
