#!/usr/bin/env bash
# Launch a render node on EC2 (RunInstances with the node's user-data), or --local on this machine.
# A thin wrapper: everything is in bootstrap/launch.py (python -m bootstrap.launch --help).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${GIGATILE_PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$here/.venv/bin/python" ]]; then python="$here/.venv/bin/python"; else python="python3"; fi
fi
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
export GIGATILE_LAUNCHER="$here/scripts/ec2_render.sh"  # so that the commands it prints run as printed
exec "$python" -m bootstrap.launch "$@"
