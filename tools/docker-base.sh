#!/usr/bin/env bash
# Makes the base image of the Dockerfile, debian:12, where it is not there yet: pulled from the registry, or,
# where the registry cannot be reached, made on this machine with debootstrap (Debian 12, bookworm, minbase)
# and `docker import`, with the apt sources of the official image (bookworm, bookworm-updates,
# bookworm-security). Prints one line saying which. Needs root (debootstrap) only for that last case.
#
# Usage: tools/docker-base.sh
# Environment:
#   ILGNET_DOCKER         the docker client (default: docker)
#   ILGNET_DEBIAN_MIRROR  the Debian mirror debootstrap reads (default: http://deb.debian.org/debian)
set -euo pipefail

if [ $# -gt 0 ]; then                   # no arguments: --help prints the lines above
  awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$0"
  [ "$1" = -h ] || [ "$1" = --help ] || exit 2
  exit 0
fi
docker=${ILGNET_DOCKER:-docker}
mirror=${ILGNET_DEBIAN_MIRROR:-http://deb.debian.org/debian}
image=debian:12

die() { printf 'docker-base: %s\n' "$*" >&2; exit 1; }

"$docker" info >/dev/null 2>&1 || die "no Docker engine answers '$docker info' (start dockerd, or set ILGNET_DOCKER)"
if "$docker" image inspect "$image" >/dev/null 2>&1; then
  echo "docker-base: $image is present ($("$docker" image inspect -f '{{.Id}}' "$image" | cut -c8-19))"
  exit 0
fi
if "$docker" pull -q "$image" >/dev/null 2>&1; then
  echo "docker-base: $image pulled from the registry"
  exit 0
fi
command -v debootstrap >/dev/null ||
  die "$image cannot be pulled, and debootstrap, which makes it here, is missing (apt-get install debootstrap)"
[ "$(id -u)" = 0 ] || die "$image cannot be pulled; making it with debootstrap needs root"

start=$SECONDS
root=$(mktemp -d "${TMPDIR:-/tmp}/ilgnet-debian12.XXXXXX")
log="$root.log"
trap 'rm -rf "$root"' EXIT
echo "docker-base: $image cannot be pulled; making it with debootstrap bookworm from $mirror (log: $log)" >&2
debootstrap --variant=minbase bookworm "$root" "$mirror" > "$log" 2>&1 ||
  die "debootstrap bookworm from $mirror failed: $(tail -1 "$log") (log: $log)"
rm -f "$root/etc/apt/sources.list"
cat > "$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | "$docker" import --change 'CMD ["bash"]' - "$image" >/dev/null
rm -f "$log"
echo "docker-base: $image made with debootstrap bookworm and docker import in $((SECONDS - start)) s," \
  "$("$docker" image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1 / 1e6}')"
