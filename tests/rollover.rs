//! Rollover walks in real time against the lab's Knot-signed, updatable zone `dyn.test`
//! (tests/lab/dyn-lib.sh; TLSA TTL 5 s): the two NCSC-NL procedures of RFC 7671 §8.1, with the
//! exporter's staged verdicts, first-seen times and `check` planner at each step, and
//! posttls-finger (a DANE-enforcing Postfix) as the reference once a chain is served.
//!
//! Each walk uses its own MX host (d1/mx1: same CA, new key; d2/mx2: CA change; d3/mx3:
//! key-only, leaf-only and private-key entries) and restores the host's TLSA RRset and served
//! chain when it ends, so the walks run in parallel and again on the same lab.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use common::{
    check_json, lab, postfix_verdicts, run_exporter, sample, tempdir, write, Daemon, Lab,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};

/// The lab's TTL for every dyn.test record (LAB_TTL).
const TTL: f64 = 5.0;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Lower-case hex SHA-256 of the SubjectPublicKeyInfo of the first certificate in `pem`.
fn spki_sha256(pem: &Path) -> Result<String> {
    let der = CertificateDer::pem_file_iter(pem)?
        .next()
        .context("no certificate")??;
    let parts = mailtls_exporter::cert::parts(der.as_ref()).context("certificate parses")?;
    Ok(hex::encode(Sha256::digest(parts.spki)))
}

/// The CERTIFICATE blocks of `src` (never its key) written to `dst`.
fn certs_only(srcs: &[PathBuf], dst: &Path) -> Result<()> {
    let mut out = String::new();
    for src in srcs {
        let text = std::fs::read_to_string(src)?;
        let mut inside = false;
        for line in text.lines() {
            if line.starts_with("-----BEGIN CERTIFICATE-----") {
                inside = true;
            }
            if inside {
                out.push_str(line);
                out.push('\n');
            }
            if line.starts_with("-----END CERTIFICATE-----") {
                inside = false;
            }
        }
    }
    std::fs::write(dst, out)?;
    Ok(())
}

/// One dyn.test MX host (mxN.dyn.test, domain dN.dyn.test) of the lab.
struct DynHost<'a> {
    lab: &'a Lab,
    n: u8,
}

impl<'a> DynHost<'a> {
    fn new(lab: &'a Lab, n: u8) -> Result<Self> {
        ensure!(
            lab.env.contains_key("LAB_DYN_ZONE"),
            "the lab has no dyn.test zone: rebuild it with tests/lab/up.sh (LAB_DYNAMIC is on by default)"
        );
        Ok(Self { lab, n })
    }
    fn mx(&self) -> String {
        format!("mx{}.dyn.test", self.n)
    }
    fn domain(&self) -> String {
        format!("d{}.dyn.test", self.n)
    }
    fn owner(&self) -> String {
        format!("_25._tcp.{}.", self.mx())
    }
    fn pki(&self, suffix: &str) -> PathBuf {
        self.lab
            .dir
            .join("pki")
            .join(format!("{}{suffix}", self.mx()))
    }
    fn ca(&self, name: &str) -> PathBuf {
        self.lab.dir.join("pki").join(format!("{name}.pem"))
    }
    /// Replaces the host's TLSA RRset with `records` (`3 1 1 <hex>` ...), one update.
    fn set_tlsa(&self, records: &[String]) -> Result<()> {
        let mut ops = vec![format!("del {} TLSA", self.owner())];
        ops.extend(
            records
                .iter()
                .map(|r| format!("add {} 5 TLSA {r}", self.owner())),
        );
        dyn_update(self.lab, &ops)
    }
    fn add_tlsa(&self, record: &str) -> Result<()> {
        dyn_update(self.lab, &[format!("add {} 5 TLSA {record}", self.owner())])
    }
    /// Serves the chain file `src` (key + certificates) on the host's listener.
    fn serve(&self, src: &Path) -> Result<()> {
        std::fs::copy(src, self.pki(".chain.pem"))?;
        let st = Command::new("postfix")
            .args(["-c", self.lab.get("LAB_POSTFIX_CONFIG")?, "reload"])
            .output()?;
        ensure!(st.status.success(), "postfix reload: {:?}", st);
        // The master restarts smtpd processes with the new chain on their next connection.
        std::thread::sleep(Duration::from_millis(500));
        Ok(())
    }
    /// The lab's original state: its own chain, `3 1 1` of its key and `2 1 1` of the CA.
    fn restore(&self) -> Result<()> {
        self.serve(&self.pki(".orig.chain.pem"))?;
        self.set_tlsa(&[
            format!("3 1 1 {}", spki_sha256(&self.pki(".pem"))?),
            format!("2 1 1 {}", spki_sha256(&self.ca("issuing-ca"))?),
        ])
    }
    /// posttls-finger's verdict on `[mxN.dyn.test]`.
    fn postfix_verdict(&self) -> Result<String> {
        let v = postfix_verdicts(self.lab, &format!("[{}]", self.mx()))?;
        ensure!(v.len() == 1, "posttls-finger: {v:?}");
        Ok(v[0].2.clone())
    }
}

