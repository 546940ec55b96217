"""A tiny fake CUB-200-2011 tree + Reed et al. caption folder, laid out like the real ones.

``make_fake_cub(root)`` writes::

    root/CUB_200_2011/classes.txt, images.txt, image_class_labels.txt, train_test_split.txt
    root/CUB_200_2011/images/<class folder>/<stem>.jpg      (small JPEGs of a class colour)
    root/text_c10/<class folder>/<stem>.txt                 (one caption per line)

``classes.txt`` lists every class of the default grouping plus two others, so the packaged
grouping validates; images exist for ``IMAGE_CLASSES`` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

GROUPING_CLASSES = [
    "009.Brewer_Blackbird", "010.Red_winged_Blackbird", "011.Rusty_Blackbird",
    "059.California_Gull", "062.Herring_Gull", "066.Western_Gull",
    "073.Blue_Jay", "074.Florida_Jay",
    "095.Baltimore_Oriole", "096.Hooded_Oriole", "098.Scott_Oriole",
    "139.Scarlet_Tanager", "140.Summer_Tanager",
    "141.Artic_Tern", "143.Caspian_Tern", "145.Elegant_Tern",
    "168.Kentucky_Warbler", "175.Pine_Warbler", "182.Yellow_Warbler",
    "195.Carolina_Wren", "196.House_Wren", "197.Marsh_Wren",
]
OTHER_CLASSES = ["001.Black_footed_Albatross", "079.Belted_Kingfisher", "080.Green_Kingfisher", "081.Pied_Kingfisher"]

# class folder -> (species id in the default grouping or None, colour, words of its captions)
IMAGE_CLASSES = {
    "001.Black_footed_Albatross": (None, (90, 90, 90), ["long", "grey", "wings"]),
    "009.Brewer_Blackbird": (0, (20, 20, 20), ["black", "shiny", "dark"]),
    "010.Red_winged_Blackbird": (0, (30, 10, 10), ["black", "red", "shoulder"]),
    "059.California_Gull": (1, (230, 230, 230), ["white", "grey", "webbed"]),
    "073.Blue_Jay": (2, (30, 60, 220), ["blue", "crest", "white"]),
}


@dataclass
class FakeCub:
    cub_dir: Path
    captions_dir: Path
    images_per_class: int
    captions_per_image: int
    n_train_images: int
    n_test_images: int
    texts: dict[str, list[str]]  # "<class folder>/<stem>" -> its captions


def _caption(words: list[str], rng: np.random.Generator, i: int) -> str:
    w = list(rng.permutation(words))
    return f"This bird has {w[0]} feathers, a {w[1]} belly and {w[2]} wings{'!' if i % 3 == 0 else '.'}"


def make_fake_cub(root: Path, *, images_per_class: int = 4, captions_per_image: int = 10, seed: int = 0) -> FakeCub:
    """Write the fake tree under ``root``; images alternate train (1) / test (0)."""
    rng = np.random.default_rng(seed)
    cub = root / "CUB_200_2011"
    caps = root / "text_c10"
    classes = sorted(GROUPING_CLASSES + OTHER_CLASSES)
    (cub / "images").mkdir(parents=True)
    class_id = {name: i + 1 for i, name in enumerate(classes)}
    images, labels, split = [], [], []
    texts: dict[str, list[str]] = {}
    n_train = n_test = 0
    image_id = 0
    for folder, (_, colour, words) in IMAGE_CLASSES.items():
        (cub / "images" / folder).mkdir()
        (caps / folder).mkdir(parents=True)
        for j in range(images_per_class):
            image_id += 1
            stem = f"{folder.split('.')[1]}_{j:04d}_{image_id}"
            pixels = np.clip(np.array(colour) + rng.integers(-15, 16, (20 + j, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(cub / "images" / folder / f"{stem}.jpg", quality=95)
            lines = [_caption(words, rng, i) for i in range(captions_per_image)]
            (caps / folder / f"{stem}.txt").write_text("\n".join(lines) + "\n")
            texts[f"{folder}/{stem}"] = lines
            images.append(f"{image_id} {folder}/{stem}.jpg")
            labels.append(f"{image_id} {class_id[folder]}")
            train = j % 2 == 0
            split.append(f"{image_id} {int(train)}")
            if IMAGE_CLASSES[folder][0] is not None:
                n_train += train
                n_test += not train
    (cub / "classes.txt").write_text("".join(f"{class_id[c]} {c}\n" for c in classes))
    (cub / "images.txt").write_text("\n".join(images) + "\n")
    (cub / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (cub / "train_test_split.txt").write_text("\n".join(split) + "\n")
    return FakeCub(cub, caps, images_per_class, captions_per_image, n_train, n_test, texts)
