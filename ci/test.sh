#!/usr/bin/env bash
# Runs every test of the workspace, doing its own set-up first.
#
#   ci/test.sh            set up what is missing, build the default x86_64 layer, run all tests
#
# Set-up (skipped where already done; Debian packages only when running as root):
#   - Debian packages: bubblewrap (the Lambda-like sandbox), patchelf and zstd (fixture
#     runtimes), qemu-user-static and binutils-aarch64-linux-gnu (arm64 layers on x86_64),
#     unzip, chromium (the HTML report's browser test), nodejs (the Node.js client's tests)
#   - the arm64 Debian architecture, for the arm64 fixture runtime's packages
#   - uv from PyPI (`cargo xtask lock`)
# GitHub is out of reach on some machines (CI here), so the tests build python-build-standalone
# -shaped archives from local CPythons (`cargo xtask fixture-runtime`) and serve them on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step's line says when it started (seconds since this script's start): the suite's
# budget is 20 minutes on a 2-core machine, and this shows where they go.
log() { printf '==> [%4d s] %s\n' "$SECONDS" "$*" >&2; }

need_debs=()
for pair in bwrap:bubblewrap patchelf:patchelf zstd:zstd qemu-aarch64-static:qemu-user-static \
            aarch64-linux-gnu-strip:binutils-aarch64-linux-gnu unzip:unzip chromium:chromium node:nodejs; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need_debs+=("${pair#*:}")
done
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    log "adding the arm64 architecture to apt (for the arm64 fixture runtime)"
    dpkg --add-architecture arm64
    need_update=1
  fi
  if [ "${#need_debs[@]}" -gt 0 ] || [ -n "${need_update:-}" ]; then
    log "apt-get install ${need_debs[*]:-}"
    apt-get update -qq
    [ "${#need_debs[@]}" -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_debs[@]}" >/dev/null
  fi
elif [ "${#need_debs[@]}" -gt 0 ]; then
  log "missing (install them, or run as root): ${need_debs[*]}; tests needing them will fail"
fi
if ! command -v uv >/dev/null 2>&1; then
  log "pip install uv"
  python3 -m pip install --quiet uv
fi

log "cargo fetch"
cargo fetch --locked 2>/dev/null || cargo fetch

export CI="${CI:-true}"

# Everything compiled once, with the features of the whole workspace: `cargo xtask` alone
# (`cargo run -p xtask`) resolves its dependencies' features for xtask only, so serde, tokio,
# rustls and the rest would be compiled a second time for `cargo test --workspace`. The set-up
# below runs the binary this built, the one the xtask tests run too.
log "cargo test --workspace --no-run"
cargo test --workspace --no-run
target_dir=$(realpath -m "${CARGO_TARGET_DIR:-target}")
xtask=$target_dir/debug/xtask

# The default x86_64 layer, built as the README says, is what pythonexec-rs's LiteLLM tests run
# against; the xtask tests reuse it (same folder as their fixture cache).
fixtures=$target_dir/test-fixtures
archive=$fixtures/cpython-fixture-x86_64-install_only.tar.gz
mkdir -p "$fixtures"
if [ ! -f "$archive" ]; then
  log "xtask fixture-runtime --arch x86_64"
  "$xtask" fixture-runtime --arch x86_64 --out "$archive"
fi
if [ ! -f "$fixtures/layer-x86_64-default/report.json" ]; then
  log "xtask layer --arch x86_64 (fixture runtime)"
  "$xtask" layer --arch x86_64 --out "$fixtures/layer-x86_64-default" \
    --python-archive "$archive" --python-sha256 "$(sha256sum "$archive" | cut -d' ' -f1)"
fi
export PYTHONEXEC_TEST_PYTHON="$fixtures/layer-x86_64-default/tree/python/bin/python3.11"
# The same layer for the Node.js client's sandbox test (bubblewrap, layer at /opt).
export PYTHONEXEC_TEST_LAYER="$fixtures/layer-x86_64-default/tree"

log "cargo test --workspace"
status=0
cargo test --workspace --no-fail-fast -- --test-threads=2 || status=$?

# The Node.js client: the protocol conformance suite and the handler behind a Runtime API
# emulator, against the default layer's python (the Rust example's cases use the binary
# `cargo test` built above).
log "node --test clients/node/pythonexec/"
node --test clients/node/pythonexec/ || status=$?
log "done (exit $status)"
exit "$status"
