//! `wss://` against a rustls server on loopback, with certificates made at test time by rcgen:
//! trusted and untrusted CAs, wrong names, expiry, IP addresses, mutual TLS, skipping
//! verification, and unusable CA files.
#![cfg(feature = "tls")]

use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

mod common;
use common::{ping_burst, Uncompressed};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use wsc::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use wsc::rustls::server::WebPkiClientVerifier;
use wsc::rustls::{
    self, AlertDescription, CertificateError, RootCertStore, ServerConfig, ServerConnection,
    StreamOwned,
};
use wsc::{
    ClientBuilder, CloseCode, CloseFrame, Error, HandshakeError, MaybeTlsStream, Message, Phase,
    Roots, TlsOptions, WebSocket,
};

/// Bounds every blocking step on both sides, so that no test can hang.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The messages each successful connection exchanges.
const TEXT: &str = "hello over TLS";
const BINARY: &[u8] = &[0, 1, 2, 0xfe, 0xff];

// ---------------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------------

/// A certificate chain with its private key, in the forms both sides need.
struct Identity {
    cert_pem: String,
    key_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: KeyPair,
}

impl Identity {
    /// Bundles a certificate rcgen made with the key it certifies.
    fn new(cert: rcgen::Certificate, key: KeyPair) -> Self {
        Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            chain: vec![cert.der().clone()],
            key,
        }
    }

    /// The private key as rustls takes it.
    fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.key.serialize_der()).into()
    }
}

/// A test certificate authority.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    /// A fresh self-signed CA called `name`.
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        TestCa { issuer }
    }

    /// The CA certificate, PEM-encoded.
    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA certificate, DER-encoded.
    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// Signs a certificate made from `params` for a fresh key.
    fn issue(&self, params: CertificateParams) -> Identity {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Identity::new(cert, key)
    }

    /// A currently valid server certificate for `names` (DNS names or IP addresses).
    fn server_cert(&self, names: &[&str]) -> Identity {
        self.issue(leaf_params(names, ExtendedKeyUsagePurpose::ServerAuth))
    }

    /// A currently valid client certificate.
    fn client_cert(&self) -> Identity {
        self.issue(leaf_params(
            &["client.test"],
            ExtendedKeyUsagePurpose::ClientAuth,
        ))
    }
}

/// Parameters of an end-entity certificate for `names`; rcgen's default validity (1975 to
/// 4096) makes it currently valid.
fn leaf_params(names: &[&str], usage: ExtendedKeyUsagePurpose) -> CertificateParams {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "wsc test");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    params
}

/// A self-signed certificate (not a CA) for `names`.
fn self_signed(names: &[&str]) -> Identity {
    let key = KeyPair::generate().unwrap();
    let cert = leaf_params(names, ExtendedKeyUsagePurpose::ServerAuth)
        .self_signed(&key)
        .unwrap();
    Identity::new(cert, key)
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

/// A scratch directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    /// A new empty directory, unique to this process and call.
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("wsc-tls-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Writes `contents` to the file `name` in the directory and returns its path.
    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

/// A rustls server configuration presenting `identity`, requiring client certificates signed
/// by `client_ca` if given.
fn server_config(identity: &Identity, client_ca: Option<&TestCa>) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca.der()).unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(identity.chain.clone(), identity.private_key())
        .unwrap();
    Arc::new(config)
}

/// What the server saw on one connection that completed the WebSocket handshake.
#[derive(Debug)]
struct Served {
    /// The data messages received (and echoed).
    messages: Vec<Message>,
    /// The client's close frame.
    close: Option<CloseFrame>,
    /// The SNI name the client sent, if any.
    sni: Option<String>,
    /// The client's certificate, if it presented one.
    client_cert: Option<CertificateDer<'static>>,
    /// After the close handshake, the client ended TLS with close_notify (rather than
    /// dropping TCP, or nothing at all until the server closed).
    close_notify: bool,
}

/// Whether the peer ends `tls` with close_notify: a read then returns `Ok(0)` (without it,
/// TCP's end is `UnexpectedEof`, and a peer that waits for us to close first, a timeout).
fn ends_with_close_notify<S: io::Read + io::Write>(
    tls: &mut StreamOwned<ServerConnection, S>,
) -> bool {
    let mut rest = [0u8; 64];
    matches!(io::Read::read(tls, &mut rest), Ok(0))
}

/// A TLS WebSocket echo server on 127.0.0.1 that serves a fixed number of connections in turn.
struct EchoServer {
    port: u16,
    handle: JoinHandle<Vec<Result<Served, Error>>>,
}

impl EchoServer {
    /// Starts serving `connections` connections with `config`.
    fn start(config: Arc<ServerConfig>, connections: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = thread::spawn(move || {
            (0..connections)
                .map_while(|_| accept_tcp(&listener))
                .map(|tcp| serve(tcp, config.clone()))
                .collect()
        });
        EchoServer { port, handle }
    }

    /// The `wss://` URL of the server under `host`.
    fn url(&self, host: &str) -> String {
        format!("wss://{host}:{}/echo", self.port)
    }

    /// Waits for the server to finish and returns what happened on each connection.
    fn finish(self) -> Vec<Result<Served, Error>> {
        self.handle.join().expect("server thread panicked")
    }

    /// Waits for a server of one connection and returns its outcome.
    fn finish_one(self) -> Result<Served, Error> {
        let mut outcomes = self.finish();
        assert_eq!(outcomes.len(), 1, "the client never connected");
        outcomes.remove(0)
    }
}

/// Accepts one TCP connection, giving up after a while so that a client that never comes
/// cannot hold the thread forever.
fn accept_tcp(listener: &TcpListener) -> Option<TcpStream> {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + 2 * TIMEOUT;
    loop {
        match listener.accept() {
            Ok((tcp, _)) => {
                tcp.set_nonblocking(false).unwrap();
                tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
                tcp.set_write_timeout(Some(TIMEOUT)).unwrap();
                return Some(tcp);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(_) => return None,
        }
    }
}

/// Runs TLS (lazily, on the first read), the WebSocket handshake and an echo loop on `tcp`.
fn serve(tcp: TcpStream, config: Arc<ServerConfig>) -> Result<Served, Error> {
    let conn = ServerConnection::new(config).map_err(io::Error::other)?;
    let mut ws = wsc::server::accept(StreamOwned::new(conn, tcp))?;
    let tls = &ws.get_ref().conn;
    let sni = tls.server_name().map(str::to_owned);
    let client_cert = tls
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| cert.clone().into_owned());
    let mut messages = Vec::new();
    loop {
        match ws.read()? {
            message @ (Message::Text(_) | Message::Binary(_)) => {
                ws.send(message.clone())?;
                messages.push(message);
            }
            Message::Close(close) => {
                let close_notify = ends_with_close_notify(ws.get_mut());
                return Ok(Served {
                    messages,
                    close,
                    sni,
                    client_cert,
                    close_notify,
                });
            }
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

/// Connects to `url` with `tls`, every phase bounded.
fn connect(url: &str, tls: TlsOptions) -> Result<WebSocket<MaybeTlsStream>, Error> {
    ClientBuilder::new(url)
        .connect_timeout(TIMEOUT)
        .handshake_timeout(TIMEOUT)
        .read_timeout(Some(TIMEOUT))
        .write_timeout(Some(TIMEOUT))
        .close_timeout(Some(TIMEOUT))
        .tls(tls)
        .connect()
}

/// Trusts only `ca` (given as PEM text).
fn trusting(ca: &TestCa) -> TlsOptions {
    TlsOptions::new()
        .roots(Roots::None)
        .add_ca_pem(ca.pem().as_bytes())
        .unwrap()
}

/// Sends a text and a binary message, checks both come back, and closes; returns the
/// server's close frame.
fn echo_and_close(mut ws: WebSocket<MaybeTlsStream>) -> Option<CloseFrame> {
    assert!(
        matches!(ws.get_ref(), MaybeTlsStream::Tls(_)),
        "wss:// must run over TLS"
    );
    ws.send_text(TEXT).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text(TEXT));
    ws.send_binary(BINARY).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(BINARY));
    ws.close_and_wait(Some(CloseFrame::new(CloseCode::NORMAL, "bye")))
        .unwrap()
}

/// Runs a full echo exchange and checks what both sides saw; returns the server's view.
fn assert_echo_works(server: EchoServer, ws: WebSocket<MaybeTlsStream>) -> Served {
    let close = echo_and_close(ws);
    assert_eq!(
        close.map(|frame| frame.code),
        Some(CloseCode::NORMAL),
        "the server must answer the close"
    );
    let served = server.finish_one().expect("server failed");
    assert_eq!(
        served.messages,
        [Message::text(TEXT), Message::binary(BINARY)]
    );
    assert_eq!(
        served.close,
        Some(CloseFrame::new(CloseCode::NORMAL, "bye")),
        "the server must receive the client's close"
    );
    assert!(
        served.close_notify,
        "the client must end TLS with close_notify"
    );
    served
}

/// The certificate problem inside a TLS error, after checking the error names `host`.
fn certificate_error<'e>(err: &'e Error, host: &str) -> &'e CertificateError {
    match err {
        Error::Tls {
            host: named,
            source: rustls::Error::InvalidCertificate(problem),
        } => {
            assert_eq!(named, host, "the error must name the host");
            problem
        }
        other => panic!("expected a certificate error, got {other:?}"),
    }
}

