"""From a source file to the JPEG bytes a rater sees, by one code path for both images of a pair.

Preprocessing (recorded on the experiment by `PREPROCESSING`):

1. Decode with Pillow, apply the EXIF orientation, convert an embedded ICC profile to
   sRGB, and refuse what is not a usable colour photograph: unreadable or truncated
   files, grayscale or CMYK files, images whose shorter side is under `MIN_SIDE`, and
   RGB files without colour (no pixel with |a*| or |b*| above 5, Zhang et al.'s rule).
2. Resize the shorter side to ``size`` (bicubic, antialiased) and centre-crop a square,
   the 256x256 presentation of Zhang et al. 2016.
3. Convert to CIE Lab (D65). The colorizer sees L* only.

Rendering: the real image is the source's L* with its own a*b*; the generated image
is the same L* with the predicted a*b*. Both go through `to_srgb8` (Lab -> sRGB,
rounded to 8 bits) and `encode_srgb8` (JPEG at `JPEG_SETTINGS`, no EXIF, no
comments, and the same embedded sRGB profile), so size, mode, quantization tables and
every marker before the scan are identical, and only the chroma differs. Chroma
subsampling is off (4:4:4) because chroma is exactly what the raters judge.

The profile: browsers treat an untagged JPEG as "probably sRGB" in different ways
(Firefox's default mode colour-manages tagged images only; wide-gamut screens may
show untagged pixels unconverted), so every image carries the same sRGB profile, made
by Pillow's ImageCms (lcms2), and every colour-managed browser shows both images of a
pair as sRGB.
"""
from __future__ import annotations

import hashlib
import io
import os
import secrets
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps
from torch.utils.data import Dataset

if TYPE_CHECKING:
    from .sources import SourceRef

from colorizers.color import lab_to_rgb, rgb_to_lab

MIN_SIDE = 64
MIN_CHROMA = 5.0
JPEG_SETTINGS = {"format": "JPEG", "quality": 95, "subsampling": 0, "optimize": False, "progressive": False}
PREPROCESSING = {
    "decode": "Pillow; EXIF orientation applied; embedded ICC profile converted to sRGB",
    "reject": f"unreadable, truncated, grayscale, CMYK, shorter side < {MIN_SIDE} px, no pixel with |a*| or |b*| > {MIN_CHROMA}",
    "resize": "shorter side to SIZE (bicubic, antialiased), centre crop SIZE x SIZE",
    "color_space": "sRGB -> CIE Lab (D65); the colorizer sees L*",
    "render": "source L* + a*b* -> sRGB, rounded to 8 bits",
    "encoding": "JPEG quality 95, 4:4:4, baseline, no EXIF, embedded sRGB ICC profile (Pillow, lcms2)",
}
_SRGB = ImageCms.createProfile("sRGB")


def _srgb_icc() -> bytes:
    """lcms2's sRGB profile as bytes, with a fixed creation date instead of the time of the call.

    lcms2 stamps the profile header (bytes 24-35, ICC.1 section 7.2.8) with the current
    time: two processes (a resumed run, an imported method) would tag the real and the
    generated image of a pair with different bytes. The profile ID (bytes 84-99) is left
    zero by lcms2, so nothing else depends on the date.
    """
    data = bytearray(ImageCms.ImageCmsProfile(_SRGB).tobytes())
    data[24:36] = bytes.fromhex("07d0" "0001" "0001" "0000" "0000" "0000")  # 2000-01-01 00:00:00
    return bytes(data)


SRGB_ICC = _srgb_icc()  # the profile every served image carries


