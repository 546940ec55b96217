"""``cluster_init_when="plateau"``: rows held out of the gradient steps, the components placed when their
bound stops rising (with the weights of its best epoch), and training ending at the best epoch after that."""
from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch

from cmvae import CMVAE, DataValidationError
from cmvae.callbacks import HeldOutBound, KMeansPriorInit
from cmvae.training import ViewsDataset

from test_estimator import FAST, make_data


def test_views_dataset_serves_only_its_rows():
    views = [torch.arange(10).float().unsqueeze(1), torch.arange(10, 20).float().unsqueeze(1)]
    dataset = ViewsDataset(views, rows=torch.tensor([1, 4, 7]))
    assert len(dataset) == 3
    first, second = dataset.__getitems__([0, 2])
    assert first.squeeze(1).tolist() == [1.0, 7.0] and second.squeeze(1).tolist() == [11.0, 17.0]
    assert dataset[1][0].item() == 4.0


def test_held_out_rows_are_a_seeded_tenth_and_only_for_plateau():
    model = CMVAE(**{**FAST, "cluster_init_when": "plateau"})
    rows = model._held_out_rows(300)
    assert rows is not None and rows.shape == (30,)
    assert torch.equal(rows, rows.sort().values) and rows.unique().shape == (30,)
    assert torch.equal(rows, CMVAE(**{**FAST, "cluster_init_when": "plateau"})._held_out_rows(300))
    assert not torch.equal(rows, CMVAE(**{**FAST, "cluster_init_when": "plateau", "seed": 1})._held_out_rows(300))
    assert CMVAE(**FAST)._held_out_rows(300) is None
    with pytest.raises(DataValidationError, match="cluster_init_when='plateau' holds out 1 of the 3"):
        CMVAE(**{**FAST, "cluster_init_when": "plateau"})._held_out_rows(3)


def test_training_steps_skip_the_held_out_rows():
    views, _ = make_data(200)
    seen: list[int] = []

    class CountRows(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.current_epoch == 0:
                seen.append(int(batch[0].shape[0]))

    CMVAE(epochs=2, **{**FAST, "cluster_init_when": "plateau"}).fit(views, callbacks=[CountRows()])
    assert sum(seen) == 200 - 20


def _network_weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items() if k.startswith(("encoders", "decoders"))}


def _scripted_fit(values: list[float], epochs: int = 12, deadline: int = 10, **settings):
    """Fit with ``when="plateau"`` and the held-out bound of epoch e scripted as ``values[e]``; returns the
    estimator, the callback and the networks' weights seen at each evaluation."""
    views, _ = make_data(200)
    snapshots: list[dict[str, torch.Tensor]] = []

    def scripted(self, plan):
        snapshots.append(_network_weights(plan.module))
        return values[len(snapshots) - 1]

    seen: dict = {"after_epoch": []}

    class Grab(L.Callback):  # runs after the placement callback
        def on_train_epoch_end(self, trainer, pl_module):
            seen["after_epoch"].append(_network_weights(pl_module.module))

        def on_train_end(self, trainer, pl_module):
            seen["callback"] = next(cb for cb in trainer.callbacks if isinstance(cb, KMeansPriorInit))

    original = HeldOutBound.evaluate
    HeldOutBound.evaluate = scripted  # type: ignore[method-assign]
    try:
        model = CMVAE(epochs=epochs, **{**FAST, "cluster_init_epoch": deadline, "cluster_init_when": "plateau",
                                        "contrastive_warmup_epochs": 0, **settings})  # the script counts every epoch
        model.fit(views, callbacks=[Grab()])
    finally:
        HeldOutBound.evaluate = original  # type: ignore[method-assign]
    return model, seen["callback"], snapshots, seen["after_epoch"]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_placement_when_the_held_out_bound_stalls_with_the_best_weights_and_the_end_at_the_best_epoch():
    # best at epoch 5 (index 4), lower at 6, 7 and 8 (PATIENCE 3): placed after epoch 8 with epoch 5's weights;
    # after the placement the best is epoch 10 (index 9): training ends with its weights
    assert KMeansPriorInit.PATIENCE == 3
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 4.5, 4.6, 4.7, 10.0, 12.0, 11.0, 9.0]
    model, callback, snapshots, after_epoch = _scripted_fit(values)
    assert len(callback.placements) == 1  # 20 held-out rows: too few to place the components again at the end
    assert callback.placements[0].startswith("after 8 epochs") and "weights of epoch 5" in callback.placements[0]
    assert not _same(snapshots[4], snapshots[7])  # training moved the weights after epoch 5 ...
    assert _same(after_epoch[7], snapshots[4])  # ... and the placement put epoch 5's back
    assert _same(after_epoch[4], snapshots[4]) and not _same(after_epoch[8], snapshots[4])
    final = _network_weights(model.module_)
    assert _same(final, snapshots[9]) and not _same(final, snapshots[11])  # ... and the end is epoch 10's
    means = model.module_.prior.means.detach()
    assert means.abs().sum() > 0  # the components were placed (they start at 0)


