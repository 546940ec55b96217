"""Image folders read lazily (``from_image_folders(..., lazy=True)``): only headers are read up front,
each batch decodes only its own files, the fitted model equals one fitted on the decoded arrays, a
DDP process decodes only its share, and bad folders fail with one line naming the folder or file."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DistributedSampler

from cmvae import CMVAE, DataValidationError
from cmvae.data import from_image_folders, images
from cmvae.data.images import ImageFiles
from cmvae.training import make_loader

FAST = dict(n_clusters=3, shared_dim=4, private_dim=2, epochs=2, batch_size=16, cluster_init_epoch=1,
            accelerator="cpu", progress=False, seed=0)


def write_folders(root, n: int = 48, seed: int = 0, stems=None) -> tuple[list, np.ndarray]:
    """Two modalities of n images with 3 groups: RGB 8x8 in ``root/rgb``, greyscale 8x8 in ``root/grey``."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    folders = [root / "rgb", root / "grey"]
    for folder, shape in zip(folders, [(8, 8, 3), (8, 8)]):
        folder.mkdir(parents=True, exist_ok=True)
        for i, stem in enumerate(stems or [f"s{i:03d}" for i in range(n)]):
            pixels = rng.normal(50 + 75 * labels[i], 20, shape).clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{stem}.png")
    return folders, labels


@pytest.fixture
def decoded(monkeypatch) -> Counter:
    """Counts the decodes of each image file (by path)."""
    counts: Counter = Counter()
    read = images.read_image

    def counting(path, *args, **kwargs):
        counts[str(path)] += 1
        return read(path, *args, **kwargs)

    monkeypatch.setattr(images, "read_image", counting)
    return counts


def test_lazy_folders_decode_per_batch_and_fit_like_decoded_arrays(tmp_path, decoded):
    folders, _ = write_folders(tmp_path)
    lazy = from_image_folders(folders, lazy=True)
    assert not decoded  # headers only
    views = lazy.to_views()
    assert all(isinstance(v, ImageFiles) for v in views)
    assert [list(v.shape) for v in views] == [[48, 3, 8, 8], [48, 1, 8, 8]] and views[0].dtype == torch.uint8
    eager = from_image_folders(folders)  # decodes every file
    decoded.clear()
    rows = views[1][torch.tensor([5, 2, 40])]
    assert sum(decoded.values()) == 3  # one index operation: its three files only
    np.testing.assert_array_equal(rows.numpy(), eager.to_views()[1][[5, 2, 40]])

    decoded.clear()
    model = CMVAE(**FAST).fit(lazy)
    reference = CMVAE(**FAST).fit(eager)
    assert decoded and max(decoded.values()) >= 2  # read again at every epoch: nothing was cached
    np.testing.assert_array_equal(model.predict(lazy), reference.predict(eager))
    np.testing.assert_array_equal(model.transform(lazy), reference.transform(eager))
    assert model.select_clusters(lazy).entropy == reference.select_clusters(eager).entropy


def test_ids_choose_and_order_the_samples(tmp_path):
    folders, _ = write_folders(tmp_path, n=6)
    ds = from_image_folders(folders, lazy=True, ids=["s004", "s001"])
    eager = from_image_folders(folders)
    assert len(ds) == 2
    np.testing.assert_array_equal(ds.to_views()[0][:].numpy(), eager.to_views()[0][[4, 1]])


def test_each_ddp_process_decodes_only_its_share(tmp_path, decoded):
    from lightning.pytorch.utilities.data import _update_dataloader  # how Lightning adds its DistributedSampler

    folders, _ = write_folders(tmp_path, n=40)
    views = from_image_folders(folders, lazy=True).to_views()
    loader = make_loader(views, 8, shuffle=True, seed=0)
    per_rank = []
    for rank in (0, 1):
        decoded.clear()
        sampler = DistributedSampler(loader.dataset, num_replicas=2, rank=rank, shuffle=True, seed=0)
        sum(1 for _ in _update_dataloader(loader, sampler))
        per_rank.append({p for p in decoded if "/rgb/" in p})
        assert all(count == 1 for count in decoded.values())
    assert len(per_rank[0]) == len(per_rank[1]) == 20 and not per_rank[0] & per_rank[1]


def test_folder_errors_name_the_folder_or_file(tmp_path):
    folders, _ = write_folders(tmp_path / "ok", n=4)
    with pytest.raises(DataValidationError, match="image folder not found: .*nowhere"):
        from_image_folders([folders[0], tmp_path / "nowhere"], lazy=True)

    short, _ = write_folders(tmp_path / "short", n=2)
    with pytest.raises(DataValidationError, match=r"unpaired samples: 2 id\(s\) of 'rgb' not in 'grey': "
                                                  r"s002, s003; 4 samples in 'rgb', 2 in 'grey'"):
        from_image_folders([folders[0], short[1]], lazy=True)
    renamed, _ = write_folders(tmp_path / "renamed", n=4, stems=["s000", "s001", "s002", "t003"])
    with pytest.raises(DataValidationError, match=r"1 id\(s\) of 'rgb' not in 'grey': s003; 1 id\(s\) of "
                                                  r"'grey' not in 'rgb': t003$"):
        from_image_folders([folders[0], renamed[1]], lazy=True)
    with pytest.raises(DataValidationError, match=r"ok/rgb: no image file for 1 of the 2 ids: s009"):
        from_image_folders(folders, lazy=True, ids=["s001", "s009"])

    (folders[1] / "s001.png").write_bytes(b"not an image at all")
    with pytest.raises(DataValidationError, match=r"grey/s001.png: cannot read as an image"):
        from_image_folders(folders, lazy=True)

    Image.fromarray(np.zeros((9, 8), np.uint8)).save(folders[1] / "s001.png")
    with pytest.raises(DataValidationError, match=r"grey: images have different sizes \(s000.png: 8x8, s001.png: "
                                                  r"9x8\); pass size= to resize them"):
        from_image_folders(folders, lazy=True)
    assert list(from_image_folders(folders, lazy=True, size=4).to_views()[1].shape) == [4, 1, 4, 4]


def test_a_file_damaged_after_its_header_fails_when_read_or_verified(tmp_path):
    folders, _ = write_folders(tmp_path, n=4)
    path = folders[0] / "s002.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:60])  # the header survives, the pixels do not
    ds = from_image_folders(folders, lazy=True)  # headers are fine
    rgb = ds.to_views()[0]
    assert rgb[:2].shape == (2, 3, 8, 8)  # batches without the file read
    with pytest.raises(DataValidationError, match=r"rgb/s002.png: cannot read as an image"):
        rgb[1:3]
    with pytest.raises(DataValidationError, match=r"rgb/s002.png: cannot read as an image"):
        from_image_folders(folders, lazy=True, verify=True)
    with pytest.raises(DataValidationError, match=r"rgb/s002.png: cannot read as an image"):
        CMVAE(**FAST).fit(ds)
