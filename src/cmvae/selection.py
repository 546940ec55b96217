"""Cluster assignment by majority vote, and post-hoc selection of the number of clusters."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch


def majority_vote(log_posteriors: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Assign each datapoint by majority vote over modalities.

    ``log_posteriors``: log p(c | z_m) ``[M, N, C]``. Each modality votes for its argmax
    cluster; the cluster with the most votes wins. Tie rule: among the clusters with the
    most votes, the one with the largest posterior probability summed over modalities
    wins (then the lowest id). ``mask`` ``[N, M]`` (True = observed): only observed
    modalities vote and count in the tie rule (unobserved entries may hold NaN).
    Returns ``[N]`` (int64).
    """
    if log_posteriors.dim() != 3:
        raise ValueError(f"expected log-posteriors [M, N, C], got shape {list(log_posteriors.shape)}")
    if mask is not None:
        if tuple(mask.shape) != tuple(log_posteriors.shape[1::-1]):
            raise ValueError(f"mask must be [N, M] = {list(log_posteriors.shape[1::-1])}, got {list(mask.shape)}")
        log_posteriors = log_posteriors.masked_fill(~mask.t().unsqueeze(-1), float("-inf"))
    n_clusters = log_posteriors.shape[-1]
    votes = torch.nn.functional.one_hot(log_posteriors.argmax(-1), n_clusters)  # [M, N, C]
    if mask is not None:
        votes = votes * mask.t().unsqueeze(-1)
    votes = votes.sum(0)  # [N, C]
    mass = log_posteriors.exp().sum(0)  # [N, C], in [0, M]
    # votes are integers and mass < M + 1, so this orders by votes first, then by mass.
    key = votes.to(mass.dtype) * (log_posteriors.shape[0] + 1) + mass
    return key.argmax(-1)


def combined_evidence(
    log_posteriors: torch.Tensor, log_pi: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """The modalities' cluster posteriors combined as independent evidence about one cluster:
    log q(c | X) = log pi_c + sum_m [log p(c | z_m) - log pi_c] + const, normalised over c.

    ``log_posteriors`` ``[M, N, C]``, ``log_pi`` ``[C]`` (``-inf`` for pruned clusters, which keep
    probability 0), ``mask`` ``[N, M]`` (True = observed; unobserved entries may hold NaN and are
    left out). Returns ``[N, C]`` log-probabilities. Unlike a majority vote, a confident modality
    outweighs unsure ones, and every modality's evidence counts (see benchmarks/RESULTS.md).
    """
    if log_posteriors.dim() != 3:
        raise ValueError(f"expected log-posteriors [M, N, C], got shape {list(log_posteriors.shape)}")
    active = torch.isfinite(log_pi)
    pi = torch.where(active, log_pi, torch.zeros_like(log_pi))
    evidence = log_posteriors - pi  # [M, N, C]: log p(z_m | c) - log p(z_m)
    if mask is not None:
        evidence = evidence.masked_fill(~mask.t().unsqueeze(-1), 0.0)
    evidence = torch.where(active, evidence, torch.zeros_like(evidence))
    joint = (evidence.sum(0) + pi).masked_fill(~active, float("-inf"))  # [N, C]
    return joint - torch.logsumexp(joint, dim=-1, keepdim=True)


AssignmentRule = Literal["evidence", "vote"]


def assign_clusters(
    log_posteriors: torch.Tensor, log_pi: torch.Tensor, mask: torch.Tensor | None = None,
    rule: AssignmentRule = "evidence",
) -> torch.Tensor:
    """Cluster ids ``[N]`` from the modalities' log p(c | z_m) ``[M, N, C]``: ``"evidence"``, the
    argmax of :func:`combined_evidence`; ``"vote"``, the paper's :func:`majority_vote`."""
    if rule == "vote":
        return majority_vote(log_posteriors, mask)
    if rule == "evidence":
        return combined_evidence(log_posteriors, log_pi, mask).argmax(-1)
    raise ValueError(f"assignment must be 'evidence' or 'vote', got {rule!r}")


# ----------------------------------------------------------------------------------------
# Post-hoc selection of the number of clusters (Algorithm 1 of the CMVAE paper)
# ----------------------------------------------------------------------------------------

SelectionCriterion = Literal["entropy", "entropy_loglik"]

#: Algorithm 1's tie rule, widened to the score's sampling noise: a k whose mean score lies within this many
#: paired standard errors of the lowest counts as tied with it, and ties go to the larger k (see select_clusters).
DEFAULT_TIE_TOLERANCE = 2.0


@dataclass
class SelectionStep:
    """What was measured with ``k`` active clusters."""

    k: int
    entropy: float
    score: float
    active: list[int]
    removed: int | None
    counts: dict[int, int]
    nmi: float | None = None
    ari: float | None = None
    #: The mean score's distance above the lowest one, in standard errors of the paired difference.
    se_above_min: float = 0.0


@dataclass
class SelectionResult:
    """Outcome of :func:`select_clusters`.

    ``n_clusters``: the chosen K_hat; ``entropy``: {k: h_k} for every k visited;
    ``kept``: ids of the clusters kept at K_hat; ``steps``: the full trace.
    """

    n_clusters: int
    entropy: dict[int, float]
    kept: list[int]
    criterion: str
    scores: dict[int, float]
    steps: list[SelectionStep] = field(default_factory=list)
    #: How points were assigned to clusters while pruning (``"vote"``: the paper; ``"evidence"``).
    assignment: str = "vote"
    #: Fingerprint of the model's cluster prior the result was computed on (set by
    #: :meth:`cmvae.CMVAE.select_clusters`; ``apply_selection`` refuses a result of another model).
    model_fingerprint: str | None = None
    #: The k of the lowest score (the paper's K_hat when ``tie_tolerance`` is 0).
    minimum_k: int | None = None
    #: Scores within this many paired standard errors of the lowest count as ties (the larger k wins).
    tie_tolerance: float = 0.0

    @property
    def nmi(self) -> dict[int, float]:
        return {s.k: s.nmi for s in self.steps if s.nmi is not None}

    @property
    def ari(self) -> dict[int, float]:
        return {s.k: s.ari for s in self.steps if s.ari is not None}

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_clusters": self.n_clusters,
            "kept": self.kept,
            "criterion": self.criterion,
            "assignment": self.assignment,
            "minimum_k": self.minimum_k,
            "tie_tolerance": self.tie_tolerance,
            "steps": [asdict(s) for s in self.steps],
        }


