#!/usr/bin/env bash
# Turn posttls-finger's findings into the exporter's verdict words, one line per MX address:
#
#     MXHOST ADDRESS VERDICT          (VERDICT: verified unauthenticated failed dns_failure none)
#
# usage: tests/lab/verdicts.sh LABDIR DESTINATION        (DESTINATION: domain or [host])
#
# posttls-finger stops at the first address it can connect to, so this script runs it once on
# DESTINATION (the verdict of the first address, in Postfix's own MX order, with the MX RRset's
# DNSSEC state) and then once per MX host with the [host] syntax (no MX lookup, DANE with TLSA at
# _25._tcp.host), repeating a [host] run until every address of that host has been reached
# (posttls-finger shuffles a host's addresses). The mapping is documented in README.md
# ("From posttls-finger output to a verdict"):
#   "Verified|Trusted TLS connection established"                       -> verified
#   "all TLSA records unusable, fallback to unauthenticated TLS" or
#   "no usable TLSA records found", and a TLS connection established    -> unauthenticated
#   "no TLSA records found" (secure NODATA/NXDOMAIN or insecure host)     -> none
#   otherwise (usable TLSA in force): Untrusted TLS, no STARTTLS, or a
#   failed handshake                                                      -> failed
#   "TLSA lookup error for HOST:25"                                       -> dns_failure (every address of HOST)
#   "Destination address lookup failed: ... name=HOST type=A"             -> HOST - dns_failure
#   "Destination address lookup failed: ... type=MX"                      -> - - dns_failure
#   "Destination address lookup failed: ... (nullMX)"                     -> - - none
#   "Failed to establish session ... connect to ..." (TCP failure)        -> HOST ADDRESS unreachable
# Runs posttls-finger with -v and without -c (still -l dane): with -c it prints nothing at all for
# a server without STARTTLS, and the "no (usable) TLSA records found" lines exist only with -v.
# The address lists of hosts come from the lab's validating resolver (only to know when every
# address has been reached, and for TLSA lookup errors, where posttls-finger connects nowhere).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 LABDIR DESTINATION" >&2; exit 2; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB=$(cd "$1" && pwd); DEST=$2
VAL=$(sed -n 's/^LAB_RESOLVER_VALIDATING=//p' "$LAB/lab.env")
MAX_TRIES=${VERDICTS_MAX_TRIES:-24}

TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
declare -A VERDICT=()   # "host address" -> verdict
ORDER=()                # keys in first-seen order
record() {  # host address verdict (first verdict per key wins: the domain run comes first)
    local key="$1 $2"
    if [ -z "${VERDICT[$key]+x}" ]; then VERDICT[$key]=$3; ORDER+=("$key"); fi
}
addresses_of() {  # host -> IPv4/IPv6 addresses via the validating lab resolver (CNAMEs followed)
    { kdig +timeout=2 +retry=1 +short @"$VAL" "$1" A; kdig +timeout=2 +retry=1 +short @"$VAL" "$1" AAAA; } 2>/dev/null \
        | grep -E '^[0-9.]+$|^[0-9a-fA-F:]+:[0-9a-fA-F:.]*$' | sort -u || true
}

# run posttls-finger on one destination, classify, record; prints the connected "host addr" (if any)
run_one() {
    local dest=$1 out=$TMP/out host addr tls=0 v line h reason
    POSTTLS_CHAT=1 "$HERE/posttls.sh" "$LAB" "$dest" -v >"$out" 2>&1 || true
    cat "$out" >>"$TMP/all"
    # hosts skipped because their TLSA lookup failed
    while IFS= read -r h; do
        for addr in $(addresses_of "$h"); do record "$h" "$addr" dns_failure; done
        [ -n "$(addresses_of "$h")" ] || record "$h" - dns_failure
    done < <(sed -nE 's/.*Failed to establish session to .* via ([^ :]+):?[0-9]*: TLSA lookup error for .*/\1/p' "$out")
    # hosts/addresses that refused the TCP connection
    while IFS= read -r line; do
        h=${line%%\[*}; addr=${line#*\[}; addr=${addr%%\]*}
        record "$h" "$addr" unreachable
    done < <(sed -nE 's/.*Failed to establish session to .* via [^ ]+: connect to ([^ ]+\[[^]]+\]):.*/\1/p' "$out")
    # no address at all
    if line=$(grep -m1 'Destination address lookup failed: ' "$out"); then
        reason=${line#*Destination address lookup failed: }
        case $reason in
            *nullMX*) record - - none ;;
            *type=MX*) record - - dns_failure ;;
            *name=*type=A*|*name=*type=AAAA*)
                h=$(sed -nE 's/.*name=([^ ]+) type=A.*/\1/p' <<<"$reason"); record "${h:--}" - dns_failure ;;
            *) record - - dns_failure ;;
        esac
    fi
    line=$(sed -nE '/Connected to /{s/.*Connected to ([^ ]+)\[([^]]+)\]:[0-9]+.*/\1 \2/p;q}' "$out")
    [ -n "$line" ] || return 0
    host=${line% *}; addr=${line#* }
    grep -qE '(Verified|Trusted|Untrusted|Anonymous) TLS connection established to ' "$out" && tls=1
    if grep -qE '(Verified|Trusted) TLS connection established to ' "$out"; then v=verified
    elif grep -qE 'all TLSA records unusable, fallback to unauthenticated TLS|no usable TLSA records found' "$out"; then
        if [ $tls = 1 ]; then v=unauthenticated; else v=failed; fi
    elif grep -q 'no TLSA records found' "$out"; then v=none
    else v=failed
    fi
    record "$host" "$addr" "$v"
    echo "$host $addr"
}

: >"$TMP/all"
run_one "$DEST" >/dev/null
# the MX hosts posttls-finger resolved, in its order (MX preference order)
mapfile -t HOSTS < <(sed -nE 's/.*addr_one: host ([^ ]+)$/\1/p' "$TMP/all" | awk '!seen[$0]++')
for h in "${HOSTS[@]+"${HOSTS[@]}"}"; do
    mapfile -t want < <(addresses_of "$h")
    for ((i = 0; i < MAX_TRIES; i++)); do
        [ -n "${VERDICT[$h -]+x}" ] && break                   # address lookup failed
        if [ ${#want[@]} -eq 0 ]; then [ $i -gt 0 ] && break; else
            missing=0
            for a in "${want[@]}"; do [ -n "${VERDICT[$h $a]+x}" ] || missing=1; done
            [ $missing = 0 ] && break
        fi
        run_one "[$h]" >/dev/null
    done
    for a in "${want[@]+"${want[@]}"}"; do
        [ -n "${VERDICT[$h $a]+x}" ] || [ -n "${VERDICT[$h -]+x}" ] \
            || echo "verdicts.sh: warning: $h $a never reached in $MAX_TRIES runs" >&2
    done
done
[ ${#ORDER[@]} -gt 0 ] || record - - error
# print: MX-level line first, then hosts in MX order, addresses in version-sort order
for key in "${ORDER[@]}"; do
    h=${key%% *}; a=${key#* }; idx=0
    if [ "$h" != - ]; then
        idx=999
        for j in "${!HOSTS[@]}"; do [ "${HOSTS[$j]}" = "$h" ] && { idx=$((j + 1)); break; }; done
    fi
    printf '%03d\t%s\t%s\t%s\n' "$idx" "$h" "$a" "${VERDICT[$key]}"
done | sort -t$'\t' -k1,1n -k3,3V | cut -f2- | tr '\t' ' '
