//! TLS client configuration on rustls.
//!
//! The crypto provider (ring) is chosen here, explicitly, so that no combination of cargo
//! features in the final program can leave rustls without one or with two (a runtime panic in
//! other clients). Hostname verification and SNI are always on unless the caller opts out with
//! [`TlsOptions::danger_accept_invalid_certs`].

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::Error;

mod failed_read;
mod trusted_as_is;
pub(crate) use failed_read::read_after_failure;
#[cfg(feature = "tokio")]
pub(crate) use failed_read::{failure, read_plaintext_left};
use trusted_as_is::TrustedAsIs;

/// Where trusted root certificates come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Roots {
    /// The operating system's store; the bundled Mozilla set if the system has none (or the
    /// `native-roots` feature is off).
    #[default]
    Default,
    /// Only the operating system's store (feature `native-roots`).
    System,
    /// Only the bundled Mozilla set (feature `webpki-roots`).
    Bundled,
    /// No built-in roots: only the CAs added with [`TlsOptions::add_ca_pem_file`] and friends.
    None,
}

/// How the client sets up TLS for `wss://` URLs.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    roots: Roots,
    extra_cas: Vec<CertificateDer<'static>>,
    client_auth: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
    insecure: bool,
    custom: Option<Arc<ClientConfig>>,
}

/// ring's provider, chosen explicitly (never the process-wide default, which panics when
/// two features install one each). rustls 0.23.48 deprecates it for lacking post-quantum
/// key exchange, which ring does not offer; aws-lc-rs, which does, is a much heavier build.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

fn file_error(what: &str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::TlsConfig(format!("cannot read {what} from {}: {e}", path.display()))
}

/// All certificates in a PEM file; none is an error naming `what` and the path.
fn read_pem_certs(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(what, path, e))?;
    if certs.is_empty() {
        return Err(file_error(what, path, "no PEM certificate found"));
    }
    Ok(certs)
}

impl TlsOptions {
    /// Verify servers against the default roots.
    pub fn new() -> Self {
        Self::default()
    }

    /// Chooses the built-in root certificates.
    pub fn roots(mut self, roots: Roots) -> Self {
        self.roots = roots;
        self
    }

    /// Trusts the CA certificates in a PEM file, in addition to the roots.
    ///
    /// A server may also present one of these very certificates as its own, even one marked
    /// as a CA's (as `openssl req -x509` makes self-signed certificates) or one issued by a
    /// CA that is not trusted (a private CA's leaf given alone): it is accepted if it is
    /// within its dates and names the host, as curl would.
    pub fn add_ca_pem_file(mut self, path: impl AsRef<Path>) -> Result<Self, Error> {
        let certs = read_pem_certs("CA certificates", path.as_ref())?;
        self.extra_cas.extend(certs);
        Ok(self)
    }

