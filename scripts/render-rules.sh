#!/usr/bin/env bash
# Render the prometheus role's rule templates (roles/prometheus/templates/rules/*.j2) with the
# settings' defaults, or with an inventory / extra vars given after the directory, through the role
# itself (playbooks/render_monitoring.yml). The rules test layer renders into tests/rules/rendered/,
# which tests/rules/*.test.yml read.
#   scripts/render-rules.sh DIR [ansible-playbook options, e.g. -i inventory or -e @settings.yml]
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 DIR [ansible-playbook options]" >&2; exit 2; }
cd "$(dirname "$0")/.."
REPO=$PWD
dir=$(realpath -m "$1"); shift
VENV=${CERNIQ_VENV:-.venv}
root=$(mktemp -d /tmp/cerniq-render-XXXXXX)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/ansible_collections/cerniq"
ln -s "$REPO" "$root/ansible_collections/cerniq/ops"
ANSIBLE_COLLECTIONS_PATH="$root" ANSIBLE_NOCOLOR=1 ANSIBLE_LOCALHOST_WARNING=false ANSIBLE_INVENTORY_UNPARSED_WARNING=false \
  "$REPO/$VENV/bin/ansible-playbook" "$REPO/playbooks/render_monitoring.yml" \
  -e "prometheus_rules_render_dir=$dir" -e ansible_python_interpreter="$REPO/$VENV/bin/python" "$@" >"$root/log" 2>&1 \
  || { cat "$root/log" >&2; exit 1; }
ls "$dir"/*.yml >/dev/null
