#!/usr/bin/env bash
# Render or deploy the whole fleet as one CloudFormation stack (infra/gigatile.yaml): the bucket, roles,
# render nodes in an Auto Scaling group, tile-proxy behind a load balancer, CloudFront in front.
# A thin wrapper: everything is in bootstrap/launch/stack.py (python -m bootstrap.launch.stack --help).
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/run-module.sh" bootstrap.launch.stack "$@"
