#!/usr/bin/env bash
# idle.sh: a sidecar's start-up time and idle memory, the figures issue 4's
# memory goals are stated in (start -> /ready <= 100 ms, <= 8 MiB idle).
#
# Starts `palisade-proxy run --workers 1` in static mode on loopback with a
# fresh SVID and a small policy, times exec -> /ready (polled every 1 ms over
# the admin listener), waits SETTLE seconds, and reads the process's PSS from
# /proc/PID/smaps_rollup (anonymous and file-backed parts shown apart).
# Repeats RUNS times and prints every run and the median.
#
#   bash proxy/benches/idle.sh                      # builds release first
#   SKIP_BUILD=1 PALISADE_PROXY_BIN=/path/bin RUNS=3 bash proxy/benches/idle.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
RUNS=${RUNS:-5}
SETTLE=${SETTLE:-2}
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  (cd "$root" && cargo build --release --bin palisade-proxy --bin palisade)
fi
BIN=${PALISADE_PROXY_BIN:-$target/release/palisade-proxy}
CLI=${PALISADE_BIN:-$target/release/palisade}
for b in "$BIN" "$CLI"; do [[ -x $b ]] || { echo "idle.sh: no binary at $b" >&2; exit 1; }; done
command -v curl >/dev/null || { echo "idle.sh: needs curl (apt-get install curl)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/palisade-idle.XXXXXX)
pid=
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

"$CLI" ca init --out "$tmp/ca" --trust-domain cluster.local >/dev/null
"$CLI" cert issue --ca "$tmp/ca" --id spiffe://cluster.local/ns/default/sa/idle --out "$tmp/svid" >/dev/null
cat >"$tmp/config.json" <<'JSON'
{
  "mesh": {"trustDomain": "cluster.local", "pathNormalization": "MERGE_SLASHES"},
  "workload": {"namespace": "default", "name": "idle", "serviceAccount": "idle",
               "identity": "spiffe://cluster.local/ns/default/sa/idle", "ips": ["127.0.0.1"]},
  "inbound": {"mtls": "STRICT", "ingress": {"isolated": false}},
  "outbound": {"egress": {"isolated": false}},
  "peers": [{"ip": "127.0.0.2", "workload": "default/peer",
             "identity": "spiffe://cluster.local/ns/default/sa/peer", "mtls": "STRICT", "opaquePorts": []}],
  "authorization": [{"name": "default/allow-client", "action": "ALLOW",
                     "rules": [{"from": [{"principals": ["cluster.local/ns/default/sa/peer"]}],
                                "to": [{"methods": ["GET"]}]}]}]
}
JSON

now_us() { local t; t=$(date +%s%N); echo $((t / 1000)); }
starts=() psss=()
printf '%-4s %14s %10s %10s %10s\n' run "start->ready ms" "PSS MiB" "anon MiB" "file MiB"
for i in $(seq 1 "$RUNS"); do
  t0=$(now_us)
  RUST_LOG=warn "$BIN" run --config "$tmp/config.json" --svid-dir "$tmp/svid" --workers 1 \
    --outbound-listen 127.0.0.1:18071 --inbound-listen 127.0.0.1:18072 \
    --admin-listen 127.0.0.1:18073 >"$tmp/proxy.log" 2>&1 &
  pid=$!
  ready=
  for _ in $(seq 1 5000); do
    if curl -fs -o /dev/null --max-time 1 http://127.0.0.1:18073/ready; then ready=$(now_us); break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.001
  done
  [[ -n $ready ]] || { echo "idle.sh: the sidecar never became ready:" >&2; cat "$tmp/proxy.log" >&2; exit 1; }
  sleep "$SETTLE"
  read -r pss anon file < <(awk '/^Pss:/{p=$2} /^Pss_Anon:/{a=$2} /^Pss_File:/{f=$2} END{print p, a, f}' \
    /proc/"$pid"/smaps_rollup)
  ms=$(awk -v a="$t0" -v b="$ready" 'BEGIN{printf "%.1f", (b-a)/1000}')
  printf '%-4s %14s %10.1f %10.1f %10.1f\n' "$i" "$ms" "$(awk -v k="$pss" 'BEGIN{print k/1024}')" \
    "$(awk -v k="$anon" 'BEGIN{print k/1024}')" "$(awk -v k="$file" 'BEGIN{print k/1024}')"
  starts+=("$ms") psss+=("$(awk -v k="$pss" 'BEGIN{print k/1024}')")
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }
printf 'median: start->ready %s ms (goal <= 100), idle PSS %.1f MiB (goal <= 8)\n' \
  "$(median "${starts[@]}")" "$(median "${psss[@]}")"
