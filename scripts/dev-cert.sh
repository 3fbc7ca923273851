#!/usr/bin/env bash
# A self-signed development certificate for localhost, 127.0.0.1 and ::1 (what gateway.json's TLS listener
# serves under `make run`). Made on first use, kept in certs/ (never committed), valid for a year.
set -euo pipefail
dir="${1:-certs}"
cert="$dir/dev-cert.pem"
key="$dir/dev-key.pem"
[ -f "$cert" ] && [ -f "$key" ] && exit 0
mkdir -p "$dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
  -keyout "$key" -out "$cert" -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
  -addext "extendedKeyUsage=serverAuth" 2>/dev/null
chmod 600 "$key"
echo "made a development certificate: $cert (self-signed; curl needs -k or --cacert $cert)" >&2
