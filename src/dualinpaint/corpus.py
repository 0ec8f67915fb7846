"""The project's real-photo corpus, built offline from Debian packages and Python wheels.

``build_debian_photos(out_dir)`` fetches the Debian packages of ``NAMED_PHOTOS``, ``FOLDER_PHOTOS`` and
``PATH_PHOTOS`` with ``apt-get download`` (no install, no root needed except for apt's own lists) and
unpacks them with ``dpkg-deb -x``; fetches the scikit-learn and matplotlib wheels of ``WHEEL_PHOTOS`` with
``pip download --no-deps`` and reads their sample photos from the zip; adds the scikit-image photos of
``SKIMAGE_PHOTOS`` (scikit-image is installed with the ``eval`` extra); and writes::

    out_dir/images/<name>.jpg|png   downscaled so the longer side is <= max_side (1024)
    out_dir/manifest.json           per file: source, original path, author, licence, sha256, size, split
    out_dir/train.flist, val.flist  paths relative to out_dir (read with data.read_image_list)

Every photo is named in an explicit list below, chosen by looking at it: camera photographs only (no
drawings, renders, paintings, digital art, charts, screenshots, documents or calibration boards, nothing
with drawn overlays), one of each near-duplicate pair (stereo pairs, video frames, the same photo twice).
Licences come from the package's debian/copyright (per file where it names the file, else its
``Files: *`` paragraph), from a palapeli puzzle's ``.desktop`` file, or from the wheel's own notes.

JPEG sources are re-encoded as JPEG (quality 95, no chroma subsampling); PNG sources and the
scikit-image arrays are written as PNG. An RGB or grey-level photo that needs neither resizing nor
rotating is copied byte for byte. The train/val split is a pure function of the file names, their
sources and the seed: the 31 photos of the first corpus (``FIRST_CORPUS``) keep the split the first
corpus gave them, and the other photos are drawn, stratified by source, to make up the validation share
(at least ``MIN_VAL`` photos).

``build_demo_samples(out_dir)`` regenerates the bundled demo photos and masks of ``assets/samples``.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dualinpaint.data import write_flist
from dualinpaint.images import IMAGE_EXTENSIONS, atomic_write_bytes, open_image, save_image_atomic, to_rgb

# Photos named by file stem (author suffix "_by_Author" stripped, case-insensitive).
NAMED_PHOTOS: dict[str, tuple[str, ...]] = {
    "lomiri-wallpapers-16.04": (
        "Bridge",
        "Dragonfly",
        "Picture_0B",
        "Picture_1A",
        "Wine",
        "aitzgorri",
        "analogpattern",
        "free",
        "friends",
        "greentock",
        "life",
        "picosdeeuropa",
        "seeding",
        "sunset",
    ),
    "lomiri-wallpapers-20.04": ("Kleiber",),
    # the five puzzle photos; author, licence and origin are in each puzzle's .desktop file
    "palapeli-data": (
        "castle-maintenon",
        "cincinnati-bridge",
        "citrus-fruits",
        "european-honey-bee",
        "panther-chameleon-female",
    ),
}
# Every image under a folder of this name.
FOLDER_PHOTOS: dict[str, str] = {"mate-backgrounds": "nature"}
# Photos by exact path in the unpacked package: {package: {output name: path}}. opencv-doc's sample data
# (examples/) and the plain photographs among its tutorial figures (opencv4/html/).
_CV_DATA = "usr/share/doc/opencv-doc/examples/"
_CV_HTML = "usr/share/doc/opencv-doc/opencv4/html/"
PATH_PHOTOS: dict[str, dict[str, str]] = {
    "opencv-doc": {
        **{
            name: f"{_CV_DATA}data/{name}{ext}"
            for name, ext in (
                ("aero1", ".jpg"),
                ("aero3", ".jpg"),
                ("aloeL", ".jpg"),  # aloeR: the other view of the stereo pair
                ("apple", ".jpg"),
                ("baboon", ".jpg"),
                ("basketball1", ".png"),  # basketball2: the next video frame
                # blox.jpg and smarties.png look rendered (flat-shaded blocks; perfect glossy spheres)
                ("board", ".jpg"),
                ("box", ".png"),
                ("box_in_scene", ".png"),
                ("building", ".jpg"),
                ("butterfly", ".jpg"),
                ("chicky_512", ".png"),
                ("ela_original", ".jpg"),  # ela_modified: the same photo, retouched
                ("fruits", ".jpg"),
                ("graf1", ".png"),  # graf3: the same wall from another angle
                ("home", ".jpg"),
                ("left", ".jpg"),  # right: the other view of the stereo pair
                ("leuvenA", ".jpg"),  # leuvenB: the same street, another exposure
                ("messi5", ".jpg"),
                ("orange", ".jpg"),
                ("pca_test1", ".jpg"),
                ("rubberwhale1", ".png"),  # rubberwhale2: the next video frame
                ("squirrel_cls", ".jpg"),
                ("stuff", ".jpg"),
            )
        },
        "plant": f"{_CV_DATA}alphamat/input_images/plant.jpg",
        "superres_butterfly": f"{_CV_DATA}dnn_superres/butterfly.png",
        "hfs_000": f"{_CV_DATA}hfs/data/000.jpg",
        "hfs_001": f"{_CV_DATA}hfs/data/001.jpg",
        "hfs_002": f"{_CV_DATA}hfs/data/002.jpg",
        "reg_home": f"{_CV_DATA}reg/home.png",
        **{f"scenetext0{i}": f"{_CV_DATA}text/scenetext0{i}.jpg" for i in range(1, 7)},
        # 03 and 05 are flat signs filling the frame
        **{f"scenetext_word0{i}": f"{_CV_DATA}text/scenetext_segmented_word0{i}.jpg" for i in (1, 2, 4)},
        **{
            name: f"{_CV_HTML}{file}"
            for name, file in (
                ("portrait_227943776", "227943776_1.jpg"),
                ("portrait_230501201", "230501201_1.jpg"),
                ("pasture", "Histogram_Calculation_Original_Image.jpg"),
                ("glider", "Template_Matching_Original_Image.jpg"),
                ("astra_color", "astra_color.jpg"),
                ("copper_coins", "coins.jpg"),  # water_coins.jpg: the same file
                ("hand", "handSrc.jpg"),  # handDst.jpg: the same hand, moved
                ("double_decker_bus", "pexels_double_decker_bus.jpg"),
                ("campus", "resframe.jpg"),
                ("heath", "retina_TreeHdr_small.jpg"),
                ("space_shuttle", "space_shuttle.jpg"),
                ("lecture_hall", "studentsSample_input.jpg"),
            )
        },
    },
}
# Sample photos inside Python wheels (fetched with ``pip download --no-deps``): {distribution: {output name:
# path in the wheel, author, licence}}, as stated in sklearn/datasets/images/README.txt and, for
# grace_hopper.jpg (no note in matplotlib), the photo's Wikimedia Commons record.
WHEEL_PHOTOS: dict[str, dict[str, dict[str, str]]] = {
    "scikit-learn": {
        "china": {
            "path": "sklearn/datasets/images/china.jpg",
            "author": "danielbuechele (Flickr)",
            "license": "CC-BY-2.0",
        },
        "flower": {
            "path": "sklearn/datasets/images/flower.jpg",
            "author": "vultilion (Flickr; README.txt credits danielbuechele)",
            "license": "CC-BY-2.0",
        },
    },
    "matplotlib": {
        "grace_hopper": {
            "path": "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
            "author": "U.S. Navy",
            "license": "public domain (official U.S. Navy photograph)",
        },
    },
}
# scikit-image photos: author and licence as stated in the skimage.data docstrings (scikit-image 0.26).
# ``function`` (default: the name) and ``item`` (an element of a returned tuple) say how to get the array.
SKIMAGE_PHOTOS: dict[str, dict] = {
    "astronaut": {
        "author": "NASA",
        "license": "public domain (NASA Great Images; no known copyright restrictions)",
    },
    "chelsea": {"author": "Stefan van der Walt", "license": "CC0-1.0"},
    "coffee": {"author": "Rachel Michetti (courtesy of Pikolo Espresso Bar)", "license": "CC0-1.0"},
    "rocket": {"author": "SpaceX", "license": "public domain (released by SpaceX)"},
    "camera": {"author": "Lav Varshney", "license": "CC0-1.0"},
    "brick": {"author": "CC0Textures (Bricks25)", "license": "CC0-1.0"},
    "coins": {"author": "Brooklyn Museum Collection", "license": "no known copyright restrictions"},
    "grass": {"author": "linolafett (DeviantArt)", "license": "CC0-1.0"},
    "gravel": {"author": "CC0Textures (Gravel04)", "license": "CC0-1.0"},
    "moon": {"author": None, "license": "not stated (shipped in scikit-image, BSD-3-Clause)"},
    "clock": {"author": "Stefan van der Walt", "license": "public domain (released by the photographer)"},
    "hubble_deep_field": {"author": "NASA", "license": "public domain (NASA media guidelines)"},
    "immunohistochemistry": {
        "author": "Center for Microscopy And Molecular Imaging (CMMI)",
        "license": "no known copyright restrictions",
    },
    "retina": {"author": "Mikael Häggström", "license": "CC0-1.0"},
    "motorcycle_left": {
        "function": "stereo_motorcycle",
        "item": 0,  # the right view would be a near-duplicate
        "author": "N. Nesic, P. Westling, X. Wang, Y. Kitajima, G. Krathwohl, D. Scharstein (Middlebury)",
        "license": "not stated (Middlebury stereo benchmark, via scikit-image)",
    },
}
SKIMAGE_SOURCE = "scikit-image"
# The first corpus (31 photos): they keep the split the first corpus's rule gives them (for the default
# seed and validation fraction, its six validation photos stay in validation), so a model trained on the
# first corpus's training photos never meets them in the new validation set.
FIRST_CORPUS: frozenset[str] = frozenset(
    f"images/{name}"
    for name in (
        "aitzgorri.jpg",
        "analogpattern.jpg",
        "Aqua.jpg",
        "astronaut.png",
        "Blinds.jpg",
        "Bridge.jpg",
        "chelsea.png",
        "coffee.png",
        "Dragonfly.jpg",
        "Dune.jpg",
        "free.jpg",
        "FreshFlower.jpg",
        "friends.jpg",
        "Garden.jpg",
        "GreenMeadow.jpg",
        "greentock.jpg",
        "Kleiber.jpg",
        "LadyBird.jpg",
        "life.jpg",
        "picosdeeuropa.jpg",
        "Picture_0B.jpg",
        "Picture_1A.jpg",
        "RainDrops.jpg",
        "rocket.png",
        "seeding.jpg",
        "Storm.jpg",
        "sunset.jpg",
        "TwoWings.jpg",
        "Wine.jpg",
        "Wood.jpg",
        "YellowFlower.jpg",
    )
)
MIN_VAL = 20
JPEG_PARAMS = {"quality": 95, "subsampling": 0, "optimize": True}
MANIFEST_VERSION = 1


class CorpusError(RuntimeError):
    """The corpus cannot be built; the message says which package or photo and why."""


# ---------------------------------------------------------------------------------------------------------
# pure helpers


def parse_photo_name(stem: str) -> tuple[str, str | None]:
    """Split a wallpaper file stem into ``(name, author)``.

    ``"Bridge_by_Sander_Klootwijk"`` → ``("Bridge", "Sander Klootwijk")``; ``"Painting-Colors_by__x"`` →
    ``("Painting-Colors", "x")``; a stem without ``_by_`` (any case) → ``(stem, None)``.
    """
    at = stem.lower().find("_by_")
    if at <= 0:
        return stem, None
    name, author = stem[:at], stem[at + 4 :]
    author = " ".join(author.replace("_", " ").split())
    return name, author or None


def _copyright_paragraphs(text: str) -> list[tuple[list[str], str, str]]:
    """``(file patterns, copyright, licence)`` of each ``Files:`` paragraph of a debian/copyright."""
    paragraphs = []
    for paragraph in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, list[str]] = {}
        key = None
        for line in paragraph.split("\n"):
            if line[:1] in (" ", "\t") and key is not None:
                fields[key].append(line.strip())
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = [value.strip()]
        if "files" not in fields:
            continue
        copyright_ = "; ".join(v for v in fields.get("copyright", []) if v).rstrip("´")
        paragraphs.append((" ".join(fields["files"]).split(), copyright_, fields.get("license", [""])[0]))
    return paragraphs


def parse_debian_copyright(text: str) -> dict[str, dict[str, str]]:
    """Map file *base names* to ``{"copyright", "license"}`` from a machine-readable debian/copyright.

    Only ``Files:`` paragraphs naming files (not ``*`` patterns) are used; continuation lines of
    ``Files:`` and ``Copyright:`` are joined.
    """
    result: dict[str, dict[str, str]] = {}
    for names, copyright_, license_ in _copyright_paragraphs(text):
        for name in names:
            if "*" not in name and "?" not in name:
                result[Path(name).name] = {"copyright": copyright_, "license": license_}
    return result


def parse_debian_copyright_default(text: str) -> dict[str, str]:
    """``{"copyright", "license"}`` of the ``Files: *`` paragraph (the general licence), or ``{}``."""
    for names, copyright_, license_ in _copyright_paragraphs(text):
        if names == ["*"]:
            return {"copyright": copyright_, "license": license_}
    return {}


def parse_desktop_entry(text: str) -> dict[str, str]:
    """The ``key=value`` pairs of the ``[Desktop Entry]`` group of a .desktop file (localised keys too)."""
    entry: dict[str, str] = {}
    group = None
    for line in text.replace("\r\n", "\n").split("\n"):
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            group = line[1:-1]
        elif group == "Desktop Entry" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            entry[key.strip()] = value.strip()
    return entry


def desktop_legal(entry: Mapping[str, str]) -> dict[str, str]:
    """Author, copyright (author and origin) and licence stated by a KDE plugin .desktop entry (palapeli).

    Empty when the entry names no author.
    """
    author = entry.get("X-KDE-PluginInfo-Author", "")
    if not author:
        return {}
    website = entry.get("X-KDE-PluginInfo-Website", "")
    legal = {"author": author, "copyright": f"{author} ({website})" if website else author}
    if entry.get("X-KDE-PluginInfo-License"):
        legal["license"] = entry["X-KDE-PluginInfo-License"]
    return legal


def _package_images(root: Path) -> list[Path]:
    """Image files in an unpacked package, documentation excluded, as paths relative to ``root``."""
    return sorted(
        p.relative_to(root)
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and "doc" not in p.relative_to(root).parts[:3]
    )


def find_named_photos(root: Path, names: Sequence[str], package: str) -> dict[str, Path]:
    """Find each of ``names`` among the images unpacked under ``root`` (stem without author, any case).

    Returns ``{name: path relative to root}``. When a name matches several files the one with the most
    pixels is taken. Raises ``CorpusError`` naming the missing photos and listing what the package has.
    """
    root = Path(root)
    images = _package_images(root)
    by_name: dict[str, list[Path]] = {}
    for rel in images:
        name, _ = parse_photo_name(rel.stem)
        by_name.setdefault(name.lower(), []).append(rel)
        by_name.setdefault(rel.stem.lower(), []).append(rel)
    found, missing = {}, []
    for name in names:
        matches = sorted(set(by_name.get(name.lower(), [])))
        if not matches:
            missing.append(name)
        elif len(matches) == 1:
            found[name] = matches[0]
        else:
            found[name] = max(matches, key=lambda rel: (_pixels(root / rel), str(rel)))
    if missing:
        have = ", ".join("/" + str(rel) for rel in images) or "no images at all"
        raise CorpusError(f"package {package} has no photo named {', '.join(missing)}; it contains: {have}")
    return found


def find_folder_photos(root: Path, folder: str, package: str) -> list[Path]:
    """All images under a folder named ``folder`` in the unpacked package, relative to ``root``, sorted."""
    images = _package_images(Path(root))
    found = [rel for rel in images if folder in rel.parts[:-1]]
    if not found:
        have = ", ".join("/" + str(rel) for rel in images) or "no images at all"
        raise CorpusError(f"package {package} has no images under a {folder}/ folder; it contains: {have}")
    return found


def find_path_photos(root: Path, paths: Mapping[str, str], package: str) -> dict[str, Path]:
    """Check that each of ``paths`` (``{name: path relative to root}``) is a file in the unpacked package.

    Returns ``{name: Path(path)}``. Raises ``CorpusError`` naming the missing paths and listing the images
    in their folders.
    """
    root = Path(root)
    missing = [path for path in paths.values() if not (root / path).is_file()]
    if missing:
        have = []
        for folder in sorted({(root / path).parent for path in missing}):
            if folder.is_dir():
                have += [
                    "/" + p.relative_to(root).as_posix()
                    for p in sorted(folder.iterdir())
                    if p.suffix.lower() in IMAGE_EXTENSIONS
                ]
        listing = ", ".join(have[:60]) + (f" and {len(have) - 60} more" if len(have) > 60 else "")
        raise CorpusError(
            f"package {package} has no file {', '.join('/' + p for p in missing)}; "
            f"those folders contain: {listing or 'no images at all'}"
        )
    return {name: Path(path) for name, path in paths.items()}


def extract_wheel_members(wheel: Path, members: Sequence[str], dest: Path) -> dict[str, Path]:
    """Copy ``members`` (paths inside the wheel, a zip file) to ``dest/<member>``; returns their paths.

    Raises ``CorpusError`` naming the missing members and listing the images the wheel has.
    """
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = set(zf.namelist())
            missing = [m for m in members if m not in names]
            if missing:
                have = sorted(n for n in names if Path(n).suffix.lower() in IMAGE_EXTENSIONS)
                raise CorpusError(
                    f"wheel {Path(wheel).name} has no {', '.join(missing)}; its images: "
                    f"{', '.join(have) or 'none'}"
                )
            out = {}
            for member in members:
                target = Path(dest) / member
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(member))
                out[member] = target
            return out
    except (OSError, zipfile.BadZipFile) as err:
        raise CorpusError(f"cannot read wheel {wheel}: {err}") from None


def _pixels(path: Path) -> int:
    try:
        with Image.open(path) as im:
            return im.size[0] * im.size[1]
    except OSError:
        return 0


def assign_splits(
    sources: Mapping[str, str],
    val_fraction: float = 0.2,
    seed: int = 0,
    min_val: int = 4,
    pinned: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Assign each file name ``"train"`` or ``"val"``, deterministically from the names, sources and seed.

    ``sources`` maps file name → source. The validation set has ``round(n * val_fraction)`` files but at
    least ``min_val`` (none when ``val_fraction`` is 0), and is stratified by source (largest remainder).
    Every source keeps at least one training file where possible, and at least one file is kept for
    training overall. Within a source, the validation files are drawn with a generator seeded by
    ``(seed, crc32(source))`` over the sorted names, so sources do not influence each other.

    ``pinned`` maps file names to the split they must have (names not in ``sources`` are ignored); pinned
    validation files count towards the validation set and their source's share, and the rest are drawn
    from the files not pinned. Without ``pinned`` the split is the one this function always gave.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction!r} must be in [0, 1)")
    pinned = {name: split for name, split in (pinned or {}).items() if name in sources}
    bad = {name: split for name, split in pinned.items() if split not in ("train", "val")}
    if bad:
        raise ValueError(f"pinned splits must be 'train' or 'val', not {bad}")
    groups: dict[str, list[str]] = {}
    for name in sorted(sources):
        groups.setdefault(sources[name], []).append(name)
    n = len(sources)
    n_val = 0 if val_fraction == 0 or n == 0 else min(max(min_val, round(n * val_fraction)), n - 1)
    fixed_val = {s: sum(pinned.get(name) == "val" for name in g) for s, g in groups.items()}
    free = {s: sum(name not in pinned for name in g) for s, g in groups.items()}
    n_val = max(n_val, sum(fixed_val.values()))
    quota = {s: n_val * len(g) / n for s, g in groups.items()} if n else {}
    take = dict(fixed_val)
    for _ in range(n_val - sum(take.values())):
        room = [s for s in groups if take[s] - fixed_val[s] < free[s]]
        open_ = [s for s in room if take[s] < len(groups[s]) - 1]  # each source keeps one in train
        if not open_:
            open_ = room
        if not open_:
            break
        best = max(open_, key=lambda s: (quota[s] - take[s], len(groups[s]), s))
        take[best] += 1
    split = {}
    for source in sorted(groups):
        names = [name for name in groups[source] if name not in pinned]
        rng = np.random.default_rng([seed, zlib.crc32(source.encode("utf-8"))])
        drawn = rng.permutation(len(names))[: take[source] - fixed_val[source]].tolist()
        val = {names[i] for i in drawn}
        split.update({name: "val" if name in val else "train" for name in names})
        split.update({name: pinned[name] for name in groups[source] if name in pinned})
    return {name: split[name] for name in sorted(split)}


def write_manifest(out_dir: Path, records: Sequence[Mapping], info: Mapping | None = None) -> dict:
    """Write ``manifest.json``, ``train.flist`` and ``val.flist`` in ``out_dir`` (atomically).

    ``records`` are per-file dicts with at least ``file`` (relative to ``out_dir``) and ``split``;
    they are sorted by ``file``. ``info`` adds top-level fields. Returns the manifest written.
    """
    out_dir = Path(out_dir)
    records = sorted((dict(r) for r in records), key=lambda r: r["file"])
    for r in records:
        if r.get("split") not in ("train", "val"):
            raise ValueError(f"record {r.get('file')!r} has split={r.get('split')!r}, not train/val")
    counts = {"total": len(records)}
    for split in ("train", "val"):
        counts[split] = sum(r["split"] == split for r in records)
    by_source: dict[str, dict[str, int]] = {}
    for r in records:
        c = by_source.setdefault(str(r.get("source")), {"train": 0, "val": 0})
        c[r["split"]] += 1
    manifest = {
        "version": MANIFEST_VERSION,
        **(info or {}),
        "counts": counts,
        "by_source": dict(sorted(by_source.items())),
        "total_bytes": sum(int(r.get("bytes", 0)) for r in records),
        "files": records,
    }
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    out_dir.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        write_flist([out_dir / r["file"] for r in records if r["split"] == split], out_dir / f"{split}.flist")
    atomic_write_bytes(out_dir / "manifest.json", text.encode("utf-8"))
    for name in ("manifest.json", "train.flist", "val.flist"):
        (out_dir / name).chmod(0o644)
    return manifest


def encode_photo(image: Image.Image, fmt: str, max_side: int | None) -> tuple[bytes, tuple[int, int]]:
    """RGB-convert, downscale (Lanczos) so the longer side is <= ``max_side``, encode as JPEG or PNG."""
    image = to_rgb(image)
    w, h = image.size
    if max_side is not None and max(w, h) > max_side:
        scale = max_side / max(w, h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    buf = io.BytesIO()
    if fmt == "JPEG":
        image.save(buf, format="JPEG", **JPEG_PARAMS)
    else:
        image.save(buf, format="PNG", optimize=True)
    return buf.getvalue(), image.size


# ---------------------------------------------------------------------------------------------------------
# Debian packages


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    tool = shutil.which(cmd[0])
    if tool is None:
        raise CorpusError(
            f"{cmd[0]} not found: building the corpus needs Debian's apt-get and dpkg-deb, and pip"
        )
    proc = subprocess.run([tool, *cmd[1:]], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.startswith("E:")]
        lines = lines or (proc.stderr + proc.stdout).strip().splitlines()[-2:]
        raise CorpusError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}): {' '.join(lines)}")
    return proc.stdout


def fetch_package(package: str, workdir: Path) -> tuple[Path, str]:
    """Download ``package`` with ``apt-get download`` into ``workdir`` (a .deb already there is reused) and
    unpack it with ``dpkg-deb -x``. Returns ``(unpacked root, version)``."""
    debs = workdir / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        try:
            _run(["apt-get", "download", package], cwd=debs)
        except CorpusError as err:
            raise CorpusError(
                f"cannot download Debian package {package}: {err} (are the package lists there? "
                "run `apt-get update` first)"
            ) from None
        found = sorted(debs.glob(f"{package}_*.deb"))
        if not found:
            raise CorpusError(f"apt-get download {package} left no {package}_*.deb in {debs}")
    deb = found[-1]
    version = _run(["dpkg-deb", "-f", str(deb), "Version"]).strip()
    root = workdir / "unpacked" / package
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    _run(["dpkg-deb", "-x", str(deb), str(root)])
    return root, version


def fetch_wheel(distribution: str, workdir: Path) -> tuple[Path, str]:
    """Download the wheel of ``distribution`` for this Python with ``pip download --no-deps`` into
    ``workdir/wheels`` (a wheel already there is reused). Returns ``(wheel, version)``."""
    wheels = Path(workdir) / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    pattern = f"{distribution.replace('-', '_')}-*.whl"
    found = sorted(wheels.glob(pattern))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        try:
            _run([*cmd, "--disable-pip-version-check", "--dest", str(wheels), distribution])
        except CorpusError as err:
            raise CorpusError(f"cannot download the {distribution} wheel: {err}") from None
        found = sorted(wheels.glob(pattern))
        if not found:
            raise CorpusError(f"pip download {distribution} left no {pattern} in {wheels}")
    wheel = found[-1]
    return wheel, wheel.name.split("-")[1]


def _copyright_of(root: Path, package: str) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Per-file entries and the general (``Files: *``) licence of the package's debian/copyright."""
    path = root / "usr/share/doc" / package / "copyright"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}, {}
    return parse_debian_copyright(text), parse_debian_copyright_default(text)