impl Drop for DynHost<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.restore() {
            eprintln!("restoring {}: {e:#}", self.mx());
        }
    }
}

fn dyn_update(lab: &Lab, ops: &[String]) -> Result<()> {
    let out = Command::new("bash")
        .arg(common::repo().join("tests/lab/dyn-update.sh"))
        .arg(&lab.dir)
        .args(ops)
        .output()?;
    ensure!(
        out.status.success(),
        "dyn-update.sh {ops:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn check_text(cfg: &Path, target: &str) -> Result<String> {
    let (_, out, err) =
        run_exporter(&["check", &format!("--config.file={}", cfg.display()), target])?;
    ensure!(
        out.contains("rollover ("),
        "no planner in check output:\n{out}\n{err}"
    );
    Ok(out)
}

fn config(lab: &Lab, dir: &Path, target: &str, staged: &str) -> Result<PathBuf> {
    let state = dir.join("state.json");
    let text = lab.config(
        "upstream",
        &format!(
            "interval: 2s\nstate_file: {}\ntargets:\n  - domain: {target}\n    staged:\n{staged}",
            state.display()
        ),
    )?;
    write(dir, "c.yml", &text)
}

fn staged_status(m: &str, target: &str, staged: &str, status: &str) -> bool {
    sample(
        m,
        "mailtls_staged_dane_status",
        &[("target", target), ("staged", staged), ("status", status)],
    ) == Some(1.0)
}

fn live_verified(m: &str, target: &str) -> bool {
    sample(
        m,
        "mailtls_dane_status",
        &[("target", target), ("status", "verified")],
    ) == Some(1.0)
}

/// Waits until the wall clock passes `t` (plus a probe interval and a little).
fn sleep_until(t: f64) {
    let wait = t - now() + 2.5;
    if wait > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(wait));
    }
}

fn step(title: &str, text: &str) {
    println!("==== {title}\n{text}");
}

