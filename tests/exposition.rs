//! The bounded exposition against a hostile STARTTLS server (docs/metrics.md, "Bounded
//! exposition"): a 60-certificate chain with 4 KB names, probed by the real daemon, must
//! give 10 certificate series per family, the real chain length, label values cut at 256
//! bytes, an exposition of bounded size that `promtool check metrics` accepts.
//!
//! The 500-record TLSA case is a renderer test (`src/metrics/exposition.rs`): the DNS side
//! does not need to serve the records. No lab needed here: the target is an address.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use common::{sample, tempdir, write, Daemon};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Certificates served.
const CHAIN: usize = 60;
/// Bytes of each long name (the common name alone).
const NAME_BYTES: usize = 4096;
/// Certificates with a 4 KB subject: the leaf (whose issuer, depth 1, is long too) and
/// depths 1-4. rustls, like any TLS client, refuses a handshake message over 64 KiB, so
/// 60 certificates cannot all carry 4 KB names: the others are small.
const LONG_NAMED: usize = 5;
/// Label values cut at 256 bytes, plus the 3 bytes of `…`.
const MAX_LABEL: usize = 256 + '…'.len_utf8();
/// Stated bound on the whole `/metrics` body for this one hostile target: 10 certificate
/// series per family with labels of at most 259 bytes, whatever the chain.
const MAX_BODY: usize = 32 * 1024;

/// A 4 KB name mixing 1-, 2- and 3-byte characters, so the cut must find a char boundary.
fn long_name(tag: usize) -> String {
    let mut s = format!("hostile-{tag}-");
    while s.len() < NAME_BYTES {
        s.push_str("é€x");
    }
    s
}

fn ca_params(cn: &str) -> Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    Ok(p)
}

/// The hostile chain (leaf first) and the leaf's key.
fn hostile_chain() -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let root_key = KeyPair::generate()?;
    let root_params = ca_params("tiny root")?;
    let root = Issuer::from_params(&root_params, &root_key);
    // Depth 1: a CA with a 4 KB name that issues the leaf.
    let ca_key = KeyPair::generate()?;
    let ca_params_long = ca_params(&long_name(1))?;
    let ca_cert = ca_params_long.clone().signed_by(&ca_key, &root)?;
    let ca = Issuer::from_params(&ca_params_long, &ca_key);
    let leaf_key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(vec!["hostile.test".to_owned()])?;
    leaf.distinguished_name = rcgen::DistinguishedName::new();
    leaf.distinguished_name
        .push(DnType::CommonName, long_name(0));
    let mut chain = vec![
        leaf.signed_by(&leaf_key, &ca)?.der().clone(),
        ca_cert.der().clone(),
    ];
    let filler_key = KeyPair::generate()?;
    for depth in 2..CHAIN {
        let cn = if depth < LONG_NAMED {
            long_name(depth)
        } else {
            format!("filler {depth}")
        };
        chain.push(ca_params(&cn)?.signed_by(&filler_key, &root)?.der().clone());
    }
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    Ok((chain, key))
}

/// An SMTP server on 127.0.0.1 that offers STARTTLS and then serves `chain`.
fn hostile_starttls_server(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<SocketAddr> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(20), serve(stream, acceptor))
                        .await;
                });
            }
        });
    });
    Ok(addr)
}

async fn serve(stream: tokio::net::TcpStream, acceptor: tokio_rustls::TlsAcceptor) -> Result<()> {
    let mut s = BufReader::new(stream);
    s.get_mut().write_all(b"220 hostile.test ESMTP\r\n").await?;
    let mut line = String::new();
    loop {
        line.clear();
        if s.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let verb = line.trim().to_ascii_uppercase();
        if verb.starts_with("EHLO") {
            s.get_mut()
                .write_all(b"250-hostile.test\r\n250 STARTTLS\r\n")
                .await?;
        } else if verb == "STARTTLS" {
            s.get_mut().write_all(b"220 go ahead\r\n").await?;
            break;
        } else {
            s.get_mut().write_all(b"221 bye\r\n").await?;
            return Ok(());
        }
    }
    let tls = acceptor.accept(s.into_inner()).await?;
    let mut tls = BufReader::new(tls);
    loop {
        line.clear();
        if tls.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let quit = line.trim().eq_ignore_ascii_case("QUIT");
        let reply: &[u8] = if quit { b"221 bye\r\n" } else { b"250 ok\r\n" };
        tls.get_mut().write_all(reply).await?;
        if quit {
            return Ok(());
        }
    }
}

