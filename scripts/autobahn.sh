#!/usr/bin/env bash
# Run the Autobahn client conformance cases (kosoku fuzzingserver) against a
# WebSocket client and judge the result from kosoku's reports.
#
# usage: scripts/autobahn.sh [--client CMD] [--sections 1-10] [--outdir DIR]
#                            [--port N] [--agent NAME] [--timeout SECS]
#                            [--allow-non-strict]
#   --client CMD   client command line, run via `bash -c` with AUTOBAHN_URL set to
#                  ws://127.0.0.1:PORT; it must run every case the server announces
#                  on /getCaseCount, then open /updateReports
#                  (default: target/release/examples/autobahn_client $AUTOBAHN_URL)
#   --sections S   top-level sections, e.g. 1-10, 1,2 or 1-7,9 (default: 1-10)
#   --outdir DIR   report directory (default: target/autobahn)
#   --port N       fuzzingserver port on 127.0.0.1 (default: 9001)
#   --agent NAME   agent name the client reports (default: wsc)
#   --timeout S    limit for the client run (default: 600)
#   --allow-non-strict  accept NON-STRICT behavior (default: only OK passes)
# env: WSC_VENV  python venv holding kosoku (default: .venv; created if missing)
# Relative paths (--outdir, WSC_VENV, inside --client) are taken from the repo root.
# Exit status: autobahn_report.py's verdict (0 = every expected case passed),
# or non-zero if the run itself broke (port busy, client hung, no reports).
set -euo pipefail

KOSOKU_VERSION=0.1.0
cd "$(dirname "${BASH_SOURCE[0]}")/.."

client="" sections=1-10 outdir=target/autobahn port=9001 agent=wsc timeout=600
report_args=()
while (($#)); do
  case "$1" in
    --client) client=${2:?--client needs a command}; shift 2 ;;
    --sections) sections=${2:?}; shift 2 ;;
    --outdir) outdir=${2:?}; shift 2 ;;
    --port) port=${2:?}; shift 2 ;;
    --agent) agent=${2:?}; shift 2 ;;
    --timeout) timeout=${2:?}; shift 2 ;;
    --allow-non-strict) report_args+=(--allow-non-strict); shift ;;
    -h|--help) sed -n '2,/^set -euo/{/^set/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) echo "autobahn: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

log() { echo "autobahn: $*" >&2; }
die() { log "error: $*"; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }
[[ $port =~ ^[0-9]+$ && $timeout =~ ^[0-9]+$ ]] || die "--port and --timeout take integers"

venv=${WSC_VENV:-.venv}
if [[ ! -x "$venv/bin/kosoku" ]]; then
  log "installing kosoku==$KOSOKU_VERSION into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "kosoku==$KOSOKU_VERSION"
fi
py="$venv/bin/python"

if [[ -z "$client" ]]; then
  bin=${CARGO_TARGET_DIR:-target}/release/examples/autobahn_client
  [[ -x "$bin" ]] || die "$bin not found; build it: cargo build --release --example autobahn_client"
  client="$bin \$AUTOBAHN_URL"
fi
export AUTOBAHN_URL="ws://127.0.0.1:$port"

# One -i glob per requested section that kosoku has cases in (it rejects a
# glob that matches nothing, e.g. 8.* or 11.*).
globs=$("$py" scripts/autobahn_report.py --sections "$sections" --print-globs) \
  || die "no kosoku cases in sections $sections"
include=()
for g in $globs; do include+=(-i "$g"); done

port_open && die "port $port is already in use (another fuzzingserver?)"
mkdir -p "$outdir"
rm -f "$outdir/index.json" "$outdir/index.html"   # never judge a stale run

kosoku_pid="" client_pid=""
cleanup() {
  for pid in $client_pid $kosoku_pid; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "kosoku fuzzingserver on 127.0.0.1:$port, sections $sections (log: $outdir/kosoku.log)"
"$venv/bin/kosoku" -m fuzzingserver "127.0.0.1:$port" -o "$outdir" "${include[@]}" \
  >"$outdir/kosoku.log" 2>&1 &
kosoku_pid=$!

for ((i = 0; i < 300; i++)); do   # up to 30 s
  port_open && break
  kill -0 "$kosoku_pid" 2>/dev/null || { cat "$outdir/kosoku.log" >&2; die "kosoku exited at startup"; }
  sleep 0.1
done
port_open || die "kosoku did not listen on port $port within 30 s"

log "client: $client (AUTOBAHN_URL=$AUTOBAHN_URL, timeout ${timeout}s)"
start=$SECONDS
timeout --kill-after=10 "$timeout" bash -c "$client" &
client_pid=$!
client_rc=0
wait "$client_pid" || client_rc=$?
client_pid=""
log "client finished in $((SECONDS - start)) s with exit status $client_rc"
((client_rc == 124 || client_rc == 137)) && die "client timed out after ${timeout}s"

for ((i = 0; i < 300; i++)); do   # kosoku writes its reports and exits; up to 30 s
  kill -0 "$kosoku_pid" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$kosoku_pid" 2>/dev/null; then
  die "kosoku still running 30 s after the client ended: did the client open /updateReports?"
fi
kosoku_rc=0
wait "$kosoku_pid" || kosoku_rc=$?
kosoku_pid=""
# kosoku's status is no verdict: it fails on UNIMPLEMENTED and passes skipped cases.
log "kosoku exited with status $kosoku_rc: $(tail -n 1 "$outdir/kosoku.log")"

"$py" scripts/autobahn_report.py "$outdir" --agent "$agent" --sections "$sections" ${report_args[@]+"${report_args[@]}"}