/// Procedure (a), same CA, new key: stage → failed (planner: publish the 3 1 1) → publish →
/// covered, not safe → restart keeps first-seen → safe after first-seen + 2 × TTL → deploy;
/// the live verdict stays `verified` throughout, and posttls-finger agrees once served.
#[test]
fn same_ca_new_key_walk() -> Result<()> {
    let lab = lab()?;
    let host = DynHost::new(&lab, 1)?;
    let (mx, target) = (host.mx(), host.domain());
    let started = Instant::now();
    // Only the current key's 3 1 1: the next key is not covered by anything.
    let current = spki_sha256(&host.pki(".pem"))?;
    let next = spki_sha256(&host.pki(".alt.pem"))?;
    host.serve(&host.pki(".orig.chain.pem"))?;
    host.set_tlsa(&[format!("3 1 1 {current}")])?;
    let dir = tempdir()?;
    let staged_file = dir.path().join("next.pem");
    certs_only(&[host.pki(".alt.pem"), host.ca("issuing-ca")], &staged_file)?;
    let staged = staged_file.display().to_string();
    let cfg = config(
        &lab,
        dir.path(),
        &target,
        &format!("      - chain_file: {staged}\n        mx: {mx}\n"),
    )?;
    let d = Daemon::start(&cfg, &[])?;

    // 1. staged, nothing covers it (once the resolver's cache drops the old RRset).
    let m = d.wait_metrics(Duration::from_secs(20), |m| {
        staged_status(m, &target, &staged, "failed")
            && sample(
                m,
                "mailtls_tlsa_record_first_seen_timestamp_seconds",
                &[("target", &target)],
            )
            .is_some()
    })?;
    ensure!(
        live_verified(&m, &target),
        "live verdict before publishing:\n{m}"
    );
    ensure!(
        sample(
            &m,
            "mailtls_tlsa_ttl_seconds",
            &[("target", &target), ("mx", &mx)]
        ) == Some(TTL),
        "TLSA TTL is the original TTL from the RRSIG:\n{m}"
    );
    ensure!(
        sample(
            &m,
            "mailtls_staged_deploy_safe_timestamp_seconds",
            &[("target", &target)]
        )
        .is_none(),
        "no deploy-safe time while nothing authenticates it"
    );
    let text = check_text(&cfg, &target)?;
    step("(a) 1. staged, not published", &text);
    let want = format!("_25._tcp.{mx}. IN TLSA 3 1 1 {next}");
    ensure!(
        text.contains("if deployed now: failed") && text.contains(&want),
        "planner:\n{text}"
    );

    // 2. publish the next key's 3 1 1: covered, not yet safe.
    host.add_tlsa(&format!("3 1 1 {next}"))?;
    let published = now();
    let record = format!("3 1 1 {next}");
    let m = d.wait_metrics(Duration::from_secs(20), |m| {
        staged_status(m, &target, &staged, "verified")
            && sample(
                m,
                "mailtls_staged_deploy_safe_timestamp_seconds",
                &[("staged", &staged)],
            )
            .is_some()
    })?;
    ensure!(
        live_verified(&m, &target),
        "live verdict after publishing:\n{m}"
    );
    let first_seen = sample(
        &m,
        "mailtls_tlsa_record_first_seen_timestamp_seconds",
        &[("target", &target), ("record", &record)],
    )
    .context("first-seen of the new record")?;
    let safe = sample(
        &m,
        "mailtls_staged_deploy_safe_timestamp_seconds",
        &[("staged", &staged)],
    )
    .context("deploy-safe")?;
    ensure!(
        first_seen >= published - 1.0,
        "first seen {first_seen} before publication {published}"
    );
    ensure!(
        (safe - (first_seen + 2.0 * TTL)).abs() < 0.01,
        "safe {safe} = first seen {first_seen} + 2 x TTL"
    );
    ensure!(
        sample(
            &m,
            "mailtls_staged_tlsa_record_match",
            &[("staged", &staged), ("record", &record)]
        ) == Some(1.0),
        "the new record matches the staged chain:\n{m}"
    );
    let text = check_text(&cfg, &target)?;
    step("(a) 2. published, waiting", &text);
    ensure!(
        text.contains("if deployed now: verified") && text.contains("not yet"),
        "planner:\n{text}"
    );

    // 3. restart: the first-seen time comes back from state_file.
    drop(d);
    let d = Daemon::start(&cfg, &[])?;
    let m = d.wait_metrics(Duration::from_secs(20), |m| {
        sample(
            m,
            "mailtls_tlsa_record_first_seen_timestamp_seconds",
            &[("record", &record)],
        )
        .is_some()
    })?;
    let again = sample(
        &m,
        "mailtls_tlsa_record_first_seen_timestamp_seconds",
        &[("record", &record)],
    );
    ensure!(
        again == Some(first_seen),
        "after restart first seen {again:?}, before {first_seen}"
    );

    // 4. two TTLs later: safe.
    sleep_until(safe);
    let m = d.wait_metrics(Duration::from_secs(10), |m| live_verified(m, &target))?;
    ensure!(staged_status(&m, &target, &staged, "verified"), "{m}");
    let text = check_text(&cfg, &target)?;
    step("(a) 3. safe", &text);
    ensure!(text.contains("(now)"), "planner:\n{text}");

    // 5. deploy the new chain: still verified live, and posttls-finger agrees.
    host.serve(&host.pki(".alt.chain.pem"))?;
    let (_, reports) = check_json(&cfg, &[&target])?;
    let a = &reports[0]["hosts"][0]["addresses"][0];
    ensure!(
        a["dane"] == "verified",
        "live verdict after deployment: {a}"
    );
    ensure!(
        a["certs"][0]["spki_sha256"] == next.as_str(),
        "the new chain is served: {a}"
    );
    let text = check_text(&cfg, &target)?;
    step("(a) 4. deployed", &text);
    ensure!(
        host.postfix_verdict()? == "verified",
        "posttls-finger after deployment"
    );
    let m = d.wait_metrics(Duration::from_secs(10), |m| live_verified(m, &target))?;
    ensure!(staged_status(&m, &target, &staged, "verified"), "{m}");
    println!("walk (a) took {:?}", started.elapsed());
    Ok(())
}

