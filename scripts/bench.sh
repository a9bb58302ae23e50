#!/usr/bin/env bash
# Runs every wsc-bench scenario against every client that does it, in rounds, and writes
# BENCHMARKS.md (medians, ratios against the targets, machine, command) and docs/bench.svg.
#
# usage: scripts/bench.sh [--rounds N] [--quick] [--micro | --no-micro] [--no-pin]
#                         [--out FILE.md] [--svg FILE.svg]
#   --rounds N   rounds (default 9); in each round every (scenario, client) runs once, the
#                clients of a scenario in an order rotated from round to round; medians
#   --quick      smoke test: 1 round, small counts, no micro-benchmarks (unless --micro);
#                writes target/bench/quick/BENCHMARKS.md and bench.svg, not the real ones
#   --micro      run the criterion micro-benchmarks too (the default, except with --quick)
#   --no-micro   skip them
#   --no-pin     no taskset pinning
#   --out FILE   the Markdown report (default BENCHMARKS.md; quick: target/bench/quick/...)
#   --svg FILE   the chart (default docs/bench.svg; quick: target/bench/quick/bench.svg)
# Pinning (crates/wsc-bench/README.md): the server on CPU 0; clients on CPU 1 for the
# throughput scenarios (feed, large, compressed, idle), on CPU 0 with the server for echo
# and connect (cross-CPU wake-ups would dominate); none if taskset is missing or nproc < 2.
# Exit status: 0 when every run measured (whether or not the targets are met), 1 when a run
# or the build failed, 2 on bad arguments.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

command_line="bash scripts/bench.sh${*:+ $*}"
rounds=9 quick=0 micro="" pin=1 out="" svg=""
while (($#)); do
  case "$1" in
    --rounds) rounds=${2:?--rounds needs a number}; shift 2 ;;
    --rounds=*) rounds=${1#*=}; shift ;;
    --quick) quick=1; shift ;;
    --micro) micro=1; shift ;;
    --no-micro) micro=0; shift ;;
    --no-pin) pin=0; shift ;;
    --out) out=${2:?}; shift 2 ;;
    --svg) svg=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/{/^set/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) echo "bench: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "bench: --rounds takes a positive integer" >&2; exit 2; }

target_dir=${CARGO_TARGET_DIR:-target}
if ((quick)); then
  rounds=1
  work=$target_dir/bench/quick
  : "${out:=$work/BENCHMARKS.md}" "${svg:=$work/bench.svg}" "${micro:=0}"
else
  work=$target_dir/bench
  : "${out:=BENCHMARKS.md}" "${svg:=docs/bench.svg}" "${micro:=1}"
fi
mkdir -p "$work"
results=$work/results.jsonl
clients=$work/clients.tsv
: >"$results"
: >"$clients"
B=$work/wsc-bench
report=scripts/bench_report.py
start=$SECONDS
failed=0

log() { printf '%s\n' "$*" >&2; }

# ----- scenarios: key, client arguments (counts: full run / quick), pinning -----
keys=(feed-100 feed-16384 echo large connect compressed idle)
declare -A scen_args pin_same
if ((quick)); then
  scen_args=(
    [feed-100]="--scenario feed --size 100 --count 1000000"
    [feed-16384]="--scenario feed --size 16384 --count 30000"
    [echo]="--scenario echo --count 5000"
    [large]="--scenario large --count 3"
    [connect]="--scenario connect --count 500"
    [compressed]="--scenario compressed --count 50000"
    [idle]="--scenario idle --count 300"
  )
else
  scen_args=(
    [feed-100]="--scenario feed --size 100 --count 10000000"
    [feed-16384]="--scenario feed --size 16384 --count 300000"
    [echo]="--scenario echo --count 50000"
    [large]="--scenario large --count 20"
    [connect]="--scenario connect --count 5000"
    [compressed]="--scenario compressed --count 500000"
    [idle]="--scenario idle --count 2000"
  )
fi
pin_same=([echo]=1 [connect]=1)

# ----- pinning -----
ncpu=$(nproc 2>/dev/null || echo 1)
server_pin=() same_pin=() split_pin=()
if ((pin)) && command -v taskset >/dev/null && ((ncpu >= 2)) && taskset -c 1 true 2>/dev/null; then
  server_pin=(taskset -c 0) same_pin=(taskset -c 0) split_pin=(taskset -c 1)
  pinning="server on CPU 0 (taskset -c 0); clients on CPU 1 for feed, large, compressed and idle, on CPU 0 for echo and connect"
else
  if ((!pin)); then why="--no-pin"
  elif ! command -v taskset >/dev/null; then why="taskset not found"
  else why="nproc is $ncpu, or taskset -c 1 failed"
  fi
  pinning="none: $why"
fi
log "bench: pinning: $pinning"