    /// Trusts the CA certificates in PEM text, in addition to the roots (see
    /// [`TlsOptions::add_ca_pem_file`]).
    pub fn add_ca_pem(mut self, pem: &[u8]) -> Result<Self, Error> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::TlsConfig(format!("bad PEM CA certificate: {e}")))?;
        if certs.is_empty() {
            return Err(Error::TlsConfig("no PEM certificate found".into()));
        }
        self.extra_cas.extend(certs);
        Ok(self)
    }

    /// Trusts a DER-encoded CA certificate, in addition to the roots (see
    /// [`TlsOptions::add_ca_pem_file`]).
    pub fn add_ca_der(mut self, der: impl Into<CertificateDer<'static>>) -> Self {
        self.extra_cas.push(der.into());
        self
    }

    /// Presents a client certificate (mutual TLS) from PEM files: the certificate chain and its
    /// private key (PKCS#8, PKCS#1 or SEC1).
    pub fn client_cert_pem_files(
        self,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, Error> {
        let (cert, key) = (cert.as_ref(), key.as_ref());
        let chain = read_pem_certs("client certificate", cert)?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
            let encrypted = std::fs::read_to_string(key).is_ok_and(|pem| pem.contains("ENCRYPTED"));
            if encrypted {
                file_error(
                    "private key",
                    key,
                    "the key is encrypted, which is not supported: decrypt it first \
                     (openssl pkey -in KEY -out KEY.plain)",
                )
            } else if matches!(e, rustls::pki_types::pem::Error::NoItemsFound) {
                // pki-types says "no items found".
                file_error(
                    "private key",
                    key,
                    "no private key in it (a PEM block such as -----BEGIN PRIVATE KEY-----)",
                )
            } else {
                file_error("private key", key, e)
            }
        })?;
        Ok(self.client_cert(chain, key))
    }

    /// Presents a client certificate (mutual TLS).
    pub fn client_cert(
        mut self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Self {
        self.client_auth = Some((chain, Arc::new(key)));
        self
    }

    /// Accepts any server certificate: no chain, expiry or hostname check. Only for testing
    /// against servers you control; anyone on the path can read and change the traffic.
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.insecure = accept;
        self
    }

    /// Uses a complete rustls configuration as is (the other options are ignored).
    pub fn rustls_config(mut self, config: Arc<ClientConfig>) -> Self {
        self.custom = Some(config);
        self
    }

    fn is_default(&self) -> bool {
        self.roots == Roots::Default
            && self.extra_cas.is_empty()
            && self.client_auth.is_none()
            && !self.insecure
            && self.custom.is_none()
    }

    /// The rustls configuration for these options (the default one is built once and shared).
    pub fn build(&self) -> Result<Arc<ClientConfig>, Error> {
        if let Some(custom) = &self.custom {
            return Ok(custom.clone());
        }
        if self.is_default() {
            static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();
            if let Some(config) = DEFAULT.get() {
                return Ok(config.clone());
            }
            let config = self.build_new()?;
            return Ok(DEFAULT.get_or_init(|| config).clone());
        }
        self.build_new()
    }

    fn build_new(&self) -> Result<Arc<ClientConfig>, Error> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::TlsConfig(e.to_string()))?;
        let builder = if self.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider())))
        } else {
            let mut store = RootCertStore::empty();
            add_roots(&mut store, self.roots)?;
            for ca in &self.extra_cas {
                store
                    .add(ca.clone())
                    .map_err(|e| Error::TlsConfig(unusable_ca(&e)))?;
            }
            if store.is_empty() {
                let from = match self.roots {
                    Roots::None => "Roots::None",
                    Roots::Bundled => "none bundled",
                    Roots::Default | Roots::System => "none in the system store",
                };
                return Err(Error::TlsConfig(format!(
                    "no trusted root certificates: {from} and none added (add_ca_pem_file, \
                     --cacert)"
                )));
            }
            if self.extra_cas.is_empty() {
                builder.with_root_certificates(store)
            } else {
                let webpki = WebPkiServerVerifier::builder_with_provider(store.into(), provider())
                    .build()
                    .map_err(|e| Error::TlsConfig(format!("certificate verifier: {e}")))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(TrustedAsIs {
                        webpki,
                        added: self.extra_cas.clone(),
                    }))
            }
        };
        let mut config = match &self.client_auth {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(|e| match e {
                    rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                        Error::TlsConfig(
                            "unusable client certificate or key: the key is not the \
                             certificate's (their public keys differ; in a chain, the client's \
                             own certificate comes first)"
                                .into(),
                        )
                    }
                    e => Error::TlsConfig(format!("unusable client certificate or key: {e}")),
                })?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

fn add_roots(store: &mut RootCertStore, roots: Roots) -> Result<(), Error> {
    match roots {
        Roots::None => Ok(()),
        Roots::System => add_system_roots(store),
        Roots::Bundled => add_bundled_roots(store),
        Roots::Default => {
            let _ = add_system_roots(store);
            if store.is_empty() {
                add_bundled_roots(store)?;
            }
            Ok(())
        }
    }
}

/// The system store, read once per process (reading it parses every file in it).
#[cfg(feature = "native-roots")]
fn add_system_roots(store: &mut RootCertStore) -> Result<(), Error> {
    type Loaded = (Vec<CertificateDer<'static>>, Option<String>);
    static SYSTEM: OnceLock<Loaded> = OnceLock::new();
    let (certs, first_error) = SYSTEM.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        (found.certs, found.errors.first().map(|e| e.to_string()))
    });
    let (added, _ignored) = store.add_parsable_certificates(certs.iter().cloned());
    if added == 0 {
        let why = first_error
            .as_ref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        return Err(Error::TlsConfig(format!(
            "no root certificates in the system store{why}"
        )));
    }
    Ok(())
}

#[cfg(not(feature = "native-roots"))]
fn add_system_roots(_: &mut RootCertStore) -> Result<(), Error> {
    Err(Error::TlsConfig(
        "the system store needs the `native-roots` feature".into(),
    ))
}

#[cfg(feature = "webpki-roots")]
fn add_bundled_roots(store: &mut RootCertStore) -> Result<(), Error> {
    store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    Ok(())
}

#[cfg(not(feature = "webpki-roots"))]
fn add_bundled_roots(_: &mut RootCertStore) -> Result<(), Error> {
    Err(Error::TlsConfig(
        "bundled roots need the `webpki-roots` feature".into(),
    ))
}

/// The name the certificate must carry, and the SNI sent.
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, Error> {
    ServerName::try_from(host.to_string())
        .map_err(|_| Error::Url(crate::url::UrlError::InvalidHost(host.to_string())))
}

/// Accepts any certificate but still checks that the handshake is signed by its key.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Why a CA certificate given to trust cannot be used, said of it (rustls words its
/// reasons for the peer's certificate).
fn unusable_ca(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding) => {
            "unusable CA certificate: it is not a well-formed X.509 certificate (DER); a PEM \
             file goes to add_ca_pem_file"
                .into()
        }
        rustls::Error::InvalidCertificate(problem) => {
            format!("unusable CA certificate: {problem:?}")
        }
        e => format!("unusable CA certificate: {e}"),
    }
}
