#!/usr/bin/env bash
# Send one dynamic update (RFC 2136, TSIG-signed) to the lab's Knot-signed zone dyn.test.
# (built by tests/lab/up.sh LABDIR unless LAB_DYNAMIC=0). knotd applies it, re-signs the
# changed RRsets and answers; the script then waits until knotd serves the new SOA serial.
#
# usage: tests/lab/dyn-update.sh LABDIR 'add RR' | 'del RR' ...
#   add: 'add mx9.dyn.test. 5 A 127.25.0.109'   (owner, TTL, type, data)
#   del: 'del d1.dyn.test. MX 20 mx2.dyn.test.' (one record) or 'del d1.dyn.test. MX' (the RRset)
# All arguments go into one update message (one new serial). Exit 0 when knotd answered
# NOERROR, 1 otherwise (knsupdate's message on stderr). Owners must be absolute names.
set -euo pipefail

[ $# -ge 2 ] || { echo "usage: $0 LABDIR 'add RR'|'del RR' ..." >&2; exit 2; }
LAB=$(cd "$1" && pwd)
shift
KEY=$LAB/dyn/tsig.key
[ -r "$KEY" ] || { echo "dyn-update.sh: $KEY missing (lab built with LAB_DYNAMIC=0?)" >&2; exit 2; }
AUTH=$(sed -n 's/^LAB_AUTH_ADDR=//p' "$LAB/lab.env")
ZONE=dyn.test.

serial() { kdig +short +timeout=2 +retry=1 @"$AUTH" "$ZONE" SOA | awk '{print $3}'; }
before=$(serial)

script="server $AUTH 53
zone $ZONE
"
for op in "$@"; do
    case $op in
        add\ *) script+="update add ${op#add }"$'\n' ;;
        del\ *) script+="update delete ${op#del }"$'\n' ;;
        *) echo "dyn-update.sh: expected 'add RR' or 'del RR', got '$op'" >&2; exit 2 ;;
    esac
done
script+="send
answer
"
out=$(knsupdate -t 5 -r 1 -k "$KEY" <<<"$script" 2>&1) || { echo "$out" >&2; exit 1; }
grep -q 'status: NOERROR' <<<"$out" || { echo "$out" >&2; exit 1; }

# knotd answers after applying and signing; wait (up to 5 s) until the new serial is served
for _ in $(seq 1 50); do
    now=$(serial)
    [ -n "$now" ] && [ "$now" != "$before" ] && exit 0
    sleep 0.1
done
echo "dyn-update.sh: NOERROR, but the SOA serial of $ZONE is still $before" >&2
exit 1
