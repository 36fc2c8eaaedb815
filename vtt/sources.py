"""Where source images come from: split lists, ImageNet folders, the demo set, plain folders.

Pure Python (no Django, no torch), so it can be read and tested on its own.

The split lists of Larsson et al. 2016 (``data/splits/ctest10k.txt``, ``cval1k.txt``)
have one line per image::

    /<wnid>/ILSVRC2012_val_<8 digits>.JPEG <class index 0-999>

`parse_split` reads them strictly: a line that does not match is an error naming the
file and line number, never a silent skip. An ImageNet validation folder may be laid
out flat (``DIR/ILSVRC2012_val_00000293.JPEG``) or by class (``DIR/n01440764/...``);
`resolve_imagenet` finds each listed file under either layout and names the missing.
"""
from __future__ import annotations

import csv
import random
import re
from dataclasses import dataclass
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SPLITS_DIR = BASE_DIR / "data" / "splits"
DEMO_DIR = BASE_DIR / "data" / "demo"
SPLIT_NAMES = ("ctest10k", "cval1k")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

_LINE = re.compile(r"^/(?P<wnid>n\d{8})/(?P<file>ILSVRC2012_val_(?P<index>\d{8})\.JPEG) (?P<cls>\d+)$")


class SourceError(ValueError):
    """A split list, folder or manifest that cannot be used as given."""


@dataclass(frozen=True)
class SplitEntry:
    """One line of a split list."""

    wnid: str          # e.g. "n01440764"
    filename: str      # e.g. "ILSVRC2012_val_00000293.JPEG"
    class_index: int   # 0..999
    line: int          # 1-based line number in the list

    @property
    def key(self) -> str:
        """The path stored for this image: ``<wnid>/<filename>``."""
        return f"{self.wnid}/{self.filename}"


@dataclass(frozen=True)
class SourceRef:
    """A source image to take into an experiment: where it is and what is known of it."""

    split: str                 # "demo", "ctest10k", "cval1k" or "folder:<dir>"
    key: str                   # stable path within the split
    path: Path                 # file on disk
    class_index: int | None = None


