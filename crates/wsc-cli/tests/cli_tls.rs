//! `wsc wss://...` against rustls servers on loopback, with certificates made at test time:
//! what a TLS failure tells a command line user (flags, never the library's methods).

use std::io;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use wsc::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use wsc::rustls::server::WebPkiClientVerifier;
use wsc::rustls::{self, RootCertStore, ServerConfig, ServerConnection, StreamOwned};
use wsc::Message;

mod common;
use common::{exits_with, finish, WSC};

/// Bounds the test servers' blocking reads.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A certificate with its key.
struct Identity {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
    key: KeyPair,
}

impl Identity {
    fn new(cert: rcgen::Certificate, key: KeyPair) -> Self {
        Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            key,
        }
    }

    fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.key.serialize_der()).into()
    }
}

/// A test certificate authority.
struct TestCa(CertifiedIssuer<'static, KeyPair>);

impl TestCa {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "wsc CLI test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        TestCa(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    /// A certificate for `localhost` with `usage`, made a CA's with `as_ca`.
    fn issue(&self, usage: ExtendedKeyUsagePurpose, as_ca: bool) -> Identity {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        if as_ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        let key = KeyPair::generate().unwrap();
        Identity::new(params.signed_by(&key, &self.0).unwrap(), key)
    }

    fn server_cert(&self) -> Identity {
        self.issue(ExtendedKeyUsagePurpose::ServerAuth, false)
    }
}

/// A scratch directory for PEM files, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("wsc-cli-tls-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A rustls server configuration presenting `identity`, requiring a client certificate
/// signed by `client_ca` if given.
fn server_config(identity: &Identity, client_ca: Option<&TestCa>) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca.0.der().clone()).unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(
        builder
            .with_single_cert(vec![identity.der.clone()], identity.private_key())
            .unwrap(),
    )
}

/// How the server ends a TLS handshake that fails on its side.
#[derive(Clone, Copy)]
enum OnFailure {
    /// Sends its alert, as rustls and OpenSSL do.
    Alert,
    /// Resets the connection without a word, as some servers and load balancers do.
    Reset,
}

/// A TLS server on 127.0.0.1 for one connection: the TLS handshake, then a WebSocket echo;
/// returns the `wss://localhost` URL.
fn tls_server(config: Arc<ServerConfig>, on_failure: OnFailure) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("wss://localhost:{}/", listener.local_addr().unwrap().port());
    thread::spawn(move || {
        let Ok((mut tcp, _)) = listener.accept() else {
            return;
        };
        tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut tls = ServerConnection::new(config).unwrap();
        while tls.is_handshaking() {
            while tls.wants_write() {
                if tls.write_tls(&mut tcp).is_err() {
                    return;
                }
            }
            if !matches!(tls.read_tls(&mut tcp), Ok(n) if n > 0) {
                return;
            }
            if tls.process_new_packets().is_err() {
                match on_failure {
                    OnFailure::Alert => {
                        let _ = tls.write_tls(&mut tcp);
                        thread::sleep(Duration::from_millis(200));
                    }
                    OnFailure::Reset => {
                        let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
                    }
                }
                return;
            }
        }
        let Ok(mut ws) = wsc::server::accept(StreamOwned::new(tls, tcp)) else {
            return;
        };
        while let Ok(message) = ws.read() {
            if matches!(message, Message::Close(_)) {
                return;
            }
            if message.is_data() && ws.send(message).is_err() {
                return;
            }
        }
    });
    url
}

/// Runs `wsc` with `args` and `stdin`, with a deadline.
fn wsc(args: &[&str], stdin: &'static [u8]) -> Output {
    let mut child = Command::new(WSC)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    thread::spawn(move || io::Write::write_all(&mut input, stdin));
    finish(child, &args)
}

/// Asserts that a message speaks of command line flags only, not of library methods.
#[track_caller]
fn names_no_library_method(err: &str) {
    for api in [
        "::",
        "TlsOptions",
        "add_ca_pem_file",
        "danger_",
        "client_cert_pem_files",
    ] {
        assert!(!err.contains(api), "names {api:?}: {err}");
    }
}

#[test]
fn an_untrusted_certificate_points_to_cacert_and_k() {
    let ca = TestCa::new();
    let server = ca.server_cert();
    let url = tls_server(server_config(&server, None), OnFailure::Alert);
    let out = wsc(&[&url, "-n"], b"");
    let err = exits_with(&out, 5);
    assert!(err.contains("not signed by a trusted CA"), "{err}");
    assert!(err.contains("--cacert"), "{err}");
    assert!(err.contains("-k"), "{err}");
    names_no_library_method(&err);

    // The hint works: trusting the CA with --cacert connects.
    let url = tls_server(server_config(&server, None), OnFailure::Alert);
    let dir = TempDir::new("cacert");
    let ca_file = dir.write("ca.pem", &ca.0.pem());
    let out = wsc(
        &[&url, "--cacert", &ca_file, "--linger", "0"],
        b"over TLS\n",
    );
    exits_with(&out, 0);
    assert_eq!(common::stdout(&out), "over TLS\n");
}

