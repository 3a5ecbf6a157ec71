#!/usr/bin/env bash
# Compare verdicts.sh (posttls-finger) with the expect column of scenarios.tsv, for every scenario
# (or the ids given). Exit 1 on any difference. Also cross-checks the [host] form for each MX
# host: the same verdicts must come out when posttls-finger is pointed at the host directly.
#
# usage: tests/lab/check.sh LABDIR [ID...]
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 LABDIR [ID...]" >&2; exit 2; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB=$1; shift
rc=0
while IFS=$'\t' read -r id domain desc expect; do
    [ "$id" = id ] && continue
    if [ $# -gt 0 ]; then printf '%s\n' "$@" | grep -qxF "$id" || continue; fi
    got=$("$HERE/verdicts.sh" "$LAB" "$domain" | awk '{printf "%s%s/%s=%s", (NR>1?",":""), $1, $2, $3}')
    if [ "$got" = "$expect" ]; then status=ok; else status=MISMATCH; rc=1; fi
    printf '%-10s %-22s %-8s %s\n' "$id" "$domain" "$status" "$got"
    [ $status = ok ] || printf '%-10s %-22s %-8s %s\n' "" "" expected "$expect"
    # [host] form, per MX host of the expectation
    for h in $(tr ',' '\n' <<<"$expect" | cut -d/ -f1 | grep -v '^-$' | awk '!s[$0]++'); do
        want=$(tr ',' '\n' <<<"$expect" | grep "^$h/" | paste -sd,)
        hv=$("$HERE/verdicts.sh" "$LAB" "[$h]" | awk '{printf "%s%s/%s=%s", (NR>1?",":""), $1, $2, $3}')
        if [ "$hv" != "$want" ]; then
            printf '%-10s %-22s %-8s %s (expected %s)\n' "" "[$h]" HOSTDIFF "$hv" "$want"; rc=1
        fi
    done
done <"$HERE/scenarios.tsv"
exit $rc
