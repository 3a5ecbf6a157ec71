use super::*;
use crate::model::fixture::{host, report};
use crate::model::tlsa::Tlsa;

const OWNER: &str = "_25._tcp.mx1.example.test";

fn rec(b: u8) -> Tlsa {
    Tlsa {
        usage: 3,
        selector: 1,
        matching: 1,
        data: vec![b; 32],
    }
}

fn dane_host(records: Vec<Tlsa>, dnssec: Option<Dnssec>) -> HostReport {
    let mut h = host("mx1.example.test", 10, Vec::new());
    h.tlsa_base = Some("mx1.example.test".into());
    h.tlsa_dnssec = dnssec;
    h.dane_applies = dnssec == Some(Dnssec::Secure) && !records.is_empty();
    h.tlsa_records = records;
    h
}

#[test]
fn first_seen_starts_once_and_a_vanished_record_is_forgotten() {
    // RFC 7671 §8.1 counts from publication; re-publishing restarts the clock.
    let mut s = FirstSeen::default();
    let mut changed = false;
    let h = dane_host(vec![rec(1)], Some(Dnssec::Secure));
    assert_eq!(s.observe(OWNER, &h, 100.0, &mut changed), vec![Some(100.0)]);
    assert!(changed);
    changed = false;
    let h2 = dane_host(vec![rec(1), rec(2)], Some(Dnssec::Secure));
    assert_eq!(
        s.observe(OWNER, &h2, 200.0, &mut changed),
        vec![Some(100.0), Some(200.0)]
    );
    assert!(changed);
    // A failed lookup changes nothing: the records did not vanish, we could not see.
    changed = false;
    let failed = dane_host(vec![], Some(Dnssec::Error));
    assert_eq!(
        s.observe(OWNER, &failed, 300.0, &mut changed),
        Vec::<Option<f64>>::new()
    );
    assert!(!changed);
    assert_eq!(s.records.len(), 2);
    // rec(1) gone from the secure RRset: forgotten; back later: a new clock.
    let h3 = dane_host(vec![rec(2)], Some(Dnssec::Secure));
    assert_eq!(
        s.observe(OWNER, &h3, 400.0, &mut changed),
        vec![Some(200.0)]
    );
    assert!(changed);
    assert_eq!(
        s.observe(OWNER, &h2, 500.0, &mut changed),
        vec![Some(500.0), Some(200.0)]
    );
    // An insecure RRset publishes nothing.
    let insecure = dane_host(vec![rec(2)], Some(Dnssec::Insecure));
    assert_eq!(s.observe(OWNER, &insecure, 600.0, &mut changed), vec![None]);
    assert!(s.records.is_empty());
}

#[test]
fn a_record_missing_on_some_authoritative_server_is_not_published() {
    let mut s = FirstSeen::default();
    let mut changed = false;
    let mut h = dane_host(vec![rec(1), rec(2)], Some(Dnssec::Secure));
    h.tlsa_timing.on_every_server = vec![Some(true), Some(false)];
    assert_eq!(
        s.observe(OWNER, &h, 100.0, &mut changed),
        vec![Some(100.0), None]
    );
    h.tlsa_timing.on_every_server = vec![Some(true), Some(true)];
    assert_eq!(
        s.observe(OWNER, &h, 150.0, &mut changed),
        vec![Some(100.0), Some(150.0)],
        "first seen counts from the moment the last server has it"
    );
}

#[test]
fn the_store_is_bounded_and_stale_records_are_pruned() {
    let mut s = FirstSeen::default();
    for i in 0..MAX_FIRST_SEEN {
        s.records.insert(
            (format!("_25._tcp.other{i}.example.test"), "3 1 1 00".into()),
            Seen {
                first_seen: 1.0,
                last_seen: 1.0,
            },
        );
    }
    let mut changed = false;
    let h = dane_host(vec![rec(1)], Some(Dnssec::Secure));
    assert_eq!(s.observe(OWNER, &h, 100.0, &mut changed), vec![None]);
    assert_eq!(s.records.len(), MAX_FIRST_SEEN);
    s.prune(1.0 + FORGET_AFTER_SECONDS, &mut changed);
    assert!(s.records.is_empty() && changed);
}

