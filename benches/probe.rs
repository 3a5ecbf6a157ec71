//! Probe cost, side by side in one run: CPU per probe, probes/s, p50/p99 latency.
//!
//! Owns: four probers against the lab's Postfix (127.25.0.1:25, mx1.good.test) at
//! concurrency 1 and 32, interleaved over several rounds, and the table against the goals
//! of docs/performance.md:
//! - `floor`: tokio + tokio-rustls written minimally here (connect, banner, EHLO, STARTTLS,
//!   handshake with signature checks, chain kept, no resumption, QUIT, close);
//! - `exporter smtp+tls`: `probe::smtp::probe` with `probe::tls::client_config()`;
//! - `domain upstream` / `domain local`: `probe::probe_target` of `s01.dane.test` (one MX,
//!   one address, `3 1 1` + `2 1 1`) with an emptied DNS cache before every probe, so each
//!   probe does its MX, A, AAAA and TLSA lookups (validating Unbound 127.53.0.2, or
//!   in-process validation against 127.53.0.3 with the lab trust anchor);
//! - `blackbox_exporter`: its `smtp_starttls` tcp module through `/probe`, started by this
//!   bench on 127.0.0.1 (a free port), its CPU read from `/proc/<pid>/stat`.
//!
//! CPU of in-process probers is this process's `getrusage(RUSAGE_SELF)` user+sys (all
//! threads: tokio workers, the DNS client task). Not here: Postfix's or Unbound's CPU.
//! Network: 127.0.0.0/8 only.
//!
//! Run: `cargo bench --bench probe`. Environment (defaults in brackets):
//! `BENCH_N` probes per prober, concurrency and round [3000]; `BENCH_N_DOMAIN` [1500];
//! `BENCH_N_BLACKBOX` [1000]; `BENCH_ROUNDS` [3]; `BENCH_CONCURRENCY` [1,32];
//! `BENCH_PROBERS` [floor,exporter,upstream,local,blackbox; also exporter-quit,
//! exporter-noquick]; `BENCH_ADDR` [127.25.0.1:25];
//! `BENCH_SNI` [mx1.good.test]; `BENCH_DOMAIN` [s01.dane.test]; `BENCH_LAB` [/tmp/mailtls-lab];
//! `BENCH_BLACKBOX` [/usr/bin/prometheus-blackbox-exporter]; `BENCH_MAX_SECONDS` per
//! measurement [120].

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use mailtls_exporter::config;
use mailtls_exporter::model::report::DaneStatus;
use mailtls_exporter::probe::smtp::{self, SmtpOptions};
use mailtls_exporter::probe::{self, tls, ProbeContext, ProbeOptions};
use mailtls_exporter::target::NextHop;

const HELO: &str = "bench.mailtls.test";
/// Deadline of one probe of any kind: a stuck probe counts as failed, the run goes on.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Warm-up probes per prober before the first round (connections, caches, page faults).
const WARMUP: usize = 30;

// ---- settings ----------------------------------------------------------------------------

struct Settings {
    n: usize,
    n_domain: usize,
    n_blackbox: usize,
    rounds: usize,
    concurrency: Vec<usize>,
    probers: Vec<Kind>,
    addr: SocketAddr,
    sni: String,
    domain: String,
    lab: PathBuf,
    blackbox: PathBuf,
    max_seconds: u64,
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> Result<T> {
    match std::env::var(key) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| anyhow!("{key}={v:?} does not parse")),
        Err(_) => Ok(default),
    }
}

