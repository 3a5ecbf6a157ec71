#!/usr/bin/env bash
# Run mta-sts-query (postfix-mta-sts-resolver, the reference MTA-STS client) against the lab
# and print its verdict as one word: VALID, FETCH_ERROR, NONE, NOT_CHANGED (or what else it says).
# The full output goes to stderr.
#
# usage: tests/lab/sts-query.sh LABDIR DOMAIN
#
# As in posttls.sh, /etc/resolv.conf is replaced by LABDIR/resolv.conf only inside a private
# mount namespace; SSL_CERT_FILE makes Python's ssl trust the lab root CA (and nothing else).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 LABDIR DOMAIN" >&2; exit 2; }
LAB=$(cd "$1" && pwd); DOMAIN=$2
[ -f "$LAB/resolv.conf" ] || { echo "sts-query.sh: $LAB/resolv.conf missing (run up.sh)" >&2; exit 2; }
export SSL_CERT_FILE=$LAB/pki/root-ca.pem
# shellcheck disable=SC2016
out=$(timeout 30 unshare -m sh -c 'mount --bind "$0" /etc/resolv.conf && shift && exec mta-sts-query "$@"' \
    "$LAB/resolv.conf" _ -v error "$DOMAIN" 2>&1) || true
echo "$out" >&2
word=$(grep -oE 'STSFetchResult\.[A-Z_]+' <<<"$out" | head -1 | sed 's/STSFetchResult\.//')
echo "${word:-UNKNOWN}"
