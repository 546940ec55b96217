"""``cmvae train`` and ``cmvae quickstart``: train a config into a run folder (:func:`cmvae.train_run`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..runs.train import train_run
from .runner import CLIError, apply_overrides, make_console, parse_devices


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``train`` and ``quickstart`` to the command parsers ``sub``."""
    run_opts = argparse.ArgumentParser(add_help=False)
    run_opts.add_argument("--accelerator", default=None, help="cpu, gpu or auto (overrides the config)")
    run_opts.add_argument("--epochs", type=int, default=None, help="maximum number of epochs (overrides the config)")
    run_opts.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoints/last.ckpt")
    run_opts.add_argument("--overwrite", action="store_true", help="replace a previous run in the output folder")

    p = sub.add_parser("train", parents=[common, run_opts], help="train CMVAE from a YAML config",
                       description="Train CMVAE (or the baseline named by model.type: mvae, mmvae, mopoe, mmjsd, "
                       "mvtcae, mmvae_plus) from a YAML config, save it, plot the curves and evaluate it.")
    p.add_argument("--config", default=None,
                   help="YAML config file, or a packaged config name: polymnist_cpu, polymnist, cubicc")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (checkpoints, logs, model, reports)")
    p.add_argument("--devices", type=parse_devices, default=None,
                   help="auto, a count, or ids like 0,1: processes (or GPUs) per node")
    p.add_argument("--strategy", default=None,
                   help="Lightning strategy, e.g. ddp: one process per device, gradients averaged (overrides the config)")
    p.add_argument("--num-nodes", type=int, default=None, help="machines of a multi-node DDP run (overrides the config)")
    p.add_argument("--max-time-minutes", type=float, default=None,
                   help="stop training after this many minutes (counts resumed time too)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("quickstart", parents=[common, run_opts], help="PolyMNIST end to end on the CPU (~20 min)",
                       description="Build PolyMNIST offline, train the packaged CPU config and evaluate it.")
    p.add_argument("--out", default="runs/quickstart", metavar="RUN_DIR", help="run folder (default runs/quickstart)")
    p.add_argument("--minutes", type=float, default=None, help="training time limit (default: the config's)")
    p.set_defaults(func=cmd_quickstart)


def cmd_train(args: argparse.Namespace) -> int:
    """Train the model a YAML config describes into a run folder (or resume it)."""
    from ..config import load_config, resolve_config_path

    out = Path(args.out)
    if args.config is None:
        if not args.resume:
            raise CLIError("--config is required (or --resume to continue a run with its own config.yaml)")
        config_path = out / "config.yaml"
    else:
        config_path = resolve_config_path(args.config)
    cfg = load_config(config_path)
    cfg = apply_overrides(
        cfg,
        str(config_path),
        epochs=args.epochs,
        accelerator=args.accelerator,
        devices=args.devices,
        strategy=args.strategy,
        num_nodes=args.num_nodes,
        max_time_minutes=args.max_time_minutes,
    )
    return train_run(cfg, out, resume=args.resume, overwrite=args.overwrite)


def cmd_quickstart(args: argparse.Namespace) -> int:
    """PolyMNIST end to end on the CPU: the packaged config polymnist_cpu.yaml."""
    from ..config import load_config, packaged_config

    console = make_console()
    config_path = packaged_config("polymnist_cpu.yaml")
    cfg = load_config(config_path)
    cfg = apply_overrides(
        cfg, str(config_path), max_time_minutes=args.minutes, accelerator=args.accelerator, epochs=args.epochs
    )
    console.print(
        f"quickstart: PolyMNIST built offline, CMVAE trained with the packaged config polymnist_cpu.yaml "
        f"(same as `cmvae train --config polymnist_cpu --out {args.out}`)"
    )
    return train_run(cfg, Path(args.out), resume=args.resume, overwrite=args.overwrite, console=console)
