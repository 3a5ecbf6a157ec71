//! `/probe` and the HTTP server under pressure: bursts are bounded and shared, the allow
//! list and the address policy refuse before any DNS query or connection, the server
//! limits its connections and drops clients that do not read their response.
//!
//! Test servers listen on 127.26.81.0/24 (burst), 127.26.82.0/24 (sharing) and
//! 127.26.84.1 (closed ports): addresses the lab leaves to the tests.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use common::{http, lab, sample, tempdir, write, Daemon};

/// Open file descriptors of a process.
fn fds(pid: u32) -> Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// Waits until the process has at most `max` descriptors; returns how long that took.
fn wait_fds_at_most(pid: u32, max: usize, within: Duration) -> Result<Duration> {
    let start = Instant::now();
    loop {
        let n = fds(pid)?;
        if n <= max {
            return Ok(start.elapsed());
        }
        if start.elapsed() > within {
            bail!("{n} descriptors open after {within:?}, expected at most {max}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Descriptors once the count has stayed the same for 300 ms (connections of earlier
/// requests closed).
fn settled_fds(pid: u32) -> Result<usize> {
    let mut last = fds(pid)?;
    let mut same = 0;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(100));
        let n = fds(pid)?;
        same = if n == last { same + 1 } else { 0 };
        last = n;
        if same == 3 {
            return Ok(n);
        }
    }
    bail!("descriptor count does not settle")
}

/// Connection counts of the test SMTP servers.
#[derive(Default)]
struct Counts {
    open: AtomicUsize,
    max_open: AtomicUsize,
    total: AtomicUsize,
}

/// A plain SMTP server on `addr` (no STARTTLS) that holds each connection `hold` before
/// its greeting and counts connections open at once across every server sharing `counts`.
fn smtp_server(addr: SocketAddr, hold: Duration, counts: Arc<Counts>) -> Result<()> {
    let l = TcpListener::bind(addr).with_context(|| format!("bind {addr}"))?;
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let counts = counts.clone();
            std::thread::spawn(move || {
                let now = counts.open.fetch_add(1, Ordering::SeqCst) + 1;
                counts.max_open.fetch_max(now, Ordering::SeqCst);
                counts.total.fetch_add(1, Ordering::SeqCst);
                // At QUIT the connection stops counting before the 221 is written: the
                // prober waits for that reply before it lets the next probe start, so the
                // count never lags behind it (however late this thread is scheduled).
                if !matches!(serve_smtp(s, hold, &counts), Ok(true)) {
                    counts.open.fetch_sub(1, Ordering::SeqCst);
                }
            });
        }
    });
    Ok(())
}

/// Serves one dialogue; `Ok(true)` when it ended with QUIT (then no longer counted as open).
fn serve_smtp(mut s: TcpStream, hold: Duration, counts: &Counts) -> std::io::Result<bool> {
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    std::thread::sleep(hold);
    s.write_all(b"220 counter.test ESMTP\r\n")?;
    let mut buf = [0u8; 512];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(false);
        }
        let line = String::from_utf8_lossy(&buf[..n]).to_ascii_uppercase();
        if line.starts_with("QUIT") {
            counts.open.fetch_sub(1, Ordering::SeqCst);
            let _ = s.write_all(b"221 bye\r\n");
            return Ok(true);
        }
        s.write_all(b"250 counter.test\r\n")?;
    }
}

