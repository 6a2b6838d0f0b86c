#!/usr/bin/env bash
# Walks the zero-trust example layer by layer: each step adds the next
# manifest file and asks `palisade check` the questions that step changes.
# Usage: examples/zero-trust/walkthrough.sh [path/to/palisade]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
palisade=${1:-palisade}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# upto N: the manifests of every file whose number is <= N.
upto() {
  rm -rf "$work/cfg"; mkdir -p "$work/cfg"
  for f in "$here"/[0-9][0-9]-*.yaml; do
    n=$(basename "$f" | cut -c1-2)
    [ "$((10#$n))" -le "$1" ] && cp "$f" "$work/cfg/"
  done
  return 0
}
ask() {
  echo "\$ palisade check --config . $*"
  "$palisade" check --config "$work/cfg" "$@" | sed -n '1p;/\[deny\]/p;/\[allow\] egress\|\[allow\] ingress\|\[allow\] authorization\|\[allow\] mtls/p' | head -6
  echo
}
step() { printf '### %s\n\n```\n' "$*"; }
end() { printf '```\n\n'; }

step "1. The open flat network (files 00-03: namespaces, pods, services)"
upto 3
ask --from frontend/web-0 --to database/postgres-0 --port 5432
ask --from 203.0.113.1 --to backend/api-server-0 --port 8080
end

step "2. Default deny in every application namespace (04-default-deny.yaml)"
upto 4
ask --from frontend/web-0 --to database/postgres-0 --port 5432
ask --from frontend/web-0 --to kube-system/coredns-0 --port 53 --protocol UDP
end

step "3. DNS (05-dns.yaml): kube-dns on UDP and TCP 53, nothing else"
upto 5
ask --from frontend/web-0 --to kube-system/coredns-0 --port 53 --protocol UDP
ask --from frontend/web-0 --to kube-system/coredns-0 --port 53
ask --from frontend/web-0 --to kube-system/coredns-0 --port 9153
end

step "4. The web tier (06-web.yaml): from ingress-nginx on 80, to the API on 8080"
upto 6
ask --from ingress-nginx/ingress-nginx-controller-0 --to frontend/web-0 --port 80
ask --from monitoring/prometheus-0 --to frontend/web-0 --port 80
ask --from frontend/web-0 --to backend/api-server-0 --port 8080
end

step "5. The API server (07-api.yaml): its ingress, and egress to the database and HTTPS, not the metadata endpoint"
upto 7
ask --from frontend/web-0 --to backend/api-server-0 --port 8080
ask --from backend/api-server-0 --to 203.0.113.1 --port 443
ask --from backend/api-server-0 --to 169.254.169.254 --port 443
end

step "6. The database (08-database.yaml): only app=api from backend, on 5432"
upto 8
ask --from backend/api-server-0 --to database/postgres-0 --port 5432
ask --from backend/worker-0 --to database/postgres-0 --port 5432
end

step "7. STRICT mTLS in backend and database (09-mtls.yaml)"
upto 9
ask --from frontend/web-0 --to backend/api-server-0 --port 8080
ask --from frontend/web-0 --to backend/api-server-0 --port 8080 --plaintext
end

step "8. L7 rules (10-authorization.yaml): web may GET/POST the orders API, Prometheus may GET /metrics"
upto 10
ask --from frontend/web-0 --to backend/api-server-0 --port 8080 --method GET --path /api/v1/orders/42
ask --from frontend/web-0 --to backend/api-server-0 --port 8080 --method DELETE --path /api/v1/orders/42
ask --from monitoring/prometheus-0 --to backend/api-server-0 --port http --method GET --path /metrics
ask --from monitoring/prometheus-0 --to backend/api-server-0 --port 8080 --method GET --path /api/v1/orders
ask --from frontend/web-0 --to backend/api-server-0 --port 8080 --method GET --path '/api/v1/orders/../../../metrics'
end
