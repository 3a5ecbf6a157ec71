//! `--web.config.file` end to end: the built binary serving TLS and basic auth on
//! 127.0.0.1, checked with a real TLS client (tokio-rustls) trusting the test CA of
//! `tests/common` (rcgen), and the start-up refusals of invalid web configs (exit 2, message
//! naming the problem).
//!
//! Not here: the file format's finer rules (unit tests in `src/webconfig/`), the lab.
//! No DNS and no mail server: the one configured target is a closed port on 127.0.0.1, so
//! probes fail quickly, which is all `/metrics` needs.

mod common;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use base64::Engine as _;
use common::{free_port, pki, run_exporter_until_exit, tempdir, test_ca, Daemon, Pki};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Upper bound for the exporter to start listening or to exit.
const START_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound for one client exchange.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// bcrypt's minimum cost: the tests are about the protocol, not the work factor.
const TEST_COST: u32 = 4;

// ---- the exporter ----------------------------------------------------------------------------

/// Writes the exporter config (one `address:` target on a closed port) and `web.yml`.
fn write_configs(dir: &Path, web_yaml: &str) -> Result<(PathBuf, PathBuf)> {
    let closed = free_port()?;
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "interval: 1m\ntimeout: 2s\ndns:\n  resolver: 127.0.0.1:53\nsmtp:\n  helo_name: probe.test\ntargets:\n  - address: 127.0.0.1\n    port: {closed}\n"
        ),
    )?;
    let web = dir.join("web.yml");
    std::fs::write(&web, web_yaml)?;
    Ok((config, web))
}

/// A running exporter (killed on drop) and the directory of its files.
struct Exporter {
    _daemon: Daemon,
    port: u16,
    dir: tempfile::TempDir,
}

/// Starts the exporter with `web_yaml` (relative file names resolve in its temp dir, where
/// the test PKI is written) and waits until its port accepts.
fn start(pki: &Pki, web_yaml: &str) -> Result<Exporter> {
    let dir = tempdir()?;
    std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem)?;
    std::fs::write(dir.path().join("server.crt"), &pki.server_cert_pem)?;
    std::fs::write(dir.path().join("server.key"), &pki.server_key_pem)?;
    let (config, web) = write_configs(dir.path(), web_yaml)?;
    let web_arg = format!("--web.config.file={}", web.display());
    let daemon = Daemon::start_listening(&config, &[web_arg.as_str(), "--log.level=warn"])?;
    let port = daemon.addr.port();
    Ok(Exporter {
        _daemon: daemon,
        port,
        dir,
    })
}

/// Runs the exporter with an invalid web config; returns its exit code and stderr.
fn start_invalid(web_yaml: &str) -> Result<(Option<i32>, String)> {
    let dir = tempdir()?;
    let (config, web) = write_configs(dir.path(), web_yaml)?;
    run_exporter_until_exit(
        &[
            &format!("--config.file={}", config.display()),
            &format!("--web.listen-address=127.0.0.1:{}", free_port()?),
            &format!("--web.config.file={}", web.display()),
        ],
        START_TIMEOUT,
    )
}

// ---- a small HTTP/1.1 client -----------------------------------------------------------------

struct Reply {
    status: u16,
    head: String,
    body: String,
}

fn request(method: &str, path: &str, auth: Option<(&str, &str)>) -> String {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some((u, p)) = auth {
        let creds = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        r.push_str(&format!("Authorization: Basic {creds}\r\n"));
    }
    r.push_str("Content-Length: 0\r\n\r\n");
    r
}

fn parse_reply(raw: &[u8]) -> Result<Reply> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP reply: {text:?}"))?;
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line: {head:?}"))?;
    Ok(Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    })
}

/// Client side TLS: trusts `root` only, presents the `client` certificate when given.
fn tls_client(
    root: &CertificateDer<'static>,
    client: Option<&Pki>,
) -> Result<tokio_rustls::TlsConnector> {
    let mut store = rustls::RootCertStore::empty();
    store.add(root.clone())?;
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(store);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(p) => builder.with_client_auth_cert(
            p.client_chain.clone(),
            PrivateKeyDer::try_from(p.client_key_der.clone()).map_err(|e| anyhow!(e))?,
        )?,
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

async fn https(
    port: u16,
    connector: &tokio_rustls::TlsConnector,
    method: &str,
    path: &str,
    auth: Option<(&str, &str)>,
) -> Result<Reply> {
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
        let name = ServerName::try_from("localhost")?;
        let mut tls = connector.connect(name, tcp).await?;
        tls.write_all(request(method, path, auth).as_bytes())
            .await?;
        tls.flush().await?;
        let mut raw = Vec::new();
        match tls.read_to_end(&mut raw).await {
            Ok(_) => {}
            // Some peers close without close_notify after a complete reply.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
            Err(e) => return Err(e.into()),
        }
        parse_reply(&raw)
    };
    tokio::time::timeout(IO_TIMEOUT, exchange)
        .await
        .context("HTTPS exchange timed out")?
}

