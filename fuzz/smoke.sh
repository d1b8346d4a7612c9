#!/usr/bin/env bash
# Short smoke run of every cargo-fuzz target (FUZZ_SECONDS each, default 20), from the
# checked-in corpus and regressions, when the nightly toolchain and cargo-fuzz are
# installed (`bash fuzz/setup.sh` installs them); otherwise says so and succeeds.
# Fails when a target crashes, hangs (an input over 10 s) or allocates over 128 MB at
# once (no fuzz input justifies that; a record length is trusted up to 1 GiB); the
# input is then in fuzz/artifacts/<target>/. New corpus entries go to a temporary
# directory, so the work tree stays clean.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(decode open_dir model)
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz smoke run skipped: the nightly toolchain or cargo-fuzz is missing (bash fuzz/setup.sh installs them)"
    exit 0
fi
secs=${FUZZ_SECONDS:-20}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "fuzz smoke run: building the targets ($(cargo +nightly fuzz --version))"
timeout 900 cargo +nightly fuzz build
for t in "${targets[@]}"; do
    mkdir -p "$work/$t"
    if timeout $((secs + 120)) cargo +nightly fuzz run "$t" "$work/$t" "fuzz/corpus/$t" "fuzz/regressions/$t" -- \
        -max_total_time="$secs" -timeout=10 -malloc_limit_mb=128 -print_final_stats=1 \
        >"$work/$t.log" 2>&1; then
        runs=$(grep -Eo '^Done [0-9]+ runs' "$work/$t.log" | grep -Eo '[0-9]+' || echo '?')
        echo "fuzz smoke run: $t ok, $runs inputs in ${secs}s"
    else
        tail -n 60 "$work/$t.log"
        grep -A 2 "panicked at" "$work/$t.log" | head -n 6 || true
        echo "fuzz smoke run: target $t FAILED; the input is in fuzz/artifacts/$t/ (see fuzz/README.md)"
        exit 1
    fi
done
