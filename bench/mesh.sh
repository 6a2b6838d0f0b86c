#!/usr/bin/env bash
# mesh.sh - Palisade as the subject of ../shared/bench/peers.sh.
#
# Two `palisade-proxy run` on loopback in explicit mode (no capture):
#   wrk -> outbound sidecar (127.0.0.1:18050, --outbound-to the inbound one)
#       -> mTLS (SPIFFE SVIDs, mesh ALPN, pooled)
#       -> inbound sidecar (127.0.0.1:18051, L7 ALLOW policy on GET /*)
#       -> backend (--inbound-app-port 18000)
# each with one data-plane worker thread (--workers 1), like the peers.
#
# peers.sh's own certificates are not X509-SVIDs (each leaf carries only one
# of serverAuth/clientAuth, and the server a DNS SAN), which the Palisade
# verifier rightly refuses, so this script issues SVIDs for the same two
# identities (spiffe://cluster.local/ns/default/sa/{client,server}) from a
# CA of its own, with openssl: URI SAN only, both EKUs, not a CA.
#
# Usage: bench/mesh.sh [peers.sh knobs in the environment], e.g.
#   MODES="ka close rate bulk" REPEATS=1 DURATION=5s bench/mesh.sh
# Environment: PEERS (path to peers.sh, default ../shared/bench/peers.sh
# beside the repository), NO_BUILD=1 to skip `cargo build --release`,
# PALISADE_PROXY_BIN to use another binary (e.g. a debug build for a smoke
# run), CARGO_TARGET_DIR as usual. SMOKE_ONLY=1 stops after the smoke check.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEERS=${PEERS:-$ROOT/../shared/bench/peers.sh}
[[ -f $PEERS ]] || { echo "mesh.sh: peers.sh not found at $PEERS (set PEERS=...)" >&2; exit 2; }
command -v openssl >/dev/null || { echo "mesh.sh: needs openssl (Debian package openssl)" >&2; exit 2; }

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [[ -z ${PALISADE_PROXY_BIN:-} && ${NO_BUILD:-0} != 1 ]]; then
  (cd "$ROOT" && cargo build --release --locked -p palisade-proxy)
fi
BIN=${PALISADE_PROXY_BIN:-$TARGET/release/palisade-proxy}
[[ -x $BIN ]] || { echo "mesh.sh: $BIN missing (build with cargo build --release -p palisade-proxy)" >&2; exit 2; }