def _desktop_legal_of(path: Path) -> dict[str, str]:
    """Legal notes of a ``<photo>.desktop`` file next to the photo (palapeli puzzles), else ``{}``."""
    try:
        text = path.with_suffix(".desktop").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    return desktop_legal(parse_desktop_entry(text))


def _export_file(src: Path, dest_stem: Path, max_side: int | None) -> tuple[Path, bytes, tuple, tuple]:
    """Encode one package photo for ``dest_stem`` (suffix chosen here).

    Returns ``(path, bytes, size written, original size)``.
    """
    try:
        with Image.open(src) as probe:
            fmt, size, mode = probe.format, probe.size, probe.mode
            orientation = probe.getexif().get(0x0112, 1)
    except OSError as err:
        raise CorpusError(f"cannot read {src}: {err}") from None
    fmt = "JPEG" if fmt in ("JPEG", "MPO") else "PNG"
    dest = dest_stem.parent / (dest_stem.name + (".jpg" if fmt == "JPEG" else ".png"))
    original_size, fits = size, max_side is None or max(size) <= max_side
    plain = mode in ("RGB", "L") and src.suffix.lower() in (".jpg", ".jpeg", ".png")
    if fits and orientation in (None, 1) and plain:
        data = src.read_bytes()
    else:
        try:
            data, size = encode_photo(open_image(src), fmt, max_side)
        except ValueError as err:
            raise CorpusError(str(err)) from None
    return dest, data, size, original_size


