#!/usr/bin/env bash
# Installs what fuzzing needs: a nightly toolchain (cargo-fuzz builds with sanitizer flags
# only nightly accepts) and cargo-fuzz. Idempotent; run from anywhere. Compiles cargo-fuzz
# from crates.io the first time (a few minutes).
set -euo pipefail
if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz already installed: $(cargo +nightly fuzz --version)"
else
    cargo install cargo-fuzz --locked
    cargo +nightly fuzz --version
fi
