//! What a sender sees inside TLS, and the submission ports: the second EHLO (REQUIRETLS, a
//! TLS proxy that breaks after the handshake), implicit TLS on 465 (RFC 8314) with DANE at
//! `_465._tcp` compared with posttls-finger (`-w`), STARTTLS on 587, and the `tls:` override.
//!
//! Postfix 3.7 does not implement REQUIRETLS (RFC 8689), so the positive case and the broken
//! proxies are servers of this test on 127.26.11.x; the submission listeners are the lab's
//! Postfix (127.25.0.5:465/587, 127.25.0.6:465; tests/lab/README.md).

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use common::{check_json, lab, sample, tempdir, write, Daemon, Lab};
use rcgen::{CertificateParams, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// What the test server does once TLS is up.
#[derive(Clone, Copy)]
enum AfterTls {
    /// Answers EHLO with REQUIRETLS, then 221 to QUIT.
    RequireTls,
    /// Says nothing (a proxy whose backend is gone).
    Silent,
    /// Closes the connection (close_notify, FIN).
    Close,
}

/// A STARTTLS server on `ip` (a free port) that behaves as `after` inside TLS.
fn test_server(ip: &str, after: AfterTls) -> Result<SocketAddr> {
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec!["proxy.test".to_owned()])?.self_signed(&key)?;
    let key_der: PrivateKeyDer<'static> = PrivatePkcs8KeyDer::from(key.serialize_der()).into();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key_der)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = std::net::TcpListener::bind(format!("{ip}:0"))
        .with_context(|| format!("listening on {ip}"))?;
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
                    let session = serve(stream, acceptor, after);
                    let _ = tokio::time::timeout(Duration::from_secs(30), session).await;
                });
            }
        });
    });
    Ok(addr)
}

async fn serve(
    stream: tokio::net::TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    after: AfterTls,
) -> Result<()> {
    let mut s = BufReader::new(stream);
    s.get_mut().write_all(b"220 proxy.test ESMTP\r\n").await?;
    let mut line = String::new();
    loop {
        line.clear();
        if s.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let verb = line.trim().to_ascii_uppercase();
        if verb.starts_with("EHLO") {
            // REQUIRETLS before TLS must not count (RFC 8689 §4).
            let ehlo = b"250-proxy.test\r\n250-PIPELINING\r\n250-REQUIRETLS\r\n250 STARTTLS\r\n";
            s.get_mut().write_all(ehlo).await?;
        } else if verb == "STARTTLS" {
            s.get_mut().write_all(b"220 go ahead\r\n").await?;
            break;
        } else {
            s.get_mut().write_all(b"221 bye\r\n").await?;
            return Ok(());
        }
    }
    let mut tls = BufReader::new(acceptor.accept(s.into_inner()).await?);
    match after {
        AfterTls::Silent => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            return Ok(());
        }
        AfterTls::Close => {
            tls.get_mut().shutdown().await?;
            return Ok(());
        }
        AfterTls::RequireTls => {}
    }
    loop {
        line.clear();
        if tls.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let verb = line.trim().to_ascii_uppercase();
        if verb.starts_with("EHLO") {
            let ehlo = b"250-proxy.test\r\n250-PIPELINING\r\n250-REQUIRETLS\r\n250 8BITMIME\r\n";
            tls.get_mut().write_all(ehlo).await?;
        } else {
            tls.get_mut().write_all(b"221 bye\r\n").await?;
            return Ok(());
        }
    }
}

fn target(addr: SocketAddr) -> String {
    format!("[{}]:{}", addr.ip(), addr.port())
}

fn probe_path(addr: SocketAddr) -> String {
    format!("/probe?target=%5B{}%5D:{}", addr.ip(), addr.port())
}