/// The rustls error inside a crate error, if any (the server side reports it as I/O).
fn rustls_error(err: &Error) -> Option<&rustls::Error> {
    match err {
        Error::Tls { source, .. } => Some(source),
        Error::Io(e) => e.get_ref()?.downcast_ref(),
        _ => None,
    }
}

/// Asserts that the server side of a connection the client refused failed too.
fn assert_server_failed(server: EchoServer) {
    let outcome = server.finish_one();
    assert!(
        outcome.is_err(),
        "the server completed a handshake the client should have refused: {outcome:?}"
    );
}

/// Serves `identity` once and connects to it as `host` with `tls`: the client must refuse
/// (and the server fail); returns the client's error.
fn refused(identity: &Identity, host: &str, tls: TlsOptions) -> Error {
    let server = EchoServer::start(server_config(identity, None), 1);
    let err = connect(&server.url(host), tls).unwrap_err();
    assert_server_failed(server);
    err
}

/// A certificate error that says the certificate does not name the host.
fn is_for_another_name(problem: &CertificateError) -> bool {
    matches!(
        problem,
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
    )
}

/// A certificate error that says the certificate has expired.
fn is_expired(problem: &CertificateError) -> bool {
    matches!(
        problem,
        CertificateError::Expired | CertificateError::ExpiredContext { .. }
    )
}

// ---------------------------------------------------------------------------------------------
// A trusted CA
// ---------------------------------------------------------------------------------------------

#[test]
fn trusted_ca_as_pem_text_connects_and_echoes() {
    let ca = TestCa::new("wsc test CA");
    let server = EchoServer::start(server_config(&ca.server_cert(&["localhost"]), None), 1);

    let ws = connect(&server.url("localhost"), trusting(&ca)).unwrap();
    let served = assert_echo_works(server, ws);
    assert_eq!(
        served.sni.as_deref(),
        Some("localhost"),
        "SNI is sent for names"
    );
    assert_eq!(served.client_cert, None);
}

#[test]
fn trusted_ca_as_pem_file_connects_and_echoes() {
    let ca = TestCa::new("wsc test CA");
    let server = EchoServer::start(server_config(&ca.server_cert(&["localhost"]), None), 1);
    let dir = TempDir::new();
    let ca_file = dir.write("ca.pem", ca.pem());

    let tls = TlsOptions::new()
        .roots(Roots::None)
        .add_ca_pem_file(&ca_file)
        .unwrap();
    let ws = connect(&server.url("localhost"), tls).unwrap();
    assert_echo_works(server, ws);
}

#[test]
fn trusted_ca_as_der_connects() {
    let ca = TestCa::new("wsc test CA");
    let server = EchoServer::start(server_config(&ca.server_cert(&["localhost"]), None), 1);

    let tls = TlsOptions::new().roots(Roots::None).add_ca_der(ca.der());
    let ws = connect(&server.url("localhost"), tls).unwrap();
    assert_echo_works(server, ws);
}

// ---------------------------------------------------------------------------------------------
// Certificates the client must refuse
// ---------------------------------------------------------------------------------------------

#[test]
fn certificate_for_another_name_is_refused() {
    let ca = TestCa::new("wsc test CA");
    let err = refused(
        &ca.server_cert(&["other.example"]),
        "localhost",
        trusting(&ca),
    );
    assert!(
        is_for_another_name(certificate_error(&err, "localhost")),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("localhost"), "{message}");
    assert!(
        message.contains("the certificate does not name this host"),
        "{message}"
    );
}

#[test]
fn certificate_with_only_a_dns_name_does_not_match_an_ip_address() {
    let ca = TestCa::new("wsc test CA");
    let err = refused(&ca.server_cert(&["localhost"]), "127.0.0.1", trusting(&ca));
    assert!(
        is_for_another_name(certificate_error(&err, "127.0.0.1")),
        "{err:?}"
    );
}

#[test]
fn expired_certificate_is_refused() {
    let ca = TestCa::new("wsc test CA");
    let mut params = leaf_params(&["localhost"], ExtendedKeyUsagePurpose::ServerAuth);
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    let err = refused(&ca.issue(params), "localhost", trusting(&ca));
    assert!(is_expired(certificate_error(&err, "localhost")), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("localhost"), "{message}");
    assert!(message.contains("the certificate has expired"), "{message}");
}

/// A self-signed certificate marked CA:TRUE for `names`, as `openssl req -x509` makes by
/// default, valid from `from` to `until` (years).
fn self_signed_ca_cert(names: &[&str], from: i32, until: i32) -> Identity {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.not_before = rcgen::date_time_ymd(from, 1, 1);
    params.not_after = rcgen::date_time_ymd(until, 1, 1);
    let key = KeyPair::generate().unwrap();
    Identity::new(params.self_signed(&key).unwrap(), key)
}

/// Trusts only the certificate of `identity` (given as PEM text).
fn trusting_as_is(identity: &Identity) -> TlsOptions {
    TlsOptions::new()
        .roots(Roots::None)
        .add_ca_pem(identity.cert_pem.as_bytes())
        .unwrap()
}

#[test]
fn a_self_signed_ca_certificate_trusted_as_it_is_connects_as_curl_would() {
    let identity = self_signed_ca_cert(&["localhost"], 2000, 4000);
    let server = EchoServer::start(server_config(&identity, None), 1);

    let ws = connect(&server.url("localhost"), trusting_as_is(&identity)).unwrap();
    assert_echo_works(server, ws);
}

#[test]
fn a_certificate_trusted_as_it_is_still_only_serves_its_own_names() {
    let identity = self_signed_ca_cert(&["localhost"], 2000, 4000);
    let err = refused(&identity, "127.0.0.1", trusting_as_is(&identity));
    assert!(
        is_for_another_name(certificate_error(&err, "127.0.0.1")),
        "{err:?}"
    );
}

#[test]
fn an_expired_certificate_trusted_as_it_is_is_refused_as_expired() {
    let identity = self_signed_ca_cert(&["localhost"], 2000, 2001);
    let err = refused(&identity, "localhost", trusting_as_is(&identity));
    assert!(is_expired(certificate_error(&err, "localhost")), "{err:?}");
}

/// A private CA's leaf given alone (`--cacert server.pem`), its CA not trusted: accepted as
/// curl takes it, but still only for its names and within its dates; another leaf of the
/// same CA is not.
#[test]
fn a_private_cas_leaf_trusted_as_it_is_connects_as_curl_would() {
    let ca = TestCa::new("private CA");
    let leaf = ca.server_cert(&["localhost"]);
    let server = EchoServer::start(server_config(&leaf, None), 1);
    let ws = connect(&server.url("localhost"), trusting_as_is(&leaf)).unwrap();
    assert_echo_works(server, ws);

    let err = refused(&leaf, "127.0.0.1", trusting_as_is(&leaf));
    assert!(
        is_for_another_name(certificate_error(&err, "127.0.0.1")),
        "{err:?}"
    );
    let sibling = ca.server_cert(&["localhost"]);
    assert_unknown_issuer(&refused(&sibling, "localhost", trusting_as_is(&leaf)));
    let mut params = leaf_params(&["localhost"], ExtendedKeyUsagePurpose::ServerAuth);
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    let expired = ca.issue(params);
    let err = refused(&expired, "localhost", trusting_as_is(&expired));
    assert!(is_expired(certificate_error(&err, "localhost")), "{err:?}");
}

#[test]
fn a_ca_certificate_that_is_no_certificate_is_said_to_be_ours() {
    let tls = TlsOptions::new()
        .roots(Roots::None)
        .add_ca_der(vec![0x30, 0x03, 0x02, 0x01, 0x01]);
    // Said before any connection is made (nothing listens there).
    let err = connect("wss://localhost:1/", tls).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("unusable CA certificate: it is not a well-formed X.509"),
        "{message}"
    );
    assert!(!message.contains("peer"), "{message}");
}