#[test]
fn a_ca_certificate_as_the_servers_own_points_to_cacert() {
    let ca = TestCa::new();
    let server = ca.issue(ExtendedKeyUsagePurpose::ServerAuth, true);
    let url = tls_server(server_config(&server, None), OnFailure::Alert);
    let dir = TempDir::new("ca-as-own");
    let ca_file = dir.write("ca.pem", &ca.0.pem());
    let out = wsc(&[&url, "-n", "--cacert", &ca_file], b"");
    let err = exits_with(&out, 5);
    assert!(err.contains("a CA certificate as its own"), "{err}");
    assert!(err.contains("--cacert"), "{err}");
    names_no_library_method(&err);
}

#[test]
fn a_server_asking_for_a_client_certificate_points_to_cert_and_key() {
    let ca = TestCa::new();
    let dir = TempDir::new("mtls");
    let ca_file = dir.write("ca.pem", &ca.0.pem());
    let url = tls_server(
        server_config(&ca.server_cert(), Some(&ca)),
        OnFailure::Alert,
    );
    let out = wsc(&[&url, "-n", "--cacert", &ca_file], b"");
    let err = exits_with(&out, 5);
    assert!(err.contains("requires a client certificate"), "{err}");
    assert!(err.contains("--cert"), "{err}");
    names_no_library_method(&err);

    // The hint works: with --cert and --key, the same server takes the connection.
    let client = ca.issue(ExtendedKeyUsagePurpose::ClientAuth, false);
    let cert = dir.write("client.pem", &client.cert_pem);
    let key = dir.write("client.key", &client.key_pem);
    let url = tls_server(
        server_config(&ca.server_cert(), Some(&ca)),
        OnFailure::Alert,
    );
    let args = [&url, "--cacert", &ca_file, "--cert", &cert, "--key", &key];
    let out = wsc(&[&args[..], &["--linger", "0"]].concat(), b"mutual\n");
    exits_with(&out, 0);
    assert_eq!(common::stdout(&out), "mutual\n");
}

#[test]
fn a_server_resetting_for_want_of_a_client_certificate_gets_the_hint_all_the_same() {
    let ca = TestCa::new();
    let dir = TempDir::new("mtls-reset");
    let ca_file = dir.write("ca.pem", &ca.0.pem());
    let url = tls_server(
        server_config(&ca.server_cert(), Some(&ca)),
        OnFailure::Reset,
    );
    let out = wsc(&[&url, "-n", "--cacert", &ca_file], b"");
    // TLS 1.3: our side of the TLS handshake is done before the server checks for a
    // certificate, so the reset ends the WebSocket handshake.
    let err = exits_with(&out, 6);
    assert!(
        err.contains("before answering our upgrade request"),
        "{err}"
    );
    assert!(
        err.contains("give one with --cert FILE --key FILE"),
        "{err}"
    );
    names_no_library_method(&err);
}

#[test]
fn a_certificate_file_that_cannot_be_read_names_its_flag_and_path() {
    let ca = TestCa::new();
    let client = ca.issue(ExtendedKeyUsagePurpose::ClientAuth, false);
    let dir = TempDir::new("unreadable");
    let cert = dir.write("client.pem", &client.cert_pem);
    let key = dir.write("client.key", &client.key_pem);
    let missing = dir.0.join("missing.pem").to_string_lossy().into_owned();
    let a_dir = dir.0.to_string_lossy().into_owned();
    let cases: [(&[&str], String); 4] = [
        (&["--cacert", &missing], format!("--cacert {missing}: ")),
        (&["--cacert", &a_dir], format!("--cacert {a_dir}: ")),
        (
            &["--cert", &missing, "--key", &key],
            format!("--cert {missing}: "),
        ),
        (
            &["--cert", &cert, "--key", &missing],
            format!("--key {missing}: "),
        ),
    ];
    for (flags, named) in cases {
        let url = tls_server(server_config(&ca.server_cert(), None), OnFailure::Alert);
        let out = wsc(&[&[url.as_str(), "-n"][..], flags].concat(), b"");
        let err = exits_with(&out, 2);
        assert!(
            err.starts_with(&format!("wsc: {named}")),
            "{flags:?}: {err}"
        );
        let why = if flags.contains(&a_dir.as_str()) {
            "Is a directory"
        } else {
            "No such file or directory"
        };
        assert!(err.contains(why), "{flags:?}: {err}");
        names_no_library_method(&err);
    }
}