impl Settings {
    fn from_env() -> Result<Self> {
        let concurrency = env_or("BENCH_CONCURRENCY", "1,32".to_string())?
            .split(',')
            .map(|c| c.trim().parse::<usize>().context("BENCH_CONCURRENCY"))
            .collect::<Result<Vec<_>>>()?;
        let probers = env_or(
            "BENCH_PROBERS",
            "floor,exporter,upstream,local,blackbox".to_string(),
        )?
        .split(',')
        .map(|p| Kind::parse(p.trim()))
        .collect::<Result<Vec<_>>>()?;
        let s = Self {
            n: env_or("BENCH_N", 3000)?,
            n_domain: env_or("BENCH_N_DOMAIN", 1500)?,
            n_blackbox: env_or("BENCH_N_BLACKBOX", 1000)?,
            rounds: env_or("BENCH_ROUNDS", 3)?,
            concurrency,
            probers,
            addr: env_or("BENCH_ADDR", "127.25.0.1:25".parse()?)?,
            sni: env_or("BENCH_SNI", "mx1.good.test".to_string())?,
            domain: env_or("BENCH_DOMAIN", "s01.dane.test".to_string())?,
            lab: env_or("BENCH_LAB", PathBuf::from("/tmp/mailtls-lab"))?,
            blackbox: env_or(
                "BENCH_BLACKBOX",
                PathBuf::from("/usr/bin/prometheus-blackbox-exporter"),
            )?,
            max_seconds: env_or("BENCH_MAX_SECONDS", 120)?,
        };
        if !s.addr.ip().is_loopback() {
            bail!("BENCH_ADDR {} is not in 127.0.0.0/8", s.addr);
        }
        if s.rounds == 0 || s.concurrency.contains(&0) {
            bail!("BENCH_ROUNDS and BENCH_CONCURRENCY must be positive");
        }
        Ok(s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Floor,
    /// The exporter's dialogue: EHLO again over TLS, TCP_QUICKACK after each command.
    Exporter,
    /// The dialogue before the second EHLO: QUIT right after the handshake.
    ExporterQuit,
    /// The second EHLO without TCP_QUICKACK (shows the delayed-ACK stall).
    ExporterNoQuick,
    DomainUpstream,
    DomainLocal,
    Blackbox,
}

impl Kind {
    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "floor" => Self::Floor,
            "exporter" => Self::Exporter,
            "exporter-quit" => Self::ExporterQuit,
            "exporter-noquick" => Self::ExporterNoQuick,
            "upstream" => Self::DomainUpstream,
            "local" => Self::DomainLocal,
            "blackbox" => Self::Blackbox,
            other => bail!("unknown prober {other:?} (floor, exporter, exporter-quit, exporter-noquick, upstream, local, blackbox)"),
        })
    }
    fn label(self) -> &'static str {
        match self {
            Self::Floor => "floor (tokio-rustls)",
            Self::Exporter => "exporter smtp+tls",
            Self::ExporterQuit => "exporter, QUIT after TLS (no 2nd EHLO)",
            Self::ExporterNoQuick => "exporter, 2nd EHLO without QUICKACK",
            Self::DomainUpstream => "domain, upstream",
            Self::DomainLocal => "domain, local",
            Self::Blackbox => "blackbox_exporter",
        }
    }
}

// ---- CPU clocks --------------------------------------------------------------------------

/// This process: getrusage(RUSAGE_SELF) user + sys, all threads.
fn self_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Another process: utime + stime from /proc/<pid>/stat (clock ticks, all threads).
fn proc_cpu(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("odd /proc/{pid}/stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11).ok_or_else(|| anyhow!("no utime"))?.parse()?;
    let stime: u64 = f.get(12).ok_or_else(|| anyhow!("no stime"))?.parse()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_nanos((utime + stime) * 1_000_000_000 / hz))
}

// ---- the bare floor ----------------------------------------------------------------------

