"""The report of a reproduction: ``DIR/report.md`` and a self-contained ``DIR/report.html``.

:func:`build_report` turns the parts' results (``DIR/parts/NAME/result.json``, see :mod:`.parts`)
into document blocks: each table sets our value beside the paper's (:mod:`.paper`; "not stated
here" where no value was found with a source), with the seeds, the budget, the package versions,
the machine and the wall time of every part, and notes where our numbers are below the paper's
or say nothing about its claims. A part that did not finish gets a line saying so.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .document import Block, Bullets, Figure, Heading, Paragraph, Table, to_html, to_markdown, write_atomic
from .paper import SEARCHED, PaperValue, format_paper_value, paper_value
from .runner import PartOutcome

__all__ = ["RunInfo", "build_report", "fmt_seconds", "verdicts", "write_report"]

DATASET = "PolyMNIST"
SCORES = ("nmi", "ari", "acc")


@dataclass
class RunInfo:
    """What the report says about the run as a whole."""

    scale: str
    scale_file: str
    command: str
    budget: dict[str, Any]
    seeds: list[int]
    data: dict[str, Any]
    accelerator: str
    machine: dict[str, Any]
    versions: dict[str, str]
    started: str
    wall_seconds: float


def fmt_seconds(seconds: float | None) -> str:
    """``"42 s"``, ``"3 min 05 s"``, ``"1 h 02 min"``; ``"-"`` for None."""
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def _pm(mean: float, std: float, n: int, digits: int = 3) -> str:
    return f"{mean:.{digits}f}" if n <= 1 else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _ref(key: str, reference: dict[str, PaperValue] | None) -> PaperValue:
    return paper_value(key, reference)


def _missing(outcome: PartOutcome | None, name: str) -> list[Block]:
    if outcome is None:
        return [Paragraph(f"Part `{name}` was not part of this run.")]
    why = outcome.error or outcome.status
    return [Paragraph(f"**Not finished** (part `{name}`: {outcome.status}; {why}). Rerun the same command to "
                      "continue: finished parts are reused.")]


# ------------------------------------------------------------------------------------------ sections


def _header(info: RunInfo, outcomes: list[PartOutcome]) -> list[Block]:
    done = sum(o.ok for o in outcomes)
    state = (f"All {len(outcomes)} parts finished." if done == len(outcomes)
             else f"{done} of {len(outcomes)} parts finished; rerun the command to continue the others.")
    return [
        Heading(f"Reproduction report: CMVAE (Palumbo et al., ICLR 2024), scale `{info.scale}`", 1),
        Paragraph(f"Command: `{info.command}` (scale file `{info.scale_file}`). cmvae {info.versions.get('cmvae')}, "
                  f"started {info.started}, this call's wall time {fmt_seconds(info.wall_seconds)}. {state}"),
        Paragraph("Every table sets our value beside the paper's; \"not stated here\" means that no value of "
                  "the paper was found with a source (none is filled in from memory). Spreads are the "
                  "population standard deviation over seeds."),
    ]


def _budget(info: RunInfo, outcomes: list[PartOutcome]) -> list[Block]:
    b = info.budget
    data = ", ".join(f"{k} {v}" for k, v in info.data.items())
    parts_seconds = sum(o.seconds or 0.0 for o in outcomes if o.ok)
    rows = [
        ["hardware the budget is for", str(b.get("hardware"))],
        ["expected wall time", f"about {fmt_seconds(60 * float(b.get('expected_minutes', 0)))}"],
        ["wall time of the finished parts", fmt_seconds(parts_seconds)],
        ["what is trained", str(b.get("summary"))],
        ["the paper's setting", str(b.get("paper"))],
        ["seeds", ", ".join(map(str, info.seeds))],
        ["data", data],
        ["accelerator", info.accelerator],
    ]
    return [Heading("Budget and seeds"), Table(["", "this run"], rows)]


def _parts(outcomes: list[PartOutcome]) -> list[Block]:
    rows = []
    for o in outcomes:
        wall = fmt_seconds(o.seconds)
        if o.earlier_seconds:
            wall += f" (+ {fmt_seconds(o.earlier_seconds)} in earlier attempts)"
        rows.append([f"`{o.name}`", o.title, o.status, wall, o.finished or "-", str(o.attempts)])
    return [Heading("Parts and their wall time"),
            Table(["part", "what", "status", "wall time", "finished", "attempts"], rows,
                  caption="reused = finished by an earlier call (its own wall time shown); files under parts/NAME/")]


def _clustering_key(row: dict[str, Any], metric: str) -> str | None:
    if row["method"] == "CMVAE" and "before selection" in row["setting"]:
        return None  # the paper reports CMVAE after selection
    name = row["method"] if row["modality"] == "all" else f"{row['method']} m{row['modality']}"
    return f"clustering/{DATASET}/{name}/{metric}"


def _clustering(outcome: PartOutcome | None, cmvae: PartOutcome | None,
                reference: dict[str, PaperValue] | None) -> list[Block]:
    blocks: list[Block] = [Heading("Clustering: CMVAE with Algorithm 1 against VaDE, DeepCluster, CMC and k-means")]
    if outcome is None or not outcome.ok or outcome.result is None:
        return blocks + _missing(outcome, "clustering")
    res = outcome.result
    rows = []
    for r in res["summary"]:
        cells = [r["method"], r["setting"], r["modality"]]
        for m in SCORES:
            key = _clustering_key(r, m)
            cells += [_pm(r[f"{m}_mean"], r[f"{m}_std"], r["n_seeds"]),
                      "-" if key is None else format_paper_value(_ref(key, reference))]
        cells += [str(r["n_seeds"]), f"{r['seconds_mean']:.0f}"]
        rows.append(cells)
    blocks.append(Table(
        ["method", "setting", "modality", "NMI", "NMI (paper)", "ARI", "ARI (paper)", "ACC", "ACC (paper)", "seeds",
         "s/fit"], rows,
        caption=f"{DATASET}, scored on the {res['split']} split ({res['n_eval']} tuples); modality `all` = "
                "multimodal methods, a number = a unimodal method on that modality; seeds "
                + ", ".join(map(str, res["seeds"]))))
    if cmvae is not None and cmvae.ok and cmvae.result:
        cm = cmvae.result
        seed_rows = [[str(r["seed"]), str(r["k_over"]), str(r["k_hat"]), f"{r['before']['nmi']:.3f}",
                      f"{r['after']['nmi']:.3f}", f"{r['after']['ari']:.3f}", f"{r['after']['acc']:.3f}",
                      str(int(r["after"]["n_clusters_used"])), str(r["epochs"]), fmt_seconds(r["train_seconds"])]
                     for r in cm["runs"]]
        blocks.append(Table(["seed", "K", "K_hat", "NMI before", "NMI after", "ARI after", "ACC after",
                             "clusters used", "epochs", "training"], seed_rows,
                            caption=f"CMVAE per seed: trained with K = {cm['k_over']} on {cm['n_train']} tuples, "
                                    f"Algorithm 1 on the training split, scored on the {cm['split']} split"))
    return blocks


def _selection(outcome: PartOutcome | None, reference: dict[str, PaperValue] | None) -> list[Block]:
    blocks: list[Block] = [Heading("Figure 2: entropy and NMI/ARI against the number of clusters")]
    if outcome is None or not outcome.ok or outcome.result is None:
        return blocks + _missing(outcome, "selection")
    res = outcome.result
    first = res["per_seed"][0]
    blocks.append(Figure(Path(first["figure"]), f"Algorithm 1 along the pruning, seed {first['seed']}: mean "
                         f"normalised entropy h_k (left axis), NMI and ARI on the {res['split']} split (right axis)"))
    steps = [[f"{s['k']}" + (" (K_hat)" if s["k"] == first["k_hat"] else ""), f"{s['entropy']:.4f}",
              "-" if s["nmi"] is None else f"{s['nmi']:.3f}", "-" if s["ari"] is None else f"{s['ari']:.3f}"]
             for s in first["steps"]]
    blocks.append(Table(["k", "h_k", "NMI", "ARI"], steps, caption=f"seed {first['seed']}, every k visited"))
    k_hats = ", ".join(f"seed {r['seed']}: {r['k_hat']}" for r in res["per_seed"])
    paper = format_paper_value(_ref(f"selection/{DATASET}/CMVAE/k_hat", reference), digits=0)
    blocks.append(Table(["", "ours", "paper"], [
        ["K (over-specified)", str(res["k_over"]), format_paper_value(_ref(f"selection/{DATASET}/CMVAE/k_over",
                                                                             reference), digits=0)],
        ["K_hat", f"{_pm(res['k_hat_mean'], res['k_hat_std'], len(res['per_seed']), 1)} ({k_hats})", paper],
        ["true number of classes", str(res["true_k"]), str(res["true_k"])],
    ]))
    others = [r["figure"] for r in res["per_seed"][1:]]
    if others:
        blocks.append(Paragraph("The other seeds' curves: " + ", ".join(f"`{p}`" for p in others) + "."))
    return blocks


COMPARE_COLUMNS = (("unconditional_coherence", "uncond. coherence", 3), ("conditional_coherence", "cond. coherence", 3),
                   ("fd_unconditional", "FD uncond.", 1), ("fd_conditional", "FD cond.", 1))


def _compare(outcome: PartOutcome | None, reference: dict[str, PaperValue] | None) -> list[Block]:
    blocks: list[Block] = [Heading("Figure 1: coherence against generative quality of multimodal VAEs")]
    if outcome is None or not outcome.ok or outcome.result is None:
        return blocks + _missing(outcome, "compare")
    res = outcome.result
    n = len(res["seeds"])
    rows = []
    for label, stats in res["summary"].items():
        cells = [label]
        for key, _, digits in COMPARE_COLUMNS:
            mean, std = stats[key]
            cells += [_pm(mean, std, n, digits), format_paper_value(_ref(f"compare/{DATASET}/{label}/{key}", reference),
                                                                    digits)]
        rows.append(cells)
    header = ["model"] + [h for _, name, _ in COMPARE_COLUMNS for h in (name, f"{name} (paper)")]
    budget = f"{res['epochs']} epoch(s)" + (f" or {res['max_time_minutes']:g} min" if res.get("max_time_minutes") else "")
    blocks.append(Figure(Path(res["figure"]), "Coherence (higher is better) against FD in the coherence "
                                              "classifiers' features (lower is better), per model and seed"))
    blocks.append(Table(header, rows, caption=f"{DATASET}, {res['split']} split ({res['n_eval']} tuples), seeds "
                        f"{', '.join(map(str, res['seeds']))}, each model trained for at most {budget}"))
    acc = ", ".join(f"{a:.3f}" for a in res["classifier_accuracy"])
    blocks.append(Paragraph(f"Coherence classifiers' test accuracy per modality: {acc}; coherence of real test "
                            f"tuples (the ceiling): {res['real_coherence']:.3f}. FD = Frechet distance in those "
                            "classifiers' features, comparable only within this run (not the FID)."))
    return blocks


def _subsets(outcome: PartOutcome | None, reference: dict[str, PaperValue] | None) -> list[Block]:
    blocks: list[Block] = [Heading("Clustering from subsets of the modalities")]
    if outcome is None or not outcome.ok or outcome.result is None:
        return blocks + _missing(outcome, "subsets")
    res = outcome.result

    def cell(row: dict[str, Any], m: str) -> str:
        text = f"{row[m]:.3f}"
        return text + (f" ({row[m + '_min']:.3f}-{row[m + '_max']:.3f})" if row.get("n_subsets", 1) > 1 else "")

    rows = [[f"any {r['k']}", str(r["n_subsets"]), cell(r, "nmi"),
             format_paper_value(_ref(f"subsets/{DATASET}/{r['k']}/nmi", reference)), cell(r, "ari"), cell(r, "acc")]
            for r in res["by_size"]]
    rows += [[f"modality {s['modality']} only", "1", f"{s['nmi']:.3f}", "-", f"{s['ari']:.3f}", f"{s['acc']:.3f}"]
             for s in res["single"]]
    blocks.append(Table(["observed modalities", "subsets", "NMI (min-max)", "NMI (paper)", "ARI (min-max)",
                         "ACC (min-max)"], rows,
                        caption=f"the pruned CMVAE of each seed ({', '.join(map(str, res['seeds']))}), mean over "
                                f"seeds and over the subsets of each size; {res['split']} split ({res['n_eval']} tuples)"))
    blocks.append(Figure(Path(res["figure"]), "NMI/ARI/ACC against the number of observed modalities "
                                              "(band: spread over seeds)"))
    return blocks


def _samples(outcome: PartOutcome | None) -> list[Block]:
    blocks: list[Block] = [Heading("Samples: per cluster and across modalities")]
    if outcome is None or not outcome.ok or outcome.result is None:
        return blocks + _missing(outcome, "samples")
    res = outcome.result
    return blocks + [
        Figure(Path(res["samples"]), f"Unconditional samples of the seed-{res['seed']} model after Algorithm 1: one "
                                     f"row per kept cluster ({res['k_hat']}), {res['per_cluster']} per modality"),
        Figure(Path(res["conditional"]), f"Cross-modal generation: {res['n_conditional']} {res['split']} inputs of "
                                         f"modality {res['source']} (top row) and the other modalities generated "
                                         "from them"),
    ]


def verdicts(by_name: dict[str, PartOutcome], reference: dict[str, PaperValue] | None = None) -> list[str]:
    """The notes that depend on this run's numbers: values below the paper's, where CMVAE stands against
    the best baseline, a K_hat that is not the true number of classes, a Figure 1 without shared
    content, unfinished parts (``by_name``: the parts' outcomes by name)."""
    notes: list[str] = []
    clu = by_name.get("clustering")
    if clu is not None and clu.ok and clu.result:
        summary = clu.result["summary"]
        for r in summary:
            for m in SCORES:
                key = _clustering_key(r, m)
                ref = _ref(key, reference) if key else PaperValue()
                if ref.value is not None and r[f"{m}_mean"] + r[f"{m}_std"] < ref.value:
                    notes.append(f"{r['method']} ({r['setting']}, modality {r['modality']}): {m.upper()} "
                                 f"{r[f'{m}_mean']:.3f} is below the paper's {ref.value:.2f} ({ref.source}); this run's "
                                 "budget is far smaller than the paper's (see Budget).")
        ours = next((r for r in summary if r["method"] == "CMVAE" and "Algorithm 1" in r["setting"]), None)
        others = [r for r in summary if r["method"] != "CMVAE"]
        if ours and others:
            best = max(others, key=lambda r: r["nmi_mean"])
            where = "all modalities" if best["modality"] == "all" else f"modality {best['modality']}"
            verdict = "above" if ours["nmi_mean"] > best["nmi_mean"] else "below"
            notes.append(f"Here CMVAE after Algorithm 1 (NMI {ours['nmi_mean']:.3f}) is {verdict} the best baseline, "
                         f"{best['method']} ({best['setting']}, {where}: NMI {best['nmi_mean']:.3f}).")
    sel = by_name.get("selection")
    if sel is not None and sel.ok and sel.result:
        res = sel.result
        off = [r for r in res["per_seed"] if r["k_hat"] != res["true_k"]]
        if off:
            notes.append("Algorithm 1 did not recover the true number of classes (" + str(res["true_k"]) + ") for seed(s) "
                         + ", ".join(f"{r['seed']} (K_hat = {r['k_hat']})" for r in off)
                         + "; its entropy minimum follows how well the trained latent separates the classes.")
    cmp_ = by_name.get("compare")
    if cmp_ is not None and cmp_.ok and cmp_.result and by_name.get("cmvae") and by_name["cmvae"].result:
        chance = 1.0 / by_name["cmvae"].result["true_k"]
        cond = [stats["conditional_coherence"][0] for stats in cmp_.result["summary"].values()]
        if cond and max(cond) < 2 * chance:
            notes.append(f"Conditional coherence is below twice chance ({chance:.2f}) for every model in Figure 1: at "
                         "this budget no model has learned the shared content, so the ranking there says nothing "
                         "about the paper's claim.")
    unfinished = [o for o in by_name.values() if not o.ok]
    if unfinished:
        notes.append("Not finished: " + ", ".join(f"`{o.name}` ({o.status})" for o in unfinished)
                     + ". Rerun the same command: finished parts are reused.")
    return notes


def _notes(info: RunInfo, by_name: dict[str, PartOutcome], reference: dict[str, PaperValue] | None) -> list[Block]:
    general = [f"Budget: {info.budget.get('summary')} The paper: {info.budget.get('paper')} Numbers at a smaller "
               "budget are expected to be lower; they test that the pipeline runs, and the paper's claims only as far "
               "as the budget allows.", SEARCHED[0].upper() + SEARCHED[1:] + "."]
    return [Heading("Notes"), Bullets(general + verdicts(by_name, reference))]


def _machine(info: RunInfo) -> list[Block]:
    m = info.machine
    rows = [["CPU", f"{m.get('cpu')} ({m.get('cpu_cores')} logical cores, {m.get('cpu_cores_usable')} usable)"],
            ["torch threads", f"{m.get('torch_threads')} (OMP_NUM_THREADS={m.get('omp_num_threads')})"],
            ["GPU", ", ".join(m.get("gpus") or []) or "none"],
            ["OS, Python", f"{m.get('os')}, Python {m.get('python')}"]]
    rows += [[name, version] for name, version in info.versions.items()]
    return [Heading("Machine and package versions"), Table(["", ""], rows)]


def build_report(info: RunInfo, outcomes: list[PartOutcome],
                 reference: dict[str, PaperValue] | None = None) -> list[Block]:
    """The report's blocks (``reference``: the paper's values, default :data:`cmvae.reproduce.paper.REFERENCE`)."""
    by_name = {o.name: o for o in outcomes}
    return (_header(info, outcomes) + _budget(info, outcomes) + _parts(outcomes)
            + _clustering(by_name.get("clustering"), by_name.get("cmvae"), reference)
            + _selection(by_name.get("selection"), reference)
            + _compare(by_name.get("compare"), reference)
            + _subsets(by_name.get("subsets"), reference)
            + _samples(by_name.get("samples"))
            + _notes(info, by_name, reference) + _machine(info))


def write_report(out: Path, info: RunInfo, outcomes: list[PartOutcome],
                 reference: dict[str, PaperValue] | None = None) -> tuple[Path, Path]:
    """Write ``out/report.md`` and the self-contained ``out/report.html``; return both paths."""
    blocks = build_report(info, outcomes, reference)
    md = write_atomic(out / "report.md", to_markdown(blocks))
    page = write_atomic(out / "report.html", to_html(blocks, out, f"cmvae reproduce: {info.scale}"))
    return md, page


def now() -> str:
    """The local time, ISO 8601 to the second (for :attr:`RunInfo.started`)."""
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")

