"""Batched sRGB <-> CIE L*a*b* conversion in torch, on any device.

Conventions
-----------
* sRGB: IEC 61966-2-1:1999. Transfer function: linear = c / 12.92 for
  c <= 0.04045, else ((c + 0.055) / 1.055) ** 2.4; its inverse switches at
  linear 0.0031308. Linear RGB -> XYZ uses the matrix derived from the sRGB
  primaries and the D65 white (Lindbloom, "RGB/XYZ Matrices"); the standard
  prints the same matrix rounded to 4 decimals. The inverse matrix is computed
  from it in float64, so RGB -> Lab -> RGB does not drift.
* White point: D65, XYZ = (0.95047, 1.00000, 1.08883), taken as the row sums
  of the matrix (Y is 1.0000001 there) so that every grey maps to a* = b* = 0
  and sRGB white to L* = 100.
* CIE L*a*b* (CIE 1976, CIE 15:2004) with the exact constants
  epsilon = 216/24389 and kappa = 24389/27 instead of the rounded 0.008856
  and 903.3, which leave a small discontinuity at the junction of the two pieces
  (Lindbloom, "A Continuity Study of the CIE L* Function").

Both functions take tensors whose channel axis is ``-3``, i.e. (B, 3, H, W)
or (3, H, W), compute in float32 (float64 stays float64; bfloat16 and float16
are promoted, because their 8-bit mantissa loses about one L* unit), and
return the input's dtype on the input's device.

`rgb_to_yuv` / `yuv_to_rgb` (analog YUV of ITU-R BT.601, Liang et al. 2016's space)
and `rgb_to_ycbcr` / `ycbcr_to_rgb` (full-range BT.601 YCbCr as JPEG uses it,
PixColor's space) are linear maps of the gamma-encoded sRGB values, exactly
invertible; their inverses do not clip, so an out-of-gamut prediction stays visible
to the caller, which clamps when it renders.

* YUV: Y = 0.299 R + 0.587 G + 0.114 B in [0, 1], U = 0.492111 (B - Y) in
  [-0.436, 0.436], V = 0.877283 (R - Y) in [-0.615, 0.615].
* YCbCr (JFIF): Y as above, Cb = (B - Y) / 1.772, Cr = (R - Y) / 1.402, both in
  [-0.5, 0.5] (centred on 0 here, not on 0.5 or 128).

References
----------
ITU-R BT.601-7 (2011), Studio encoding parameters of digital television.
ITU-T T.871 (2011), JPEG File Interchange Format (the full-range YCbCr equations).
IEC 61966-2-1:1999, Multimedia systems and equipment - Colour measurement and
management - Default RGB colour space - sRGB.
CIE 15:2004, Colorimetry, 3rd edition.
B. Lindbloom, http://www.brucelindbloom.com (Math section).
"""
from __future__ import annotations

import torch

__all__ = ["rgb_to_lab", "lab_to_rgb", "rgb_to_yuv", "yuv_to_rgb", "rgb_to_ycbcr", "ycbcr_to_rgb"]

# linear sRGB -> CIE XYZ (D65), rows X, Y, Z
_RGB_TO_XYZ = torch.tensor(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ],
    dtype=torch.float64,
)
_WHITE_D65 = _RGB_TO_XYZ.sum(dim=1)    # XYZ of sRGB (1, 1, 1)
# RGB -> XYZ / white and back, so the Lab code works on white-normalised XYZ
_RGB_TO_XYZN = _RGB_TO_XYZ / _WHITE_D65[:, None]
_XYZN_TO_RGB = torch.linalg.inv(_RGB_TO_XYZN)