/// Accepts any chain, checks the handshake signatures (as every TLS client must).
#[derive(Debug)]
struct FloorVerifier(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for FloorVerifier {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(m, c, d, &self.0)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(m, c, d, &self.0)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

fn floor_config() -> Arc<ClientConfig> {
    let provider = rustls::crypto::ring::default_provider();
    let algs = provider.signature_verification_algorithms;
    let mut c = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(FloorVerifier(algs)))
        .with_no_client_auth();
    c.resumption = rustls::client::Resumption::disabled();
    Arc::new(c)
}

/// Reads until the last line of a reply ("NNN " or "NNN\r\n") and returns its code.
async fn floor_reply(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<u16> {
    buf.clear();
    let mut chunk = [0u8; 2048];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("closed");
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 64 * 1024 {
            bail!("reply too long");
        }
        if !buf.ends_with(b"\n") {
            continue;
        }
        let body = &buf[..buf.len() - 1];
        let last = body.rsplit(|&b| b == b'\n').next().unwrap_or(body);
        if last.len() >= 3 && last.get(3).is_none_or(|&b| b != b'-') {
            let code = std::str::from_utf8(&last[..3])?.parse()?;
            return Ok(code);
        }
    }
}

async fn floor_probe(
    addr: SocketAddr,
    sni: &ServerName<'static>,
    cfg: &Arc<ClientConfig>,
) -> Result<usize> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(1024);
    if floor_reply(&mut s, &mut buf).await? != 220 {
        bail!("greeting");
    }
    s.write_all(format!("EHLO {HELO}\r\n").as_bytes()).await?;
    if floor_reply(&mut s, &mut buf).await? != 250 {
        bail!("ehlo");
    }
    s.write_all(b"STARTTLS\r\n").await?;
    if floor_reply(&mut s, &mut buf).await? != 220 {
        bail!("starttls");
    }
    let mut t = tokio_rustls::TlsConnector::from(cfg.clone())
        .connect(sni.clone(), s)
        .await?;
    let chain: Vec<CertificateDer<'static>> = t
        .get_ref()
        .1
        .peer_certificates()
        .map(<[_]>::to_vec)
        .unwrap_or_default();
    t.write_all(b"QUIT\r\n").await?;
    t.shutdown().await?;
    Ok(chain.len())
}

// ---- blackbox_exporter -------------------------------------------------------------------