#[test]
fn probe_burst_is_bounded_by_max_concurrent_and_leaks_nothing() -> Result<()> {
    let counts = Arc::new(Counts::default());
    let servers: Vec<SocketAddr> = (1..=50)
        .map(|i| format!("127.26.81.{i}:2525").parse())
        .collect::<Result<_, _>>()?;
    for a in &servers {
        smtp_server(*a, Duration::from_millis(300), counts.clone())?;
    }
    let dir = tempdir()?;
    let cfg = write(
        dir.path(),
        "c.yml",
        "interval: 5m\ntimeout: 5s\ndns:\n  resolver: 127.0.0.1:53\nsmtp:\n  helo_name: probe.test\nprobe:\n  allow: [\"[127.26.81.0/24]:2525\"]\n  private_addresses: true\ntargets: []\n",
    )?;
    let d = Daemon::start(&cfg, &[])?;
    let pid = d.child.id();
    // Warm up (lazy runtime resources), then take the baseline.
    let warm = d.get("/probe?target=%5B127.26.81.1%5D%3A2525")?;
    assert_eq!(warm.status, 200, "{}", warm.body);
    let baseline = settled_fds(pid)?;
    counts.max_open.store(0, Ordering::SeqCst);

    // 500 requests at once, 10 per target; a 2 s scrape timeout makes some wait too long.
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let addr = d.addr;
    let clients: Vec<_> = (0..500)
        .map(|i| {
            let target = servers[i % servers.len()];
            let statuses = statuses.clone();
            std::thread::spawn(move || {
                let path = format!("/probe?target=%5B{}%5D%3A{}", target.ip(), target.port());
                let r = http(
                    addr,
                    "GET",
                    &path,
                    &[("X-Prometheus-Scrape-Timeout-Seconds", "2")],
                );
                let entry = match r {
                    Ok(r) => (
                        r.status,
                        r.header("retry-after").map(str::to_string),
                        r.body,
                    ),
                    Err(e) => (0, None, e.to_string()),
                };
                if let Ok(mut s) = statuses.lock() {
                    s.push(entry);
                }
            })
        })
        .collect();
    for c in clients {
        c.join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))?;
    }
    let statuses = statuses.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    assert_eq!(statuses.len(), 500);
    let ok = statuses.iter().filter(|s| s.0 == 200).count();
    let busy = statuses.iter().filter(|s| s.0 == 503).count();
    for (status, retry, body) in statuses.iter() {
        match status {
            200 => assert!(body.contains("mailtls_smtp_up"), "{body}"),
            503 => assert!(
                retry.as_deref().is_some_and(|r| r.parse::<u64>().is_ok()),
                "503 without Retry-After: {body}"
            ),
            other => bail!("unexpected status {other}: {body}"),
        }
    }
    let max_open = counts.max_open.load(Ordering::SeqCst);
    eprintln!(
        "500 requests: {ok} × 200, {busy} × 503; SMTP connections at once: {max_open}, in all: {}",
        counts.total.load(Ordering::SeqCst)
    );
    assert!(ok > 0, "no request was served");
    assert!(
        (1..=8).contains(&max_open),
        "{max_open} SMTP connections at once (probe.max_concurrent = 8)"
    );
    assert!(d.child.id() == pid && d.get("/-/healthy")?.status == 200);
    let took = wait_fds_at_most(pid, baseline, Duration::from_secs(10))?;
    eprintln!("descriptors back to the baseline of {baseline} after {took:?}");
    Ok(())
}

#[test]
fn identical_concurrent_requests_share_one_probe() -> Result<()> {
    let counts = Arc::new(Counts::default());
    let server: SocketAddr = "127.26.82.1:2525".parse()?;
    smtp_server(server, Duration::from_millis(800), counts.clone())?;
    let dir = tempdir()?;
    let cfg = write(
        dir.path(),
        "c.yml",
        "interval: 5m\ntimeout: 5s\ndns:\n  resolver: 127.0.0.1:53\nsmtp:\n  helo_name: probe.test\nprobe:\n  allow: [\"[127.26.82.0/24]:2525\"]\n  private_addresses: true\ntargets: []\n",
    )?;
    let d = Daemon::start(&cfg, &[])?;
    let dialogues = |d: &Daemon| -> Result<f64> {
        sample(
            &d.get("/metrics")?.body,
            "mailtls_smtp_dialogues_total",
            &[],
        )
        .context("no mailtls_smtp_dialogues_total")
    };
    let before = dialogues(&d)?;
    let addr = d.addr;
    // 10 plain and 10 debug requests at once: two probes, one per kind.
    let clients: Vec<_> = (0..20)
        .map(|i| {
            std::thread::spawn(move || {
                let debug = if i % 2 == 0 { "&debug=true" } else { "" };
                http(
                    addr,
                    "GET",
                    &format!("/probe?target=%5B127.26.82.1%5D:2525{debug}"),
                    &[],
                )
            })
        })
        .collect();
    for c in clients {
        let r = c
            .join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
        assert_eq!(r.status, 200, "{}", r.body);
        // The target label is the canonical next-hop form.
        assert!(
            r.body.contains("target=\"[127.26.82.1]:2525\"") || r.body.contains("C: EHLO"),
            "{}",
            r.body
        );
    }
    assert_eq!(counts.total.load(Ordering::SeqCst), 2, "SMTP connections");
    assert_eq!(dialogues(&d)? - before, 2.0, "SMTP dialogues");
    // Done probes are not reused: the next request probes again.
    assert_eq!(d.get("/probe?target=%5B127.26.82.1%5D%3A2525")?.status, 200);
    assert_eq!(dialogues(&d)? - before, 3.0);
    Ok(())
}

