#!/usr/bin/env bash
# A short soak (about 90 s once built) of the reconnecting clients against the faulty local
# feed server of crates/wsc/examples/soak.rs: the blocking client over wss://, the async one
# through a SOCKS5 proxy (pproxy from $WSC_VENV, if it is there), and a slow consumer.
# Longer runs: SOAK_SECS=600 scripts/soak.sh, or run the example directly (see its docs).
# Not part of scripts/test.sh: it takes time and its faults are random (the seed is printed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

secs=${SOAK_SECS:-35}
cargo build --quiet --release -p wsc --features tokio --example soak
soak=${CARGO_TARGET_DIR:-target}/release/examples/soak
status=0
summary() { sed -n '/==== SUMMARY/,$p'; }

echo "==> blocking client, wss://, all faults, ${secs} s"
"$soak" --client blocking --tls --secs "$secs" --min-life 2 --max-life 6 2>/dev/null | summary || status=1

proxy=()
pproxy_pid=
if [[ -x ${WSC_VENV:=.venv}/bin/pproxy ]]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$WSC_VENV/bin/pproxy" -l "socks5://127.0.0.1:$port" >/dev/null 2>&1 &
  pproxy_pid=$!
  trap 'kill $pproxy_pid 2>/dev/null || true' EXIT
  sleep 1
  proxy=(--proxy "socks5://127.0.0.1:$port")
fi
echo "==> async client, ws:// ${proxy[*]:-(no proxy: pproxy not found)}, all faults, ${secs} s"
"$soak" --client async --secs "$secs" --min-life 2 --max-life 6 "${proxy[@]}" 2>/dev/null | summary || status=1

echo "==> async client, slow consumer (1 ms per tick), 15 s"
"$soak" --client async --secs 15 --slow-us 1000 --faults none 2>/dev/null | summary || status=1

exit $status