/// REQUIRETLS offered inside TLS; a proxy silent after the handshake; one that closes.
/// Each through the daemon's `/probe` (metrics) and its debug text.
#[test]
fn second_ehlo_shows_requiretls_and_proxies_that_break_after_the_handshake() -> Result<()> {
    let good = test_server("127.26.11.1", AfterTls::RequireTls)?;
    let silent = test_server("127.26.11.2", AfterTls::Silent)?;
    let closing = test_server("127.26.11.3", AfterTls::Close)?;
    let dir = tempdir()?;
    let mut cfg = "timeout: 3s\nsmtp:\n  helo_name: probe.lab.test\ntargets:\n".to_owned();
    for a in [good, silent, closing] {
        cfg.push_str(&format!(
            "  - address: {}\n    port: {}\n",
            a.ip(),
            a.port()
        ));
    }
    let d = Daemon::start(&write(dir.path(), "c.yml", &cfg)?, &[])?;

    let cases = [
        (good, Some(1.0), Some(1.0), 1.0, None),
        (silent, Some(0.0), None, 0.0, Some("ehlo_after_tls_timeout")),
        (closing, Some(0.0), None, 0.0, Some("ehlo_after_tls_closed")),
    ];
    for (addr, ehlo_ok, requiretls, success, reason) in cases {
        let r = d.get(&probe_path(addr))?;
        assert_eq!(r.status, 200, "{}", r.body);
        let body = &r.body;
        let t = target(addr);
        let labels = [("target", t.as_str())];
        assert_eq!(
            sample(body, "mailtls_tls_handshake_success", &labels),
            Some(1.0),
            "{t}: the handshake completed\n{body}"
        );
        assert_eq!(
            sample(body, "mailtls_smtp_ehlo_after_tls_success", &labels),
            ehlo_ok,
            "{t}\n{body}"
        );
        assert_eq!(
            sample(body, "mailtls_smtp_requiretls_advertised", &labels),
            requiretls,
            "{t}\n{body}"
        );
        assert_eq!(
            sample(body, "mailtls_probe_success", &labels),
            Some(success),
            "{t}: probe_success (docs/verdict.md)\n{body}"
        );
        if let Some(reason) = reason {
            assert_eq!(
                sample(body, "mailtls_smtp_error_info", &[("reason", reason)]),
                Some(1.0),
                "{t}\n{body}"
            );
        }
        promtool_check(body)?;
        let dbg = d.get(&format!("{}&debug=true", probe_path(addr)))?;
        let words = match reason {
            None => "EHLO after TLS answered, REQUIRETLS offered",
            Some(_) => "EHLO after TLS NOT answered",
        };
        assert!(dbg.body.contains(words), "{t}: {words}\n{}", dbg.body);
        assert!(
            dbg.body.contains("C: EHLO probe.lab.test") && dbg.body.contains("C: QUIT"),
            "{}",
            dbg.body
        );
    }
    Ok(())
}

/// posttls-finger's verdict for one submission destination: `-w` (wrapper mode) for 465.
fn posttls_verdict(lab: &Lab, dest: &str, implicit: bool) -> Result<&'static str> {
    let mut cmd = Command::new("bash");
    cmd.arg(common::repo().join("tests/lab/posttls.sh"))
        .arg(&lab.dir)
        .arg(dest);
    if implicit {
        cmd.arg("-w");
    }
    let out = cmd.output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(if text.contains("Verified TLS connection established") {
        "verified"
    } else if text.contains("Untrusted TLS connection established")
        || text.contains("Failed to establish")
    {
        "failed"
    } else {
        bail!("posttls-finger on {dest}: unexpected output:\n{text}")
    })
}

/// Implicit TLS on 465 and STARTTLS on 587 against the lab's Postfix, DANE with TLSA at
/// `_465._tcp` / `_587._tcp`, each verdict equal to posttls-finger's.
#[test]
fn submission_ports_use_their_tls_mode_and_tlsa_name_like_posttls_finger() -> Result<()> {
    let lab = lab()?;
    let dir = tempdir()?;
    for mode in ["upstream", "local"] {
        let cfg = write(dir.path(), "c.yml", &lab.config(mode, "")?)?;
        let cases = [
            ("[sub.good.test]:465", true, "verified"),
            ("[sub2.good.test]:465", true, "failed"),
            ("[sub.good.test]:587", false, "verified"),
        ];
        let targets: Vec<&str> = cases.iter().map(|c| c.0).collect();
        let (_, reports) = check_json(&cfg, &targets)?;
        let reports = reports.as_array().context("check output")?;
        assert_eq!(reports.len(), cases.len());
        for ((dest, implicit, expect), r) in cases.iter().zip(reports) {
            let host = &r["hosts"][0];
            let port = dest.rsplit(':').next().unwrap_or_default();
            let a = &host["addresses"][0];
            let smtp = &a["smtp"];
            let want_mode = if *implicit { "implicit" } else { "starttls" };
            assert_eq!(smtp["tls_mode"], want_mode, "{dest} ({mode}): {r:#}");
            assert_eq!(smtp["starttls_advertised"], !implicit, "{dest}");
            assert!(smtp["tls"].is_object(), "{dest}: handshake\n{r:#}");
            assert!(smtp["error"].is_null(), "{dest}: {}", smtp["error"]);
            assert!(smtp["ehlo_after_tls"].is_object() || *implicit, "{dest}");
            // The port flows into the TLSA name (RFC 7672 §2.2 / RFC 6698 §3).
            let tlsa_name = format!("_{port}._tcp.{}", host["mx"].as_str().unwrap_or("?"));
            let lookups = r["lookups"].to_string();
            assert!(
                lookups.contains(&tlsa_name),
                "{dest}: {tlsa_name} in {lookups}"
            );
            assert_eq!(a["dane"], *expect, "{dest} ({mode}): {}", a["why"]);
            let postfix = posttls_verdict(&lab, dest, *implicit)?;
            assert_eq!(
                postfix, *expect,
                "{dest}: posttls-finger disagrees with the lab"
            );
            println!(
                "{dest} ({mode}): exporter {} = posttls-finger {postfix}",
                a["dane"]
            );
        }
    }
    Ok(())
}