def build_debian_photos(
    out_dir: str | Path,
    *,
    workdir: str | Path | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    max_side: int | None = 1024,
) -> dict:
    """Build the real-photo corpus in ``out_dir`` and return its manifest (see the module docstring).

    ``workdir`` keeps the downloaded .deb files and wheels and their unpacked trees (and reuses the
    downloads next time); by default a temporary folder is used and removed. Raises ``CorpusError`` for a
    package or wheel that cannot be downloaded or a photo that is not where expected.
    """
    if max_side is not None and max_side < 16:
        raise ValueError(f"max_side={max_side!r} must be >= 16 or None")
    out_dir = Path(out_dir)
    images_dir = out_dir / "images"
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="dualinpaint-corpus-") as tmp:
            return _build(out_dir, images_dir, Path(tmp), val_fraction, seed, max_side)
    return _build(out_dir, images_dir, Path(workdir), val_fraction, seed, max_side)


def _build(
    out_dir: Path, images_dir: Path, workdir: Path, val_fraction: float, seed: int, max_side: int | None
) -> dict:
    # 1. find everything before writing anything
    plan = []  # (source, root, path relative to root, original path, output name, author, licence info)
    versions = {}
    for package in sorted({*NAMED_PHOTOS, *FOLDER_PHOTOS, *PATH_PHOTOS}):
        root, versions[package] = fetch_package(package, workdir)
        chosen: list[tuple[str | None, Path]] = []  # (output name or None for the file's own, path)
        if package in NAMED_PHOTOS:
            found = find_named_photos(root, NAMED_PHOTOS[package], package)
            chosen += [(None, rel) for rel in found.values()]
        if package in FOLDER_PHOTOS:
            chosen += [(None, rel) for rel in find_folder_photos(root, FOLDER_PHOTOS[package], package)]
        if package in PATH_PHOTOS:
            chosen += list(find_path_photos(root, PATH_PHOTOS[package], package).items())
        per_file, general = _copyright_of(root, package)
        for out_name, rel in chosen:
            name, author = parse_photo_name(rel.stem)
            legal = per_file.get(rel.name) or _desktop_legal_of(root / rel) or general
            plan.append((package, root, rel, "/" + rel.as_posix(), out_name or name, author, legal))
    for dist, photos in sorted(WHEEL_PHOTOS.items()):
        wheel, versions[dist] = fetch_wheel(dist, workdir)
        root = workdir / "unpacked" / dist
        members = extract_wheel_members(wheel, [meta["path"] for meta in photos.values()], root)
        for name, meta in photos.items():
            legal = {"copyright": meta["author"], "license": meta["license"]}
            rel = members[meta["path"]].relative_to(root)
            plan.append((dist, root, rel, meta["path"], name, meta["author"], legal))
    import skimage
    import skimage.data

    versions[SKIMAGE_SOURCE] = skimage.__version__

    # 2. encode the images: (destination, bytes, size, original size, provenance)
    encoded = []
    for source, root, rel, original, name, author, legal in plan:
        dest, data, size, original_size = _export_file(root / rel, images_dir / name, max_side)
        about = {"source": source, "original_path": original, "author": author, **legal}
        encoded.append((dest, data, size, original_size, about))
    for name, meta in SKIMAGE_PHOTOS.items():
        function = meta.get("function", name)
        array = getattr(skimage.data, function)()
        call = f"skimage.data.{function}()"
        if "item" in meta:
            array, call = array[meta["item"]], f"{call}[{meta['item']}]"
        image = Image.fromarray(np.asarray(array))
        data, size = encode_photo(image, "PNG", max_side)
        about = {"source": SKIMAGE_SOURCE, "original_path": call, "author": meta["author"]}
        about.update(copyright=meta["author"], license=meta["license"])
        encoded.append((images_dir / f"{name}.png", data, size, image.size, about))

    records, seen = [], {}
    for dest, data, (w, h), (w0, h0), about in encoded:
        file = dest.relative_to(out_dir).as_posix()
        if file.lower() in seen:
            raise CorpusError(f"two photos would be written as {file}: {seen[file.lower()]} and {about}")
        seen[file.lower()] = about
        records.append(
            {
                "file": file,
                "source": about["source"],
                "original_path": about["original_path"],
                "author": about["author"],
                "copyright": about.get("copyright") or None,
                "license": about.get("license") or None,
                "sha256": hashlib.sha256(data).hexdigest(),
                "bytes": len(data),
                "width": w,
                "height": h,
                "original_width": w0,
                "original_height": h0,
            }
        )
    for dest, data, *_ in encoded:
        atomic_write_bytes(dest, data)
        dest.chmod(0o644)  # atomic_write_bytes leaves mkstemp's 0600

    # 3. split, manifest, file lists; drop images a previous build listed but this one does not
    sources = {r["file"]: r["source"] for r in records}
    first = assign_splits({f: s for f, s in sources.items() if f in FIRST_CORPUS}, val_fraction, seed)
    split = assign_splits(sources, val_fraction, seed, min_val=MIN_VAL, pinned=first)
    for r in records:
        r["split"] = split[r["file"]]
    _remove_stale(out_dir, {r["file"] for r in records})
    info = {
        "name": "debian-photos",
        "built_by": "dualinpaint.corpus.build_debian_photos",
        "max_side": max_side,
        "val_fraction": val_fraction,
        "seed": seed,
        "min_val": MIN_VAL,
        "encoding": "JPEG sources: JPEG quality 95, 4:4:4; PNG sources and scikit-image: PNG",
        "sources": versions,
    }
    return write_manifest(out_dir, records, info)


