#!/usr/bin/env bash
# N signed domains (default 10,000; 100,000 works) probed by the release daemon in one round,
# in a network namespace of its own: first-round time, CPU per domain, RSS, /metrics cost.
#
# Owns: a throw-away world inside the namespace `mailtls-scale` (SCALE_NETNS), nothing
# outside it but the work directory under /tmp:
#   - PKI: a root CA, an issuing CA, one ECDSA P-256 leaf for `*.scale.test` (served as
#     leaf + issuing CA, PKIX-valid to the root);
#   - DNS: one zone `scale.test.` with N domains `dNNNNNN MX 10 mxHHHHH` over HOSTS MX host
#     names, each with one A record on one of ADDRS loopback addresses 127.30.x.y and a
#     TLSA RRset at `_25._tcp.mxHHHHH` (by host: 75% `3 1 1` of the leaf, 10% `2 1 1` of the
#     issuing CA, 5% both, 5% a stale `3 1 1`, 5% none), signed once with ldns-signzone
#     (ECDSA P-256, NSEC), served by knotd on 127.53.0.1, validated by Unbound on
#     127.53.0.2 (trust anchor = the zone's KSK, stub zone to knotd);
#   - one Postfix with one listener on 0.0.0.0:25 (the whole of 127.0.0.0/8 is local on the
#     namespace's `lo`, so the ADDRS addresses need no listener or `ip addr` of their own);
#   - the exporter (BIN, release build) with N domain targets, upstream validation,
#     INTERVAL (5m), CONCURRENCY (64).
# It waits until every target has logged its first result (the daemon runs at log level
# info; a first result always logs "probe state changed"), reads the daemon's utime+stime
# (/proc/PID/stat, all threads) since it answered /-/healthy, and divides by N and by the
# probes completed (mailtls_probes_total: targets whose phase in the interval falls inside
# the first round are probed twice). Postfix, Unbound and knotd are not counted. Then SCRAPES
# scrapes of /metrics with Prometheus' Accept header, without and with
# `Accept-Encoding: gzip` (median wall time from curl, daemon CPU per scrape, bytes on the
# wire), one text scrape for the series count and `promtool check metrics`.
# Everything it started dies with the namespace at the end.
#
# Usage: sudo benches/scale.sh        (builds the release binary first)
# Env:   BIN=path/to/mailtls_exporter  N=10000  HOSTS=min(4000,N)  ADDRS=2000  CONCURRENCY=64
#        INTERVAL=5m  SCRAPES=9  ROUND_TIMEOUT=1800  PROMTOOL=1  PERF=0 (1: a flat
#        `perf record` profile of the round, top entries in the output)  HEAPTRACK=0 (1: the
#        daemon under heaptrack; after the round, the live heap by call site, then stop;
#        scrapes: the same after six scrapes)  SCALE_NETNS
#        SCALE_OUT (default: a new /tmp/mailtls-scale.XXXXXX; KEEP=1 keeps the bodies)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export N=${N:-10000}
export HOSTS=${HOSTS:-$((N < 4000 ? N : 4000))}
export ADDRS=${ADDRS:-2000}
export CONCURRENCY=${CONCURRENCY:-64}
export INTERVAL=${INTERVAL:-5m}
export SCRAPES=${SCRAPES:-9}
export ROUND_TIMEOUT=${ROUND_TIMEOUT:-1800}
export PROMTOOL=${PROMTOOL:-1}
export PERF=${PERF:-0}
export HEAPTRACK=${HEAPTRACK:-0}
export KEEP=${KEEP:-}
export SCALE_NETNS=${SCALE_NETNS:-mailtls-scale}

die() { echo "scale.sh: $*" >&2; exit 2; }
say() { echo "scale.sh: [$(date +%H:%M:%S)] $*" >&2; }

