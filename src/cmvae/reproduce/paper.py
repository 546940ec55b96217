"""The paper's reference values that a reproduction report sets beside ours.

Every value carries its source (where in the paper, or the page it was read from). A value
that could not be found with a source stays ``None`` and the report prints
:data:`NOT_STATED`: a number is never filled in from memory.

Searched for this release (2026): the stored public pages and documentation (queries on the
paper's title, its OpenReview id ``k5THrhXDV3``, "CMVAE PolyMNIST NMI ARI", "VaDE DeepCluster
CMC multimodal clustering table"). Found: the authors' code README and MultiVae's CMVAE page,
neither of which states the paper's result numbers. So every entry below is still ``None``;
add a value only together with its ``source`` (e.g. ``"Table 1, openreview.net/pdf?id=k5THrhXDV3"``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["NOT_STATED", "PaperValue", "REFERENCE", "SEARCHED", "paper_value", "format_paper_value"]

#: What the report prints where no value of the paper was found with a source.
NOT_STATED = "not stated here"

#: What was searched, printed in the report's notes.
SEARCHED = ("the paper's values were looked up in the stored public pages and documentation (title, "
            "OpenReview id k5THrhXDV3, result-table keywords); no page stating them was found, so every "
            f"paper column reads \"{NOT_STATED}\" instead of a number from memory")


@dataclass(frozen=True)
class PaperValue:
    """One number of the paper: ``value`` (None = not found) and where it was read (``source``)."""

    value: float | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        if self.value is not None and not self.source:
            raise ValueError("a paper value needs its source (table/figure and the page it was read from)")


#: Keys: ``"<table>/<dataset>/<method>/<metric>"``, e.g. ``"clustering/PolyMNIST/CMVAE/nmi"``,
#: ``"selection/PolyMNIST/CMVAE/k_hat"``, ``"compare/PolyMNIST/<model label>/conditional_coherence"``,
#: ``"subsets/PolyMNIST/<k observed>/nmi"``. A key that is absent means the same as ``PaperValue()``.
REFERENCE: dict[str, PaperValue] = {
    "clustering/PolyMNIST/CMVAE/nmi": PaperValue(),
    "clustering/PolyMNIST/CMVAE/ari": PaperValue(),
    "clustering/PolyMNIST/CMVAE/acc": PaperValue(),
    "selection/PolyMNIST/CMVAE/k_hat": PaperValue(),
}


def paper_value(key: str, reference: dict[str, PaperValue] | None = None) -> PaperValue:
    """The paper's value for ``key`` (``PaperValue()`` when it is not known with a source)."""
    table = REFERENCE if reference is None else reference
    return table.get(key, PaperValue())


def format_paper_value(value: PaperValue, digits: int = 2) -> str:
    """``"0.89"`` (the paper's precision is unknown here: ``digits``) or :data:`NOT_STATED`."""
    if value.value is None:
        return NOT_STATED
    return f"{value.value:.{digits}f}"
