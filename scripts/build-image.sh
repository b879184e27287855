#!/usr/bin/env bash
# Build (once) the Debian 12 systemd image the Molecule scenarios and the lab run in:
#   localhost/cerniq-bookworm:<recipe-hash>   (also tagged :latest)
# debootstrap --variant=minbase + `podman import`: no registry, no Dockerfile.
#
# The tag is the sha256 (first 16 hex digits) of the recipe: this script, the
# Debian mirror it uses and the architecture. When an image with that tag exists
# nothing is rebuilt. Prints the full image reference as the last line of stdout.
#
# Mirror: taken from the host's apt sources (/etc/apt/sources.list{,.d/*}), so an
# offline machine pointed at a local mirror builds from that mirror; apt inside
# the image uses the same mirror. Override with CERNIQ_DEBIAN_MIRROR /
# CERNIQ_DEBIAN_SECURITY_MIRROR (empty security mirror = no security source).
#
# Environment: CONTAINERS_CONF defaults to the project's containers.conf.
# Needs root (debootstrap), debootstrap and podman.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SELF="$ROOT/scripts/build-image.sh"
IMAGE_NAME=${CERNIQ_IMAGE_NAME:-localhost/cerniq-bookworm}
SUITE=bookworm
PACKAGES=python3,python3-apt,systemd,systemd-sysv,procps,iproute2,ca-certificates,gpgv,debian-archive-keyring,apt-transport-https
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/extensions/molecule/containers.conf}

say() { printf '[build-image] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# --- the host's Debian mirror ------------------------------------------------
# First URI of a Debian source whose suites include $1 (deb822 .sources and
# one-line .list formats). Non-Debian repositories (no matching suite) are skipped.
host_mirror() {
  local suite=$1 f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    case $f in
      *.sources)
        awk -v want="$suite" '
          function flush() { if (uri != "" && ok && deb) { print uri; exit } uri=""; ok=0; deb=0 }
          /^[[:space:]]*$/ { flush(); next }
          /^[[:space:]]*#/ { next }
          tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb=1 }
          tolower($1) == "uris:" { uri=$2 }
          tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == want) ok=1 }
          tolower($1) == "enabled:" && tolower($2) == "no" { uri="" }
          END { flush() }' "$f" ;;
      *.list)
        awk -v want="$suite" '
          $1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                        if ($(i+1) == want) { print $i; exit } }' "$f" ;;
    esac
  done | head -n1
}

MIRROR=${CERNIQ_DEBIAN_MIRROR:-$(host_mirror "$SUITE")}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
MIRROR=${MIRROR%/}
if [ -n "${CERNIQ_DEBIAN_SECURITY_MIRROR+x}" ]; then
  SECURITY_MIRROR=$CERNIQ_DEBIAN_SECURITY_MIRROR
else
  SECURITY_MIRROR=$(host_mirror "$SUITE-security")
fi
SECURITY_MIRROR=${SECURITY_MIRROR%/}

ARCH=$(dpkg --print-architecture 2>/dev/null || uname -m)
HASH=$( { cat "$SELF"; printf 'mirror=%s\nsecurity=%s\narch=%s\n' "$MIRROR" "$SECURITY_MIRROR" "$ARCH"; } \
        | sha256sum | cut -c1-16)
IMAGE="$IMAGE_NAME:$HASH"

command -v podman >/dev/null || die "podman is not installed (apt-get install podman runc)"

# Serialise concurrent builds (parallel CI jobs, several engineers on one host).
LOCK=${CERNIQ_IMAGE_LOCK:-/var/tmp/cerniq-bookworm-image.lock}
exec 9>"$LOCK"
flock 9

if podman image exists "$IMAGE"; then
  say "up to date: $IMAGE"
  podman tag "$IMAGE" "$IMAGE_NAME:latest"
  echo "$IMAGE"
  exit 0
fi

[ "$(id -u)" = 0 ] || die "building $IMAGE needs root (debootstrap); run as root"
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"

WORK=$(mktemp -d /var/tmp/cerniq-rootfs.XXXXXX)
cleanup() { rm -rf --one-file-system "$WORK"; }
trap cleanup EXIT
ROOTFS="$WORK/rootfs"

KEYRING=()
[ -r /usr/share/keyrings/debian-archive-keyring.gpg ] && \
  KEYRING=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)

say "building $IMAGE from $MIRROR (debootstrap $SUITE, minbase)"
start=$SECONDS
debootstrap --variant=minbase "${KEYRING[@]}" --include="$PACKAGES" \
  "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
  tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }

# apt inside the image uses the same mirror as the host.
rm -f "$ROOTFS/etc/apt/sources.list"
{
  printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$MIRROR" "$SUITE" "$SUITE"
  if [ -n "$SECURITY_MIRROR" ]; then
    printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$SECURITY_MIRROR" "$SUITE"
  fi
} >"$ROOTFS/etc/apt/sources.list.d/debian.sources"

# Small and quiet: no docs/man pages, no apt cache, no interactive prompts.
cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/01-cerniq-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
# A download retried ten times, apt waiting 1, 2, 4 ... up to 30 s between tries: a Molecule
# converge failed when a name lookup failed on all of apt's tries ("Temporary failure resolving
# deb.debian.org"; the old APT::Acquire::Retries is not a key apt reads: it tried its default 3 times).
cat >"$ROOTFS/etc/apt/apt.conf.d/01-cerniq" <<'EOF'
Acquire::Retries "10";
Dpkg::Use-Pty "false";
EOF

# systemd as a container init: a fresh machine-id per container, no gettys,
# nothing that needs real hardware.
: >"$ROOTFS/etc/machine-id"
rm -f "$ROOTFS/var/lib/dbus/machine-id"
for unit in getty.target console-getty.service systemd-udevd.service \
            systemd-modules-load.service sys-kernel-config.mount sys-kernel-debug.mount \
            systemd-remount-fs.service systemd-firstboot.service apt-daily.timer apt-daily-upgrade.timer; do
  ln -sf /dev/null "$ROOTFS/etc/systemd/system/$unit"
done
ln -sf /lib/systemd/system/multi-user.target "$ROOTFS/etc/systemd/system/default.target"
echo cerniq >"$ROOTFS/etc/hostname"

chroot "$ROOTFS" apt-get clean
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/log/*.log \
       "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/*
mkdir -p "$ROOTFS/var/lib/apt/lists/partial"
# No package lists in the image: make them look stale so apt roles using
# cache_valid_time refresh them on first use.
touch -d 2000-01-01 "$ROOTFS/var/lib/apt/lists"
say "rootfs ready after $((SECONDS - start)) s; importing"

tar --numeric-owner --xattrs -C "$ROOTFS" -c . | podman import --quiet \
  --change 'CMD ["/sbin/init"]' \
  --change 'STOPSIGNAL SIGRTMIN+3' \
  --change 'ENV container=podman' \
  --change "LABEL org.cerniq.recipe=$HASH" \
  --change "LABEL org.cerniq.mirror=$MIRROR" \
  - "$IMAGE" >/dev/null
podman tag "$IMAGE" "$IMAGE_NAME:latest"
say "built $IMAGE in $((SECONDS - start)) s"
echo "$IMAGE"