async fn http_plain(
    port: u16,
    method: &str,
    path: &str,
    auth: Option<(&str, &str)>,
) -> Result<Vec<u8>> {
    let exchange = async {
        let mut tcp = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
        tcp.write_all(request(method, path, auth).as_bytes())
            .await?;
        let mut raw = Vec::new();
        // A reset after the server's alert is an answer too.
        let _ = tcp.read_to_end(&mut raw).await;
        Ok::<_, anyhow::Error>(raw)
    };
    tokio::time::timeout(IO_TIMEOUT, exchange)
        .await
        .context("HTTP exchange timed out")?
}

fn hash(password: &str) -> Result<String> {
    Ok(bcrypt::hash(password, TEST_COST)?)
}

fn tls_auth_config(extra_tls: &str, users: &[(&str, &str)]) -> Result<String> {
    let mut y = format!(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{extra_tls}basic_auth_users:\n"
    );
    for (u, p) in users {
        y.push_str(&format!("  {u}: '{}'\n", hash(p)?));
    }
    y.push_str("http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n");
    Ok(y)
}

// ---- tests -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_basic_auth_serves_only_good_credentials() -> Result<()> {
    let pki = pki()?;
    let exporter = start(
        &pki,
        &tls_auth_config("  min_version: TLS12\n", &[("alice", "s3cret")])?,
    )?;
    let client = tls_client(&pki.ca_der, None)?;

    let ok = https(
        exporter.port,
        &client,
        "GET",
        "/metrics",
        Some(("alice", "s3cret")),
    )
    .await?;
    assert_eq!(ok.status, 200, "{}", ok.head);
    assert!(
        ok.body.contains("mailtls_"),
        "no mailtls_ metrics: {}",
        ok.body
    );
    assert!(
        ok.head
            .to_ascii_lowercase()
            .contains("x-content-type-options: nosniff"),
        "{}",
        ok.head
    );
    // Second scrape: served from the cache of successful checks.
    let again = https(
        exporter.port,
        &client,
        "GET",
        "/metrics",
        Some(("alice", "s3cret")),
    )
    .await?;
    assert_eq!(again.status, 200);

    for auth in [Some(("alice", "wrong")), Some(("bob", "s3cret")), None] {
        let r = https(exporter.port, &client, "GET", "/metrics", auth).await?;
        assert_eq!(r.status, 401, "{auth:?}: {}", r.head);
        assert!(
            r.head
                .contains("www-authenticate: Basic realm=\"mailtls_exporter\"")
                || r.head
                    .contains("WWW-Authenticate: Basic realm=\"mailtls_exporter\""),
            "{}",
            r.head
        );
    }
    // Every endpoint is behind the login, reload and probe included.
    for (method, path) in [
        ("GET", "/-/healthy"),
        ("POST", "/-/reload"),
        ("GET", "/probe?target=%5B127.0.0.1%5D%3A1"),
        ("GET", "/"),
    ] {
        let r = https(exporter.port, &client, method, path, None).await?;
        assert_eq!(r.status, 401, "{method} {path}");
    }
    let healthy = https(
        exporter.port,
        &client,
        "GET",
        "/-/healthy",
        Some(("alice", "s3cret")),
    )
    .await?;
    assert_eq!(healthy.status, 200);

    // Plain HTTP to the TLS port gets no HTTP answer.
    let raw = http_plain(exporter.port, "GET", "/metrics", Some(("alice", "s3cret"))).await?;
    assert!(
        !raw.starts_with(b"HTTP/"),
        "plain HTTP answered: {:?}",
        String::from_utf8_lossy(&raw)
    );

    // A client that does not trust the CA fails the handshake.
    let stranger = test_ca("some other CA")?;
    let untrusting = tls_client(stranger.der(), None)?;
    let r = https(
        exporter.port,
        &untrusting,
        "GET",
        "/metrics",
        Some(("alice", "s3cret")),
    )
    .await;
    assert!(r.is_err(), "untrusted server accepted");

    // Failed handshakes did not stop the accept loop.
    let after = https(
        exporter.port,
        &client,
        "GET",
        "/metrics",
        Some(("alice", "s3cret")),
    )
    .await?;
    assert_eq!(after.status, 200);
    drop(exporter);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_is_required_and_verified() -> Result<()> {
    let pki = pki()?;
    let web = tls_auth_config(
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  min_version: TLS13\n",
        &[("alice", "s3cret")],
    )?;
    let exporter = start(&pki, &web)?;

    let anonymous = tls_client(&pki.ca_der, None)?;
    let r = https(
        exporter.port,
        &anonymous,
        "GET",
        "/metrics",
        Some(("alice", "s3cret")),
    )
    .await;
    assert!(
        r.is_err(),
        "served a client without a certificate: {:?}",
        r.map(|r| r.head)
    );

    let with_cert = tls_client(&pki.ca_der, Some(&pki))?;
    let ok = https(
        exporter.port,
        &with_cert,
        "GET",
        "/metrics",
        Some(("alice", "s3cret")),
    )
    .await?;
    assert_eq!(ok.status, 200, "{}", ok.head);
    assert!(ok.body.contains("mailtls_"));
    // The certificate does not replace the password.
    let r = https(exporter.port, &with_cert, "GET", "/metrics", None).await?;
    assert_eq!(r.status, 401);
    drop(exporter);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_users_and_keeps_the_old_file_when_the_new_one_is_invalid() -> Result<()> {
    let pki = pki()?;
    // Plain HTTP with basic auth: the auth path without TLS.
    let first = format!("basic_auth_users:\n  alice: '{}'\n", hash("one")?);
    let exporter = start(&pki, &first)?;
    let port = exporter.port;
    let web = exporter.dir.path().join("web.yml");
    let status = |raw: Vec<u8>| parse_reply(&raw).map(|r| r.status);

    assert_eq!(
        status(http_plain(port, "GET", "/metrics", Some(("alice", "one"))).await?)?,
        200
    );

    std::fs::write(
        &web,
        format!("basic_auth_users:\n  carol: '{}'\n", hash("two")?),
    )?;
    let r = http_plain(port, "POST", "/-/reload", Some(("alice", "one"))).await?;
    assert_eq!(status(r)?, 200);
    assert_eq!(
        status(http_plain(port, "GET", "/metrics", Some(("alice", "one"))).await?)?,
        401
    );
    assert_eq!(
        status(http_plain(port, "GET", "/metrics", Some(("carol", "two"))).await?)?,
        200
    );

    std::fs::write(&web, "basic_auth_users:\n  carol: not-a-hash\n")?;
    let raw = http_plain(port, "POST", "/-/reload", Some(("carol", "two"))).await?;
    let r = parse_reply(&raw)?;
    assert_eq!(r.status, 500);
    assert!(r.body.contains("basic_auth_users.carol"), "{}", r.body);
    assert_eq!(
        status(http_plain(port, "GET", "/metrics", Some(("carol", "two"))).await?)?,
        200
    );
    drop(exporter);
    Ok(())
}

#[test]
fn invalid_web_configs_exit_2_naming_the_problem() -> Result<()> {
    let good_hash = hash("x")?;
    let cases = [
        (
            "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  client_auth: x\n".to_string(),
            "client_auth",
        ),
        (
            "basic_auth_users:\n  alice: $2y$10$tooshort\n".to_string(),
            "basic_auth_users.alice: not a bcrypt hash",
        ),
        (
            format!(
                "tls_server_config:\n  cert_file: /nonexistent/server.crt\n  key_file: /nonexistent/server.key\nbasic_auth_users:\n  alice: '{good_hash}'\n"
            ),
            "tls_server_config.cert_file: cannot use /nonexistent/server.crt",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n".to_string(),
            "client_auth_type: \"RequireAnyClientCert\" is not supported",
        ),
    ];
    for (yaml, want) in cases {
        let (code, err) = start_invalid(&yaml)?;
        assert_eq!(code, Some(2), "{yaml}: {err}");
        assert!(err.contains(want), "{yaml}: wanted {want:?} in {err:?}");
        assert!(err.contains("web.yml"), "file not named: {err}");
    }
    Ok(())
}
