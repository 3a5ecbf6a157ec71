#!/usr/bin/env bash
# Change the id of the _mta-sts record of idchange.sts.test (the "id change" scenario of
# sts-lib.sh): rewrite the zone source, bump the SOA serial, re-sign sts.test with its keys
# and make knotd reload it. Prints the serial now served.
#
# usage: tests/lab/sts-id.sh LABDIR NEWID   (NEWID: 1-32 letters or digits)
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 LABDIR NEWID" >&2; exit 2; }
LAB=$(cd "$1" && pwd); ID=$2
[[ $ID =~ ^[A-Za-z0-9]{1,32}$ ]] || { echo "sts-id.sh: bad id '$ID'" >&2; exit 2; }
ZONE=$LAB/dns/zones/sts.test.zone
ARGS=$LAB/dns/keys/sts.test/sign.args
[ -f "$ZONE" ] && [ -f "$ARGS" ] || { echo "sts-id.sh: no sts.test in $LAB (run up.sh)" >&2; exit 2; }
mapfile -t A <"$ARGS"   # KSK ZSK INCEPTION EXPIRATION
serial=$(awk '$3=="SOA" {print $6; exit}' "$ZONE")
new=$((serial + 1))
sed -i -E "s/^(_mta-sts\.idchange IN TXT \"v=STSv1; id=)[A-Za-z0-9]+(\")/\1$ID\2/; s/^(@ IN SOA ns\.test\. hostmaster\.test\. )$serial /\1$new /" "$ZONE"
grep -q "id=$ID\"" "$ZONE" || { echo "sts-id.sh: zone not changed" >&2; exit 1; }
ldns-signzone -n -t 0 -i "${A[2]}" -e "${A[3]}" -o sts.test. -f "$LAB/dns/signed/sts.test.signed" "$ZONE" "${A[0]}" "${A[1]}"
knotc -s "$LAB/run/knot.sock" zone-reload sts.test. >/dev/null
for _ in $(seq 1 50); do
    got=$(kdig +short +timeout=1 +retry=0 @127.53.0.1 sts.test. SOA | awk '{print $3}')
    [ "$got" = "$new" ] && { echo "$new"; exit 0; }
    sleep 0.1
done
echo "sts-id.sh: knotd still serves serial ${got:-none}, not $new" >&2
exit 1
