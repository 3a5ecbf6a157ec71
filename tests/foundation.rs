//! The exporter end to end against the real lab (Knot, Unbound, Postfix) and hostile test
//! servers: the daemon's metrics, /probe, reload, shutdown; `check` and `check-config`.

mod common;

/// The model under the path `src/model/fixture.rs` names it (`crate::model`), so this test
/// can run promtool on the very report the unit tests of `metrics` and `text` use.
mod model {
    pub use mailtls_exporter::model::*;
}
#[path = "../src/model/fixture.rs"]
mod fixture;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use common::{http, lab, run_exporter, sample, tempdir, write, Daemon};

/// Unix time of a certificate date as openssl prints it (`notAfter=Nov 23 16:06:00 2027 GMT`).
fn openssl_date(pem: &str, which: &str) -> Result<f64> {
    let out = Command::new("openssl")
        .args(["x509", "-noout", &format!("-{which}"), "-in", pem])
        .output()?;
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let date = line
        .split_once('=')
        .context("openssl output")?
        .1
        .to_string();
    let out = Command::new("date")
        .args(["-u", "-d", &date, "+%s"])
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

/// The chain file Postfix serves on `addr` (tests/lab listeners.tsv).
fn listener_chain(lab: &common::Lab, addr: &str) -> Result<String> {
    let text = std::fs::read_to_string(lab.get("LAB_LISTENERS")?)?;
    text.lines()
        .find(|l| l.split('\t').next() == Some(addr))
        .and_then(|l| l.split('\t').nth(2))
        .map(str::to_string)
        .context("listener not found")
}

#[test]
fn daemon_reports_starttls_certificates_and_dane_from_the_lab() -> Result<()> {
    let lab = lab()?;
    let dir = tempdir()?;
    let cfg = write(
        dir.path(),
        "c.yml",
        &lab.config(
            "upstream",
            "interval: 1m\ntimeout: 10s\ntargets:\n  - domain: good.test\n  - domain: nostarttls.good.test\n  - domain: s23.dane.test\n  - domain: s24.dane.test\n  - domain: s28.dane.test\n",
        )?,
    )?;
    let d = Daemon::start(&cfg, &[])?;
    let m = d.wait_metrics(Duration::from_secs(30), |m| {
        m.matches("mailtls_probe_timestamp_seconds{").count() == 5
    })?;

    // Certificate dates equal what openssl reads from the very files Postfix serves.
    let chain = listener_chain(&lab, "127.25.0.1")?;
    let leaf = [
        ("target", "good.test"),
        ("mx", "mx1.good.test"),
        ("address", "127.25.0.1"),
        ("depth", "0"),
    ];
    assert_eq!(
        sample(&m, "mailtls_cert_not_after_timestamp_seconds", &leaf),
        Some(openssl_date(&chain, "enddate")?)
    );
    assert_eq!(
        sample(&m, "mailtls_cert_not_before_timestamp_seconds", &leaf),
        Some(openssl_date(&chain, "startdate")?)
    );
    let addr = [
        ("target", "good.test"),
        ("mx", "mx1.good.test"),
        ("address", "127.25.0.1"),
    ];
    assert_eq!(sample(&m, "mailtls_smtp_up", &addr), Some(1.0));
    assert_eq!(sample(&m, "mailtls_starttls_advertised", &addr), Some(1.0));
    assert_eq!(
        sample(&m, "mailtls_tls_handshake_success", &addr),
        Some(1.0)
    );
    assert!(
        sample(
            &m,
            "mailtls_tls_info",
            &[("address", "127.25.0.1"), ("version", "TLSv1.3")]
        )
        .is_some(),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "mailtls_dane_status",
            &[("address", "127.25.0.1"), ("status", "verified")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "mailtls_dane_status",
            &[("address", "127.25.0.1"), ("status", "failed")]
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(&m, "mailtls_probe_success", &[("target", "good.test")]),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "mailtls_mx_info",
            &[
                ("target", "good.test"),
                ("mx", "mx2.good.test"),
                ("preference", "20")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "mailtls_dnssec_status",
            &[
                ("target", "good.test"),
                ("name", "_25._tcp.mx1.good.test"),
                ("type", "TLSA"),
                ("status", "secure")
            ]
        ),
        Some(1.0)
    );
    let expiry: f64 = lab.get("LAB_RRSIG_EXPIRATION")?.parse()?;
    assert_eq!(
        sample(
            &m,
            "mailtls_dnssec_signature_expiry_timestamp_seconds",
            &[
                ("target", "good.test"),
                ("name", "good.test"),
                ("type", "MX")
            ]
        ),
        Some(expiry)
    );
    // PKIX against the lab CA (pkix.ca_file) and the MX name.
    assert_eq!(sample(&m, "mailtls_cert_pkix_valid", &addr), Some(1.0));
    // The second certificate of the chain is reported too.
    assert!(sample(
        &m,
        "mailtls_cert_info",
        &[("address", "127.25.0.1"), ("depth", "1")]
    )
    .is_some());

    // A listener without STARTTLS: SMTP up, STARTTLS not advertised, no handshake series.
    let no = [
        ("target", "nostarttls.good.test"),
        ("address", "127.25.0.3"),
    ];
    assert_eq!(sample(&m, "mailtls_smtp_up", &no), Some(1.0));
    assert_eq!(sample(&m, "mailtls_starttls_advertised", &no), Some(0.0));
    assert_eq!(sample(&m, "mailtls_tls_handshake_success", &no), None);
    assert_eq!(
        sample(
            &m,
            "mailtls_smtp_error_info",
            &[("address", "127.25.0.3"), ("reason", "no_starttls")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "mailtls_probe_success",
            &[("target", "nostarttls.good.test")]
        ),
        Some(0.0)
    );

    // One MX host with two addresses: both probed.
    for a in ["127.25.0.33", "127.25.0.53"] {
        assert_eq!(
            sample(
                &m,
                "mailtls_tls_handshake_success",
                &[("target", "s23.dane.test"), ("address", a)]
            ),
            Some(1.0),
            "{a}"
        );
    }
    // Implicit MX: the domain itself at preference 0.
    assert_eq!(
        sample(
            &m,
            "mailtls_mx_info",
            &[
                ("target", "s24.dane.test"),
                ("mx", "s24.dane.test"),
                ("preference", "0")
            ]
        ),
        Some(1.0)
    );
    // Null MX.
    assert_eq!(
        sample(&m, "mailtls_mx_null", &[("target", "s28.dane.test")]),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "mailtls_probe_success", &[("target", "s28.dane.test")]),
        Some(0.0)
    );

    // The exposition passes promtool, in the text format and in OpenMetrics.
    promtool_check(&m)?;
    let om = http(
        d.addr,
        "GET",
        "/metrics",
        &[("Accept", "application/openmetrics-text; version=1.0.0")],
    )?;
    assert!(om
        .header("content-type")
        .unwrap_or("")
        .starts_with("application/openmetrics-text"));
    assert!(om.body.ends_with("# EOF\n"));
    let text = d.get("/metrics")?;
    assert!(text
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/plain; version=0.0.4"));
    assert!(!text.body.contains("# EOF"));
    assert!(text.body.contains("# TYPE mailtls_probes_total counter"));
    assert!(
        text.body
            .contains("values come from the last scheduled probe")
            || text.body.contains("from the last scheduled probe")
    );

    // Landing page lists the targets with their verdicts and links.
    let landing = d.get("/")?;
    assert_eq!(landing.status, 200);
    assert!(
        landing.body.contains("nostarttls.good.test")
            && landing.body.contains("/probe?target=good.test")
    );
    Ok(())
}

#[test]
fn complete_report_exposition_passes_promtool_in_both_formats() -> Result<()> {
    // Every report family, a certificate subject with `"`, `\` and a newline (fixture.rs):
    // both the /metrics text format and /probe's OpenMetrics must parse.
    let report = Arc::new(fixture::complete_report());
    let (text, _) = mailtls_exporter::metrics::render_report(report.clone(), false);
    assert!(text.contains("mailtls_cert_info{") && text.contains("mailtls_dane_status{"));
    promtool_check(&text)?;
    let (om, _) = mailtls_exporter::metrics::render_report(report, true);
    promtool_check(&om)?;
    Ok(())
}

fn promtool_check(exposition: &str) -> Result<()> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
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

#[test]
fn probe_endpoint_enforces_the_allow_list_before_any_lookup_or_connection() -> Result<()> {
    let lab = lab()?;
    let dir = tempdir()?;
    // A listener that counts connections: a refused /probe must never reach it.
    let counter = TcpListener::bind("127.0.0.1:0")?;
    let counted: SocketAddr = counter.local_addr()?;
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for s in counter.incoming().flatten() {
            h.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    let cfg = write(
        dir.path(),
        "c.yml",
        &lab.config(
            "upstream",
            "interval: 5m\nprobe:\n  allow: [\"*.dane.test\"]\n  private_addresses: true\ntargets:\n  - domain: good.test\n",
        )?,
    )?;
    let d = Daemon::start(&cfg, &[])?;
    d.wait_metrics(Duration::from_secs(20), |m| {
        m.contains("mailtls_probe_success{target=\"good.test\"}")
    })?;
    let queries = |m: &str| sample(m, "mailtls_dns_queries_total", &[]).unwrap_or(-1.0);
    let before = queries(&d.get("/metrics")?.body);

    let refused = d.get(&format!(
        "/probe?target=%5B{}%5D%3A{}",
        counted.ip(),
        counted.port()
    ))?;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let refused = d.get("/probe?target=evil.example")?;
    assert_eq!(refused.status, 403);
    assert_eq!(d.get("/probe?target=")?.status, 400);
    assert_eq!(d.get("/probe?target=%5Bunclosed")?.status, 400);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(hits.load(Ordering::SeqCst), 0, "a refused probe connected");
    assert_eq!(
        queries(&d.get("/metrics")?.body),
        before,
        "a refused probe sent DNS queries"
    );

    // Allowed by pattern: probed now, only that probe's metrics.
    let ok = d.get("/probe?target=s02.dane.test")?;
    assert_eq!(ok.status, 200);
    assert_eq!(
        sample(
            &ok.body,
            "mailtls_dane_status",
            &[("target", "s02.dane.test"), ("status", "verified")]
        ),
        Some(1.0),
        "{}",
        ok.body
    );
    assert!(!ok.body.contains("target=\"good.test\""));
    assert!(!ok.body.contains("mailtls_exporter_build_info"));
    promtool_check(&ok.body)?;
    // Configured target in next-hop host syntax is allowed only if configured or matching.
    assert_eq!(d.get("/probe?target=%5Bmx1.s01.dane.test%5D")?.status, 200);
    // Debug output: DNS answers with DNSSEC state, SMTP dialogue, chain, TLSA comparisons.
    let dbg = d.get("/probe?target=s02.dane.test&debug=true")?;
    assert_eq!(dbg.status, 200);
    for needle in [
        "_25._tcp.mx1.s02.dane.test TLSA",
        "secure",
        "C: EHLO",
        "STARTTLS",
        "cert 0:",
        "TLSA match",
        "DANE verified",
    ] {
        assert!(
            dbg.body.contains(needle),
            "debug output lacks {needle:?}:\n{}",
            dbg.body
        );
    }
    Ok(())
}

/// Small hostile SMTP servers on 127.0.0.1.
fn hostile(kind: &'static str) -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let mut buf = [0u8; 512];
                match kind {
                    "tarpit" => std::thread::sleep(Duration::from_secs(8)),
                    "close_after_greeting" => {
                        let _ = s.write_all(b"220 hello\r\n");
                    }
                    "garbage" => {
                        let junk: Vec<u8> = (0..4096u32)
                            .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
                            .collect();
                        for _ in 0..64 {
                            if s.write_all(&junk).is_err() {
                                break;
                            }
                        }
                    }
                    "endless" => {
                        let _ = s.write_all(b"220 hi\r\n");
                        let _ = s.read(&mut buf);
                        for _ in 0..100_000 {
                            if s.write_all(b"250-PIPELINING\r\n").is_err() {
                                break;
                            }
                        }
                    }
                    "bad_tls" => {
                        let _ = s.write_all(b"220 hi\r\n");
                        let _ = s.read(&mut buf);
                        let _ = s.write_all(b"250-hi\r\n250 STARTTLS\r\n");
                        let _ = s.read(&mut buf);
                        let _ = s.write_all(b"220 go ahead\r\n");
                        std::thread::sleep(Duration::from_millis(50));
                        let _ = s.write_all(b"HTTP/1.0 400 not tls at all\r\n\r\n");
                    }
                    _ => {}
                }
            });
        }
    });
    Ok(addr)
}

