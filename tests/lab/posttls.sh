#!/usr/bin/env bash
# Run posttls-finger, Postfix's own DANE client, against the lab resolver and print its output.
# This is the reference verdict ("what a DANE-enforcing Postfix would do") for the lab scenarios.
#
# usage: tests/lab/posttls.sh LABDIR DESTINATION [posttls-finger options...]
#   DESTINATION: a mail domain (MX lookup), or [host] (that host only: no MX lookup, DANE still
#   applies with TLSA at _25._tcp.host). Extra options go before the destination, e.g. -v.
#   POSTTLS_CHAT=1 drops -c (logs the SMTP dialogue and "Connected to host[addr]:25").
#
# /etc/resolv.conf is replaced by LABDIR/resolv.conf (nameserver 127.53.0.2, options trust-ad)
# only inside a private mount namespace; the machine's file is not touched. posttls-finger reads
# its main.cf from LABDIR/postfix (MAIL_CONFIG), so /etc/postfix does not matter.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 LABDIR DESTINATION [posttls-finger options...]" >&2; exit 2; }
LAB=$(cd "$1" && pwd); DEST=$2; shift 2
[ -f "$LAB/resolv.conf" ] || { echo "posttls.sh: $LAB/resolv.conf missing (run up.sh)" >&2; exit 2; }
chat=-c; [ "${POSTTLS_CHAT:-0}" = 1 ] && chat=
export MAIL_CONFIG=$LAB/postfix
# shellcheck disable=SC2016
exec unshare -m sh -c 'mount --bind "$0" /etc/resolv.conf && shift && exec posttls-finger "$@"' \
    "$LAB/resolv.conf" _ $chat -l dane -L summary,certmatch -t 5 -T 10 "$@" "$DEST" 2>&1