/// `wsc serve` with `flags` (TLS ones among them) on a free port, killed when dropped.
struct Serve {
    child: std::process::Child,
    /// The `wss://` (or `ws://`) URL of its first line, without a trailing slash.
    url: String,
    /// Its stderr after that line: one line per connection.
    log: io::BufReader<std::process::ChildStderr>,
}

impl Serve {
    fn start(flags: &[&str]) -> Self {
        let (child, url, log) = common::spawn_serve(flags);
        Serve { child, url, log }
    }

    /// The next connection's log line.
    fn next_log_line(&mut self) -> String {
        let mut line = String::new();
        io::BufRead::read_line(&mut self.log, &mut line).unwrap();
        line
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server certificate for `localhost` from `ca`, written with the CA's own certificate.
fn serve_files(dir: &TempDir, ca: &TestCa) -> (String, String, String) {
    let server = ca.server_cert();
    let cert = dir.write("server.pem", &server.cert_pem);
    let key = dir.write("server.key", &server.key_pem);
    let ca_pem = dir.write("ca.pem", &ca.0.pem());
    (cert, key, ca_pem)
}

#[test]
fn serve_with_tls_echoes_to_a_client_that_trusts_its_ca() {
    let ca = TestCa::new();
    let dir = TempDir::new("serve-tls");
    let (cert, key, ca_pem) = serve_files(&dir, &ca);
    let mut server = Serve::start(&["--tls-cert", &cert, "--tls-key", &key]);
    let port = server
        .url
        .strip_prefix("wss://127.0.0.1:")
        .unwrap_or_else(|| {
            panic!("not a wss:// URL: {}", server.url);
        });
    let url = format!("wss://localhost:{port}");
    let out = wsc(&[&url, "--cacert", &ca_pem], b"over TLS\n");
    exits_with(&out, 0);
    assert_eq!(common::stdout(&out), "over TLS\n");
    let line = server.next_log_line();
    assert!(line.contains("1 in, 1 out, closed 1000"), "{line}");

    // Without the CA the client refuses the certificate, and the server says the TLS
    // handshake failed, not the WebSocket one.
    let out = wsc(&[&url], b"");
    exits_with(&out, 5);
    let line = server.next_log_line();
    assert!(line.contains("TLS handshake failed"), "{line}");
}

#[test]
fn a_ws_client_of_a_tls_server_is_told_on_both_sides() {
    let ca = TestCa::new();
    let dir = TempDir::new("serve-tls-plain");
    let (cert, key, _) = serve_files(&dir, &ca);
    let mut server = Serve::start(&["--tls-cert", &cert, "--tls-key", &key]);
    let plain = server.url.replace("wss://", "ws://");
    let out = wsc(&[&plain], b"");
    let err = exits_with(&out, 6);
    assert!(err.contains("use a wss:// URL"), "{err}");
    let line = server.next_log_line();
    assert!(
        line.contains("TLS handshake failed") && line.contains("speaks wss:// only"),
        "{line}"
    );
}

#[test]
fn serve_refuses_tls_files_it_cannot_use_naming_flag_and_path() {
    let ca = TestCa::new();
    let dir = TempDir::new("serve-tls-bad");
    let (cert, key, _) = serve_files(&dir, &ca);
    let other_key = dir.write("other.key", &ca.server_cert().key_pem);
    let missing = dir.0.join("missing.pem").to_string_lossy().into_owned();
    let not_pem = dir.write("notes.txt", "no certificate here\n");
    let cases: [(&[&str], String); 5] = [
        (
            &["--tls-cert", &missing, "--tls-key", &key],
            format!("wsc: --tls-cert {missing}: No such file"),
        ),
        (
            &["--tls-cert", &cert, "--tls-key", &missing],
            format!("wsc: --tls-key {missing}: No such file"),
        ),
        (
            &["--tls-cert", &not_pem, "--tls-key", &key],
            format!("wsc: --tls-cert {not_pem}: no PEM certificate in it"),
        ),
        (
            &["--tls-cert", &cert, "--tls-key", &not_pem],
            format!("wsc: --tls-key {not_pem}: no PEM private key in it"),
        ),
        (
            // A key that is not the certificate's.
            &["--tls-cert", &cert, "--tls-key", &other_key],
            format!("wsc: --tls-cert {cert} with --tls-key {other_key}: the key is not the certificate's"),
        ),
    ];
    for (flags, said) in cases {
        let out = wsc(&[&["serve", "127.0.0.1:0"][..], flags].concat(), b"");
        let err = exits_with(&out, 2);
        assert!(err.starts_with(&said), "{flags:?}: {err}");
        names_no_library_method(&err);
    }
    // One without the other is a usage error too.
    let out = wsc(&["serve", "127.0.0.1:0", "--tls-cert", &cert], b"");
    let err = exits_with(&out, 2);
    assert!(err.contains("--tls-key"), "{err}");
}