#[test]
fn hostile_servers_yield_precise_reasons_within_bounds() -> Result<()> {
    let cases = [
        ("tarpit", "greeting_timeout"),
        ("close_after_greeting", "closed"),
        ("garbage", "not_smtp"),
        ("endless", "too_many_lines"),
        ("bad_tls", "tls_handshake"),
    ];
    let dir = tempdir()?;
    let mut targets = String::from("timeout: 3s\nsmtp:\n  helo_name: probe.lab.test\ntargets:\n");
    let mut addrs = Vec::new();
    for (kind, _) in cases {
        let a = hostile(kind)?;
        targets.push_str(&format!(
            "  - address: {}\n    port: {}\n",
            a.ip(),
            a.port()
        ));
        addrs.push(a);
    }
    let cfg = write(dir.path(), "c.yml", &targets)?;
    let names: Vec<String> = addrs
        .iter()
        .map(|a| format!("[{}]:{}", a.ip(), a.port()))
        .collect();
    let started = Instant::now();
    let cfgarg = format!("--config.file={}", cfg.display());
    let mut args = vec!["check", cfgarg.as_str(), "--output=json"];
    args.extend(names.iter().map(String::as_str));
    let (code, out, err) = run_exporter(&args)?;
    let took = started.elapsed();
    assert_eq!(code, 1, "{err}");
    // Per-target timeout 3 s, shared by every phase (the tarpit's greeting uses all of it);
    // all run in parallel.
    assert!(took < Duration::from_secs(6), "took {took:?}");
    let reports: serde_json::Value = serde_json::from_str(&out)?;
    for (i, (kind, reason)) in cases.iter().enumerate() {
        let err = &reports[i]["hosts"][0]["addresses"][0]["smtp"]["error"];
        let got = err["kind"].as_str().unwrap_or("");
        let want_kind = match *reason {
            "greeting_timeout" => "greeting_timeout",
            "closed" => "closed",
            "not_smtp" => "not_smtp",
            "too_many_lines" => "too_many_lines",
            _ => "handshake",
        };
        assert_eq!(got, want_kind, "{kind}: {err}");
        assert!(reports[i]["success"] == false);
    }
    Ok(())
}

