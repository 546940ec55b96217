"""The short form of a reproduction for a README: ``DIR/summary.md``, written beside the report.

:func:`build_summary` keeps what a reader of the README needs to judge the method at the run's
budget, each number taken from the parts' results (``DIR/parts/NAME/result.json``):

* where the numbers come from: the command, the machine, the budget, the wall time;
* the clustering table, with each unimodal baseline condensed to one row (the mean over the
  modalities it was fitted on, and its best modality);
* Algorithm 1: the selected number of clusters per seed and the scores before and after pruning;
* clustering from subsets of the modalities (one row per number of observed modalities);
* Figure 1 condensed: coherence and Frechet distance of each multimodal VAE;
* the report's verdict lines (where CMVAE stands against the best baseline, a wrong K_hat).

Figures are referred to by their path relative to ``DIR``; ``benchmarks/readme_results.py`` copies
them next to the README when it splices the summary in.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from .document import Block, Bullets, Figure, Paragraph, Table, to_markdown, write_atomic
from .report import RunInfo, _pm, fmt_seconds, verdicts
from .runner import PartOutcome

__all__ = ["build_summary", "write_summary"]


def _provenance(info: RunInfo, outcomes: list[PartOutcome]) -> Paragraph:
    m = info.machine
    parts_seconds = sum(o.seconds or 0.0 for o in outcomes if o.ok)
    done = sum(o.ok for o in outcomes)
    state = "" if done == len(outcomes) else f" Only {done} of {len(outcomes)} parts finished."
    return Paragraph(
        f"Generated from `{info.command}` (cmvae {info.versions.get('cmvae')}, started {info.started[:10]}) on "
        f"{m.get('cpu')} with {m.get('torch_threads')} torch thread(s), accelerator {info.accelerator}; the parts "
        f"took {fmt_seconds(parts_seconds)}. Budget: {info.budget.get('summary')} The paper: "
        f"{info.budget.get('paper')} Seeds {', '.join(map(str, info.seeds))}; spreads are the population standard "
        f"deviation over seeds. The whole report (every modality, the paper's values where a source was found, "
        f"per-part wall times): `report.md` / `report.html` in the output folder.{state}")


def _clustering_rows(summary: list[dict[str, Any]]) -> list[list[str]]:
    """Multimodal rows as they are; the rows of a unimodal method (one per modality) condensed into one."""
    rows: list[list[str]] = []
    unimodal: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in summary:
        if r["modality"] == "all":
            rows.append([r["method"], r["setting"], "all",
                         *(_pm(r[f"{m}_mean"], r[f"{m}_std"], r["n_seeds"]) for m in ("nmi", "ari", "acc")),
                         str(r["n_seeds"])])
        else:
            unimodal[(r["method"], r["setting"])].append(r)
    for (method, setting), group in unimodal.items():
        best = max(group, key=lambda r: r["nmi_mean"])
        mean = {m: sum(r[f"{m}_mean"] for r in group) / len(group) for m in ("nmi", "ari", "acc")}
        rows.append([method, setting, f"one at a time: mean of {len(group)} (best: m{best['modality']}, NMI "
                                      f"{best['nmi_mean']:.3f})",
                     *(f"{mean[m]:.3f}" for m in ("nmi", "ari", "acc")), str(group[0]["n_seeds"])])
    return rows


def _clustering(outcome: PartOutcome | None, cmvae: PartOutcome | None) -> list[Block]:
    """The clustering table and, as in the report, the CMVAE seeds behind its first row."""
    if outcome is None or not outcome.ok or not outcome.result:
        return []
    res = outcome.result
    blocks: list[Block] = [Table(["method", "setting", "modalities", "NMI", "ARI", "ACC", "seeds"],
                                 _clustering_rows(res["summary"]),
                                 caption=f"Clustering, PolyMNIST {res['split']} split ({res['n_eval']} tuples)")]
    if cmvae is not None and cmvae.ok and cmvae.result:
        cm = cmvae.result
        rows = [[str(r["seed"]), f"{r['k_over']} -> {r['k_hat']}", f"{r['before']['nmi']:.3f}",
                 f"{r['after']['nmi']:.3f}", f"{r['after']['ari']:.3f}", f"{r['after']['acc']:.3f}", str(r["epochs"]),
                 fmt_seconds(r["train_seconds"])] for r in cm["runs"]]
        blocks.append(Table(["seed", "K -> K_hat (Algorithm 1)", "NMI before", "NMI after", "ARI after", "ACC after",
                             "epochs", "training"], rows,
                            caption=f"CMVAE per seed ({cm['n_train']} training tuples; true number of classes "
                                    f"{cm['true_k']})"))
    return blocks


def _selection_figure(outcome: PartOutcome | None) -> list[Block]:
    if outcome is None or not outcome.ok or not outcome.result:
        return []
    first = outcome.result["per_seed"][0]
    return [Figure(Path(first["figure"]), f"Figure 2, seed {first['seed']}: Algorithm 1's mean normalised entropy "
                                          "and the test NMI/ARI along the pruning")]


def _subsets(outcome: PartOutcome | None) -> list[Block]:
    if outcome is None or not outcome.ok or not outcome.result:
        return []
    res = outcome.result
    rows = [[str(r["k"]), str(r["n_subsets"]), f"{r['nmi']:.3f}", f"{r['ari']:.3f}", f"{r['acc']:.3f}"]
            for r in res["by_size"]]
    return [Table(["observed modalities", "subsets", "NMI", "ARI", "ACC"], rows,
                  caption="The pruned CMVAE clustering from fewer modalities (mean over seeds and subsets)")]


def _compare(outcome: PartOutcome | None) -> list[Block]:
    if outcome is None or not outcome.ok or not outcome.result:
        return []
    res = outcome.result
    rows = [[label, f"{s['conditional_coherence'][0]:.3f}", f"{s['unconditional_coherence'][0]:.3f}",
             f"{s['fd_conditional'][0]:.1f}", f"{s['fd_unconditional'][0]:.1f}"] for label, s in res["summary"].items()]
    budget = f"{res['epochs']} epoch(s)" + (f" or {res['max_time_minutes']:g} min" if res.get("max_time_minutes") else "")
    return [Table(["model", "cond. coherence", "uncond. coherence", "FD cond.", "FD uncond."], rows,
                  caption=f"Figure 1 condensed: multimodal VAEs trained for at most {budget} each (coherence: higher "
                          f"is better, real tuples {res['real_coherence']:.3f}; FD: lower is better)")]


def build_summary(info: RunInfo, outcomes: list[PartOutcome]) -> list[Block]:
    """The README's results section as blocks (no heading: the README brings its own)."""
    by_name = {o.name: o for o in outcomes}
    lines = verdicts(by_name)
    blocks: list[Block] = [_provenance(info, outcomes)]
    blocks += _clustering(by_name.get("clustering"), by_name.get("cmvae"))
    blocks += _selection_figure(by_name.get("selection"))
    blocks += _subsets(by_name.get("subsets"))
    blocks += _compare(by_name.get("compare"))
    if lines:
        blocks.append(Bullets(lines))
    return blocks


def write_summary(out: Path, info: RunInfo, outcomes: list[PartOutcome]) -> Path:
    """Write ``out/summary.md`` (:func:`build_summary` as Markdown) and return its path."""
    return write_atomic(out / "summary.md", to_markdown(build_summary(info, outcomes)))