def _log_posterior_restricted(log_lik: torch.Tensor, log_pi: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """log p(c | z) over the active clusters only: ``[M, N, C_all] -> [M, N, k]``."""
    joint = log_lik[..., active] + log_pi[active]
    return joint - torch.logsumexp(joint, dim=-1, keepdim=True)


def normalised_entropies(log_post: torch.Tensor) -> torch.Tensor:
    """Each point's modality-averaged H(p(c|z_m)) / log k ``[N]`` for ``[M, N, k]`` log-posteriors."""
    k = log_post.shape[-1]
    if k < 2:
        raise ValueError("normalised entropy needs at least 2 active clusters")
    entropy = -(log_post.exp() * log_post).nan_to_num(0.0).sum(-1) / math.log(k)  # [M, N]
    return entropy.mean(0)


def mean_normalised_entropy(log_post: torch.Tensor) -> float:
    """Mean over data of the modality-averaged H(p(c|z_m)) / log k for ``[M, N, k]`` log-posteriors."""
    return float(normalised_entropies(log_post).mean())


def paired_standard_errors(point_scores: dict[int, torch.Tensor], best: int) -> dict[int, float]:
    """How far each k's mean score lies above k = ``best``'s, in standard errors of the paired difference:
    ``{k: mean(s_k - s_best) / (std(s_k - s_best) / sqrt(N))}`` for per-point scores ``{k: [N]}``
    (0 where the two agree on every point, ``inf`` where they differ by the same amount on every point)."""
    out: dict[int, float] = {}
    for k, scores in point_scores.items():
        diff = (scores - point_scores[best]).double()
        mean = float(diff.mean())
        se = float(diff.std()) / math.sqrt(diff.numel()) if diff.numel() > 1 else 0.0
        out[k] = mean / se if se > 0 else (0.0 if mean <= 0 else math.inf)
    return out


def select_clusters(
    log_lik: torch.Tensor,
    log_pi: torch.Tensor,
    *,
    criterion: SelectionCriterion = "entropy",
    assignment: AssignmentRule = "vote",
    beta: float = 1.0,
    dim_z: int = 1,
    labels: np.ndarray | None = None,
    eval_log_lik: torch.Tensor | None = None,
    eval_labels: np.ndarray | None = None,
    min_k: int = 2,
    tie_tolerance: float = DEFAULT_TIE_TOLERANCE,
    progress: Callable[[int], None] | None = None,
) -> SelectionResult:
    """Algorithm 1: prune the cluster with the fewest points, one at a time, and pick the k
    with the lowest score.

    ``log_lik``: log p(z_m | c) for each modality's latent and every cluster ``[M, N, C]``;
    ``log_pi``: current log prior weights ``[C]`` (-inf for clusters already pruned).
    At each k (from the number of active clusters down to ``min_k``) the posterior over
    the active clusters is computed with pi renormalised over them, each point is assigned
    by ``assignment`` (:func:`assign_clusters`: ``"vote"``, the paper's majority vote, or
    ``"evidence"``, the combined evidence that a model with that rule predicts with), and
    h_k = mean over points of the modality-averaged normalised entropy H(p(c|z_m)) / log k is
    recorded. The active cluster with the fewest assigned points is then dropped (ties: smaller
    pi, then lower id); NMI/ARI at each k use the same assignment.

    Scores: ``"entropy"`` -> h_k (the paper); ``"entropy_loglik"`` -> beta * h_k - mean log p(z) / dim_z
    (the authors' released code, with log p(z) = sum_c q(c|z)[log p(z|c) + log pi_c - log q(c|z)],
    ``dim_z`` the shared latent size).
    K_hat: the paper takes the argmin over k of the score, ties going to the larger k. Here a tie is
    a score not significantly above the minimum: K_hat = the largest k whose mean score lies within
    ``tie_tolerance`` standard errors of the minimum's (the paired difference over the same points;
    ``tie_tolerance=0``: the paper's exact argmin). With labels, NMI/ARI at each k are computed on
    ``eval_log_lik``/``eval_labels`` when given, else on the selection data.
    """
    from .metrics import clustering_scores

    if criterion not in ("entropy", "entropy_loglik"):
        raise ValueError(f"criterion must be 'entropy' or 'entropy_loglik', got {criterion!r}")
    if log_lik.dim() != 3 or log_lik.shape[-1] != log_pi.shape[0]:
        raise ValueError(f"log_lik must be [M, N, C] with C = {log_pi.shape[0]}, got {list(log_lik.shape)}")
    active = torch.isfinite(log_pi)
    if isinstance(tie_tolerance, bool) or not isinstance(tie_tolerance, (int, float)) or not tie_tolerance >= 0 \
            or not math.isfinite(tie_tolerance):
        raise ValueError(f"tie_tolerance must be a finite number >= 0 (standard errors), got {tie_tolerance!r}")
    if int(active.sum()) < min_k:
        raise ValueError(f"need at least {min_k} active clusters to select from, have {int(active.sum())}")
    if eval_log_lik is None and labels is not None:
        eval_log_lik, eval_labels = log_lik, labels
    pi = log_pi.exp().clone()
    steps: list[SelectionStep] = []
    point_scores: dict[int, torch.Tensor] = {}  # {k: [N]} each point's score, for the tie rule
    while True:
        ids = torch.nonzero(active).flatten()
        k = int(ids.numel())
        log_pi_k = torch.full_like(log_pi, float("-inf"))
        log_pi_k[ids] = torch.log(pi[ids] / pi[ids].sum())
        log_post = _log_posterior_restricted(log_lik, log_pi_k, ids)  # [M, N, k]
        point_entropy = normalised_entropies(log_post)  # [N]
        entropy = float(point_entropy.mean())
        if criterion == "entropy":
            point_scores[k] = point_entropy
        else:
            log_pz = torch.logsumexp(log_lik[..., ids] + log_pi_k[ids], dim=-1)  # [M, N]
            point_scores[k] = beta * point_entropy - log_pz.mean(0) / dim_z
        score = float(point_scores[k].mean())
        assign = ids[assign_clusters(log_post, log_pi_k[ids], rule=assignment)]  # [N] original cluster ids
        counts = torch.bincount(assign, minlength=log_pi.shape[0])
        step = SelectionStep(
            k=k, entropy=entropy, score=score, active=ids.tolist(), removed=None,
            counts={int(c): int(counts[c]) for c in ids},
        )
        if eval_log_lik is not None and eval_labels is not None:
            eval_post = _log_posterior_restricted(eval_log_lik, log_pi_k, ids)
            eval_assign = assign_clusters(eval_post, log_pi_k[ids], rule=assignment)
            scores = clustering_scores(np.asarray(eval_labels), ids[eval_assign].numpy())
            step.nmi, step.ari = float(scores["nmi"]), float(scores["ari"])
        steps.append(step)
        if progress is not None:
            progress(k)
        if k <= min_k:
            break
        # fewest assigned points; ties -> smaller pi, then lower id
        order = sorted(ids.tolist(), key=lambda c: (int(counts[c]), float(pi[c]), c))
        step.removed = order[0]
        active[order[0]] = False
    minimum = min(steps, key=lambda s: (s.score, -s.k))
    above = paired_standard_errors(point_scores, minimum.k)
    for s in steps:
        s.se_above_min = above[s.k]
    best = max((s for s in steps if above[s.k] <= tie_tolerance), key=lambda s: s.k)
    return SelectionResult(
        n_clusters=best.k,
        entropy={s.k: s.entropy for s in steps},
        kept=best.active,
        criterion=criterion,
        scores={s.k: s.score for s in steps},
        assignment=assignment,
        steps=steps,
        minimum_k=minimum.k,
        tie_tolerance=float(tie_tolerance),
    )

