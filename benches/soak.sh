#!/usr/bin/env bash
# Soak: the release daemon against a churning lab for SOAK_MINUTES (default 30). RSS, open file
# descriptors and the number of series must stay flat, and whatever vanishes from DNS, from a
# server or from the config must leave no series behind. See benches/README.md, "soak.sh".
#
# Isolation: everything (a lab of its own, the daemon, the churn) runs in a network namespace
# of its own (SOAK_NETNS, default mailtls-soak), created here and deleted on exit, with a lab
# directory of its own (SOAK_LAB, default /tmp/mailtls-soak-lab). The lab's fixed loopback
# addresses (127.53.0.x, 127.25.0.x) exist only inside that namespace, so a lab that other
# tests use on the host (tests/lab/up.sh LABDIR) is neither seen nor touched. up.sh/down.sh
# only write below LABDIR, add/remove addresses on the namespace's lo and kill processes named
# in LABDIR's pid files.
#
# The lab is built with LAB_DYNAMIC=1 (tests/lab/dyn-lib.sh): dyn.test. is signed by knotd
# itself and takes TSIG-signed dynamic updates (tests/lab/dyn-update.sh).
#
# Every SOAK_CHURN_SECONDS (60) one churn cycle, its steps in a random order (seeded, SOAK_SEED):
#   mx      the extra MX of the previous cycle (dK MX 20 mxJ.dyn.test) is deleted, a new one added
#   tlsa    the extra TLSA record of the previous cycle is deleted, a new one (unique digest) added
#   cert    one dyn listener's chain file is swapped (its other key) and Postfix reloaded
#   reload  the exporter's config is reloaded (SIGHUP and POST /-/reload in turn); every other
#           cycle on average a target (domain, [host] or [address]) is added or removed first
# and checks: once every target was probed again after the change had time to reach it
# (2 x TTL + 2 s; for a removed target: timeout + 2 s after the reload), the vanished MX host,
# record, certificate or target must have no series ("leftover"), and the new one must have
# some ("missing": the churn did not reach the exporter). Every SOAK_SAMPLE_SECONDS (60), a
# CSV row: VmRSS, VmHWM, fds, threads, series (all, and per family), DNS cache entries, probes.
#
# Usage: sudo benches/soak.sh                      (builds the release binary first)
# Env:   SOAK_MINUTES=30 SOAK_SAMPLE_SECONDS=60 SOAK_CHURN_SECONDS=60 SOAK_SEED=1
#        SOAK_INTERVAL=20s SOAK_TIMEOUT=10s SOAK_WARMUP_MINUTES (5, or 1 for runs under 20 min)
#        SOAK_WINDOW_MINUTES=10 SOAK_VALIDATION=local|upstream SOAK_NETNS=mailtls-soak
#        SOAK_LAB=/tmp/mailtls-soak-lab SOAK_OUT (default: a new /tmp/mailtls-soak.XXXXXX)
#        BIN=path/to/mailtls_exporter (skips the build)
# Output: SOAK_OUT/samples.csv, checks.log, summary.txt, daemon.log, config.yml. Exit 0 when the
# verdict is "flat" and no check failed, 1 otherwise.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export SOAK_MINUTES=${SOAK_MINUTES:-30}
export SOAK_SAMPLE_SECONDS=${SOAK_SAMPLE_SECONDS:-60}
export SOAK_CHURN_SECONDS=${SOAK_CHURN_SECONDS:-60}
export SOAK_SEED=${SOAK_SEED:-1}
export SOAK_INTERVAL=${SOAK_INTERVAL:-20s}
export SOAK_TIMEOUT=${SOAK_TIMEOUT:-10s}
export SOAK_WINDOW_MINUTES=${SOAK_WINDOW_MINUTES:-10}
export SOAK_VALIDATION=${SOAK_VALIDATION:-local}
export SOAK_NETNS=${SOAK_NETNS:-mailtls-soak}
export SOAK_LAB=${SOAK_LAB:-/tmp/mailtls-soak-lab}
if [ -z "${SOAK_WARMUP_MINUTES:-}" ]; then
    if [ "$SOAK_MINUTES" -ge 20 ]; then SOAK_WARMUP_MINUTES=5; else SOAK_WARMUP_MINUTES=1; fi
