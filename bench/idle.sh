#!/usr/bin/env bash
# bench/idle.sh: a sidecar's start -> ready time and idle PSS (issue 4's
# memory goals). The implementation lives with the proxy:
# proxy/benches/idle.sh (knobs: RUNS, SETTLE, SKIP_BUILD, PALISADE_PROXY_BIN).
exec bash "$(dirname "$0")/../proxy/benches/idle.sh" "$@"
