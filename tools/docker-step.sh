#!/usr/bin/env bash
# A download step of the Dockerfile: runs COMMAND trusting the optional build secret `ca` (a CA bundle, e.g.
# a TLS-inspecting proxy's), and when COMMAND fails on TLS certificate verification, ends its output with one
# line that says to give that secret.
#
# The secret is mounted at /run/secrets/ca only during its RUN (`RUN --mount=type=secret,id=ca`), so no layer
# holds it. While COMMAND runs, pip trusts it (PIP_CERT) and apt does (Acquire::https::CAInfo, in an apt.conf.d
# file deleted when COMMAND ends).
#
# Usage: tools/docker-step.sh COMMAND [ARGS...]
set -uo pipefail

[ $# -gt 0 ] || { echo "docker-step: usage: tools/docker-step.sh COMMAND [ARGS...]" >&2; exit 2; }
secret=/run/secrets/ca
apt_conf=/etc/apt/apt.conf.d/99ilgnet-build-ca
log=$(mktemp /tmp/docker-step.XXXXXX)
trap 'rm -f "$log" "$apt_conf"' EXIT
if [ -f "$secret" ]; then
  export PIP_CERT=$secret
  echo "Acquire::https::CAInfo \"$secret\";" > "$apt_conf"
fi

"$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# pip (Python's ssl), apt (GnuTLS) and curl word a refused certificate each their own way.
if [ "$status" != 0 ] && grep -Eqi 'certificate verify failed|certificate verification failed|SSL certificate problem' "$log"; then
  if [ -f "$secret" ]; then
    echo "ilgnet-caffe build: TLS certificate verification failed although the build secret 'ca' was given: it does not hold the CA that signed the server's (or a proxy's) certificate"
  else
    echo "ilgnet-caffe build: TLS certificate verification failed (a TLS-inspecting proxy?): build again with its CA bundle as the build secret 'ca': make docker-build CA=/etc/ssl/certs/ca-certificates.crt, or docker build --secret id=ca,src=FILE"
  fi
fi
exit "$status"