#[test]
fn a_ca_certificate_as_the_servers_own_is_refused_with_a_reason_a_user_can_read() {
    // Issued by a trusted CA and naming the host, but itself a CA's certificate, and not one
    // the user trusts as it is.
    let ca = TestCa::new("wsc test CA");
    let mut params = leaf_params(&["localhost"], ExtendedKeyUsagePurpose::ServerAuth);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let err = refused(&ca.issue(params), "localhost", trusting(&ca));
    assert!(
        matches!(
            certificate_error(&err, "localhost"),
            CertificateError::Other(_)
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("the server presents a CA certificate as its own"),
        "{message}"
    );
}

/// Asserts an untrusted-issuer error whose message says how to fix it.
fn assert_unknown_issuer(err: &Error) {
    assert!(
        matches!(
            certificate_error(err, "localhost"),
            CertificateError::UnknownIssuer
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("not signed by a trusted CA"), "{message}");
    assert!(
        message.contains("add_ca_pem_file"),
        "the message must hint at a fix: {message}"
    );
}

#[test]
fn certificate_from_an_untrusted_ca_is_refused_with_custom_roots() {
    let server_ca = TestCa::new("server CA");
    let other_ca = TestCa::new("some other CA");
    let server = EchoServer::start(
        server_config(&server_ca.server_cert(&["localhost"]), None),
        1,
    );

    let err = connect(&server.url("localhost"), trusting(&other_ca)).unwrap_err();
    assert_unknown_issuer(&err);
    assert_server_failed(server);
}

#[test]
#[cfg(any(feature = "webpki-roots", feature = "native-roots"))]
fn certificate_from_an_untrusted_ca_is_refused_with_default_roots() {
    let ca = TestCa::new("wsc test CA");
    let err = refused(
        &ca.server_cert(&["localhost"]),
        "localhost",
        TlsOptions::new(),
    );
    assert_unknown_issuer(&err);
}

// ---------------------------------------------------------------------------------------------
// IP addresses
// ---------------------------------------------------------------------------------------------

#[test]
fn ip_address_in_the_certificate_matches_and_no_sni_is_sent() {
    let ca = TestCa::new("wsc test CA");
    let server = EchoServer::start(server_config(&ca.server_cert(&["127.0.0.1"]), None), 1);

    let ws = connect(&server.url("127.0.0.1"), trusting(&ca)).unwrap();
    let served = assert_echo_works(server, ws);
    assert_eq!(served.sni, None, "SNI must not carry an IP address");
}

// ---------------------------------------------------------------------------------------------
// Mutual TLS
// ---------------------------------------------------------------------------------------------

/// A server that requires a client certificate signed by `ca`.
fn mtls_server(ca: &TestCa, connections: usize) -> EchoServer {
    EchoServer::start(
        server_config(&ca.server_cert(&["localhost"]), Some(ca)),
        connections,
    )
}

#[test]
fn client_certificate_from_pem_files_is_accepted() {
    let ca = TestCa::new("wsc test CA");
    let server = mtls_server(&ca, 1);
    let client = ca.client_cert();
    let dir = TempDir::new();
    let cert_file = dir.write("client.pem", &client.cert_pem);
    let key_file = dir.write("client.key", &client.key_pem);

    let tls = trusting(&ca)
        .client_cert_pem_files(&cert_file, &key_file)
        .unwrap();
    let ws = connect(&server.url("localhost"), tls).unwrap();
    let served = assert_echo_works(server, ws);
    assert_eq!(served.client_cert.as_ref(), Some(&client.chain[0]));
}

#[test]
fn client_certificate_in_memory_is_accepted() {
    let ca = TestCa::new("wsc test CA");
    let server = mtls_server(&ca, 1);
    let client = ca.client_cert();

    let tls = trusting(&ca).client_cert(client.chain.clone(), client.private_key());
    let ws = connect(&server.url("localhost"), tls).unwrap();
    let served = assert_echo_works(server, ws);
    assert_eq!(served.client_cert.as_ref(), Some(&client.chain[0]));
}

/// Asserts that a client refused by an mTLS server got an error rather than a connection.
///
/// With TLS 1.3 the client finishes its handshake before the server checks its certificate,
/// so the refusal arrives during the WebSocket handshake: normally the server's `alert`, but
/// the server's close may reset the connection first.
fn assert_refused_by_server(
    result: Result<WebSocket<MaybeTlsStream>, Error>,
    alert: AlertDescription,
) {
    let err = result.expect_err("the server must refuse the client");
    match &err {
        Error::Tls { host, source } => {
            assert_eq!(host, "localhost");
            assert_eq!(source, &rustls::Error::AlertReceived(alert), "{err:?}");
        }
        Error::Io(_)
        | Error::ConnectionReset
        | Error::Handshake(HandshakeError::ConnectionClosed) => {}
        other => panic!("expected a TLS or I/O error, got {other:?}"),
    }
}

#[test]
fn missing_client_certificate_is_refused() {
    let ca = TestCa::new("wsc test CA");
    let server = mtls_server(&ca, 1);

    let started = Instant::now();
    assert_refused_by_server(
        connect(&server.url("localhost"), trusting(&ca)),
        AlertDescription::CertificateRequired,
    );
    assert!(
        started.elapsed() < TIMEOUT,
        "the refusal must not wait for a timeout"
    );
    let served = server.finish_one();
    let server_err = served.expect_err("the server must refuse the client");
    assert!(
        matches!(
            rustls_error(&server_err),
            Some(rustls::Error::NoCertificatesPresented)
        ),
        "{server_err:?}"
    );
}

#[test]
fn client_certificate_from_another_ca_is_refused() {
    let ca = TestCa::new("wsc test CA");
    let server = mtls_server(&ca, 1);
    let stranger = TestCa::new("stranger CA").client_cert();

    let tls = trusting(&ca).client_cert(stranger.chain.clone(), stranger.private_key());
    assert_refused_by_server(
        connect(&server.url("localhost"), tls),
        AlertDescription::UnknownCA,
    );
    let server_err = server.finish_one().expect_err("the server must refuse");
    assert!(
        matches!(
            rustls_error(&server_err),
            Some(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            ))
        ),
        "{server_err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Skipping verification
// ---------------------------------------------------------------------------------------------

#[test]
fn danger_accept_invalid_certs_connects_to_a_self_signed_wrong_name() {
    let identity = self_signed(&["wrong.example"]);
    let server = EchoServer::start(server_config(&identity, None), 2);
    let url = server.url("localhost");

    // Without the option, the same server is refused.
    let err = connect(
        &url,
        TlsOptions::new()
            .roots(Roots::None)
            .add_ca_der(identity.chain[0].clone()),
    )
    .unwrap_err();
    assert!(
        is_for_another_name(certificate_error(&err, "localhost")),
        "{err:?}"
    );

    let tls = TlsOptions::new().danger_accept_invalid_certs(true);
    let close = echo_and_close(connect(&url, tls).unwrap());
    assert_eq!(close.map(|frame| frame.code), Some(CloseCode::NORMAL));

    let outcomes = server.finish();
    assert_eq!(outcomes.len(), 2);
    assert!(outcomes[0].is_err(), "{:?}", outcomes[0]);
    let served = outcomes[1].as_ref().expect("server failed");
    assert_eq!(
        served.messages,
        [Message::text(TEXT), Message::binary(BINARY)]
    );
}

// ---------------------------------------------------------------------------------------------
// A server that never answers
// ---------------------------------------------------------------------------------------------

#[test]
fn silent_server_times_out_in_the_tls_handshake() {
    // The kernel completes the TCP handshake from the backlog; nobody ever speaks TLS.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("wss://localhost:{}/", listener.local_addr().unwrap().port());
    let ca = TestCa::new("wsc test CA");

    // Connect in a thread, so that a handshake timeout that is not applied fails the test
    // instead of hanging it.
    let tls = trusting(&ca);
    let (done, outcome) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let result = ClientBuilder::new(url)
            .connect_timeout(TIMEOUT)
            .handshake_timeout(Duration::from_millis(300))
            .tls(tls)
            .connect();
        let _ = done.send(result.map(drop));
    });
    let err = outcome
        .recv_timeout(TIMEOUT)
        .expect("the handshake timeout was not applied")
        .unwrap_err();
    assert!(
        matches!(err, Error::Timeout(Phase::TlsHandshake)),
        "{err:?}"
    );
    drop(listener);
}

/// A server on 127.0.0.1 that reads the ClientHello of each of `connections` connections
/// and hangs up (`reset`: with a TCP reset); returns the `wss://localhost` URL.
fn hanging_up_on_tls(connections: usize, reset: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("wss://localhost:{}/", listener.local_addr().unwrap().port());
    thread::spawn(move || {
        for _ in 0..connections {
            let Some(mut tcp) = accept_tcp(&listener) else {
                return;
            };
            let mut hello = [0u8; 512];
            let _ = io::Read::read(&mut tcp, &mut hello);
            if reset {
                let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
            }
        }
    });
    url
}

#[test]
fn a_server_hanging_up_in_the_tls_handshake_is_named_with_a_hint() {
    for reset in [false, true] {
        let url = hanging_up_on_tls(1, reset);
        let err = connect(&url, trusting(&TestCa::new("wsc test CA"))).unwrap_err();
        match &err {
            Error::TlsClosed { host } => assert_eq!(host, "localhost"),
            other => panic!("reset {reset}: {other:?}"),
        }
        assert!(
            err.to_string().contains("during the TLS handshake"),
            "{err}"
        );
        assert!(err.to_string().contains("ws:// URL"), "{err}");
    }
}

#[test]
fn tls_alerts_that_end_the_handshake_come_with_a_hint() {
    for (alert, hint) in [(70u8, "TLS 1.2 and 1.3"), (40, "no cipher suite in common")] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("wss://localhost:{}/", listener.local_addr().unwrap().port());
        let server = thread::spawn(move || {
            let mut tcp = accept_tcp(&listener).unwrap();
            let mut hello = [0u8; 512];
            let _ = io::Read::read(&mut tcp, &mut hello);
            // A fatal alert record, as an old or picky server sends it.
            let _ = io::Write::write_all(&mut tcp, &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, alert]);
            thread::sleep(Duration::from_millis(200));
        });
        let err = connect(&url, trusting(&TestCa::new("wsc test CA"))).unwrap_err();
        assert!(matches!(err, Error::Tls { .. }), "{err:?}");
        assert!(err.to_string().contains(hint), "{err}");
        server.join().unwrap();
    }
}