_EPSILON = 216 / 24389   # (6/29)**3: below it f(t) is linear
_KAPPA = 24389 / 27      # (29/3)**3: slope of L* in Y/Yn on the linear piece


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] -> CIE L*a*b* (D65).

    Parameters
    ----------
    rgb : floating tensor (..., 3, H, W) with values in [0, 1]. Values outside
        are clamped first (resampling can overshoot slightly, and the sRGB
        transfer function is undefined for negative input).

    Returns
    -------
    Tensor (..., 3, H, W) of the input's dtype: L* in [0, 100], a* and b*
    roughly in [-87, 99] and [-108, 95] for sRGB colours.
    """
    x = _working_copy(rgb, "rgb").clamp(0.0, 1.0)
    linear = torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    xyzn = _apply_matrix(_RGB_TO_XYZN, linear)                   # (..., 3, H, W)
    f = torch.where(xyzn > _EPSILON, xyzn.clamp_min(_EPSILON) ** (1 / 3),
                    (_KAPPA * xyzn + 16) / 116)
    fx, fy, fz = f.unbind(-3)
    lab = torch.stack((116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)), dim=-3)
    return lab.to(rgb.dtype)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIE L*a*b* (D65) -> sRGB, clipped to [0, 1].

    Many Lab triples (a chroma too strong for its lightness) lie outside the
    sRGB gamut. They are clipped per channel after the conversion, in linear
    RGB, which is the same as clipping the encoded sRGB values since the
    transfer function is monotonic and fixes 0 and 1. This is the usual choice
    of colorization work (e.g. ``skimage.color.lab2rgb``); it is not a
    hue-preserving gamut mapping.

    Parameters
    ----------
    lab : floating tensor (..., 3, H, W): L* in [0, 100], a*, b*.

    Returns
    -------
    Tensor (..., 3, H, W) of the input's dtype, values in [0, 1].
    """
    x = _working_copy(lab, "lab")
    L, a, b = x.unbind(-3)
    fy = (L + 16) / 116
    f = torch.stack((fy + a / 500, fy, fy - b / 200), dim=-3)    # (..., 3, H, W)
    xyzn = torch.where(f**3 > _EPSILON, f**3, (116 * f - 16) / _KAPPA)
    linear = _apply_matrix(_XYZN_TO_RGB, xyzn).clamp(0.0, 1.0)
    rgb = torch.where(linear <= 0.0031308, 12.92 * linear,
                      1.055 * linear ** (1 / 2.4) - 0.055)
    return rgb.clamp(0.0, 1.0).to(lab.dtype)


def _working_copy(t: torch.Tensor, what: str) -> torch.Tensor:
    """``t`` as float32 (float64 if it is float64), after checking its shape."""
    if not t.is_floating_point():
        raise TypeError(f"{what} must be a floating-point tensor, got {t.dtype}")
    if t.ndim < 3 or t.shape[-3] != 3:
        raise ValueError(f"{what} must have shape (..., 3, H, W), got {tuple(t.shape)}")
    return t.to(torch.promote_types(t.dtype, torch.float32))


def _apply_matrix(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Multiply every pixel's 3-vector of ``x`` (..., 3, H, W) by ``m`` (3, 3), with autocast off.

    Under bf16 autocast (generation's and training's default on CUDA) einsum becomes a
    bf16 matrix product whose result is still labelled float32: sRGB -> Lab came out up
    to 2 Lab units off. The conversions are a few elementwise kernels; they stay float32.
    """
    with torch.autocast(device_type=x.device.type, enabled=False):
        return torch.einsum("ij,...jhw->...ihw", m.to(device=x.device, dtype=x.dtype), x)


_LUMA = (0.299, 0.587, 0.114)   # BT.601 luma weights on gamma-encoded R, G, B
_RGB_TO_YUV = torch.tensor(
    [
        list(_LUMA),
        [-0.492111 * _LUMA[0], -0.492111 * _LUMA[1], 0.492111 * (1 - _LUMA[2])],
        [0.877283 * (1 - _LUMA[0]), -0.877283 * _LUMA[1], -0.877283 * _LUMA[2]],
    ],
    dtype=torch.float64,
)
_RGB_TO_YCBCR = torch.tensor(
    [
        list(_LUMA),
        [-_LUMA[0] / 1.772, -_LUMA[1] / 1.772, (1 - _LUMA[2]) / 1.772],
        [(1 - _LUMA[0]) / 1.402, -_LUMA[1] / 1.402, -_LUMA[2] / 1.402],
    ],
    dtype=torch.float64,
)
_YUV_TO_RGB = torch.linalg.inv(_RGB_TO_YUV)
_YCBCR_TO_RGB = torch.linalg.inv(_RGB_TO_YCBCR)


def _linear_map(m: torch.Tensor, x: torch.Tensor, what: str) -> torch.Tensor:
    work = _working_copy(x, what)
    return _apply_matrix(m, work).to(x.dtype)


def rgb_to_yuv(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB (gamma-encoded, [0, 1]) -> YUV of BT.601: Y in [0, 1], U, V signed."""
    return _linear_map(_RGB_TO_YUV, rgb, "rgb")


def yuv_to_rgb(yuv: torch.Tensor) -> torch.Tensor:
    """Exact inverse of `rgb_to_yuv` (no clipping)."""
    return _linear_map(_YUV_TO_RGB, yuv, "yuv")


def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB (gamma-encoded, [0, 1]) -> full-range YCbCr: Y in [0, 1], Cb, Cr in [-0.5, 0.5]."""
    return _linear_map(_RGB_TO_YCBCR, rgb, "rgb")


def ycbcr_to_rgb(ycbcr: torch.Tensor) -> torch.Tensor:
    """Exact inverse of `rgb_to_ycbcr` (no clipping)."""
    return _linear_map(_YCBCR_TO_RGB, ycbcr, "ycbcr")
