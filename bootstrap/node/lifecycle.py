"""A node's life: identity and user-data from IMDSv2, a fresh bootstrap, the update step, then boxlink and
the render server under supervision. Each phase's end is stamped in ``<root>/run/status.json``."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import logging.handlers
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bootstrap.errors import BootstrapError
from bootstrap.node.imds import ImdsClient, ImdsError, InstanceIdentity
from bootstrap.node.install import NOT_INHERITED, update_release
from bootstrap.node.selfupdate import REEXEC_VARIABLE, fetch_fresh_bootstrap, reexec, running_digest
from bootstrap.node.status import STARTED_VARIABLE, StatusBoard
from bootstrap.node.supervise import ChildSpec, RestartPolicy, Supervisor
from bootstrap.node.userdata import NewerDocument, NodeConfig, parse_user_data
from bootstrap.s3io import make_client
from gigaformat.commandline import LOG_FORMAT
from gigaformat.layout import RELEASE_WARMED as WARMED
from gigaformat.layout import NodeLayout

log = logging.getLogger(__name__)

RELOAD_SECONDS = 0.25  # how often the render server looks for a newly verified generation (a stat or two)
LOG_MAX_BYTES = 10 << 20
LOG_BACKUPS = 5


@dataclass(frozen=True)
class NodeOptions:
    """How node-bootstrap was asked to run (flags and environment, read once by the CLI)."""

    imds_endpoint: str
    argv: list[str]                  # our own arguments, to re-execute a fresh bootstrap with
    environ: dict[str, str]
    root: Path | None = None         # None: the user-data's root
    supervise: bool = True           # False: stop after the update step (``node-bootstrap update``)
    grace: float = 15.0              # seconds a child gets between SIGTERM and SIGKILL
    lifecycle_seconds: float = 2.0   # how often autoscaling/target-lifecycle-state is read
    restart: RestartPolicy = field(default_factory=RestartPolicy)


def child_specs(config: NodeConfig, identity: InstanceIdentity, layout: NodeLayout,
                env: dict[str, str]) -> list[ChildSpec]:
    """``tiler serve`` (advertising the private IPv4) and ``boxlink run``, from the current release."""
    root = str(layout.root)
    render = [str(layout.current_bin("tiler")), "--log-level", config.log_level, "serve", "--root", root,
              "--datasets", ",".join(config.datasets), "--host", config.bind or identity.local_ipv4,
              "--port", str(config.port), "--workers", str(config.workers), "--bucket", config.bucket,
              "--advertise", identity.local_ipv4, "--instance-id", identity.instance_id,
              "--ttl-seconds", str(config.ttl_seconds), "--reload-seconds", str(RELOAD_SECONDS)]
    if config.trusted_proxies:
        render += ["--trusted-proxies", config.trusted_proxies]
    if config.public_url:
        render += ["--public-url", config.public_url]
    boxlink = [str(layout.current_bin("boxlink")), "run", "--root", root, "--bucket", config.bucket,
               "--interval", str(config.sync_interval), "--instance-id", identity.instance_id,
               "--log-level", config.log_level]
    return [ChildSpec("render", render, env, layout.root), ChildSpec("boxlink", boxlink, env, layout.root)]


def child_environment(config: NodeConfig, identity: InstanceIdentity, environ: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in environ.items() if k not in (REEXEC_VARIABLE, STARTED_VARIABLE, *NOT_INHERITED)}
    if config.s3_endpoint_url:
        env["AWS_ENDPOINT_URL_S3"] = config.s3_endpoint_url
    env.setdefault("AWS_DEFAULT_REGION", config.region or identity.region)
    env["PYTHONUNBUFFERED"] = "1"  # console logs arrive line by line
    return env


def request_datasets(layout: NodeLayout, datasets: tuple[str, ...]) -> None:
    """Write ``<root>/data/<dataset>/synch.active`` for the node's datasets, as Zoomii's render.sh touched it
    before starting the server: boxlink starts replicating while the render server is still starting (which
    writes the same marker again). The marker's content is informative; its existence is the request."""
    for name in datasets:
        folder = layout.dataset(name)
        if not folder.is_active():
            folder.mark_active(by="node-bootstrap")


