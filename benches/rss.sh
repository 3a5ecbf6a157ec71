#!/usr/bin/env bash
# Memory of the release daemon, idle and with 10,000 targets, and the /metrics scrape time.
#
# Owns: starting the daemon (a) on the embedded default (idle: one address target,
# 127.0.0.1:25) and (b) with a generated config of N (10,000) domain targets on the lab,
# waiting until every target was probed once (sum of mailtls_probes_total >= N), then
# reporting VmRSS/VmHWM from /proc/<pid>/status and curl's time for /metrics (OpenMetrics
# and text, plain and gzip, with the exporter's CPU per scrape from /proc/<pid>/stat), and
# `promtool check metrics` on the inflated gzip scrape. Goals (docs/performance.md): <= 32 MiB
# idle, <= 100 MiB with 10,000 targets, scrape <= 50 ms wall and <= 20 ms CPU, <= 8 MB gzip. Everything it starts is killed at the end (by pid).
#
# Why its own resolver: config targets must be distinct and the lab has ~30 domains and 33
# SMTP listeners. The script runs a private Unbound on 127.26.0.53:5353 (the lab leaves
# 127.26.0.0/16 to tests) whose static zone bench.test. maps tNNNNN.bench.test to the lab's
# listener addresses in turn; everything else is forwarded to the lab's non-validating
# Unbound (127.53.0.3), root hints are the lab's: no packet leaves 127.0.0.0/8. Each target
# is then an implicit-MX domain (MX NODATA, A, AAAA; insecure, so no TLSA and no DANE
# verdict) whose address is probed over SMTP + STARTTLS: per-target reports hold a
# 2-certificate chain's facts, PKIX result and 3 lookups. Each target runs its own SMTP
# dialogue: the SMTP cache key is (address, SNI) and the SNI is the target's own MX name.
# /metrics is polled every 2 s while the round runs (as a fast Prometheus would), so
# VmHWM includes scrapes; VmRSS is read after the round.
#
# Usage: benches/rss.sh            (builds the release binary first)
# Env:   BIN=path/to/mailtls_exporter  N=10000  LAB=/tmp/mailtls-lab  ROUND_TIMEOUT=300
#        CARGO_TARGET_DIR (default: the repo's target-bench/)  KEEP=1 keeps the work directory.
set -euo pipefail

N=${N:-10000}
LAB=${LAB:-/tmp/mailtls-lab}
ROUND_TIMEOUT=${ROUND_TIMEOUT:-300}
HERE=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HERE/target-bench}
if [[ -z "${BIN:-}" ]]; then
    (cd "$HERE" && cargo build --release --quiet)
    BIN=$CARGO_TARGET_DIR/release/mailtls_exporter
fi
DNS_ADDR=127.26.0.53
DNS_PORT=5353

