#!/usr/bin/env bash
# bench/instructions.sh: user-space instructions per keep-alive request of
# the two-hop chain bench/mesh.sh measures (same configs, written by
# proxy/benches/mesh-hop.sh), counted by valgrind's callgrind. Instruction
# counts do not move with the machine's load, so two binaries can be
# compared on a shared, noisy VM where their CPU times cannot (kernel time
# is not counted: this measures only what the sidecar's own code costs).
#
#   bash bench/instructions.sh BIN [BIN...]     # one line per binary
#   REQUESTS=20000 CONNS=16 bash bench/instructions.sh a/palisade-proxy b/palisade-proxy
#   CALLGRIND_OUT=dir ...   keeps the callgrind files (callgrind_annotate dir/cg-in.*.1)
#   CLOSE=1 ...             a new client connection per request (wrk with
#                           'Connection: close' for CLOSE_SECONDS=20)
#
# Each binary: both hops under callgrind, a nginx backend (1 KiB body),
# h2load --h1 as the client; 2000 warm-up requests, counters zeroed, then
# REQUESTS requests, counters dumped. Prints instructions per request for
# the outbound hop, the inbound hop and both. Loopback ports 18070-18079.
set -euo pipefail
[[ $# -ge 1 ]] || { sed -n 2,15p "$0"; exit 2; }
for tool in valgrind:valgrind callgrind_control:valgrind h2load:nghttp2-client wrk:wrk nginx:nginx-light openssl:openssl curl:curl; do
  command -v "${tool%%:*}" >/dev/null || {
    echo "instructions.sh: needs ${tool%%:*} (Debian package ${tool#*:})" >&2
    exit 2
  }
done
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
REQUESTS=${REQUESTS:-20000}
CONNS=${CONNS:-16}
tmp=$(mktemp -d /tmp/palisade-instructions.XXXXXX)
chmod 755 "$tmp" # nginx's worker reads the body as nobody
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# A bench CA and the two workloads' identities, as peers.sh makes them.
openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/ca.key" 2>/dev/null
openssl req -new -x509 -key "$tmp/ca.key" -subj "/O=palisade-bench-ca" -days 2 \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
  -out "$tmp/ca.pem" 2>/dev/null
export PEERS_TMP=$tmp PEERS_CA=$tmp/ca.pem
export PEERS_CLIENT_ID=spiffe://cluster.local/ns/default/sa/client
export PEERS_SERVER_ID=spiffe://cluster.local/ns/default/sa/server
export PEERS_CLIENT_CERT=unused PEERS_CLIENT_KEY=unused PEERS_SERVER_CERT=unused PEERS_SERVER_KEY=unused
export PEERS_OUT_LISTEN=127.0.0.1:18070 PEERS_IN_LISTEN=127.0.0.1:18071 PEERS_BACKEND=127.0.0.1:18072
export PEERS_WORKERS=1 RUST_LOG=warn

head -c 1024 /dev/zero | tr '\0' 'x' >"$tmp/body"
cat >"$tmp/nginx.conf" <<CONF
worker_processes 1;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen $PEERS_BACKEND;
    location / { root $tmp; try_files /body =404; }
  }
}
CONF
nginx -c "$tmp/nginx.conf" -g 'daemon off;' &
pids+=($!)

wait_ready() {
  for _ in $(seq 1 300); do
    curl -fs "http://$1/ready" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "instructions.sh: no /ready on $1" >&2
  exit 1
}

count() { # BIN -> "outbound inbound both" instructions per request
  local bin=$1 run=$tmp/run-$RANDOM
  mkdir -p "$run"
  printf '#!/bin/sh\nexec valgrind -q --tool=callgrind --callgrind-out-file=%s/cg-$HOP.%%p "%s" "$@"\n' \
    "$run" "$bin" >"$run/wrapped"
  chmod +x "$run/wrapped"
  export PALISADE_PROXY_BIN=$run/wrapped
  HOP=in bash "$root/proxy/benches/mesh-hop.sh" in >"$run/in.log" 2>&1 &
  local in_pid=$!
  HOP=out bash "$root/proxy/benches/mesh-hop.sh" out >"$run/out.log" 2>&1 &
  local out_pid=$!
  pids+=("$in_pid" "$out_pid")
  wait_ready 127.0.0.1:18063
  wait_ready 127.0.0.1:18062
  h2load --h1 -n 2000 -c "$CONNS" "http://$PEERS_OUT_LISTEN/" >/dev/null
  callgrind_control -z "$in_pid" >/dev/null 2>&1
  callgrind_control -z "$out_pid" >/dev/null 2>&1
  local done
  if [[ ${CLOSE:-0} == 1 ]]; then
    # A new client connection per request, as peers.sh's close mode: wrk
    # for CLOSE_SECONDS, counting the requests it completed.
    done=$(wrk -t1 -c "$CONNS" -d "${CLOSE_SECONDS:-20}s" -H 'Connection: close' \
      "http://$PEERS_OUT_LISTEN/" | awk '/requests in/ {print $1}')
    [[ ${done:-0} -gt 0 ]] || { echo "instructions.sh: no request completed" >&2; exit 1; }
  else
    done=$(h2load --h1 -n "$REQUESTS" -c "$CONNS" "http://$PEERS_OUT_LISTEN/" | awk '/^requests:/ {print $8}')
    [[ $done == "$REQUESTS" ]] || { echo "instructions.sh: $done of $REQUESTS requests succeeded" >&2; exit 1; }
  fi
  callgrind_control -d "$in_pid" >/dev/null 2>&1
  callgrind_control -d "$out_pid" >/dev/null 2>&1
  kill "$in_pid" "$out_pid"
  wait "$in_pid" "$out_pid" 2>/dev/null || true
  if [[ -n ${CALLGRIND_OUT:-} ]]; then
    mkdir -p "$CALLGRIND_OUT"
    cp "$run"/cg-* "$CALLGRIND_OUT"/
  fi
  # The dump after zeroing is the file with a ".1" part; sum its totals
  # over every thread.
  local out_ir in_ir
  out_ir=$(cat "$run"/cg-out.*.1* 2>/dev/null | awk '/^summary:/ {s += $2} END {print s + 0}')
  in_ir=$(cat "$run"/cg-in.*.1* 2>/dev/null | awk '/^summary:/ {s += $2} END {print s + 0}')
  awk -v o="$out_ir" -v i="$in_ir" -v n="$done" \
    'BEGIN { printf "%.0f %.0f %.0f\n", o / n, i / n, (o + i) / n }'
}

printf '%-50s %10s %10s %10s\n' binary outbound inbound both
for bin in "$@"; do
  [[ -x $bin ]] || { echo "instructions.sh: no binary at $bin" >&2; exit 2; }
  count "$bin" >"$tmp/counted"
  read -r o i b <"$tmp/counted"
  printf '%-50s %10s %10s %10s\n' "$bin" "$o" "$i" "$b"
done
