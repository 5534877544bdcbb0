"""Launch a render node: EC2 RunInstances with the node's user-data, or --local on this machine.

    python -m bootstrap.launch --bucket B --image-id ami-… [--instance-type c6i.large] [--count 2]
        [--subnet-id subnet-…] [--security-group-id sg-…] [--instance-profile gigatile-node]
        [--tag team=books] [--dry-run]
    python -m bootstrap.launch --local --bucket B [--root DIR] [--address 127.0.0.N]
    python -m bootstrap.launch --local --stop DIR
    python -m bootstrap.launch --local --scale-in DIR   (leave as an Auto Scaling scale-in does)

scripts/ec2_render.sh is this module behind the project's Python. AWS settings (region, credentials,
AWS_ENDPOINT_URL_EC2) come from AWS's own chain.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from bootstrap.errors import BootstrapError
from bootstrap.launch.ec2 import DEFAULT_INSTANCE_TYPE, build_run_request, parse_tags, run_instances
from bootstrap.node.userdata import DEFAULT_COMMAND, STYLES, NodeConfig
from gigaformat import commandline
from gigaformat.commandline import flag


def add_node_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that make a node's user-data (``config_from``); shared with scripts/deploy_stack.sh."""
    node = parser.add_argument_group("the node (its user-data)")
    flag(node, "bucket", help="the bucket of data, releases, registrations and logs")
    node.add_argument("--dataset", action="append", dest="datasets", help="repeatable (default: covers)")
    node.add_argument("--port", type=int, default=None, help="render server port (default 8080)")
    node.add_argument("--channel", default="current", help="release channel the node installs")
    node.add_argument("--workers", type=int, default=2, help="render server worker processes")
    node.add_argument("--ttl-seconds", type=int, default=30, help="registration lifetime")
    node.add_argument("--sync-interval", type=float, default=5.0, help="boxlink's manifest poll interval")
    node.add_argument("--root", type=Path, default=None, help="node root (EC2 default /srv/gigatile)")
    node.add_argument("--s3-endpoint-url", default=None, help="S3-compatible store (local default: "
                                                              "$AWS_ENDPOINT_URL_S3)")
    node.add_argument("--no-self-update", action="store_true", help="do not run a fresher bootstrap from S3")
    node.add_argument("--no-warmup", action="store_true", help="do not pre-compile a new release's kernels")
    flag(node, "log-level", str.upper, "INFO", choices=commandline.LOG_LEVELS, help="the node's log level")
    node.add_argument("--trusted-proxies", default="", help="networks of the tile-proxies in front of the node, "
                      "whose forwarding headers make the IIIF ids (default: loopback only)")
    node.add_argument("--public-url", default="", help="the public base URL of the IIIF ids, e.g. the CDN's "
                      "https://tiles.example.com (default: from the request, as trusted proxies tell it)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ec2_render.sh", description=__doc__,
                                     formatter_class=commandline.HelpFormatter)
    add_node_flags(parser)
    ec2 = parser.add_argument_group("EC2")
    ec2.add_argument("--image-id", help="an image with Python, the dependencies and node-bootstrap installed")
    ec2.add_argument("--instance-type", default=DEFAULT_INSTANCE_TYPE, help="EC2 instance type")
    ec2.add_argument("--count", type=int, default=1, help="how many nodes")
    ec2.add_argument("--subnet-id", help="the subnet to launch in (default: the account's default)")
    ec2.add_argument("--security-group-id", action="append", dest="security_group_ids", help="repeatable")
    ec2.add_argument("--instance-profile", help="name or ARN; its role gives the node its S3 access")
    ec2.add_argument("--key-name", help="an EC2 key pair for SSH (none by default)")
    ec2.add_argument("--tag", action="append", default=[], help="KEY=VALUE, repeatable")
    ec2.add_argument("--region", default=None, help="AWS region (default: AWS's chain)")
    ec2.add_argument("--hop-limit", type=int, default=2, help="IMDSv2 PUT response hop limit")
    ec2.add_argument("--user-data-style", choices=STYLES, default="json", help="how the user-data is written")
    ec2.add_argument("--command", default=DEFAULT_COMMAND, help="what cloud-config/script user-data runs")
    ec2.add_argument("--dry-run", action="store_true", help="print the RunInstances request, send nothing")
    local = parser.add_argument_group("local")
    local.add_argument("--local", action="store_true", help="start the node on this machine")
    local.add_argument("--address", help="127.0.0.N for the node (default: the first with the port free)")
    local.add_argument("--imds-port", type=int, default=None, help="the IMDS emulator's port (default: free)")
    local.add_argument("--stop", type=Path, metavar="ROOT", help="with --local: stop the node in ROOT")
    local.add_argument("--scale-in", type=Path, metavar="ROOT",
                       help="with --local: the node in ROOT leaves as on an Auto Scaling scale-in")
    local.add_argument("--json", action="store_true", help="print the launch record as JSON")
    return parser


def config_from(args: argparse.Namespace, root: Path, s3_endpoint_url: str) -> NodeConfig:
    if not args.bucket:
        raise BootstrapError("--bucket (or GIGATILE_BUCKET) is required")
    return NodeConfig(bucket=args.bucket, datasets=tuple(args.datasets or ("covers",)), port=args.port or 8080,
                      channel=args.channel, root=str(root), workers=args.workers, ttl_seconds=args.ttl_seconds,
                      sync_interval=args.sync_interval, s3_endpoint_url=s3_endpoint_url,
                      self_update=not args.no_self_update, warmup=not args.no_warmup,
                      log_level=args.log_level.upper(), trusted_proxies=args.trusted_proxies,
                      public_url=args.public_url)


def _local(args: argparse.Namespace) -> int:
    from bootstrap.launch.localnode import launch_local, pick_address, scale_in_local, stop_local

    if args.scale_in:
        record = scale_in_local(args.scale_in)
        print(f"scaled in node {record.instance_id} ({record.address}:{record.port}) in {record.root}")
        return 0
    if args.stop:
        record, stopped = stop_local(args.stop)
        if stopped:
            print(f"stopped node {record.instance_id} ({record.address}:{record.port}) in {record.root}")
        else:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.stopped))
            print(f"node {record.instance_id} in {record.root} was already stopped (at {when}); nothing to do")
        return 0
    address = args.address or pick_address(args.port or 8080)
    root = (args.root or Path("local-nodes") / address).resolve()
    config = config_from(args, root, args.s3_endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3", ""))
    record = launch_local(config, address, args.imds_port)
    if args.json:
        from dataclasses import asdict

        print(json.dumps(asdict(record)))
    else:
        print(record.describe())
    return 0


def _ec2(args: argparse.Namespace) -> int:
    if not args.image_id:
        raise BootstrapError("--image-id is required to launch on EC2 (or use --local)")
    config = config_from(args, args.root or Path("/srv/gigatile"), args.s3_endpoint_url or "")
    request = build_run_request(config, args.image_id, args.instance_type, args.count, args.subnet_id,
                                args.security_group_ids, args.instance_profile, args.key_name,
                                parse_tags(args.tag), args.user_data_style, args.command, args.hop_limit)
    if args.dry_run:
        print(json.dumps(request, indent=1))
        return 0
    for instance in run_instances(request, args.region):
        print(f"{instance['InstanceId']} {instance.get('PrivateIpAddress', '-')} {instance['State']['Name']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return commandline.run_command("ec2_render.sh", lambda: _local(args) if args.local else _ec2(args))


if __name__ == "__main__":
    sys.exit(main())
