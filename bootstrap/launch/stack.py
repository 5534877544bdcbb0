"""A whole deployment as one CloudFormation stack (infra/gigatile.yaml): render its parameters, deploy it.

    scripts/deploy_stack.sh render --bucket B --dataset covers --image-id ami-… --vpc-id vpc-… \\
        --subnet-id subnet-a --subnet-id subnet-b [--node-type c6i.large --node-min 2 --node-max 10 …]
    scripts/deploy_stack.sh deploy --stack-name gigatile … (the same flags; creates or updates, then waits)

The render node's user-data is rendered here by ``bootstrap.node.userdata.render_user_data`` (the one way it
is written) and handed to the template as ``NodeUserData``. AWS settings (region, credentials,
``AWS_ENDPOINT_URL_CLOUDFORMATION``) come from AWS's own chain.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from bootstrap.errors import BootstrapError
from bootstrap.launch.cli import add_node_flags, config_from
from bootstrap.node.userdata import NodeConfig, render_user_data
from gigaformat import commandline

TEMPLATE = Path(__file__).resolve().parents[2] / "infra" / "gigatile.yaml"
CAPABILITIES = ["CAPABILITY_IAM"]  # the template creates roles (with generated names)
DONE = ("CREATE_COMPLETE", "UPDATE_COMPLETE")
FAILED_SUFFIXES = ("_FAILED", "ROLLBACK_COMPLETE", "ROLLBACK_FAILED")


@dataclass(frozen=True)
class Fleet:
    """What the stack's parameters say beyond the node's user-data."""

    image_id: str
    vpc_id: str
    subnet_ids: tuple[str, ...]
    vpc_cidr: str = "10.0.0.0/8"
    node_type: str = "c6i.large"
    node_min: int = 2
    node_max: int = 10
    node_desired: int = 2
    cpu_target: int = 60
    proxy_type: str = "c6i.large"
    proxy_count: int = 2
    proxy_cache_size: str = "20G"

    def __post_init__(self) -> None:
        if not self.subnet_ids:
            raise BootstrapError("--subnet-id is required (repeat it for two or more zones)")
        if not 1 <= self.node_min <= self.node_desired <= self.node_max:
            raise BootstrapError(f"need 1 <= --node-min ({self.node_min}) <= --node-count ({self.node_desired})"
                                 f" <= --node-max ({self.node_max})")
        if self.proxy_count < 1:
            raise BootstrapError("--proxy-count must be at least 1")
        if not 10 <= self.cpu_target <= 90:
            raise BootstrapError("--cpu-target must be 10-90 (percent)")


def stack_parameters(config: NodeConfig, fleet: Fleet) -> dict[str, str]:
    """The template's parameters: the node's user-data (rendered, JSON style) and the fleet's shape."""
    return {
        "BucketName": config.bucket, "NodeUserData": render_user_data(config, "json"), "NodePort": str(config.port),
        "ReleaseChannel": config.channel, "ImageId": fleet.image_id, "VpcId": fleet.vpc_id,
        "VpcCidr": fleet.vpc_cidr, "SubnetIds": ",".join(fleet.subnet_ids), "NodeInstanceType": fleet.node_type,
        "NodeMinSize": str(fleet.node_min), "NodeMaxSize": str(fleet.node_max),
        "NodeDesiredCapacity": str(fleet.node_desired), "NodeCpuTarget": str(fleet.cpu_target),
        "ProxyInstanceType": fleet.proxy_type, "ProxyCount": str(fleet.proxy_count),
        "ProxyCacheSize": fleet.proxy_cache_size,
    }


