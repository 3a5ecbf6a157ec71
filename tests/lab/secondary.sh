#!/usr/bin/env bash
# Hold back or release the lab's secondary knotd (127.53.0.4, dyn.test. by zone transfer from
# the primary on 127.53.0.1; see dyn-lib.sh). A held secondary keeps serving the zone it has
# and ignores NOTIFY and refresh until released: a lagging authoritative server.
#
# usage: tests/lab/secondary.sh LABDIR hold|release|status|wait
#   hold     knotc zone-freeze dyn.test. (running events finish, new ones are postponed)
#   release  knotc zone-thaw + zone-refresh, then wait until both serve the same SOA serial
#   status   prints "primary SERIAL", "secondary SERIAL" and "in-sync" or "lagging"
#   wait     waits (up to 10 s) until both serve the same serial; exit 1 if they do not
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 LABDIR hold|release|status|wait" >&2; exit 2; }
LAB=$(cd "$1" && pwd)
env_of() { sed -n "s/^$1=//p" "$LAB/lab.env"; }
PRIMARY=$(env_of LAB_DYN_PRIMARY)
SECONDARY=$(env_of LAB_DYN_SECONDARY)
SOCK=$(env_of LAB_DYN_SECONDARY_SOCKET)
[ -n "$SECONDARY" ] && [ -n "$SOCK" ] || { echo "secondary.sh: no secondary in $LAB/lab.env (lab built with LAB_DYNAMIC=0?)" >&2; exit 2; }
ZONE=dyn.test.
CONF=$LAB/knot2/knot.conf

serial() { kdig +short +norecurse +timeout=1 +retry=0 @"$1" "$ZONE" SOA 2>/dev/null | awk '{print $3}'; }
knotc2() { knotc -c "$CONF" -s "$SOCK" "$@"; }
wait_sync() {
    local p s
    for _ in $(seq 1 100); do
        p=$(serial "$PRIMARY"); s=$(serial "$SECONDARY")
        [ -n "$p" ] && [ "$p" = "$s" ] && return 0
        sleep 0.1
    done
    echo "secondary.sh: not in sync after 10 s: primary '${p:-}', secondary '${s:-}'" >&2
    return 1
}

case $2 in
    hold) knotc2 zone-freeze "$ZONE" >/dev/null ;;
    release)
        knotc2 zone-thaw "$ZONE" >/dev/null
        knotc2 zone-refresh "$ZONE" >/dev/null
        wait_sync
        ;;
    status)
        p=$(serial "$PRIMARY"); s=$(serial "$SECONDARY")
        echo "primary ${p:-none}"
        echo "secondary ${s:-none}"
        if [ -n "$p" ] && [ "$p" = "$s" ]; then echo in-sync; else echo lagging; fi
        ;;
    wait) wait_sync ;;
    *) echo "usage: $0 LABDIR hold|release|status|wait" >&2; exit 2 ;;
esac
