"""Every shell block of every README runs as written.

Commands are in fenced blocks tagged ``sh``; diagrams, synopses and documents in ``text``, ``json`` or ``yaml``
(an untagged fence fails here, so no command hides in one). Each ``sh`` block is, by the name of its first
command (a ``source`` line aside):

- run here, in a sandbox: a folder that looks like this checkout (every top-level entry linked), so that
  what a block writes (``my-wall``, ``s3-data``, ``local-nodes/``) stays out of the checkout;
- run against a real ``make demo`` by tests/viewer/test_walkthrough.py (``make test-demo``), where the
  sandbox's ``demo-work`` is that demo's work folder: ``NEEDS_DEMO``;
- or skipped, with the reason: ``SKIPPED`` (AWS-only, production-only, benchmarks, and ``make demo`` itself,
  which the walk-through runs).

Blocks run under ``bash -euo pipefail`` without the tester's AWS_* and GIGATILE_* variables (a block that needs
S3 sources ``demo-work/env`` itself). A block that starts a server (``SERVERS``) runs until it says it is
ready, then gets SIGINT, as a person's Ctrl-C, and must exit 0.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.processes import wait_for

REPO = Path(__file__).resolve().parent.parent
READMES = [REPO / "README.md", *sorted(p for p in REPO.glob("*/README.md") if p.parent.name not in (".venv",
                                                                                                     "node_modules"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\s*$", re.M | re.S)
COMMAND_TAGS = ("sh",)
OTHER_TAGS = ("text", "json", "yaml")

SKIPPED = {
    "README.md: make demo ": "make demo and make test: tests/viewer/test_walkthrough.py (make test-demo) runs the "
                             "real demo, and make test is this very suite",
    "README.md: make demo DEMO_ARGS=": "another make demo (a 1-Gpx wall, another folder): the walk-through runs "
                                       "the demo on a 1-Gpx wall in a folder of its own",
    "bootstrap/README.md: /opt/gigatile/bin/node-bootstrap run": "AWS only: what an EC2 instance's rc.local runs "
                                                                 "(as root, /opt and /var/log); the local path, "
                                                                 "scripts/ec2_render.sh --local, is run",
    "bootstrap/README.md: scripts/ec2_render.sh --bucket zoomii-tiles --image-id": "AWS only: RunInstances in an "
                                                                                   "AWS account (an AMI, subnet, "
                                                                                   "security group, instance "
                                                                                   "profile); tests/bootstrap/"
                                                                                   "test_launch.py drives it "
                                                                                   "against moto",
    "infra/README.md: scripts/deploy_stack.sh deploy": "AWS only: creates or updates a CloudFormation stack in an "
                                                       "AWS account; tests/infra/test_stack.py deploys the "
                                                       "template to moto",
    "proxy/README.md: tile-proxy run --bucket gigatile --cache-dir /var/cache": "production only: port 80 on every "
                                                                                "address and /var/cache (root); "
                                                                                "make demo runs tile-proxy on "
                                                                                "127.0.0.1:8000",
    "proxy/README.md: .venv/bin/python -m bench.": "a benchmark: minutes of full load on the shared cores, with "
                                                   "nginx and wrk from Debian (make bench installs them)",
    "README.md: make chaos": "the chaos suite: minutes of faults under load on a cluster of its own (make test "
                             "runs its reduced part, tests/chaos/)",
    "bench/README.md: make bench": "benchmarks: 4-8 minutes of full load on the shared cores (run by hand)",
    "bench/README.md: .venv/bin/python -m bench.": "a benchmark: minutes of full load on the shared cores",
}
NEEDS_DEMO = (  # run against the real demo by tests/viewer/test_walkthrough.py
    "README.md: make demo-update",
    "README.md: .venv/bin/tiler generate --out my-wall",
    "bootstrap/README.md: .venv/bin/node-bootstrap release",
    "bootstrap/README.md: scripts/ec2_render.sh --local --address 127.0.0.4",
)
SERVERS = {"localcloud/README.md: .venv/bin/python -m localcloud.seaweedfs": "AWS_ENDPOINT_URL_S3=http://"}


@dataclass(frozen=True)
class Block:
    readme: str  # relative to the repository
    tag: str
    text: str

    @property
    def name(self) -> str:
        """``<readme>: <first command>`` (a ``source`` line and comments aside)."""
        lines = [line.split("  #")[0].strip() for line in self.text.splitlines()]
        first = next((line for line in lines if line and not line.startswith(("#", "source "))), "")
        return f"{self.readme}: {first} "

    def matches(self, prefix: str) -> bool:
        """A prefix ending in a space names the whole first command; any other, the start of it."""
        return self.name == prefix if prefix.endswith(" ") else self.name.startswith(prefix)


def blocks() -> list[Block]:
    found = []
    for readme in READMES:
        for match in FENCE.finditer(readme.read_text()):
            found.append(Block(str(readme.relative_to(REPO)), match[1], match[2]))
    return found


def shell_blocks() -> list[Block]:
    return [b for b in blocks() if b.tag in COMMAND_TAGS]


def demo_blocks() -> list[Block]:
    return [b for b in shell_blocks() if any(b.matches(p) for p in NEEDS_DEMO)]


def local_blocks() -> list[Block]:
    return [b for b in shell_blocks() if not any(b.matches(p) for p in (*SKIPPED, *NEEDS_DEMO))]


def sandbox(folder: Path, demo_work: Path | None = None) -> Path:
    """``folder`` made to look like this checkout: each top-level entry linked, ``demo-work`` -> ``demo_work``."""
    folder.mkdir(parents=True, exist_ok=True)
    for entry in REPO.iterdir():
        if entry.name not in (".git", "demo-work", "local-nodes") and not (folder / entry.name).exists():
            (folder / entry.name).symlink_to(entry)
    if demo_work is not None:
        (folder / "demo-work").symlink_to(demo_work)
    return folder


def clean_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GIGATILE_"))}


def run_block(block: Block, cwd: Path, timeout: float = 600) -> str:
    """Run ``block`` in ``cwd``; its output, or AssertionError with it."""
    script = "set -euo pipefail\n" + block.text
    server = next((ready for prefix, ready in SERVERS.items() if block.matches(prefix)), None)
    log = cwd / "block.log"
    with log.open("wb") as out:
        process = subprocess.Popen(["bash", "-c", script], cwd=cwd, env=clean_environment(), stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        if server is not None:
            wait_for(lambda: server in log.read_text(errors="replace") or process.poll() is not None, 120,
                     f"{block.name.strip()} to say {server!r}")
            os.killpg(process.pid, signal.SIGINT)  # the Ctrl-C that stops it
        code = process.wait(timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = log.read_text(errors="replace")
    assert code == 0, f"{block.name.strip()} exited {code}:\n{output[-4000:]}"
    assert "Traceback" not in output and ": error:" not in output, output[-4000:]
    return output


def test_every_fence_is_tagged_and_every_shell_block_is_run_or_skipped_with_a_reason():
    untagged = [b.readme for b in blocks() if b.tag not in (*COMMAND_TAGS, *OTHER_TAGS)]
    assert untagged == [], f"untagged fences (sh for commands, text for the rest) in {untagged}"
    for block in shell_blocks():
        ways = [p for p in (*SKIPPED, *NEEDS_DEMO) if block.matches(p)]
        assert len(ways) <= 1, f"{block.name} matches {ways}"
    prefixes = [*SKIPPED, *NEEDS_DEMO, *SERVERS]
    unused = [p for p in prefixes if not any(b.matches(p) for b in shell_blocks())]
    assert unused == [], f"no README block is named {unused} any more: update this test"
    assert all(reason.strip() for reason in SKIPPED.values())
    assert demo_blocks() and all("demo-work/env" in b.text or "make demo-" in b.text for b in demo_blocks())


@pytest.mark.parametrize("block", local_blocks(), ids=lambda b: b.name.strip())
def test_a_readme_block_runs_as_written(block: Block, tmp_path: Path):
    run_block(block, sandbox(tmp_path / "checkout"))
