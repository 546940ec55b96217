"""Captions as fixed-length token id sequences: the tokeniser and the :class:`Vocabulary`.

Conventions (those of the CUBICC release, see docs in :mod:`cmvae.data.cubicc`):

* Tokeniser (:func:`tokenize`): lower-case, then words are runs of letters/digits (an
  apostrophe suffix such as ``'s`` stays attached) and every other non-space character is
  a token of its own: ``"This bird's beak, short." -> ["this", "bird's", "beak", ",",
  "short", "."]``. The release used NLTK's ``word_tokenize``; the two agree on ordinary
  caption text and differ only on rare edge cases (NLTK splits ``bird's`` into ``bird``
  ``'s``). No NLTK dependency is needed.
* Special tokens with fixed ids: ``<pad>`` = 0, ``<eos>`` = 1, ``<exc>`` = 2 (the
  release's name for an out-of-vocabulary word). Words follow, most frequent first
  (ties in alphabetical order), so a vocabulary is deterministic.
* A sequence of ``max_len`` ids holds at most ``max_len - 1`` words, then ``<eos>``, then
  ``<pad>`` up to ``max_len``; longer captions are truncated, so every sequence has one
  ``<eos>``.
* :meth:`Vocabulary.decode` stops at the first ``<eos>`` and drops ``<pad>`` tokens.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["PAD", "EOS", "UNK", "SPECIAL_TOKENS", "tokenize", "Vocabulary"]

PAD = "<pad>"
EOS = "<eos>"
UNK = "<exc>"
SPECIAL_TOKENS = (PAD, EOS, UNK)

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def tokenize(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens of ``text`` (see the module docstring)."""
    return _TOKEN.findall(text.lower())


@dataclass
class Vocabulary:
    """Token <-> id mapping for fixed-length sequences; ``tokens[i]`` is the token of id ``i``.

    The first three tokens are ``<pad>``, ``<eos>``, ``<exc>`` (ids 0, 1, 2).
    """

    tokens: list[str]
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.tokens = [str(t) for t in self.tokens]
        if tuple(self.tokens[:3]) != SPECIAL_TOKENS:
            raise ValueError(f"a vocabulary starts with {list(SPECIAL_TOKENS)}, got {self.tokens[:3]}")
        self._index = {t: i for i, t in enumerate(self.tokens)}
        if len(self._index) != len(self.tokens):
            dupes = sorted(t for t, c in Counter(self.tokens).items() if c > 1)
            raise ValueError(f"vocabulary has repeated tokens: {dupes[:10]}")

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 3) -> "Vocabulary":
        """Vocabulary of the words seen at least ``min_count`` times in ``texts`` (plus the specials)."""
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        counts = Counter(tok for text in texts for tok in tokenize(text))
        words = sorted((w for w, c in counts.items() if c >= min_count and w not in SPECIAL_TOKENS),
                       key=lambda w: (-counts[w], w))
        return cls([*SPECIAL_TOKENS, *words])

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def eos_id(self) -> int:
        return 1

    @property
    def unk_id(self) -> int:
        return 2

    def id_of(self, token: str) -> int:
        """Id of ``token`` (``<exc>``'s id for unknown tokens)."""
        return self._index.get(token, self.unk_id)

    def encode(self, text: str, max_len: int = 32) -> np.ndarray:
        """int64 ``[max_len]``: up to ``max_len - 1`` word ids, ``<eos>``, then ``<pad>``."""
        if max_len < 2:
            raise ValueError(f"max_len must be >= 2 (at least one word and <eos>), got {max_len}")
        ids = [self.id_of(t) for t in tokenize(text)[: max_len - 1]] + [self.eos_id]
        out = np.full(max_len, self.pad_id, dtype=np.int64)
        out[: len(ids)] = ids
        return out

    def encode_batch(self, texts: Sequence[str], max_len: int = 32) -> np.ndarray:
        """int64 ``[N, max_len]`` (see :meth:`encode`)."""
        out = np.full((len(texts), max_len), self.pad_id, dtype=np.int64)
        for i, text in enumerate(texts):
            out[i] = self.encode(text, max_len)
        return out

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The words of one sequence ``[L]``, space-separated, up to the first ``<eos>`` (pads dropped)."""
        words = []
        for i in np.asarray(ids).reshape(-1).tolist():
            i = int(i)
            if not 0 <= i < len(self.tokens):
                raise ValueError(f"token id {i} is outside the vocabulary (0..{len(self.tokens) - 1})")
            if i == self.eos_id:
                break
            if i != self.pad_id:
                words.append(self.tokens[i])
        return " ".join(words)

    def decode_batch(self, ids: np.ndarray | Any) -> list[str]:
        """One string per row of ``ids`` ``[N, L]``."""
        arr = np.asarray(ids)
        if arr.ndim != 2:
            raise ValueError(f"expected token ids [N, L], got shape {list(arr.shape)}")
        return [self.decode(row) for row in arr]

    def to_dict(self) -> dict[str, Any]:
        return {"tokens": list(self.tokens)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Vocabulary":
        return cls(list(d["tokens"]))
