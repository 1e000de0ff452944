#!/usr/bin/env bash
# The core install (`pip install inferloop`, no extras: the light client) against the full development environment
# (`make setup`: all extras and dev), in distributions and site-packages size. Figures only; nothing is asserted.
#
#   infra/local/core_install_size.sh [CORE_VENV]
#
# Without CORE_VENV it installs the core into a temporary virtual environment (pip's cache makes that quick) and
# removes it afterwards. FULL_VENV (default: .venv) names the full one; PYTHON the interpreter that builds the venv.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
full="${FULL_VENV:-$repo/.venv}"
python="${PYTHON:-python3}"

figures() {  # label venv
  local site count
  site="$("$2/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  count="$("$2/bin/python" -m pip list --disable-pip-version-check --format=freeze 2>/dev/null | wc -l)"
  printf '%-5s %4d distributions (pip list)  %6s site-packages  %s\n' "$1" "$count" "$(du -sh "$site" | cut -f1)" "$2"
}

core="${1:-}"
if [[ -z "$core" ]]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  # a snapshot of what the package ships: pip builds a source tree in place, which would leave build/ in the checkout
  mkdir "$work/source"
  cp -r "$repo"/{pyproject.toml,README.md,LICENSE,inferloop,streams,trainer,infra,cli} "$work/source/"
  "$python" -m venv "$work/core"
  "$work/core/bin/python" -m pip install -q --disable-pip-version-check "$work/source"
  core="$work/core"
fi
figures core "$core"
figures full "$full"