#[test]
fn check_exit_codes_follow_the_contract() -> Result<()> {
    let lab = lab()?;
    let dir = tempdir()?;
    let cfg = write(dir.path(), "c.yml", &lab.config("upstream", "")?)?;
    let c = format!("--config.file={}", cfg.display());
    let (code, out, _) = run_exporter(&["check", &c, "good.test"])?;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("DANE verified"), "{out}");
    let (code, out, _) = run_exporter(&["check", &c, "s03.dane.test"])?;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("DANE failed"), "{out}");
    let (code, _, err) = run_exporter(&["check", &c, "[unclosed"])?;
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run_exporter(&["check", "--config.file=/nonexistent.yml", "good.test"])?;
    assert_eq!(code, 2, "{err}");
    let (code, _, _) = run_exporter(&["check"])?;
    assert_eq!(code, 2);
    let (code, _, _) = run_exporter(&["--no-such-flag"])?;
    assert_eq!(code, 2);
    Ok(())
}

#[test]
fn bad_configs_are_rejected_with_file_line_and_key() -> Result<()> {
    let dir = common::repo().join("tests/data/config");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        let text = std::fs::read_to_string(&path)?;
        let want = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .with_context(|| format!("{} states no expected message", path.display()))?;
        let (code, _, err) =
            run_exporter(&["check-config", &format!("--config.file={}", path.display())])?;
        assert_eq!(code, 2, "{}: {err}", path.display());
        assert!(
            err.contains(want),
            "{}: expected {want:?} in {err:?}",
            path.display()
        );
        n += 1;
    }
    assert!(n >= 8, "only {n} fixtures");
    let good = common::repo().join("deploy/config/example.yml");
    let (code, out, err) =
        run_exporter(&["check-config", &format!("--config.file={}", good.display())])?;
    assert_eq!(code, 0, "{out}{err}");
    Ok(())
}