# ----- build -----
log "bench: cargo build --release -p wsc-bench"
cargo build --release -p wsc-bench || { log "bench: build failed"; exit 1; }
# Run a copy: a rebuild of target/release during the run (the tree is shared) cannot then mix
# two versions of the clients.
rm -f "$B" && cp "$target_dir/release/wsc-bench" "$B"

# ----- server -----
server_pid="" addr=""
stop_server() {
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}
trap stop_server EXIT
trap 'stop_server; exit 130' INT TERM

start_server() {
  : >"$work/server.out"
  "${server_pin[@]}" "$B" serve --addr 127.0.0.1:0 >"$work/server.out" 2>"$work/server.err" &
  server_pid=$!
  local line=""
  for _ in $(seq 100); do
    line=$(head -n1 "$work/server.out" 2>/dev/null || true)
    [[ $line == listening* ]] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [[ $line != listening* ]]; then
    log "bench: the server did not start: $(tail -c 500 "$work/server.err" 2>/dev/null)"
    stop_server
    exit 1
  fi
  addr=${line#listening }
  log "bench: server (pid $server_pid) on $addr"
}
start_server

# ----- the (scenario, client) pairs -----
list=$("$B" list)
declare -A impls
for key in "${keys[@]}"; do
  impls[$key]=$(awk -v s="${key%%-*}" '$1 == s { printf "%s ", $2 }' <<<"$list")
  [[ -n ${impls[$key]} ]] || { log "bench: no client does ${key%%-*}"; exit 1; }
done
runs_per_round=0
for key in "${keys[@]}"; do
  read -r -a arr <<<"${impls[$key]}"
  runs_per_round=$((runs_per_round + ${#arr[@]}))
  if [[ -n ${pin_same[$key]:-} ]]; then p=("${same_pin[@]}"); else p=("${split_pin[@]}"); fi
  printf '%s\t%s\n' "$key" "${p[*]}${p[*]:+ }$B client ${scen_args[$key]} --impl IMPL --addr 127.0.0.1:PORT" >>"$clients"
done

# One client run: appends its JSON line to $results and prints a summary.
run_client() {
  local round=$1 key=$2 imp=$3 rc=0 out
  local -a p args
  if [[ -n ${pin_same[$key]:-} ]]; then p=("${same_pin[@]}"); else p=("${split_pin[@]}"); fi
  read -r -a args <<<"${scen_args[$key]}"
  if ! kill -0 "$server_pid" 2>/dev/null; then
    log "bench: the server died ($(tail -c 300 "$work/server.err" 2>/dev/null)); restarting it"
    failed=1
    start_server
  fi
  out=$(timeout 300 "${p[@]}" "$B" client "${args[@]}" --impl "$imp" --addr "$addr" \
    2>"$work/client.err") || rc=$?
  printf '%s\n' "$out" | python3 "$report" record --results "$results" --round "$round" \
    --key "$key" --impl "$imp" --rc "$rc" --stderr "$work/client.err" || failed=1
}

log "bench: $rounds round(s) of $runs_per_round runs"
for ((round = 1; round <= rounds; round++)); do
  log "bench: round $round/$rounds ($((SECONDS - start)) s elapsed)"
  for key in "${keys[@]}"; do
    read -r -a arr <<<"${impls[$key]}"
    n=${#arr[@]}
    for ((j = 0; j < n; j++)); do
      run_client "$round" "$key" "${arr[$(((round - 1 + j) % n))]}"
    done
  done
done
stop_server

# ----- micro-benchmarks -----
micro_out=""
if ((micro)); then
  log "bench: cargo bench -p wsc-bench --bench micro ($((SECONDS - start)) s elapsed)"
  micro_out=$work/micro.txt
  crit_args=(--output-format bencher)
  ((quick)) && crit_args+=(--warm-up-time 0.1 --measurement-time 0.3)
  if ! cargo bench -p wsc-bench --bench micro -- "${crit_args[@]}" | tee "$micro_out"; then
    log "bench: the micro-benchmarks failed"
    failed=1
  fi
fi

# ----- report -----
log "bench: report ($((SECONDS - start)) s elapsed)"
report_args=(--results "$results" --md "$out" --svg "$svg" --command "$command_line"
  --rounds "$rounds" --pinning "$pinning" --clients "$clients" --elapsed "$((SECONDS - start))"
  --criterion-dir "${CRITERION_HOME:-$target_dir/criterion}")
((quick)) && report_args+=(--quick)
[[ -n $micro_out ]] && report_args+=(--micro "$micro_out")
python3 "$report" report "${report_args[@]}" || failed=1

log "bench: done in $((SECONDS - start)) s"
if ((failed)); then
  log "bench: some runs failed (see $out)"
  exit 1
fi
