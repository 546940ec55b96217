"""What every command shares: one-line user errors and exit statuses, logging and console set-up, the
options that override a config, and running one parsed command.

A command module defines ``register(sub, common)``: it adds its sub-parsers to ``sub`` (with ``common``,
the ``-v/--verbose`` parent, among their parents) and sets ``func`` to a function of the parsed
arguments that returns the exit status. :func:`run_command` runs it: user errors (missing file, bad
config key, unusable data) print one line and exit with status 2; ``--verbose`` shows the traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from typing import Any

from ..runs.folder import RunError, is_rank_zero
from ..runs.output import fmt_duration, make_console

__all__ = ["EXIT_USER_ERROR", "CLIError", "apply_overrides", "common_options", "fmt_duration", "is_rank_zero",
           "make_console", "parse_devices", "run_command", "run_folder_command", "setup_logging"]

EXIT_USER_ERROR = 2


class CLIError(Exception):
    """A user error reported as one line (exit status 2)."""


def common_options() -> argparse.ArgumentParser:
    """The parent parser of every command: ``-v/--verbose``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="debug logging and full tracebacks on errors")
    return common


def run_folder_command(
    sub: argparse._SubParsersAction, name: str, common: argparse.ArgumentParser, **kwargs: Any
) -> argparse.ArgumentParser:
    """The sub-parser of a command on a trained run (``help``, ``description`` in ``kwargs``): ``RUN_DIR``
    and ``--accelerator`` (the inference device)."""
    p = sub.add_parser(name, parents=[common], **kwargs)
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--accelerator", default="auto", help="device for inference (default auto)")
    return p


def setup_logging(verbose: bool) -> None:
    """Rich log handler on the root logger at INFO (DEBUG for cmvae with --verbose)."""
    from rich.logging import RichHandler

    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_cmvae_cli", False):
            root.removeHandler(handler)
    handler = RichHandler(console=make_console(stderr=True), show_path=False, rich_tracebacks=True, markup=False)
    handler._cmvae_cli = True  # type: ignore[attr-defined]
    handler.addFilter(lambda record: "litlogger" not in record.getMessage())  # Lightning's advert
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("cmvae").setLevel(logging.DEBUG if verbose else logging.INFO)
    # Lightning's rank-zero notes ("GPU available: False", "`Trainer.fit` stopped") repeat what the
    # command prints itself; without --verbose they would also stand beside a one-line error.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.INFO if verbose else logging.WARNING)
    # Lightning installs its own stream handler when imported first: route it through ours.
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            if type(h) is logging.StreamHandler:
                lg.removeHandler(h)
        lg.propagate = True


def parse_devices(text: str) -> Any:
    """``auto`` | ``N`` | ``0,1,3`` -> Lightning's ``devices``."""
    text = text.strip()
    if text == "auto":
        return "auto"
    try:
        if "," in text:
            return [int(t) for t in text.split(",") if t.strip()]
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto', a count or a comma-separated list of ids, got {text!r}")


def apply_overrides(cfg: Any, source: str, **training: Any) -> Any:
    """``cfg`` with the ``training:`` values given on the command line (None: not given), validated again."""
    from ..config import config_from_dict

    values = {k: v for k, v in training.items() if v is not None}
    if not values:
        return cfg
    data = cfg.model_dump(mode="json")
    data["training"].update(values)
    return config_from_dict(data, source=f"{source} (with command-line options)")


def _user_errors() -> tuple[type[BaseException], ...]:
    from ..config import ConfigError
    from ..data import DataSourceError
    from ..estimator import NotFittedError, ParameterError
    from ..saving import ModelFileError
    from ..schema import DataValidationError
    from ..training import NonFiniteLossError  # diverging training: the message names the likely settings

    return (CLIError, RunError, ConfigError, FileNotFoundError, DataSourceError, DataValidationError,
            NotFittedError, ParameterError, ModelFileError, NonFiniteLossError)


def _one_line(err: BaseException) -> str:
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return text or type(err).__name__


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed command; returns the exit status (0 ok, 2 user error, 1 other failure, 130 interrupted)."""
    setup_logging(args.verbose)
    user_errors = _user_errors()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except user_errors as err:
        if args.verbose:
            traceback.print_exc()
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as err:  # noqa: BLE001 -- a bug or an environment problem
        if args.verbose:
            traceback.print_exc()
        print(f"error: {type(err).__name__}: {_one_line(err)} (rerun with --verbose for the traceback)",
              file=sys.stderr)
        return 1