#[test]
fn sighup_reloads_drops_stale_series_and_keeps_the_old_config_on_error() -> Result<()> {
    let lab = lab()?;
    let dir = tempdir()?;
    let first = lab.config(
        "upstream",
        "interval: 1m\ntargets:\n  - domain: good.test\n",
    )?;
    let cfg = write(dir.path(), "c.yml", &first)?;
    let d = Daemon::start(&cfg, &[])?;
    d.wait_metrics(Duration::from_secs(20), |m| {
        m.contains("mailtls_probe_success{target=\"good.test\"}")
    })?;

    // New MX set: series of good.test disappear, s01 appears.
    write(
        dir.path(),
        "c.yml",
        &lab.config(
            "upstream",
            "interval: 1m\ntargets:\n  - domain: s01.dane.test\n",
        )?,
    )?;
    d.signal("-HUP")?;
    let m = d.wait_metrics(Duration::from_secs(20), |m| {
        m.contains("mailtls_probe_success{target=\"s01.dane.test\"}")
            && !m.contains("target=\"good.test\"")
    })?;
    assert_eq!(
        sample(&m, "mailtls_config_last_reload_successful", &[]),
        Some(1.0)
    );

    // A broken config is rejected; the old one keeps running.
    write(dir.path(), "c.yml", "targets:\n  - domain: [broken\n")?;
    d.signal("-HUP")?;
    let m = d.wait_metrics(Duration::from_secs(10), |m| {
        sample(m, "mailtls_config_last_reload_successful", &[]) == Some(0.0)
    })?;
    assert!(m.contains("mailtls_probe_success{target=\"s01.dane.test\"}"));
    let log = d.log_text();
    assert!(log.contains("configuration rejected"), "{log}");

    // POST /-/reload does the same as SIGHUP.
    write(dir.path(), "c.yml", &first)?;
    let r = http(d.addr, "POST", "/-/reload", &[])?;
    assert_eq!(r.status, 200, "{}", r.body);
    d.wait_metrics(Duration::from_secs(20), |m| {
        m.contains("mailtls_probe_success{target=\"good.test\"}") && !m.contains("s01.dane.test")
    })?;
    assert_eq!(http(d.addr, "GET", "/-/reload", &[])?.status, 405);
    Ok(())
}