#[test]
fn state_file_round_trips_atomically_and_a_corrupt_one_starts_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.json");
    let r1 = Rollover::open(Some(&path), true);
    let mut report1 = report(vec![dane_host(vec![rec(1)], Some(Dnssec::Secure))]);
    r1.apply(&[], &mut report1);
    let seen = report1.hosts[0].tlsa_timing.first_seen.clone();
    assert!(seen[0].is_some());
    assert!(path.is_file());
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    assert_eq!(names.len(), 1, "no temporary file left behind: {names:?}");

    // A restart keeps the clock.
    let r2 = Rollover::open(Some(&path), true);
    let mut report2 = report(vec![dane_host(vec![rec(1)], Some(Dnssec::Secure))]);
    r2.apply(&[], &mut report2);
    assert_eq!(report2.hosts[0].tlsa_timing.first_seen, seen);

    // Read-only (check): reads, never writes.
    std::fs::write(&path, b"{ not json").expect("write");
    let r3 = Rollover::open(Some(&path), false);
    let mut report3 = report(vec![dane_host(vec![rec(2)], Some(Dnssec::Secure))]);
    r3.apply(&[], &mut report3);
    assert!(report3.hosts[0].tlsa_timing.first_seen[0].is_some());
    assert_eq!(std::fs::read(&path).expect("read"), b"{ not json");

    // Unknown version or impossible times are not taken.
    assert!(FirstSeen::from_json(br#"{"version":9,"records":[]}"#, 10.0).is_err());
    let s = FirstSeen::from_json(
        br#"{"version":1,"records":[{"owner":"a","record":"3 1 1 00","first_seen":1e12},{"owner":"b","record":"3 1 1 00","first_seen":5}]}"#,
        10.0,
    )
    .expect("parse");
    assert_eq!(s.records.len(), 1);
}

#[test]
fn staged_files_are_reread_when_they_change_and_errors_are_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("next.pem");
    let staged = Staged {
        name: path.display().to_string(),
        path: path.clone(),
        kind: StagedKind::PublicKey,
        mx: None,
    };
    let rollover = Rollover::open(None, false);
    let mut r = report(vec![dane_host(vec![rec(1)], Some(Dnssec::Secure))]);
    rollover.apply(std::slice::from_ref(&staged), &mut r);
    assert_eq!(
        r.staged[0].error.as_ref().map(|e| e.reason),
        Some("missing")
    );

    let key = rcgen::KeyPair::generate().expect("key");
    std::fs::write(&path, key.public_key_pem()).expect("write");
    rollover.apply(std::slice::from_ref(&staged), &mut r);
    assert!(r.staged[0].error.is_none());
    assert_eq!(r.staged[0].hosts.len(), 1);

    // Renewed in place with a private key in it: refused, nothing of it kept.
    std::fs::write(
        &path,
        format!("{}{}", key.public_key_pem(), key.serialize_pem()),
    )
    .expect("write");
    rollover.apply(std::slice::from_ref(&staged), &mut r);
    assert_eq!(
        r.staged[0].error.as_ref().map(|e| e.reason),
        Some("private_key")
    );
    assert!(r.staged[0].hosts.is_empty());

    let big = vec![b'a'; MAX_STAGED_FILE_BYTES as usize + 1];
    std::fs::write(&path, big).expect("write");
    rollover.apply(std::slice::from_ref(&staged), &mut r);
    assert_eq!(
        r.staged[0].error.as_ref().map(|e| e.reason),
        Some("too_large")
    );
}

#[test]
fn original_ttl_comes_from_the_rrsig_when_visible() {
    use crate::model::dns::Answer;
    let answer = |original_ttl| {
        Arc::new(Answer {
            name: OWNER.into(),
            rtype: "TLSA".into(),
            outcome: Outcome::Records,
            dnssec: Dnssec::Secure,
            cnames: Vec::new(),
            data: Data::Tlsa(vec![rec(1)]),
            sig_expiry: None,
            reason: None,
            ttl: 3,
            original_ttl,
        })
    };
    let h = dane_host(vec![rec(1)], Some(Dnssec::Secure));
    assert_eq!(original_ttl(&[answer(Some(5))], &h), Some(5));
    assert_eq!(original_ttl(&[answer(None)], &h), Some(3));
    assert_eq!(original_ttl(&[], &h), None);
}

#[test]
fn an_owners_records_change_alone_whatever_names_sort_beside_it() {
    let mut s = FirstSeen::default();
    let mut changed = false;
    let owners = [
        "_25._tcp.mx1.t",
        "_25._tcp.mx10.t",
        "_25._tcp.mx1.t.x",
        "_25._tcp.mx",
    ];
    for o in owners {
        s.observe(
            o,
            &dane_host(vec![rec(1)], Some(Dnssec::Secure)),
            10.0,
            &mut changed,
        );
    }
    assert_eq!(s.records.len(), 4);
    changed = false;
    // mx1.t rolls over to rec(2): its rec(1) goes, every other owner keeps its record.
    s.observe(
        owners[0],
        &dane_host(vec![rec(2)], Some(Dnssec::Secure)),
        20.0,
        &mut changed,
    );
    assert!(changed);
    let mut left: Vec<(&str, u8)> = s
        .records
        .keys()
        .map(|(o, r)| (o.as_str(), if r.ends_with("0202") { 2 } else { 1 }))
        .collect();
    left.sort_unstable();
    let mut want = vec![
        (owners[0], 2),
        (owners[1], 1),
        (owners[2], 1),
        (owners[3], 1),
    ];
    want.sort_unstable();
    assert_eq!(left, want);
    // An insecure RRset at one owner forgets that owner's records only.
    s.observe(
        owners[1],
        &dane_host(vec![rec(1)], Some(Dnssec::Insecure)),
        30.0,
        &mut changed,
    );
    assert_eq!(s.records.len(), 3);
    assert!(s.records.keys().all(|(o, _)| o != owners[1]));
}

#[test]
fn new_records_reach_the_state_file_at_most_once_a_second_and_the_rest_when_it_goes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.json");
    let r = Rollover::open(Some(&path), true);
    let started = std::time::Instant::now();
    let mut a = report(vec![dane_host(vec![rec(1)], Some(Dnssec::Secure))]);
    r.apply(&[], &mut a);
    let written = std::fs::read_to_string(&path).expect("written at the first change");
    let mut h = dane_host(vec![rec(2)], Some(Dnssec::Secure));
    h.tlsa_base = Some("mx2.example.test".into());
    let mut b = report(vec![h]);
    r.apply(&[], &mut b);
    assert!(b.hosts[0].tlsa_timing.first_seen[0].is_some());
    if started.elapsed().as_secs_f64() < SAVE_EVERY_SECONDS * 0.5 {
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            written,
            "a second change within a second is not written yet"
        );
    }
    drop(r);
    let last = std::fs::read_to_string(&path).expect("read");
    assert!(last.contains("mx2.example.test"), "{last}");
}
