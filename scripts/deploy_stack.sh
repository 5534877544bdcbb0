#!/usr/bin/env bash
# Render or deploy the whole fleet as one CloudFormation stack (infra/gigatile.yaml): the bucket, roles,
# render nodes in an Auto Scaling group, tile-proxy behind a load balancer, CloudFront in front.
# A thin wrapper: everything is in bootstrap/launch/stack.py (python -m bootstrap.launch.stack --help).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${GIGATILE_PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$here/.venv/bin/python" ]]; then python="$here/.venv/bin/python"; else python="python3"; fi
fi
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" -m bootstrap.launch.stack "$@"
