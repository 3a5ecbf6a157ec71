#!/usr/bin/env bash
# Stop the mailtls_exporter test lab started by up.sh in LABDIR: Postfix (postfix -c DIR stop),
# knotd, nginx, both Unbounds (by their pid files), and remove the loopback addresses up.sh added.
# Safe to run when nothing runs. Kills only processes named in LABDIR's pid files.
#
# usage: tests/lab/down.sh LABDIR
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 LABDIR" >&2; exit 2; }
[ -d "$1" ] || exit 0
LAB=$(cd "$1" && pwd)

# TERM the process named in a pid file (only if its name is the expected one); remember it
PIDS=()
term_pid() {
    local pidfile=$1 name=$2 pid
    [ -f "$pidfile" ] || return 0
    pid=$(tr -dc '0-9' <"$pidfile")
    if [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$name" ]; then
        kill "$pid" 2>/dev/null || true
        PIDS+=("$pid:$name")
    fi
}

PF=$LAB/postfix
if [ -f "$PF/main.cf" ]; then
    postfix -c "$PF" stop >/dev/null 2>&1 || true     # asynchronous: master exits on its own
    term_pid "$LAB/postfix-spool/pid/master.pid" master
fi
term_pid "$LAB/run/knot.pid" knotd
term_pid "$LAB/run/knot2.pid" knotd
term_pid "$LAB/run/nginx.pid" nginx
term_pid "$LAB/run/unbound-val.pid" unbound
term_pid "$LAB/run/unbound-plain.pid" unbound

# wait for all of them together (up to 10 s), then KILL stragglers
for _ in $(seq 1 100); do
    alive=0
    for pn in "${PIDS[@]+"${PIDS[@]}"}"; do [ -d "/proc/${pn%%:*}" ] && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
done
for pn in "${PIDS[@]+"${PIDS[@]}"}"; do
    pid=${pn%%:*}
    if [ -d "/proc/$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "${pn#*:}" ]; then
        echo "down.sh: ${pn#*:} ($pid) did not stop, killing" >&2
        kill -9 "$pid" 2>/dev/null || true
    fi
done
rm -f "$LAB/run/nginx.pid" "$LAB/run/knot.pid" "$LAB/run/knot2.pid" "$LAB/run/unbound-val.pid" "$LAB/run/unbound-plain.pid"

if [ -f "$LAB/run/addrs" ]; then
    while read -r a; do
        [ -n "$a" ] || continue
        ip addr del "$a/32" dev lo 2>/dev/null || true
    done <"$LAB/run/addrs"
    rm -f "$LAB/run/addrs"
fi
echo "down.sh: lab in $LAB stopped"
