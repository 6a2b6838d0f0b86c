#!/usr/bin/env bash
# mesh.sh: runs the shared peer benchmark (/work/shared/bench/peers.sh, or
# $PEERS_SH) with Palisade as the subject: two sidecars in explicit mode (no
# capture) on loopback, mTLS between them, an L7 ALLOW policy on the inbound
# side, one worker thread per hop like the peers (WORKERS=1).
#
#   bash proxy/benches/mesh.sh                 # all rows, default modes
#   CHAINS="direct nginx-http" MODES="ka" bash proxy/benches/mesh.sh
#   MESH_L4=1 SUBJECT_NAME=palisade-l4 bash proxy/benches/mesh.sh
#   MESH_PROTOCOL=http1 ...   (pooled HTTP/1.1 between the hops instead of h2)
#
# Builds the release binary first (CARGO_TARGET_DIR is honoured).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
PEERS_SH=${PEERS_SH:-$root/../shared/bench/peers.sh}
[[ -f $PEERS_SH ]] || PEERS_SH=/work/shared/bench/peers.sh
target=${CARGO_TARGET_DIR:-$root/target}
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  (cd "$root" && cargo build --release -p palisade-proxy --bin palisade-proxy)
fi
export PALISADE_PROXY_BIN=${PALISADE_PROXY_BIN:-$target/release/palisade-proxy}
[[ -x $PALISADE_PROXY_BIN ]] || { echo "no binary at $PALISADE_PROXY_BIN" >&2; exit 1; }
export RUST_LOG=${RUST_LOG:-warn}
export SUBJECT_NAME=${SUBJECT_NAME:-palisade}
# MESH_L4=1 measures the L4 (opaque, one mTLS handshake per client
# connection) path instead of the L7 one.
export MESH_L4=${MESH_L4:-0}
if [[ $MESH_L4 == 1 ]]; then export SUBJECT_MODE=l4; else export SUBJECT_MODE=l7; fi
export SUBJECT_OUT_CMD="exec bash $here/mesh-hop.sh out"
export SUBJECT_IN_CMD="exec bash $here/mesh-hop.sh in"
export WORKERS=${WORKERS:-1}
exec bash "$PEERS_SH"
