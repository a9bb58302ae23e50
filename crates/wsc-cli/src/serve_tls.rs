//! `wsc serve --tls-cert FILE --tls-key FILE`: the server's rustls configuration. Every
//! failure names the flag and the file, as `--cacert` does for the client.

use std::path::Path;
use std::sync::Arc;

use wsc::rustls::pki_types::pem::{self, PemObject};
use wsc::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use wsc::rustls::{self, ServerConfig};

use crate::exit::CliError;
use crate::tls_args::readable;

/// The configuration presenting the chain in `cert` with the key in `key_file`: TLS 1.2 and
/// 1.3, no client certificates, ALPN `http/1.1` (the only protocol a WebSocket upgrade
/// speaks). Each file is read once, so that a pipe (`--tls-key <(...)`) works too.
pub fn server_config(cert: &Path, key_file: &Path) -> Result<Arc<ServerConfig>, CliError> {
    let cert_pem = read("--tls-cert", cert)?;
    let key_pem = read("--tls-key", key_file)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_file("--tls-cert", cert, &e))?;
    if chain.is_empty() {
        return Err(bad_file("--tls-cert", cert, &pem::Error::NoItemsFound));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        if key_pem.windows(9).any(|w| w == b"ENCRYPTED") {
            CliError::Usage(format!(
                "--tls-key {}: the key is encrypted, which is not supported: decrypt it first \
                 (openssl pkey -in KEY -out KEY.plain)",
                key_file.display()
            ))
        } else {
            bad_file("--tls-key", key_file, &e)
        }
    })?;
    // ring, as the library's client (rustls 0.23.48 deprecates it: no post-quantum key
    // exchange; see wsc's tls.rs).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError::Usage(format!("cannot set up TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            CliError::Usage(format!(
                "--tls-cert {} with --tls-key {}: {}",
                cert.display(),
                key_file.display(),
                unusable(&e)
            ))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The whole file, or an error that names `flag` and `path`.
fn read(flag: &str, path: &Path) -> Result<Vec<u8>, CliError> {
    readable(flag, path)?;
    std::fs::read(path).map_err(|e| CliError::Usage(format!("{flag} {}: {e}", path.display())))
}

/// Why rustls will not serve with this certificate and key, in a server operator's words.
fn unusable(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            "the key is not the certificate's (their public keys differ; in a chain, the \
             server's own certificate comes first)"
                .to_string()
        }
        rustls::Error::InvalidCertificate(why) => {
            format!("the certificate cannot be used: {why:?}")
        }
        rustls::Error::General(why) => {
            format!("{why} (supported keys: RSA, ECDSA P-256 or P-384, Ed25519)")
        }
        other => other.to_string(),
    }
}

/// `flag path: what is wrong`, in words for the file at hand.
fn bad_file(flag: &str, path: &Path, e: &pem::Error) -> CliError {
    let why = match e {
        pem::Error::NoItemsFound if flag == "--tls-cert" => {
            "no PEM certificate in it (-----BEGIN CERTIFICATE-----)".to_string()
        }
        pem::Error::NoItemsFound => {
            "no PEM private key in it (-----BEGIN PRIVATE KEY----- or similar)".to_string()
        }
        other => other.to_string(),
    };
    CliError::Usage(format!("{flag} {}: {why}", path.display()))
}
