//! The status page as a person sees it: headless Chromium (Debian's `chromium`) loads the
//! page the daemon serves while probing the lab, and the test reads the DOM Chromium built.
//!
//! What it proves: failing targets come before verified ones; a `failed` address shows the
//! reason sentence of the model (the same text `check --output=json` gives as `why`); the
//! filter form's `?q=good` leaves only matching targets; the page loads its stylesheet under
//! the strict Content-Security-Policy (Chromium reports nothing blocked); links and routes
//! respect `--web.external-url` and `--web.route-prefix`. A screenshot is kept at
//! `<target dir>/test-output/status.png` for people to look at.
//!
//! Needs root (the lab) and `/usr/bin/chromium` (tests/run installs it). Everything binds
//! and connects on 127.0.0.0/8 only; Chromium runs with background networking off.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

const CHROMIUM: &str = "/usr/bin/chromium";
/// Lab scenarios on the page: (domain, worst verdict).
const TARGETS: &[(&str, &str)] = &[
    ("good.test", "verified"),
    ("s03.dane.test", "failed"),
    ("s13.dane.test", "failed"),
    ("bogus.test", "dns_failure"),
    ("badsig.test", "dns_failure"),
    ("s14.dane.test", "unauthenticated"),
    ("s18.dane.test", "no DANE"),
    ("nostarttls.good.test", "probe failed"),
    ("s01.dane.test", "verified"),
];
/// Longest a Chromium run may take.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

/// `<target dir>/test-output`, next to the test's exporter binary.
fn output_dir() -> Result<PathBuf> {
    let bin = Path::new(common::exporter_bin());
    let target = bin
        .parent()
        .and_then(Path::parent)
        .context("target dir of the exporter binary")?;
    let dir = target.join("test-output");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Runs headless Chromium with `args` and the URL; returns stdout and stderr.
fn chromium(profile: &Path, args: &[&str], url: &str) -> Result<(String, String)> {
    ensure!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium (tests/run does)"
    );
    let dir = tempfile::Builder::new()
        .prefix("chromium-profile")
        .tempdir_in(profile)?;
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--enable-logging=stderr",
        ])
        .arg(format!("--user-data-dir={}", dir.path().display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting chromium")?;
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("chromium did not finish within {BROWSER_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(
        out.status.success(),
        "chromium failed: {}\n{stderr}",
        out.status
    );
    Ok((stdout, stderr))
}

/// The target names of the page's blocks, in page order.
fn block_names(dom: &str) -> Vec<String> {
    dom.split("<span class=\"name\">")
        .skip(1)
        .filter_map(|s| s.split_once("</span>").map(|(n, _)| n.to_string()))
        .collect()
}

/// The DOM of one target's block.
fn block<'a>(dom: &'a str, name: &str) -> Option<&'a str> {
    let at = dom.find(&format!("<span class=\"name\">{name}</span>"))?;
    let start = dom[..at].rfind("<section")?;
    let end = dom[start..].find("</section>")? + start;
    Some(&dom[start..end])
}

/// Text as Chromium serialises a text node: `&`, `<`, `>` escaped.
fn dom_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn config(lab: &common::Lab) -> Result<String> {
    let mut extra = String::from("interval: 5m\ntimeout: 10s\ntargets:\n");
    for (d, _) in TARGETS {
        extra.push_str(&format!("  - domain: {d}\n"));
    }
    extra.push_str("  - address: 127.25.0.1\n    port: 25\n");
    lab.config("upstream", &extra)
}