def _remove_stale(out_dir: Path, keep: set[str]) -> None:
    try:
        old = json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
        old_files = {r["file"] for r in old.get("files", [])}
    except (OSError, ValueError, KeyError, TypeError):
        return
    for file in sorted(old_files - keep):
        path = (out_dir / file).resolve()
        if out_dir.resolve() in path.parents:
            path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------------
# bundled demo samples (src/dualinpaint/assets/samples)

# Hand-placed hole shapes in 256×256 coordinates: ("polygon", points), ("ellipse", box) or
# ("stroke", points, width). Each removes a plausible object.
SAMPLE_MASKS: dict[str, list[tuple]] = {
    # the space-shuttle model behind the astronaut's right shoulder
    "astronaut": [
        ("polygon", [(196, 0), (226, 0), (230, 40), (236, 95), (240, 118), (238, 142), (180, 142), (172, 120),
                     (182, 92), (188, 40)]),
    ],
    # the spoon on the saucer: handle and bowl
    "coffee": [
        ("stroke", [(200, 42), (195, 80), (187, 118), (180, 150)], 18),
        ("ellipse", (137, 145, 201, 214)),
    ],
    # the cat's left eye, plus a brush stroke across the whiskers below it
    "chelsea": [
        ("ellipse", (44, 66, 124, 130)),
        ("stroke", [(8, 186), (40, 176), (74, 172), (104, 178)], 14),
    ],
}  # fmt: skip