WORK=$(mktemp -d /tmp/palisade-mesh-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

TD=cluster.local
CLIENT_ID=spiffe://$TD/ns/default/sa/client
SERVER_ID=spiffe://$TD/ns/default/sa/server

# ---------------------------------------------------------------- SVIDs
(
  cd "$WORK"
  openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
  openssl req -x509 -new -key ca.key -sha256 -days 2 -subj "/O=palisade-bench/CN=palisade-bench-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectAltName=URI:spiffe://$TD" -out ca.crt 2>/dev/null
  for who in client server; do
    id=$CLIENT_ID; [[ $who == server ]] && id=$SERVER_ID
    mkdir -p "$who"
    openssl ecparam -name prime256v1 -genkey -noout -out "$who/key.sec1" 2>/dev/null
    openssl pkcs8 -topk8 -nocrypt -in "$who/key.sec1" -out "$who/svid.key"
    openssl req -new -key "$who/svid.key" -subj "/O=palisade-bench" -out "$who/csr" 2>/dev/null
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=critical,URI:%s\n' \
      "$id" >"$who/ext"
    openssl x509 -req -in "$who/csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -sha256 \
      -extfile "$who/ext" -out "$who/svid.pem" 2>/dev/null
    cp ca.crt "$who/bundle.pem"
  done
  openssl verify -CAfile ca.crt client/svid.pem server/svid.pem >/dev/null
)

# ---------------------------------------------------------------- configs
# ProxyConfig as `palisade compile` prints it, written by hand. Both hops
# run on 127.0.0.1; the peer table names the other hop's identity.
proxy_config() { # proxy_config <name> <identity> <peer-identity> <authorization yaml>
  cat <<YAML
version: "bench-$1"
mesh: { trustDomain: $TD }
workload:
  namespace: default
  name: $1
  serviceAccount: $1
  identity: "$2"
  ips: [127.0.0.1]
  ports: [{ port: 18000, protocol: TCP }]
inbound:
  mtls: STRICT
  ingress: { isolated: false }
outbound:
  egress: { isolated: false }
peers:
  - { ip: 127.0.0.1, workload: default/peer, identity: "$3", mtls: STRICT }
authorization:
$4
YAML
}
proxy_config client "$CLIENT_ID" "$SERVER_ID" "  []" >"$WORK/client.yaml"
# L7 ALLOW on the inbound side: only the client's principal, GET, any path.
proxy_config server "$SERVER_ID" "$CLIENT_ID" "  - name: default/allow-client-get
    action: ALLOW
    rules:
      - from: [{ principals: [\"$TD/ns/default/sa/client\"] }]
        to: [{ methods: [GET], paths: [\"/*\"] }]" >"$WORK/server.yaml"

# ---------------------------------------------------------------- subject
# Spare loopback ports inside peers.sh's 18000-18100: the hops' unused
# listeners and admin endpoints.
export PALISADE_BIN=$BIN PALISADE_WORK=$WORK
export SUBJECT_NAME=${SUBJECT_NAME:-palisade}
export SUBJECT_MODE=l7
export SUBJECT_OUT_CMD='exec "$PALISADE_BIN" run --config "$PALISADE_WORK/client.yaml" --svid-dir "$PALISADE_WORK/client" \
  --workers "$PEERS_WORKERS" --outbound-listen "$PEERS_OUT_LISTEN" --outbound-to "$PEERS_IN_LISTEN" \
  --inbound-listen 127.0.0.1:18060 --admin-listen 127.0.0.1:18061'
export SUBJECT_IN_CMD='exec "$PALISADE_BIN" run --config "$PALISADE_WORK/server.yaml" --svid-dir "$PALISADE_WORK/server" \
  --workers "$PEERS_WORKERS" --inbound-listen "$PEERS_IN_LISTEN" --inbound-app-port "${PEERS_BACKEND##*:}" \
  --outbound-listen 127.0.0.1:18062 --admin-listen 127.0.0.1:18063'

# Check the chain once before measuring, so a broken setup fails fast with
# the sidecars' logs instead of a table of zeros.
smoke() {
  local logs=$WORK/smoke pids=()
  mkdir -p "$logs"
  local env=(PEERS_WORKERS=1 PEERS_OUT_LISTEN=127.0.0.1:18050 PEERS_IN_LISTEN=127.0.0.1:18051
    PEERS_BACKEND=127.0.0.1:18000)
  # Simple commands in the background: $! is the process itself (bash -c
  # execs the proxy), so the kill below reaches it.
  python3 -m http.server 18000 --bind 127.0.0.1 --directory "$WORK" >/dev/null 2>&1 & pids+=($!)
  env "${env[@]}" bash -c "$SUBJECT_IN_CMD" >/dev/null 2>"$logs/in.log" & pids+=($!)
  env "${env[@]}" bash -c "$SUBJECT_OUT_CMD" >/dev/null 2>"$logs/out.log" & pids+=($!)
  local ok=0 code
  for _ in $(seq 50); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -m 2 http://127.0.0.1:18050/client.yaml || true)
    if [[ $code == 200 ]]; then ok=1; break; fi
    sleep 0.1
  done
  local denied
  denied=$(curl -s -o /dev/null -w '%{http_code}' -m 2 -X POST http://127.0.0.1:18050/client.yaml || true)
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  if [[ $ok != 1 ]]; then
    echo "mesh.sh: smoke test failed (last code $code); sidecar logs:" >&2
    cat "$logs/out.log" "$logs/in.log" >&2
    exit 1
  fi
  if [[ $denied != 403 ]]; then
    echo "mesh.sh: the L7 ALLOW policy did not deny POST (got $denied)" >&2
    exit 1
  fi
  echo "[mesh] smoke: GET 200 through both sidecars, POST 403 by the ALLOW policy" >&2
}
smoke
[[ ${SMOKE_ONLY:-0} == 1 ]] && exit 0

bash "$PEERS"