/// Procedure (b), CA change: the new CA's `2 1 1` first, wait, then a chain from the new CA.
#[test]
fn ca_change_walk() -> Result<()> {
    let lab = lab()?;
    let host = DynHost::new(&lab, 2)?;
    let (mx, target) = (host.mx(), host.domain());
    let current = spki_sha256(&host.pki(".pem"))?;
    let old_ca = spki_sha256(&host.ca("issuing-ca"))?;
    let new_ca = spki_sha256(&host.ca("other-issuing-ca"))?;
    let new_leaf = spki_sha256(&host.pki(".newca.pem"))?;
    host.serve(&host.pki(".orig.chain.pem"))?;
    host.set_tlsa(&[format!("3 1 1 {current}"), format!("2 1 1 {old_ca}")])?;
    let dir = tempdir()?;
    let staged_file = dir.path().join("newca.pem");
    certs_only(
        &[host.pki(".newca.pem"), host.ca("other-issuing-ca")],
        &staged_file,
    )?;
    let staged = staged_file.display().to_string();
    let cfg = config(
        &lab,
        dir.path(),
        &target,
        &format!("      - chain_file: {staged}\n"),
    )?;
    let d = Daemon::start(&cfg, &[])?;
    d.wait_metrics(Duration::from_secs(20), |m| {
        staged_status(m, &target, &staged, "failed")
    })?;
    let text = check_text(&cfg, &target)?;
    step("(b) 1. new CA staged", &text);
    for want in [
        format!("_25._tcp.{mx}. IN TLSA 3 1 1 {new_leaf}"),
        format!("_25._tcp.{mx}. IN TLSA 2 1 1 {new_ca}"),
    ] {
        ensure!(text.contains(&want), "planner misses {want}:\n{text}");
    }
    host.add_tlsa(&format!("2 1 1 {new_ca}"))?;
    let m = d.wait_metrics(Duration::from_secs(20), |m| {
        staged_status(m, &target, &staged, "verified")
            && sample(
                m,
                "mailtls_staged_deploy_safe_timestamp_seconds",
                &[("staged", &staged)],
            )
            .is_some()
    })?;
    ensure!(live_verified(&m, &target), "{m}");
    let safe = sample(
        &m,
        "mailtls_staged_deploy_safe_timestamp_seconds",
        &[("staged", &staged)],
    )
    .context("deploy-safe")?;
    ensure!(safe > now(), "not safe right after publication");
    let text = check_text(&cfg, &target)?;
    step("(b) 2. new CA's 2 1 1 published", &text);
    sleep_until(safe);
    let text = check_text(&cfg, &target)?;
    ensure!(text.contains("(now)"), "{text}");
    host.serve(&host.pki(".newca.chain.pem"))?;
    let (_, reports) = check_json(&cfg, &[&target])?;
    let a = &reports[0]["hosts"][0]["addresses"][0];
    ensure!(a["dane"] == "verified", "live verdict with the new CA: {a}");
    let staged_verdict = reports[0]["staged"][0]["hosts"][0]["dane"].clone();
    let postfix = host.postfix_verdict()?;
    ensure!(
        staged_verdict == postfix.as_str(),
        "staged {staged_verdict} vs posttls-finger {postfix}"
    );
    step("(b) 3. deployed", &check_text(&cfg, &target)?);
    Ok(())
}