fi
export SOAK_WARMUP_MINUTES

die() { echo "soak.sh: $*" >&2; exit 2; }
say() { echo "soak.sh: [$(date +%H:%M:%S)] $*" >&2; }

# =============================================================================================
# outer part: build, namespace, run the inner part inside it, clean up
# =============================================================================================
if [ "${1:-}" != --inside ]; then
    [ "$(id -u)" = 0 ] || die "must run as root (network namespace, lab)"
    for c in ip curl kdig knsupdate keymgr knotd unbound postfix openssl awk; do
        command -v "$c" >/dev/null || die "missing command $c"
    done
    case $SOAK_LAB in /tmp/mailtls-lab | /tmp/mailtls-lab/) die "SOAK_LAB must not be the shared lab" ;; esac
    if [ -z "${BIN:-}" ]; then
        (cd "$HERE" && nice -n 10 cargo build --release --locked --quiet)
        BIN=${CARGO_TARGET_DIR:-$HERE/target}/release/mailtls_exporter
    fi
    [ -x "$BIN" ] || die "no binary at $BIN"
    BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
    export BIN
    export SOAK_OUT=${SOAK_OUT:-$(mktemp -d /tmp/mailtls-soak.XXXXXX)}
    mkdir -p "$SOAK_OUT"
    if ip netns list | awk '{print $1}' | grep -qxF "$SOAK_NETNS"; then
        die "network namespace $SOAK_NETNS exists (another soak running? else: ip netns del $SOAK_NETNS)"
    fi
    ip netns add "$SOAK_NETNS"
    outer_cleanup() {
        local rc=$?
        trap - EXIT INT TERM
        ip netns exec "$SOAK_NETNS" "$HERE/tests/lab/down.sh" "$SOAK_LAB" >/dev/null 2>&1 || true
        # anything still in the namespace was started by this script (the namespace is ours)
        for p in $(ip netns pids "$SOAK_NETNS" 2>/dev/null); do kill "$p" 2>/dev/null || true; done
        sleep 1
        for p in $(ip netns pids "$SOAK_NETNS" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        ip netns del "$SOAK_NETNS" 2>/dev/null || true
        echo "soak.sh: namespace $SOAK_NETNS removed; results in $SOAK_OUT" >&2
        exit "$rc"
    }
    trap outer_cleanup EXIT
    trap 'exit 130' INT TERM
    ip netns exec "$SOAK_NETNS" ip link set lo up
    say "binary $BIN; namespace $SOAK_NETNS; lab $SOAK_LAB; output $SOAK_OUT"
    ip netns exec "$SOAK_NETNS" bash "${BASH_SOURCE[0]}" --inside
    exit $?
fi

# =============================================================================================
# inner part (inside the namespace)
# =============================================================================================
OUT=$SOAK_OUT
LAB=$SOAK_LAB
PORT=19725
URL=http://127.0.0.1:$PORT
DPID=
inner_cleanup() {
    local rc=$?
    [ -n "$DPID" ] && { kill "$DPID" 2>/dev/null || true; wait "$DPID" 2>/dev/null || true; }
    "$HERE/tests/lab/down.sh" "$LAB" >/dev/null 2>&1 || true
    exit "$rc"
}
trap inner_cleanup EXIT

say "building the lab (LAB_DYNAMIC=1)"
LAB_DYNAMIC=1 nice -n 5 "$HERE/tests/lab/up.sh" "$LAB" >"$OUT/up.log" 2>&1 \
    || { tail -20 "$OUT/up.log" >&2; die "lab did not come up (see $OUT/up.log)"; }
# shellcheck disable=SC1091
. "$LAB/lab.env"
TTL=$LAB_TTL
PKI=$LAB_PKI_DIR
DYN_HOSTS=4
SETTLE=$((2 * TTL + 2))
tsecs() { local v=$1; case $v in *m) echo $((${v%m} * 60)) ;; *s) echo "${v%s}" ;; *) echo "$v" ;; esac; }
TIMEOUT_S=$(tsecs "$SOAK_TIMEOUT")
INTERVAL_S=$(tsecs "$SOAK_INTERVAL")
RELOAD_SETTLE=$((TIMEOUT_S + 2))
CHECK_DEADLINE=$((SETTLE + 3 * INTERVAL_S + TIMEOUT_S + 30))

