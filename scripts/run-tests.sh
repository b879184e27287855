#!/usr/bin/env bash
# The test layers of cerniq.ops, with a short summary at the end.
#   run-tests.sh all    every layer (what `make test` and CI run)
#   run-tests.sh fast   all but the container layers (molecule, lab, fresh)
#   run-tests.sh LAYER  one layer
#
# `all` runs lanes side by side, each lane's layers one after the other (the `all` case below): what waits
# (the lab demo waiting out the alert rules' real `for:` durations, apt and pip downloads) overlaps
# with what computes. The first failure stops every lane, removes the containers they made and
# names its log. Every few minutes a line says which layers are still running.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
REPO=$PWD
VENV=${CERNIQ_VENV:-.venv}
export PATH="$REPO/$VENV/bin:$PATH"
export ANSIBLE_NOCOLOR=1 PY_COLORS=0
# podman with the project's settings (netavark networks), for the layers and the stop path alike
export CONTAINERS_CONF=${CONTAINERS_CONF:-$REPO/extensions/molecule/containers.conf}
LOGDIR=$(mktemp -d /tmp/cerniq-test-logs-XXXXXX)
# Marks every process this run starts, in whatever session (stop_lanes finds them by it).
export CERNIQ_TEST_RUN=${LOGDIR##*/}
# The repository seen as ansible_collections/cerniq/ops, for ansible-lint's syntax checks.
mkdir -p "$LOGDIR/collections/ansible_collections/cerniq"
ln -s "$REPO" "$LOGDIR/collections/ansible_collections/cerniq/ops"
T0=$SECONDS

# Scratch space for every layer (pytest's tmp_path, the test servers' data directories, Ansible's
# local temp, Molecule's and the lab's state): a private directory on a tmpfs when there is one
# with room, CERNIQ_TEST_TMPFS (default /dev/shm; empty keeps TMPDIR as it is). The test PostgreSQL
# servers create and drop a database per hostile example; on the disk that was mostly kernel time
# (the hostile layer alone: 130 s wall, 74 s system time; on the tmpfs 64 s, 14 s). fsync is off in
# those servers already: what a test proves never depended on the disk. Removed when the run ends.
RUN_TMPDIR=""
use_tmpfs() {
  local base=${CERNIQ_TEST_TMPFS-/dev/shm} free_kib
  [ -n "$base" ] && [ -d "$base" ] && [ -w "$base" ] || return 0
  [ "$(stat -f -c %T "$base" 2>/dev/null)" = tmpfs ] || return 0
  free_kib=$(df -Pk "$base" | awk 'NR == 2 { print $4 }')
  [ "${free_kib:-0}" -ge $((4 * 1024 * 1024)) ] || return 0  # 4 GiB free: a run peaks far below that
  RUN_TMPDIR=$(mktemp -d "$base/cerniq-test-XXXXXX") || { RUN_TMPDIR=""; return 0; }
  chmod 0755 "$RUN_TMPDIR"  # the test PostgreSQL servers run as the postgres user
  export TMPDIR=$RUN_TMPDIR
}
use_tmpfs

# --- one layer = one function; it writes "$LOGDIR/<layer>.result": "<count>\t<unit>\t<detail>" ------

result() {  # layer count unit detail
  printf '%s\t%s\t%s\n' "$2" "$3" "$4" >"$LOGDIR/$1.result"
}

pytest_layer() {  # layer path [pytest args...]
  local layer=$1 path=$2; shift 2
  local log=$LOGDIR/$layer.log
  python -m pytest "$path" -x -q -p no:cacheprovider "$@" >"$log" 2>&1
  local rc=$?
  [ "$rc" = 0 ] || return 1
  local n skipped detail="pytest $path"
  n=$(grep -oE "[0-9]+ passed" "$log" | tail -1 | grep -oE "[0-9]+")
  skipped=$(grep -E "[0-9]+ passed" "$log" | tail -1 | grep -oE "[0-9]+ skipped" | grep -oE "[0-9]+")
  if [ -n "$skipped" ]; then
    grep -E '^SKIPPED' "$log" >"$LOGDIR/$layer.skips"  # printed with the summary; the log is removed on success
    detail="$detail, $skipped skipped (reasons below)"
  fi
  result "$layer" "${n:-0}" tests "$detail"
}

layer_sanity() {
  scripts/sanity.sh >"$LOGDIR/sanity.log" 2>&1 || return 1
  result sanity "$(grep -cE '^Running sanity test ' "$LOGDIR/sanity.log")" tests "ansible-test sanity, empty ignore files"
}

layer_lint() {
  ANSIBLE_COLLECTIONS_PATH="$LOGDIR/collections" ansible-lint --profile production --offline \
    >"$LOGDIR/lint.log" 2>&1 || return 1
  local files
  files=$(grep -oE "in [0-9]+ files processed" "$LOGDIR/lint.log" | grep -oE "[0-9]+" | tail -1)
  result lint "${files:-0}" files "ansible-lint --profile production: no finding"
}

layer_rules() {
  local log=$LOGDIR/rules.log f n
  : >"$log"
  # The rule templates rendered through the prometheus role with the settings' defaults.
  rm -rf tests/rules/rendered
  scripts/render-rules.sh tests/rules/rendered >>"$log" 2>&1 || return 1
  for f in tests/rules/rendered/*.yml; do
    promtool check rules --lint-fatal "$f" >>"$log" 2>&1 || return 1
  done
  for f in tests/rules/*.test.yml; do
    promtool test rules "$f" >>"$log" 2>&1 || return 1
  done
  # A rule test = one alert_rule_test / promql_expr_test case (an alert at one evaluation time).
  n=$(python - tests/rules/*.test.yml <<'PY'
import sys, yaml
print(sum(len(case.get('alert_rule_test', [])) + len(case.get('promql_expr_test', []))
          for path in sys.argv[1:] for case in yaml.safe_load(open(path))['tests']))
PY
)
  local rule_files=(tests/rules/*.test.yml)
  result rules "$n" tests "promtool test rules (${#rule_files[@]} files) on the rendered templates, check rules --lint-fatal"
}

layer_molecule() {
  scripts/run-molecule.sh >"$LOGDIR/molecule.log" 2>&1 || return 1
  local n
  n=$(grep -oE "molecule: [0-9]+ passed" "$LOGDIR/molecule.log" | grep -oE "[0-9]+" | tail -1)
  result molecule "${n:-0}" scenarios "converge, idempotence, check, testinfra verify in systemd containers"
}

layer_unit() { pytest_layer unit tests/unit; }
# Most of an integration test is waiting (servers, playbooks, containers): one pytest process used
# 0.7 of a core; three workers keep both cores busy. A file's tests stay together (module fixtures).
layer_integration() { pytest_layer integration tests/integration -n 3 --dist loadfile; }
layer_hostile() { [ -d tests/hostile ] || { result hostile 0 tests "no tests/hostile yet"; return 0; }; pytest_layer hostile tests/hostile; }
# The runner layer is one core's work (228 s wall, 196 CPU-s alone) and the last to end: two workers
# finish it on both cores once the other lanes are done. A file's tests share its fixtures.
layer_runner() { [ -d tests/runner ] || { result runner 0 tests "no tests/runner yet"; return 0; }; pytest_layer runner tests/runner -n 2 --dist loadfile; }
layer_lab() { pytest_layer lab tests/lab; }
layer_fresh() { pytest_layer fresh tests/fresh; }

# --- running layers: lanes ------------------------------------------------------------------------
# A lane is a list of layers run one after the other in a background process of its own; lanes run
# side by side. Each layer leaves "$LOGDIR/<layer>.start", ".end" (seconds since the run began) and
# ".rc"; this shell reports layers as they end and stops every lane at the first failure.

declare -a DONE=() LANE_PIDS=()
ALL_LAYERS=""

elapsed() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }
now() { echo $((SECONDS - T0)); }

print_summary() {
  echo
  echo "== summary ($(elapsed "$(now)") in all) =="
  local layer count unit detail tests=0 files=0 scenarios=0
  for layer in "${DONE[@]}"; do
    IFS=$'\t' read -r count unit detail <"$LOGDIR/$layer.result"
    printf '%-12s %5s %-9s %-9s %s\n' "$layer" "$count" "$unit" \
      "$(elapsed $(($(cat "$LOGDIR/$layer.end") - $(cat "$LOGDIR/$layer.start"))))" "$detail"
    case $unit in
      tests) tests=$((tests + count)) ;;
      files) files=$((files + count)) ;;
      scenarios) scenarios=$((scenarios + count)) ;;
    esac
    [ -f "$LOGDIR/$layer.skips" ] && sed 's/^/             /' "$LOGDIR/$layer.skips"
  done
  SUMMARY_TOTAL="$tests tests (pytest, ansible-test sanity and promtool rule tests), $scenarios Molecule scenarios, $files files linted"
}

run_pids() {  # this run's processes: those carrying its CERNIQ_TEST_RUN and all their descendants
  # (a server that rewrites its process title, as redis-server does, no longer shows the variable)
  local marked
  marked=$(grep -lzx "CERNIQ_TEST_RUN=$CERNIQ_TEST_RUN" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3)
  ps -eo pid=,ppid= | awk -v marked="$marked" '
    BEGIN { n = split(marked, seed, /[[:space:]]+/); for (i = 1; i <= n; i++) if (seed[i] != "") keep[seed[i]] = 1 }
    { parent[$1] = $2 }
    END {
      do { added = 0; for (p in parent) if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; added = 1 } } while (added)
      for (p in keep) print p
    }'
}

stop_lanes() {
  local pid strays
  # Test servers, workers and the demo run in sessions of their own: killing a lane's process group
  # does not reach them, and a killed pytest runs no fixture teardown.
  strays=" $(run_pids | tr '\n' ' ') "
  for pid in "${LANE_PIDS[@]}"; do
    kill -- -"$pid" 2>/dev/null || kill "$pid" 2>/dev/null
  done
  wait 2>/dev/null
  LANE_PIDS=()
  for pid in $strays; do kill "$pid" 2>/dev/null; done
  sleep 2
  for pid in $(run_pids); do kill -KILL "$pid" 2>/dev/null; done
  # The integration and runner tests' containers are named after their pytest process
  # (cerniq-test-<what>-<pid>, and -cerniq-old while the worker_container module replaces one).
  local name
  for name in $(podman ps -a --format '{{.Names}}' 2>/dev/null); do
    [[ $name =~ ^cerniq-(test-[a-z]+|ee-worker)-([0-9]+) ]] || continue
    [[ "$strays" == *" ${BASH_REMATCH[2]} "* ]] && podman rm -f -t 0 "$name" >/dev/null 2>&1
  done
  # Leave no container behind a stopped run - only those of this run's layers (another run's are not ours):
  # the lab's, the fresh layer's, and those of the Molecule scenario a killed lane was converging
  # (Molecule's label on a container of the project's image) with the scenarios' networks.
  [[ " $ALL_LAYERS " == *" lab "* ]] && scripts/lab.sh down >/dev/null 2>&1
  local c scenario
  if [[ " $ALL_LAYERS " == *" fresh "* ]]; then
    for c in $(podman ps -aq --filter label=cerniq.fresh=1 2>/dev/null); do
      podman rm -f -t 0 "$c" >/dev/null 2>&1
    done
  fi
  if [[ " $ALL_LAYERS " == *" molecule "* ]]; then
    for c in $(podman ps -aq --filter label=owner=molecule --filter label=org.cerniq.recipe 2>/dev/null); do
      podman rm -f -t 0 "$c" >/dev/null 2>&1
    done
    for scenario in extensions/molecule/*/molecule.yml; do  # each scenario's network (extensions/molecule/config.yml)
      scenario=${scenario%/molecule.yml}
      podman network rm -f "cerniq-${scenario##*/}" >/dev/null 2>&1
    done
  fi
}

fail() {  # layer
  local log=$LOGDIR/$1.log
  echo
  echo "FAILED layer: $1 after $(elapsed "$(now)") (log: $log)"
  tail -n 60 "$log" 2>/dev/null
  stop_lanes
  print_summary
  echo "total: $SUMMARY_TOTAL passed; 1 layer failed ($1)"
  exit 1
}

# The CPU weight of a nice value (the kernel's sched_prio_to_weight table). Nice orders only the
# processes that share a cgroup: the processes of a container are weighed as one group, by the
# container's cgroup weight (`podman run --cpu-shares`, 1024 by default), whatever the nice of the
# shell that started it. A lane's containers (Molecule's, the fresh machine) get its nice's weight.
cpu_shares() {
  case $1 in 0) echo 1024 ;; 5) echo 335 ;; 10) echo 110 ;; *) echo "no CPU weight for nice $1" >&2; exit 2 ;; esac
}