#[cfg(feature = "tokio")]
#[test]
fn an_async_client_names_a_server_hanging_up_in_the_tls_handshake() {
    let url = hanging_up_on_tls(1, false);
    let err = async_connect_error(url, &TestCa::new("wsc test CA"));
    assert!(
        matches!(&err, Error::TlsClosed { host } if host == "localhost"),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Unusable CA and key files
// ---------------------------------------------------------------------------------------------

/// The message of a TLS configuration error, after checking the variant.
fn config_error(result: Result<TlsOptions, Error>) -> String {
    match result {
        Err(Error::TlsConfig(message)) => message,
        Err(other) => panic!("expected a TLS configuration error, got {other:?}"),
        Ok(_) => panic!("expected a TLS configuration error, got options"),
    }
}

/// Whether `message` names `path`.
fn names_path(message: &str, path: &Path) -> bool {
    message.contains(&path.display().to_string())
}

#[test]
fn missing_ca_file_is_a_config_error_naming_the_path() {
    let dir = TempDir::new();
    let path = dir.0.join("no-such-ca.pem");

    let message = config_error(TlsOptions::new().add_ca_pem_file(&path));
    assert!(names_path(&message, &path), "{message}");
}

#[test]
fn an_encrypted_client_key_is_refused_with_a_reason() {
    let dir = TempDir::new();
    let ca = TestCa::new("wsc test CA");
    let cert = dir.write("client.pem", ca.pem());
    let key = dir.write(
        "client.key",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n\
         -----END ENCRYPTED PRIVATE KEY-----\n",
    );
    let message = config_error(TlsOptions::new().client_cert_pem_files(&cert, &key));
    assert!(names_path(&message, &key), "{message}");
    assert!(message.contains("encrypted"), "{message}");
}

#[test]
fn ca_file_without_certificates_is_a_config_error_naming_the_path() {
    let dir = TempDir::new();
    let key_only = dir.write("key-only.pem", self_signed(&["localhost"]).key_pem);
    let garbage = dir.write("garbage.pem", "this is not PEM at all\n");

    for path in [key_only, garbage] {
        let message = config_error(TlsOptions::new().add_ca_pem_file(&path));
        assert!(names_path(&message, &path), "{message}");
        assert!(message.contains("no PEM certificate"), "{message}");
    }
}

#[test]
fn ca_pem_text_without_certificates_is_a_config_error() {
    let message = config_error(TlsOptions::new().add_ca_pem(b"nothing here"));
    assert!(message.contains("no PEM certificate"), "{message}");
}

#[test]
fn missing_client_key_file_is_a_config_error_naming_the_path() {
    let dir = TempDir::new();
    let client = TestCa::new("wsc test CA").client_cert();
    let cert_file = dir.write("client.pem", &client.cert_pem);
    let key_file = dir.0.join("no-such-key.pem");

    let message = config_error(TlsOptions::new().client_cert_pem_files(&cert_file, &key_file));
    assert!(names_path(&message, &key_file), "{message}");
}

/// A key file with no key, or the key of another certificate: a reason the user can act
/// on (rustls and pki-types said "no items found" and "keys may not be consistent:
/// KeyMismatch").
#[test]
fn a_client_key_that_is_missing_from_its_file_or_not_the_certificates_is_named_as_such() {
    let dir = TempDir::new();
    let ca = TestCa::new("wsc test CA");
    let client = ca.client_cert();
    let cert_file = dir.write("client.pem", &client.cert_pem);
    // The certificate file given as the key too.
    let message = config_error(TlsOptions::new().client_cert_pem_files(&cert_file, &cert_file));
    assert!(names_path(&message, &cert_file), "{message}");
    assert!(message.contains("no private key in it"), "{message}");
    // Another certificate's key: refused when the configuration is built.
    let other_key = dir.write("other.key", ca.client_cert().key_pem);
    let tls = TlsOptions::new()
        .client_cert_pem_files(&cert_file, &other_key)
        .unwrap();
    let message = match tls.build() {
        Err(Error::TlsConfig(message)) => message,
        other => panic!("expected a TLS configuration error, got {other:?}"),
    };
    assert!(
        message.contains("the key is not the certificate's"),
        "{message}"
    );
}

// ---------------------------------------------------------------------------------------------
// The async client (wsc::tokio) over tokio-rustls: same verification, same errors
// ---------------------------------------------------------------------------------------------

#[cfg(feature = "tokio")]
fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The error of an async connection to `url` trusting only `ca`, which must fail.
#[cfg(feature = "tokio")]
fn async_connect_error(url: String, ca: &TestCa) -> Error {
    let tls = trusting(ca);
    block_on(async move {
        wsc::ClientBuilder::new(url)
            .tls(tls)
            .handshake_timeout(TIMEOUT)
            .connect_async()
            .await
            .unwrap_err()
    })
}

#[cfg(feature = "tokio")]
#[test]
fn async_client_connects_over_tls_and_echoes() {
    let ca = TestCa::new("wsc test CA");
    let server = EchoServer::start(server_config(&ca.server_cert(&["localhost"]), None), 1);
    let url = server.url("localhost");
    let close = block_on(async move {
        let (mut ws, response) = wsc::ClientBuilder::new(url)
            .tls(trusting(&ca))
            .handshake_timeout(TIMEOUT)
            .connect_async()
            .await
            .unwrap();
        assert_eq!(response.status, 101);
        ws.send_text("over tls, async").await.unwrap();
        let echoed = ws.recv().await.unwrap().unwrap();
        assert_eq!(echoed, Message::text("over tls, async"));
        ws.close(Some(CloseFrame::new(1000, "bye"))).await.unwrap()
    });
    assert_eq!(close.map(|f| f.code.0), Some(1000));
    let served = server.finish_one().unwrap();
    assert_eq!(served.sni.as_deref(), Some("localhost"));
    assert_eq!(served.messages, [Message::text("over tls, async")]);
    assert!(
        served.close_notify,
        "the client must end TLS with close_notify"
    );
}

/// `connect_on_tcp` and `connect_async_on_tcp` run TLS over the caller's TCP stream for
/// `wss://`: the name of the URL is verified and sent as SNI, and the connection ends with
/// close_notify as one the builder connected itself.
#[test]
fn connect_on_tcp_runs_tls_over_the_callers_stream() {
    let ca = TestCa::new("wsc test CA");
    let server = EchoServer::start(server_config(&ca.server_cert(&["localhost"]), None), 1);
    let tcp = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let ws = ClientBuilder::new(server.url("localhost"))
        .handshake_timeout(TIMEOUT)
        .read_timeout(TIMEOUT)
        .tls(trusting(&ca))
        .connect_on_tcp(tcp)
        .unwrap();
    let served = assert_echo_works(server, ws);
    assert_eq!(served.sni.as_deref(), Some("localhost"));

    // A name the certificate does not carry is refused as usual.
    let server = EchoServer::start(server_config(&ca.server_cert(&["localhost"]), None), 1);
    let tcp = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let err = ClientBuilder::new(server.url("other.test"))
        .handshake_timeout(TIMEOUT)
        .tls(trusting(&ca))
        .connect_on_tcp(tcp)
        .unwrap_err();
    certificate_error(&err, "other.test");
    assert_server_failed(server);
}

#[cfg(feature = "tokio")]
#[test]
fn connect_async_on_tcp_runs_tls_over_the_callers_stream() {
    let ca = TestCa::new("wsc test CA");
    let server = EchoServer::start(server_config(&ca.server_cert(&["localhost"]), None), 1);
    let (url, port) = (server.url("localhost"), server.port);
    let close = block_on(async move {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let (mut ws, response) = wsc::ClientBuilder::new(url)
            .tls(trusting(&ca))
            .handshake_timeout(TIMEOUT)
            .connect_async_on_tcp(tcp)
            .await
            .unwrap();
        assert_eq!(response.status, 101);
        assert!(matches!(ws.get_ref(), wsc::tokio::TokioStream::Tls(_)));
        ws.send_text("own tcp").await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("own tcp"));
        ws.close(Some(CloseFrame::new(1000, "bye"))).await.unwrap()
    });
    assert_eq!(close.map(|f| f.code.0), Some(1000));
    let served = server.finish_one().unwrap();
    assert_eq!(served.sni.as_deref(), Some("localhost"));
    assert!(
        served.close_notify,
        "the client must end TLS with close_notify"
    );
}

/// A server that closes first (1001) over TLS, then reports whether the client ended TLS
/// with close_notify after its reply.
fn closing_tls_server() -> (u16, TestCa, JoinHandle<bool>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let (port, ca) = tls_server_after_handshake(move |tls| {
        let conn = wsc::proto::Connection::new(wsc::proto::Role::Server, Default::default());
        let mut ws = WebSocket::from_connection(tls, conn, &[]);
        ws.close(Some(CloseFrame::new(CloseCode::GOING_AWAY, "restart")))
            .unwrap();
        loop {
            match ws.read() {
                Ok(Message::Close(_)) => break,
                Ok(_) => {}
                Err(e) => panic!("no close reply: {e}"),
            }
        }
        let _ = tx.send(ends_with_close_notify(ws.get_mut()));
    });
    let handle = thread::spawn(move || rx.recv_timeout(2 * TIMEOUT).unwrap_or(false));
    (port, ca, handle)
}

#[test]
fn a_client_answering_the_servers_close_ends_tls_with_close_notify() {
    let (port, ca, notified) = closing_tls_server();
    let mut ws = connect(&format!("wss://localhost:{port}/"), trusting(&ca)).unwrap();
    assert!(matches!(ws.read().unwrap(), Message::Close(Some(_))));
    assert!(
        notified.join().unwrap(),
        "no close_notify after the close reply"
    );
}

#[cfg(feature = "tokio")]
#[test]
fn an_async_client_answering_the_servers_close_ends_tls_with_close_notify() {
    let (port, ca, notified) = closing_tls_server();
    block_on(async move {
        let (mut ws, _) = wsc::ClientBuilder::new(format!("wss://localhost:{port}/"))
            .tls(trusting(&ca))
            .connect_async()
            .await
            .unwrap();
        assert!(matches!(ws.recv().await, Some(Ok(Message::Close(Some(_))))));
        assert!(ws.recv().await.is_none());
    });
    assert!(
        notified.join().unwrap(),
        "no close_notify after the close reply"
    );
}

#[cfg(feature = "tokio")]
#[test]
fn async_client_refuses_a_wrong_name_with_the_same_error() {
    let ca = TestCa::new("wsc test CA");
    let server = EchoServer::start(server_config(&ca.server_cert(&["other.example"]), None), 1);
    let err = async_connect_error(server.url("localhost"), &ca);
    assert!(
        is_for_another_name(certificate_error(&err, "localhost")),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("the certificate does not name this host"),
        "{err}"
    );
    assert_server_failed(server);
}

/// A TLS server on 127.0.0.1 (certificate for localhost from a new CA) that runs `then` on the
/// stream of its first connection once the WebSocket handshake is done. Returns the port and
/// the CA to trust.
fn tls_server_after_handshake(
    then: impl FnOnce(StreamOwned<ServerConnection, TcpStream>) + Send + 'static,
) -> (u16, TestCa) {
    tls_server_after_handshake_on(TcpListener::bind("127.0.0.1:0").unwrap(), then)
}

/// [`tls_server_after_handshake`] on `listener` (whose socket options the connection gets).
fn tls_server_after_handshake_on(
    listener: TcpListener,
    then: impl FnOnce(StreamOwned<ServerConnection, TcpStream>) + Send + 'static,
) -> (u16, TestCa) {
    let ca = TestCa::new("wsc test CA");
    let config = server_config(&ca.server_cert(&["localhost"]), None);
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        let tcp = accept_tcp(&listener).unwrap();
        let tls = StreamOwned::new(ServerConnection::new(config).unwrap(), tcp);
        then(wsc::server::accept(tls).unwrap().into_inner());
    });
    (port, ca)
}