RANDOM=$SOAK_SEED

# --- certificates: both chains of every dyn host, and the sha256 of each leaf (cert_info label)
mkdir -p "$OUT/chains"
declare -A LEAF_SHA CERT_CUR
for j in $(seq 1 $DYN_HOSTS); do
    h=mx$j.dyn.test
    cp "$PKI/$h.chain.pem" "$OUT/chains/$h.primary.pem"
    cp "$PKI/$h.alt.chain.pem" "$OUT/chains/$h.alt.pem"
    LEAF_SHA[$j,primary]=$(openssl x509 -in "$PKI/$h.pem" -outform DER | sha256sum | cut -d' ' -f1)
    LEAF_SHA[$j,alt]=$(openssl x509 -in "$PKI/$h.alt.pem" -outform DER | sha256sum | cut -d' ' -f1)
    CERT_CUR[$j]=primary
done

# --- config: every scenario domain except the pool's, d1-d4.dyn.test, and the pool members on
POOL_LABEL=("s02.dane.test" "[mx3.dyn.test]" "[127.25.0.104]")
POOL_YAML=("  - domain: s02.dane.test" "  - host: mx3.dyn.test" "  - address: 127.25.0.104")
POOL_ON=(1 1 1)
mapfile -t BASE_DOMAINS < <(awk -F'\t' 'NR>1 && $2!="" && $2!="s02.dane.test" && !seen[$2]++ {print $2}' "$LAB_SCENARIOS")
write_config() {
    local d j i
    {
        cat <<EOF
interval: $SOAK_INTERVAL
timeout: $SOAK_TIMEOUT
concurrency: 8
dns:
EOF
        if [ "$SOAK_VALIDATION" = local ]; then
            printf '  resolver: %s:53\n  validation: local\n  trust_anchor: %s\n' "$LAB_RESOLVER_NONVALIDATING" "$LAB_TRUST_ANCHOR"
        else
            printf '  resolver: %s:53\n  validation: upstream\n' "$LAB_RESOLVER_VALIDATING"
        fi
        cat <<EOF
smtp:
  helo_name: soak.mailtls.test
pkix:
  ca_file: $LAB_CA_BUNDLE
targets:
EOF
        for d in "${BASE_DOMAINS[@]}"; do echo "  - domain: $d"; done
        for j in $(seq 1 $DYN_HOSTS); do echo "  - domain: d$j.dyn.test"; done
        for i in "${!POOL_LABEL[@]}"; do [ "${POOL_ON[$i]}" = 1 ] && echo "${POOL_YAML[$i]}"; done
        true
    } >"$OUT/config.yml.new"
    mv -f "$OUT/config.yml.new" "$OUT/config.yml"
}
write_config
n_targets() { echo $(( ${#BASE_DOMAINS[@]} + DYN_HOSTS + POOL_ON[0] + POOL_ON[1] + POOL_ON[2] )); }

# --- the daemon
"$BIN" check-config --config.file="$OUT/config.yml" >/dev/null || die "config rejected: $OUT/config.yml"
"$BIN" --config.file="$OUT/config.yml" --web.listen-address="127.0.0.1:$PORT" --log.level=info \
    >"$OUT/daemon.log" 2>&1 &
DPID=$!
for _ in $(seq 1 100); do curl -s --max-time 1 -o /dev/null "$URL/-/healthy" && break; sleep 0.1; done
curl -s --max-time 2 -o /dev/null "$URL/-/healthy" || die "daemon did not come up (see $OUT/daemon.log)"
say "daemon pid $DPID, $(n_targets) targets, interval $SOAK_INTERVAL, validation $SOAK_VALIDATION"

M=$OUT/metrics.txt
fetch() { curl -s --max-time 20 "$URL/metrics" >"$M.tmp" && mv -f "$M.tmp" "$M"; }
# lines (not comments) containing both fixed strings, case-insensitive
count_both() { awk -v a="${1,,}" -v b="${2,,}" 'substr($0,1,1)!="#" { l=tolower($0); if (index(l,a) && (b=="" || index(l,b))) n++ } END{print n+0}' "$M"; }
# oldest probe completion over all targets that have one (Unix seconds, integer)
min_probe_ts() { awk '/^mailtls_probe_timestamp_seconds\{/ { v=$NF+0; if (m=="" || v<m) m=v } END{printf "%d\n", (m==""?0:m)}' "$M"; }
n_probe_ts() { grep -c '^mailtls_probe_timestamp_seconds{' "$M" || true; }

# wait for the first complete round
say "waiting for the first round"
for _ in $(seq 1 120); do
    fetch || true
    [ -f "$M" ] && [ "$(n_probe_ts)" -ge "$(n_targets)" ] && break
    sleep 1
done
[ "$(n_probe_ts)" -ge "$(n_targets)" ] || die "first round incomplete after 120 s"

# --- checks: arrays indexed by check number
CK_T=(); CK_WAIT=(); CK_A=(); CK_B=(); CK_NEG=(); CK_DESC=(); CK_STATE=()
PASSED=0; LEFTOVER=0; MISSING=0; UNRESOLVED=0
add_check() { # wait(probe|reload) neg(1: must vanish, 0: must appear) A B description
    CK_T+=("$(date +%s)"); CK_WAIT+=("$1"); CK_NEG+=("$2"); CK_A+=("$3"); CK_B+=("$4"); CK_DESC+=("$5"); CK_STATE+=(pending)
}
eval_checks() {
    local now i ready n minp
    now=$(date +%s)
    minp=$(min_probe_ts)
    for i in "${!CK_T[@]}"; do
        [ "${CK_STATE[$i]}" = pending ] || continue
        if [ "${CK_WAIT[$i]}" = probe ]; then
            ready=$(( minp > CK_T[i] + SETTLE ? 1 : 0 ))
        else
            ready=$(( now >= CK_T[i] + RELOAD_SETTLE ? 1 : 0 ))
        fi
        if [ "$ready" = 1 ]; then
            n=$(count_both "${CK_A[$i]}" "${CK_B[$i]}")
            if [ "${CK_NEG[$i]}" = 1 ] && [ "$n" -gt 0 ]; then
                CK_STATE[i]=leftover; LEFTOVER=$((LEFTOVER + 1))
                { echo "LEFTOVER +$((now - START))s: ${CK_DESC[$i]}: $n series"
                  awk -v a="${CK_A[$i],,}" -v b="${CK_B[$i],,}" 'substr($0,1,1)!="#" { l=tolower($0); if (index(l,a) && (b=="" || index(l,b))) print "    " $0 }' "$M" | head -5; } >>"$OUT/checks.log"
            elif [ "${CK_NEG[$i]}" = 0 ] && [ "$n" -eq 0 ]; then
                CK_STATE[i]=missing; MISSING=$((MISSING + 1))
                echo "MISSING +$((now - START))s: ${CK_DESC[$i]}: no series" >>"$OUT/checks.log"
            else
                CK_STATE[i]=ok; PASSED=$((PASSED + 1))
                echo "ok +$((now - START))s: ${CK_DESC[$i]} ($n series)" >>"$OUT/checks.log"
            fi
        elif [ "$now" -gt $((CK_T[i] + CHECK_DEADLINE)) ]; then
            CK_STATE[i]=unresolved; UNRESOLVED=$((UNRESOLVED + 1))
            echo "UNRESOLVED +$((now - START))s: ${CK_DESC[$i]}: no new probe of every target (oldest probe $minp, change at ${CK_T[$i]})" >>"$OUT/checks.log"
        fi
    done
}

# --- churn steps
upd() { "$HERE/tests/lab/dyn-update.sh" "$LAB" "$@" >>"$OUT/churn.log" 2>&1 || { echo "update failed: $*" >>"$OUT/churn.log"; UPD_FAIL=$((UPD_FAIL + 1)); }; }
UPD_FAIL=0; RELOADS=0; RELOAD_FAIL=0; CYCLES=0
EXTRA_MX=""     # "K J": dK.dyn.test MX 20 mxJ.dyn.test
EXTRA_TLSA=""   # "J HEX": _25._tcp.mxJ.dyn.test TLSA 3 1 1 HEX
churn_mx() {
    local k j ok kk jj
    if [ -n "$EXTRA_MX" ]; then
        read -r k j <<<"$EXTRA_MX"
        upd "del d$k.dyn.test. MX 20 mx$j.dyn.test."
        add_check probe 1 "target=\"d$k.dyn.test\"" "mx=\"mx$j.dyn.test\"" "MX host mx$j removed from d$k"
    fi
    while :; do
        kk=$((RANDOM % DYN_HOSTS + 1)); jj=$((RANDOM % DYN_HOSTS + 1))
        [ "$kk" != "$jj" ] && [ "$kk $jj" != "$EXTRA_MX" ] && break
    done
    upd "add d$kk.dyn.test. $TTL MX 20 mx$jj.dyn.test."
    add_check probe 0 "target=\"d$kk.dyn.test\"" "mx=\"mx$jj.dyn.test\"" "MX host mx$jj added to d$kk"
    EXTRA_MX="$kk $jj"
    echo "+$(( $(date +%s) - START ))s mx: d$kk MX 20 mx$jj" >>"$OUT/churn.log"
}
churn_tlsa() {
    local j hex jj new
    if [ -n "$EXTRA_TLSA" ]; then
        read -r j hex <<<"$EXTRA_TLSA"
        upd "del _25._tcp.mx$j.dyn.test. TLSA 3 1 1 $hex"
        add_check probe 1 "$hex" "" "TLSA 3 1 1 ${hex:0:12}... removed from mx$j"
    fi
    jj=$((RANDOM % DYN_HOSTS + 1))
    new=$(printf 'soak-%s-%s' "$SOAK_SEED" "$CYCLES" | sha256sum | cut -d' ' -f1)
    upd "add _25._tcp.mx$jj.dyn.test. $TTL TLSA 3 1 1 $new"
    add_check probe 0 "$new" "" "TLSA 3 1 1 ${new:0:12}... added to mx$jj"
    EXTRA_TLSA="$jj $new"
    echo "+$(( $(date +%s) - START ))s tlsa: mx$jj 3 1 1 ${new:0:12}..." >>"$OUT/churn.log"
}
churn_cert() {
    local j old new h
    j=$((RANDOM % DYN_HOSTS + 1)); h=mx$j.dyn.test
    old=${CERT_CUR[$j]}; new=primary; [ "$old" = primary ] && new=alt
    cp "$OUT/chains/$h.$new.pem" "$PKI/$h.chain.pem.new"
    mv -f "$PKI/$h.chain.pem.new" "$PKI/$h.chain.pem"
    postfix -c "$LAB_POSTFIX_CONFIG" reload >>"$OUT/churn.log" 2>&1 || echo "postfix reload failed" >>"$OUT/churn.log"
    CERT_CUR[$j]=$new
    add_check probe 1 "${LEAF_SHA[$j,$old]}" "" "certificate ${LEAF_SHA[$j,$old]:0:12}... ($old) no longer served by $h"
    add_check probe 0 "${LEAF_SHA[$j,$new]}" "" "certificate ${LEAF_SHA[$j,$new]:0:12}... ($new) served by $h"
    echo "+$(( $(date +%s) - START ))s cert: $h now serves its $new chain" >>"$OUT/churn.log"
}
churn_reload() {
    local i="" what="" before code
    if [ $((RANDOM % 2)) = 0 ]; then
        i=$((RANDOM % ${#POOL_LABEL[@]}))
        POOL_ON[i]=$((1 - POOL_ON[i]))
        what=" (${POOL_LABEL[$i]} $([ "${POOL_ON[$i]}" = 1 ] && echo added || echo removed))"
    fi
    write_config
    RELOADS=$((RELOADS + 1))
    if [ $((RELOADS % 2)) = 0 ]; then
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 -X POST "$URL/-/reload" || true)
        [ "$code" = 200 ] || { RELOAD_FAIL=$((RELOAD_FAIL + 1)); echo "POST /-/reload: HTTP $code" >>"$OUT/churn.log"; }
        what="POST /-/reload$what"
    else
        before=$(awk '/^mailtls_config_last_reload_success_timestamp_seconds /{print $NF}' "$M")
        kill -HUP "$DPID"
        for _ in $(seq 1 50); do
            sleep 0.2; fetch || continue
            [ "$(awk '/^mailtls_config_last_reload_success_timestamp_seconds /{print $NF}' "$M")" != "$before" ] && break
        done
        [ "$(awk '/^mailtls_config_last_reload_success_timestamp_seconds /{print $NF}' "$M")" != "$before" ] \
            || { RELOAD_FAIL=$((RELOAD_FAIL + 1)); echo "SIGHUP: no successful reload seen" >>"$OUT/churn.log"; }
        what="SIGHUP$what"
    fi
    if [ -n "${i:-}" ]; then
        add_check reload $((1 - POOL_ON[i])) "target=\"${POOL_LABEL[$i]}\"" "" \
            "target ${POOL_LABEL[$i]} $([ "${POOL_ON[$i]}" = 1 ] && echo added by || echo removed by) reload"
    fi
    echo "+$(( $(date +%s) - START ))s reload: $what" >>"$OUT/churn.log"
}
churn() {
    local steps=(mx tlsa cert reload) i j t s
    for ((i = ${#steps[@]} - 1; i > 0; i--)); do   # Fisher-Yates with the seeded RANDOM
        j=$((RANDOM % (i + 1))); t=${steps[i]}; steps[i]=${steps[j]}; steps[j]=$t
    done
    echo "+$(( $(date +%s) - START ))s cycle $CYCLES: ${steps[*]}" >>"$OUT/churn.log"
    for s in "${steps[@]}"; do "churn_$s"; done
    CYCLES=$((CYCLES + 1))
}

# --- samples
FAMILIES=(mailtls_mx_info mailtls_cert_info mailtls_tlsa_record_match mailtls_dane_status mailtls_dnssec_status mailtls_smtp_up mailtls_target_info)
CSV=$OUT/samples.csv
{
    printf 'elapsed_s,rss_kib,hwm_kib,fds,threads,series'
    for f in "${FAMILIES[@]}"; do printf ',%s' "${f#mailtls_}"; done
    printf ',dns_cache_entries,probes_total,targets,cycles,checks_passed,leftover,missing,unresolved\n'
} >"$CSV"
status_kib() { awk -v k="$1:" '$1==k {print $2}' "/proc/$DPID/status"; }
sample() {
    local el=$(( $(date +%s) - START )) rss hwm fds thr series fam cache probes
    rss=$(status_kib VmRSS); hwm=$(status_kib VmHWM); thr=$(status_kib Threads)
    fds=$(find "/proc/$DPID/fd" -mindepth 1 -maxdepth 1 | wc -l)
    series=$(grep -vc '^#' "$M" || true)
    fam=$(awk -v list="${FAMILIES[*]}" 'BEGIN{n=split(list,F," ")} substr($0,1,1)!="#" { name=$1; sub(/[{ ].*/,"",name); c[name]++ }
        END{ for (i=1;i<=n;i++) printf ",%d", c[F[i]]+0 }' "$M")
    cache=$(awk '/^mailtls_dns_cache_entries /{print $NF}' "$M")
    probes=$(awk '/^mailtls_probes_total\{/{s+=$NF} END{print s+0}' "$M")
    LAST_SAMPLE=$(date +%s)
    echo "$el,$rss,$hwm,$fds,$thr,$series$fam,${cache:-},$probes,$(n_targets),$CYCLES,$PASSED,$LEFTOVER,$MISSING,$UNRESOLVED" >>"$CSV"
    say "+$((el / 60))m$((el % 60))s rss $((rss / 1024)) MiB (hwm $((hwm / 1024))), fds $fds, series $series, cycles $CYCLES, checks ok $PASSED leftover $LEFTOVER missing $MISSING unresolved $UNRESOLVED"
}

# --- main loop: samples at 0, S, 2S, ...; churn half a sample period after each sample
START=$(date +%s)
END=$((START + SOAK_MINUTES * 60))
NEXT_SAMPLE=$START
NEXT_CHURN=$((START + SOAK_CHURN_SECONDS / 2))
: >"$OUT/checks.log"; : >"$OUT/churn.log"
say "soak for $SOAK_MINUTES min: sample every $SOAK_SAMPLE_SECONDS s, churn every $SOAK_CHURN_SECONDS s, seed $SOAK_SEED"
while :; do
    now=$(date +%s)
    kill -0 "$DPID" 2>/dev/null || die "the daemon exited (see $OUT/daemon.log)"
    fetch || say "scrape failed"
    eval_checks
    if [ "$now" -ge "$NEXT_SAMPLE" ]; then
        sample
        NEXT_SAMPLE=$((NEXT_SAMPLE + SOAK_SAMPLE_SECONDS))
    fi
    [ "$now" -ge "$END" ] && break
    if [ "$now" -ge "$NEXT_CHURN" ] && [ "$now" -lt $((END - SOAK_CHURN_SECONDS / 2)) ]; then
        churn
        fetch || true
        NEXT_CHURN=$((NEXT_CHURN + SOAK_CHURN_SECONDS))
    fi
    sleep 2
done
# let the last changes' checks resolve (no churn any more)
for _ in $(seq 1 $((CHECK_DEADLINE / 2 + 2))); do
    pending=0
    for s in "${CK_STATE[@]}"; do [ "$s" = pending ] && pending=1; done
    [ $pending = 0 ] && break
    sleep 2; fetch || true; eval_checks
done
[ $(( $(date +%s) - LAST_SAMPLE )) -lt 10 ] || sample

# --- summary
WARM_SAMPLES=$(( SOAK_WARMUP_MINUTES * 60 / SOAK_SAMPLE_SECONDS ))
{
    echo "soak: $SOAK_MINUTES min, $CYCLES churn cycles, $RELOADS reloads ($RELOAD_FAIL failed), dynamic update failures $UPD_FAIL"
    echo "checks: $PASSED passed, $LEFTOVER leftover (vanished but still exported), $MISSING missing (change never seen), $UNRESOLVED unresolved"
    awk -F, -v warm="$WARM_SAMPLES" -v winmin="$SOAK_WINDOW_MINUTES" -v per="$SOAK_SAMPLE_SECONDS" '
    NR==1 { for (i=1;i<=NF;i++) col[i]=$i; ncol=NF; next }
    { n++; for (i=1;i<=NF;i++) v[n,i]=$i }
    END {
        # windows after warm-up: first W and last W samples (W = window minutes, at most a third)
        avail = n - warm; if (avail < 2) { warm = 0; avail = n }
        W = int(winmin * 60 / per); if (W > int(avail / 3)) W = int(avail / 3); if (W < 1) W = 1
        f0 = warm + 1; f1 = warm + W; l0 = n - W + 1; l1 = n
        printf "samples: %d (warm-up %d, windows of %d: first #%d-#%d, last #%d-#%d)\n\n", n, warm, W, f0, f1, l0, l1
        printf "%-22s %10s %10s %10s %10s %12s %12s %12s %12s\n", "column", "first", "last", "min", "max", "first-win min", "first-win max", "last-win min", "last-win max"
        for (i=2;i<=ncol;i++) {
            if (col[i] ~ /^(cycles|checks_passed|leftover|missing|unresolved|probes_total)$/) continue
            mn=""; mx=""; for (r=1;r<=n;r++) { x=v[r,i]+0; if (mn==""||x<mn) mn=x; if (mx==""||x>mx) mx=x }
            fmn=""; fmx=""; for (r=f0;r<=f1;r++) { x=v[r,i]+0; if (fmn==""||x<fmn) fmn=x; if (fmx==""||x>fmx) fmx=x }
            lmn=""; lmx=""; for (r=l0;r<=l1;r++) { x=v[r,i]+0; if (lmn==""||x<lmn) lmn=x; if (lmx==""||x>lmx) lmx=x }
            printf "%-22s %10s %10s %10s %10s %12s %12s %12s %12s\n", col[i], v[1,i], v[n,i], mn, mx, fmn, fmx, lmn, lmx
            FMN[col[i]]=fmn; FMX[col[i]]=fmx; LMN[col[i]]=lmn; LMX[col[i]]=lmx
        }
        print ""
        ok = 1
        r = (LMX["rss_kib"] <= 1.10 * FMX["rss_kib"]); ok = ok && r
        printf "RSS     %s: last-window max %.1f MiB <= 1.10 x first-window max %.1f MiB\n", r?"flat":"GROWING", LMX["rss_kib"]/1024, FMX["rss_kib"]/1024
        r = (LMN["fds"] <= FMN["fds"] + 2); ok = ok && r
        printf "fds     %s: last-window floor %d <= first-window floor %d + 2 (peak %d vs %d: probes in flight)\n", r?"flat":"GROWING", LMN["fds"], FMN["fds"], LMX["fds"], FMX["fds"]
        r = (LMX["series"] <= 1.02 * FMX["series"]); ok = ok && r
        printf "series  %s: last-window max %d <= 1.02 x first-window max %d\n", r?"flat":"GROWING", LMX["series"], FMX["series"]
        r = (LMX["threads"] <= FMX["threads"] + 2); ok = ok && r
        printf "threads %s: last-window max %d <= first-window max %d + 2\n", r?"flat":"GROWING", LMX["threads"], FMX["threads"]
        printf "VERDICT_FLAT=%d\n", ok
    }' "$CSV"
    echo
    echo "curve (one line per sample):"
    echo "  min   RSS MiB  HWM MiB  fds  series  dns_cache  cycles"
    awk -F, 'NR>1 { printf "  %5.1f %8.1f %8.1f %4d %7d %10s %7d\n", $1/60, $2/1024, $3/1024, $4, $6, $(NF-7), $(NF-4) }' "$CSV"
} >"$OUT/summary.txt"
FLAT=$(sed -n 's/^VERDICT_FLAT=//p' "$OUT/summary.txt")
sed -i '/^VERDICT_FLAT=/d' "$OUT/summary.txt"
if [ "$FLAT" = 1 ] && [ $LEFTOVER = 0 ] && [ $MISSING = 0 ] && [ $UNRESOLVED = 0 ] && [ $UPD_FAIL = 0 ] && [ $RELOAD_FAIL = 0 ]; then
    echo "verdict: FLAT, no series left behind" >>"$OUT/summary.txt"; rc=0
else
    echo "verdict: NOT CLEAN (see the lines above and $OUT/checks.log)" >>"$OUT/summary.txt"; rc=1
fi
cat "$OUT/summary.txt"
exit $rc