/// Every label value of every sample line, unescaped.
fn label_values(exposition: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let Some((_, rest)) = line.split_once('{') else {
            continue;
        };
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            if c != '"' {
                continue;
            }
            let mut v = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some('n') => v.push('\n'),
                        Some(other) => v.push(other),
                        None => break,
                    },
                    '"' => break,
                    c => v.push(c),
                }
            }
            out.push(v);
        }
    }
    out
}

fn promtool_check(exposition: &str) -> Result<()> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("promtool (package prometheus) must be installed")?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(exposition.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "promtool check metrics failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn count(exposition: &str, family: &str) -> usize {
    exposition
        .lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .count()
}

#[test]
fn hostile_chain_of_60_certificates_with_4k_names_gives_a_bounded_exposition() -> Result<()> {
    let (chain, key) = hostile_chain()?;
    let served_bytes: usize = chain.iter().map(|c| c.len()).sum();
    let addr = hostile_starttls_server(chain, key)?;
    let dir = tempdir()?;
    let cfg = write(
        dir.path(),
        "c.yml",
        &format!(
            "timeout: 10s\nsmtp:\n  helo_name: probe.lab.test\ntargets:\n  - address: {}\n    port: {}\n",
            addr.ip(),
            addr.port()
        ),
    )?;
    let d = Daemon::start(&cfg, &[])?;
    let body = d.wait_metrics(Duration::from_secs(20), |b| {
        b.contains("mailtls_cert_chain_length{")
    })?;
    let target = format!("[{}]:{}", addr.ip(), addr.port());
    let labels = [("target", target.as_str())];
    assert_eq!(
        sample(&body, "mailtls_tls_handshake_success", &labels),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "mailtls_cert_chain_length", &labels),
        Some(CHAIN as f64)
    );
    for family in [
        "mailtls_cert_info",
        "mailtls_cert_not_after_timestamp_seconds",
        "mailtls_cert_not_before_timestamp_seconds",
    ] {
        assert_eq!(count(&body, family), 10, "{family}");
        for depth in 0..10 {
            let depth = depth.to_string();
            assert!(
                sample(&body, family, &[("depth", depth.as_str())]).is_some(),
                "{family} depth {depth}"
            );
        }
        assert!(sample(&body, family, &[("depth", "10")]).is_none());
    }
    let values = label_values(&body);
    let longest = values.iter().map(String::len).max().unwrap_or(0);
    assert!(longest <= MAX_LABEL, "a label value has {longest} bytes");
    let cut: Vec<&String> = values.iter().filter(|v| v.ends_with('…')).collect();
    // Leaf subject and issuer, depth 1-4 subjects (and depth 1's long issuer is the root's
    // short name): 6 cut values, each a prefix of the real name.
    assert_eq!(cut.len(), 6, "{cut:?}");
    assert!(cut
        .iter()
        .all(|v| v.starts_with("CN=hostile-") && v.len() > 250));
    println!(
        "hostile chain: {CHAIN} certificates, {served_bytes} bytes served; /metrics body {} bytes, longest label value {longest} bytes",
        body.len()
    );
    assert!(body.len() < MAX_BODY, "exposition of {} bytes", body.len());
    promtool_check(&body)?;

    // /probe of the same (configured) target renders the same bounds.
    let probe = d.get(&format!(
        "/probe?target=%5B{}%5D:{}",
        addr.ip(),
        addr.port()
    ))?;
    assert_eq!(probe.status, 200, "{}", probe.body);
    assert_eq!(count(&probe.body, "mailtls_cert_info"), 10);
    assert_eq!(
        sample(&probe.body, "mailtls_cert_chain_length", &[]),
        Some(CHAIN as f64)
    );
    let longest = label_values(&probe.body)
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(0);
    assert!(longest <= MAX_LABEL);
    assert!(probe.body.len() < MAX_BODY);
    promtool_check(&probe.body)?;
    // The debug text lists every certificate and says what the metrics leave out.
    let dbg = d.get(&format!(
        "/probe?target=%5B{}%5D:{}&debug=true",
        addr.ip(),
        addr.port()
    ))?;
    assert_eq!(dbg.status, 200, "{}", dbg.body);
    assert!(dbg.body.contains("cert 59:"), "{}", dbg.body);
    assert!(
        dbg.body
            .contains("the server sent 60 certificates; the metrics export depth 0-9 only"),
        "{}",
        dbg.body
    );
    Ok(())
}
