#!/usr/bin/env bash
# bench/mesh.sh: the mesh benchmark, Palisade beside nginx and haproxy mTLS
# chains in one run of ../shared/bench/peers.sh (two sidecars without
# capture, mTLS, an L7 ALLOW policy inbound, one worker per hop).
# The implementation lives with the proxy: proxy/benches/mesh.sh (knobs:
# MESH_L4=1 for the L4 path, MESH_PROTOCOL=http1, SKIP_BUILD=1, and every
# peers.sh knob such as MODES, DURATION, REPEATS, CHAINS).
#
#   MODES="ka close rate bulk" REPEATS=3 bench/mesh.sh
exec bash "$(dirname "$0")/../proxy/benches/mesh.sh" "$@"