def parse_split(path: str | Path) -> list[SplitEntry]:
    """Read a split list, rejecting malformed lines, bad class indices and duplicates."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SourceError(f"split list not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not a UTF-8 text file ({exc})") from None
    entries: list[SplitEntry] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise SourceError(
                f"{path}:{number}: expected '/<wnid>/ILSVRC2012_val_<8 digits>.JPEG <class 0-999>', got {raw!r}"
            )
        class_index = int(match["cls"])
        if class_index > 999:
            raise SourceError(f"{path}:{number}: class index {class_index} is outside 0-999")
        if match["index"] == "00000000" or int(match["index"]) > 50000:
            raise SourceError(f"{path}:{number}: {match['file']} is not an ImageNet validation index (1-50000)")
        if match["file"] in seen:
            raise SourceError(f"{path}:{number}: {match['file']} already listed on line {seen[match['file']]}")
        seen[match["file"]] = number
        entries.append(SplitEntry(match["wnid"], match["file"], class_index, number))
    if not entries:
        raise SourceError(f"{path}: the split list is empty")
    return entries


def select(items: list, limit: int | None, seed: int) -> list:
    """``limit`` items drawn without replacement by ``seed`` (all of them if no limit), in list order.

    The draw depends only on the list and the seed, never on what exists on disk, so
    the same seed always picks the same images (PixColor's protocol: 500 of ctest10k).
    """
    if limit is None or limit >= len(items):
        return list(items)
    if limit < 1:
        raise SourceError(f"limit must be a positive integer, got {limit}")
    chosen = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in chosen]


def resolve_imagenet(entries: list[SplitEntry], root: str | Path, split: str) -> list[SourceRef]:
    """Find each entry under an ImageNet val folder (flat or by wnid); name the missing ones."""
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"ImageNet validation folder not found: {root}")
    refs, missing = [], []
    for entry in entries:
        for candidate in (root / entry.wnid / entry.filename, root / entry.filename):
            if candidate.is_file():
                refs.append(SourceRef(split, entry.key, candidate, entry.class_index))
                break
        else:
            missing.append(entry.key)
    if missing:
        shown = ", ".join(missing[:10]) + (f", ... ({len(missing) - 10} more)" if len(missing) > 10 else "")
        raise SourceError(
            f"{len(missing)} of {len(entries)} {split} images are missing from {root} "
            f"(looked for DIR/<wnid>/<file> and DIR/<file>): {shown}"
        )
    return refs


def split_sources(split: str, imagenet_val: str | Path, *, limit: int | None, seed: int) -> list[SourceRef]:
    """The images of ``ctest10k`` or ``cval1k``, drawn by ``limit`` and ``seed``, found on disk."""
    if split not in SPLIT_NAMES:
        raise SourceError(f"unknown split {split!r} (known: {', '.join(SPLIT_NAMES)})")
    entries = select(parse_split(SPLITS_DIR / f"{split}.txt"), limit, seed)
    return resolve_imagenet(entries, imagenet_val, split)


def demo_manifest(demo_dir: Path = DEMO_DIR) -> list[dict[str, str]]:
    """Rows of the demo set's attribution manifest (``photos.csv``)."""
    path = demo_dir / "photos.csv"
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise SourceError(f"demo manifest not found: {path} (rebuild with python data/demo/build.py)") from None
    for number, row in enumerate(rows, start=2):
        if row.get("split") not in {"train", "test"} or not row.get("file"):
            raise SourceError(f"{path}:{number}: each row needs a file and a split of train or test")
    return rows


def demo_sources(part: str = "test", *, limit: int | None = None, seed: int = 0) -> list[SourceRef]:
    """The demo photos of one part: ``test`` (rated) or ``train`` (the demo models fit on these)."""
    if part not in {"train", "test"}:
        raise SourceError(f"demo part must be 'train' or 'test', got {part!r}")
    rows = [row for row in demo_manifest() if row["split"] == part]
    refs = []
    for row in select(rows, limit, seed):
        path = DEMO_DIR / "photos" / row["file"]
        if not path.is_file():
            raise SourceError(f"demo photo missing: {path} (rebuild with python data/demo/build.py)")
        refs.append(SourceRef("demo", row["file"], path))
    return refs


def folder_sources(folder: str | Path, *, limit: int | None = None, seed: int = 0) -> list[SourceRef]:
    """Every image file under ``folder`` (recursive, sorted), keyed by its relative path."""
    root = Path(folder).resolve()
    if not root.is_dir():
        raise SourceError(f"image folder not found: {folder}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SourceError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
    split = f"folder:{root}"
    return [SourceRef(split, p.relative_to(root).as_posix(), p) for p in select(files, limit, seed)]


def resolve(split: str, *, imagenet_val: str | Path | None = None, limit: int | None = None, seed: int = 0) -> list[SourceRef]:
    """Dispatch on the ``--split`` value of ``generate_pairs``."""
    if split == "demo":
        return demo_sources("test", limit=limit, seed=seed)
    if split.startswith("folder:"):
        return folder_sources(split.removeprefix("folder:"), limit=limit, seed=seed)
    if split in SPLIT_NAMES:
        if imagenet_val is None:
            raise SourceError(f"--split {split} needs --imagenet-val DIR (an ImageNet validation folder)")
        return split_sources(split, imagenet_val, limit=limit, seed=seed)
    raise SourceError(f"unknown split {split!r}: use demo, ctest10k, cval1k or folder:PATH")


def locate(split: str, keys: list[str], *, imagenet_val: str | Path | None = None) -> dict[str, Path]:
    """The files of already registered sources (``keys`` of ``split``), for re-reading them."""
    if split == "demo":
        refs = demo_sources("test") + demo_sources("train")
    elif split.startswith("folder:"):
        refs = folder_sources(split.removeprefix("folder:"))
    elif split in SPLIT_NAMES:
        if imagenet_val is None:
            raise SourceError(f"the images of {split} are read from --imagenet-val DIR")
        wanted = set(keys)
        entries = [e for e in parse_split(SPLITS_DIR / f"{split}.txt") if e.key in wanted]
        refs = resolve_imagenet(entries, imagenet_val, split)
    else:
        raise SourceError(f"unknown split {split!r}")
    paths = {ref.key: ref.path for ref in refs}
    missing = [key for key in keys if key not in paths]
    if missing:
        raise SourceError(f"{len(missing)} registered {split} images are no longer found: {', '.join(missing[:10])}")
    return paths
