//! Every authoritative server, against the real lab: dyn.test. is served by the Knot primary
//! (127.53.0.1) and a Knot secondary (127.53.0.4) fed by zone transfer. Held back
//! (`tests/lab/secondary.sh hold`), the secondary lags behind a dynamic update: the exporter
//! must see the TLSA RRset out of sync, the serials differ, and the new record not yet on
//! every server; released, everything is in sync again. Serials are compared with what
//! `kdig` says (through `secondary.sh status`).

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use mailtls_exporter::config;
use mailtls_exporter::metrics::render_report;
use mailtls_exporter::model::authoritative::RrsetSync;
use mailtls_exporter::model::report::TargetReport;
use mailtls_exporter::probe::{probe_target, AddressPolicy, ProbeContext, ProbeOptions};
use mailtls_exporter::target::NextHop;

const PRIMARY: &str = "127.53.0.1";
const SECONDARY: &str = "127.53.0.4";
/// The domain and MX host this file changes (the others of dyn.test belong to other tests).
const DOMAIN: &str = "d3.dyn.test";
const TLSA_NAME: &str = "_25._tcp.mx3.dyn.test";

/// Tests of this file that hold the secondary back run one at a time.
static SECONDARY_HELD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn script(lab: &common::Lab, name: &str, args: &[&str]) -> Result<String> {
    let out = Command::new("bash")
        .arg(common::repo().join("tests/lab").join(name))
        .arg(&lab.dir)
        .args(args)
        .output()
        .with_context(|| format!("running {name}"))?;
    ensure!(
        out.status.success(),
        "{name} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `secondary.sh status`: (primary serial, secondary serial).
fn kdig_serials(lab: &common::Lab) -> Result<(u32, u32)> {
    let out = script(lab, "secondary.sh", &["status"])?;
    let serial = |who: &str| -> Result<u32> {
        out.lines()
            .find_map(|l| l.strip_prefix(who))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("no {who} serial in {out:?}"))
    };
    Ok((serial("primary ")?, serial("secondary ")?))
}

/// Releases the secondary and removes the test record, however the test ends.
struct Restore<'a> {
    lab: &'a common::Lab,
    record: String,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        let _ = script(self.lab, "secondary.sh", &["release"]);
        let _ = script(
            self.lab,
            "dyn-update.sh",
            &[&format!("del {TLSA_NAME}. TLSA {}", self.record)],
        );
        let _ = script(self.lab, "secondary.sh", &["wait"]);
    }
}

async fn probe(ctx: &ProbeContext, policy: AddressPolicy) -> Result<TargetReport> {
    let hop = NextHop::parse(DOMAIN)?;
    let opts = ProbeOptions {
        fresh: true,
        addresses: policy,
        ..ProbeOptions::default()
    };
    ctx.dns.clear_cache();
    Ok(probe_target(ctx, DOMAIN, &hop, opts).await)
}

fn rrset<'a>(r: &'a TargetReport, rtype: &str) -> Result<&'a RrsetSync> {
    r.authoritative
        .iter()
        .find(|s| s.rtype == rtype)
        .with_context(|| format!("no {rtype} RRset in {:#?}", r.authoritative))
}

/// (address, serial) of every server of `s`, sorted by address.
fn serials(s: &RrsetSync) -> Vec<(String, Option<u32>)> {
    let mut v: Vec<_> = s
        .servers
        .iter()
        .map(|a| (a.address.to_string(), a.serial))
        .collect();
    v.sort();
    v
}

