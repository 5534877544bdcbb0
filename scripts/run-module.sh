#!/usr/bin/env bash
# run-module.sh MODULE ARGS...: run a module of this checkout with its Python (GIGATILE_PYTHON, else the
# checkout's .venv, else python3), the checkout first on the import path. The scripts beside it use it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${GIGATILE_PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$here/.venv/bin/python" ]]; then python="$here/.venv/bin/python"; else python="python3"; fi
fi
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
module="$1"
shift
exec "$python" -m "$module" "$@"
