"""The conventions of every gigatile command line, in one place.

- Every flag ``--some-flag`` reads ``GIGATILE_SOME_FLAG`` when it is not given; ``--help`` shows both, and
  the default.
- ``--log-level`` goes anywhere: before or after the verb.
- Log lines are ``time LEVEL logger key=value ...`` (``LOG_FORMAT``); chatty libraries log warnings only.
- An expected failure (any ``GigatileError``) prints ``<prog>: error: <message>`` without a traceback and
  exits 1; a usage error exits 2 (argparse); Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from gigaformat.errors import GigatileError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
QUIET_LIBRARIES = ("botocore", "boto3", "urllib3", "s3transfer", "httpx", "httpcore")
# libvips' warnings repeat what the error it raises says (once per damaged tile): errors only, but at DEBUG
SILENT_LIBRARIES = ("pyvips",)
FAILED, USAGE, INTERRUPTED = 1, 2, 130


def env_name(flag: str) -> str:
    """``--chunk-mb`` -> ``GIGATILE_CHUNK_MB``."""
    return "GIGATILE_" + flag.lstrip("-").upper().replace("-", "_")


def env_default(flag: str, default: str | None = None) -> str | None:
    return os.environ.get(env_name(flag), default)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that shows each flag's default and its environment twin."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or text == argparse.SUPPRESS:
            return text
        extras = []
        if action.default not in (None, False, argparse.SUPPRESS, "") and "%(default)" not in text:
            extras.append("default: %(default)s")
        env = getattr(action, "env_var", None)
        if env:
            extras.append(f"env {env}")
        return f"{text} ({'; '.join(extras)})" if extras else text


def parser(prog: str, description: str, log_level: str = "INFO") -> argparse.ArgumentParser:
    """A top-level parser with gigatile's help format and ``--log-level`` (default ``log_level``)."""
    made = argparse.ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter)
    _log_level(made, env_default("log-level", log_level).upper())
    return made


def subcommands(top: argparse.ArgumentParser) -> Callable[..., argparse.ArgumentParser]:
    """``add(name, help=...)`` adds a verb that also takes ``--log-level`` after it."""
    verbs = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, formatter_class=HelpFormatter, description=kwargs.get("help"), **kwargs)
        _log_level(sub, argparse.SUPPRESS)  # given after the verb, it wins; else the top-level value stands
        return sub

    return add


def _log_level(target: argparse.ArgumentParser, default: str) -> None:
    action = target.add_argument("--log-level", default=default, type=str.upper, choices=LOG_LEVELS,
                                 metavar="LEVEL", help="DEBUG, INFO, WARNING or ERROR")
    action.env_var = env_name("log-level")


def flag(target: argparse.ArgumentParser, name: str, kind: Callable[[str], Any] = str, default: Any = None,
         required: bool = False, help: str = "", **kwargs: Any) -> argparse.Action:
    """``--name``, its default read from ``GIGATILE_NAME`` when set; required only when neither is there.

    ``kind=bool`` makes a switch (``GIGATILE_NAME=1|true|yes`` turns it on).
    """
    env = env_name(name)
    raw = os.environ.get(env)
    if kind is bool:
        on = raw is not None and raw.strip().lower() in ("1", "true", "yes", "on")
        action = target.add_argument(f"--{name}", action="store_true", default=on or bool(default), help=help,
                                     **kwargs)
    else:
        if raw is not None:
            try:
                default = kind(raw)
            except (TypeError, ValueError):
                target.error(f"{env}={raw!r} is not a valid value for --{name}")
            required = False
        action = target.add_argument(f"--{name}", type=kind, default=default, required=required, help=help,
                                     **kwargs)
    action.env_var = env
    return action


def setup_logging(level: str, handlers: Sequence[logging.Handler] | None = None) -> None:
    """Log at ``level`` in LOG_FORMAT to ``handlers`` (default: stderr); quiet the chatty libraries."""
    if handlers is None:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter(LOG_FORMAT))
        handlers = [stream]
    logging.basicConfig(level=level.upper(), handlers=list(handlers), force=True)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
    for name in SILENT_LIBRARIES:
        logging.getLogger(name).setLevel(logging.DEBUG if logging.getLogger().level <= logging.DEBUG else logging.ERROR)


def run_command(prog: str, work: Callable[[], int]) -> int:
    """Run ``work``; an expected failure is one line on stderr and exit code 1, Ctrl-C exit code 130."""
    try:
        return work()
    except GigatileError as exc:
        logging.getLogger(prog).debug("failed", exc_info=True)
        print(f"{prog}: error: {exc}", file=sys.stderr, flush=True)
        return FAILED
    except KeyboardInterrupt:
        return INTERRUPTED


def main(prog: str, parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, log at ``--log-level`` to stderr, and run the verb's ``run(args)``."""
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    return run_command(prog, lambda: args.run(args))
