#!/usr/bin/env bash
# Set up everything `make test` and `make demo` need on a Debian 12 machine:
# Debian packages (only the missing ones) and the project virtualenvs from the
# pinned requirement files (rebuilt only when those files change).
# Elsewhere, or when not root, it stops and says exactly what to install.
#   scripts/bootstrap.sh --missing   only prints the listed packages that are not installed
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${CERNIQ_VENV:-.venv}
VENV_BULLMQ5=${CERNIQ_VENV_BULLMQ5:-.venv-bullmq5}
PYTHON=${PYTHON:-python3}

# Debian packages: servers and exporters the tests start themselves (never the
# default instances), Prometheus tooling, and podman for the Molecule/demo containers.
# netavark needs iptables at run time (its only Recommends/Suggests path to it, so
# --no-install-recommends leaves it out): without it the first `podman network create`
# fails with "netavark: No such file or directory".
DEB_PACKAGES=(
  postgresql postgresql-contrib
  redis-server redis-tools
  prometheus prometheus-alertmanager prometheus-postgres-exporter prometheus-redis-exporter
  podman runc netavark aardvark-dns iptables catatonit debootstrap uidmap slirp4netns fuse-overlayfs
  logrotate iproute2 git make shellcheck
  python3 python3-venv
)

say() { printf '[bootstrap] %s\n' "$*"; }

missing_packages() {
  local p
  for p in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || printf '%s ' "$p"
  done
}

install_debian_packages() {
  if [ ! -r /etc/debian_version ] || ! command -v dpkg-query >/dev/null; then
    say "This is not a Debian system. Install these (or your distribution's equivalents) and rerun:"
    say "  ${DEB_PACKAGES[*]}"
    say "  and Python 3.11 with venv and pip."
    exit 1
  fi
  local missing
  missing=$(missing_packages)
  [ -z "$missing" ] && { say "Debian packages: all present"; return; }
  if [ "$(id -u)" != 0 ]; then
    say "Missing Debian packages and not root. Run as root, then rerun:"
    say "  apt-get install -y $missing"
    exit 1
  fi
  say "installing Debian packages: $missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

requirements_stamp() { cat requirements.txt requirements-dev.txt constraints.txt | sha256sum | cut -d' ' -f1; }

# A virtualenv is built once per set of pinned requirements (and Python) in a cache,
# CERNIQ_VENV_CACHE (default ~/.cache/cerniq-ops/venvs; empty builds it in place), and linked
# as .venv: another clone with the same requirements - every CI run is a clean clone - reuses
# it instead of building it again (43 s of every run, measured). Like the project's image,
# keyed by content: a changed requirements file builds a new one. Do not pip install into it
# by hand (every clone sees it); entries unused for 30 days are removed.
make_venv() {
  local venv=$1 stamp=$2; shift 2
  if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.stamp" 2>/dev/null)" = "$stamp" ]; then
    say "virtualenv $venv: up to date"
    if [ -L "$venv" ]; then touch "$venv/.stamp"; fi  # a cached one: in use
    return 0
  fi
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    say "Python 3.11 or newer is needed for $PYTHON"; exit 1; }
  local cache=${CERNIQ_VENV_CACHE-${XDG_CACHE_HOME:-$HOME/.cache}/cerniq-ops/venvs}
  if [ -z "$cache" ]; then
    if [ -L "$venv" ]; then rm -f "$venv"; fi
    build_venv "$venv" "$stamp" "$@"
    return
  fi
  local name key target
  name=$(basename "$venv" | tr -d .)
  key=$({ echo "$stamp"; "$PYTHON" -c 'import sys; print(sys.executable, sys.version)'; } | sha256sum | cut -c1-16)
  target=$cache/$name-$key
  mkdir -p "$cache"
  (
    flock 9  # two bootstraps at once: one builds, the other waits and reuses
    if [ "$(cat "$target/.stamp" 2>/dev/null)" = "$stamp" ]; then
      say "virtualenv $venv: reusing $target"
    else
      build_venv "$target" "$stamp" "$@"
    fi
  ) 9>"$target.lock" || exit 1
  [ -L "$venv" ] || rm -rf "$venv"  # one built in place by an earlier bootstrap
  ln -sfn "$target" "$venv"
  touch "$target/.stamp"
  local old used
  for old in "$cache/$name"-*; do
    if [ ! -d "$old" ] || [ "$old" = "$target" ]; then continue; fi
    used=$old/.stamp; [ -e "$used" ] || used=$old  # a build that never finished
    [ -n "$(find "$used" -maxdepth 0 -mtime +30 2>/dev/null)" ] && rm -rf "$old" "$old.lock"
  done
  return 0
}

build_venv() {  # path stamp pip-args...
  local venv=$1 stamp=$2; shift 2
  say "building virtualenv $venv"
  "$PYTHON" -m venv --clear "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  # --no-compile: Python compiles what is imported, on first use; compiling every file of the
  # installed packages up front doubled the build (52 s -> 27 s for .venv, measured).
  "$venv/bin/python" -m pip install -q --no-compile "$@"
  echo "$stamp" > "$venv/.stamp"
}

# The container stack, checked right after installing: a throwaway network, a container
# on it, a name resolved through aardvark-dns, both removed. A missing piece fails here in
# seconds with what to install, not at the first stage of the demo. Needs an image: the
# project's base image when it is built, else nothing to run yet (the check waits for it).
check_container_stack() {
  [ "${CERNIQ_SKIP_CONTAINER_CHECK:-}" = 1 ] && return 0
  scripts/check-containers.sh || exit 1
}

if [ "${1:-}" = --missing ]; then  # the listed packages not installed here (nothing installed)
  missing_packages; echo; exit 0
fi
install_debian_packages
check_container_stack
make_venv "$VENV" "$(requirements_stamp)" -r requirements-dev.txt -c constraints.txt
make_venv "$VENV_BULLMQ5" "$(sha256sum requirements-bullmq-v5.txt | cut -d' ' -f1)" -r requirements-bullmq-v5.txt
say "ready: $VENV"
