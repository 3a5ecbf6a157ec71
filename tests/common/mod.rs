//! Shared helpers of the integration tests: the real lab (Knot, Unbound, Postfix; built by
//! `tests/lab/up.sh`), the built exporter binary (one-shot or as a daemon), a test PKI
//! (rcgen), a tiny HTTP client, and posttls-finger.
//!
//! The lab is shared by every test binary: `lab()` takes a file lock and (re)builds it only
//! when it is not answering, so parallel test processes never rebuild it under each other.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;

/// Where the lab lives unless `MAILTLS_LAB_DIR` says otherwise.
pub const DEFAULT_LAB_DIR: &str = "/tmp/mailtls-lab";
pub const VALIDATING: &str = "127.53.0.2:53";
pub const NON_VALIDATING: &str = "127.53.0.3:53";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn exporter_bin() -> &'static str {
    env!("CARGO_BIN_EXE_mailtls_exporter")
}

/// The running lab.
pub struct Lab {
    pub dir: PathBuf,
    pub env: HashMap<String, String>,
}

impl Lab {
    pub fn get(&self, key: &str) -> Result<&str> {
        self.env
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("{key} missing from lab.env"))
    }
    pub fn trust_anchor(&self) -> Result<&str> {
        self.get("LAB_TRUST_ANCHOR")
    }

    /// Exporter config text for a validation mode ("upstream" or "local").
    pub fn config(&self, mode: &str, extra: &str) -> Result<String> {
        let dns = match mode {
            "upstream" => format!("dns:\n  resolver: {VALIDATING}\n  validation: upstream\n"),
            "local" => format!(
                "dns:\n  resolver: {NON_VALIDATING}\n  validation: local\n  trust_anchor: {}\n",
                self.trust_anchor()?
            ),
            other => bail!("unknown mode {other}"),
        };
        Ok(format!(
            "{dns}smtp:\n  helo_name: probe.lab.test\npkix:\n  ca_file: {}\n{extra}",
            self.get("LAB_CA_BUNDLE")?
        ))
    }
}

