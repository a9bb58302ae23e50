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

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use wsc::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use wsc::rustls::server::WebPkiClientVerifier;
use wsc::rustls::{
    self, CertificateError, RootCertStore, ServerConfig, ServerConnection, StreamOwned,
};
use wsc::{
    ClientBuilder, CloseCode, CloseFrame, Error, MaybeTlsStream, Message, Roots, TlsOptions,
    WebSocket,
};

/// Bounds every blocking step on both sides, so that no test can hang.
const TIMEOUT: Duration = Duration::from_secs(5);

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
        Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            chain: vec![cert.der().clone()],
            key,
        }
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
    params.distinguished_name.push(DnType::CommonName, "wsc test");
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
    Identity {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        chain: vec![cert.der().clone()],
        key,
    }
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
                return Ok(Served {
                    messages,
                    close,
                    sni,
                    client_cert,
                })
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
    ws.send_text("hello over TLS").unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("hello over TLS"));
    let binary = [0u8, 1, 2, 0xfe, 0xff];
    ws.send_binary(&binary).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(binary.to_vec()));
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
    assert_eq!(served.messages.len(), 2);
    assert_eq!(served.close.as_ref().map(|c| c.code), Some(CloseCode::NORMAL));
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
