#!/usr/bin/env bash
# Set up (once) and run the whole test suite. Extra arguments go to pytest.
#   scripts/test.sh --judge   also runs the judge tests against the real Gemini API when GEMINI_API_KEY or
#                             GOOGLE_API_KEY is set (and says clearly that it skipped them when neither is).
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/_venv.sh" dev
cd "$ROOT"
JUDGE=0
ARGS=()
for a in "$@"; do
  if [ "$a" = "--judge" ]; then JUDGE=1; else ARGS+=("$a"); fi
done
"$VENV/bin/python" -m pytest -m "not judge" ${ARGS[@]+"${ARGS[@]}"}
if [ "$JUDGE" = 1 ]; then
  if [ -n "${GEMINI_API_KEY:-}${GOOGLE_API_KEY:-}" ]; then
    echo "running the live judge tests against the Gemini API"
    "$VENV/bin/python" -m pytest -m judge ${ARGS[@]+"${ARGS[@]}"}
  else
    echo "SKIPPED the live judge tests: neither GEMINI_API_KEY nor GOOGLE_API_KEY is set" >&2
  fi
fi