fn lab_healthy(dir: &Path) -> bool {
    // A lab from before the secondary knotd (dyn.test, tests/lab/dyn-lib.sh) is rebuilt.
    let env = std::fs::read_to_string(dir.join("lab.env")).unwrap_or_default();
    if !env.contains("LAB_DYN_SECONDARY=") {
        return false;
    }
    let ad = Command::new("kdig")
        .args([
            "@127.53.0.2",
            "+dnssec",
            "+time=2",
            "+retry=0",
            "good.test",
            "MX",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(" ad"))
        .unwrap_or(false);
    // 127.25.0.5:465 (implicit TLS): a lab built before the submission listeners is rebuilt.
    ad && ["127.25.0.1:25", "127.25.0.5:465"]
        .iter()
        .all(|a| TcpStream::connect_timeout(&a.parse().unwrap(), Duration::from_secs(2)).is_ok())
}

/// Ensures the lab is up (building it if needed) and returns its settings.
pub fn lab() -> Result<Lab> {
    let dir =
        PathBuf::from(std::env::var("MAILTLS_LAB_DIR").unwrap_or_else(|_| DEFAULT_LAB_DIR.into()));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(format!("{}.lock", dir.display()))
        .context("lab lock file")?;
    lock.lock().context("locking the lab")?;
    if !lab_healthy(&dir) {
        let up = repo().join("tests/lab/up.sh");
        let out = Command::new("bash")
            .arg(&up)
            .arg(&dir)
            .output()
            .with_context(|| format!("running {}", up.display()))?;
        if !out.status.success() {
            bail!(
                "lab start-up failed (is the machine set up? run tests/run):\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let text = std::fs::read_to_string(dir.join("lab.env")).context("lab.env")?;
    let env = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    drop(lock);
    Ok(Lab { dir, env })
}

/// A temporary directory removed on drop.
pub fn tempdir() -> Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new().prefix("mailtls-test").tempdir()?)
}

pub fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf> {
    let p = dir.join(name);
    std::fs::write(&p, text)?;
    Ok(p)
}

pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs the exporter with `args`; returns (exit code, stdout, stderr).
pub fn run_exporter(args: &[&str]) -> Result<(i32, String, String)> {
    let out = Command::new(exporter_bin()).args(args).output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Runs the exporter with `args`, expecting it to exit on its own within `within` (a
/// refused start-up); returns (exit code, stderr). Killed and an error if it keeps running.
pub fn run_exporter_until_exit(args: &[&str], within: Duration) -> Result<(Option<i32>, String)> {
    let mut child = Command::new(exporter_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("exporter still running after {within:?}: {args:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err)?;
    }
    Ok((status.code(), err))
}

/// `check --output=json` on `targets` with `config`; returns the parsed reports.
pub fn check_json(config: &Path, targets: &[&str]) -> Result<(i32, serde_json::Value)> {
    let cfg = format!("--config.file={}", config.display());
    let mut args = vec!["check", cfg.as_str(), "--output=json"];
    args.extend_from_slice(targets);
    let (code, out, err) = run_exporter(&args)?;
    let v = serde_json::from_str(&out).with_context(|| format!("check output: {out}\n{err}"))?;
    Ok((code, v))
}

/// A running exporter daemon, killed on drop.
pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts the exporter and waits until `/-/healthy` answers 200 over plain HTTP.
    pub fn start(config: &Path, extra: &[&str]) -> Result<Self> {
        Self::start_until(config, extra, "answered /-/healthy", |d| {
            d.get("/-/healthy").is_ok_and(|r| r.status == 200)
        })
    }

    /// As [`Daemon::start`], waiting for `health` (e.g. under a `--web.route-prefix`).
    pub fn start_healthy_at(config: &Path, extra: &[&str], health: &str) -> Result<Self> {
        let health = health.to_string();
        Self::start_until(config, extra, "answered its health path", move |d| {
            d.get(&health).is_ok_and(|r| r.status == 200)
        })
    }

    /// Starts the exporter and waits only until its port accepts connections (for a
    /// `--web.config.file` with TLS or basic auth, where a plain `/-/healthy` cannot pass).
    pub fn start_listening(config: &Path, extra: &[&str]) -> Result<Self> {
        Self::start_until(config, extra, "listened", |d| {
            TcpStream::connect_timeout(&d.addr, Duration::from_millis(200)).is_ok()
        })
    }

    fn start_until(
        config: &Path,
        extra: &[&str],
        what: &str,
        ready: impl Fn(&Self) -> bool,
    ) -> Result<Self> {
        let port = free_port()?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let log = config.with_extension("log");
        let logf = std::fs::File::create(&log)?;
        let child = Command::new(exporter_bin())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address={addr}"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .context("cannot start the exporter")?;
        let mut d = Self { child, addr, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if ready(&d) {
                return Ok(d);
            }
            if let Ok(Some(st)) = d.child.try_wait() {
                bail!("exporter exited with {st}: {}", d.log_text());
            }
            if Instant::now() > deadline {
                bail!("exporter never {what}: {}", d.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> Result<HttpResponse> {
        http(self.addr, "GET", path, &[])
    }

    /// Polls `/metrics` until `pred` holds on the body (bounded by `within`).
    pub fn wait_metrics(&self, within: Duration, pred: impl Fn(&str) -> bool) -> Result<String> {
        let deadline = Instant::now() + within;
        loop {
            let r = self.get("/metrics")?;
            if pred(&r.body) {
                return Ok(r.body);
            }
            if Instant::now() > deadline {
                bail!(
                    "condition not met within {within:?}; last /metrics:\n{}\nlog:\n{}",
                    r.body,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn signal(&self, sig: &str) -> Result<()> {
        let st = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()?;
        if !st.success() {
            bail!("kill {sig} failed");
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Minimal HTTP/1.1 client (Connection: close), enough for the exporter's endpoints.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<HttpResponse> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("bad response: {}", String::from_utf8_lossy(&raw)))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = &raw[split + 4..];
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("bad status line: {head}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    // Dechunked as bytes: a gzip body is not text.
    let body = if chunked {
        String::from_utf8_lossy(&dechunk(body)).into_owned()
    } else {
        String::from_utf8_lossy(body).into_owned()
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = s.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&s[..eol]);
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        let rest = &s[eol + 2..];
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        s = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// Value of the first sample of `name` whose labels contain every `labels` pair.
pub fn sample(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            return None;
        }
        let ok = labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        if !ok {
            return None;
        }
        l.rsplit(' ').next()?.parse().ok()
    })
}

/// posttls-finger's verdicts for `destination` via tests/lab/verdicts.sh:
/// (mx host, address or "-", verdict).
pub fn postfix_verdicts(lab: &Lab, destination: &str) -> Result<Vec<(String, String, String)>> {
    let out = Command::new("bash")
        .arg(repo().join("tests/lab/verdicts.sh"))
        .arg(&lab.dir)
        .arg(destination)
        .output()?;
    if !out.status.success() {
        bail!(
            "verdicts.sh {destination}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((
                w.next()?.to_string(),
                w.next()?.to_string(),
                w.next()?.to_string(),
            ))
        })
        .collect())
}

/// The exporter's verdicts from a `check --output=json` report, in the same shape.
/// A domain-level failure (bogus or failed MX lookup) is `- - dns_failure`; a null MX `- - none`.
pub fn exporter_verdicts(report: &serde_json::Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for h in report["hosts"].as_array().into_iter().flatten() {
        for a in h["addresses"].as_array().into_iter().flatten() {
            out.push((
                h["mx"].as_str().unwrap_or("?").to_string(),
                a["address"].as_str().unwrap_or("-").to_string(),
                a["dane"].as_str().unwrap_or("?").to_string(),
            ));
        }
    }
    if out.is_empty() {
        let v = if report["null_mx"].as_bool() == Some(true) {
            "none"
        } else if matches!(report["mx_dnssec"].as_str(), Some("bogus" | "error")) {
            "dns_failure"
        } else {
            "?"
        };
        out.push(("-".into(), "-".into(), v.into()));
    }
    out
}

// ---- test PKI (rcgen) ------------------------------------------------------------------------

/// A CA, a server certificate for `localhost` and 127.0.0.1, and a client certificate, all
/// issued by the CA.
pub struct Pki {
    pub ca_pem: String,
    pub ca_der: CertificateDer<'static>,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub client_chain: Vec<CertificateDer<'static>>,
    pub client_key_der: Vec<u8>,
}

/// A self-signed CA named `name`.
pub fn test_ca(name: &str) -> Result<CertifiedIssuer<'static, KeyPair>> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(CertifiedIssuer::self_signed(params, KeyPair::generate()?)?)
}

/// A certificate for `names` (the first is also the CN) issued by `issuer`, for `usage`.
pub fn test_leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> Result<(rcgen::Certificate, KeyPair)> {
    let key = KeyPair::generate()?;
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    let cn = names.first().context("a certificate needs a name")?;
    params.distinguished_name.push(DnType::CommonName, *cn);
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert, key))
}

/// A fresh test PKI.
pub fn pki() -> Result<Pki> {
    let ca = test_ca("mailtls test CA")?;
    let (server, server_key) = test_leaf(
        &ca,
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    let (client, client_key) = test_leaf(&ca, &["scraper"], ExtendedKeyUsagePurpose::ClientAuth)?;
    Ok(Pki {
        ca_pem: ca.pem(),
        ca_der: ca.der().clone(),
        server_cert_pem: server.pem(),
        server_key_pem: server_key.serialize_pem(),
        client_chain: vec![client.der().clone()],
        client_key_der: client_key.serialize_der(),
    })
}
