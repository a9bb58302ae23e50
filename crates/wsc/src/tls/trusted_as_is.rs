//! Server certificates the user trusts as they are, CA flag and all.
//!
//! `openssl req -x509` makes self-signed certificates marked CA:TRUE (its default
//! configuration), and that is what many test and internal servers present. webpki refuses any
//! CA certificate as a server's own (`CaUsedAsEndEntity`), even one the user added as trusted;
//! curl, Python, Go and Node accept it when it is exactly a certificate they were told to
//! trust. So do we, and only then: everything else is webpki's verdict. The same goes for a
//! leaf of a private CA given alone, whose CA is not trusted (curl takes it too).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_name, WebPkiServerVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};

/// webpki's verifier, plus the certificates the user added (`TlsOptions::add_ca_*`) accepted
/// when the server presents one of them as its own and webpki's only objection is that it is
/// a CA's or that its issuer is unknown.
#[derive(Debug)]
pub(super) struct TrustedAsIs {
    pub(super) webpki: Arc<WebPkiServerVerifier>,
    pub(super) added: Vec<CertificateDer<'static>>,
}

/// Whether webpki refused the certificate for being a CA's. webpki checks a certificate's
/// validity dates before its CA flag, so such a certificate is also within its dates (the
/// tests hold webpki to that).
fn is_ca_used_as_end_entity(e: &OtherError) -> bool {
    e.to_string().contains("CaUsedAsEndEntity")
}

/// Whether webpki's objection to a certificate the user added is one that trusting it as it
/// is overrules: that it is a CA's, or that its issuer is not trusted (a leaf of a private
/// CA given alone, which curl and OpenSSL's partial chains accept). webpki checks the
/// certificate's own dates, CA flag and key usage before it looks for an issuer, so with
/// either objection the certificate has passed those (the tests hold webpki to that).
fn trusted_anyway(problem: &CertificateError) -> bool {
    match problem {
        CertificateError::UnknownIssuer => true,
        CertificateError::Other(e) => is_ca_used_as_end_entity(e),
        _ => false,
    }
}

impl ServerCertVerifier for TrustedAsIs {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(problem))
                if trusted_anyway(&problem)
                    && self.added.iter().any(|c| c.as_ref() == end_entity.as_ref()) =>
            {
                // Trusted as it is, but still only for the names it carries.
                verify_server_name(&ParsedCertificate::try_from(end_entity)?, server_name)?;
                Ok(ServerCertVerified::assertion())
            }
            verdict => verdict,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}
