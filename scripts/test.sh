#!/usr/bin/env bash
# Set up (once), lint and type-check (ruff, mypy: configured in pyproject.toml), then run the whole test suite.
# Extra arguments go to pytest.
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
# the linter and the type checker first (configured in pyproject.toml): either failing fails the run
"$VENV/bin/ruff" check agent_debug tests scripts \
  || { RC=$?; echo "FAILED: ruff check agent_debug tests scripts (exit $RC): lint errors above" >&2; exit "$RC"; }
"$VENV/bin/mypy" || { RC=$?; echo "FAILED: mypy (exit $RC): type errors in agent_debug above" >&2; exit "$RC"; }
# the report's browser tests (tests/test_report_browser.py) drive Debian's chromium: install it when missing and
# we can (root + apt-get); otherwise they are skipped, and said so here and in pytest's skip reason
BROWSER_SKIPPED=""
if [ -z "${AGENT_DEBUG_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium for the browser tests (apt-get install chromium)" >&2
    apt-get install -y -q chromium >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } || true
  fi
  if ! command -v chromium >/dev/null 2>&1; then
    BROWSER_SKIPPED="SKIPPED the browser tests: chromium is not installed and could not be (needs root and apt-get; or set AGENT_DEBUG_CHROMIUM)"
    echo "$BROWSER_SKIPPED" >&2
  fi
fi
RC=0
# one worker per CPU (pytest-xdist), each test file on one worker so its module fixtures are built once;
# AGENT_DEBUG_TEST_WORKERS=0 (or -n 0) runs it in one process
"$VENV/bin/python" -m pytest -m "not judge" -n "${AGENT_DEBUG_TEST_WORKERS:-auto}" --dist loadfile \
  ${ARGS[@]+"${ARGS[@]}"} || RC=$?
if [ -n "$BROWSER_SKIPPED" ]; then echo "$BROWSER_SKIPPED" >&2; fi
[ "$RC" = 0 ] || exit "$RC"
if [ "$JUDGE" = 1 ]; then
  if [ -n "${GEMINI_API_KEY:-}${GOOGLE_API_KEY:-}" ]; then
    echo "running the live judge tests against the Gemini API"
    "$VENV/bin/python" -m pytest -m judge ${ARGS[@]+"${ARGS[@]}"}
  else
    echo "SKIPPED the live judge tests: neither GEMINI_API_KEY nor GOOGLE_API_KEY is set" >&2
  fi
fi