#[test]
fn unconfigured_targets_never_reach_ports_names_or_addresses_they_are_not_allowed() -> Result<()> {
    let lab = lab()?;
    let dir = tempdir()?;
    let cfg = write(
        dir.path(),
        "c.yml",
        &lab.config(
            "upstream",
            "interval: 5m\nprobe:\n  allow: [\"*.test\", \"10.0.0.0/8\"]\ntargets:\n  - domain: good.test\n",
        )?,
    )?;
    let d = Daemon::start(&cfg, &[])?;
    d.wait_metrics(Duration::from_secs(20), |m| {
        m.contains("mailtls_probe_success{target=\"good.test\"}")
    })?;
    let counters = |d: &Daemon| -> Result<(f64, f64)> {
        let m = d.get("/metrics")?.body;
        Ok((
            sample(&m, "mailtls_dns_queries_total", &[]).context("dns queries")?,
            sample(&m, "mailtls_smtp_dialogues_total", &[]).context("dialogues")?,
        ))
    };
    let (q0, s0) = counters(&d)?;
    // Another port than the entry's: refused before DNS.
    let r = d.get("/probe?target=%5Bmx1.s01.dane.test%5D%3A22")?;
    assert_eq!(r.status, 403, "{}", r.body);
    // A name that looks like an address is a name: the network entry does not match it.
    let r = d.get("/probe?target=10.0.0.1.attacker.example")?;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = d.get("/probe?target=%5B10.0.0.1.attacker.example%5D")?;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        counters(&d)?,
        (q0, s0),
        "refused by the allow list, yet probed"
    );

    // Allowed by pattern, but the lab's names resolve to loopback: DNS, then 403, no SMTP.
    for target in ["s02.dane.test", "%5Bmx1.s01.dane.test%5D"] {
        let r = d.get(&format!("/probe?target={target}"))?;
        assert_eq!(r.status, 403, "{target}: {}", r.body);
        assert!(
            r.body.contains("is loopback") && r.body.contains("private_addresses"),
            "{}",
            r.body
        );
        let r = d.get(&format!("/probe?target={target}&debug=true"))?;
        assert_eq!(r.status, 403, "{}", r.body);
    }
    let (q1, s1) = counters(&d)?;
    assert!(
        q1 > q0,
        "the address policy is checked on resolved addresses"
    );
    assert_eq!(s1, s0, "an SMTP connection was made to a refused target");

    // A configured target is never restricted: the lab is loopback.
    let r = d.get("/probe?target=good.test")?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(counters(&d)?.1 > s0);
    Ok(())
}

/// A TCP client with a tiny receive buffer (set before connecting), so that a response it
/// does not read fills the buffers quickly.
fn small_window_client(addr: SocketAddr) -> Result<TcpStream> {
    let SocketAddr::V4(v4) = addr else {
        bail!("IPv4 only")
    };
    // SAFETY: plain socket(2)/setsockopt(2)/connect(2) on a descriptor this function owns;
    // it is handed to TcpStream, which closes it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        if fd < 0 {
            bail!("socket: {}", std::io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let size: libc::c_int = 4096;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &size as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        if libc::connect(
            stream.as_raw_fd(),
            &sa as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ) != 0
        {
            bail!("connect: {}", std::io::Error::last_os_error());
        }
        Ok(stream)
    }
}

