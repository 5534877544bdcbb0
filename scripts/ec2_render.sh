#!/usr/bin/env bash
# Launch a render node on EC2 (RunInstances with the node's user-data), or --local on this machine.
# A thin wrapper: everything is in bootstrap/launch/ (python -m bootstrap.launch --help).
set -euo pipefail
export GIGATILE_LAUNCHER="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ec2_render.sh"  # the commands it prints run as printed
exec "$(dirname "${BASH_SOURCE[0]}")/run-module.sh" bootstrap.launch "$@"