def draw_mask(shapes: Sequence[tuple], size: int = 256, supersample: int = 4) -> Image.Image:
    """Render hole shapes (see ``SAMPLE_MASKS``) as an L-mode mask, white = hole, with smooth outlines."""
    big = Image.new("L", (size * supersample, size * supersample), 0)
    draw = ImageDraw.Draw(big)
    s = supersample
    for shape in shapes:
        kind = shape[0]
        if kind == "polygon":
            draw.polygon([(x * s, y * s) for x, y in shape[1]], fill=255)
        elif kind == "ellipse":
            draw.ellipse([v * s for v in shape[1]], fill=255)
        elif kind == "stroke":
            points, width = [(x * s, y * s) for x, y in shape[1]], shape[2] * s
            draw.line(points, fill=255, width=width, joint="curve")
            r = width / 2
            for x, y in (points[0], points[-1]):
                draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
        else:
            raise ValueError(f"unknown mask shape {kind!r}")
    small = big.resize((size, size), Image.Resampling.BOX)
    return small.point(lambda v: 255 if v >= 128 else 0)


def centre_square(image: Image.Image, size: int = 256) -> Image.Image:
    """Resize the shorter side to ``size`` (Lanczos) and take the centre square."""
    image = to_rgb(image)
    w, h = image.size
    scale = size / min(w, h)
    image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.LANCZOS)
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    return image.crop((left, top, left + size, top + size))