#[test]
fn a_client_that_does_not_read_is_dropped_at_the_write_deadline() -> Result<()> {
    // 12000 targets on closed ports: a /metrics of about 6 MB (more than the socket buffers hold), probed in seconds.
    let dir = tempdir()?;
    let mut text = String::from(
        "interval: 5m\ntimeout: 2s\nconcurrency: 64\ndns:\n  resolver: 127.0.0.1:53\nsmtp:\n  helo_name: probe.test\ntargets:\n",
    );
    for port in 20001..32001 {
        text.push_str(&format!("  - address: 127.26.84.1\n    port: {port}\n"));
    }
    let cfg = write(dir.path(), "c.yml", &text)?;
    let d = Daemon::start(&cfg, &["--web.write-timeout=2s"])?;
    let body = d.wait_metrics(Duration::from_secs(60), |m| {
        m.matches("mailtls_probe_timestamp_seconds{").count() == 12000
    })?;
    let full = body.len();
    assert!(full > 5 << 20, "/metrics is only {full} bytes");
    // gzip when asked (Prometheus always asks), with Vary.
    let z = http(d.addr, "GET", "/metrics", &[("Accept-Encoding", "gzip")])?;
    assert_eq!(z.header("content-encoding"), Some("gzip"));
    assert_eq!(z.header("vary"), Some("Accept-Encoding"));
    let plain = d.get("/metrics")?;
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.header("vary"), Some("Accept-Encoding"));

    let pid = d.child.id();
    let baseline = settled_fds(pid)?;
    let mut slow = small_window_client(d.addr)?;
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")?;
    let sent = Instant::now();
    while fds(pid)? <= baseline {
        if sent.elapsed() > Duration::from_secs(2) {
            bail!("the connection was never accepted");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Not read: the server gives up after the 2 s write deadline.
    wait_fds_at_most(pid, baseline, Duration::from_secs(8))?;
    let dropped_after = sent.elapsed();
    eprintln!("unread /metrics ({full} bytes) dropped after {dropped_after:?}");
    assert!(
        dropped_after >= Duration::from_millis(1500),
        "dropped after {dropped_after:?}, before the deadline"
    );
    // What the client gets is cut short.
    slow.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut got = Vec::new();
    let _ = slow.read_to_end(&mut got);
    assert!(got.len() < full, "{} of {full} bytes arrived", got.len());
    assert_eq!(d.get("/-/healthy")?.status, 200);
    Ok(())
}

#[test]
fn connections_beyond_the_limit_wait_and_the_server_recovers() -> Result<()> {
    let dir = tempdir()?;
    let cfg = write(
        dir.path(),
        "c.yml",
        "interval: 5m\ndns:\n  resolver: 127.0.0.1:53\nsmtp:\n  helo_name: probe.test\ntargets: []\n",
    )?;
    let d = Daemon::start(&cfg, &[])?;
    let pid = d.child.id();
    let baseline = settled_fds(pid)?;
    let idle: Vec<TcpStream> = (0..600)
        .map(|_| TcpStream::connect_timeout(&d.addr, Duration::from_secs(5)))
        .collect::<Result<_, _>>()?;
    // The exporter accepts up to --web.max-connections (512); the rest wait in the backlog.
    std::thread::sleep(Duration::from_millis(500));
    let open = fds(pid)? - baseline;
    eprintln!("600 idle clients: {open} accepted");
    assert!(
        (500..=512).contains(&open),
        "{open} connections accepted, limit 512"
    );
    // A new client waits too, and is served once the idle ones go.
    let mut queued = TcpStream::connect_timeout(&d.addr, Duration::from_secs(5))?;
    queued.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    queued.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut first = [0u8; 1];
    assert!(
        queued.read(&mut first).is_err(),
        "a client beyond the limit was served"
    );
    drop(idle);
    queued.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut rest = Vec::new();
    queued.read_to_end(&mut rest)?;
    assert!(
        String::from_utf8_lossy(&rest).contains("200 OK"),
        "{}",
        String::from_utf8_lossy(&rest)
    );
    assert_eq!(d.get("/-/healthy")?.status, 200);
    wait_fds_at_most(pid, baseline, Duration::from_secs(10))?;
    Ok(())
}