def deploy(stack_name: str, template: str, parameters: dict[str, str], region: str | None = None,
           timeout: float = 3600, client=None) -> dict:
    """Create the stack, or update it when it exists; wait until it is complete. Returns its description."""
    cfn = client or boto3.session.Session().client("cloudformation", region_name=region or None)
    args = {"StackName": stack_name, "TemplateBody": template, "Capabilities": CAPABILITIES,
            "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            "Tags": [{"Key": "gigatile:bucket", "Value": parameters["BucketName"]}]}
    try:
        try:
            cfn.describe_stacks(StackName=stack_name)
            exists = True
        except ClientError as exc:
            if "does not exist" not in str(exc):
                raise
            exists = False
        if exists:
            try:
                cfn.update_stack(**args)
            except ClientError as exc:
                if "No updates are to be performed" not in str(exc):
                    raise
        else:
            cfn.create_stack(**args)
        deadline = time.monotonic() + timeout
        while True:
            stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
            status = stack["StackStatus"]
            if status in DONE:
                return stack
            if status.endswith(FAILED_SUFFIXES):
                raise BootstrapError(f"stack {stack_name} is {status}: {stack.get('StackStatusReason', '')}")
            if time.monotonic() > deadline:
                raise BootstrapError(f"stack {stack_name} still {status} after {timeout:.0f} s")
            time.sleep(5)
    except (ClientError, BotoCoreError) as exc:
        raise BootstrapError(f"CloudFormation failed: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deploy_stack.sh", description=__doc__,
                                     formatter_class=commandline.HelpFormatter)
    parser.add_argument("verb", choices=("render", "deploy"),
                        help="render: print the template's parameters (JSON), send nothing; "
                             "deploy: create or update the stack and wait for it")
    add_node_flags(parser)
    fleet = parser.add_argument_group("the fleet")
    fleet.add_argument("--stack-name", default="gigatile", help="the CloudFormation stack")
    fleet.add_argument("--template", type=Path, default=TEMPLATE, help="the template")
    fleet.add_argument("--image-id", help="an image with node-bootstrap (bootstrap/README.md)")
    fleet.add_argument("--vpc-id", help="the VPC of the nodes, proxies and load balancer")
    fleet.add_argument("--subnet-id", action="append", dest="subnet_ids", default=[], help="repeatable")
    fleet.add_argument("--vpc-cidr", default="10.0.0.0/8",
                       help="the nodes' network (tile-proxy --allow-net; the nodes' --trusted-proxies unless given)")
    fleet.add_argument("--node-type", default="c6i.large", help="render node instance type")
    fleet.add_argument("--node-min", type=int, default=2, help="fewest render nodes")
    fleet.add_argument("--node-max", type=int, default=10, help="most render nodes")
    fleet.add_argument("--node-count", type=int, default=2, help="render nodes to start with")
    fleet.add_argument("--cpu-target", type=int, default=60, help="average node CPU (percent) the group keeps")
    fleet.add_argument("--proxy-type", default="c6i.large", help="tile-proxy instance type")
    fleet.add_argument("--proxy-count", type=int, default=2, help="tile-proxy instances")
    fleet.add_argument("--proxy-cache-size", default="20G", help="each proxy's disk cache")
    fleet.add_argument("--region", default=None, help="AWS region (default: AWS's chain)")
    return parser


def _run(args: argparse.Namespace) -> int:
    for name in ("image_id", "vpc_id"):
        if not getattr(args, name):
            raise BootstrapError(f"--{name.replace('_', '-')} is required")
    config = config_from(args, args.root or Path("/srv/gigatile"), args.s3_endpoint_url or "")
    if not config.trusted_proxies:  # the tile-proxies are in the VPC: their forwarding headers make the IIIF ids
        config = replace(config, trusted_proxies=args.vpc_cidr)
    fleet = Fleet(image_id=args.image_id, vpc_id=args.vpc_id, subnet_ids=tuple(args.subnet_ids),
                  vpc_cidr=args.vpc_cidr, node_type=args.node_type, node_min=args.node_min,
                  node_max=args.node_max, node_desired=args.node_count, cpu_target=args.cpu_target,
                  proxy_type=args.proxy_type, proxy_count=args.proxy_count, proxy_cache_size=args.proxy_cache_size)
    parameters = stack_parameters(config, fleet)
    if args.verb == "render":
        print(json.dumps(parameters, indent=1))
        return 0
    try:
        template = args.template.read_text()
    except OSError as exc:
        raise BootstrapError(f"cannot read --template {args.template}: {exc.strerror}") from None
    stack = deploy(args.stack_name, template, parameters, args.region)
    for output in stack.get("Outputs", []):
        print(f"{output['OutputKey']}: {output['OutputValue']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return commandline.run_command("deploy_stack.sh", lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