def log_to_file(layout: NodeLayout) -> None:
    """Add ``<root>/data/log/bootstrap.log`` (rolled by size) to the root logger."""
    layout.log_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(layout.log_dir / "bootstrap.log", maxBytes=LOG_MAX_BYTES,
                                                   backupCount=LOG_BACKUPS)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.getLogger().addHandler(handler)


def lock_root(layout: NodeLayout):
    """Hold ``<root>/run/node-bootstrap.lock`` for this process's life: one node-bootstrap per root."""
    layout.run_dir.mkdir(parents=True, exist_ok=True)
    handle = (layout.run_dir / "node-bootstrap.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise BootstrapError(f"another node-bootstrap already runs {layout.root} "
                             f"(see: node-bootstrap status --root {layout.root})") from None
    return handle


def read_instance(options: NodeOptions) -> tuple[InstanceIdentity, NodeConfig, NewerDocument | None]:
    """The instance's identity and config; for user-data only a newer bootstrap reads whole, the config of
    the keys this one knows and why the rest is unread."""
    with ImdsClient(options.imds_endpoint) as imds:
        identity = imds.identity()
        raw = imds.user_data()
    if raw is None:
        raise BootstrapError(f"this instance has no user-data (IMDS {options.imds_endpoint}): launch it with a "
                             "gigatile document, e.g. scripts/ec2_render.sh")
    try:
        return identity, parse_user_data(raw), None
    except NewerDocument as exc:
        return identity, exc.known, exc


def run_node(options: NodeOptions, stop: threading.Event) -> int:
    """Bring the node up and (unless ``supervise`` is False) supervise it until ``stop`` is set."""
    started = float(options.environ.get(STARTED_VARIABLE) or time.time())
    identity, config, unread = read_instance(options)
    layout = NodeLayout(Path(options.root or config.root).resolve())
    log_to_file(layout)
    try:
        return _bring_up(options, stop, identity, config, layout, started, unread)
    except BootstrapError as exc:
        log.error("node failed error=%r", str(exc))
        raise


def _bring_up(options: NodeOptions, stop: threading.Event, identity: InstanceIdentity, config: NodeConfig,
              layout: NodeLayout, started: float, unread: NewerDocument | None = None) -> int:
    """With ``unread`` (user-data newer than this bootstrap), only as far as re-executing a fresher bootstrap,
    which reads it whole: an instance launched from an older image still comes up. Failing that, the node
    fails, saying why."""
    lock = lock_root(layout)  # noqa: F841 - held until the process ends (or execs a fresh bootstrap)
    digest = running_digest()
    board = StatusBoard(layout.status_path, started=started, root=str(layout.root), bucket=config.bucket,
                        instance_id=identity.instance_id, address=identity.local_ipv4, port=config.port,
                        bootstrap_digest=digest, release=layout.current_version())
    board.phase("identity")
    log.info("node instance=%s address=%s bucket=%s datasets=%s channel=%s root=%s bootstrap=%s",
             identity.instance_id, identity.local_ipv4, config.bucket, ",".join(config.datasets), config.channel,
             layout.root, digest[:16])
    s3 = make_client(config.s3_endpoint_url or None, config.region or identity.region, reads_only=True)
    if unread is not None:
        log.warning("%s; looking for a fresher bootstrap that reads it", unread)
    refresh_bootstrap(options, config, layout, s3, digest, started)
    if unread is not None:
        board.set(state="failed", error=str(unread))
        raise BootstrapError(f"{unread}; and no fresher bootstrap that reads it was run (self_update "
                             f"{'on' if config.self_update else 'off'}; bootstrap/README.md, \"Fresh bootstrap\")")
    board.phase("self_update")
    install_release(options, config, layout, s3, board)
    board.phase("update")
    if not options.supervise:
        board.set(state="updated")
        return 0
    if stop.is_set():
        board.set(state="stopped")
        return 0
    env = child_environment(config, identity, options.environ)
    request_datasets(layout, config.datasets)
    warmup = start_warmup(layout, env, board) if config.warmup else None
    supervisor = Supervisor(child_specs(config, identity, layout, env), layout.log_dir, board, options.restart,
                            grace=options.grace)
    board.set(state="running")
    board.phase("children")
    threading.Thread(target=watch_lifecycle, args=(options, stop), name="lifecycle", daemon=True).start()
    supervisor.run(stop)
    if warmup is not None and warmup.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(warmup.pid, signal.SIGKILL)
    board.set(state="stopped")
    log.info("node stopped instance=%s", identity.instance_id)
    return 0