struct Blackbox {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Blackbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const BLACKBOX_MODULE: &str = r#"modules:
  smtp_starttls:
    prober: tcp
    timeout: 10s
    tcp:
      query_response:
        - expect: "^220"
        - send: "EHLO bench.mailtls.test\r"
        - expect: "^250 "
        - send: "STARTTLS\r"
        - expect: "^220"
        - starttls: true
        - send: "QUIT\r"
      tls_config:
        insecure_skip_verify: true
"#;

fn free_port() -> Result<u16> {
    let l = StdListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

async fn start_blackbox(bin: &PathBuf) -> Result<Blackbox> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("blackbox.yml");
    std::fs::write(&cfg, BLACKBOX_MODULE)?;
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let child = Command::new(bin)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--log.level=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let bb = Blackbox {
        child,
        addr,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(bb);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("blackbox_exporter did not listen on {addr}")
}

/// One keep-alive HTTP/1.1 connection to blackbox_exporter.
struct Http {
    stream: Option<TcpStream>,
    addr: SocketAddr,
    buf: Vec<u8>,
}

impl Http {
    fn new(addr: SocketAddr) -> Self {
        Self {
            stream: None,
            addr,
            buf: Vec::with_capacity(8192),
        }
    }

    async fn get(&mut self, path: &str) -> Result<String> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr).await?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
        }
        let r = self.exchange(path).await;
        if r.is_err() {
            self.stream = None;
        }
        r
    }

    async fn exchange(&mut self, path: &str) -> Result<String> {
        let s = self
            .stream
            .as_mut()
            .ok_or_else(|| anyhow!("no connection"))?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: mailtls-bench\r\n\r\n",
            self.addr
        );
        s.write_all(req.as_bytes()).await?;
        self.buf.clear();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            if let Some(p) = find(&self.buf, b"\r\n\r\n") {
                break p + 4;
            }
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                bail!("closed");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_ascii_lowercase();
        if !head.starts_with("http/1.1 200") {
            bail!("HTTP status: {}", head.lines().next().unwrap_or(""));
        }
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        let chunked = head.contains("transfer-encoding: chunked");
        let mut body = Vec::new();
        let mut at = head_end;
        if let Some(len) = length {
            while self.buf.len() < head_end + len {
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    bail!("closed in body");
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
            body.extend_from_slice(&self.buf[head_end..head_end + len]);
        } else if chunked {
            loop {
                let line_end = loop {
                    if let Some(p) = find(&self.buf[at..], b"\r\n") {
                        break at + p;
                    }
                    let n = s.read(&mut chunk).await?;
                    if n == 0 {
                        bail!("closed in chunk");
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                };
                let size_txt = String::from_utf8_lossy(&self.buf[at..line_end]).to_string();
                let size =
                    usize::from_str_radix(size_txt.split(';').next().unwrap_or("").trim(), 16)?;
                let need = line_end + 2 + size + 2;
                while self.buf.len() < need {
                    let n = s.read(&mut chunk).await?;
                    if n == 0 {
                        bail!("closed in chunk");
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                body.extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
                at = need;
                if size == 0 {
                    break;
                }
            }
        } else {
            bail!("response without length");
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---- one prober --------------------------------------------------------------------------

/// State shared by all workers of one prober.
struct Prober {
    kind: Kind,
    addr: SocketAddr,
    sni: ServerName<'static>,
    sni_str: String,
    domain: String,
    floor_tls: Arc<ClientConfig>,
    exporter_tls: Arc<ClientConfig>,
    /// Domain probers: one context per worker (own DNS cache, emptied before each probe),
    /// so no lookup is shared between concurrent probes.
    contexts: Vec<ProbeContext>,
    blackbox: Option<Blackbox>,
}

/// Per worker.
enum WorkerState {
    None,
    Http(Http),
}

impl Prober {
    async fn one(&self, worker: usize, st: &mut WorkerState) -> Result<()> {
        match self.kind {
            Kind::Floor => {
                let n = floor_probe(self.addr, &self.sni, &self.floor_tls).await?;
                if n == 0 {
                    bail!("no chain");
                }
                Ok(())
            }
            Kind::Exporter | Kind::ExporterQuit | Kind::ExporterNoQuick => {
                let mut o = SmtpOptions::new(HELO, self.exporter_tls.clone())
                    .with_ehlo_after_tls(self.kind != Kind::ExporterQuit)
                    .with_quickack(self.kind != Kind::ExporterNoQuick);
                o.server_name = Some(self.sni_str.clone());
                let r = smtp::probe(self.addr, &o).await;
                match (&r.tls, &r.error) {
                    (Some(t), None) if t.chain_len > 0 => Ok(()),
                    (_, Some(e)) => bail!("{}", e.reason()),
                    _ => bail!("no TLS"),
                }
            }
            Kind::DomainUpstream | Kind::DomainLocal => {
                let ctx = &self.contexts[worker];
                ctx.dns.clear_cache();
                let hop = NextHop::Domain(self.domain.clone());
                let r = probe::probe_target(
                    ctx,
                    &self.domain,
                    &hop,
                    ProbeOptions {
                        fresh: true,
                        transcript: false,
                        ..ProbeOptions::default()
                    },
                )
                .await;
                let verified = r
                    .addresses()
                    .all(|(_, a)| a.dane == Some(DaneStatus::Verified));
                if r.success && verified && r.addresses().count() == 1 {
                    Ok(())
                } else {
                    bail!(
                        "{}",
                        r.error
                            .clone()
                            .unwrap_or_else(|| format!("not verified: {:?}", r.worst_dane()))
                    )
                }
            }
            Kind::Blackbox => {
                let WorkerState::Http(h) = st else {
                    bail!("no HTTP state");
                };
                let body = h
                    .get(&format!("/probe?module=smtp_starttls&target={}", self.addr))
                    .await?;
                if body.lines().any(|l| l.trim() == "probe_success 1") {
                    Ok(())
                } else {
                    bail!("probe_success 0")
                }
            }
        }
    }

    fn n(&self, s: &Settings) -> usize {
        match self.kind {
            Kind::Floor | Kind::Exporter | Kind::ExporterQuit | Kind::ExporterNoQuick => s.n,
            Kind::DomainUpstream | Kind::DomainLocal => s.n_domain,
            Kind::Blackbox => s.n_blackbox,
        }
    }

    fn cpu(&self) -> Result<Duration> {
        match &self.blackbox {
            Some(b) => proc_cpu(b.child.id()),
            None => Ok(self_cpu()),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Run {
    done: usize,
    failed: usize,
    /// The first few distinct failure reasons.
    reasons: Vec<String>,
    wall: Duration,
    cpu: Duration,
    latencies: Vec<Duration>,
    dns_queries: u64,
}

async fn measure(p: &Arc<Prober>, n: usize, concurrency: usize, max: Duration) -> Result<Run> {
    let next = Arc::new(AtomicUsize::new(0));
    let out = Arc::new(Mutex::new(Run::default()));
    let deadline = Instant::now() + max;
    let q0: u64 = p.contexts.iter().map(|c| c.dns.queries_sent()).sum();
    let cpu0 = p.cpu()?;
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        let (p, next, out) = (p.clone(), next.clone(), out.clone());
        tasks.push(tokio::spawn(async move {
            let mut st = match (&p.blackbox, p.kind) {
                (Some(b), Kind::Blackbox) => WorkerState::Http(Http::new(b.addr)),
                _ => WorkerState::None,
            };
            let mut lat = Vec::with_capacity(n / concurrency + 1);
            let mut failed = 0;
            let mut reasons = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n && Instant::now() < deadline {
                let s = Instant::now();
                let r = match tokio::time::timeout(PROBE_TIMEOUT, p.one(w, &mut st)).await {
                    Ok(r) => r,
                    Err(_) => Err(anyhow!("timeout")),
                };
                lat.push(s.elapsed());
                if let Err(e) = r {
                    failed += 1;
                    if reasons.len() < 3 {
                        reasons.push(e.to_string());
                    }
                }
            }
            let mut o = out.lock().expect("not poisoned");
            o.done += lat.len();
            o.failed += failed;
            for r in reasons {
                if o.reasons.len() < 3 && !o.reasons.contains(&r) {
                    o.reasons.push(r);
                }
            }
            o.latencies.extend(lat);
        }));
    }
    for t in tasks {
        t.await?;
    }
    let wall = t0.elapsed();
    let cpu = p.cpu()?.saturating_sub(cpu0);
    let q1: u64 = p.contexts.iter().map(|c| c.dns.queries_sent()).sum();
    let mut r = Arc::try_unwrap(out)
        .map_err(|_| anyhow!("workers still hold the result"))?
        .into_inner()?;
    r.wall = wall;
    r.cpu = cpu;
    r.dns_queries = q1 - q0;
    Ok(r)
}

async fn build_prober(kind: Kind, s: &Settings, max_c: usize) -> Result<Prober> {
    let mut contexts = Vec::new();
    let mut blackbox = None;
    match kind {
        Kind::DomainUpstream | Kind::DomainLocal => {
            let lab = s.lab.display();
            let dns = if kind == Kind::DomainUpstream {
                "  resolver: 127.53.0.2:53\n  validation: upstream\n".to_string()
            } else {
                format!("  resolver: 127.53.0.3:53\n  validation: local\n  trust_anchor: {lab}/dns/root.key\n")
            };
            let yaml = format!(
                "timeout: 30s\ndns:\n{dns}smtp:\n  helo_name: {HELO}\npkix:\n  ca_file: {lab}/pki/root-ca.pem\ntargets:\n  - domain: {}\n",
                s.domain
            );
            let cfg = config::parse(&yaml, "<bench>").map_err(|e| anyhow!("{e}"))?;
            for _ in 0..max_c {
                contexts.push(ProbeContext::new(&cfg)?);
            }
        }
        Kind::Blackbox => blackbox = Some(start_blackbox(&s.blackbox).await?),
        Kind::Floor | Kind::Exporter | Kind::ExporterQuit | Kind::ExporterNoQuick => {}
    }
    Ok(Prober {
        kind,
        addr: s.addr,
        sni: ServerName::try_from(s.sni.clone())?,
        sni_str: s.sni.clone(),
        domain: s.domain.clone(),
        floor_tls: floor_config(),
        exporter_tls: tls::client_config(),
        contexts,
        blackbox,
    })
}

// ---- report ------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Summary {
    kind: Kind,
    c: usize,
    /// Median over rounds.
    cpu_ms: f64,
    cpu_ms_min: f64,
    cpu_ms_max: f64,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    done: usize,
    failed: usize,
    reasons: Vec<String>,
    queries_per_probe: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

fn summarize(kind: Kind, c: usize, runs: &[Run]) -> Summary {
    let per = |r: &Run| r.cpu.as_secs_f64() * 1e3 / r.done.max(1) as f64;
    let cpus: Vec<f64> = runs.iter().map(per).collect();
    let mut lat: Vec<Duration> = runs
        .iter()
        .flat_map(|r| r.latencies.iter().copied())
        .collect();
    lat.sort_unstable();
    let done: usize = runs.iter().map(|r| r.done).sum();
    let mut reasons = Vec::new();
    for r in runs.iter().flat_map(|r| r.reasons.iter()) {
        if reasons.len() < 3 && !reasons.contains(r) {
            reasons.push(r.clone());
        }
    }
    Summary {
        kind,
        c,
        cpu_ms: median(cpus.clone()),
        cpu_ms_min: cpus.iter().copied().fold(f64::INFINITY, f64::min),
        cpu_ms_max: cpus.iter().copied().fold(0.0, f64::max),
        rate: median(
            runs.iter()
                .map(|r| r.done as f64 / r.wall.as_secs_f64().max(1e-9))
                .collect(),
        ),
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        done,
        failed: runs.iter().map(|r| r.failed).sum(),
        reasons,
        queries_per_probe: runs.iter().map(|r| r.dns_queries).sum::<u64>() as f64
            / done.max(1) as f64,
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

fn print_table(s: &Settings, all: &[Summary]) {
    let get = |k: Kind, c: usize| all.iter().find(|x| x.kind == k && x.c == c);
    println!();
    println!(
        "Probe cost against {} (SNI {}), domain {}; {} round(s); CPU = median over rounds of",
        s.addr, s.sni, s.domain, s.rounds
    );
    println!("getrusage(RUSAGE_SELF) user+sys per probe (blackbox_exporter: /proc/<pid>/stat utime+stime).");
    println!();
    println!(
        "| prober | C | probes | failed | CPU ms/probe (min-max) | probes/s | p50 ms | p99 ms | x floor | x blackbox |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for x in all {
        let floor = get(Kind::Floor, x.c).map(|f| x.cpu_ms / f.cpu_ms);
        let bb = get(Kind::Blackbox, x.c).map(|b| x.cpu_ms / b.cpu_ms);
        let ratio = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.2}"));
        println!(
            "| {} | {} | {} | {} | {:.3} ({:.3}-{:.3}) | {:.0} | {:.2} | {:.2} | {} | {} |",
            x.kind.label(),
            x.c,
            x.done,
            x.failed,
            x.cpu_ms,
            x.cpu_ms_min,
            x.cpu_ms_max,
            x.rate,
            x.p50_ms,
            x.p99_ms,
            ratio(floor),
            ratio(bb),
        );
    }
    for x in all.iter().filter(|x| x.failed > 0) {
        println!(
            "FAILURES: {} C={}: {} of {} failed, e.g. {:?}",
            x.kind.label(),
            x.c,
            x.failed,
            x.done,
            x.reasons
        );
    }
    for x in all.iter().filter(|x| x.queries_per_probe > 0.0) {
        println!(
            "DNS: {} C={}: {:.2} lookups per probe sent past the (emptied) cache",
            x.kind.label(),
            x.c,
            x.queries_per_probe
        );
    }

    println!();
    println!("| goal (docs/performance.md) | C | measured | verdict |");
    println!("|---|---|---|---|");
    for &c in &s.concurrency {
        let (e, f, b) = (
            get(Kind::Exporter, c),
            get(Kind::Floor, c),
            get(Kind::Blackbox, c),
        );
        if let (Some(e), Some(f)) = (e, f) {
            let r = e.cpu_ms / f.cpu_ms;
            println!(
                "| SMTP+TLS CPU <= 1.3x floor | {c} | {r:.2}x | {} |",
                verdict(r <= 1.3)
            );
        }
        if let (Some(e), Some(b)) = (e, b) {
            let r = e.cpu_ms / b.cpu_ms;
            println!(
                "| SMTP+TLS CPU <= 0.3x blackbox_exporter | {c} | {r:.2}x | {} |",
                verdict(r <= 0.3)
            );
        }
        if let (Some(e), Some(q)) = (e, get(Kind::ExporterQuit, c)) {
            let r = e.cpu_ms / q.cpu_ms;
            println!(
                "| 2nd EHLO: CPU <= 1.1x QUIT after TLS | {c} | {r:.2}x | {} |",
                verdict(r <= 1.1)
            );
            let d = e.p99_ms - q.p99_ms;
            println!(
                "| 2nd EHLO: p99 within 1 ms of QUIT after TLS | {c} | {d:+.2} ms | {} |",
                verdict(d <= 1.0)
            );
        }
        if let Some(d) = get(Kind::DomainUpstream, c) {
            println!(
                "| whole domain probe CPU <= 1 ms, upstream | {c} | {:.3} ms | {} |",
                d.cpu_ms,
                verdict(d.cpu_ms <= 1.0)
            );
        }
        if let Some(d) = get(Kind::DomainLocal, c) {
            println!(
                "| whole domain probe CPU <= 2 ms, local | {c} | {:.3} ms | {} |",
                d.cpu_ms,
                verdict(d.cpu_ms <= 2.0)
            );
        }
        for k in [Kind::Exporter, Kind::DomainUpstream, Kind::DomainLocal] {
            if let Some(x) = get(k, c) {
                let note = if c > 1 {
                    " (queueing on 2 cores; informative)"
                } else {
                    ""
                };
                println!(
                    "| p99 <= 5 ms, {}{note} | {c} | {:.2} ms | {} |",
                    k.label(),
                    x.p99_ms,
                    verdict(x.p99_ms <= 5.0)
                );
            }
        }
    }
    let refused: Vec<_> = all
        .iter()
        .filter(|x| {
            x.c > 1
                && x.reasons
                    .iter()
                    .any(|r| r.contains("refused") || r.contains("closed"))
        })
        .collect();
    if !refused.is_empty() {
        println!();
        println!("NOTE: Postfix refused or closed connections at high concurrency (see FAILURES).");
    }
}

// ---- main --------------------------------------------------------------------------------

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; any other argument is ignored too.
    let s = Settings::from_env()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(s))
}

async fn run(s: Settings) -> Result<()> {
    let max_c = s.concurrency.iter().copied().max().unwrap_or(1);
    let max = Duration::from_secs(s.max_seconds);
    let mut probers = Vec::new();
    for &k in &s.probers {
        match build_prober(k, &s, max_c).await {
            Ok(p) => {
                let p = Arc::new(p);
                let w = measure(&p, WARMUP, 1, max).await?;
                if w.failed > 0 {
                    eprintln!(
                        "warm-up of {}: {} of {} failed: {:?}",
                        k.label(),
                        w.failed,
                        w.done,
                        w.reasons
                    );
                }
                probers.push(p);
            }
            Err(e) => eprintln!("skipping {}: {e:#}", k.label()),
        }
    }
    let mut runs: Vec<(Kind, usize, Vec<Run>)> = Vec::new();
    for round in 0..s.rounds {
        for &c in &s.concurrency {
            for p in &probers {
                let n = p.n(&s);
                let r = measure(p, n, c, max).await?;
                eprintln!(
                    "round {} C={c:>2} {:<22} {:>5} probes {:>4} failed  {:>7.3} ms CPU/probe  {:>6.0}/s",
                    round + 1,
                    p.kind.label(),
                    r.done,
                    r.failed,
                    r.cpu.as_secs_f64() * 1e3 / r.done.max(1) as f64,
                    r.done as f64 / r.wall.as_secs_f64()
                );
                match runs.iter_mut().find(|(k, cc, _)| *k == p.kind && *cc == c) {
                    Some((_, _, v)) => v.push(r),
                    None => runs.push((p.kind, c, vec![r])),
                }
            }
        }
    }
    let all: Vec<Summary> = runs.iter().map(|(k, c, v)| summarize(*k, *c, v)).collect();
    print_table(&s, &all);
    drop(probers);
    Ok(())
}
