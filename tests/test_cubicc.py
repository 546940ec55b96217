"""CUBICC loader (on a fake CUB tree), caption vocabulary, text nets, text modality in CMVAE, cubicc config."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from cub_fixture import GROUPING_CLASSES, IMAGE_CLASSES, OTHER_CLASSES, make_fake_cub

from cmvae import CMVAE, cli
from cmvae.config import ConfigError, load_config, load_data
from cmvae.data.cubicc import default_grouping_path, load_cubicc, load_grouping
from cmvae.data.text import Vocabulary, tokenize
from cmvae.distributions import likelihood
from cmvae.nets import build_networks
from cmvae.schema import DataSchema, DataValidationError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cub(tmp_path_factory):
    return make_fake_cub(tmp_path_factory.mktemp("cub"))


@pytest.fixture(scope="module")
def ds(cub, tmp_path_factory):
    return load_cubicc(cub.cub_dir, cub.captions_dir, cache_dir=tmp_path_factory.mktemp("cache"))


# ------------------------------------------------------------------------ tokens


def test_tokenize_lowercases_and_splits_punctuation():
    assert tokenize("This bird's beak, SHORT.") == ["this", "bird's", "beak", ",", "short", "."]


def test_vocabulary_min_count_order_and_specials():
    texts = ["a a a b", "b b c", "c c d"]  # a: 3, b: 3, c: 3, d: 1
    vocab = Vocabulary.build(texts + ["a"], min_count=3)  # a: 4
    assert vocab.tokens == ["<pad>", "<eos>", "<exc>", "a", "b", "c"]
    assert Vocabulary.build(texts + ["a"], min_count=4).tokens == ["<pad>", "<eos>", "<exc>", "a"]
    assert (vocab.pad_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2)


def test_encode_eos_padding_truncation_and_decode():
    vocab = Vocabulary.build(["w"] * 3 + ["x"] * 3)
    ids = vocab.encode("w x zzz", max_len=6)
    assert ids.dtype == np.int64 and ids.tolist() == [3, 4, 2, 1, 0, 0]
    long = vocab.encode(" ".join(["w"] * 40), max_len=32)
    assert long.tolist() == [3] * 31 + [1]  # at most 31 words, then <eos>
    assert vocab.decode([3, 4, 0, 3, 1, 4, 4]) == "w x w"  # pads dropped, stops at <eos>
    assert vocab.decode_batch(vocab.encode_batch(["x w", "w"], 5)) == ["x w", "w"]
    assert Vocabulary.from_dict(json.loads(json.dumps(vocab.to_dict()))).tokens == vocab.tokens
    with pytest.raises(ValueError, match="outside the vocabulary"):
        vocab.decode([99])


# ------------------------------------------------------------------------ loader


def test_loader_shapes_labels_and_pairs(cub, ds):
    n_train, n_test = cub.n_train_images * 10, cub.n_test_images * 10
    images, captions = ds.train_views
    assert images.shape == (n_train, 3, 64, 64) and images.dtype == np.uint8
    assert captions.shape == (n_train, 32) and captions.dtype == np.int64
    assert ds.test_views[0].shape[0] == n_test == ds.test_labels.shape[0]
    assert ds.species == ["Blackbird", "Gull", "Jay", "Oriole", "Tanager", "Tern", "Warbler", "Wren"]
    # the albatross (not grouped) is left out; every pair has its image's species and colour
    expected = {c: s for c, (s, _, _) in IMAGE_CLASSES.items() if s is not None}
    classes = sorted(GROUPING_CLASSES + OTHER_CLASSES)
    for split in (ds.train, ds.test):
        for i in range(0, len(split), 7):
            folder = classes[split.class_ids[i] - 1]
            assert split.labels[i] == expected[folder]
            colour = np.array(IMAGE_CLASSES[folder][1])
            assert np.abs(split.views[0][i].reshape(3, -1).mean(1) - colour).max() < 12
    # each image comes with its 10 captions, in file order
    first = ds.train.image_index == 0
    assert first.sum() == 10
    folder = classes[ds.train.class_ids[0] - 1]
    key = next(k for k in cub.texts if k.startswith(folder + "/"))
    decoded = ds.vocab.decode_batch(ds.train.captions[first])
    assert decoded == [" ".join(t if t in ds.vocab.tokens else "<exc>" for t in tokenize(x)) for x in cub.texts[key]]


def test_vocabulary_comes_from_training_captions_only(tmp_path):
    cub = make_fake_cub(tmp_path / "tree")
    test_images = [line.split()[0] for line in (cub.cub_dir / "train_test_split.txt").read_text().splitlines()
                   if line.split()[1] == "0"]
    paths = dict(line.split() for line in (cub.cub_dir / "images.txt").read_text().splitlines())
    rel = next(paths[i] for i in test_images if paths[i].startswith("073.Blue_Jay/"))
    (cub.captions_dir / rel).with_suffix(".txt").write_text("zebra zebra zebra zebra\n" * 10)
    data = load_cubicc(cub.cub_dir, cub.captions_dir, cache=False)
    assert "zebra" not in data.vocab.tokens
    assert [2, 2, 2, 2, 1] in data.test.captions[:, :5].tolist()  # <exc> x 4, <eos>


def test_grouping_file_and_ninth_species(tmp_path, cub):
    groups = load_grouping(None)
    assert list(groups) == ["Blackbird", "Gull", "Jay", "Oriole", "Tanager", "Tern", "Warbler", "Wren"]
    assert sorted(c for cs in groups.values() for c in cs) == sorted(GROUPING_CLASSES)
    text = default_grouping_path().read_text().replace("# Kingfisher:", "Kingfisher:")  # the one-line change
    (tmp_path / "nine.yaml").write_text(text)
    data = load_cubicc(cub.cub_dir, cub.captions_dir, tmp_path / "nine.yaml", cache=False)
    assert len(data.species) == 9 and data.species[-1] == "Kingfisher"


def test_grouping_errors(tmp_path, cub):
    names = sorted(GROUPING_CLASSES + OTHER_CLASSES)
    bad = tmp_path / "bad.yaml"
    bad.write_text("Blackbird: [009.Brewers_Blackbird]\n")
    with pytest.raises(ValueError, match=r"unknown CUB class '009.Brewers_Blackbird'.*009.Brewer_Blackbird"):
        load_grouping(bad, names)
    bad.write_text("A: [073.Blue_Jay]\nB: [073.Blue_Jay]\n")
    with pytest.raises(ValueError, match="listed under both 'A' and 'B'"):
        load_grouping(bad, names)
    bad.write_text("A: []\n")
    with pytest.raises(ValueError, match="non-empty list"):
        load_grouping(bad, names)


def test_missing_files_name_the_expected_path(tmp_path):
    cub = make_fake_cub(tmp_path / "tree")
    caption = next((cub.captions_dir / "073.Blue_Jay").iterdir())
    caption.unlink()
    with pytest.raises(FileNotFoundError, match=f"caption file not found: expected {caption}"):
        load_cubicc(cub.cub_dir, cub.captions_dir, cache=False)
    split_file = cub.cub_dir / "train_test_split.txt"
    split_file.unlink()
    with pytest.raises(FileNotFoundError, match=f"expected {split_file}"):
        load_cubicc(cub.cub_dir, cub.captions_dir, cache=False)
    with pytest.raises(FileNotFoundError, match="captions folder"):
        load_cubicc(cub.cub_dir, tmp_path / "nowhere", cache=False)


def test_cache_round_trip(tmp_path):
    cub = make_fake_cub(tmp_path / "tree")
    first = load_cubicc(cub.cub_dir, cub.captions_dir, cache_dir=tmp_path / "cache")
    assert first.cache_path is not None and first.cache_path.is_file()
    shutil.rmtree(cub.cub_dir / "images")  # a cache hit must not read the images
    again = load_cubicc(cub.cub_dir, cub.captions_dir, cache_dir=tmp_path / "cache")
    assert again.vocab.tokens == first.vocab.tokens and again.species == first.species
    for a, b in zip(again.train_views + again.test_views, first.train_views + first.test_views):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(FileNotFoundError, match="CUB image not found"):
        load_cubicc(cub.cub_dir, cub.captions_dir, cache=False)


# --------------------------------------------------------------------- text nets


@pytest.mark.parametrize("arch,length", [("light", 32), ("resnet", 32), ("light", 7)])
def test_text_net_shapes(arch, length):
    enc, dec = build_networks((length,), 6, 3, arch=arch, vocab_size=11)
    ids = torch.randint(0, 11, (5, length))
    assert enc(ids).shape == (5, 18)
    assert dec(torch.randn(4, 9)).shape == (4, length, 11)


def test_categorical_log_likelihood_by_hand():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 5, generator=gen)  # [K, B, L, V]
    x = torch.randint(0, 5, (3, 4), generator=gen)  # [B, L]
    got = likelihood("categorical").log_prob(x, logits)
    assert got.shape == (2, 3)
    for k in range(2):
        for b in range(3):
            want = 0.0
            for pos in range(4):
                row = logits[k, b, pos].tolist()
                want += row[int(x[b, pos])] - math.log(sum(math.exp(v) for v in row))
            assert got[k, b].item() == pytest.approx(want, abs=1e-5)


# -------------------------------------------------------------------- schema


def test_schema_keeps_token_ids_and_checks_them():
    ids = torch.tensor([[3.0, 1.0, 0.0], [4.0, 4.0, 1.0]])  # as_views turns int64 into float32
    tab = torch.randn(2, 3)
    schema = DataSchema.infer([tab, ids], vocabularies=[None, ["<pad>", "<eos>", "<exc>", "a", "b"]])
    spec = schema.modalities[1]
    assert (spec.kind, spec.vocab_size, spec.mean) == ("text", 5, None)
    x = schema.to_model_input([tab, ids])[1]
    assert x.dtype == torch.int64 and x.tolist() == [[3, 1, 0], [4, 4, 1]]
    with pytest.raises(DataValidationError, match=r"0\.\.4"):
        schema.check([tab, ids + 2])
    with pytest.raises(DataValidationError, match="integer token ids"):
        schema.check([tab, ids + 0.5])
    assert DataSchema.from_dict(json.loads(json.dumps(schema.to_dict()))) == schema
    with pytest.raises(ValueError, match="categorical likelihood is for text"):
        CMVAE(likelihood=["laplace", "laplace"])._make_likelihoods(schema)


# ------------------------------------------------------------ CMVAE on images + text


def test_cmvae_fits_images_and_captions_and_decodes_text(cub, ds, tmp_path):
    small = load_cubicc(cub.cub_dir, cub.captions_dir, image_size=16, cache_dir=tmp_path)
    model = CMVAE(n_clusters=3, shared_dim=8, private_dim=4, epochs=8, batch_size=16, lr=5e-3, progress=False,
                  accelerator="cpu", likelihood_scale=[0.1, 1.0], cluster_init_epoch=1)
    model.fit(small.train_views, vocabularies=[None, small.vocab])
    assert [m.kind for m in model.schema_.modalities] == ["image", "text"]
    images, labels = small.test_views[0][::10], small.test_labels[::10]
    ids = model.generate([images, None], use_mean=True, seed=0)[1]
    assert ids.shape == (len(labels), 32) and ids.dtype == np.int64
    texts = model.decode_text(ids)
    assert all(t.startswith("this bird has") for t in texts), texts
    species_words = [{w for c, (s, _, ws) in IMAGE_CLASSES.items() if s == k for w in ws} for k in range(3)]
    for text, y in zip(texts, labels):
        if y < 2:  # image -> caption carries the species' colour words (blackbird / gull)
            assert set(tokenize(text)) & species_words[y], (text, y)
    model.save(tmp_path / "model")
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["schema"]["modalities"][1]["vocab"] == small.vocab.tokens
    loaded = CMVAE.load(tmp_path / "model")
    assert loaded.decode_text(ids) == texts
    again = loaded.generate([images, None], use_mean=True, seed=0)[1]
    np.testing.assert_array_equal(again, ids)
    samples = loaded.sample(4, seed=1)
    assert samples[0].shape == (4, 3, 16, 16) and len(loaded.decode_text(samples[1])) == 4


# ------------------------------------------------------------------ the config


def test_cubicc_config_paper_settings_and_packaged_copy(cub, monkeypatch):
    assert (REPO / "src" / "cmvae" / "configs" / "cubicc.yaml").read_text() == (REPO / "configs" / "cubicc.yaml").read_text()
    monkeypatch.delenv("CMVAE_CUB_DIR", raising=False)
    with pytest.raises(ConfigError, match="CMVAE_CUB_DIR is not set"):
        load_config(REPO / "configs" / "cubicc.yaml")
    monkeypatch.setenv("CMVAE_CUB_DIR", str(cub.cub_dir))
    monkeypatch.setenv("CMVAE_CUB_CAPTIONS", str(cub.captions_dir))
    cfg = load_config(cli.packaged_config("cubicc"))
    m, t = cfg.model, cfg.training
    assert (m.shared_dim, m.private_dim, m.n_clusters, m.beta, m.latent_family) == (64, 32, 35, 1.0, "gaussian")
    assert (m.estimator, m.n_samples, t.batch_size, t.epochs) == ("dreg", 10, 32, 300)
    assert m.likelihood == ["laplace", "categorical"] and m.likelihood_scale == [0.01, 1.0]
    assert (cfg.data.image_size, cfg.data.max_len, cfg.data.min_word_count) == (64, 32, 3)


def test_cubicc_config_runs_end_to_end(cub, ds, tmp_path):
    data = yaml.safe_load((REPO / "configs" / "cubicc.yaml").read_text())
    data["data"].update(cub_dir=str(cub.cub_dir), captions_dir=str(cub.captions_dir),
                        root=str(ds.cache_path.parents[1]), max_train=48, max_test=40)
    data["model"]["arch"] = "light"  # the paper-size nets are for GPUs
    data["training"].update(epochs=1, progress=False, accelerator="cpu", devices=1)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(data))
    run = tmp_path / "run"
    assert cli.main(["train", "--config", str(tmp_path / "run.yaml"), "--out", str(run)]) == 0
    assert cli.main(["evaluate", str(run)]) == 0
    report = json.loads((run / "evaluation.json").read_text())
    assert report["n_samples"] == 40 and report["n_modalities"] == 2
    rd = load_data(load_config(run / "config.yaml").data)
    assert rd.vocabularies[1].tokens == ds.vocab.tokens
    model = CMVAE.load(run / "model")
    assert model.get_params()["n_samples"] == 10 and model.schema_.modalities[1].vocab_size == len(ds.vocab)


def test_cli_data_cubicc_prints_the_summary(cub, ds, capsys):
    code = cli.main(["data", "cubicc", "--cub-dir", str(cub.cub_dir), "--captions-dir", str(cub.captions_dir),
                     "--root", str(ds.cache_path.parents[1])])
    out = capsys.readouterr().out
    assert code == 0
    assert "Blackbird" in out and "Wren" in out and f"vocabulary {len(ds.vocab)} tokens" in out
    assert cli.main(["data", "cubicc", "--cub-dir", str(cub.cub_dir / "nope"), "--captions-dir", "x"]) == 2
    assert "CUB-200-2011 folder not found" in capsys.readouterr().err