start_lane() {  # [--nice N] layers... [--nice N layers...]  (a --nice applies to the layers after it)
  local item layers=()
  for item in "$@"; do
    case $item in --nice|[0-9]*) ;; *) layers+=("$item") ;; esac
  done
  set -m  # own process group: a failure elsewhere stops the whole lane, its children included
  (
    while [ $# -gt 0 ]; do
      layer=$1; shift
      if [ "$layer" = --nice ]; then
        renice -n "$1" -p "$BASHPID" >/dev/null
        CERNIQ_CONTAINER_CPU_SHARES=$(cpu_shares "$1") || exit 2
        export CERNIQ_CONTAINER_CPU_SHARES
        shift
        continue
      fi
      now >"$LOGDIR/$layer.start"
      ( "layer_$layer" ); rc=$?
      now >"$LOGDIR/$layer.end"
      echo "$rc" >"$LOGDIR/$layer.rc"
      [ "$rc" = 0 ] || exit 1
    done
  ) &
  LANE_PIDS+=($!)
  set +m
  ALL_LAYERS="$ALL_LAYERS ${layers[*]}"
  echo "== lane: ${layers[*]}"
}

report_ended() {  # print the layers that ended since the last call; fail on the first failed one
  local layer count unit detail
  for layer in $ALL_LAYERS; do
    [ -f "$LOGDIR/$layer.rc" ] || continue
    [[ " ${DONE[*]} " == *" $layer "* ]] && continue
    [ "$(cat "$LOGDIR/$layer.rc")" = 0 ] || fail "$layer"
    DONE+=("$layer")
    IFS=$'\t' read -r count unit detail <"$LOGDIR/$layer.result"
    printf '== %-11s %5s %-9s passed in %s (ended at %s)\n' "$layer" "$count" "$unit" \
      "$(elapsed $(($(cat "$LOGDIR/$layer.end") - $(cat "$LOGDIR/$layer.start"))))" \
      "$(elapsed "$(cat "$LOGDIR/$layer.end")")"
  done
}