class ImageError(ValueError):
    """A source file that cannot be used as a colour photograph; the message says why."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_rgb(path: str | Path) -> Image.Image:
    """Decode a colour photograph as an 8-bit sRGB image, or raise ImageError saying why not."""
    path = Path(path)
    try:
        with Image.open(path) as probe:
            probe.verify()
        image = Image.open(path)
        image.load()  # decodes fully: a truncated file fails here
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{path}: not a readable image ({exc})") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image = ImageOps.exif_transpose(image)
    if image.mode in {"1", "L", "LA", "I", "I;16", "F"}:
        raise ImageError(f"{path}: grayscale file (mode {image.mode}), no true colours to compare with")
    if image.mode == "CMYK":
        raise ImageError(f"{path}: CMYK file; convert it to sRGB first, the platform does not guess")
    if image.mode not in {"RGB", "RGBA", "P", "PA"}:
        raise ImageError(f"{path}: unsupported image mode {image.mode}")
    icc = image.info.get("icc_profile")
    image = image.convert("RGB")
    if icc:
        try:
            source_profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            image = ImageCms.profileToProfile(image, source_profile, _SRGB, outputMode="RGB")
        except (ImageCms.PyCMSError, OSError) as exc:
            raise ImageError(f"{path}: embedded ICC profile cannot be applied ({exc})") from None
    if min(image.size) < MIN_SIDE:
        raise ImageError(f"{path}: too small ({image.width}x{image.height}, shorter side < {MIN_SIDE} px)")
    return image


def preprocess(image: Image.Image, size: int) -> torch.Tensor:
    """Resize the shorter side to ``size`` and centre-crop; returns Lab (3, size, size) float32."""
    scale = size / min(image.size)
    width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
    resized = image.resize((width, height), Image.Resampling.BICUBIC)
    left, top = (width - size) // 2, (height - size) // 2
    cropped = resized.crop((left, top, left + size, top + size))
    rgb = torch.from_numpy(np.asarray(cropped, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return rgb_to_lab(rgb[None])[0]


def load_lab(path: str | Path, size: int) -> torch.Tensor:
    """`load_rgb` then `preprocess`, refusing sources without colour."""
    return require_colour(preprocess(load_rgb(path), size), path)


def require_colour(lab: torch.Tensor, path: str | Path) -> torch.Tensor:
    """``lab`` unchanged, or ImageError when no pixel has |a*| or |b*| above `MIN_CHROMA`."""
    if float(lab[1:].abs().max()) <= MIN_CHROMA:
        raise ImageError(f"{path}: no colour (no pixel with |a*| or |b*| above {MIN_CHROMA})")
    return lab


def to_srgb8(L: torch.Tensor, ab: torch.Tensor) -> np.ndarray:
    """Luminance ``L`` (B, 1, H, W) and chroma ``ab`` (B, 2, H, W) -> sRGB uint8 (B, H, W, 3), on any device."""
    rgb = lab_to_rgb(torch.cat([L, ab], dim=1).float())
    return (rgb * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def encode_srgb8(pixels: np.ndarray) -> bytes:
    """JPEG bytes of one (H, W, 3) uint8 sRGB image at `JPEG_SETTINGS`, tagged with `SRGB_ICC`.

    Pillow releases the GIL while it encodes.
    """
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, icc_profile=SRGB_ICC, **JPEG_SETTINGS)
    return buffer.getvalue()


def write_atomic(directory: Path, name: str, data: bytes) -> Path:
    """Write ``data`` to ``directory/name`` so that the file is either whole or absent."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / name
    temporary = directory / f".{name}.partial"
    with open(temporary, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, final)
    return final


class SourceDataset(Dataset):
    """Decodes one source in a worker process: its hash, size and Lab tensor, or why it is unusable."""

    def __init__(self, refs: list["SourceRef"], size: int):
        self.refs, self.size = refs, size

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int) -> dict:
        ref = self.refs[i]
        item = {"index": i, "sha256": "", "width": 0, "height": 0, "lab": None, "error": ""}
        try:
            item["sha256"] = sha256_file(ref.path)
            image = load_rgb(ref.path)
            item["width"], item["height"] = image.size
            item["lab"] = require_colour(preprocess(image, self.size), ref.path)
        except (OSError, ImageError) as exc:
            item["lab"], item["error"] = None, str(exc)
        return item


def collate_list(items: list[dict]) -> list[dict]:
    """DataLoader collate that keeps a batch as a list of items."""
    return items


class JpegWriter:
    """Encodes and writes JPEGs in a thread pool; each file is whole before its name is returned.

    `write` returns (file name, SHA-256 of its bytes) per image.
    """

    def __init__(self, threads: int, directory: Path):
        self.pool = ThreadPoolExecutor(max_workers=threads)
        self.directory = directory

    def write(self, pixels: np.ndarray) -> list[tuple[str, str]]:
        def one(image: np.ndarray) -> tuple[str, str]:
            name = f"{secrets.token_hex(16)}.jpg"  # random: nothing in a name tells real from generated
            data = encode_srgb8(image)
            write_atomic(self.directory, name, data)
            return name, hashlib.sha256(data).hexdigest()

        return list(self.pool.map(one, pixels))

    def close(self) -> None:
        self.pool.shutdown()