/// Waits until the page says no target is waiting for its first probe.
fn wait_all_probed(d: &common::Daemon, page: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let r = d.get(page)?;
        if r.status == 200 && r.body.contains(">0 not probed yet<") {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "not every target probed within 40 s:\n{}\n{}",
                r.body,
                d.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn status_page_in_chromium_shows_failures_first_with_reasons() -> Result<()> {
    let lab = common::lab()?;
    let tmp = common::tempdir()?;
    let cfg = common::write(tmp.path(), "exporter.yml", &config(&lab)?)?;
    // Every route and link under /mailtls, as behind a reverse proxy that keeps the path.
    let d = common::Daemon::start_healthy_at(
        &cfg,
        &["--web.route-prefix=/mailtls"],
        "/mailtls/-/healthy",
    )?;
    wait_all_probed(&d, "/mailtls/")?;

    let r = d.get("/mailtls/")?;
    let csp = r.header("content-security-policy").unwrap_or("");
    ensure!(
        csp.contains("default-src 'none'") && csp.contains("style-src 'self'"),
        "CSP header: {csp:?}"
    );
    ensure!(r.body.contains("href=\"/mailtls/static/status.css\""));
    ensure!(r
        .body
        .contains("href=\"/mailtls/probe?target=s03.dane.test&amp;debug=true\""));
    let css = d.get("/mailtls/static/status.css")?;
    ensure!(css.status == 200 && css.header("content-type") == Some("text/css; charset=utf-8"));

    // What the model says about s03 (the same reason must be on the page).
    let (_, json) = common::check_json(&cfg, &["s03.dane.test"])?;
    let why = json[0]["hosts"][0]["addresses"][0]["why"]
        .as_str()
        .context("s03 why")?
        .to_string();
    ensure!(!why.is_empty(), "empty why for s03: {json}");

    let base = format!("http://{}", d.addr);
    let (dom, _) = chromium(tmp.path(), &["--dump-dom"], &format!("{base}/mailtls/"))?;
    std::fs::write(output_dir()?.join("status.html"), &dom)?;
    let names = block_names(&dom);
    let expected: Vec<&str> = TARGETS.iter().map(|(d, _)| *d).collect();
    for t in &expected {
        ensure!(
            names.iter().any(|n| n == t),
            "{t} missing from the page: {names:?}"
        );
    }
    let pos = |t: &str| names.iter().position(|n| n == t).unwrap_or(usize::MAX);
    for (t, verdict) in TARGETS {
        let b = block(&dom, t).context("block")?;
        ensure!(
            b.contains(&format!(">{verdict}</span>")),
            "{t}: no {verdict} badge in {b}"
        );
    }
    let failing = [
        "s03.dane.test",
        "s13.dane.test",
        "bogus.test",
        "badsig.test",
        "nostarttls.good.test",
    ];
    for f in failing {
        for ok in [
            "good.test",
            "s01.dane.test",
            "s14.dane.test",
            "s18.dane.test",
            "127.25.0.1",
        ] {
            ensure!(pos(f) < pos(ok), "{f} (failing) after {ok}: {names:?}");
        }
    }
    let s03 = block(&dom, "s03.dane.test").context("s03 block")?;
    ensure!(
        s03.contains("<details open=\"\">"),
        "failing targets are expanded: {s03}"
    );
    ensure!(
        s03.contains("class=\"why bad\"") && s03.contains(&dom_text(&why)),
        "s03 does not show its reason {why:?}: {s03}"
    );
    ensure!(
        dom.contains("5 failing") && dom.contains("5 OK") && dom.contains("0 not probed yet"),
        "summary line"
    );

    // The filter form, as a person submits it.
    let (dom, _) = chromium(
        tmp.path(),
        &["--dump-dom"],
        &format!("{base}/mailtls/?q=good&state=all"),
    )?;
    let names = block_names(&dom);
    ensure!(
        names == ["nostarttls.good.test", "good.test"],
        "?q=good shows {names:?}"
    );
    ensure!(
        dom.contains("value=\"good\""),
        "the filter box keeps the query"
    );

    // The check-style text of the last probe.
    let t = d.get("/mailtls/status/text?target=s03.dane.test")?;
    ensure!(
        t.status == 200 && t.body.contains("DANE failed") && t.body.contains("last probe"),
        "{}",
        t.body
    );

    // The screenshot, for people; Chromium must not report a CSP violation on the way.
    let png = output_dir()?.join("status.png");
    let _ = std::fs::remove_file(&png);
    let (_, stderr) = chromium(
        tmp.path(),
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,900",
        ],
        &format!("{base}/mailtls/"),
    )?;
    ensure!(
        !stderr.contains("Content Security Policy") && !stderr.contains("Refused to"),
        "CSP violation: {stderr}"
    );
    let meta = std::fs::metadata(&png).with_context(|| format!("{}", png.display()))?;
    ensure!(
        meta.len() > 10_000,
        "screenshot too small: {} bytes",
        meta.len()
    );
    println!("screenshot: {}", png.display());
    Ok(())
}

#[test]
fn route_prefix_serves_every_route_under_it() -> Result<()> {
    let lab = common::lab()?;
    let tmp = common::tempdir()?;
    let cfg = common::write(tmp.path(), "exporter.yml", &config(&lab)?)?;
    let d = common::Daemon::start_healthy_at(
        &cfg,
        &["--web.route-prefix=/mailtls/"],
        "/mailtls/-/healthy",
    )?;
    let root = d.get("/")?;
    ensure!(
        root.status == 302 && root.header("location") == Some("/mailtls/"),
        "GET / → {}",
        root.status
    );
    let bare = d.get("/mailtls")?;
    ensure!(bare.status == 302 && bare.header("location") == Some("/mailtls/"));
    ensure!(
        d.get("/metrics")?.status == 404,
        "/metrics outside the prefix"
    );
    ensure!(d.get("/mailtls/metrics")?.status == 200);
    ensure!(d.get("/mailtls/static/status.css")?.status == 200);
    let page = d.get("/mailtls/")?;
    ensure!(page.status == 200 && page.body.contains("href=\"/mailtls/metrics\""));
    ensure!(page.body.contains("action=\"/mailtls/\""));
    drop(d);

    // Behind a proxy that strips /mon: routes at the root, links under /mon.
    let d = common::Daemon::start(
        &cfg,
        &[
            "--web.external-url=https://mon.example.org/mon/",
            "--web.route-prefix=/",
        ],
    )?;
    let page = d.get("/")?;
    ensure!(page.status == 200 && page.body.contains("href=\"/mon/static/status.css\""));
    ensure!(page.body.contains("href=\"/mon/metrics\""));
    ensure!(d.get("/metrics")?.status == 200);
    Ok(())
}
