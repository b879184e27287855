#!/usr/bin/env bash
# The test layers of cerniq.ops, run in order, stopping at the first failure,
# with a short summary at the end.
#   run-tests.sh all    sanity, lint, unit, integration, rules, molecule, lab
#   run-tests.sh fast   all but molecule and lab
#   run-tests.sh LAYER  one layer
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

declare -a SUMMARY=()
TOTAL_PASSED=0

layer_done() {  # name passed detail
  SUMMARY+=("$(printf '%-12s %5s passed   %s' "$1" "$2" "$3")")
  TOTAL_PASSED=$((TOTAL_PASSED + $2))
}

fail() {  # name log
  echo
  echo "FAILED layer: $1 (log: $2)"
  tail -n 60 "$2"
  print_summary
  echo "total: $TOTAL_PASSED passed, 1 failed"
  exit 1
}

print_summary() {
  echo
  echo "== summary =="
  local line
  for line in "${SUMMARY[@]}"; do echo "$line"; done
}

run_sanity() {
  local log=$LOGDIR/sanity.log
  echo "== sanity: ansible-test sanity (offline) =="
  scripts/sanity.sh >"$log" 2>&1 || fail sanity "$log"
  local n
  n=$(grep -cE '^Running sanity test ' "$log")
  layer_done sanity "$n" "ansible-test sanity tests"
}

run_lint() {
  local log=$LOGDIR/lint.log
  echo "== lint: ansible-lint --profile production =="
  ANSIBLE_COLLECTIONS_PATH="$LOGDIR/collections" ansible-lint --profile production --offline >"$log" 2>&1 \
    || fail lint "$log"
  local files
  files=$(grep -oE "on [0-9]+ files" "$log" | grep -oE "[0-9]+" | tail -1)
  layer_done lint 1 "production profile clean (${files:-?} files)"
}

run_pytest() {  # layer path
  local log=$LOGDIR/$1.log
  echo "== $1: pytest $2 =="
  python -m pytest "$2" -x -q -p no:cacheprovider 2>&1 | tee "$log" | grep -E "passed|failed|error" | tail -1
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || fail "$1" "$log"
  local n skipped detail="pytest $2"
  n=$(grep -oE "[0-9]+ passed" "$log" | tail -1 | grep -oE "[0-9]+")
  skipped=$(grep -E "[0-9]+ passed" "$log" | tail -1 | grep -oE "[0-9]+ skipped" | grep -oE "[0-9]+")
  if [ -n "$skipped" ]; then
    grep -E '^SKIPPED' "$log"  # the reasons; the log itself is removed when every layer passes
    detail="$detail ($skipped skipped, reasons above)"
  fi
  layer_done "$1" "${n:-0}" "$detail"
}

run_rules() {
  local log=$LOGDIR/rules.log
  echo "== rules: promtool check/test rules =="
  local n=0 f
  : >"$log"
  for f in roles/prometheus/files/rules/*.yml; do
    [ -e "$f" ] || continue
    promtool check rules --lint-fatal "$f" >>"$log" 2>&1 || fail rules "$log"
  done
  for f in tests/rules/*.test.yml; do
    [ -e "$f" ] || continue
    promtool test rules "$f" >>"$log" 2>&1 || fail rules "$log"
    n=$((n + 1))
  done
  layer_done rules "$n" "promtool rule test files"
}

run_molecule() {
  local log=$LOGDIR/molecule.log
  echo "== molecule: role scenarios in podman systemd containers =="
  if [ ! -x scripts/run-molecule.sh ]; then
    layer_done molecule 0 "no scenarios yet"
    return
  fi
  scripts/run-molecule.sh 2>&1 | tee "$log" | grep -E "^(molecule|scenario)" ; [ "${PIPESTATUS[0]}" = 0 ] || fail molecule "$log"
  local n
  n=$(grep -oE "molecule: [0-9]+ passed" "$log" | grep -oE "[0-9]+" | tail -1)
  layer_done molecule "${n:-0}" "scenarios"
}

run_lab() {
  local log=$LOGDIR/lab.log
  echo "== lab: make demo on the podman lab, end to end (tests/lab) =="
  python -m pytest tests/lab -x -q -p no:cacheprovider 2>&1 | tee "$log" | grep -E "passed|failed|error" | tail -1
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || fail lab "$log"
  local n
  n=$(grep -oE "[0-9]+ passed" "$log" | tail -1 | grep -oE "[0-9]+")
  layer_done lab "${n:-0}" "pytest tests/lab (the demo on the podman lab)"
}

target=${1:-all}
case "$target" in
  all)         layers="sanity lint unit integration rules molecule lab" ;;
  fast)        layers="sanity lint unit integration rules" ;;
  sanity|lint|unit|integration|rules|molecule|lab) layers=$target ;;
  *) echo "unknown target $target"; exit 2 ;;
esac
for layer in $layers; do
  case "$layer" in
    sanity) run_sanity ;;
    lint) run_lint ;;
    unit) run_pytest unit tests/unit ;;
    integration) run_pytest integration tests/integration ;;
    rules) run_rules ;;
    molecule) run_molecule ;;
    lab) run_lab ;;
  esac
done
print_summary
echo "total: $TOTAL_PASSED passed, 0 failed"
rm -rf "$LOGDIR"
