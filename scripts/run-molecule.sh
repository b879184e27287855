#!/usr/bin/env bash
# Run the Molecule role scenarios (extensions/molecule/<name>/) in podman
# systemd containers:  scripts/run-molecule.sh [scenario...]
#
# - builds or reuses the local image (scripts/build-image.sh) and pins the
#   scenarios to its exact tag;
# - CONTAINERS_CONF -> extensions/molecule/containers.conf (runc, ulimits);
# - the collection is made visible as cerniq.ops through a temporary
#   ANSIBLE_COLLECTIONS_PATH tree (ansible_collections/cerniq/ops -> this checkout);
# - runs `molecule test` per scenario, stops at the first failure, prints one
#   line per scenario and finally `molecule: N passed, M failed`.
# Works unattended (CI=true, no TTY, root). Needs the venv from scripts/bootstrap.sh.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
VENV=${CERNIQ_VENV:-$ROOT/.venv}
SCENARIO_ROOT=extensions/molecule

export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/$SCENARIO_ROOT/containers.conf}
export PATH="$VENV/bin:$PATH"
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0 NO_COLOR=1
export ANSIBLE_NOCOLOR=1 ANSIBLE_DEPRECATION_WARNINGS=false
# Only scenarios under extensions/molecule/ (a stray top-level molecule/
# directory would otherwise switch Molecule to the old layout).
export MOLECULE_GLOB="$SCENARIO_ROOT/**/molecule.yml"

say() { printf '[run-molecule] %s\n' "$*"; }

command -v molecule >/dev/null || { say "molecule not found; run scripts/bootstrap.sh first"; exit 2; }

# --- image ---------------------------------------------------------------------
start=$SECONDS
if ! CERNIQ_MOLECULE_IMAGE=$(scripts/build-image.sh | tail -n1) || [ -z "$CERNIQ_MOLECULE_IMAGE" ]; then
  say "image build failed"
  echo "molecule: 0 passed, 1 failed"
  exit 1
fi
export CERNIQ_MOLECULE_IMAGE
say "image $CERNIQ_MOLECULE_IMAGE ready ($((SECONDS - start)) s)"

# --- the collection as cerniq.ops ----------------------------------------------------
COLL_TMP=$(mktemp -d "${TMPDIR:-/tmp}/cerniq-molecule.XXXXXX")
trap 'rm -rf "$COLL_TMP"' EXIT
mkdir -p "$COLL_TMP/ansible_collections/cerniq"
ln -s "$ROOT" "$COLL_TMP/ansible_collections/cerniq/ops"
# Collections shipped with the `ansible` package (containers.podman) are found
# on the Python path in addition to this one.
export ANSIBLE_COLLECTIONS_PATH="$COLL_TMP"

# --- scenarios ---------------------------------------------------------------------------
if [ $# -gt 0 ]; then
  scenarios=("$@")
else
  mapfile -t scenarios < <(find "$SCENARIO_ROOT" -mindepth 2 -name molecule.yml -printf '%h\n' \
                           | sed "s|^$SCENARIO_ROOT/||" | sort)
fi
if [ ${#scenarios[@]} -eq 0 ]; then
  say "no scenarios under $SCENARIO_ROOT"
  echo "molecule: 0 passed, 0 failed"
  exit 0
fi

LOGDIR=${CERNIQ_MOLECULE_LOGDIR:-$ROOT/tests/output/molecule}
mkdir -p "$LOGDIR"
# One scenario: prints "scenario NAME: passed|FAILED (...)"; exit status = result.
run_one() {
  local s=$1 log t0 rc
  if [ ! -f "$SCENARIO_ROOT/$s/molecule.yml" ]; then
    echo "scenario $s: FAILED (no $SCENARIO_ROOT/$s/molecule.yml)"
    return 1
  fi
  log="$LOGDIR/${s//\//_}.log"
  t0=$SECONDS
  say "scenario $s: molecule test (log: $log)"
  # One run per scenario at a time on this host: the container, network and
  # Molecule's ephemeral directory are named after the scenario.
  local lock="/var/tmp/cerniq-molecule-${s//\//_}.lock"
  exec 8>"$lock"
  flock -n 8 || { say "scenario $s: another run holds $lock, waiting"; flock 8; }
  # Molecule's state for this run only (so `create` always creates), and no `destroy` playbook runs:
  # remove_instance does what it would, before (a run killed earlier) and after, in 0.3 s instead of
  # two ansible-playbook runs (about 12 CPU-s a scenario).
  local state
  state=$(mktemp -d "${TMPDIR:-/tmp}/cerniq-molecule-state.XXXXXX")
  remove_instance "$s"
  if MOLECULE_EPHEMERAL_DIRECTORY=$state molecule test -s "$s" --destroy=never </dev/null >"$log" 2>&1; then
    echo "scenario $s: passed ($((SECONDS - t0)) s)"
    rc=0
  else
    echo "scenario $s: FAILED ($((SECONDS - t0)) s, log: $log)"
    tail -n 40 "$log" | sed "s/^/  [$s] /"
    rc=1
  fi
  remove_instance "$s"  # leave nothing running, after a failed scenario too
  rm -rf "$state"
  exec 8>&-
  return $rc
}

# What the driver's destroy playbook removes for scenario $1: its container, cerniq-<scenario>
# (extensions/molecule/config.yml), and the cerniq-<scenario> network older runs created.
remove_instance() {
  podman rm -f -t 0 "cerniq-$1" >/dev/null 2>&1
  podman network rm -f "cerniq-$1" >/dev/null 2>&1
  return 0
}

# Scenarios are independent (own container names, Molecule directory), so
# CERNIQ_MOLECULE_JOBS of them run at once (default 2: most of a scenario is waiting
# on apt and systemd). With 1, the run stops at the first failure.
JOBS=${CERNIQ_MOLECULE_JOBS:-2}
RESULTS=$(mktemp "${TMPDIR:-/tmp}/cerniq-molecule-results.XXXXXX")
if [ "$JOBS" -le 1 ]; then
  for s in "${scenarios[@]}"; do
    run_one "$s" | tee -a "$RESULTS" || break
  done
else
  export -f run_one remove_instance say
  export SCENARIO_ROOT LOGDIR
  # shellcheck disable=SC2016  # $1 is expanded by the inner bash, not here
  printf '%s\n' "${scenarios[@]}" | xargs -P "$JOBS" -I{} bash -c 'run_one "$1"' _ {} | tee -a "$RESULTS"
fi
passed=$(grep -c '^scenario .*: passed' "$RESULTS")
failed=$(grep -c '^scenario .*: FAILED' "$RESULTS")
rm -f "$RESULTS"
echo "molecule: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