/// Key-only entries, a leaf without its CA (only a `2 1 1` published), and a file with a
/// private key; the leaf-only verdict is compared with posttls-finger once served.
#[test]
fn key_only_leaf_only_and_private_key_entries() -> Result<()> {
    let lab = lab()?;
    let host = DynHost::new(&lab, 3)?;
    let (mx, target) = (host.mx(), host.domain());
    let alt = spki_sha256(&host.pki(".alt.pem"))?;
    let ca = spki_sha256(&host.ca("issuing-ca"))?;
    host.serve(&host.pki(".orig.chain.pem"))?;
    // Only the CA's 2 1 1: a leaf whose CA is missing from its file cannot use it.
    host.set_tlsa(&[format!("2 1 1 {ca}")])?;
    let dir = tempdir()?;
    let pubkey = |src: &Path, name: &str| -> Result<String> {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-pubkey", "-in"])
            .arg(src)
            .output()?;
        ensure!(out.status.success(), "openssl: {out:?}");
        Ok(write(dir.path(), name, &String::from_utf8(out.stdout)?)?
            .display()
            .to_string())
    };
    let alt_key = pubkey(&host.pki(".alt.pem"), "alt.pub")?;
    let leaf_only = dir.path().join("leaf-only.pem");
    certs_only(&[host.pki(".alt.pem")], &leaf_only)?;
    let leaf_only = leaf_only.display().to_string();
    let with_key = host.pki(".alt.chain.pem").display().to_string();
    let staged = format!(
        "      - public_key_file: {alt_key}\n      - chain_file: {leaf_only}\n        mx: {mx}\n      - chain_file: {with_key}\n"
    );
    let cfg = config(&lab, dir.path(), &target, &staged)?;
    // Wait for the resolver to serve the new RRset (one record).
    let deadline = Instant::now() + Duration::from_secs(15);
    let reports = loop {
        let (_, r) = check_json(&cfg, &[&target])?;
        if r[0]["hosts"][0]["tlsa_records"].as_array().map(Vec::len) == Some(1) {
            break r;
        }
        if Instant::now() > deadline {
            bail!("the resolver still serves the old TLSA RRset: {r}");
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let s = &reports[0]["staged"];
    // The key: the 2 1 1 cannot be judged from a key alone; publish its 3 1 1.
    ensure!(s[0]["hosts"][0]["dane"] == "failed", "key-only: {}", s[0]);
    ensure!(
        s[0]["hosts"][0]["publish"][0] == format!("_25._tcp.{mx}. IN TLSA 3 1 1 {alt}").as_str(),
        "key-only planner: {}",
        s[0]
    );
    // The leaf without its CA: the 2 1 1 names a CA the chain does not carry.
    ensure!(s[1]["hosts"][0]["dane"] == "failed", "leaf-only: {}", s[1]);
    ensure!(
        s[1]["hosts"][0]["checks"][0]["matched"] == false,
        "{}",
        s[1]
    );
    // The file with a private key is refused, and says so.
    ensure!(s[2]["error"]["reason"] == "private_key", "{}", s[2]);
    ensure!(
        s[2]["hosts"].as_array().is_none_or(Vec::is_empty),
        "{}",
        s[2]
    );
    step(
        "key-only, leaf-only, private key",
        &check_text(&cfg, &target)?,
    );

    // Served as staged (key + leaf, no CA): Postfix defers too.
    let chain = dir.path().join("served.pem");
    let key = std::fs::read_to_string(host.pki(".alt.key"))?;
    std::fs::write(
        &chain,
        format!("{key}{}", std::fs::read_to_string(&leaf_only)?),
    )?;
    host.serve(&chain)?;
    let postfix = host.postfix_verdict()?;
    ensure!(
        postfix == "failed",
        "posttls-finger on the leaf-only chain: {postfix}"
    );
    let (_, reports) = check_json(&cfg, &[&target])?;
    ensure!(
        reports[0]["hosts"][0]["addresses"][0]["dane"] == "failed",
        "live: {}",
        reports[0]
    );

    // The key-only entry once its 3 1 1 is published: verified, as posttls-finger says when a
    // chain with that key is served.
    host.add_tlsa(&format!("3 1 1 {alt}"))?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, r) = check_json(&cfg, &[&target])?;
        if r[0]["staged"][0]["hosts"][0]["dane"] == "verified" {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "key-only entry not verified after publishing its 3 1 1: {}",
                r[0]["staged"][0]
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    ensure!(
        host.postfix_verdict()? == "verified",
        "posttls-finger with the 3 1 1 published"
    );
    Ok(())
}
