#!/usr/bin/env bash
# Prints the docker client that can build the Dockerfile with BuildKit (its secret and bind mounts need it):
# $ILGNET_DOCKER when set; else the first of `docker` on PATH and /usr/bin/docker that has the buildx plugin or is a
# client from before Docker 23 (BuildKit built in, as Debian 12's docker.io 20.10). Where none can, says in one
# line what to install and exits 1.
#
# Usage: tools/docker-client.sh      (the Makefile's docker-build targets and tools/docker-smoke.sh use it)
set -euo pipefail

if [ $# -gt 0 ]; then                   # no arguments: --help prints the lines above
  awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$0"
  [ "$1" = -h ] || [ "$1" = --help ] || exit 2
  exit 0
fi
if [ -n "${ILGNET_DOCKER:-}" ]; then
  echo "$ILGNET_DOCKER"
  exit 0
fi

# builds CLIENT: whether CLIENT runs `DOCKER_BUILDKIT=1 docker build` (a plugin, or BuildKit built in before 23).
builds() {
  local major
  "$1" buildx version >/dev/null 2>&1 && return 0
  major=$("$1" --version 2>/dev/null | sed -n 's/^Docker version \([0-9]*\)\..*/\1/p')
  [ -n "$major" ] && [ "$major" -lt 23 ]
}

seen=()
for client in "$(command -v docker || true)" /usr/bin/docker; do
  [ -n "$client" ] && [ -x "$client" ] || continue
  if builds "$client"; then
    echo "$client"
    exit 0
  fi
  seen+=("$client ($("$client" --version 2>/dev/null | sed 's/^Docker version //; s/,.*//'))")
done
if [ ${#seen[@]} -eq 0 ]; then
  echo "docker-client: no docker client found: install Docker (Debian 12: apt-get install docker.io)" >&2
else
  echo "docker-client: ${seen[*]} cannot build with BuildKit: install Docker's buildx plugin, or Debian 12's docker.io (its client has BuildKit built in), or set ILGNET_DOCKER to a client that can" >&2
fi
exit 1
