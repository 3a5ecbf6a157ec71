#!/bin/sh
# Builds every fuzz target once, runs each over its seed corpus (fuzz/corpus/TARGET), then
# fuzzes each for SECONDS (default 20). Exits non-zero on the first crash, leak, timeout or
# build failure; the crashing input is left in fuzz/artifacts/TARGET/.
#
#   fuzz/run.sh [SECONDS]
#   FUZZ_SANITIZER=none fuzz/run.sh 60     # without AddressSanitizer (faster build and runs)
#   FUZZ_TARGETS="tlsa config" fuzz/run.sh # a subset
#   fuzz/run.sh 0                         # the seed corpus only
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`); runs on the stable toolchain through
# RUSTC_BOOTSTRAP=1, which cargo-fuzz needs for its -Z flags. New inputs found during the run go
# to a temporary directory, never into the committed seed corpus.
set -eu

secs=${1:-20}
case $secs in
'' | *[!0-9]*) echo "usage: fuzz/run.sh [SECONDS]" >&2; exit 2 ;;
esac
sanitizer=${FUZZ_SANITIZER:-address}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "fuzz/run.sh: cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
    exit 2
fi
export RUSTC_BOOTSTRAP=1

targets=${FUZZ_TARGETS:-$(cargo fuzz list)}
start=$(date +%s)
cargo fuzz build --sanitizer "$sanitizer"
# The binaries are run directly: `cargo fuzz run` would ask cargo again for every run.
bin=fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release
echo "fuzz/run.sh: built $(echo $targets | wc -w) targets in $(($(date +%s) - start)) s"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
for t in $targets; do
    seeds=fuzz/corpus/$t
    if [ ! -d "$seeds" ]; then
        echo "fuzz/run.sh: no seed corpus $seeds" >&2
        exit 1
    fi
    mkdir -p "fuzz/artifacts/$t" "$work/$t"
    # -timeout=10 makes a hang a failure; -rss_limit_mb bounds memory.
    opts="-artifact_prefix=fuzz/artifacts/$t/ -timeout=10 -rss_limit_mb=2048 -print_final_stats=1"
    echo "== $t: seed corpus ($(ls "$seeds" | wc -l) inputs)"
    "$bin/$t" $opts -runs=0 "$seeds"
    if [ "$secs" -gt 0 ]; then
        echo "== $t: fuzzing for $secs s"
        # The first corpus directory receives new inputs: the temporary one.
        "$bin/$t" $opts -max_total_time="$secs" "$work/$t" "$seeds"
    fi
done
echo "fuzz/run.sh: all $(echo $targets | wc -w) targets passed in $(($(date +%s) - start)) s"