# =============================================================================================
# outer part: build, namespace, run the inner part inside it, clean up
# =============================================================================================
if [ "${1:-}" != --inside ]; then
    [ "$(id -u)" = 0 ] || die "must run as root (network namespace, ports 25 and 53, Postfix)"
    for c in ip curl kdig knotd unbound postfix ldns-keygen ldns-signzone ldns-key2ds openssl awk script; do
        command -v "$c" >/dev/null || die "missing command $c"
    done
    [ "$PROMTOOL" = 0 ] || command -v promtool >/dev/null || die "missing command promtool (or PROMTOOL=0)"
    [ "$PERF" = 0 ] || command -v perf >/dev/null || die "missing command perf (or PERF=0)"
    [ "$HEAPTRACK" = 0 ] || command -v heaptrack >/dev/null || die "missing command heaptrack (or HEAPTRACK=0)"
    ((HOSTS >= 1 && HOSTS <= N && ADDRS >= 1 && ADDRS <= 64000)) || die "need 1 <= HOSTS <= N, 1 <= ADDRS <= 64000"
    if [ -z "${BIN:-}" ]; then
        (cd "$HERE" && nice -n 10 cargo build --release --locked --quiet)
        BIN=${CARGO_TARGET_DIR:-$HERE/target}/release/mailtls_exporter
    fi
    [ -x "$BIN" ] || die "no binary at $BIN"
    BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
    export BIN
    export SCALE_OUT=${SCALE_OUT:-$(mktemp -d /tmp/mailtls-scale.XXXXXX)}
    mkdir -p "$SCALE_OUT"
    if ip netns list | awk '{print $1}' | grep -qxF "$SCALE_NETNS"; then
        die "network namespace $SCALE_NETNS exists (another run? else: ip netns del $SCALE_NETNS)"
    fi
    ip netns add "$SCALE_NETNS"
    outer_cleanup() {
        local rc=$?
        trap - EXIT INT TERM
        ip netns exec "$SCALE_NETNS" postfix -c "$SCALE_OUT/work/postfix" stop >/dev/null 2>&1 || true
        # anything still in the namespace was started by this script (the namespace is ours)
        for p in $(ip netns pids "$SCALE_NETNS" 2>/dev/null); do kill "$p" 2>/dev/null || true; done
        sleep 1
        for p in $(ip netns pids "$SCALE_NETNS" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        ip netns del "$SCALE_NETNS" 2>/dev/null || true
        [ -n "$KEEP" ] || rm -rf "$SCALE_OUT/work" "$SCALE_OUT"/*.body "$SCALE_OUT/perf.data"
        echo "scale.sh: namespace $SCALE_NETNS removed; results in $SCALE_OUT" >&2
        exit "$rc"
    }
    trap outer_cleanup EXIT
    trap 'exit 130' INT TERM
    ip netns exec "$SCALE_NETNS" ip link set lo up
    say "binary $BIN; N=$N HOSTS=$HOSTS ADDRS=$ADDRS; namespace $SCALE_NETNS; output $SCALE_OUT"
    ip netns exec "$SCALE_NETNS" bash "${BASH_SOURCE[0]}" --inside
    exit $?
fi

# =============================================================================================
# inner part (inside the namespace)
# =============================================================================================
OUT=$SCALE_OUT
W=$OUT/work
AUTH=127.53.0.1
RES=127.53.0.2
PORT=19727
URL=http://127.0.0.1:$PORT
ACCEPT_PROM='application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2'
TCK=$(getconf CLK_TCK)
mkdir -p "$W"/{pki,dns,knot/db,unbound,postfix,postfix-spool,postfix-data,log}
ip addr add "$AUTH/32" dev lo
ip addr add "$RES/32" dev lo
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", b-a}'; }

# ---- PKI ------------------------------------------------------------------------------------
say "PKI"
P=$W/pki
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
key "$P/root.key"; key "$P/ca.key"; key "$P/leaf.key"
openssl req -new -x509 -key "$P/root.key" -subj "/O=mailtls scale/CN=scale root" -days 30 -sha256 \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -out "$P/root.pem" 2>/dev/null
printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n' >"$P/ca.ext"
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:*.scale.test\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n' >"$P/leaf.ext"
openssl req -new -key "$P/ca.key" -subj "/O=mailtls scale/CN=scale issuing CA" -out "$P/ca.csr"
openssl x509 -req -in "$P/ca.csr" -CA "$P/root.pem" -CAkey "$P/root.key" -set_serial 2 -days 30 \
    -sha256 -extfile "$P/ca.ext" -out "$P/ca.pem" 2>/dev/null
openssl req -new -key "$P/leaf.key" -subj "/O=mailtls scale/CN=mx.scale.test" -out "$P/leaf.csr"
openssl x509 -req -in "$P/leaf.csr" -CA "$P/ca.pem" -CAkey "$P/ca.key" -set_serial 3 -days 30 \
    -sha256 -extfile "$P/leaf.ext" -out "$P/leaf.pem" 2>/dev/null
cat "$P/leaf.key" "$P/leaf.pem" "$P/ca.pem" >"$P/chain.pem"
spki311() { openssl x509 -in "$1" -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1; }
LEAF311=$(spki311 "$P/leaf.pem")
CA211=$(spki311 "$P/ca.pem")
STALE=$(printf '5a%.0s' $(seq 32))

# ---- zone: N domains, HOSTS MX hosts, ADDRS addresses; signed once --------------------------
say "zone of $N domains"
D=$W/dns
T0=$(now)
awk -v n="$N" -v hosts="$HOSTS" -v addrs="$ADDRS" -v auth="$AUTH" \
    -v leaf="$LEAF311" -v ca="$CA211" -v stale="$STALE" 'BEGIN {
    print "$ORIGIN scale.test."
    print "$TTL 3600"
    print "@ IN SOA ns.scale.test. hostmaster.scale.test. 1 3600 600 86400 3600"
    print "@ IN NS ns"
    print "ns IN A " auth
    for (h = 0; h < hosts; h++) {
        a = h % addrs
        printf "mx%05d IN A 127.30.%d.%d\n", h, int(a / 250), a % 250 + 1
        k = h % 20
        t = sprintf("_25._tcp.mx%05d IN TLSA ", h)
        if (k < 15) print t "3 1 1 " leaf
        else if (k < 17) print t "2 1 1 " ca
        else if (k < 18) { print t "3 1 1 " leaf; print t "2 1 1 " ca }
        else if (k < 19) print t "3 1 1 " stale
    }
    for (d = 0; d < n; d++) printf "d%06d IN MX 10 mx%05d\n", d, d % hosts
}' >"$D/scale.test.zone"
keys() { # zone prefix
    (cd "$D" && ldns-keygen -a ECDSAP256SHA256 -k "$1" >"$2.ksk" && ldns-keygen -a ECDSAP256SHA256 "$1" >"$2.zsk")
}
DATES=(-i "$(date -u -d '-1 day' +%Y%m%d%H%M%S)" -e "$(date -u -d '+30 days' +%Y%m%d%H%M%S)")
keys scale.test scale
T1=$(now)
ldns-signzone "${DATES[@]}" -o scale.test. -f "$D/scale.test.signed" "$D/scale.test.zone" \
    "$D/$(cat "$D/scale.ksk")" "$D/$(cat "$D/scale.zsk")"
T2=$(now)
# a signed root that delegates scale.test. (the daemon checks that the root SOA validates)
keys . root
{
    echo ". 3600 IN SOA ns.scale.test. hostmaster.scale.test. 1 3600 600 86400 3600"
    echo ". 3600 IN NS ns.scale.test."
    echo "scale.test. 3600 IN NS ns.scale.test."
    echo "ns.scale.test. 3600 IN A $AUTH"
    ldns-key2ds -n -2 "$D/$(cat "$D/scale.ksk").key"
} >"$D/root.zone"
ldns-signzone "${DATES[@]}" -o . -f "$D/root.signed" "$D/root.zone" \
    "$D/$(cat "$D/root.ksk")" "$D/$(cat "$D/root.zsk")"
sed -E 's/[[:space:]]*;.*$//' "$D/$(cat "$D/root.ksk").key" >"$D/anchor.key"
printf '. 3600000 IN NS ns.scale.test.\nns.scale.test. 3600000 IN A %s\n' "$AUTH" >"$D/root.hints"
SIGN_S=$(secs "$T1" "$T2")
ZONE_RRS=$(grep -vc '^\$\|^;' "$D/scale.test.zone" || true)
SIGNED_RRS=$(grep -vc '^;' "$D/scale.test.signed" || true)
say "zone: $ZONE_RRS records, signed in $SIGN_S s ($SIGNED_RRS records with DNSSEC)"

# ---- knotd, Unbound --------------------------------------------------------------------------
say "knotd, unbound"
cat >"$W/knot/knot.conf" <<EOF
server:
    rundir: "$W/knot"
    pidfile: "$W/knot/knot.pid"
    listen: $AUTH@53
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
log:
  - target: "$W/log/knot.log"
    any: warning
database:
    storage: "$W/knot/db"
template:
  - id: default
    storage: "$D"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
    semantic-checks: off
zone:
  - domain: "."
    file: "root.signed"
  - domain: "scale.test."
    file: "scale.test.signed"
EOF
knotd -c "$W/knot/knot.conf" -d >>"$W/log/knot.log" 2>&1 || die "knotd failed to start"
cat >"$W/unbound/unbound.conf" <<EOF
server:
    verbosity: 0
    interface: $RES@53
    outgoing-interface: $RES
    port: 53
    do-ip4: yes
    do-ip6: no
    access-control: 127.0.0.0/8 allow
    username: ""
    chroot: ""
    directory: "$W/unbound"
    pidfile: "$W/unbound/unbound.pid"
    logfile: "$W/log/unbound.log"
    use-syslog: no
    num-threads: 1
    so-reuseport: no
    do-not-query-localhost: no
    local-zone: "test." nodefault
    module-config: "validator iterator"
    trust-anchor-file: "$D/anchor.key"
    root-hints: "$D/root.hints"
    harden-dnssec-stripped: yes
    prefetch: no
    msg-cache-size: 256m
    rrset-cache-size: 512m
    num-queries-per-thread: 4096
    outgoing-range: 8192
remote-control:
    control-enable: no
EOF
unbound -c "$W/unbound/unbound.conf" || die "unbound failed to start"
for _ in $(seq 1 100); do
    kdig +short +time=1 +retry=0 @"$AUTH" scale.test SOA >/dev/null 2>&1 && break
    sleep 0.2
done
for _ in $(seq 1 50); do
    ans=$(kdig +time=2 +retry=0 +dnssec @"$RES" d000000.scale.test MX 2>&1) || true
    grep -qE 'Flags:[^;]* ad[ ;]' <<<"$ans" && break
    sleep 0.2
done
grep -qE 'Flags:[^;]* ad[ ;]' <<<"$ans" || die "unbound does not validate d000000.scale.test MX: $ans"

# ---- Postfix: one listener on 0.0.0.0:25 -----------------------------------------------------
say "postfix"
PF=$W/postfix
cat >"$PF/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $W/postfix-spool
data_directory = $W/postfix-data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.scale.test
mydestination =
relay_domains =
mynetworks = 127.0.0.0/8
inet_interfaces = all
inet_protocols = ipv4
alias_maps =
alias_database =
local_recipient_maps =
biff = no
maillog_file = $W/log/postfix.log
maillog_file_prefixes = $W/log
smtpd_relay_restrictions = reject
smtpd_recipient_restrictions = reject
smtpd_peername_lookup = no
smtpd_client_connection_rate_limit = 0
smtpd_client_connection_count_limit = 0
smtpd_client_new_tls_session_rate_limit = 0
smtpd_error_sleep_time = 0
default_process_limit = 400
max_use = 100000
max_idle = 600
smtpd_tls_security_level = may
smtpd_tls_chain_files = $P/chain.pem
smtpd_tls_session_cache_database =
EOF
cat >"$PF/master.cf" <<'EOF'
25        inet  n       -       n       -       -       smtpd
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
showq     unix  n       -       n       -       -       showq
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
proxymap  unix  -       -       n       -       -       proxymap
EOF
chown postfix "$W/postfix-data"
out=$(script -q -e -c "postfix -c '$PF' start" /dev/null 2>&1) || { echo "$out" >&2; die "postfix start failed"; }
for _ in $(seq 1 100); do
    (exec 3<>/dev/tcp/127.30.0.1/25) 2>/dev/null && break
    sleep 0.2
done
last=$(( (ADDRS - 1) ))
timeout 5 bash -c "exec 3<>/dev/tcp/127.30.$((last / 250)).$((last % 250 + 1))/25 && head -c 3 <&3" | grep -q 220 ||
    die "postfix does not answer on the last address"

# ---- the daemon -----------------------------------------------------------------------------
{
    cat <<EOF
interval: $INTERVAL
timeout: 30s
concurrency: $CONCURRENCY
dns:
  resolver: $RES:53
  validation: upstream
smtp:
  helo_name: scale.mailtls.test
pkix:
  ca_file: $P/root.pem
targets:
EOF
    awk -v n="$N" 'BEGIN { for (d = 0; d < n; d++) printf "  - domain: d%06d.scale.test\n", d }'
} >"$W/targets.yml"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
kib() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$2/status"; }
mib() { awk -v v="$1" 'BEGIN{printf "%.1f", v / 1024}'; }
ms_of_ticks() { awk -v t="$1" -v n="$2" -v hz="$TCK" 'BEGIN{printf "%.1f", t * 1000 / hz / n}'; }

say "daemon: $N targets, concurrency $CONCURRENCY, interval $INTERVAL"
START=$(now)
HEAP_PID=
if [ "$HEAPTRACK" != 0 ]; then
    # heaptrack runs the daemon as its child; DPID is the daemon itself.
    heaptrack -o "$OUT/heaptrack" "$BIN" --config.file="$W/targets.yml" \
        --web.listen-address="127.0.0.1:$PORT" --log.level=info >"$W/log/daemon.log" 2>&1 &
    HEAP_PID=$!
    DPID=
    for _ in $(seq 1 100); do
        DPID=$(pgrep -n -f -- "^$BIN --config.file=$W/targets.yml" || true)
        [ -n "$DPID" ] && break
        sleep 0.1
    done
    [ -n "$DPID" ] || die "heaptrack did not start the daemon: $(tail -5 "$W/log/daemon.log")"
else
    "$BIN" --config.file="$W/targets.yml" --web.listen-address="127.0.0.1:$PORT" --log.level=info \
        >"$W/log/daemon.log" 2>&1 &
    DPID=$!
fi
PERF_PID=
if [ "$PERF" != 0 ]; then
    perf record -F 499 -p "$DPID" -o "$OUT/perf.data" >/dev/null 2>"$W/log/perf.log" &
    PERF_PID=$!
fi
for _ in $(seq 1 600); do
    curl -s --max-time 1 -o /dev/null "$URL/-/healthy" && break
    kill -0 "$DPID" 2>/dev/null || die "daemon exited: $(tail -5 "$W/log/daemon.log")"
    sleep 0.1
done
UP=$(now)
UP_TICKS=$(ticks "$DPID")

# The first round is over when every target has logged its first result ("probe state
# changed", info or warn); the log is read, not /metrics, so the check costs the daemon
# nothing. Targets whose phase in the interval falls inside the round are probed a second
# time meanwhile: CPU is also given per probe (mailtls_probes_total right after).
changed() { grep -c 'msg="probe state changed"' "$W/log/daemon.log" || true; }
while :; do
    sleep 0.5
    kill -0 "$DPID" 2>/dev/null || die "daemon exited: $(tail -5 "$W/log/daemon.log")"
    if (($(changed) >= N)); then
        distinct=$(grep -o 'msg="probe state changed" target=[^ ]*' "$W/log/daemon.log" | sort -u | wc -l)
        ((distinct >= N)) && break
    fi
    awk -v a="$START" -v b="$(now)" -v l="$ROUND_TIMEOUT" 'BEGIN{exit !(b - a > l)}' &&
        die "only $(changed) of $N targets probed after $ROUND_TIMEOUT s"
done
END=$(now)
ROUND_TICKS=$(($(ticks "$DPID") - UP_TICKS))
ROUND_S=$(secs "$START" "$END")
RSS=$(kib VmRSS "$DPID"); HWM_ROUND=$(kib VmHWM "$DPID")
if [ -n "$PERF_PID" ]; then
    kill -INT "$PERF_PID"; wait "$PERF_PID" 2>/dev/null || true
fi
if [ -n "$HEAP_PID" ]; then
    # What is allocated once the round is over (HEAPTRACK=scrapes: and after three plain and
    # three gzip scrapes): the daemon dies without freeing anything, so heaptrack's "leaked"
    # is the live heap at this moment, by call site; "peak" the sites at the high-water mark.
    if [ "$HEAPTRACK" = scrapes ]; then
        for enc in identity identity identity gzip gzip gzip; do
            curl -s -o /dev/null --max-time 600 -H "Accept: $ACCEPT_PROM" -H "Accept-Encoding: $enc" "$URL/metrics"
        done
    fi
    kill -KILL "$DPID"; wait "$HEAP_PID" 2>/dev/null || true
    heaptrack_print -f "$OUT"/heaptrack.*zst -p 1 -a 0 -T 0 -l 1 -n 25 -s 3 >"$OUT/heaptrack.txt" 2>&1 ||
        heaptrack_print -f "$OUT"/heaptrack.*gz -p 1 -a 0 -T 0 -l 1 -n 25 -s 3 >"$OUT/heaptrack.txt" 2>&1 || true
    say "round: $N targets in $ROUND_S s, RSS $(mib "$RSS") MiB under heaptrack; live heap by call site: $OUT/heaptrack.txt"
    grep -E '^(total|leaked|peak)' "$OUT/heaptrack.txt" >&2 || true
    exit 0
fi
ROUND_PROBES=$(curl -s --max-time 600 "$URL/metrics" | awk '/^mailtls_probes_total/{s+=$NF} END{print s+0}')
say "round: $N targets in $ROUND_S s ($ROUND_PROBES probes)"

# ---- scrapes ---------------------------------------------------------------------------------
# median wall ms, bytes, content-encoding of SCRAPES scrapes; daemon CPU per scrape. The
# daemon keeps probing (each target at its phase of the interval: N / interval probes/s), so
# its CPU rate over 3 s without scrapes, just before, is subtracted.
scrapes() { # extra curl args...
    local t0 t1 b0 b1 w0 w1
    b0=$(ticks "$DPID"); sleep 3; b1=$(ticks "$DPID")
    w0=$(now)
    t0=$(ticks "$DPID")
    for _ in $(seq "$SCRAPES"); do
        curl -s -o /dev/null --max-time 600 -H "Accept: $ACCEPT_PROM" "$@" \
            -w '%{time_total} %{size_download} %header{content-encoding}\n' "$URL/metrics"
    done | sort -n | awk '{t[NR]=$1; b=$2; e=$3} END{printf "%.1f %d %s", t[int((NR+1)/2)]*1000, b, (e == "" ? "identity" : e)}'
    t1=$(ticks "$DPID")
    w1=$(now)
    local net
    net=$(awk -v t=$((t1 - t0)) -v b=$((b1 - b0)) -v w0="$w0" -v w1="$w1" 'BEGIN{n = t - b / 3 * (w1 - w0); print (n < 0 ? 0 : n)}')
    printf ' %s %s\n' "$(ms_of_ticks "$net" "$SCRAPES")" "$(ms_of_ticks $((b1 - b0)) 3)"
}
curl -s -o /dev/null -H "Accept: $ACCEPT_PROM" "$URL/metrics" # warm the output buffer
read -r PLAIN_MS PLAIN_B PLAIN_ENC PLAIN_CPU BG1 < <(scrapes)
read -r GZ_MS GZ_B GZ_ENC GZ_CPU BG2 < <(scrapes -H 'Accept-Encoding: gzip')
HWM=$(kib VmHWM "$DPID")
curl -s --max-time 600 -H 'Accept: text/plain;version=0.0.4' "$URL/metrics" >"$OUT/text.body"
AFTER_S=$(secs "$START" "$(now)")
SERIES=$(grep -vc '^#' "$OUT/text.body" || true)
FAMILIES=$(awk '!/^#/{sub(/[{ ].*/, ""); c[$0]++} END{for (f in c) print c[f], f}' "$OUT/text.body" |
    sort -rn | head -5 | awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $2, $1}')
