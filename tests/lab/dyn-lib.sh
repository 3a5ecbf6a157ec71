# shellcheck shell=bash
# The dynamic part of the lab (built by default; LAB_DYNAMIC=0 tests/lab/up.sh LABDIR leaves it
# out): a zone dyn.test.
# that knotd signs itself (automatic signing, KASP policy "dyn", manual key management, NSEC3)
# and that accepts dynamic updates (RFC 2136) signed with a TSIG key, so that MX sets and TLSA
# records can change while the lab runs. Sourced by up.sh, which defines LAB, PKI, TTL, AUTH,
# SERIAL_DNS and the helpers used below (mk_leaf, chain_full, tlsa_x11, add_addr, soa, tlsa, die).
# With LAB_DYNAMIC=0 nothing here runs and the lab is exactly the static one.
#
# What it adds (see README.md, "The dynamic zone"):
#   dyn.test.          delegated from test. with a DS (test. is re-signed by ldns as usual)
#   dN.dyn.test        MX 10 mxN.dyn.test            (N = 1..4)
#   mxN.dyn.test       A 127.25.0.(100+N), TLSA 3 1 1 (its key) + 2 1 1 (issuing CA)
#   listeners          127.25.0.101-104, one smtpd each, serving LABDIR/pki/mxN.dyn.test.chain.pem
#   LABDIR/pki/mxN.dyn.test.alt.*   a second leaf (other key, same name) to swap in
#   LABDIR/pki/mxN.dyn.test.newca.* a leaf for the same name from the unrelated CA
#                                   (other-issuing-ca; chain = key + leaf + that CA)
#   LABDIR/pki/mxN.dyn.test.orig.chain.pem  a copy of the served chain, to restore it
#   LABDIR/dyn/        tsig.key (knsupdate -k format), listeners.tsv, the zone source
# Updates: tests/lab/dyn-update.sh LABDIR 'add RR' 'del RR' ...

DYN_ZONE=dyn.test.
DYN_N=4
DYN_DIR=$LAB/dyn

dyn_addr() { echo "127.25.0.$((100 + $1))"; }

# PKI, listeners file and the unsigned zone source
dyn_prepare() {
    rm -rf "$DYN_DIR"
    mkdir -p "$DYN_DIR"
    printf 'address\thost\tchain\tstarttls\n' >"$DYN_DIR/listeners.tsv"
    local n host
    {
        soa "$DYN_ZONE"
        for n in $(seq 1 "$DYN_N"); do
            host=mx$n.dyn.test
            mk_leaf "$host" "$host"; chain_full "$host"
            mk_leaf "$host.alt" "$host"; chain_full "$host.alt"
            mk_leaf "$host.newca" "$host" other-issuing-ca
            cat "$PKI/$host.newca.key" "$PKI/$host.newca.pem" "$PKI/other-issuing-ca.pem" >"$PKI/$host.newca.chain.pem"
            cp "$PKI/$host.chain.pem" "$PKI/$host.orig.chain.pem"
            printf '%s\t%s\t%s\t%s\n' "$(dyn_addr "$n")" "$host" "$PKI/$host.chain.pem" yes >>"$DYN_DIR/listeners.tsv"
            echo "d$n IN MX 10 mx$n"
            echo "mx$n IN A $(dyn_addr "$n")"
            tlsa "mx$n" "3 1 1 $(tlsa_x11 "$host")"
            tlsa "mx$n" "2 1 1 $(tlsa_x11 issuing-ca)"
        done
    } >"$DYN_DIR/dyn.test.zone"
    # TSIG key: knsupdate/kdig -k file (alg:name:secret) and the knot.conf key block
    local line
    line=$(keymgr -t dyn-update hmac-sha256 | sed -n 's/^# //p')
    [ -n "$line" ] || die "keymgr -t failed"
    echo "$line" >"$DYN_DIR/tsig.key"
    chmod 600 "$DYN_DIR/tsig.key"
}

# knot.conf fragments: the policy, key and acl sections, and the zone entry (a list item of zone:)
dyn_knot_sections() {
    cat <<EOF
key:
  - id: dyn-update
    algorithm: hmac-sha256
    secret: $(cut -d: -f3 "$DYN_DIR/tsig.key")
acl:
  - id: dyn-update
    address: 127.0.0.0/8
    key: dyn-update
    action: update
policy:
  - id: dyn
    algorithm: ecdsap256sha256
    manual: on
    nsec3: on
    nsec3-iterations: 0
    nsec3-salt-length: 0
    dnskey-ttl: $TTL
    zone-max-ttl: $TTL
    rrsig-lifetime: 30d
    rrsig-refresh: 7d
    propagation-delay: 0
EOF
}
dyn_knot_zone() {
    cat <<EOF
  - domain: "$DYN_ZONE"
    storage: "$DYN_DIR"
    file: "dyn.test.zone"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: changes
    dnssec-signing: on
    dnssec-policy: dyn
    acl: dyn-update
EOF
}

# KSK + ZSK in knotd's KASP database (LABDIR/knot/db/keys) before knotd starts; prints the DS
# (SHA-256) for test.
dyn_keys() {
    mkdir -p "$LAB/knot/db"
    {
        printf 'database:\n    storage: "%s"\n' "$LAB/knot/db"
        dyn_knot_sections
        echo "zone:"
        dyn_knot_zone
    } >"$DYN_DIR/keymgr.conf"
    keymgr -c "$DYN_DIR/keymgr.conf" "$DYN_ZONE" generate algorithm=ecdsap256sha256 ksk=yes zsk=no >/dev/null \
        || die "keymgr: KSK for $DYN_ZONE"
    keymgr -c "$DYN_DIR/keymgr.conf" "$DYN_ZONE" generate algorithm=ecdsap256sha256 ksk=no zsk=yes >/dev/null \
        || die "keymgr: ZSK for $DYN_ZONE"
    keymgr -c "$DYN_DIR/keymgr.conf" "$DYN_ZONE" ds \
        | awk -v t="$TTL" 'BEGIN{OFS="\t"} $2=="DS" && $5==2 {print $1, t, "IN", "DS", $3, $4, $5, $6}'
    rm -f "$DYN_DIR/keymgr.conf"
}

# checks after start: signed and secure, updates accepted and signed, listeners up
dyn_checks() {
    check "d1.dyn.test MX is secure via $VAL" "has '$AD' @$VAL +dnssec d1.dyn.test MX"
    check "TLSA _25._tcp.mx1.dyn.test is secure via $VAL" "has '$AD' @$VAL +dnssec _25._tcp.mx1.dyn.test TLSA"
    check "dynamic update of dyn.test is accepted" \
        "'$HERE/dyn-update.sh' '$LAB' 'add _lab-check.dyn.test. $TTL TXT up' >/dev/null"
    check "the updated RRset is signed by knotd" "has 'RRSIG.*TXT' @$AUTH +dnssec _lab-check.dyn.test TXT"
    check "dynamic delete in dyn.test is accepted" \
        "'$HERE/dyn-update.sh' '$LAB' 'del _lab-check.dyn.test. TXT' >/dev/null"
    local addr host chain starttls
    while IFS=$'\t' read -r addr host chain starttls; do
        [ "$addr" = address ] && continue
        check "dyn listener $addr ($host) answers 220" "wait_smtp $addr"
    done <"$DYN_DIR/listeners.tsv"
}
