#!/usr/bin/env bash
# ansible-test sanity on a copy of the collection at ansible_collections/cerniq/ops,
# offline: ansible-test's pip bootstrap script is replaced by a local stand-in.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
VENV=${CERNIQ_VENV:-.venv}
export PATH="$REPO/$VENV/bin:$PATH"

# ansible-test looks for get_pip_<pip version with dots as underscores>.py in its cache.
cache="$HOME/.ansible/test/cache"
mkdir -p "$cache"
pip_version=$(grep -oE "pip='[0-9.]+'" "$(python -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')/_internal/python_requirements.py" | head -1 | grep -oE "[0-9.]+")
for name in "get_pip_${pip_version//./_}.py" "get_pip.py"; do
  cp scripts/get_pip_offline.py "$cache/$name"
done

tree=$(mktemp -d /tmp/cerniq-sanity-XXXXXX)
trap 'rm -rf "$tree"' EXIT
dest="$tree/ansible_collections/cerniq/ops"
mkdir -p "$dest"
# Copy exactly the files git would ship (tracked + untracked-not-ignored), never venvs or outputs.
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] || continue
  mkdir -p "$dest/$(dirname "$f")"
  cp -P "$f" "$dest/$f"
done
cd "$dest"
git init -q && git add -A && git -c user.email=s@x -c user.name=s commit -qm sanity
ansible-test sanity --python 3.11 --local --color no "$@"
