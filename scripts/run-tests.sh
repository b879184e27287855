#!/usr/bin/env bash
# The test layers of cerniq.ops, with a short summary at the end.
#   run-tests.sh all    every layer (what `make test` and CI run)
#   run-tests.sh fast   all but the container layers (molecule, lab, fresh)
#   run-tests.sh LAYER  one layer
#
# `all` overlaps what waits with what computes: the lab demo (most of it waiting out the
# alert rules' real `for:` durations) and the fresh-machine set-up (most of it apt and pip
# downloading) start first, in the background; the other layers run one after the other
# meanwhile. The first failure stops the run (background layers included) and names its log.
# A background layer prints a progress line every few minutes while the others run.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
REPO=$PWD
VENV=${CERNIQ_VENV:-.venv}
export PATH="$REPO/$VENV/bin:$PATH"
export ANSIBLE_NOCOLOR=1 PY_COLORS=0
LOGDIR=$(mktemp -d /tmp/cerniq-test-logs-XXXXXX)
# The repository seen as ansible_collections/cerniq/ops, for ansible-lint's syntax checks.
mkdir -p "$LOGDIR/collections/ansible_collections/cerniq"
ln -s "$REPO" "$LOGDIR/collections/ansible_collections/cerniq/ops"
T0=$SECONDS

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
layer_integration() { pytest_layer integration tests/integration; }
layer_hostile() { [ -d tests/hostile ] || { result hostile 0 tests "no tests/hostile yet"; return 0; }; pytest_layer hostile tests/hostile; }
layer_runner() { [ -d tests/runner ] || { result runner 0 tests "no tests/runner yet"; return 0; }; pytest_layer runner tests/runner; }
layer_lab() { pytest_layer lab tests/lab; }
layer_fresh() { pytest_layer fresh tests/fresh; }

# --- running layers -------------------------------------------------------------------------------

declare -a DONE=()
declare -A BG_PID=() BG_START=()

elapsed() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

print_summary() {
  echo
  echo "== summary ($(elapsed $((SECONDS - T0))) in all) =="
  local layer count unit detail tests=0 files=0 scenarios=0
  for layer in "${DONE[@]}"; do
    IFS=$'\t' read -r count unit detail <"$LOGDIR/$layer.result"
    printf '%-12s %5s %-9s %s\n' "$layer" "$count" "$unit" "$detail"
    case $unit in
      tests) tests=$((tests + count)) ;;
      files) files=$((files + count)) ;;
      scenarios) scenarios=$((scenarios + count)) ;;
    esac
    [ -f "$LOGDIR/$layer.skips" ] && sed 's/^/             /' "$LOGDIR/$layer.skips"
  done
  SUMMARY_TOTAL="$tests tests (pytest, ansible-test sanity and promtool rule tests), $scenarios Molecule scenarios, $files files linted"
}

stop_background() {
  local layer
  for layer in "${!BG_PID[@]}"; do
    kill -- -"${BG_PID[$layer]}" 2>/dev/null || kill "${BG_PID[$layer]}" 2>/dev/null
  done
  wait 2>/dev/null
  # Leave no lab or fresh container behind a stopped run.
  [[ " $background $foreground " == *" lab "* ]] && scripts/lab.sh down >/dev/null 2>&1
  local fresh
  for fresh in $(podman ps -aq --filter label=cerniq.fresh=1 2>/dev/null); do
    podman rm -f -t 0 "$fresh" >/dev/null 2>&1
  done
  BG_PID=()
}

fail() {  # layer
  local log=$LOGDIR/$1.log
  echo
  echo "FAILED layer: $1 after $(elapsed $((SECONDS - T0))) (log: $log)"
  tail -n 60 "$log" 2>/dev/null
  stop_background
  print_summary
  echo "total: $SUMMARY_TOTAL passed; 1 layer failed ($1)"
  exit 1
}

finished() {  # layer start [end]
  DONE+=("$1")
  local count unit detail
  IFS=$'\t' read -r count unit detail <"$LOGDIR/$1.result"
  printf '== %-11s %5s %-9s passed in %s\n' "$1" "$count" "$unit" "$(elapsed $((${3:-$SECONDS} - $2)))"
}

run_foreground() {  # layer
  local start=$SECONDS
  echo "== $1 ..."
  ( "layer_$1" ); local rc=$?
  [ "$rc" = 0 ] || fail "$1"
  finished "$1" "$start"
  check_background
}

start_background() {  # layer
  echo "== $1 started in the background"
  set -m  # own process group: a failure elsewhere stops the whole layer
  # The layer notes when it ended (seconds since the run began): its time is its own, not the
  # time at which a foreground layer finished and noticed it.
  ( "layer_$1"; rc=$?; echo $((SECONDS - T0)) >"$LOGDIR/$1.end"; exit $rc ) &
  BG_PID[$1]=$!
  set +m
  BG_START[$1]=$((SECONDS - T0))
}

check_background() {  # report finished background layers; fail on the first failed one
  local layer rc
  for layer in "${!BG_PID[@]}"; do
    if ! kill -0 "${BG_PID[$layer]}" 2>/dev/null; then
      wait "${BG_PID[$layer]}"; rc=$?
      unset "BG_PID[$layer]"
      [ "$rc" = 0 ] || fail "$layer"
      finished "$layer" "${BG_START[$layer]}" "$(cat "$LOGDIR/$layer.end" 2>/dev/null || echo $((SECONDS - T0)))"
    fi
  done
}

wait_background() {
  local last=$SECONDS
  while [ ${#BG_PID[@]} -gt 0 ]; do
    check_background
    [ ${#BG_PID[@]} -gt 0 ] || break
    if [ $((SECONDS - last)) -ge 180 ]; then
      echo "   ... still running: ${!BG_PID[*]} ($(elapsed $((SECONDS - T0))) so far)"
      last=$SECONDS
    fi
    sleep 5
  done
}

trap 'echo; echo "interrupted"; stop_background; exit 130' INT TERM

target=${1:-all}
case "$target" in
  all)  background="lab fresh"; foreground="sanity lint unit rules integration hostile runner molecule" ;;
  fast) background=""; foreground="sanity lint unit rules integration hostile runner" ;;
  sanity|lint|unit|integration|rules|hostile|runner|molecule|lab|fresh) background=""; foreground=$target ;;
  *) echo "unknown target $target"; exit 2 ;;
esac
for layer in $background; do start_background "$layer"; done
for layer in $foreground; do run_foreground "$layer"; done
wait_background
print_summary
echo "total: $SUMMARY_TOTAL - all passed"
rm -rf "$LOGDIR"