@pytest.mark.parametrize("early_stopping", [True, False])
def test_early_stopping_ends_training_once_the_bound_stalls_after_the_placement(early_stopping):
    # placed after epoch 8 (best at 5); after it the best is epoch 9 (index 8), lower at 10, 11 and 12 (PATIENCE 3):
    # with early stopping training stops after epoch 12 of 16, without it trains all 16; both end with epoch 9's
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 4.5, 4.6, 4.7, 10.0, 9.0, 9.5, 9.8, 11.0, 12.0, 13.0, 14.0]
    model, callback, snapshots, after_epoch = _scripted_fit(values, epochs=16, deadline=12,
                                                            early_stopping=early_stopping)
    assert callback.placements[0].startswith("after 8 epochs")
    assert len(model.history_["epoch"]) == (12 if early_stopping else 16)
    assert len(snapshots) == (12 if early_stopping else 16)
    final = _network_weights(model.module_)
    assert _same(final, snapshots[8] if early_stopping else snapshots[15])  # without: epoch 16 rose above 9's
    assert model.get_params()["early_stopping"] is early_stopping


def test_no_placement_on_a_stall_before_half_the_deadline_and_the_deadline_still_holds():
    # a stall at epochs 2-4 (before half of the deadline, 10 of 12 epochs) is ignored; rising after: the deadline
    values = [1.0, 0.5, 0.6, 0.7, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    model, callback, snapshots, after_epoch = _scripted_fit(values)
    assert len(callback.placements) == 1 and callback.placements[0].startswith("after 10 epochs")
    assert "the deadline" in callback.placements[0] and "weights of epoch" not in callback.placements[0]
    assert _same(after_epoch[3], snapshots[3])  # nothing put back at the stall
    assert _same(_network_weights(model.module_), snapshots[11])  # still rising at the end: the last weights
    assert np.isfinite(model.predict_proba(make_data(20)[0])).all()


def test_after_a_contrastive_warm_up_a_stall_places_before_half_the_deadline():
    # 2 warm-up epochs (no bound tracked in them), then the script: best at epoch 3 (index 0), lower at 4, 5 and 6;
    # half of the deadline would be 7 of 16 epochs, but the warm-up has trained the codes: placed after epoch 6
    values = [1.0, 0.5, 0.6, 0.7] + [2.0 + e for e in range(12)]
    model, callback, snapshots, after_epoch = _scripted_fit(values, epochs=16, deadline=14, early_stopping=False,
                                                            contrastive_warmup_epochs=2, warmup_freeze_epochs=0)
    assert model.warmup_epochs_ == (2, 0)
    assert callback.placements[0].startswith("after 6 epochs") and "weights of epoch 3" in callback.placements[0]
    assert _same(after_epoch[5], snapshots[0])  # epoch 3's weights put back at the placement
    # the same script without the warm-up waits for the floor and then for the deadline: the bound rises after 6
    _, without, _, _ = _scripted_fit(values, epochs=16, deadline=14, early_stopping=False)
    assert without.placements[0].startswith("after 14 epochs") and "the deadline" in without.placements[0]


def test_held_out_bound_is_reproducible_and_leaves_the_random_state_alone():
    views, _ = make_data(120)
    model = CMVAE(epochs=1, **{**FAST, "cluster_init_when": "plateau"}).fit(views)
    from cmvae.training import TrainingPlan

    plan = TrainingPlan(model.module_, model.schema_, beta=model.beta)
    tensors = [torch.as_tensor(v) for v in views]
    bound = HeldOutBound(tensors, torch.arange(0, 120, 3), seed=4)
    torch.manual_seed(0)
    expected_next = torch.rand(1)
    torch.manual_seed(0)
    first, second = bound.evaluate(plan), bound.evaluate(plan)
    assert first == second and np.isfinite(first)
    assert torch.equal(torch.rand(1), expected_next)
    assert HeldOutBound(tensors, torch.arange(0, 120, 3), seed=5).evaluate(plan) != first


def test_the_held_out_state_is_kept_in_checkpoints_and_a_resumed_fit_continues_it(tmp_path):
    views, _ = make_data(200)
    settings = {**FAST, "cluster_init_epoch": 3, "cluster_init_when": "plateau"}
    CMVAE(epochs=4, **settings).fit(views, out_dir=tmp_path / "run")
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    saved = [v for k, v in state["callbacks"].items() if "KMeansPriorInit" in k][0]
    assert saved["done"] and saved["held_out"]["best_epoch"] == 3  # reset at the placement (after 3), then epoch 4
    assert set(saved["held_out"]["best_state"]) == {k[len("module."):] for k in state["state_dict"]}
    resumed = CMVAE(epochs=6, **settings).fit(views, out_dir=tmp_path / "run", resume=True)
    assert len(resumed.history_["epoch"]) == 2 and np.isfinite(resumed.predict_proba(views)).all()


@pytest.mark.parametrize("n_rows, held_out_codes", [(600, True), (400, False)])
def test_placement_clusters_the_held_out_codes_when_they_are_enough(monkeypatch, n_rows, held_out_codes):
    # 600 rows: 60 held out = 20 per cluster (KMEANS_HELD_OUT_PER_CLUSTER), so k-means runs on their codes;
    # 400 rows: 40 held out are too few for 3 clusters, so it runs on every training row's code
    from cmvae import callbacks
    from cmvae.priors import ClusterPrior

    assert callbacks.KMEANS_HELD_OUT_PER_CLUSTER == 20
    seen: list[int] = []
    original = ClusterPrior.init_from_codes

    def record(self, codes, seed=0, max_points=20000, from_means=False):
        seen.append((int(codes.shape[0]), from_means))
        return original(self, codes, seed=seed, max_points=max_points, from_means=from_means)

    monkeypatch.setattr(ClusterPrior, "init_from_codes", record)
    views, _ = make_data(n_rows)
    model = CMVAE(epochs=4, **{**FAST, "cluster_init_when": "plateau"}).fit(views)
    # with enough held-out rows they also place the components again at the end, started from the trained means
    assert seen == ([(n_rows // 10, False), (n_rows // 10, True)] if held_out_codes else [(n_rows, False)])
    assert np.isfinite(model.predict_proba(views)).all()


def test_training_ends_with_the_components_on_the_held_out_codes_of_the_final_weights():
    # after the fit every active component sits at the centroid of the held-out rows' codes nearest to it (the
    # fixed point of k-means started from the trained means), the weights are those rows' shares
    from cmvae.callbacks import _mixture_means

    views, _ = make_data(600)
    model = CMVAE(epochs=4, **{**FAST, "cluster_init_when": "plateau"}).fit(views)
    held = model._held_out_rows(600)
    codes = _mixture_means(model.module_, model.schema_, [torch.as_tensor(v) for v in views], torch.device("cpu"),
                           rows=held).double()
    prior = model.module_.prior
    means = prior.means.detach().double()
    nearest = torch.cdist(codes, means).argmin(1)
    for c in range(means.shape[0]):
        members = codes[nearest == c]
        assert members.shape[0] > 0
        assert torch.allclose(means[c], members.mean(0), atol=1e-3)
    shares = torch.bincount(nearest, minlength=means.shape[0]).double() / codes.shape[0]
    assert torch.allclose(prior.weights().detach().double(), shares, atol=1e-5)


def test_placing_again_from_the_means_keeps_each_components_identity():
    from cmvae.priors import ClusterPrior

    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[6.0, 0.0], [0.0, 6.0], [-6.0, 0.0]])
    codes = torch.cat([c + 0.3 * torch.randn(50, 2, generator=generator) for c in centres])
    prior = ClusterPrior(3, 2)
    with torch.no_grad():
        prior.means.copy_(torch.tensor([[0.5, 4.0], [-4.0, 1.0], [4.0, -0.5]]))  # near centres 1, 2, 0
    prior.init_from_codes(codes, from_means=True)
    assert torch.allclose(prior.means.detach(), centres[[1, 2, 0]], atol=0.2)
    prior.init_from_codes(codes)  # a fresh placement numbers the clusters as k-means does
    assert torch.allclose(torch.sort(prior.means.detach()[:, 0]).values, torch.sort(centres[:, 0]).values, atol=0.2)


def test_a_placement_keeps_the_best_of_several_k_means_starts():
    from cmvae.priors import ClusterPrior
    from sklearn.cluster import KMeans

    codes = torch.randn(400, 4, generator=torch.Generator().manual_seed(1)).double()  # no clusters: many local optima
    labels = ClusterPrior(12, 4).init_from_codes(codes)
    inertia = sum(float(((codes[labels == j] - codes[labels == j].mean(0)) ** 2).sum()) for j in range(12))
    single = [KMeans(12, init="k-means++", n_init=1, random_state=s).fit(codes.numpy()).inertia_ for s in range(20)]
    best_of_3 = KMeans(12, init="k-means++", n_init=3, random_state=0).fit(codes.numpy()).inertia_  # the number before
    assert inertia <= np.median(single) and inertia < best_of_3 - 1.0  # 604.1 vs 611.0 for these codes
