//! `wsc serve --tls-cert FILE --tls-key FILE`: the server's rustls configuration. Every
//! failure names the flag and the file, as `--cacert` does for the client.

use std::path::Path;
use std::sync::Arc;

use wsc::rustls::pki_types::pem::{self, PemObject};
use wsc::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use wsc::rustls::{self, ServerConfig};

use crate::exit::CliError;
use crate::tls_args::readable;

/// The configuration presenting the chain in `cert` with the key in `key`: TLS 1.2 and 1.3,
/// no client certificates, ALPN `http/1.1` (the only protocol a WebSocket upgrade speaks).
pub fn server_config(cert: &Path, key_file: &Path) -> Result<Arc<ServerConfig>, CliError> {
    readable("--tls-cert", cert)?;
    readable("--tls-key", key_file)?;
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad_file("--tls-cert", cert, &e))?;
    if chain.is_empty() {
        return Err(bad_file("--tls-cert", cert, &pem::Error::NoItemsFound));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
        let encrypted =
            std::fs::read_to_string(key_file).is_ok_and(|pem| pem.contains("ENCRYPTED"));
        if encrypted {
            CliError::Usage(format!(
                "--tls-key {}: the key is encrypted, which is not supported: decrypt it first \
                 (openssl pkey -in KEY -out KEY.plain)",
                key_file.display()
            ))
        } else {
            bad_file("--tls-key", key_file, &e)
        }
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError::Usage(format!("cannot set up TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            let why = match e {
                rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                    "the key is not the certificate's (their public keys differ)".to_string()
                }
                other => other.to_string(),
            };
            CliError::Usage(format!(
                "--tls-cert {} with --tls-key {}: {why}",
                cert.display(),
                key_file.display()
            ))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
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