#[test]
fn close_and_wait_over_tls_is_bounded_by_the_close_timeout_when_the_server_reads_nothing() {
    let (port, ca) = tls_server_after_handshake(|_tls| {
        // Nothing is read.
        thread::sleep(Duration::from_secs(20));
    });
    let mut ws = ClientBuilder::new(format!("wss://localhost:{port}/"))
        .read_timeout(Some(Duration::from_secs(6)))
        .write_timeout(Some(Duration::from_millis(800)))
        .close_timeout(Some(Duration::from_secs(1)))
        .uncompressed()
        .tls(trusting(&ca))
        .connect()
        .unwrap();
    let sent = ws.send_binary(&vec![7u8; 12 << 20]).unwrap_err();
    assert!(matches!(sent, Error::Timeout(Phase::Write)), "{sent}");
    let start = Instant::now();
    let err = ws.close_and_wait(None).unwrap_err();
    // Neither the read timeout (6 s) nor a wait per write: the close timeout bounds it all.
    assert!(matches!(err, Error::Timeout(Phase::Close)), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

/// A client (read timeout `read_timeout`) of a TLS server that sends 60,000 pings (7.6 MB,
/// more than the socket buffers hold) and never reads the pongs, then ends with `end`, and
/// keeps the TCP connection open.
fn ping_flood_over_tls(
    read_timeout: Duration,
    end: impl FnOnce(&mut StreamOwned<ServerConnection, TcpStream>) + Send + 'static,
) -> WebSocket<MaybeTlsStream> {
    ping_flood_server(end)
        .read_timeout(Some(read_timeout))
        .connect()
        .unwrap()
}

/// The builder for a client of the server of [`ping_flood_over_tls`].
fn ping_flood_server(
    end: impl FnOnce(&mut StreamOwned<ServerConnection, TcpStream>) + Send + 'static,
) -> ClientBuilder {
    use std::io::Write as _;
    let (port, ca) = tls_server_after_handshake(|mut tls| {
        let burst = ping_burst(1000);
        for _ in 0..FLOOD_PINGS / 1000 {
            tls.write_all(&burst).unwrap();
        }
        end(&mut tls);
        tls.flush().unwrap();
        thread::sleep(Duration::from_secs(20));
    });
    ClientBuilder::new(format!("wss://localhost:{port}/"))
        .uncompressed()
        .tls(trusting(&ca))
}

const FLOOD_PINGS: usize = 60_000;

#[test]
fn a_ping_flood_over_tls_from_a_peer_that_reads_nothing_does_not_hold_reads_up() {
    use std::io::Write as _;
    let mut ws = ping_flood_over_tls(Duration::from_secs(5), |tls| {
        tls.write_all(&[0x81, 4, b'd', b'o', b'n', b'e']).unwrap();
    });
    let start = Instant::now();
    let mut pings = 0;
    loop {
        match ws.read().unwrap() {
            Message::Ping(_) => pings += 1,
            Message::Text(t) => {
                assert_eq!(t, "done");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(pings, FLOOD_PINGS);
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_tls_close_behind_pongs_the_socket_has_no_room_for_ends_reads() {
    // close_notify with no WebSocket close.
    let mut ws = ping_flood_over_tls(Duration::from_secs(2), |tls| tls.conn.send_close_notify());
    let err = loop {
        match ws.read() {
            Ok(Message::Ping(_)) => {}
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => break e,
        }
    };
    // Not a read timeout (before, it came at once and again at every read, forever): the
    // peer ended the stream without a WebSocket close.
    assert!(matches!(err, Error::ConnectionReset), "{err:?}");
    assert!(matches!(ws.read(), Err(Error::ConnectionClosed)));
}

/// A client over TLS to a server that reads nothing. On Linux, the server's receive buffer
/// and the client's send buffer are fixed (64 KiB asked), so that every such connection
/// takes as much before it is full: autotuned, they vary from one to the next.
fn connect_to_a_server_that_reads_nothing(
    write_timeout: Duration,
    close_timeout: Duration,
) -> WebSocket<MaybeTlsStream> {
    #[cfg(target_os = "linux")]
    const BUFFER: usize = 64 << 10;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    #[cfg(target_os = "linux")]
    socket2::SockRef::from(&listener)
        .set_recv_buffer_size(BUFFER)
        .unwrap();
    let (port, ca) =
        tls_server_after_handshake_on(listener, |_tls| thread::sleep(Duration::from_secs(20)));
    let ws = ClientBuilder::new(format!("wss://localhost:{port}/"))
        .write_timeout(Some(write_timeout))
        .close_timeout(Some(close_timeout))
        .uncompressed()
        .tls(trusting(&ca))
        .connect()
        .unwrap();
    #[cfg(target_os = "linux")]
    socket2::SockRef::from(ws.get_ref().tcp())
        .set_send_buffer_size(BUFFER)
        .unwrap();
    ws
}

/// A server that reads, slowly (512 bytes every 100 ms), through small socket buffers: each
/// socket write makes a little progress before its timeout. Over TLS one flush of ours is
/// many socket writes (rustls writes all it holds), and the close timeout was armed once
/// per flush: closing behind 4 MiB took 20 s for a 1 s close timeout.
#[test]
#[cfg(target_os = "linux")]
fn close_over_tls_is_bounded_by_the_close_timeout_against_a_slow_reader() {
    use std::io::Read as _;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    socket2::SockRef::from(&listener)
        .set_recv_buffer_size(4096)
        .unwrap();
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let (port, ca) = tls_server_after_handshake_on(listener, move |tls| {
        let mut raw = tls.sock;
        let mut piece = [0u8; 512];
        while stopped.try_recv().is_err() {
            if !matches!(raw.read(&mut piece), Ok(n) if n > 0) {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    });
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket2::SockRef::from(&tcp)
        .set_send_buffer_size(8192)
        .unwrap();
    let mut ws = ClientBuilder::new(format!("wss://localhost:{port}/"))
        .close_timeout(Some(Duration::from_secs(1)))
        .uncompressed()
        .tls(trusting(&ca))
        .connect_on_tcp(tcp)
        .unwrap();
    ws.queue(Message::Binary(vec![0u8; 4 << 20].into()))
        .unwrap();
    let start = Instant::now();
    let closed = ws.close_and_wait(None);
    let took = start.elapsed();
    let _ = stop.send(());
    assert!(
        matches!(closed, Err(Error::Timeout(Phase::Close))),
        "{closed:?}"
    );
    assert!(took < Duration::from_secs(4), "{took:?}");
}

/// A TLS record trickled a byte every 10 ms (1.3 s in all): rustls reads until it is whole,
/// and each socket read got the read timeout afresh, so a read under a 300 ms deadline lasted
/// until the record was in (a probe: 17 s at 40 ms a byte for a bigger record). The
/// deadline now bounds every socket read; the message still arrives whole at a later call.
#[test]
fn a_read_deadline_bounds_a_read_while_a_tls_record_trickles_in() {
    use std::io::Write as _;
    let (port, ca) = tls_server_after_handshake(|mut tls| {
        tls.conn.writer().write_all(&[0x82, 100]).unwrap();
        tls.conn.writer().write_all(&[7u8; 100]).unwrap();
        let mut record = Vec::new();
        while tls.conn.wants_write() {
            tls.conn.write_tls(&mut record).unwrap();
        }
        tls.sock.set_nodelay(true).unwrap();
        for byte in record {
            if tls.sock.write_all(&[byte]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        thread::sleep(Duration::from_secs(5));
    });
    let mut ws = ClientBuilder::new(format!("wss://localhost:{port}/"))
        .read_timeout(Some(Duration::from_secs(1)))
        .uncompressed()
        .tls(trusting(&ca))
        .connect()
        .unwrap();
    let start = Instant::now();
    ws.set_read_deadline(Some(start + Duration::from_millis(300)));
    let first = ws.read();
    let took = start.elapsed();
    assert!(
        matches!(first, Err(Error::Timeout(Phase::Read))),
        "{first:?}"
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
    // Lifted, the read goes on with what had arrived and gets the whole message.
    ws.set_read_deadline(None);
    ws.set_read_timeout(Some(TIMEOUT)).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Binary(vec![7u8; 100].into()));
}

#[test]
fn close_and_wait_after_a_close_that_timed_out_inside_tls_is_bounded_by_the_close_timeout() {
    const CHUNK: usize = 50_000;
    // The write timeout the shorter: `close` then leaves the close queued (a longer one
    // would make `close` itself wait the close timeout and give up).
    let write_timeout = Duration::from_millis(300);
    let close_timeout = Duration::from_millis(1500);
    // How many messages the sockets take when nobody reads them.
    let mut probe =
        connect_to_a_server_that_reads_nothing(Duration::from_millis(200), close_timeout);
    let mut room: usize = 0;
    while probe.send_binary(&[1u8; CHUNK]).is_ok() {
        room += 1;
    }
    // The state sought: the sockets full, and rustls (empty until then) took the last
    // message and the close frame whole, so the connection's own queue is empty while the
    // stream still holds them. Filling to the room measured gets there at once here; a few
    // tries with a message or two fewer or more allow for sockets that take a little less
    // or more.
    let fills = [0, -1, 1, -2, 2, -3].map(|d| room.checked_add_signed(d));
    for fill in fills.into_iter().flatten() {
        let mut ws = connect_to_a_server_that_reads_nothing(write_timeout, close_timeout);
        if (0..fill).any(|_| ws.send_binary(&[1u8; CHUNK]).is_err()) {
            continue;
        }
        ws.feed(Message::Binary(vec![2u8; CHUNK].into())).unwrap();
        let closed = ws.close(None);
        if !matches!(closed, Err(Error::Timeout(Phase::Write)))
            || ws.connection().has_pending_output()
        {
            continue;
        }
        // What the CLI checks before it calls an unanswered close a clean end.
        assert!(ws.has_unsent_output());
        let start = Instant::now();
        let err = ws.close_and_wait(None).unwrap_err();
        // Before, what the stream held was flushed under the write timeout alone:
        // Timeout(Write) after 0.3 s.
        assert!(matches!(err, Error::Timeout(Phase::Close)), "{err}");
        assert!(
            start.elapsed() < close_timeout + Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        return;
    }
    panic!("never got a close that timed out inside the stream ({room} messages of room)");
}

#[cfg(feature = "tokio")]
#[test]
fn async_a_tls_close_behind_unsent_pongs_ends_the_stream() {
    let builder = ping_flood_server(|tls| tls.conn.send_close_notify());
    block_on(async move {
        let (mut ws, _) = builder.connect_async().await.unwrap();
        let err = loop {
            match ws.recv().await {
                Some(Ok(Message::Ping(_))) => {}
                other => break other,
            }
        };
        assert!(matches!(err, Some(Err(Error::ConnectionReset))), "{err:?}");
        // Then the end, at once: before, the pongs still queued were waited for forever.
        let end = tokio::time::timeout(Duration::from_secs(2), ws.recv()).await;
        assert!(matches!(end, Ok(None)), "{end:?}");
        let closed = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
        assert!(
            matches!(closed, Ok(Err(Error::ConnectionClosed))),
            "{closed:?}"
        );
    });
}

/// A TLS server that reads the client's frames (so writes go through) but never answers a
/// close; the builder has a close timeout of 1 s.
#[cfg(feature = "tokio")]
fn server_that_never_answers_a_close() -> ClientBuilder {
    let (port, ca) = tls_server_after_handshake(|mut tls| {
        let mut sink = [0u8; 4096];
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if matches!(io::Read::read(&mut tls, &mut sink), Ok(0) | Err(_)) {
                return;
            }
        }
    });
    ClientBuilder::new(format!("wss://localhost:{port}/"))
        .uncompressed()
        .close_timeout(Some(Duration::from_secs(1)))
        .tls(trusting(&ca))
}

#[cfg(feature = "tokio")]
#[test]
fn async_the_close_timeout_bounds_the_wait_after_a_split_writers_close() {
    let builder = server_that_never_answers_a_close();
    block_on(async move {
        let (ws, _) = builder.connect_async().await.unwrap();
        let (mut reader, mut writer) = ws.split();
        writer.close(None).await.unwrap();
        let start = Instant::now();
        // Before, the reader waited for the peer's close forever.
        let got = tokio::time::timeout(Duration::from_secs(5), reader.recv()).await;
        assert!(
            matches!(got, Ok(Some(Err(Error::Timeout(Phase::Close))))),
            "{got:?}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        let end = tokio::time::timeout(Duration::from_secs(2), reader.recv()).await;
        assert!(matches!(end, Ok(None)), "{end:?}");
    });
}

#[cfg(feature = "tokio")]
#[test]
fn async_a_split_writers_close_to_a_server_that_reads_nothing_is_bounded() {
    let (port, ca) = tls_server_after_handshake(|_tls| thread::sleep(Duration::from_secs(20)));
    block_on(async move {
        let (ws, _) = ClientBuilder::new(format!("wss://localhost:{port}/"))
            .uncompressed()
            .close_timeout(Some(Duration::from_secs(1)))
            .tls(trusting(&ca))
            .connect_async()
            .await
            .unwrap();
        let (_reader, mut writer) = ws.split();
        // More than the sockets hold: the send never completes.
        let big = vec![7u8; 32 << 20];
        let sent =
            tokio::time::timeout(Duration::from_secs(1), writer.send(Message::binary(big))).await;
        assert!(
            sent.is_err(),
            "a 32 MiB send to a server that reads nothing completed"
        );
        let start = Instant::now();
        let closed = tokio::time::timeout(Duration::from_secs(5), writer.close(None)).await;
        // Before, the close waited for room forever.
        assert!(
            matches!(closed, Ok(Err(Error::Timeout(Phase::Close)))),
            "{closed:?}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
    });
}

/// Counts the pong frames in what a client sent (masked frames, payloads under 126 bytes);
/// and how many bytes the whole frames counted take.
#[cfg(feature = "tokio")]
fn count_pongs(bytes: &[u8]) -> (usize, usize) {
    let (mut pongs, mut used) = (0, 0);
    while bytes.len() - used >= 2 {
        let len = 2 + 4 + usize::from(bytes[used + 1] & 0x7F);
        if bytes.len() - used < len {
            break;
        }
        pongs += usize::from(bytes[used] == 0x8A);
        used += len;
    }
    (pongs, used)
}

#[cfg(feature = "tokio")]
#[test]
fn async_pongs_rustls_could_not_write_go_out_when_the_peer_reads_again() {
    use std::io::Read as _;
    let (done, report) = tokio::sync::oneshot::channel();
    let builder = ping_flood_server(move |tls| {
        // More pongs than the sockets hold are due now; the server reads them only later.
        io::Write::write_all(tls, &[0x81, 4, b'd', b'o', b'n', b'e']).unwrap();
        io::Write::flush(tls).unwrap();
        thread::sleep(Duration::from_millis(700));
        // Reads until every pong is in (or a deadline far past what a busy machine needs to
        // encrypt and send them all): the count does not depend on how fast that goes.
        tls.sock
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(40);
        let mut received = Vec::new();
        let mut pongs = 0;
        let mut chunk = [0u8; 64 << 10];
        while pongs < FLOOD_PINGS && Instant::now() < deadline {
            match tls.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
            let (counted, used) = count_pongs(&received);
            pongs += counted;
            received.drain(..used);
        }
        done.send(pongs).unwrap();
    });
    let pongs = block_on(async move {
        let (mut ws, _) = builder.connect_async().await.unwrap();
        // rustls takes every pong then (its buffer unbounded), so the connection's own queue
        // is empty while rustls still holds what the socket had no room for.
        let wsc::tokio::TokioStream::Tls(tls) = ws.get_mut() else {
            panic!("not TLS")
        };
        tls.get_mut().1.set_buffer_limit(None);
        loop {
            match ws.recv().await {
                Some(Ok(Message::Ping(_))) => {}
                Some(Ok(Message::Text(t))) if t == "done" => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        // Only reading from here (one read, pending), until the server has counted: the
        // pongs must go out as the server makes room.
        tokio::select! {
            counted = report => counted.unwrap(),
            read = ws.recv() => panic!("unexpected {read:?}"),
        }
    });
    // Before, what rustls held waited for the next message sent: about half were missing.
    assert_eq!(pongs, FLOOD_PINGS);
}

#[test]
fn a_failed_send_over_tls_loses_nothing_the_server_sent_before_it_reset() {
    use std::io::{Read as _, Write as _};
    let (port, ca) = tls_server_after_handshake(|mut tls| {
        // Else Nagle may hold the close back until the reset discards it.
        tls.sock.set_nodelay(true).unwrap();
        let mut some = [0u8; 4096];
        tls.read_exact(&mut some).unwrap();
        // A text, then a close 1008 "rate limit exceeded"; then the connection is dropped
        // with the client's data unread, which resets it.
        tls.write_all(&[0x81, 10]).unwrap();
        tls.write_all(b"last words").unwrap();
        tls.write_all(&[0x88, 21, 0x03, 0xf0]).unwrap();
        tls.write_all(b"rate limit exceeded").unwrap();
        tls.flush().unwrap();
        thread::sleep(Duration::from_millis(100));
    });
    let mut ws = connect(&format!("wss://localhost:{port}/"), trusting(&ca)).unwrap();
    let chunk = vec![7u8; 256 << 10];
    let error = (0..4000)
        .find_map(|_| ws.send_binary(&chunk).err())
        .expect("the server stopped reading: a send must fail");
    assert!(matches!(error, Error::ConnectionReset), "{error:?}");
    // The records the server sent before it went are still read, none written first.
    assert_eq!(ws.read().unwrap(), Message::text("last words"));
    match ws.read().unwrap() {
        Message::Close(Some(close)) => {
            assert_eq!(close.code, CloseCode::POLICY_VIOLATION);
            assert_eq!(close.reason, "rate limit exceeded");
        }
        other => panic!("expected the server's close, got {other:?}"),
    }
}

#[test]
fn ws_to_a_tls_port_and_wss_to_a_plain_port_say_which_scheme_to_use() {
    let ca = TestCa::new("wsc test CA");
    let server = EchoServer::start(server_config(&ca.server_cert(&["localhost"]), None), 1);
    let err = connect(&format!("ws://localhost:{}/", server.port), trusting(&ca)).unwrap_err();
    assert!(err.to_string().contains("use a wss:// URL"), "{err}");
    assert!(
        matches!(err, Error::Handshake(HandshakeError::TlsAnswer)),
        "{err:?}"
    );
    // The URL is wrong: reconnecting would only get the same answer.
    assert!(!wsc::reconnect::is_retryable(&err));
    let _ = server.finish();

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let plain = thread::spawn(move || {
        let tcp = accept_tcp(&listener).unwrap();
        // Not a WebSocket request at all: a plain HTTP server's answer.
        let _ = wsc::server::accept(tcp);
    });
    let err = connect(&format!("wss://localhost:{port}/"), trusting(&ca)).unwrap_err();
    assert!(rustls_error(&err).is_some(), "{err:?}");
    assert!(err.to_string().contains("use a ws:// URL"), "{err}");
    plain.join().unwrap();
}

/// A TLS server that, once told to go, sends in one TCP write the records of two text
/// messages ("one" and "two") followed by a record that is not valid (it fails decryption),
/// and keeps TCP open. Returns the client's builder, the sender that says go, and the
/// receiver that hears when the bytes are out.
fn good_records_then_a_bad_one() -> (
    ClientBuilder,
    std::sync::mpsc::Sender<()>,
    std::sync::mpsc::Receiver<()>,
) {
    use std::io::Write as _;
    let (go, told) = std::sync::mpsc::channel();
    let (written, heard) = std::sync::mpsc::channel();
    let (port, ca) = tls_server_after_handshake(move |mut tls| {
        // After the client has read the handshake response: only messages are at stake.
        told.recv_timeout(TIMEOUT).unwrap();
        tls.conn
            .writer()
            .write_all(&[0x81, 3, b'o', b'n', b'e', 0x81, 3, b't', b'w', b'o'])
            .unwrap();
        let mut wire = Vec::new();
        while tls.conn.wants_write() {
            tls.conn.write_tls(&mut wire).unwrap();
        }
        // An application-data record of garbage: the client cannot decrypt it.
        wire.extend_from_slice(&[0x17, 0x03, 0x03, 0x00, 0x20]);
        wire.extend_from_slice(&[0x5a; 0x20]);
        tls.sock.write_all(&wire).unwrap();
        written.send(()).unwrap();
        thread::sleep(Duration::from_secs(10));
    });
    let builder = ClientBuilder::new(format!("wss://localhost:{port}/"))
        .uncompressed()
        .read_timeout(Some(TIMEOUT))
        .close_timeout(Some(TIMEOUT))
        .tls(trusting(&ca));
    (builder, go, heard)
}

/// Whether `err` is the TLS error of a record that failed decryption.
fn is_bad_record(err: &Error) -> bool {
    matches!(
        err,
        Error::Tls {
            source: rustls::Error::DecryptError,
            ..
        }
    )
}

#[test]
fn messages_in_tls_records_before_a_bad_record_are_delivered_before_its_error() {
    let (builder, go, written) = good_records_then_a_bad_one();
    let mut ws = builder.connect().unwrap();
    go.send(()).unwrap();
    written.recv_timeout(TIMEOUT).unwrap();
    // All of it in the socket, for one read to take good and bad records together.
    thread::sleep(Duration::from_millis(100));
    // Before, the first read returned the TLS error and both messages were lost.
    assert_eq!(ws.read().unwrap(), Message::text("one"));
    assert_eq!(ws.read().unwrap(), Message::text("two"));
    let err = ws.read().unwrap_err();
    assert!(is_bad_record(&err), "{err:?}");
    assert!(matches!(ws.read(), Err(Error::ConnectionClosed)));
}

#[cfg(feature = "tokio")]
#[test]
fn async_messages_in_tls_records_before_a_bad_record_are_delivered_before_its_error() {
    let (builder, go, written) = good_records_then_a_bad_one();
    block_on(async move {
        let (mut ws, _) = builder.connect_async().await.unwrap();
        go.send(()).unwrap();
        written.recv_timeout(TIMEOUT).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut got = Vec::new();
        let end = loop {
            match tokio::time::timeout(TIMEOUT, ws.recv()).await {
                Ok(Some(Ok(message))) => got.push(message),
                other => break other,
            }
        };
        assert_eq!(got, [Message::text("one"), Message::text("two")]);
        let Ok(Some(Err(err))) = end else {
            panic!("expected the TLS error, got {end:?}")
        };
        assert!(is_bad_record(&err), "{err:?}");
        let after = tokio::time::timeout(TIMEOUT, ws.recv()).await;
        assert!(matches!(after, Ok(None)), "{after:?}");
    });
}

/// Writes `frames` as TLS records and resets the connection (SO_LINGER 0), as a server that
/// sends its last words and goes.
#[cfg(target_os = "linux")] // socket2, for the reset
fn write_then_reset(mut tls: StreamOwned<ServerConnection, TcpStream>, frames: &[u8]) {
    use std::io::Write as _;
    tls.write_all(frames).unwrap();
    tls.flush().unwrap();
    socket2::SockRef::from(&tls.sock)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
}

/// A TLS server that, once told to go (the client connected), sends a text and its close
/// 1008 "rate limit exceeded", then resets the connection (SO_LINGER 0): the builder, the
/// sender that says go, and the receiver that hears when the server is gone.
#[cfg(target_os = "linux")] // socket2, for the reset
fn closes_then_resets() -> (
    ClientBuilder,
    std::sync::mpsc::Sender<()>,
    std::sync::mpsc::Receiver<()>,
) {
    let (go, told) = std::sync::mpsc::channel();
    let (gone, heard) = std::sync::mpsc::channel();
    let (port, ca) = tls_server_after_handshake(move |tls| {
        told.recv_timeout(TIMEOUT).unwrap();
        // One record, sent at once: a segment Nagle held back would die with the reset.
        tls.sock.set_nodelay(true).unwrap();
        let mut frames = vec![0x81, 10];
        frames.extend_from_slice(b"last words");
        frames.extend_from_slice(&[0x88, 21, 0x03, 0xf0]);
        frames.extend_from_slice(b"rate limit exceeded");
        write_then_reset(tls, &frames);
        gone.send(()).unwrap();
    });
    let builder = ClientBuilder::new(format!("wss://localhost:{port}/"))
        .read_timeout(Some(TIMEOUT))
        .close_timeout(Some(TIMEOUT))
        .tls(trusting(&ca));
    (builder, go, heard)
}

/// A pong rustls took whole while the socket was full, then the server's close and its reset:
/// rustls wrote the pong first thing in the next read, the write failed, and the read
/// reported ConnectionReset instead of the close frame already received (ws:// delivered it).
#[test]
#[cfg(target_os = "linux")]
fn a_reply_rustls_holds_does_not_hide_the_close_the_server_sent_before_it_reset() {
    use std::io::Write as _;
    let (ping, close) = (std::sync::mpsc::channel(), std::sync::mpsc::channel());
    let ((go_ping, told_ping), (go_close, told_close)) = (ping, close);
    let (gone, heard) = std::sync::mpsc::channel();
    let (port, ca) = tls_server_after_handshake(move |mut tls| {
        tls.sock.set_nodelay(true).unwrap();
        // Nothing is read: the client's output fills its socket.
        told_ping.recv_timeout(TIMEOUT).unwrap();
        tls.write_all(&[0x89, 2, b'h', b'b']).unwrap();
        tls.flush().unwrap();
        told_close.recv_timeout(TIMEOUT).unwrap();
        write_then_reset(tls, &[0x88, 6, 0x03, 0xf0, b'k', b'i', b'c', b'k']);
        gone.send(()).unwrap();
    });
    let mut ws = ClientBuilder::new(format!("wss://localhost:{port}/"))
        .read_timeout(Some(TIMEOUT))
        .close_timeout(Some(TIMEOUT))
        .tls(trusting(&ca))
        .connect()
        .unwrap();
    // Fill the socket (raw bytes: the server reads none of them), to the last byte.
    let sock = socket2::SockRef::from(ws.get_ref().tcp());
    let full = Instant::now() + TIMEOUT;
    for piece in [4096, 1, 1, 1] {
        while sock
            .send_with_flags(&vec![0u8; piece], libc::MSG_DONTWAIT)
            .is_ok()
        {
            assert!(Instant::now() < full, "the socket never filled");
        }
        thread::sleep(Duration::from_millis(20));
    }
    go_ping.send(()).unwrap();
    assert_eq!(
        ws.read().unwrap(),
        Message::Ping(bytes::Bytes::from_static(b"hb"))
    );
    let held = matches!(ws.get_ref(), MaybeTlsStream::Tls(s) if s.conn.wants_write());
    assert!(
        held && ws.has_unsent_output(),
        "the pong should wait in rustls"
    );
    go_close.send(()).unwrap();
    heard.recv_timeout(TIMEOUT).unwrap();
    common::wait_for_reset(std::os::fd::AsRawFd::as_raw_fd(ws.get_ref().tcp()));
    let closed = ws.read();
    assert!(
        matches!(&closed, Ok(Message::Close(Some(f))) if f.code == CloseCode::POLICY_VIOLATION),
        "{closed:?}"
    );
}

#[test]
#[cfg(target_os = "linux")]
fn close_and_wait_over_tls_returns_the_close_the_server_sent_before_it_reset() {
    let (builder, go, gone) = closes_then_resets();
    let mut ws = builder.connect().unwrap();
    go.send(()).unwrap();
    gone.recv_timeout(TIMEOUT).unwrap();
    common::wait_for_reset(std::os::fd::AsRawFd::as_raw_fd(ws.get_ref().tcp()));
    let closed = ws.close_and_wait(Some(CloseFrame::new(1000, "bye")));
    assert_eq!(
        closed.unwrap(),
        Some(CloseFrame::new(
            CloseCode::POLICY_VIOLATION,
            "rate limit exceeded"
        ))
    );
}

#[cfg(all(feature = "tokio", target_os = "linux"))]
#[test]
fn async_close_over_tls_returns_the_close_the_server_sent_before_it_reset() {
    let (builder, go, gone) = closes_then_resets();
    block_on(async move {
        let (mut ws, _) = builder.connect_async().await.unwrap();
        go.send(()).unwrap();
        gone.recv_timeout(TIMEOUT).unwrap();
        common::wait_for_reset(std::os::fd::AsRawFd::as_raw_fd(ws.get_ref().tcp()));
        let close = ws.close(Some(CloseFrame::new(1000u16, "bye")));
        let closed = tokio::time::timeout(TIMEOUT, close).await.unwrap();
        assert_eq!(
            closed.unwrap(),
            Some(CloseFrame::new(
                CloseCode::POLICY_VIOLATION,
                "rate limit exceeded"
            ))
        );
    });
}

/// The async write timeout over TLS: rustls holds records that the connection counts as
/// written already, and a peer that keeps reading them, slowly, is no stuck one: the
/// kernel's count of the bytes it acknowledged shows the progress. Before, the last 64 KiB
/// (rustls's buffer) drained unseen, and the send failed with `Timeout(Write)`.
#[cfg(all(feature = "tokio", target_os = "linux"))]
#[test]
fn async_write_timeout_spares_a_slow_peer_that_keeps_reading_over_tls() {
    use std::io::Read;
    let ca = TestCa::new("wsc test CA");
    let config = server_config(&ca.server_cert(&["localhost"]), None);
    // Small socket buffers both ways (set before the connection, as the window is sized at
    // the TCP handshake): most of the message waits on our side.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    socket.listen(4).unwrap();
    let listener: TcpListener = socket.into();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let tcp = accept_tcp(&listener).unwrap();
        let conn = ServerConnection::new(config).unwrap();
        let mut ws = wsc::server::accept(StreamOwned::new(conn, tcp)).unwrap();
        // About 100 KB a second.
        let (tls, mut buf, mut total) = (ws.get_mut(), [0u8; 2048], 0usize);
        loop {
            thread::sleep(Duration::from_millis(20));
            match tls.read(&mut buf) {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    });
    let url = format!("wss://localhost:{port}/");
    let (sent, took) = block_on(async move {
        let (mut ws, _) = ClientBuilder::new(url)
            .uncompressed()
            .tls(trusting(&ca))
            .handshake_timeout(TIMEOUT)
            .write_timeout(Duration::from_millis(200))
            .connect_async()
            .await
            .unwrap();
        socket2::SockRef::from(ws.get_ref().tcp())
            .set_send_buffer_size(4096)
            .unwrap();
        let started = Instant::now();
        let sent = ws.send(Message::binary(vec![7u8; 200 * 1024])).await;
        (sent, started.elapsed())
    });
    sent.unwrap();
    // Well past the write timeout in all: the peer took it slowly.
    assert!(took > Duration::from_millis(600), "{took:?}");
    assert!(server.join().unwrap() > 150 * 1024);
}