/// `tls: implicit` on a port-25 listener that speaks plaintext SMTP: the override is obeyed
/// (the ClientHello meets a 220), and `/probe` of that configured target obeys it too.
#[test]
fn tls_override_in_the_config_is_obeyed_by_the_scheduler_and_probe() -> Result<()> {
    let lab = lab()?;
    let dir = tempdir()?;
    let extra = "timeout: 5s\ntargets:\n  - host: mx1.good.test\n    tls: implicit\n  - host: sub.good.test\n    port: 465\n";
    let cfg = write(dir.path(), "c.yml", &lab.config("upstream", extra)?)?;
    let d = Daemon::start(&cfg, &[])?;
    let body = d.wait_metrics(Duration::from_secs(20), |b| {
        b.contains("mailtls_smtp_error_info{target=\"[mx1.good.test]\"")
            && b.contains("mailtls_tls_handshake_success{target=\"[sub.good.test]:465\"")
    })?;
    let forced = [("target", "[mx1.good.test]")];
    assert_eq!(
        sample(
            &body,
            "mailtls_smtp_error_info",
            &[forced[0], ("reason", "tls_handshake")]
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(sample(&body, "mailtls_starttls_advertised", &forced), None);
    let sub = [("target", "[sub.good.test]:465")];
    assert_eq!(
        sample(&body, "mailtls_starttls_advertised", &sub),
        None,
        "implicit: absent"
    );
    assert_eq!(sample(&body, "mailtls_smtp_up", &sub), Some(1.0));
    assert_eq!(
        sample(&body, "mailtls_smtp_ehlo_after_tls_success", &sub),
        Some(1.0)
    );
    assert_eq!(
        sample(&body, "mailtls_smtp_requiretls_advertised", &sub),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &body,
            "mailtls_dane_status",
            &[sub[0], ("status", "verified")]
        ),
        Some(1.0),
        "{body}"
    );
    let r = d.get("/probe?target=%5Bmx1.good.test%5D")?;
    assert_eq!(
        sample(
            &r.body,
            "mailtls_smtp_error_info",
            &[("reason", "tls_handshake")]
        ),
        Some(1.0),
        "/probe of a configured target uses its tls: override\n{}",
        r.body
    );
    promtool_check(&body)?;
    Ok(())
}

/// Postfix 3.7 has no REQUIRETLS: the lab's port-25 listener answers the second EHLO
/// without it.
#[test]
fn postfix_answers_the_second_ehlo_without_requiretls() -> Result<()> {
    let lab = lab()?;
    let dir = tempdir()?;
    let cfg = write(dir.path(), "c.yml", &lab.config("upstream", "")?)?;
    let (_, reports) = check_json(&cfg, &["[mx1.good.test]"])?;
    let smtp = &reports[0]["hosts"][0]["addresses"][0]["smtp"];
    assert_eq!(smtp["tls_mode"], "starttls");
    assert!(smtp["error"].is_null(), "{smtp:#}");
    assert_eq!(smtp["ehlo_after_tls"]["code"], 250, "{smtp:#}");
    let ext = smtp["extensions_after_tls"].to_string();
    assert!(
        ext.contains("PIPELINING") && !ext.contains("REQUIRETLS"),
        "{ext}"
    );
    assert!(
        !ext.contains("STARTTLS"),
        "Postfix no longer offers STARTTLS inside TLS: {ext}"
    );
    Ok(())
}

fn promtool_check(exposition: &str) -> Result<()> {
    use std::io::Write as _;
    use std::process::Stdio;
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
