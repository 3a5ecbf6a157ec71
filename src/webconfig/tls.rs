//! The web config's TLS part: certificates and keys from PEM files, client CAs, versions
//! and cipher suites → a rustls `ServerConfig` (ring provider passed explicitly, TLS
//! 1.2/1.3, ALPN `http/1.1`). RFC 8446 / RFC 5246, RFC 7301.
//!
//! Not here: the file format (`webconfig`), serving connections (`http`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use super::*;

/// Where a key of `tls_server_config` is: `file:line: tls_server_config.key`.
type PlaceOf<'a> = &'a dyn Fn(Option<u64>, &str) -> Place;

fn invalid(place: PlaceOf<'_>, line: Option<u64>, key: &str, message: String) -> WebConfigError {
    WebConfigError::Invalid {
        place: place(line, &format!("tls_server_config.{key}")),
        message,
    }
}

/// `tls_server_config` → the rustls server config; `None` when it asks for no TLS.
pub(super) fn tls_config(
    raw: &RawTls,
    line: u64,
    place: PlaceOf<'_>,
    base: &Path,
) -> Result<Option<Arc<ServerConfig>>, WebConfigError> {
    let (cert_file, key_file) = match (&raw.cert_file, &raw.key_file) {
        // exporter-toolkit: an empty tls_server_config means plain HTTP.
        (None, None) if raw.client_ca_file.is_none() && raw.client_auth_type.is_none() => {
            return Ok(None)
        }
        (Some(c), Some(k)) => (c, k),
        (None, _) => {
            return Err(invalid(
                place,
                Some(line),
                "cert_file",
                "missing (cert_file and key_file are both required for TLS)".into(),
            ))
        }
        (_, None) => {
            return Err(invalid(
                place,
                Some(line),
                "key_file",
                "missing (cert_file and key_file are both required for TLS)".into(),
            ))
        }
    };
    let versions = protocol_versions(raw, place)?;
    let client_auth = client_auth_type(raw, place)?;

    let chain = read_certs(
        cert_file,
        base,
        &place(
            Some(cert_file.referenced.line()),
            "tls_server_config.cert_file",
        ),
    )?;
    let key_place = place(
        Some(key_file.referenced.line()),
        "tls_server_config.key_file",
    );
    let key_path = resolve(base, &key_file.value);
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| WebConfigError::PemFile {
        place: key_place.clone(),
        path: key_path.display().to_string(),
        message: pem_message(&e, "private key (PKCS#8, SEC1 or RSA)"),
    })?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|source| WebConfigError::Tls {
            place: place(Some(line), "tls_server_config"),
            source: Box::new(source),
        })?;
    let builder = match client_verifier(raw, client_auth, place, base, provider)? {
        None => builder.with_no_client_auth(),
        Some(verifier) => builder.with_client_cert_verifier(verifier),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|source| match source {
            rustls::Error::InconsistentKeys(_) => WebConfigError::Invalid {
                place: key_place.clone(),
                message: "the private key does not match the certificate of cert_file".into(),
            },
            source => WebConfigError::Tls {
                place: key_place.clone(),
                source: Box::new(source),
            },
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// `min_version` / `max_version` → the versions offered, newest first.
fn protocol_versions(
    raw: &RawTls,
    place: PlaceOf<'_>,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, WebConfigError> {
    let version = |v: &Spanned<String>, key: &str| match v.value.as_str() {
        "TLS12" => Ok(&rustls::version::TLS12),
        "TLS13" => Ok(&rustls::version::TLS13),
        other => Err(invalid(
            place,
            Some(v.referenced.line()),
            key,
            format!("{other:?} is not supported (use TLS12 or TLS13)"),
        )),
    };
    let min = raw
        .min_version
        .as_ref()
        .map(|v| version(v, "min_version"))
        .transpose()?;
    let max = raw
        .max_version
        .as_ref()
        .map(|v| version(v, "max_version"))
        .transpose()?;
    let tls12_allowed = min.is_none_or(|m| m.version == rustls::ProtocolVersion::TLSv1_2);
    let tls13_allowed = max.is_none_or(|m| m.version == rustls::ProtocolVersion::TLSv1_3);
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        tls13_allowed.then_some(&rustls::version::TLS13),
        tls12_allowed.then_some(&rustls::version::TLS12),
    ]
    .into_iter()
    .flatten()
    .collect();
    if versions.is_empty() {
        let l = raw.max_version.as_ref().map(|v| v.referenced.line());
        return Err(invalid(
            place,
            l,
            "max_version",
            "is below min_version".into(),
        ));
    }
    Ok(versions)
}

/// `client_auth_type`, defaulting as exporter-toolkit does.
fn client_auth_type(raw: &RawTls, place: PlaceOf<'_>) -> Result<ClientAuth, WebConfigError> {
    Ok(match &raw.client_auth_type {
        // exporter-toolkit: a client CA without a type means verify.
        None if raw.client_ca_file.is_some() => ClientAuth::RequireAndVerifyClientCert,
        None => ClientAuth::NoClientCert,
        Some(t) => match t.value.as_str() {
            "NoClientCert" => ClientAuth::NoClientCert,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
            other => {
                return Err(invalid(
                    place,
                    Some(t.referenced.line()),
                    "client_auth_type",
                    format!(
                    "{other:?} is not supported (use NoClientCert or RequireAndVerifyClientCert)"
                ),
                ))
            }
        },
    })
}

/// The client certificate verifier over `client_ca_file`; `None` without client auth.
fn client_verifier(
    raw: &RawTls,
    client_auth: ClientAuth,
    place: PlaceOf<'_>,
    base: &Path,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, WebConfigError> {
    match client_auth {
        ClientAuth::NoClientCert => match &raw.client_ca_file {
            Some(ca) => Err(invalid(
                place,
                Some(ca.referenced.line()),
                "client_ca_file",
                "set, but client_auth_type is NoClientCert".into(),
            )),
            None => Ok(None),
        },
        ClientAuth::RequireAndVerifyClientCert => {
            let Some(ca) = &raw.client_ca_file else {
                let l = raw.client_auth_type.as_ref().map(|t| t.referenced.line());
                return Err(invalid(
                    place,
                    l,
                    "client_ca_file",
                    "required by client_auth_type RequireAndVerifyClientCert".into(),
                ));
            };
            let ca_place = place(
                Some(ca.referenced.line()),
                "tls_server_config.client_ca_file",
            );
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca, base, &ca_place)? {
                roots.add(cert).map_err(|source| WebConfigError::Tls {
                    place: ca_place.clone(),
                    source: Box::new(source),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| WebConfigError::Invalid {
                    place: ca_place.clone(),
                    message: format!("cannot build the client certificate verifier: {e}"),
                })?;
            Ok(Some(verifier))
        }
    }
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn pem_message(e: &rustls::pki_types::pem::Error, what: &str) -> String {
    match e {
        rustls::pki_types::pem::Error::NoItemsFound => format!("no PEM {what} found"),
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        other => format!("bad PEM: {other}"),
    }
}

fn read_certs(
    file: &Spanned<String>,
    base: &Path,
    place: &Place,
) -> Result<Vec<CertificateDer<'static>>, WebConfigError> {
    let path = resolve(base, &file.value);
    let err = |message: String| WebConfigError::PemFile {
        place: place.clone(),
        path: path.display().to_string(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(&path)
        .map_err(|e| err(pem_message(&e, "certificate")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(pem_message(&e, "certificate")))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate found".into()));
    }
    Ok(certs)
}
