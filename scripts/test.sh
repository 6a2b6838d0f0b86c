#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test of every crate,
# including the network-namespace tests (which need root and iptables).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/require.sh
require_packages ip:iproute2 iptables:iptables ip6tables:iptables nft:nftables \
  curl:curl openssl:openssl h2load:nghttp2-client tcpdump:tcpdump python3:python3 \
  setpriv:util-linux
if ! command -v kubernetes-validate >/dev/null 2>&1; then
  echo "==> installing kubernetes-validate (PyPI), the schema validator the inject tests use" >&2
  python3 -m pip install -q kubernetes-validate >/dev/null 2>&1 \
    || { echo "error: pip install kubernetes-validate failed" >&2; exit 2; }
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "error: the test suite runs network-namespace tests and must run as root" >&2
  exit 2
fi
echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo test"
cargo test --workspace --locked