/// Probes until the resolver hands out a TLSA RRset for which `done` holds (Unbound caches
/// for 5 s and asks either server), at most 60 s.
async fn probe_until(
    ctx: &ProbeContext,
    what: &str,
    done: impl Fn(&TargetReport) -> bool,
) -> Result<TargetReport> {
    let started = Instant::now();
    loop {
        let r = probe(ctx, AddressPolicy::Any).await?;
        if done(&r) {
            return Ok(r);
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!(
                "{what}: not after 60 s; last report: {:#?}",
                r.authoritative
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn random_hex() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:064x}", now ^ (u128::from(std::process::id()) << 64))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_secondary_is_seen_lagging_and_in_sync_again_when_released() -> Result<()> {
    let _one_at_a_time = SECONDARY_HELD.lock().await;
    let lab = common::lab()?;
    let text = lab.config("upstream", "")?;
    let cfg = config::parse(&text, "authoritative.yml").map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let ctx = ProbeContext::new(&cfg)?;
    script(&lab, "secondary.sh", &["release"])?;

    // 1. In sync: both servers, equal serials (as kdig sees them), every record everywhere
    //    (once the resolver no longer hands out a record an earlier run removed: TTL 5 s).
    let r = probe_until(&ctx, "every record on every server", |r| {
        r.hosts.first().is_some_and(|h| {
            !h.tlsa_timing.on_every_server.is_empty()
                && h.tlsa_timing
                    .on_every_server
                    .iter()
                    .all(|v| *v == Some(true))
        })
    })
    .await?;
    let (p, s) = kdig_serials(&lab)?;
    ensure!(p == s, "lab not in sync at start: {p} {s}");
    for rtype in ["MX", "TLSA"] {
        let set = rrset(&r, rtype)?;
        ensure!(set.in_sync == Some(true), "{rtype}: {set:#?}");
        ensure!(set.zone.as_deref() == Some("dyn.test"), "{set:#?}");
        ensure!(
            serials(set)
                == vec![
                    (PRIMARY.to_string(), Some(p)),
                    (SECONDARY.to_string(), Some(s))
                ],
            "{rtype} serials {:?} vs kdig {p} {s}",
            serials(set)
        );
    }
    let host = r.hosts.first().context("no host")?;
    ensure!(!host.tlsa_records.is_empty(), "no TLSA records: {r:#?}");
    ensure!(
        host.tlsa_timing
            .on_every_server
            .iter()
            .all(|v| *v == Some(true))
            && host.tlsa_timing.on_every_server.len() == host.tlsa_records.len(),
        "{:?}",
        host.tlsa_timing
    );
    let (body, _) = render_report(Arc::new(r.clone()), false);
    ensure!(body.contains(&format!(
        "mailtls_authoritative_in_sync{{target=\"{DOMAIN}\",name=\"{TLSA_NAME}\",type=\"TLSA\"}} 1"
    )));
    ensure!(body.contains(&format!(
        "mailtls_authoritative_serial{{zone=\"dyn.test\",server=\"{SECONDARY}\"}} {s}"
    )));

    // 2. Hold the secondary, publish a new record on the primary.
    let record = format!("3 1 1 {}", random_hex());
    let _restore = Restore {
        lab: &lab,
        record: record.clone(),
    };
    script(&lab, "secondary.sh", &["hold"])?;
    script(
        &lab,
        "dyn-update.sh",
        &[&format!("add {TLSA_NAME}. 5 TLSA {record}")],
    )?;
    let (p2, s2) = kdig_serials(&lab)?;
    ensure!(
        p2 != s2 && s2 == s,
        "the secondary did not stay behind: {p2} {s2}"
    );
    // Until the resolver hands out the new RRset (it may ask the lagging secondary).
    let r = probe_until(&ctx, "the resolver serves the new record", |r| {
        r.hosts
            .first()
            .is_some_and(|h| h.tlsa_records.iter().any(|t| t.presentation() == record))
    })
    .await?;
    let tlsa = rrset(&r, "TLSA")?;
    ensure!(tlsa.in_sync == Some(false), "{tlsa:#?}");
    ensure!(
        serials(tlsa)
            == vec![
                (PRIMARY.to_string(), Some(p2)),
                (SECONDARY.to_string(), Some(s2))
            ],
        "serials {:?} vs kdig {p2} {s2}",
        serials(tlsa)
    );
    let lagging: Vec<String> = tlsa.lagging().map(|a| a.address.to_string()).collect();
    ensure!(lagging == [SECONDARY], "lagging: {lagging:?}");
    ensure!(
        rrset(&r, "MX")?.in_sync == Some(true),
        "the MX RRset did not change"
    );
    let host = r.hosts.first().context("no host")?;
    for (t, on_every) in host
        .tlsa_records
        .iter()
        .zip(&host.tlsa_timing.on_every_server)
    {
        let expect = if t.presentation() == record {
            Some(false)
        } else {
            Some(true)
        };
        ensure!(*on_every == expect, "{t}: {on_every:?}");
    }
    let (body, _) = render_report(Arc::new(r.clone()), false);
    ensure!(body.contains(&format!(
        "mailtls_authoritative_in_sync{{target=\"{DOMAIN}\",name=\"{TLSA_NAME}\",type=\"TLSA\"}} 0"
    )));
    let text = mailtls_exporter::text::render_text(&r, false);
    ensure!(text.contains("NOT in sync"), "{text}");
    ensure!(
        text.contains(&format!("{SECONDARY}: serial {s2}")),
        "{text}"
    );

    // 3. Released: in sync again, the new record on every server.
    script(&lab, "secondary.sh", &["release"])?;
    let (p3, s3) = kdig_serials(&lab)?;
    ensure!(p3 == s3, "not in sync after release: {p3} {s3}");
    let r = probe_until(&ctx, "the new record on every server", |r| {
        r.hosts.first().is_some_and(|h| {
            h.tlsa_records
                .iter()
                .zip(&h.tlsa_timing.on_every_server)
                .any(|(t, v)| t.presentation() == record && *v == Some(true))
        })
    })
    .await?;
    let tlsa = rrset(&r, "TLSA")?;
    ensure!(tlsa.in_sync == Some(true), "{tlsa:#?}");
    ensure!(tlsa.lagging().count() == 0, "{tlsa:#?}");
    ensure!(
        serials(tlsa)
            == vec![
                (PRIMARY.to_string(), Some(p3)),
                (SECONDARY.to_string(), Some(s3))
            ]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_refused_by_the_address_policy_asks_no_authoritative_server() -> Result<()> {
    // /probe of a target that is not configured (probe.private_addresses false): the lab's
    // servers are loopback addresses; nothing may be asked directly.
    let lab = common::lab()?;
    let text = lab.config("upstream", "")?;
    let cfg = config::parse(&text, "authoritative.yml").map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let ctx = ProbeContext::new(&cfg)?;
    let r = probe(&ctx, AddressPolicy::GlobalOnly).await?;
    ensure!(r.error.is_some(), "{r:#?}");
    ensure!(r.authoritative.is_empty(), "{:#?}", r.authoritative);
    ensure!(ctx.authoritative_queries() == 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_can_be_switched_off() -> Result<()> {
    let lab = common::lab()?;
    let text = lab.config("upstream", "")?.replacen(
        "validation: upstream\n",
        "validation: upstream\n  authoritative_check: false\n",
        1,
    );
    let cfg = config::parse(&text, "authoritative.yml").map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let ctx = ProbeContext::new(&cfg)?;
    let r = probe(&ctx, AddressPolicy::Any).await?;
    ensure!(r.authoritative.is_empty());
    ensure!(r
        .hosts
        .iter()
        .all(|h| h.tlsa_timing.on_every_server.is_empty()));
    Ok(())
}

/// The two halves of rollover readiness together, in the daemon: a staged key whose `3 1 1` is
/// on the primary but not on a held-back secondary is covered (`verified` if deployed) but
/// never safe: no first-seen time, no deploy-safe time, `mailtls_authoritative_in_sync` 0 (the
/// series `MailTLSAuthoritativeOutOfSync` fires on), however long the lag lasts. Released, the
/// record counts as published from then on: deploy-safe = first seen + 2 x TTL.
#[test]
fn a_lagging_secondary_keeps_a_staged_key_not_safe() -> Result<()> {
    const TARGET: &str = "d4.dyn.test";
    const OWNER: &str = "_25._tcp.mx4.dyn.test.";
    let _one_at_a_time = SECONDARY_HELD.blocking_lock();
    let lab = common::lab()?;
    script(&lab, "secondary.sh", &["release"])?;
    let dir = common::tempdir()?;
    let alt = lab.dir.join("pki/mx4.dyn.test.alt.pem");
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-pubkey", "-in"])
        .arg(&alt)
        .output()?;
    ensure!(out.status.success(), "openssl: {out:?}");
    let key_file = common::write(dir.path(), "next.pub", &String::from_utf8(out.stdout)?)?;
    let key = key_file.display().to_string();
    let der =
        <rustls_pki_types::CertificateDer as rustls_pki_types::pem::PemObject>::pem_file_iter(
            &alt,
        )?
        .next()
        .context("no certificate")??;
    let parts = mailtls_exporter::cert::parts(der.as_ref()).context("certificate parses")?;
    let record = format!(
        "3 1 1 {}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(parts.spki))
    );
    let text = lab.config(
        "upstream",
        &format!(
            "interval: 2s\nstate_file: {}\ntargets:\n  - domain: {TARGET}\n    staged:\n      - public_key_file: {key}\n",
            dir.path().join("state.json").display()
        ),
    )?;
    let cfg = common::write(dir.path(), "c.yml", &text)?;
    let d = common::Daemon::start(&cfg, &[])?;
    let staged = |m: &str, status: &str| {
        common::sample(
            m,
            "mailtls_staged_dane_status",
            &[("staged", key.as_str()), ("status", status)],
        ) == Some(1.0)
    };
    let safe = |m: &str| {
        common::sample(
            m,
            "mailtls_staged_deploy_safe_timestamp_seconds",
            &[("staged", key.as_str())],
        )
    };
    let first_seen = |m: &str| {
        common::sample(
            m,
            "mailtls_tlsa_record_first_seen_timestamp_seconds",
            &[("target", TARGET), ("record", record.as_str())],
        )
    };
    let tlsa_in_sync = |m: &str| {
        common::sample(
            m,
            "mailtls_authoritative_in_sync",
            &[("target", TARGET), ("type", "TLSA")],
        )
    };
    d.wait_metrics(Duration::from_secs(30), |m| staged(m, "failed"))?;

    let _restore = RestoreHost {
        lab: &lab,
        owner: OWNER,
        record: record.clone(),
    };
    script(&lab, "secondary.sh", &["hold"])?;
    script(
        &lab,
        "dyn-update.sh",
        &[&format!("add {OWNER} 5 TLSA {record}")],
    )?;
    let m = d.wait_metrics(Duration::from_secs(60), |m| {
        staged(m, "verified") && tlsa_in_sync(m) == Some(0.0)
    })?;
    ensure!(safe(&m).is_none() && first_seen(&m).is_none(), "{m}");
    // Longer than first seen + 2 x TTL would be had the record counted as published.
    std::thread::sleep(Duration::from_secs(14));
    let m = d.get("/metrics")?.body;
    ensure!(staged(&m, "verified"), "{m}");
    ensure!(tlsa_in_sync(&m) == Some(0.0), "still lagging: {m}");
    ensure!(
        safe(&m).is_none() && first_seen(&m).is_none(),
        "a record missing on the secondary counted as published: {m}"
    );

    let released = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs_f64();
    script(&lab, "secondary.sh", &["release"])?;
    let m = d.wait_metrics(Duration::from_secs(60), |m| safe(m).is_some())?;
    let (seen, safe_from) = (
        first_seen(&m).context("first seen")?,
        safe(&m).context("deploy safe")?,
    );
    ensure!(
        seen >= released - 1.0,
        "first seen {seen} before the release at {released}"
    );
    ensure!(
        (safe_from - (seen + 10.0)).abs() < 0.01,
        "deploy-safe {safe_from} is not first seen {seen} + 2 x 5 s"
    );
    ensure!(tlsa_in_sync(&m) == Some(1.0), "{m}");
    Ok(())
}

/// Releases the secondary and removes the record a test added.
struct RestoreHost<'a> {
    lab: &'a common::Lab,
    owner: &'static str,
    record: String,
}

impl Drop for RestoreHost<'_> {
    fn drop(&mut self) {
        let _ = script(self.lab, "secondary.sh", &["release"]);
        let _ = script(
            self.lab,
            "dyn-update.sh",
            &[&format!("del {} TLSA {}", self.owner, self.record)],
        );
        let _ = script(self.lab, "secondary.sh", &["wait"]);
    }
}
