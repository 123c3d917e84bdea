"""Write a small class-per-folder image tree (PNG files) from Fashion-MNIST, standing in for your
own photos: OUT/train/<class>/*.png and OUT/test/<class>/*.png.

    python make_images.py images [--per-class 60] [--test-per-class 20] [--classes 4]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from kdlang.library.datasets import fashion_mnist


def write_tree(out: Path, per_class: int = 60, test_per_class: int = 20, classes: int = 4) -> None:
    raw = fashion_mnist.load()
    names = [name.replace("/", "-").replace(" ", "_") for name in raw.class_names[:classes]]
    for split, images, labels, count in (("train", raw.train_images, raw.train_labels, per_class),
                                         ("test", raw.test_images, raw.test_labels, test_per_class)):
        for label, name in enumerate(names):
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            picked = (labels == label).nonzero().flatten()[:count]
            for n, index in enumerate(picked.tolist()):
                Image.fromarray(images[index, 0].numpy()).save(folder / f"{n:04d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-class", type=int, default=60)
    parser.add_argument("--test-per-class", type=int, default=20)
    parser.add_argument("--classes", type=int, default=4)
    args = parser.parse_args()
    write_tree(args.out, args.per_class, args.test_per_class, args.classes)
    print(f"wrote {args.out}/train and {args.out}/test")


if __name__ == "__main__":
    main()