def build_demo_samples(out_dir: str | Path, size: int = 256) -> dict[str, float]:
    """Write ``<name>.jpg`` (quality 92) and ``<name>_mask.png`` for each ``SAMPLE_MASKS`` photo.

    Returns the hole fraction of each mask.
    """
    import skimage.data

    out_dir = Path(out_dir)
    fractions = {}
    for name, shapes in SAMPLE_MASKS.items():
        photo = centre_square(Image.fromarray(np.asarray(getattr(skimage.data, name)())), size)
        mask = draw_mask([_scale_shape(shape, size / 256) for shape in shapes], size)
        save_image_atomic(photo, out_dir / f"{name}.jpg", quality=92, optimize=True)
        save_image_atomic(mask.convert("1"), out_dir / f"{name}_mask.png", optimize=True)
        fractions[name] = float(np.asarray(mask).mean() / 255.0)
    return fractions


def _scale_shape(shape: tuple, k: float) -> tuple:
    if k == 1:
        return shape
    kind = shape[0]
    if kind == "polygon":
        return (kind, [(x * k, y * k) for x, y in shape[1]])
    if kind == "ellipse":
        return (kind, tuple(v * k for v in shape[1]))
    return (kind, [(x * k, y * k) for x, y in shape[1]], max(1, round(shape[2] * k)))
