#!/usr/bin/env bash
# Build (once) an execution environment (EE) image equivalent to meta/execution-environment.yml,
# from the project's locally built Debian 12 base (scripts/build-image.sh) - ansible-builder only
# builds on RPM-based bases and no registry is reachable here. The runner layer (tests/runner)
# runs the collection's playbooks in it the way AWX does:
#   ansible-runner run --process-isolation --process-isolation-executable podman --container-image IMAGE
#
#   scripts/build-ee-image.sh build/cerniq-ops-0.1.0.tar.gz   -> prints the image as the last line
#
# Two images, each tagged with the sha256 (first 16 hex digits) of its recipe; an image whose
# tag exists is not rebuilt:
#   localhost/cerniq-ee-base:<hash>  the Debian base (its tag), this script, requirements.txt and
#        constraints.txt: python3, the PostgreSQL and Redis clients, and a venv /opt/ansible with
#        ansible-core (>=2.19,<2.21), ansible-runner and the collection's Python requirements at
#        the versions pinned in constraints.txt (slow: apt and PyPI);
#   localhost/cerniq-ee:<hash>       the base hash and the collection's content (the tarball's
#        MANIFEST.json and FILES.json): the collection in /usr/share/ansible/collections (seconds).
# Older tags of both are removed when a new one is built.
#
# HTTPS to PyPI from a fresh rootfs fails certificate checks where the host trusts an extra CA:
# the host's CA bundle and /etc/pip.conf are mounted read-only into the build (never copied into
# the image). Builds use the host network (no podman network needed).
# Environment: CONTAINERS_CONF defaults to the project's containers.conf. Needs podman (and root
# the first time, for the Debian base).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SELF="$ROOT/scripts/build-ee-image.sh"
BASE_NAME=${CERNIQ_EE_BASE_NAME:-localhost/cerniq-ee-base}
IMAGE_NAME=${CERNIQ_EE_IMAGE_NAME:-localhost/cerniq-ee}
HOST_CA=${CERNIQ_HOST_CA:-/etc/ssl/certs/ca-certificates.crt}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/extensions/molecule/containers.conf}

say() { printf '[build-ee-image] %s\n' "$*" >&2; }
# Older tags of an image (earlier recipes or collections) are removed; one still used by a container stays.
prune() {  # name current-tag
  podman images --format '{{.Repository}}:{{.Tag}}' --filter "reference=$1" \
    | grep -v -e ":latest$" -e ":$2$" | xargs -r podman rmi >/dev/null 2>&1 || true
}
die() { say "ERROR: $*"; exit 1; }

[ $# -eq 1 ] || die "usage: $0 COLLECTION_TARBALL (ansible-galaxy collection build --output-path build .)"
TARBALL=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
[ -f "$TARBALL" ] || die "no collection tarball at $1"
command -v podman >/dev/null || die "podman is not installed (apt-get install podman runc)"

DEBIAN_IMAGE=$("$ROOT/scripts/build-image.sh" | tail -n1)

# Serialise concurrent builds (parallel test runs on one host).
exec 9>"${CERNIQ_EE_IMAGE_LOCK:-/var/tmp/cerniq-ee-image.lock}"
flock 9

WORK=$(mktemp -d /var/tmp/cerniq-ee.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

BASE_HASH=$( { printf 'base=%s\n' "$DEBIAN_IMAGE"; cat "$SELF" "$ROOT/requirements.txt" "$ROOT/constraints.txt"; } \
             | sha256sum | cut -c1-16)
BASE="$BASE_NAME:$BASE_HASH"
if podman image exists "$BASE"; then
  say "up to date: $BASE"
else
  say "building $BASE from $DEBIAN_IMAGE"
  start=$SECONDS
  cp "$ROOT/requirements.txt" "$ROOT/constraints.txt" "$WORK/"
  mounts=(--volume "$HOST_CA:/run/cerniq-host-ca.crt:ro")
  [ -r /etc/pip.conf ] && mounts+=(--volume /etc/pip.conf:/etc/pip.conf:ro)
  cat >"$WORK/Containerfile" <<EOF
FROM $DEBIAN_IMAGE
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
      python3 python3-venv postgresql-client redis-tools openssh-client \\
 && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY requirements.txt constraints.txt /tmp/ee/
RUN python3 -m venv /opt/ansible \\
 && PIP_CERT=/run/cerniq-host-ca.crt /opt/ansible/bin/pip install --no-cache-dir --disable-pip-version-check \\
      -c /tmp/ee/constraints.txt 'ansible-core>=2.19,<2.21' ansible-runner -r /tmp/ee/requirements.txt \\
 && rm -rf /tmp/ee
ENV PATH=/opt/ansible/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    ANSIBLE_COLLECTIONS_PATH=/usr/share/ansible/collections \\
    HOME=/runner LANG=C.UTF-8
RUN mkdir -p /runner /usr/share/ansible/collections && chmod 0775 /runner
WORKDIR /runner
CMD ["/bin/bash"]
LABEL ansible-execution-environment=true org.cerniq.recipe=$BASE_HASH
EOF
  podman build --quiet --pull=never --network host "${mounts[@]}" -t "$BASE" "$WORK" >"$WORK/build.log" 2>&1 || {
    tail -n 40 "$WORK/build.log" >&2; die "building $BASE failed"; }
  say "built $BASE in $((SECONDS - start)) s"
  prune "$BASE_NAME" "$BASE_HASH"
fi

# The collection's content, not the tarball's bytes (each build has new timestamps): FILES.json
# lists every file with its sha256, MANIFEST.json the version and metadata.
HASH=$( { printf 'base=%s\n' "$BASE"; tar -xzOf "$TARBALL" MANIFEST.json FILES.json; } | sha256sum | cut -c1-16)
IMAGE="$IMAGE_NAME:$HASH"
if podman image exists "$IMAGE"; then
  say "up to date: $IMAGE"
else
  cp "$TARBALL" "$WORK/collection.tar.gz"
  cat >"$WORK/Containerfile" <<EOF
FROM $BASE
COPY collection.tar.gz /tmp/collection.tar.gz
RUN ansible-galaxy collection install --offline -p /usr/share/ansible/collections /tmp/collection.tar.gz \\
 && rm -f /tmp/collection.tar.gz && ansible-galaxy collection list cerniq.ops
LABEL org.cerniq.collection=$HASH
EOF
  podman build --quiet --pull=never -t "$IMAGE" "$WORK" >"$WORK/build.log" 2>&1 || {
    tail -n 40 "$WORK/build.log" >&2; die "building $IMAGE failed"; }
  say "built $IMAGE"
  prune "$IMAGE_NAME" "$HASH"
fi
podman tag "$IMAGE" "$IMAGE_NAME:latest"
echo "$IMAGE"