wait_lanes() {
  local last=$SECONDS running layer
  while :; do
    report_ended
    running=""
    for layer in $ALL_LAYERS; do
      [ -f "$LOGDIR/$layer.start" ] && [ ! -f "$LOGDIR/$layer.rc" ] && running="$running $layer"
    done
    [ ${#DONE[@]} -lt "$(wc -w <<<"$ALL_LAYERS")" ] || break
    if [ $((SECONDS - last)) -ge 180 ]; then
      echo "   ... running:${running:- (starting)} ($(elapsed "$(now)") so far)"
      last=$SECONDS
    fi
    sleep 3
  done
  wait
}

trap 'echo; echo "interrupted"; stop_lanes; exit 130' INT TERM

# Containers first, while the lanes run. Podman (cgroupfs manager) puts every container under one
# libpod_parent cgroup, and at the top level that is one CPU share, as large as the share of the
# whole `make test` session (kernel autogroups): on a loaded machine the lab's and Molecule's
# containers - where most of the two longest lanes' work runs - then got a third of the CPU
# between them, and the lab's first `lab.sh up` took 15 minutes for 6 minutes of CPU (a module run
# in a lab container took 3 s instead of 0.5). So the run gives the container group the weight of
# four sessions, CERNIQ_TEST_CONTAINER_SHARES (4096; empty keeps the host's), and puts the old weight
# back at the end: the first `lab.sh up` then took 5.3-6.7 minutes. On hosts without that cgroup
# (cgroup v2, the systemd manager) nothing changes.
CONTAINER_SHARES=/sys/fs/cgroup/cpu/libpod_parent/cpu.shares
CONTAINER_SHARES_BEFORE=""
restore_container_shares() {
  [ -z "$CONTAINER_SHARES_BEFORE" ] || echo "$CONTAINER_SHARES_BEFORE" >"$CONTAINER_SHARES" 2>/dev/null
  return 0
}
at_exit() {
  restore_container_shares
  [ -z "$RUN_TMPDIR" ] || rm -rf "$RUN_TMPDIR"
}
trap at_exit EXIT
raise_container_shares() {
  local shares=${CERNIQ_TEST_CONTAINER_SHARES-4096}
  [ -n "$shares" ] && [ -w "$CONTAINER_SHARES" ] || return 0
  CONTAINER_SHARES_BEFORE=$(cat "$CONTAINER_SHARES") || return 0
  echo "$shares" >"$CONTAINER_SHARES" 2>/dev/null || CONTAINER_SHARES_BEFORE=""
}

target=${1:-all}
case "$target" in
  all)
    raise_container_shares
    # What waits (the lab demo's alert windows, the fresh machine's downloads, Molecule's container
    # boots, the integration tests' servers and playbooks) runs beside what computes. Measured on
    # this 2-core machine: see README, "Test layers".
    # The lab lane sets the run's length (its demo waits out real alert windows between CPU-heavy
    # playbook runs): it gets the CPU first. The others take what it leaves while it waits; the
    # pure-CPU lane, done long before the rest, last.
    # Molecule starts at once; the fresh machine and the AWX runner follow sanity and lint, in
    # time to end with the others (integration and hostile, the other long lane, alone). The runner
    # in a lane of its own from the start took 18m41s and slowed every other lane (red at 24m12s).
    # That lane was the last to end in every run (sanity, lint, unit and rules took 16-18 minutes
    # there at nice 10): unit and rules follow Molecule now, the lane that ends first.
    start_lane lab
    start_lane --nice 5 molecule unit rules
    start_lane --nice 10 sanity lint --nice 5 fresh runner
    start_lane --nice 5 integration hostile
    ;;
  fast)
    start_lane sanity lint unit rules
    start_lane integration hostile runner
    ;;
  sanity|lint|unit|integration|rules|hostile|runner|molecule|lab|fresh) start_lane "$target" ;;
  *) echo "unknown target $target"; exit 2 ;;
esac
wait_lanes
print_summary
echo "total: $SUMMARY_TOTAL - all passed"
rm -rf "$LOGDIR"
