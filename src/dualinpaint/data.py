"""Training and validation images: file lists, the image dataset and reproducible splits.

A sample is a pure function of ``(seed, epoch, index)``: the random crop and flip come from a numpy
Generator seeded with those three numbers, never from a global RNG, so a resumed run (or a DataLoader
worker process) sees exactly the samples an uninterrupted run would.

The transforms follow PICNet (``dataloader/data_loader.py``): training resizes to ``load_size``×``load_size``
(aspect ratio not kept; 266 for 256), takes a random ``size``×``size`` crop and flips horizontally with
probability 1/2. PICNet's ``RandomRotation(3)`` is left out on purpose: it puts black corners into the
ground truth. Validation resizes the shorter side to ``size`` and takes the centre crop.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dualinpaint.images import (
    IMAGE_EXTENSIONS,
    atomic_write_bytes,
    list_images,
    open_image,
    pil_to_tensor,
    to_rgb,
)

FLIST_SUFFIXES = (".flist", ".txt")
# PIL's bilinear filter is antialiased when shrinking, like torchvision's Resize (PICNet's default).
RESAMPLE = Image.Resampling.BILINEAR
_LABELLED_LINE = re.compile(r"^(.*\S)\s+-?\d+$")  # "path label", as in the Places365 file lists

PathLike = str | os.PathLike


_REPORTED: set[str] = set()  # unreadable files already warned about in this process


class NoReadableImages(RuntimeError, ValueError):
    """Not one image of a data source can be read. A ``ValueError`` too: the command line prints it as one
    line (it is the data, not the program, that is wrong)."""


def read_image_list(source: PathLike) -> list[Path]:
    """The image files named by ``source``.

    ``source`` is a folder (walked recursively; files whose suffix is in ``IMAGE_EXTENSIONS``, sorted by
    path), a file list (``.flist`` or ``.txt``: one path per line; blank lines and ``#`` comments are
    ignored; relative paths are resolved against the list file's folder; a trailing integer label, as in
    ``a/airfield/00000001.jpg 0``, is dropped) or a single image file. Lists are returned in file order.
    Places365's lists start every path with ``/`` although the paths are relative to the data folder: when
    a list's first absolute entry does not exist but does under the list's folder, all its ``/…`` entries
    are read that way.

    Raises ``ValueError`` with a one-line message naming the path when it is missing or names no image.
    """
    path = Path(source)
    if path.is_dir():
        paths = list_images(path)
        if not paths:
            raise ValueError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) found under {path}")
        return paths
    if not path.exists():
        raise ValueError(f"no such image folder or file list: {path}")
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return [path]
    if suffix not in FLIST_SUFFIXES:
        raise ValueError(f"{path} is not a folder, an image or a file list ({', '.join(FLIST_SUFFIXES)})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read file list {path}: {err}") from None
    paths = []
    rooted: bool | None = None  # do "/a/b.jpg" entries mean <list folder>/a/b.jpg? decided once per list
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        labelled = _LABELLED_LINE.match(line)
        if labelled and Path(line).suffix.lower() not in IMAGE_EXTENSIONS:
            line = labelled.group(1)
        entry = Path(line).expanduser()
        if entry.is_absolute():
            if rooted is None:  # Places365's lists write "/a/airfield/00000001.jpg" relative to the data root
                inside = path.parent / entry.relative_to(entry.anchor)
                rooted = not entry.exists() and inside.exists()
            if rooted:
                entry = path.parent / entry.relative_to(entry.anchor)
        paths.append(entry if entry.is_absolute() else path.parent / entry)
    if not paths:
        raise ValueError(f"file list {path} names no images")
    return paths


def split_list(paths: Sequence, val_fraction: float, seed: int) -> tuple[list, list]:
    """Split ``paths`` into ``(train, val)``, deterministically from the sorted paths and ``seed``.

    The result does not depend on the input order, nor on where the data lies (only the relative order of
    the paths matters). ``val`` holds ``round(len(paths) * val_fraction)`` items, but at least one, and at
    least one item is left for training, whenever ``0 < val_fraction < 1`` and there are two or more items.
    Both lists keep the sorted order and the caller's item types.
    """
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction={val_fraction!r} must be in [0, 1]")
    items = sorted(paths, key=lambda p: str(p))
    n = len(items)
    n_val = round(n * val_fraction)
    if 0.0 < val_fraction < 1.0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    chosen = set(np.random.default_rng(seed).permutation(n)[:n_val].tolist())
    train = [p for i, p in enumerate(items) if i not in chosen]
    val = [p for i, p in enumerate(items) if i in chosen]
    return train, val


def write_flist(paths: Sequence[PathLike], out_file: PathLike) -> Path:
    """Write ``paths`` to the file list ``out_file`` (atomically), one per line, and return its path.

    Relative input paths are taken relative to the current folder. A path under the list's folder is
    written relative to it (so the list moves with the data); any other path is written absolute.
    ``read_image_list(out_file)`` gives the same files back.
    """
    out_file = Path(out_file)
    base = out_file.parent.resolve()
    lines = []
    for p in paths:
        p = Path(p).expanduser().resolve()
        try:
            lines.append(p.relative_to(base).as_posix())
        except ValueError:
            lines.append(str(p))
        if "\n" in lines[-1] or "\r" in lines[-1]:
            raise ValueError(f"cannot write a path with a line break to a file list: {lines[-1]!r}")
    atomic_write_bytes(out_file, "".join(line + "\n" for line in lines).encode("utf-8"))
    return out_file


def _resize_shorter(image: Image.Image, size: int) -> Image.Image:
    w, h = image.size
    scale = size / min(w, h)
    new = (max(size, round(w * scale)), max(size, round(h * scale)))
    return image if new == (w, h) else image.resize(new, RESAMPLE)


class ImageDataset(torch.utils.data.Dataset):
    """Images from a folder, a file list or a sequence of paths, as ``{"image": 3×size×size, "index": i}``.

    Images are float tensors in [-1, 1] (RGB, EXIF orientation applied). ``train=True`` gives random
    crops and flips drawn from ``(seed, epoch, index)``: PICNet's resize to ``load_size`` then a random
    ``size`` crop, or, with ``min_scale`` > 0, a random square of s·(shorter side), s ~ U[min_scale, 1],
    resized to ``size`` (scale augmentation for a few large photos). Call :meth:`set_epoch` at the start
    of each epoch (before the DataLoader iterator is created: workers that persist across epochs keep the
    old epoch).
    ``train=False`` has no randomness.

    An unreadable file is skipped with one warning naming it (once per file and process), and the next
    readable file in the list takes its place, transformed with the skipped index's randomness, so an
    epoch never stops half-way. If no file is readable, ``NoReadableImages`` (a ``RuntimeError`` and a
    ``ValueError``) is raised.
    """

    def __init__(
        self,
        source: PathLike | Sequence[PathLike],
        size: int,
        load_size: int | None = None,
        train: bool = True,
        flip: bool = True,
        seed: int = 0,
        min_scale: float = 0.0,
    ) -> None:
        if isinstance(source, str | os.PathLike):
            self.paths = read_image_list(source)
            self.source = str(source)
        else:
            self.paths = [Path(p) for p in source]
            self.source = f"a list of {len(self.paths)} paths"
            if not self.paths:
                raise ValueError("ImageDataset got an empty list of paths")
        if size <= 0:
            raise ValueError(f"size={size!r} must be > 0")
        if load_size is None:
            load_size = round(size * 266 / 256)
        if load_size < size:
            raise ValueError(f"load_size={load_size!r} must be >= size={size!r}")
        if seed < 0:
            raise ValueError(f"seed={seed!r} must be >= 0")
        self.size = int(size)
        self.load_size = int(load_size)
        self.train = bool(train)
        self.flip = bool(flip)
        if not 0.0 <= min_scale <= 1.0:
            raise ValueError(f"min_scale={min_scale!r} must be in [0, 1]")
        self.min_scale = float(min_scale)
        self.seed = int(seed)
        self.epoch = 0
        self._unreadable: set[int] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random crops and flips ``__getitem__`` draws."""
        if epoch < 0:
            raise ValueError(f"epoch={epoch!r} must be >= 0")
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        """The random generator of sample ``index`` in the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, index])

    def __getitem__(self, index: int) -> dict:
        n = len(self.paths)
        index = int(index)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} images")
        index %= n
        image = self._load(index)
        image = self._train_transform(image, self.rng(index)) if self.train else self._val_transform(image)
        return {"image": pil_to_tensor(image)[0], "index": index}

    def _load(self, index: int) -> Image.Image:
        """The first readable image at or after ``index`` (cyclically), as RGB."""
        n = len(self.paths)
        for k in range(n):
            i = (index + k) % n
            if i in self._unreadable:
                continue
            try:
                return to_rgb(open_image(self.paths[i]))
            except ValueError as err:
                self._unreadable.add(i)
                if str(self.paths[i]) not in _REPORTED:  # a training and a validation set share files
                    _REPORTED.add(str(self.paths[i]))
                    message = f"skipping unreadable image {self.paths[i]}: {err}"
                    warnings.warn(message, RuntimeWarning, stacklevel=3)
        raise NoReadableImages(
            f"none of the {n} images from {self.source} is readable (first: {self.paths[0]})"
        )

    def _train_transform(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        load, size = self.load_size, self.size
        if self.min_scale > 0:
            return self._scale_crop(image, rng)
        if image.size != (load, load):
            image = image.resize((load, load), RESAMPLE)
        x, y = (int(v) for v in rng.integers(0, load - size + 1, size=2))
        image = image.crop((x, y, x + size, y + size))
        if rng.random() < 0.5 and self.flip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return image

    def _scale_crop(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        """A square of side s·(shorter side), s ~ U[min_scale, 1], at a random place, resized to size."""
        w, h = image.size
        side = max(1, round(min(w, h) * rng.uniform(self.min_scale, 1.0)))
        x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        image = image.resize((self.size, self.size), RESAMPLE, box=(x, y, x + side, y + side))
        if rng.random() < 0.5 and self.flip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return image

    def _val_transform(self, image: Image.Image) -> Image.Image:
        size = self.size
        image = _resize_shorter(image, size)
        w, h = image.size
        left, top = (w - size) // 2, (h - size) // 2
        return image.crop((left, top, left + size, top + size))
