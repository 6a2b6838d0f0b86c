#!/usr/bin/env bash
# mesh-hop.sh out|in: one Palisade hop for ../../../shared/bench/peers.sh
# (called through SUBJECT_OUT_CMD / SUBJECT_IN_CMD by mesh.sh). Writes the
# hop's SVID directory and ProxyConfig from the PEERS_* variables, then execs
# palisade-proxy in explicit mode (no capture) so peers.sh measures it.
set -euo pipefail
hop=$1
BIN=${PALISADE_PROXY_BIN:?}
d=$PEERS_TMP/palisade-$hop
mkdir -p "$d/svid"
if [[ $hop == out ]]; then
  who=client; peer_id=$PEERS_SERVER_ID; cert=$PEERS_CLIENT_CERT; key=$PEERS_CLIENT_KEY
else
  who=server; peer_id=$PEERS_CLIENT_ID; cert=$PEERS_SERVER_CERT; key=$PEERS_SERVER_KEY
fi
self_id=$PEERS_CLIENT_ID
[[ $hop == in ]] && self_id=$PEERS_SERVER_ID
# Both hops share 127.0.0.1; the client workload gets a test-range address so
# the proxy does not take the server for itself (own-pod traffic is plain).
self_ip=198.18.0.1
[[ $hop == in ]] && self_ip=127.0.0.1
# peers.sh's leaf certificates carry one EKU each; an X509-SVID needs both
# (or none), so re-issue the same identity from the same bench CA with the
# same kind of key (P-256), as `palisade cert issue` would.
: "$cert" "$key"
ca_key=$(dirname "$PEERS_CA")/ca.key
(
  cd "$d/svid"
  openssl ecparam -name prime256v1 -genkey -noout -out svid.key 2>/dev/null
  openssl req -new -key svid.key -subj "/O=palisade-bench" -out svid.csr 2>/dev/null
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=URI:%s\n' \
    "$self_id" >svid.ext
  openssl x509 -req -in svid.csr -CA "$PEERS_CA" -CAkey "$ca_key" -CAserial ca.srl -CAcreateserial \
    -days 2 -sha256 -extfile svid.ext -out svid.pem 2>/dev/null
  cp "$PEERS_CA" bundle.pem
)
principal=${PEERS_CLIENT_ID#spiffe://}
# The inbound hop enforces an L7 ALLOW policy (the client's principal, GET).
authz='[]'
if [[ $hop == in && ${MESH_L4:-0} == 1 ]]; then
  # On TCP, an ALLOW rule with HTTP-only fields never matches (Istio): L4
  # rows allow the client principal only.
  authz='[{"name":"default/allow-client","action":"ALLOW","rules":[{"from":[{"principals":["'$principal'"]}]}]}]'
elif [[ $hop == in ]]; then
  authz='[{"name":"default/allow-client","action":"ALLOW","rules":[{"from":[{"principals":["'$principal'"]}],"to":[{"methods":["GET"]}]}]}]'
fi
# MESH_L4=1: the inbound port is opaque, so the outbound hop tunnels each
# client connection over its own mTLS connection (an L4 row).
opaque='[]'
[[ ${MESH_L4:-0} == 1 ]] && opaque="[${PEERS_IN_LISTEN##*:}]"
cat >"$d/config.json" <<JSON
{
  "mesh": {"trustDomain": "cluster.local", "pathNormalization": "MERGE_SLASHES"},
  "workload": {"namespace": "default", "name": "$who", "serviceAccount": "$who",
               "identity": "$self_id", "ips": ["$self_ip"]},
  "inbound": {"mtls": "STRICT", "ingress": {"isolated": false}},
  "outbound": {"egress": {"isolated": false}},
  "peers": [{"ip": "127.0.0.1", "workload": "default/peer", "identity": "$peer_id", "mtls": "STRICT",
             "opaquePorts": $opaque}],
  "authorization": $authz
}
JSON
common=(run --config "$d/config.json" --svid-dir "$d/svid" --workers "${PEERS_WORKERS:-1}")
if [[ $hop == out ]]; then
  exec "$BIN" "${common[@]}" --outbound-listen "$PEERS_OUT_LISTEN" --inbound-listen 127.0.0.1:18060 \
    --admin-listen 127.0.0.1:18062 --outbound-to "$PEERS_IN_LISTEN" --mesh-protocol "${MESH_PROTOCOL:-h2}"
else
  exec "$BIN" "${common[@]}" --inbound-listen "$PEERS_IN_LISTEN" --outbound-listen 127.0.0.1:18061 \
    --admin-listen 127.0.0.1:18063 --inbound-app-port "${PEERS_BACKEND##*:}"
fi
