#!/usr/bin/env bash
# Set up (once) and run the main job on the bundled demo: `agent-debug demo`. Extra arguments go to the demo.
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/_venv.sh" ""
cd "$ROOT"
exec "$VENV/bin/agent-debug" demo "$@"