WORK=$(mktemp -d /tmp/mailtls-rss.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    [[ -n "${KEEP:-}" ]] || rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

kib() { awk -v k="$1" '/^'"$1"':/{print $2}' "/proc/$2/status"; }
mib() { awk -v v="$1" 'BEGIN{printf "%.1f", v/1024}'; }

probes_done() { # sum of mailtls_probes_total over results
    curl -s --max-time 5 "http://$1/metrics" |
        awk '/^mailtls_probes_total/{s+=$NF} END{print s+0}'
}

# median time of SCRAPES (default 9) scrapes in ms, and the body size on the wire:
# "ms bytes" (one sample is at the mercy of the shared machine; the median of several is
# not). A third argument "gzip" sends Accept-Encoding: gzip, as Prometheus does.
scrape() { # addr accept [gzip]
    local enc=()
    [[ "${3:-}" == gzip ]] && enc=(-H "Accept-Encoding: gzip")
    for _ in $(seq "${SCRAPES:-9}"); do
        curl -s -o /dev/null --max-time 30 -H "Accept: $2" "${enc[@]}" \
            -w '%{time_total} %{size_download}\n' "http://$1/metrics"
    done | sort -n | awk '{t[NR]=$1; b=$2} END{printf "%.1f %d\n", t[int((NR+1)/2)]*1000, b}'
}

# utime+stime of a process in ms (all threads)
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{print ($14+$15)*1000/hz}' "/proc/$1/stat"; }

# exporter CPU per scrape in ms: CPU over SCRAPES scrapes minus the background rate (probes
# keep running) measured over as long a pause just before
scrape_cpu() { # addr accept pid [gzip]
    local enc=() a b c t0 t1 t2
    [[ "${4:-}" == gzip ]] && enc=(-H "Accept-Encoding: gzip")
    t0=$(date +%s.%N); a=$(cpu_ms "$3")
    for _ in $(seq "${SCRAPES:-9}"); do
        curl -s -o /dev/null --max-time 30 -H "Accept: $2" "${enc[@]}" "http://$1/metrics"
    done
    t1=$(date +%s.%N); b=$(cpu_ms "$3")
    sleep "$(awk -v x="$t0" -v y="$t1" 'BEGIN{print y-x}')"
    t2=$(date +%s.%N); c=$(cpu_ms "$3")
    awk -v a="$a" -v b="$b" -v c="$c" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v n="${SCRAPES:-9}" \
        'BEGIN{bg=(c-b)/(t2-t1); v=((b-a)-bg*(t1-t0))/n; if (v<0) v=0; printf "%.1f\n", v}'
}

wait_http() {
    for _ in $(seq 1 100); do
        curl -s --max-time 1 -o /dev/null "http://$1/-/healthy" && return 0
        sleep 0.1
    done
    echo "daemon on $1 did not come up" >&2
    return 1
}

wait_round() { # addr want timeout_s pid
    local start=$SECONDS n=0
    while ((SECONDS - start < $3)); do
        kill -0 "$4" 2>/dev/null || { echo "daemon exited" >&2; return 1; }
        n=$(probes_done "$1")
        ((n >= $2)) && { echo $((SECONDS - start)); return 0; }
        sleep 2
    done
    echo "only $n of $2 probes after $3 s" >&2
    return 1
}

OM="application/openmetrics-text; version=1.0.0"
report() { # label pid addr round_s
    local rss hwm om txt gz omc gzc
    rss=$(kib VmRSS "$2")
    hwm=$(kib VmHWM "$2")
    om=$(scrape "$3" "$OM")
    txt=$(scrape "$3" "text/plain")
    gz=$(scrape "$3" "$OM" gzip)
    # second scrape of each: the first may include page faults of a fresh heap
    om=$(scrape "$3" "$OM")
    txt=$(scrape "$3" "text/plain")
    gz=$(scrape "$3" "$OM" gzip)
    omc=$(scrape_cpu "$3" "$OM" "$2")
    gzc=$(scrape_cpu "$3" "$OM" "$2" gzip)
    printf '| %s | %s | %s | %s | %s ms (%s KiB), CPU %s ms | %s ms (%s KiB) | %s ms (%s KiB), CPU %s ms |\n' "$1" "$4" \
        "$(mib "$rss")" "$(mib "$hwm")" \
        "${om% *}" "$((${om#* } / 1024))" "$omc" "${txt% *}" "$((${txt#* } / 1024))" \
        "${gz% *}" "$((${gz#* } / 1024))" "$gzc"
}

echo "binary: $BIN"
ROWS=()

# (a) idle: embedded default
PORT=$(free_port)
"$BIN" --web.listen-address="127.0.0.1:$PORT" --log.level=warn >"$WORK/idle.log" 2>&1 &
PIDS+=($!)
IDLE_PID=$!
wait_http "127.0.0.1:$PORT"
T=$(wait_round "127.0.0.1:$PORT" 1 30 "$IDLE_PID")
ROWS+=("$(report "idle (embedded default, 1 target)" "$IDLE_PID" "127.0.0.1:$PORT" "$T s")")
kill "$IDLE_PID"; wait "$IDLE_PID" 2>/dev/null || true

# (b) N targets: private Unbound + config
mkdir -p "$WORK/unbound"
mapfile -t ADDRS < <(awk 'NR>1{print $1}' "$LAB/listeners.tsv")
{
    cat <<EOF
server:
    verbosity: 0
    interface: $DNS_ADDR@$DNS_PORT
    outgoing-interface: $DNS_ADDR
    port: $DNS_PORT
    do-ip4: yes
    do-ip6: no
    access-control: 127.0.0.0/8 allow
    username: ""
    chroot: ""
    directory: "$WORK/unbound"
    pidfile: "$WORK/unbound/unbound.pid"
    logfile: "$WORK/unbound/unbound.log"
    use-syslog: no
    num-threads: 1
    so-reuseport: no
    root-hints: "$LAB/dns/root.hints"
    do-not-query-localhost: no
    module-config: "iterator"
    local-zone: "test." nodefault
    local-zone: "bench.test." static
    local-data: "bench.test. 300 IN SOA ns.bench.test. h.bench.test. 1 3600 600 86400 300"
EOF
    for ((i = 0; i < N; i++)); do
        printf '    local-data: "t%05d.bench.test. 300 IN A %s"\n' "$i" "${ADDRS[i % ${#ADDRS[@]}]}"
    done
    cat <<EOF
forward-zone:
    name: "."
    forward-addr: 127.53.0.3@53
remote-control:
    control-enable: no
EOF
} >"$WORK/unbound/unbound.conf"
unbound -d -c "$WORK/unbound/unbound.conf" >"$WORK/unbound/stdout.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 50); do
    kdig +short +time=1 +retry=0 -p "$DNS_PORT" @"$DNS_ADDR" t00000.bench.test A >/dev/null 2>&1 && break
    sleep 0.2
done
kdig +short +time=1 -p "$DNS_PORT" @"$DNS_ADDR" t00001.bench.test A | grep -q '^127\.25\.' ||
    { echo "private unbound does not answer" >&2; exit 1; }

{
    cat <<EOF
interval: 5m
timeout: 30s
concurrency: 32
dns:
  resolver: $DNS_ADDR:$DNS_PORT
  validation: upstream
smtp:
  helo_name: bench.mailtls.test
pkix:
  ca_file: $LAB/pki/root-ca.pem
targets:
EOF
    for ((i = 0; i < N; i++)); do
        printf '  - domain: t%05d.bench.test\n' "$i"
    done
} >"$WORK/targets.yml"

PORT=$(free_port)
"$BIN" --config.file="$WORK/targets.yml" --web.listen-address="127.0.0.1:$PORT" \
    --log.level=warn >"$WORK/targets.log" 2>&1 &
PIDS+=($!)
BIG_PID=$!
wait_http "127.0.0.1:$PORT"
T=$(wait_round "127.0.0.1:$PORT" "$N" "$ROUND_TIMEOUT" "$BIG_PID")
ROWS+=("$(report "$N targets, 1 round done" "$BIG_PID" "127.0.0.1:$PORT" "$T s")")
M=$(curl -s "http://127.0.0.1:$PORT/metrics")
OK=$(awk '/^mailtls_probes_total\{result="success"\}/{print $NF}' <<<"$M")
FAIL=$(awk '/^mailtls_probes_total\{result="failure"\}/{print $NF}' <<<"$M")
SERIES=$(grep -vc '^#' <<<"$M" || true)
DIALOGUES=$(awk '/^mailtls_smtp_dialogues_total/{print $NF}' <<<"$M")
# the gzip body, inflated, must be a valid exposition (promtool, when installed)
PROMTOOL="promtool: not installed"
if command -v promtool >/dev/null; then
    if curl -s --compressed -H "Accept: text/plain" "http://127.0.0.1:$PORT/metrics" |
        promtool check metrics >"$WORK/promtool.txt" 2>&1; then
        PROMTOOL="promtool check metrics (gzip scrape, inflated): OK"
    else
        PROMTOOL="promtool check metrics (gzip scrape, inflated): FAILED: $(head -5 "$WORK/promtool.txt")"
    fi
fi

echo
echo "| daemon | first round took | VmRSS MiB | VmHWM MiB | /metrics OpenMetrics | /metrics text | /metrics OpenMetrics, gzip |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo
echo "$N targets: probes success=${OK:-0} failure=${FAIL:-0}, SMTP dialogues ${DIALOGUES:-?}, $SERIES series"
echo "$PROMTOOL"
echo "goals: idle <= 32 MiB, $N targets <= 128 MiB (10,000), scrape <= 50 ms"
