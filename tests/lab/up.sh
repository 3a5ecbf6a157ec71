#!/usr/bin/env bash
# Build and start the mailtls_exporter test lab: a signed DNS hierarchy served by knotd, a
# validating and a non-validating Unbound, and one Postfix instance with one smtpd listener per
# MX address. Everything binds to 127.0.0.0/8 only. See README.md next to this file.
#
# usage: tests/lab/up.sh LABDIR
#        LAB_DYNAMIC=0 tests/lab/up.sh LABDIR   (without the Knot-signed, updatable zone dyn.test.
#                                                and its secondary knotd; see dyn-lib.sh)
#
# Idempotent: stops whatever a previous run in the same LABDIR left running (down.sh), wipes the
# generated material and rebuilds it from scratch (fresh keys, certificates and signatures).
# Needs root (loopback addresses, port 53 and 25, Postfix) and the Debian packages knot
# knot-dnsutils unbound postfix ldnsutils openssl (plus iproute2 and util-linux).
set -euo pipefail

usage() { echo "usage: $0 LABDIR" >&2; exit 2; }
[ $# -eq 1 ] || usage
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$1"
LAB=$(cd "$1" && pwd)

START_NS=$(date +%s%N)
DYN=${LAB_DYNAMIC:-1}
die() { echo "up.sh: ERROR: $*" >&2; exit 1; }
log() { echo "up.sh: [$(( ($(date +%s%N) - START_NS) / 1000000 )) ms] $*" >&2; }

[ "$(id -u)" = 0 ] || die "must run as root (loopback addresses, ports 25/53, postfix)"
DYN_CMDS=""; [ "$DYN" = 1 ] && DYN_CMDS="keymgr knsupdate"
for cmd in $DYN_CMDS knotd kdig unbound postfix posttls-finger ldns-keygen ldns-signzone ldns-key2ds openssl ip script unshare nginx curl; do
    command -v "$cmd" >/dev/null 2>&1 || die "missing command '$cmd' (install knot knot-dnsutils unbound postfix ldnsutils openssl nginx curl)"
done
# shellcheck source=tests/lab/sts-lib.sh
. "$HERE/sts-lib.sh"   # MTA-STS / TLSRPT: zone sts.test, nginx policy hosts

# ---------------------------------------------------------------------------------------------
# 0. stop a previous run, start from a clean directory
# ---------------------------------------------------------------------------------------------
"$HERE/down.sh" "$LAB" >/dev/null || die "down.sh failed for $LAB"
rm -rf "$LAB/pki" "$LAB/dns" "$LAB/knot" "$LAB/unbound-val" "$LAB/unbound-plain" "$LAB/postfix" \
       "$LAB/postfix-spool" "$LAB/postfix-data" \
       "$LAB/log" "$LAB/run" "$LAB/lab.env" "$LAB/resolv.conf" "$LAB/listeners.tsv" "$LAB/dyn"
mkdir -p "$LAB/pki" "$LAB/dns/keys" "$LAB/dns/zones" "$LAB/dns/signed" "$LAB/knot" \
         "$LAB/unbound-val" "$LAB/unbound-plain" "$LAB/postfix" "$LAB/log" "$LAB/run"

AUTH=127.53.0.1
VAL=127.53.0.2
PLAIN=127.53.0.3
TTL=5

# nothing else may hold the lab's ports (another lab in another LABDIR, a system resolver or MTA
# bound to 0.0.0.0)
busy=$(ss -Hlnptu 2>/dev/null | awk '$5 ~ /^(127\.53\.0\.[0-9]+|0\.0\.0\.0|\*):53$/ || $5 ~ /^(127\.25\.0\.[0-9]+|0\.0\.0\.0|\*):25$/ || $5 ~ /^(127\.43\.0\.1|0\.0\.0\.0|\*):443$/' || true)
[ -z "$busy" ] || die "lab ports are in use (another lab running? stop it with its down.sh):
$(head -5 <<<"$busy")
($(wc -l <<<"$busy") sockets in all; see: ss -lnptu)"

# ---------------------------------------------------------------------------------------------
# 1. loopback addresses (127/8 is routed to lo anyway; explicit addresses make `ip addr` show
#    the plan and let down.sh clean up). Only addresses that were missing are recorded.
# ---------------------------------------------------------------------------------------------
: >"$LAB/run/addrs"
add_addr() {
    local have; have=$(ip -4 -o addr show dev lo)
    if ! grep -qF " $1/" <<<"$have"; then
        ip addr add "$1/32" dev lo
        echo "$1" >>"$LAB/run/addrs"
    fi
}
for a in $AUTH $VAL $PLAIN; do add_addr "$a"; done
[ "$DYN" = 1 ] && add_addr 127.53.0.4   # the secondary knotd (dyn-lib.sh)

# ---------------------------------------------------------------------------------------------
# 2. PKI
# ---------------------------------------------------------------------------------------------
PKI=$LAB/pki
cat >"$PKI/openssl.cnf" <<EOF
SAN = placeholder.invalid
dir = $PKI

[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder

[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[v3_ica]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[v3_leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:\${ENV::SAN}

[ca]
default_ca = ca_backdate
[ca_backdate]
database = \$dir/ca-db/index.txt
new_certs_dir = \$dir/ca-db
serial = \$dir/ca-db/serial
default_md = sha256
policy = pol_any
unique_subject = no
copy_extensions = none
email_in_dn = no
[pol_any]
commonName = supplied
EOF
mkdir -p "$PKI/ca-db"; : >"$PKI/ca-db/index.txt"; echo 1000 >"$PKI/ca-db/serial"
OSSL_CNF=$PKI/openssl.cnf
SERIAL=$(( $(date +%s) % 1000000 * 100 ))
next_serial() { SERIAL=$((SERIAL + 1)); }

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# self-signed CA: name, CN
mk_root() {
    newkey "$PKI/$1.key"
    openssl req -config "$OSSL_CNF" -new -x509 -key "$PKI/$1.key" -subj "/O=mailtls lab/CN=$2" \
        -days 3650 -sha256 -extensions v3_ca -out "$PKI/$1.pem"
}
# CA-signed cert (new key unless NAME.key exists): name, CN, SAN(or -), issuer name, extension section, days
mk_signed() {
    local name=$1 cn=$2 san=$3 issuer=$4 ext=$5 days=$6
    next_serial
    SAN=$san openssl req -config "$OSSL_CNF" -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$PKI/$name.key" -CA "$PKI/$issuer.pem" -CAkey "$PKI/$issuer.key" -set_serial "$SERIAL" \
        -subj "/O=mailtls lab/CN=$cn" -days "$days" -sha256 -extensions "$ext" -out "$PKI/$name.pem" 2>/dev/null
}
# leaf for an MX host: name(file), SAN name, [issuer]
mk_leaf() { mk_signed "$1" "$2" "$2" "${3:-issuing-ca}" v3_leaf 365; }
# leaf with notBefore/notAfter in the past, via `openssl ca -startdate/-enddate`
mk_expired_leaf() {
    local name=$1 san=$2
    newkey "$PKI/$name.key"
    openssl req -config "$OSSL_CNF" -new -key "$PKI/$name.key" -subj "/O=mailtls lab/CN=$san" -out "$PKI/$name.csr"
    SAN=$san openssl ca -batch -config "$OSSL_CNF" -cert "$PKI/issuing-ca.pem" -keyfile "$PKI/issuing-ca.key" \
        -startdate 20240101000000Z -enddate 20250101000000Z -extfile "$OSSL_CNF" -extensions v3_leaf \
        -notext -in "$PKI/$name.csr" -out "$PKI/$name.pem" 2>/dev/null
    rm -f "$PKI/$name.csr"
}
# Postfix chain files: key + leaf + issuing CA (full) or key + leaf (CA missing)
chain_full() { cat "$PKI/$1.key" "$PKI/$1.pem" "$PKI/issuing-ca.pem" >"$PKI/$1.chain.pem"; }
chain_leafonly() { cat "$PKI/$1.key" "$PKI/$1.pem" >"$PKI/$1.chain.pem"; }

# TLSA association data (lower-case hex)
spki_der() { openssl x509 -in "$1" -noout -pubkey | openssl pkey -pubin -outform DER; }
hexdump_() { od -An -v -tx1 | tr -d ' \n'; }
tlsa_x11() { spki_der "$PKI/$1.pem" | sha256sum | cut -d' ' -f1; }          # selector 1, SHA-256
tlsa_x12() { spki_der "$PKI/$1.pem" | sha512sum | cut -d' ' -f1; }          # selector 1, SHA-512
tlsa_x10() { spki_der "$PKI/$1.pem" | hexdump_; }                            # selector 1, full
tlsa_x01() { openssl x509 -in "$PKI/$1.pem" -outform DER | sha256sum | cut -d' ' -f1; }  # selector 0, SHA-256

log "PKI"
mk_root root-ca "mailtls lab root CA"
mk_root other-ca "mailtls lab unrelated CA"
mk_signed issuing-ca "mailtls lab issuing CA" - root-ca v3_ica 1825
mk_signed other-issuing-ca "mailtls lab unrelated issuing CA" - other-ca v3_ica 1825
cat "$PKI/issuing-ca.pem" "$PKI/root-ca.pem" >"$PKI/ca-chain.pem"
mk_leaf old-key "old-key.dane.test"      # only used for stale TLSA digests
mk_leaf next-key "next-key.dane.test"    # only used for the "next key" rollover record

# ---------------------------------------------------------------------------------------------
# 3. listeners: address, host name (myhostname), chain file, starttls(yes/no)
# ---------------------------------------------------------------------------------------------
LISTENERS=$LAB/listeners.tsv
printf 'address\thost\tchain\tstarttls\n' >"$LISTENERS"
listener() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$PKI/$3.chain.pem" "${4:-yes}" >>"$LISTENERS"; }

# standard host: leaf for HOST (file name = host), full chain, listener at ADDR
std_host() { mk_leaf "$2" "$2"; chain_full "$2"; listener "$1" "$2" "$2" "${3:-yes}"; }

# ---------------------------------------------------------------------------------------------
# 4. zone contents
# ---------------------------------------------------------------------------------------------
Z=$LAB/dns/zones
SERIAL_DNS=$(date +%s)
soa() {  # zone apex records
    printf '$ORIGIN %s\n$TTL %s\n' "$1" "$TTL"
    printf '@ IN SOA ns.test. hostmaster.test. %s 3600 600 86400 %s\n' "$SERIAL_DNS" "$TTL"
    printf '@ IN NS ns.test.\n'
}
tlsa() { echo "_25._tcp.$1 IN TLSA $2"; }   # relative owner, record data

# --- good.test: the ordinary, fully working domain (foundation tests) ---
std_host 127.25.0.1 mx1.good.test
std_host 127.25.0.2 mx2.good.test
std_host 127.25.0.3 mx1.nostarttls.good.test no
std_host 127.25.0.25 mx15.good.test          # CNAME target of scenario 15
mk_leaf unrelated-name unrelated.good.test   # leaf whose name matches no MX (scenarios 6, 7)
# submission ports (RFC 8314): sub.good.test at 127.25.0.5 speaks implicit TLS on 465 and STARTTLS
# on 587, sub2.good.test at 127.25.0.6 implicit TLS on 465 under a stale TLSA record. Their TLSA
# records are at _465._tcp / _587._tcp only, so a client that looked at _25._tcp would find none.
# Not in listeners.tsv (port 25 only); the smtpd lines are written with master.cf below.
SUBMISSION="127.25.0.5 127.25.0.6"
mk_leaf sub.good.test sub.good.test; chain_full sub.good.test
mk_leaf sub2.good.test sub2.good.test; chain_full sub2.good.test
{
    soa good.test.
    echo "@ IN MX 10 mx1"
    echo "@ IN MX 20 mx2"
    echo "mx1 IN A 127.25.0.1"
    echo "mx2 IN A 127.25.0.2"
    tlsa mx1 "3 1 1 $(tlsa_x11 mx1.good.test)"
    tlsa mx1 "2 1 1 $(tlsa_x11 issuing-ca)"
    tlsa mx2 "3 1 1 $(tlsa_x11 mx2.good.test)"
    tlsa mx2 "2 1 1 $(tlsa_x11 issuing-ca)"
    echo "; a domain whose only MX offers no STARTTLS; no TLSA"
    echo "nostarttls IN MX 10 mx1.nostarttls"
    echo "mx1.nostarttls IN A 127.25.0.3"
    echo "; CNAME target for s15.dane.test"
    echo "mx15 IN A 127.25.0.25"
    tlsa mx15 "3 1 1 $(tlsa_x11 mx15.good.test)"
    tlsa mx15 "2 1 1 $(tlsa_x11 issuing-ca)"
    echo "; submission hosts (implicit TLS on 465, STARTTLS on 587)"
    echo "sub IN A 127.25.0.5"
    echo "_465._tcp.sub IN TLSA 3 1 1 $(tlsa_x11 sub.good.test)"
    echo "_465._tcp.sub IN TLSA 2 1 1 $(tlsa_x11 issuing-ca)"
    echo "_587._tcp.sub IN TLSA 3 1 1 $(tlsa_x11 sub.good.test)"
    echo "sub2 IN A 127.25.0.6"
    echo "_465._tcp.sub2 IN TLSA 3 1 1 $(tlsa_x11 old-key)"
} >"$Z/good.test.zone"

# --- dane.test: the DANE scenarios sNN.dane.test, MX host mx1.sNN.dane.test at 127.25.0.(10+NN) ---
D=$Z/dane.test.zone
soa dane.test. >"$D"
mx1() {  # scenario number -> common records: MX and A
    local n=$1 s; s=$(printf 's%02d' "$1")
    echo "$s IN MX 10 mx1.$s" >>"$D"
    echo "mx1.$s IN A 127.25.0.$((10 + n))" >>"$D"
}
h() { printf 'mx1.s%02d.dane.test' "$1"; }
a() { echo "127.25.0.$((10 + $1))"; }

# 1 good: 3 1 1 leaf + 2 1 1 issuing CA, full chain
std_host "$(a 1)" "$(h 1)"; mx1 1
{ tlsa mx1.s01 "3 1 1 $(tlsa_x11 "$(h 1)")"; tlsa mx1.s01 "2 1 1 $(tlsa_x11 issuing-ca)"; } >>"$D"
# 2 stale 3 1 1 (old key) + matching 2 1 1
std_host "$(a 2)" "$(h 2)"; mx1 2
{ tlsa mx1.s02 "3 1 1 $(tlsa_x11 old-key)"; tlsa mx1.s02 "2 1 1 $(tlsa_x11 issuing-ca)"; } >>"$D"
# 3 both stale: old key 3 1 1 + unrelated CA 2 1 1
std_host "$(a 3)" "$(h 3)"; mx1 3
{ tlsa mx1.s03 "3 1 1 $(tlsa_x11 old-key)"; tlsa mx1.s03 "2 1 1 $(tlsa_x11 other-issuing-ca)"; } >>"$D"
# 4 only 2 1 1, server sends the leaf only
mk_leaf "$(h 4)" "$(h 4)"; chain_leafonly "$(h 4)"; listener "$(a 4)" "$(h 4)" "$(h 4)"; mx1 4
tlsa mx1.s04 "2 1 1 $(tlsa_x11 issuing-ca)" >>"$D"
# 5 expired leaf under 3 1 1
mk_expired_leaf "$(h 5)" "$(h 5)"; chain_full "$(h 5)"; listener "$(a 5)" "$(h 5)" "$(h 5)"; mx1 5
tlsa mx1.s05 "3 1 1 $(tlsa_x11 "$(h 5)")" >>"$D"
# 6 name mismatch under 2 1 1 only
cat "$PKI/unrelated-name.key" "$PKI/unrelated-name.pem" "$PKI/issuing-ca.pem" >"$PKI/$(h 6).chain.pem"
listener "$(a 6)" "$(h 6)" "$(h 6)"; mx1 6
tlsa mx1.s06 "2 1 1 $(tlsa_x11 issuing-ca)" >>"$D"
# 7 name mismatch under 3 1 1
cp "$PKI/$(h 6).chain.pem" "$PKI/$(h 7).chain.pem"
listener "$(a 7)" "$(h 7)" "$(h 7)"; mx1 7
tlsa mx1.s07 "3 1 1 $(tlsa_x11 unrelated-name)" >>"$D"
# 8, 9, 10: own zones (bogus.test, expired.test, badsig.test), built below
std_host 127.25.0.18 mx1.bogus.test
std_host 127.25.0.19 mx1.expired.test
std_host 127.25.0.20 mx1.badsig.test
# 11: unsigned zone insecure.test, built below
std_host 127.25.0.21 mx1.s11.insecure.test
# 12 signed zone, no TLSA (secure NODATA)
std_host "$(a 12)" "$(h 12)"; mx1 12
# 13 no STARTTLS, usable 3 1 1 published
std_host "$(a 13)" "$(h 13)" no; mx1 13
tlsa mx1.s13 "3 1 1 $(tlsa_x11 "$(h 13)")" >>"$D"
# 14 only unusable records (PKIX-TA, PKIX-EE, unknown matching type, unknown selector)
std_host "$(a 14)" "$(h 14)"; mx1 14
{ tlsa mx1.s14 "0 0 1 $(tlsa_x01 root-ca)"; tlsa mx1.s14 "1 1 1 $(tlsa_x11 "$(h 14)")"
  tlsa mx1.s14 "3 1 9 $(tlsa_x11 "$(h 14)")"; tlsa mx1.s14 "3 2 1 $(tlsa_x11 "$(h 14)")"; } >>"$D"
# 15 MX host is a CNAME into good.test; TLSA at the expanded name (_25._tcp.mx15.good.test)
{ echo "s15 IN MX 10 mx1.s15"; echo "mx1.s15 IN CNAME mx15.good.test."; } >>"$D"
# 16 digest-agility trap: stale 3 1 2 + correct 3 1 1
std_host "$(a 16)" "$(h 16)"; mx1 16
{ tlsa mx1.s16 "3 1 2 $(tlsa_x12 old-key)"; tlsa mx1.s16 "3 1 1 $(tlsa_x11 "$(h 16)")"; } >>"$D"
# 17 rollover: current + next 3 1 1
std_host "$(a 17)" "$(h 17)"; mx1 17
{ tlsa mx1.s17 "3 1 1 $(tlsa_x11 "$(h 17)")"; tlsa mx1.s17 "3 1 1 $(tlsa_x11 next-key)"; } >>"$D"
# 18 mixed MX set: mx1 (pref 10) DANE, mx2 (pref 20) no TLSA
std_host "$(a 18)" "$(h 18)"; mx1 18
std_host 127.25.0.48 mx2.s18.dane.test
{ echo "s18 IN MX 20 mx2.s18"; echo "mx2.s18 IN A 127.25.0.48"
  tlsa mx1.s18 "3 1 1 $(tlsa_x11 "$(h 18)")"; tlsa mx1.s18 "2 1 1 $(tlsa_x11 issuing-ca)"; } >>"$D"
# 19 2 1 0 (full SPKI of the issuing CA), CA not in the served chain
mk_leaf "$(h 19)" "$(h 19)"; chain_leafonly "$(h 19)"; listener "$(a 19)" "$(h 19)" "$(h 19)"; mx1 19
tlsa mx1.s19 "2 1 0 $(tlsa_x10 issuing-ca)" >>"$D"
# 20 3 0 1 (full certificate SHA-256) + 3 1 2 (SPKI SHA-512)
std_host "$(a 20)" "$(h 20)"; mx1 20
{ tlsa mx1.s20 "3 0 1 $(tlsa_x01 "$(h 20)")"; tlsa mx1.s20 "3 1 2 $(tlsa_x12 "$(h 20)")"; } >>"$D"
# 21 insecure MX RRset (s21.insecure.test) -> this host, signed, good TLSA
std_host "$(a 21)" "$(h 21)"
{ echo "mx1.s21 IN A $(a 21)"
  tlsa mx1.s21 "3 1 1 $(tlsa_x11 "$(h 21)")"; tlsa mx1.s21 "2 1 1 $(tlsa_x11 issuing-ca)"; } >>"$D"
# 22 lame signed delegation of the TLSA name: _25._tcp.mx1.s22.dane.test has NS + DS, but
#    knotd does not serve that zone (it answers with the same referral again)
std_host "$(a 22)" "$(h 22)"; mx1 22
echo "_25._tcp.mx1.s22 IN NS ns.test." >>"$D"     # DS appended below, after key generation
# 23 one MX host, two addresses (two listeners, same certificate)
std_host "$(a 23)" "$(h 23)"; listener 127.25.0.53 "$(h 23)" "$(h 23)"; mx1 23
{ echo "mx1.s23 IN A 127.25.0.53"
  tlsa mx1.s23 "3 1 1 $(tlsa_x11 "$(h 23)")"; tlsa mx1.s23 "2 1 1 $(tlsa_x11 issuing-ca)"; } >>"$D"
# 24 implicit MX: no MX, A record and TLSA at _25._tcp.s24.dane.test
std_host "$(a 24)" s24.dane.test
{ echo "s24 IN A $(a 24)"
  tlsa s24 "3 1 1 $(tlsa_x11 s24.dane.test)"; tlsa s24 "2 1 1 $(tlsa_x11 issuing-ca)"; } >>"$D"
# 25 2 0 1 (full certificate SHA-256 of the issuing CA), full chain
std_host "$(a 25)" "$(h 25)"; mx1 25
tlsa mx1.s25 "2 0 1 $(tlsa_x01 issuing-ca)" >>"$D"
# 26 secure MX RRset -> MX host in the bogus zone (address lookup bogus)
echo "s26 IN MX 10 mx1.bogus.test." >>"$D"
# 27 wildcard TLSA: *._tcp.mx1.s27.dane.test
std_host "$(a 27)" "$(h 27)"; mx1 27
{ echo "*._tcp.mx1.s27 IN TLSA 3 1 1 $(tlsa_x11 "$(h 27)")"
  echo "*._tcp.mx1.s27 IN TLSA 2 1 1 $(tlsa_x11 issuing-ca)"; } >>"$D"
# 28 null MX (RFC 7505)
echo "s28 IN MX 0 ." >>"$D"
# 29 malformed 3 1 1 (20-byte digest) as the only record
std_host "$(a 29)" "$(h 29)"; mx1 29
tlsa mx1.s29 "3 1 1 $(tlsa_x11 "$(h 29)" | cut -c1-40)" >>"$D"

# 30 only PKIX usages (0 and 1): Postfix drops them at lookup time ("no usable TLSA records")
std_host "$(a 30)" "$(h 30)"; mx1 30
{ tlsa mx1.s30 "0 0 1 $(tlsa_x01 root-ca)"; tlsa mx1.s30 "1 1 1 $(tlsa_x11 "$(h 30)")"; } >>"$D"

# --- dyn.test (unless LAB_DYNAMIC=0): hosts, keys of the listeners, zone source ---
if [ "$DYN" = 1 ]; then
    # shellcheck source=tests/lab/dyn-lib.sh
    . "$HERE/dyn-lib.sh"
    dyn_prepare
fi

# --- sts.test: MTA-STS and TLSRPT scenarios (sts-lib.sh) ---
sts_prepare

# --- DNSSEC-failure zones: same shape each (MX, A, good 3 1 1 + 2 1 1) ---
simple_mail_zone() {  # zone, address
    soa "$1."
    echo "@ IN MX 10 mx1"
    echo "mx1 IN A $2"
    tlsa mx1 "3 1 1 $(tlsa_x11 "mx1.$1")"
    tlsa mx1 "2 1 1 $(tlsa_x11 issuing-ca)"
}
simple_mail_zone bogus.test 127.25.0.18 >"$Z/bogus.test.zone"
simple_mail_zone expired.test 127.25.0.19 >"$Z/expired.test.zone"
simple_mail_zone badsig.test 127.25.0.20 >"$Z/badsig.test.zone"
{
    soa insecure.test.
    echo "; 11: unsigned zone with TLSA records"
    echo "s11 IN MX 10 mx1.s11"
    echo "mx1.s11 IN A 127.25.0.21"
    tlsa mx1.s11 "3 1 1 $(tlsa_x11 mx1.s11.insecure.test)"
    tlsa mx1.s11 "2 1 1 $(tlsa_x11 issuing-ca)"
    echo "; 21: insecure MX RRset pointing into the signed dane.test"
    echo "s21 IN MX 10 mx1.s21.dane.test."
} >"$Z/insecure.test.zone"
{
    soa nsec.test.
    echo "; signed with NSEC (every other lab zone below the root uses NSEC3): a TLSA query for"
    echo "; mx1's port-25 name is a NODATA proven by NSEC (tests/downgrade.rs strips that proof)"
    echo "@ IN MX 10 mx1"
    echo "mx1 IN A 127.25.0.1"
    echo "_25._tcp.mx1 IN TXT \"no TLSA here\""
} >"$Z/nsec.test.zone"

# ---------------------------------------------------------------------------------------------
# 5. DNSSEC: keys, DS, signing (children first)
# ---------------------------------------------------------------------------------------------
log "DNSSEC"
K=$LAB/dns/keys
keygen() {  # zone -> sets KSK_<var> ZSK_<var> (base names, absolute)
    local zone=$1 dir
    dir=$K/${zone%.}; [ "$zone" = "." ] && dir=$K/root
    mkdir -p "$dir"
    KSK=$dir/$(cd "$dir" && ldns-keygen -a ECDSAP256SHA256 -k "$zone")
    ZSK=$dir/$(cd "$dir" && ldns-keygen -a ECDSAP256SHA256 "$zone")
}
ds_of() { ldns-key2ds -n -2 "$1.key" | awk -v t="$TTL" 'BEGIN{OFS="\t"} {$2=t; print}'; }
INCEPTION=$(date -u -d '-1 day' +%Y%m%d%H%M%S)
EXPIRATION=$(date -u -d '+30 days' +%Y%m%d%H%M%S)
sign() {  # zone-file-name origin ksk zsk [extra ldns-signzone options...]
    local name=$1 origin=$2 ksk=$3 zsk=$4; shift 4
    ldns-signzone "$@" -o "$origin" -f "$LAB/dns/signed/$name.signed" "$Z/$name.zone" "$ksk" "$zsk"
}
NSEC3=(-n -t 0)
DATES=(-i "$INCEPTION" -e "$EXPIRATION")

keygen good.test.;     GOOD_DS=$(ds_of "$KSK");     sign good.test good.test. "$KSK" "$ZSK" "${NSEC3[@]}" "${DATES[@]}"
keygen _25._tcp.mx1.s22.dane.test.; LAME_DS=$(ds_of "$KSK")     # never served
echo "$LAME_DS" >>"$D"
keygen dane.test.;     DANE_DS=$(ds_of "$KSK");     sign dane.test dane.test. "$KSK" "$ZSK" "${NSEC3[@]}" "${DATES[@]}"
keygen bogus.test.
# DS mismatch: last 8 hex digits of the digest replaced
BOGUS_DS=$(ds_of "$KSK" | sed -E 's/[0-9A-Fa-f]{8}$/00000000/')
sign bogus.test bogus.test. "$KSK" "$ZSK" "${NSEC3[@]}" "${DATES[@]}"
keygen expired.test.;  EXPIRED_DS=$(ds_of "$KSK")
sign expired.test expired.test. "$KSK" "$ZSK" "${NSEC3[@]}" -i 20240101000000 -e 20240201000000
keygen badsig.test.;   BADSIG_DS=$(ds_of "$KSK");   sign badsig.test badsig.test. "$KSK" "$ZSK" "${NSEC3[@]}" "${DATES[@]}"
# corrupt only the RRSIG over the TLSA RRset(s): overwrite the start of the signature (r of r||s)
awk 'BEGIN{OFS="\t"} $4=="RRSIG" && $5=="TLSA" { sig=$NF; rep=(substr(sig,1,8)=="AAAAAAAA")?"BBBBBBBB":"AAAAAAAA"; $NF=rep substr(sig,9) } {print}' \
    "$LAB/dns/signed/badsig.test.signed" >"$LAB/dns/signed/badsig.test.tmp"
mv "$LAB/dns/signed/badsig.test.tmp" "$LAB/dns/signed/badsig.test.signed"
grep -q $'RRSIG\tTLSA' "$LAB/dns/signed/badsig.test.signed" || die "badsig.test: no TLSA RRSIG to corrupt"
keygen nsec.test.;     NSEC_DS=$(ds_of "$KSK");     sign nsec.test nsec.test. "$KSK" "$ZSK" "${DATES[@]}"   # NSEC
cp "$Z/insecure.test.zone" "$LAB/dns/signed/insecure.test.signed"   # unsigned, no DS
sts_sign

{
    soa test.
    echo "ns IN A $AUTH"
    for child in good dane bogus expired badsig insecure nsec sts; do echo "$child IN NS ns.test."; done
    echo "$GOOD_DS"; echo "$DANE_DS"; echo "$BOGUS_DS"; echo "$EXPIRED_DS"; echo "$BADSIG_DS"; echo "$NSEC_DS"; echo "$STS_DS"
    if [ "$DYN" = 1 ]; then dyn_delegation; dyn_keys; fi
} >"$Z/test.zone"
keygen test.; TEST_DS=$(ds_of "$KSK"); sign test test. "$KSK" "$ZSK" "${NSEC3[@]}" "${DATES[@]}"

{
    printf '$ORIGIN .\n$TTL %s\n' "$TTL"
    printf '. IN SOA ns.test. hostmaster.test. %s 3600 600 86400 %s\n' "$SERIAL_DNS" "$TTL"
    echo ". IN NS ns.test."
    echo "test. IN NS ns.test."
    echo "ns.test. IN A $AUTH"
    echo "$TEST_DS"
} >"$Z/root.zone"
keygen .; ROOT_KSK=$KSK; sign root . "$KSK" "$ZSK" "${DATES[@]}"   # NSEC

# trust anchors: the root KSK DNSKEY, single line (hickory TrustAnchors::from_file, Unbound)
sed -E 's/[[:space:]]*;.*$//' "$ROOT_KSK.key" >"$LAB/dns/root.key"
ds_of "$ROOT_KSK" >"$LAB/dns/root.ds"
printf '. 3600000 IN NS ns.test.\nns.test. 3600000 IN A %s\n' "$AUTH" >"$LAB/dns/root.hints"

# ---------------------------------------------------------------------------------------------
# 6. knotd (authoritative) on 127.53.0.1
# ---------------------------------------------------------------------------------------------
log "knotd"
mkdir -p "$LAB/knot/db"
{
    cat <<EOF
server:
    rundir: "$LAB/run"
    pidfile: "$LAB/run/knot.pid"
    listen: $AUTH@53
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
log:
  - target: "$LAB/log/knot.log"
    any: info
database:
    storage: "$LAB/knot/db"
template:
  - id: default
    storage: "$LAB/dns/signed"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
    semantic-checks: off
EOF
    if [ "$DYN" = 1 ]; then dyn_knot_sections; fi
    echo "zone:"
    for zf in root test good.test dane.test bogus.test expired.test badsig.test insecure.test nsec.test sts.test; do
        dom=$zf.; [ "$zf" = root ] && dom=.
        printf '  - domain: "%s"\n    file: "%s.signed"\n' "$dom" "$zf"
    done
    if [ "$DYN" = 1 ]; then dyn_knot_zone; fi
} >"$LAB/knot/knot.conf"
knotd -c "$LAB/knot/knot.conf" -s "$LAB/run/knot.sock" -d >>"$LAB/log/knot.log" 2>&1 \
    || { tail -20 "$LAB/log/knot.log" >&2; die "knotd failed to start"; }
if [ "$DYN" = 1 ]; then dyn_secondary_start; fi

# ---------------------------------------------------------------------------------------------
# 7. Unbound: validating on .2, non-validating on .3
# ---------------------------------------------------------------------------------------------
log "unbound"
unbound_conf() {  # name addr module-config
    local dir=$LAB/unbound-$1
    cat <<EOF
server:
    verbosity: 1
    interface: $2@53
    outgoing-interface: $2
    port: 53
    do-ip4: yes
    do-ip6: no
    do-udp: yes
    do-tcp: yes
    access-control: 127.0.0.0/8 allow
    username: ""
    chroot: ""
    directory: "$dir"
    pidfile: "$LAB/run/unbound-$1.pid"
    logfile: "$LAB/log/unbound-$1.log"
    use-syslog: no
    log-servfail: yes
    num-threads: 1
    so-reuseport: no
    root-hints: "$LAB/dns/root.hints"
    do-not-query-localhost: no
    local-zone: "test." nodefault
    module-config: "$3"
    ede: yes
    val-log-level: 2
    cache-min-ttl: 0
    cache-max-ttl: $TTL
    cache-max-negative-ttl: $TTL
    val-bogus-ttl: $TTL
    infra-host-ttl: 30
    prefetch: no
    harden-dnssec-stripped: yes
EOF
    [ "$3" = "iterator" ] || echo "    trust-anchor-file: \"$LAB/dns/root.key\""
    cat <<EOF
remote-control:
    control-enable: no
EOF
}
unbound_conf val $VAL "validator iterator" >"$LAB/unbound-val/unbound.conf"
unbound_conf plain $PLAIN "iterator" >"$LAB/unbound-plain/unbound.conf"
for u in val plain; do
    unbound-checkconf "$LAB/unbound-$u/unbound.conf" >/dev/null || die "unbound-$u config invalid"
    unbound -c "$LAB/unbound-$u/unbound.conf" >>"$LAB/log/unbound-$u.log" 2>&1 \
        || { tail -20 "$LAB/log/unbound-$u.log" >&2; die "unbound-$u failed to start"; }
done

# ---------------------------------------------------------------------------------------------
# 8. Postfix: one instance, config dir LABDIR/postfix, one smtpd per listener address
# ---------------------------------------------------------------------------------------------
log "postfix"
PF=$LAB/postfix
while IFS=$'\t' read -r addr host chain starttls; do
    [ "$addr" = address ] && continue
    add_addr "$addr"
done < <(cat "$LISTENERS"; [ "$DYN" = 1 ] && tail -n +2 "$DYN_DIR/listeners.tsv")
for addr in $SUBMISSION; do add_addr "$addr"; done
cat >"$PF/main.cf" <<EOF
# mailtls_exporter lab: receive-only Postfix, generated by tests/lab/up.sh
compatibility_level = 3.6
queue_directory = $LAB/postfix-spool
data_directory = $LAB/postfix-data
mail_owner = postfix
setgid_group = postdrop
myhostname = lab.test
mydomain = lab.test
myorigin = lab.test
mydestination =
relay_domains =
mynetworks = 127.0.0.0/8
inet_interfaces = all
inet_protocols = ipv4
alias_maps =
alias_database =
local_recipient_maps =
biff = no
maillog_file = $LAB/log/postfix.log
maillog_file_prefixes = $LAB/log
smtpd_banner = \$myhostname ESMTP mailtls-lab
# accept connections and STARTTLS, never mail
smtpd_relay_restrictions = reject
smtpd_recipient_restrictions = reject
# fast, unthrottled smtpd
smtpd_peername_lookup = no
smtpd_client_connection_rate_limit = 0
smtpd_client_connection_count_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_new_tls_session_rate_limit = 0
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 100
smtpd_hard_error_limit = 200
default_process_limit = 400
max_use = 100000
max_idle = 600
smtpd_tls_security_level = may
smtpd_tls_chain_files = $PKI/mx1.good.test.chain.pem
smtpd_tls_loglevel = 1
smtpd_tls_session_cache_database =
EOF
{
    cat <<'EOF'
# mailtls_exporter lab master.cf, generated by tests/lab/up.sh
# service  type  private unpriv  chroot  wakeup  maxproc command
EOF
    while IFS=$'\t' read -r addr host chain starttls; do
        [ "$addr" = address ] && continue
        lvl=may; [ "$starttls" = no ] && lvl=none
        echo "$addr:25 inet n - n - - smtpd -o myhostname=$host -o smtpd_tls_chain_files=$chain -o smtpd_tls_security_level=$lvl"
    done < <(cat "$LISTENERS"; [ "$DYN" = 1 ] && tail -n +2 "$DYN_DIR/listeners.tsv")
    # submission: implicit TLS (smtpd_tls_wrappermode) on 465, STARTTLS on 587
    sub() { echo "$1 inet n - n - - smtpd -o myhostname=$2 -o smtpd_tls_chain_files=$PKI/$2.chain.pem -o smtpd_tls_security_level=encrypt $3"; }
    sub 127.25.0.5:465 sub.good.test "-o smtpd_tls_wrappermode=yes"
    sub 127.25.0.5:587 sub.good.test ""
    sub 127.25.0.6:465 sub2.good.test "-o smtpd_tls_wrappermode=yes"
    cat <<'EOF'
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
} >"$PF/master.cf"
mkdir -p "$LAB/postfix-spool" "$LAB/postfix-data"
chown postfix "$LAB/postfix-data"
# `postfix start` creates the queue directories, checks the config and starts master; fatal
# start-up errors only reach a terminal, hence script(1)
out=$(script -q -e -c "postfix -c '$PF' start" /dev/null 2>&1) || { echo "$out" >&2; die "postfix start failed"; }
case $out in *warning*|*fatal*|*error*) echo "$out" >&2 ;; esac
log "nginx"
sts_nginx

# ---------------------------------------------------------------------------------------------
# 9. environment files
# ---------------------------------------------------------------------------------------------
printf 'nameserver %s\noptions trust-ad\n' "$VAL" >"$LAB/resolv.conf"
EXP_EPOCH=$(date -u -d "${EXPIRATION:0:8} ${EXPIRATION:8:2}:${EXPIRATION:10:2}:${EXPIRATION:12:2}" +%s)
INC_EPOCH=$(date -u -d "${INCEPTION:0:8} ${INCEPTION:8:2}:${INCEPTION:10:2}:${INCEPTION:12:2}" +%s)
cat >"$LAB/lab.env" <<EOF
LAB_DIR=$LAB
LAB_AUTH_ADDR=$AUTH
LAB_RESOLVER_VALIDATING=$VAL
LAB_RESOLVER_NONVALIDATING=$PLAIN
LAB_RESOLVER_PORT=53
LAB_RESOLV_CONF=$LAB/resolv.conf
LAB_TRUST_ANCHOR=$LAB/dns/root.key
LAB_TRUST_ANCHOR_DS=$LAB/dns/root.ds
LAB_CA_BUNDLE=$PKI/root-ca.pem
LAB_CA_CHAIN=$PKI/ca-chain.pem
LAB_ISSUING_CA=$PKI/issuing-ca.pem
LAB_OTHER_CA_BUNDLE=$PKI/other-ca.pem
LAB_PKI_DIR=$PKI
LAB_SMTP_NET=127.25.0.0/24
LAB_SMTP_PORT=25
LAB_LISTENERS=$LISTENERS
LAB_SCENARIOS=$HERE/scenarios.tsv
LAB_POSTFIX_CONFIG=$PF
LAB_POSTFIX_LOG=$LAB/log/postfix.log
LAB_RRSIG_INCEPTION=$INC_EPOCH
LAB_RRSIG_EXPIRATION=$EXP_EPOCH
LAB_EXPIRED_RRSIG_EXPIRATION=$(date -u -d '2024-02-01 00:00:00' +%s)
LAB_TTL=$TTL
LAB_STS_ADDR=$STS_ADDR
EOF
if [ "$DYN" = 1 ]; then cat >>"$LAB/lab.env" <<EOF
LAB_DYN_ZONE=$DYN_ZONE
LAB_DYN_TSIG_KEY=$DYN_DIR/tsig.key
LAB_DYN_LISTENERS=$DYN_DIR/listeners.tsv
LAB_DYN_PRIMARY=$DYN_PRIMARY
LAB_DYN_SECONDARY=$DYN_SECONDARY
LAB_DYN_SECONDARY_SOCKET=$LAB/run/knot2.sock
EOF
fi

# ---------------------------------------------------------------------------------------------
# 10. verify
# ---------------------------------------------------------------------------------------------
log "verify"
fail=0
check() { if ! eval "$2"; then echo "up.sh: CHECK FAILED: $1" >&2; fail=1; fi; }
wait_dns() {  # server: wait until it answers SOA of test.
    for _ in $(seq 1 50); do
        kdig +timeout=1 +retry=0 @"$1" test. SOA >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}
check "knotd answers on $AUTH" "wait_dns $AUTH"
check "validating unbound answers on $VAL" "wait_dns $VAL"
check "non-validating unbound answers on $PLAIN" "wait_dns $PLAIN"
# has PATTERN kdig-args...: the kdig output matches; lacks: it does not
has() { local pat=$1 out; shift; out=$(kdig +timeout=2 +retry=0 "$@" 2>&1) || true; grep -qE "$pat" <<<"$out"; }
lacks() { ! has "$@"; }
AD='Flags:.* ad'
check "knotd serves a signed root" "has 'RRSIG.*DNSKEY' @$AUTH +dnssec . DNSKEY"
check "good.test MX is secure (ad) via $VAL" "has '$AD' @$VAL +dnssec good.test MX"
check "s01.dane.test MX is secure via $VAL" "has '$AD' @$VAL +dnssec s01.dane.test MX"
check "TLSA _25._tcp.mx1.s01.dane.test is secure via $VAL" "has '$AD' @$VAL +dnssec _25._tcp.mx1.s01.dane.test TLSA"
check "bogus.test is SERVFAIL via $VAL" "has 'status: SERVFAIL' @$VAL +dnssec bogus.test MX"
check "expired.test is SERVFAIL via $VAL" "has 'status: SERVFAIL' @$VAL +dnssec expired.test MX"
check "badsig.test TLSA is SERVFAIL via $VAL" "has 'status: SERVFAIL' @$VAL +dnssec _25._tcp.mx1.badsig.test TLSA"
check "badsig.test MX is secure via $VAL" "has '$AD' @$VAL +dnssec badsig.test MX"
check "lame TLSA _25._tcp.mx1.s22.dane.test is SERVFAIL via $VAL" "has 'status: SERVFAIL' @$VAL +dnssec _25._tcp.mx1.s22.dane.test TLSA"
check "s11.insecure.test MX is NOERROR via $VAL" "has 'status: NOERROR' @$VAL +dnssec s11.insecure.test MX"
check "s11.insecure.test MX has no ad via $VAL" "lacks '$AD' @$VAL +dnssec s11.insecure.test MX"
check "bogus.test answers via non-validating $PLAIN" "has 'status: NOERROR' @$PLAIN +dnssec bogus.test MX"
check "good.test MX answers via $PLAIN" "has 'status: NOERROR' @$PLAIN +dnssec good.test MX"
check "good.test MX via $PLAIN has no ad" "lacks '$AD' @$PLAIN +dnssec good.test MX"
smtp_220() {  # addr [port]: read the greeting
    local line=""
    exec 3<>"/dev/tcp/$1/${2:-25}" || return 1
    IFS= read -r -t 5 line <&3 || true
    printf 'QUIT\r\n' >&3 || true
    exec 3<&- 3>&- || true
    case $line in 220*) return 0 ;; *) echo "up.sh: $1:${2:-25} said: '$line'" >&2; return 1 ;; esac
}
wait_smtp() {
    for _ in $(seq 1 50); do smtp_220 "$@" 2>/dev/null && return 0; sleep 0.1; done
    smtp_220 "$@"
}
n_listeners=0
while IFS=$'\t' read -r addr host chain starttls; do
    [ "$addr" = address ] && continue
    n_listeners=$((n_listeners + 1))
    check "postfix listener $addr ($host) answers 220" "wait_smtp $addr"
done <"$LISTENERS"
check "submission 127.25.0.5:587 answers 220" "wait_smtp 127.25.0.5 587"
check "TLSA _465._tcp.sub.good.test is secure via $VAL" "has '$AD' @$VAL +dnssec _465._tcp.sub.good.test TLSA"
sts_checks
if [ "$DYN" = 1 ]; then dyn_checks; fi
if [ $fail -ne 0 ]; then
    echo "up.sh: the lab in $LAB is NOT healthy; logs in $LAB/log/" >&2
    [ -f "$LAB/log/postfix.log" ] && { echo "--- postfix.log (tail)"; tail -15 "$LAB/log/postfix.log"; } >&2
    exit 1
fi
END_NS=$(date +%s%N)
log "lab up in $LAB: knotd $AUTH, unbound $VAL (validating) $PLAIN (plain), $n_listeners smtpd listeners; $(( (END_NS - START_NS) / 1000000 )) ms"
