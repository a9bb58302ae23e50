#!/usr/bin/env bash
# Runs every test: formatting and lints, unit/property/integration/doc tests, feature
# combinations, and the Autobahn conformance suite (kosoku, installed into .venv here).
# This is the README's test command and what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }
start=$(date +%s)
# Logs and peers go to ./target even when CARGO_TARGET_DIR puts the builds elsewhere.
mkdir -p target

step "Python peers in ${WSC_VENV:=.venv} (kosoku for Autobahn, websockets for interop, pproxy for the proxy tests)"
if ! "$WSC_VENV/bin/python" -c "import kosoku, websockets, pproxy" 2>/dev/null; then
  python3 -m venv "$WSC_VENV"
  "$WSC_VENV/bin/pip" install --quiet --disable-pip-version-check kosoku==0.1.0 websockets==17.4 pproxy==2.7.9
fi
export WSC_VENV

step "Node peer (ws) in target/node-peers, for the interop tests"
if command -v npm >/dev/null; then
  if [[ ! -d target/node-peers/node_modules/ws ]]; then
    mkdir -p target/node-peers
    (cd target/node-peers && npm install --silent --no-audit --no-fund ws@8.23.0)
  fi
else
  echo "npm not found: the Node ws interop test will report itself skipped"
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, all features)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "cargo test (all features)"
cargo test --workspace --all-features

step "feature combinations build, tests and examples included"
cargo check -p wsc --no-default-features --all-targets
cargo check -p wsc --no-default-features --features tokio --all-targets
cargo check -p wsc --no-default-features --features tls,webpki-roots,tokio --all-targets

step "fuzz targets compile (running them: docs/fuzzing.md)"
cargo check --manifest-path fuzz/Cargo.toml --bins

step "Autobahn|Testsuite sections 1-10, 12, 13 (kosoku): blocking and async testees, in parallel"
cargo build --release -p wsc --features tokio --example autobahn_client --example autobahn_client_tokio
bash scripts/autobahn.sh --sections 1-13 --timeout 1500 --port 9001 \
  --outdir target/autobahn >target/autobahn.log 2>&1 &
blocking=$!
bash scripts/autobahn.sh --sections 1-13 --timeout 1500 --port 9002 --agent wsc-tokio \
  --outdir target/autobahn-tokio \
  --client "${CARGO_TARGET_DIR:-target}/release/examples/autobahn_client_tokio \$AUTOBAHN_URL" \
  >target/autobahn-tokio.log 2>&1 &
async=$!
status=0
wait "$blocking" || status=1
wait "$async" || status=1
echo "--- blocking client (wsc::WebSocket)"; cat target/autobahn.log
echo "--- async client (wsc::tokio)"; cat target/autobahn-tokio.log
((status == 0)) || { echo "Autobahn failed" >&2; exit 1; }

printf '\nall tests passed in %ss\n' "$(( $(date +%s) - start ))"