def watch_lifecycle(options: NodeOptions, stop: threading.Event) -> None:
    """Set ``stop`` when Auto Scaling takes this instance out (target-lifecycle-state ``Terminated``): the
    children get SIGTERM while the network is still up, so the render server deletes its registration
    record before the instance goes (the group's termination hook holds it meanwhile). Outside a group the
    path is absent (404) and nothing happens."""
    with ImdsClient(options.imds_endpoint) as imds:
        while not stop.wait(options.lifecycle_seconds):
            try:
                state = imds.get_bytes("meta-data/autoscaling/target-lifecycle-state")
            except ImdsError as exc:
                log.debug("lifecycle state unread error=%s", exc)
                continue
            if state is not None and state.decode(errors="replace").strip() == "Terminated":
                log.info("leaving the Auto Scaling group target-lifecycle-state=Terminated; stopping")
                stop.set()
                return


def install_release(options: NodeOptions, config: NodeConfig, layout: NodeLayout, s3, board: StatusBoard) -> None:
    """The update step; a refused release leaves the installed one running (unless there is none)."""
    try:
        board.set(state="updating")
        result = update_release(s3, config.bucket, config.channel, layout)
        board.set(release=result.version, previous_release=result.previous, kernels=result.kernels)
        log.info("release ready version=%s downloaded=%s kernels=%s seconds=%.2f", result.version,
                 result.downloaded, result.kernels, result.seconds)
    except BootstrapError as exc:
        keeping = layout.current_version()
        if keeping is None or not options.supervise:
            board.set(state="failed", error=str(exc))
            raise
        log.error("update refused; keeping release=%s error=%r", keeping, str(exc))
        board.set(error=f"update refused, running {keeping}: {exc}")


def start_warmup(layout: NodeLayout, env: dict[str, str], board: StatusBoard) -> subprocess.Popen | None:
    """Compile the current release's render kernels in the background, once per release (tiler.warmup);
    it runs beside boxlink's first sync, so the first tile need not compile them."""
    release = layout.current.resolve()
    if (release / WARMED).exists():
        return None
    console = (layout.log_dir / "warmup.console.log").open("ab")
    try:
        process = subprocess.Popen([str(release / "bin" / "python"), "-m", "tiler.warmup"],
                                   stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT, env=env,
                                   cwd=release, start_new_session=True)  # cwd: -m puts it first on sys.path
    except OSError as exc:
        log.warning("warmup not started error=%r", str(exc))
        return None
    finally:
        console.close()

    def wait() -> None:
        code = process.wait()
        board.phase("warmup")
        (log.info if code == 0 else log.warning)("warmup finished code=%d", code)

    threading.Thread(target=wait, name="warmup", daemon=True).start()
    return process


def refresh_bootstrap(options: NodeOptions, config: NodeConfig, layout: NodeLayout, s3, digest: str,
                      started: float) -> None:
    """Re-execute the published bootstrap if it differs from this one (at most once: the loop guard)."""
    if not config.self_update:
        return
    guard = options.environ.get(REEXEC_VARIABLE)
    if guard:
        if guard != digest:
            log.warning("fresh bootstrap digest=%s was published as %s; not re-executing again", digest[:16],
                        guard[:16])
        else:
            log.info("running fresh bootstrap digest=%s", digest[:16])
        return
    try:
        fresh = fetch_fresh_bootstrap(s3, config.bucket, layout, digest)
    except BootstrapError as exc:
        log.error("fresh bootstrap unusable; running our own error=%r", str(exc))
        return
    if fresh is not None:
        env = {**options.environ, STARTED_VARIABLE: repr(started)}
        reexec(fresh, options.argv, env, fresh.stem)
