"""Several settings x several training seeds of ``clustering_diagnostics.py``, run side by side.

    python benchmarks/seed_study.py --study study.json --data polymnist --config polymnist_cpu \
        --seeds 0 1 2 3 --parallel 4 [--accelerator gpu] [--timeout 600] [--out DIR]

``study.json`` maps a setting's name to the CMVAE parameters it overrides, e.g.
``{"base": {}, "late": {"cluster_init_epoch": 24}}``; a setting may carry its own ``"seeds"``
list and ``"config"``. Each (setting, seed) is one process (one torch thread) writing
``OUT/runs/NAME_sSEED.csv`` epoch by epoch, so a run cut by ``--timeout`` keeps its finished
epochs. Then every row goes to ``OUT/study.csv`` and a table (mean and spread over seeds of the
model's NMI and of k-means on its latent, at a few epochs and at the end) to ``OUT/study.md``.
Compare settings per epoch here; per CPU-minute only on an otherwise idle machine, one run at a time.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def launch(jobs: list[tuple[str, list[str]]], parallel: int, timeout: float, log_dir: Path) -> dict[str, int]:
    """Run ``(name, argv)`` jobs, at most ``parallel`` at once, each killed after ``timeout`` s."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    pending, running, codes = list(jobs), {}, {}
    while pending or running:
        while pending and len(running) < parallel:
            name, argv = pending.pop(0)
            log = (log_dir / f"{name}.log").open("w")
            running[name] = (subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env), time.time())
        for name, (proc, start) in list(running.items()):
            if proc.poll() is None and time.time() - start > timeout:
                proc.kill()
            if proc.poll() is not None:
                codes[name] = proc.returncode
                del running[name]
        time.sleep(1)
    return codes


def summarise(rows: list[dict], epochs: list[int]) -> str:
    """Markdown table: per setting, mean +- std over seeds of NMI and k-means-on-z NMI at ``epochs`` and the last."""
    settings = sorted({r["setting"] for r in rows})
    head = ["setting", "seeds"] + [f"k-means on z @ {e}" for e in epochs] + ["k-means on z, last", "model NMI, last",
                                                                          "last epoch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def fmt(values: list[float]) -> str:
        if not values:
            return ""
        return f"{statistics.mean(values):.2f} +- {statistics.pstdev(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"

    for s in settings:
        mine = [r for r in rows if r["setting"] == s]
        seeds = sorted({r["seed"] for r in mine})
        last = [max((r for r in mine if r["seed"] == seed), key=lambda r: int(r["epoch"])) for seed in seeds]
        cells = [s, " ".join(seeds)]
        for e in epochs:
            cells.append(fmt([float(r["kmeans_mean_nmi"]) for r in mine if int(r["epoch"]) == e and r.get("kmeans_mean_nmi")]))
        cells += [fmt([float(r["kmeans_mean_nmi"]) for r in last]), fmt([float(r["nmi"]) for r in last]),
                  " ".join(r["epoch"] for r in last)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", required=True, help="JSON file (or inline JSON) of settings")
    parser.add_argument("--data", default="polymnist")
    parser.add_argument("--config", default="polymnist_cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per run")
    parser.add_argument("--epochs-of-interest", type=int, nargs="+", default=[8, 12, 16])
    parser.add_argument("--out", default=os.environ.get("OUT", "seed_study"))
    args = parser.parse_args()
    out = Path(args.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    study = json.loads(Path(args.study).read_text() if Path(args.study).exists() else args.study)
    sys.path.insert(0, str(HERE))
    from clustering_diagnostics import load

    load(args.data)  # build and cache the data once, before the runs read it side by side
    jobs = []
    for name, setting in study.items():
        setting = dict(setting)
        seeds = setting.pop("seeds", args.seeds)
        config = setting.pop("config", args.config)
        for seed in seeds:
            jobs.append((f"{name}_s{seed}", [sys.executable, str(HERE / "clustering_diagnostics.py"), f"{name}_s{seed}",
                                             "--data", args.data, "--config", config, "--set", json.dumps(setting),
                                             "--seeds", str(seed), "--accelerator", args.accelerator,
                                             "--out", str(out / "runs")]))
    codes = launch(jobs, args.parallel, args.timeout, out / "runs")
    rows = []
    for name, _ in jobs:
        path = out / "runs" / f"{name}.csv"
        for r in (csv.DictReader(path.open()) if path.exists() else []):
            rows.append({"setting": name.rsplit("_s", 1)[0], **r})
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with (out / "study.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    table = summarise(rows, args.epochs_of_interest) if rows else "no rows"
    (out / "study.md").write_text(f"`{' '.join(sys.argv)}`\n\nexit codes: {codes}\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()
