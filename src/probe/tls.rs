//! TLS side of a probe: the probing `rustls::ClientConfig`, the handshake over an
//! already-negotiated stream, and the facts it yields (version, cipher, chain as served).
//!
//! Not here: the SMTP dialogue that leads to the handshake (`probe::smtp`), judging the
//! chain (`cert`, `dane`). The certificate verifier accepts any chain on purpose (a monitor
//! must see bad chains) but still checks the handshake signatures, so the server proves it
//! holds the leaf key. It decides nothing else.
//! RFC 8446 (TLS 1.3), RFC 5246 (TLS 1.2), RFC 6066 §3 (SNI: none for IP literals).

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, ProtocolVersion, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tracing::debug;

use crate::model::smtp::TlsFacts;

/// Longest error message kept from rustls/io (they are short; this bounds odd ones).
const MAX_MESSAGE_CHARS: usize = 200;

/// What can go wrong in the TLS step. `probe::smtp` maps it into its `ProbeError`.
#[derive(Debug, Clone, thiserror::Error, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum TlsError {
    #[error("server name {name:?} is neither a DNS name nor an IP address")]
    BadServerName { name: String },
    #[error("TLS handshake timed out after {after:?}")]
    Timeout { after: Duration },
    #[error("TLS handshake failed: {message}")]
    Handshake { io_kind: String, message: String },
}

impl TlsError {
    /// Fixed value set: safe as a label or log field.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::BadServerName { .. } => "bad_server_name",
            Self::Timeout { .. } => "tls_timeout",
            Self::Handshake { .. } => "tls_handshake",
        }
    }
}

/// rustls `ClientConfig` for probing: ring provider passed explicitly, TLS 1.2 + 1.3,
/// session resumption off (a resumed session shows no certificate, and a cached chain
/// could be stale), no client auth, SNI on (rustls never sends it for IP addresses), and
/// [`RecordingVerifier`]: any chain is accepted, handshake signatures are verified.
pub fn client_config() -> Arc<ClientConfig> {
    let provider = rustls::crypto::ring::default_provider();
    let algorithms = provider.signature_verification_algorithms;
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        // Static input: the ring provider always has TLS 1.2 and 1.3 suites (tested below).
        .expect("ring provider supports TLS 1.2 and TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(RecordingVerifier { algorithms }))
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    config.enable_sni = true;
    Arc::new(config)
}

/// The name to present: `Some(dns name)` → SNI with it; `None` → the IP address, for
/// which rustls sends no SNI (RFC 6066 §3: literal addresses are not permitted).
pub(crate) fn server_name(
    name: Option<&str>,
    ip: std::net::IpAddr,
) -> Result<ServerName<'static>, TlsError> {
    match name {
        Some(n) => ServerName::try_from(n.trim_end_matches('.').to_owned()).map_err(|_| {
            TlsError::BadServerName {
                name: truncate_chars(n, MAX_MESSAGE_CHARS),
            }
        }),
        None => Ok(ServerName::IpAddress(ip.into())),
    }
}

/// Run the TLS handshake over `io`, finished by `deadline`, and collect the facts.
///
/// `io` must carry no unread plaintext: the caller checks that before the hand-over.
pub(crate) async fn handshake<IO>(
    io: IO,
    name: ServerName<'static>,
    config: Arc<ClientConfig>,
    deadline: Instant,
) -> Result<(TlsStream<IO>, TlsFacts), TlsError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let connect = TlsConnector::from(config).connect(name, io);
    let stream = match tokio::time::timeout_at(deadline, connect).await {
        Err(_) => {
            return Err(TlsError::Timeout {
                after: started.elapsed(),
            })
        }
        Ok(Err(e)) => {
            let err = TlsError::Handshake {
                io_kind: format!("{:?}", e.kind()),
                message: truncate_chars(&e.to_string(), MAX_MESSAGE_CHARS),
            };
            debug!(reason = err.reason(), error = %e, "TLS handshake failed");
            return Err(err);
        }
        Ok(Ok(s)) => s,
    };
    let handshake_seconds = started.elapsed().as_secs_f64();
    let conn = stream.get_ref().1;
    let chain = conn
        .peer_certificates()
        .map(<[CertificateDer<'static>]>::to_vec)
        .unwrap_or_default();
    let facts = TlsFacts {
        version: conn
            .protocol_version()
            .map_or_else(|| "unknown".to_owned(), version_name),
        cipher: conn
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .unwrap_or("unknown")
            .to_owned(),
        chain_len: chain.len(),
        chain,
        handshake_seconds,
    };
    debug!(
        version = %facts.version,
        cipher = %facts.cipher,
        chain_len = facts.chain_len,
        handshake_seconds = facts.handshake_seconds,
        "TLS handshake done"
    );
    Ok((stream, facts))
}

/// "TLSv1.3" style (the usual spelling in logs and other exporters), not rustls' "TLSv1_3".
fn version_name(v: ProtocolVersion) -> String {
    match v {
        ProtocolVersion::TLSv1_3 => "TLSv1.3".to_owned(),
        ProtocolVersion::TLSv1_2 => "TLSv1.2".to_owned(),
        ProtocolVersion::TLSv1_1 => "TLSv1.1".to_owned(),
        ProtocolVersion::TLSv1_0 => "TLSv1.0".to_owned(),
        other => other.as_str().unwrap_or("unknown").to_owned(),
    }
}

fn truncate_chars(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// Accepts any certificate chain (recording is done from the connection afterwards) but
/// verifies the handshake signatures with the provider's algorithms: the server must hold
/// the private key of the leaf it served.
#[derive(Debug)]
pub(crate) struct RecordingVerifier {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
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
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_config_builds_with_both_versions_and_no_resumption() {
        let config = client_config();
        assert!(config.enable_sni);
        assert!(!config.client_auth_cert_resolver.has_certs());
        let versions: Vec<_> = config
            .crypto_provider()
            .cipher_suites
            .iter()
            .map(|s| s.version().version)
            .collect();
        assert!(versions.contains(&ProtocolVersion::TLSv1_3));
        assert!(versions.contains(&ProtocolVersion::TLSv1_2));
    }

    // RFC 6066 §3: no SNI for literal IP addresses.
    #[test]
    fn server_name_none_is_ip_address() {
        let ip: std::net::IpAddr = [127, 0, 0, 1].into();
        assert!(matches!(
            server_name(None, ip),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name(Some("mx.example.org."), ip),
            Ok(ServerName::DnsName(_))
        ));
        let err = server_name(Some("bad name\r\n"), ip).unwrap_err();
        assert_eq!(err.reason(), "bad_server_name");
    }

    #[test]
    fn version_names_use_dots() {
        assert_eq!(version_name(ProtocolVersion::TLSv1_3), "TLSv1.3");
        assert_eq!(version_name(ProtocolVersion::TLSv1_2), "TLSv1.2");
    }
}
