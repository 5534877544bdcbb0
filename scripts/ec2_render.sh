#!/usr/bin/env bash
# Launch a render node on EC2 (RunInstances with the node's user-data), or --local on this machine.
# A thin wrapper: everything is in bootstrap/launch/ (python -m bootstrap.launch --help).
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/run-module.sh" bootstrap.launch "$@"
