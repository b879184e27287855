#!/usr/bin/env bash
# Checks the container stack the demo, the lab and Molecule need, in seconds:
# builds (or reuses) the project's base image, creates a throwaway podman network,
# runs a container on it, resolves that container's name from a second one through
# aardvark-dns, and removes both and the network. On failure it names the cause and
# the Debian package that provides the missing piece.
#
# Used by scripts/bootstrap.sh right after the packages are installed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/extensions/molecule/containers.conf}
NAME=cerniq-check-$$
NET=$NAME-net

say() { printf '[check-containers] %s\n' "$*"; }
die() { say "FAILED: $*"; exit 1; }

cleanup() {
  # --ignore: without it the name of a container that is already gone ("-b" removes itself) fails
  # the whole command, the first container stays, and `network rm -f` waits 10 s to stop it.
  podman rm -f -i -t 0 "$NAME-a" "$NAME-b" >/dev/null 2>&1 || true
  podman network rm -f "$NET" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# Each binary podman calls for a network, and the package it comes from.
for pair in podman:podman runc:runc iptables:iptables /usr/lib/podman/netavark:netavark \
            /usr/lib/podman/aardvark-dns:aardvark-dns; do
  bin=${pair%%:*} pkg=${pair##*:}
  if [ "${bin#/}" = "$bin" ]; then
    command -v "$bin" >/dev/null || PATH=$PATH:/usr/sbin:/sbin command -v "$bin" >/dev/null \
      || die "$bin is missing: apt-get install $pkg"
  else
    [ -x "$bin" ] || die "$bin is missing: apt-get install $pkg"
  fi
done

start=$SECONDS
image=$("$ROOT/scripts/build-image.sh" | tail -n1) || die "the base image could not be built (scripts/build-image.sh)"

hint() {  # what to install for a podman error
  case $1 in
    *netavark*"No such file"*|*iptables*) echo " -- netavark cannot find iptables: apt-get install iptables" ;;
    *aardvark*) echo " -- apt-get install aardvark-dns" ;;
  esac
}
out=$(podman network create "$NET" 2>&1) || die "podman network create: $out$(hint "$out")"
out=$(podman run -d --name "$NAME-a" --network "$NET" "$image" sleep 60 2>&1) \
  || die "podman run on a network: $out$(hint "$out")"
# The second container asks the network's DNS server (aardvark-dns) for the first one's name.
out=$(podman run --rm --name "$NAME-b" --network "$NET" "$image" \
        python3 -c "import socket, sys; print(socket.gethostbyname(sys.argv[1]))" "$NAME-a" 2>&1) \
  || die "name resolution between containers (aardvark-dns): $out -- apt-get install aardvark-dns"
say "ok: network, container and aardvark-dns name resolution ($NAME-a -> $out) in $((SECONDS - start)) s"