OK=$(awk '/^mailtls_probes_total\{result="success"\}/{print $NF}' "$OUT/text.body")
FAIL=$(awk '/^mailtls_probes_total\{result="failure"\}/{print $NF}' "$OUT/text.body")
VERDICTS=$(awk '/^mailtls_dane_status\{/ && $NF == 1 {match($0, /status="[a-z_]+"/); s = substr($0, RSTART + 8, RLENGTH - 9); c[s]++}
    END{for (s in c) printf "%s %d; ", s, c[s]}' "$OUT/text.body")
PROM="not run"
if [ "$PROMTOOL" != 0 ]; then
    P0=$(now)
    if promtool check metrics <"$OUT/text.body" >"$OUT/promtool.txt" 2>&1; then PROM="ok"; else PROM="FAILED (see $OUT/promtool.txt)"; fi
    PROM="$PROM ($(secs "$P0" "$(now)") s)"
fi
kill "$DPID"; wait "$DPID" 2>/dev/null || true

{
    echo "binary: $BIN"
    echo "N=$N domains, $HOSTS MX hosts, $ADDRS addresses, concurrency $CONCURRENCY, interval $INTERVAL, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "| figure | value |"
    echo "|---|---|"
    echo "| zone | $ZONE_RRS records ($SIGNED_RRS signed), ldns-signzone $SIGN_S s |"
    echo "| first round, wall (start to every target's first result) | $ROUND_S s ($ROUND_PROBES probes: a target whose phase falls in the round is probed again) |"
    echo "| exporter CPU, round (after start-up) | $(awk -v t="$ROUND_TICKS" -v hz="$TCK" 'BEGIN{printf "%.2f", t / hz}') s |"
    echo "| exporter CPU per domain (round CPU / N), per probe (/ probes) | $(ms_of_ticks "$ROUND_TICKS" "$N") ms, $(ms_of_ticks "$ROUND_TICKS" "$ROUND_PROBES") ms |"
    echo "| start-up (config of $N targets) | $(secs "$START" "$UP") s, $(ms_of_ticks "$UP_TICKS" 1) ms CPU |"
    echo "| RSS after the round (high-water) | $(mib "$RSS") MiB ($(mib "$HWM_ROUND") MiB; after the scrapes $(mib "$HWM") MiB) |"
    echo "| /metrics, Prometheus Accept, no gzip: median wall, CPU per scrape, body | $PLAIN_MS ms, $PLAIN_CPU ms, $(mib $((PLAIN_B / 1024))) MiB ($PLAIN_ENC) |"
    echo "| /metrics, Accept-Encoding: gzip: median wall, CPU per scrape, body | $GZ_MS ms, $GZ_CPU ms, $(mib $((GZ_B / 1024))) MiB ($GZ_ENC) |"
    echo "| background CPU while idle between scrapes (probing at the phases) | $BG1, $BG2 ms/s (subtracted above) |"
    echo "| series (text format) | $SERIES, $(awk -v s="$SERIES" -v n="$N" 'BEGIN{printf "%.1f", s / n}') per target; largest families: $FAMILIES |"
    echo "| promtool check metrics | $PROM |"
    echo "| probes | success ${OK:-0}, failure ${FAIL:-0}; DANE verdicts per address: $VERDICTS |"
    echo
    echo "scrapes ended $AFTER_S s after start (a figure taken after INTERVAL overlaps the second round)"
    if [ "$PERF" != 0 ]; then
        echo
        perf report -i "$OUT/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null |
            grep -v '^#' | grep -v '^$' | sed -E 's/[[:space:]]+-[[:space:]]+-[[:space:]]*$//; s/[[:space:]]+$//' \
            >"$OUT/perf.txt"
        echo "perf (flat, the round), self time by group:"
        awk '{pct = $1 + 0; sym = $0}
            sym ~ /nistz256|p256|ecdsa|_mont/ { g["ECDSA/ECDH P-256 (ring)"] += pct; next }
            sym ~ /x25519|curve25519/ { g["X25519 key exchange (ring)"] += pct; next }
            sym ~ /sha256|sha512|sha2::|Sha256|Sha512/ { g["SHA-2"] += pct; next }
            sym ~ /aes|gcm|chacha|poly1305/ { g["AEAD"] += pct; next }
            sym ~ /x509_parser|der_parser|asn1_rs/ { g["x509-parser (certificate facts, DANE parts)"] += pct; next }
            sym ~ /webpki/ { g["webpki (path building, names)"] += pct; next }
            sym ~ /rustls/ { g["rustls (other)"] += pct; next }
            sym ~ /hickory/ { g["hickory (DNS messages)"] += pct; next }
            sym ~ /miniz_oxide|flate2|zlib_rs/ { g["deflate (zlib-rs)"] += pct; next }
            sym ~ /malloc|free|_int_|realloc|unlink_chunk|memset|memmove|memcpy/ { g["malloc/free/memset/memcpy"] += pct; next }
            sym ~ /\[kernel|\[k\]/ { g["kernel"] += pct; next }
            sym ~ /tokio|futures|mio/ { g["tokio/futures"] += pct; next }
            sym ~ /mailtls_exporter/ { g["mailtls_exporter (own code)"] += pct; next }
            { g["other"] += pct }
            END { for (k in g) printf "%6.2f%%  %s\n", g[k], k }' "$OUT/perf.txt" | sort -rn
        echo
        echo "perf (flat, the round; top 25 symbols by self time):"
        head -25 "$OUT/perf.txt" | cut -c1-140
    fi
} | tee "$OUT/results.md"