#[test]
fn sigterm_shuts_down_gracefully_and_promptly() -> Result<()> {
    let dir = tempdir()?;
    let cfg = write(
        dir.path(),
        "c.yml",
        "targets:\n  - address: 127.0.0.1\n    port: 9\n",
    )?;
    let mut d = Daemon::start(&cfg, &[])?;
    d.signal("-TERM")?;
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        if let Some(st) = d.child.try_wait()? {
            assert!(st.success(), "exit status {st}");
            break;
        }
        if Instant::now() > deadline {
            bail!("did not exit after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(d.log_text().contains("shutting down"));
    Ok(())
}

/// Upstream mode with a resolver off loopback: `check-config` and the daemon (at start and
/// on reload) warn. No packet goes to 192.0.2.53 (TEST-NET-1): the targets are addresses
/// (no DNS; the start-up resolver check only runs when a target needs DNS), `probe.allow`
/// only makes the resolver reachable through `/probe`, which this test never calls, and
/// `mailtls_dns_queries_total` stays 0 to prove it.
#[test]
fn upstream_resolver_off_loopback_is_warned_about_without_being_asked() -> Result<()> {
    let dir = tempdir()?;
    let cfg = write(
        dir.path(),
        "c.yml",
        "dns:\n  resolver: 192.0.2.53:53\n  validation: upstream\nprobe:\n  allow: [\"*.example.org\"]\ntargets:\n  - address: 127.0.0.1\n    port: 9\n",
    )?;
    let (code, _, err) =
        run_exporter(&["check-config", &format!("--config.file={}", cfg.display())])?;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: dns.resolver 192.0.2.53:53: dns.validation is upstream but the resolver is not on loopback"),
        "{err}"
    );
    let d = Daemon::start(&cfg, &[])?;
    let warned = |log: &str| log.matches("the resolver is not on loopback").count();
    assert_eq!(warned(&d.log_text()), 1, "{}", d.log_text());
    // A changed config (reload) warns again.
    let text = std::fs::read_to_string(&cfg)?.replace("port: 9", "port: 10");
    write(dir.path(), "c.yml", &text)?;
    d.signal("-HUP")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while warned(&d.log_text()) < 2 {
        if Instant::now() > deadline {
            bail!("no warning after reload: {}", d.log_text());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let m = d.get("/metrics")?.body;
    assert_eq!(
        sample(&m, "mailtls_dns_queries_total", &[]),
        Some(0.0),
        "{m}"
    );
    assert!(!m.contains("mailtls_dns_resolver_validating "), "{m}");
    Ok(())
}

#[test]
fn embedded_default_probes_the_local_mta() -> Result<()> {
    let port = common::free_port()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let mut child = Command::new(common::exporter_bin())
        .arg(format!("--web.listen-address={addr}"))
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let result = loop {
        if let Ok(r) = http(addr, "GET", "/metrics", &[]) {
            if r.body.contains("mailtls_smtp_up{target=\"[127.0.0.1]\"") {
                break Ok(r.body);
            }
        }
        if Instant::now() > deadline {
            break Err(anyhow::anyhow!("no probe of 127.0.0.1:25 within 30 s"));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    let body = result?;
    assert!(
        body.contains("mailtls_target_info{target=\"[127.0.0.1]\",kind=\"address\"} 1"),
        "{body}"
    );
    // An address-only config needs no DNS: not a single query to the system resolver
    // (which is not on loopback everywhere), and no resolver verdict to alert on.
    assert_eq!(
        sample(&body, "mailtls_dns_queries_total", &[]),
        Some(0.0),
        "{body}"
    );
    assert!(!body.contains("mailtls_dns_resolver_validating"), "{body}");
    Ok(())
}

#[test]
fn mx_hosts_shared_by_many_targets_are_probed_once_per_round() -> Result<()> {
    let lab = lab()?;
    let dir = tempdir()?;
    // good.test's two MX hosts, plus the same hosts as host targets: 4 targets, 2 addresses.
    let cfg = write(
        dir.path(),
        "c.yml",
        &lab.config("upstream", "interval: 5m\ntargets:\n  - domain: good.test\n  - host: mx1.good.test\n  - host: mx2.good.test\n  - domain: s15.dane.test\n")?,
    )?;
    let d = Daemon::start(&cfg, &[])?;
    let m = d.wait_metrics(Duration::from_secs(30), |m| {
        m.matches("mailtls_probe_timestamp_seconds{").count() == 4
    })?;
    // mx1 + mx2 of good.test (shared by 3 targets) and mx15.good.test via s15's CNAME: 3 dialogues.
    assert_eq!(
        sample(&m, "mailtls_smtp_dialogues_total", &[]),
        Some(3.0),
        "{m}"
    );
    Ok(())
}
