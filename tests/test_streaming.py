"""Data read on demand is streamed: ``fit`` (its checks, its batches, the k-means placement) and
``predict``/``transform``/``select_clusters`` never read more than a batch or a chunk of rows at once,
never call a decoder, and give exactly what the same data in memory gives.

A float view is read twice by each of them: :func:`cmvae.schema.as_views` checks it for NaN/inf
chunk by chunk, then it is encoded batch by batch (uint8 images need no check)."""

from __future__ import annotations

import inspect

import numpy as np
import torch

from cmvae import CMVAE, callbacks, schema
from cmvae.lazyrows import LazyRows

N = 3000
BATCH = 128
KW = dict(n_clusters=3, shared_dim=4, private_dim=2, epochs=2, batch_size=BATCH, cluster_init_epoch=1,
          accelerator="cpu", progress=False, seed=0)


class CountingRows(LazyRows):
    """An in-memory array ``[N, D]`` served on demand; every read appends its number of rows to ``log``."""

    def __init__(self, x: np.ndarray, log: list[int]) -> None:
        self.x = torch.from_numpy(x)
        self.shape, self.dtype = self.x.shape, self.x.dtype
        self.log = log

    def read(self, indices: np.ndarray) -> torch.Tensor:
        self.log.append(len(indices))
        return self.x[torch.from_numpy(indices)]


def blobs(n: int = N, dims=(10, 6), seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    return [(rng.normal(0, 3, (3, d))[labels] + rng.normal(0, 1, (n, d))).astype(np.float32) for d in dims]


def test_fit_placement_and_inference_read_a_batch_at_a_time_and_match_in_memory(monkeypatch):
    monkeypatch.setattr(callbacks, "KMEANS_MAX_POINTS", 2000)  # N above it: the placement encodes a sample
    monkeypatch.setattr(schema, "CHUNK_ROWS", 700)  # the NaN check and standardisation: several chunks
    arrays = blobs()
    log: list[int] = []
    lazy = [CountingRows(x, log) for x in arrays]
    placement: list[list[int]] = []
    mixture_means = callbacks._mixture_means

    def spy(*args, **kwargs):
        start = len(log)
        out = mixture_means(*args, **kwargs)
        placement.append(log[start:])
        return out

    monkeypatch.setattr(callbacks, "_mixture_means", spy)
    model = CMVAE(**KW).fit(lazy)
    reference = CMVAE(**KW).fit(arrays)
    assert max(log) <= callbacks.ENCODE_ROWS < N  # batches of 128, chunks of 700, placement batches of 1,024
    (reads,) = placement[:1]
    assert sum(reads) == 2 * 2000 and max(reads) <= callbacks.ENCODE_ROWS  # the bounded sample, in batches

    calls = []
    hooks = [d.register_forward_hook(lambda *_: calls.append(1)) for d in model.module_.decoders]
    inference_batch = inspect.signature(CMVAE.encode).parameters["batch_size"].default
    for method in (model.predict, model.transform, model.select_clusters):
        log.clear()
        method(lazy)
        # two passes over every row: the NaN/inf check (chunks of CHUNK_ROWS), then the encoding (batches)
        assert sum(log) == 2 * 2 * N and max(log) <= max(inference_batch, schema.CHUNK_ROWS) < N
    assert not calls  # nothing decoded: only latent-sized outputs are held
    for hook in hooks:
        hook.remove()

    np.testing.assert_array_equal(model.predict(lazy), reference.predict(arrays))
    np.testing.assert_array_equal(model.transform(lazy), reference.transform(arrays))
    assert model.select_clusters(lazy).entropy == reference.select_clusters(arrays).entropy


def test_cluster_scores_of_a_whole_data_set_are_computed_in_blocks_of_rows(monkeypatch):
    from cmvae import priors

    prior = priors.ClusterPrior(4, 3, "laplace")
    loc, scale = torch.randn(2, 50, 3), torch.rand(2, 50, 3) + 0.1
    whole = (prior.expected_log_posterior(loc, scale, 5), prior.expected_log_posterior(loc, scale, 0),
             prior.log_likelihoods(loc))
    seen = []
    log_posterior = prior.log_posterior
    monkeypatch.setattr(prior, "log_posterior", lambda z: seen.append(z.shape[0]) or log_posterior(z))
    monkeypatch.setattr(priors, "SCORE_ROWS", 7)
    blocks = (prior.expected_log_posterior(loc, scale, 5), prior.expected_log_posterior(loc, scale, 0),
              prior.log_likelihoods(loc))
    assert max(seen) == 7 and sum(seen) == 6 * 100  # 5 draws + the mean, 100 rows each, 7 at a time
    for a, b in zip(whole, blocks):  # the same per-row arithmetic, up to the rounding of vectorised loops
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
