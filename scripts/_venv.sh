# Shared by scripts/demo.sh and scripts/test.sh: create .venv if missing and install the package into it.
# Usage: source scripts/_venv.sh [extra]   (extra: "dev" installs the test and benchmark tools too)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
pick_python() {
  for py in "${PYTHON:-}" python3 python3.13 python3.12 python3.11 python; do
    [ -n "$py" ] || continue
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$py"; return 0
    fi
  done
  echo "Error: Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)" >&2
  return 1
}
if [ ! -x "$VENV/bin/python" ]; then
  PY="$(pick_python)"
  echo "creating $VENV with $PY" >&2
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
fi
EXTRA="${1:-}"
STAMP="$VENV/.installed-${EXTRA:-base}"
# reinstalled when the project's metadata or the compiled span core's source changed (hatch_build.py compiles it)
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ] || [ "$ROOT/agent_debug/sdk/_cspan.c" -nt "$STAMP" ] \
   || [ "$ROOT/hatch_build.py" -nt "$STAMP" ]; then
  echo "installing agent-debug${EXTRA:+[$EXTRA]} into $VENV" >&2
  if [ -n "$EXTRA" ]; then
    "$VENV/bin/python" -m pip install --quiet -e "$ROOT[$EXTRA]" >&2
  else
    "$VENV/bin/python" -m pip install --quiet -e "$ROOT" >&2
  fi
  touch "$STAMP"
fi
