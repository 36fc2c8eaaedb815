"""Simulated VTT experiments with crossed random effects, for the calibration and planning benchmarks.

A `Design` says how many images, methods and raters an experiment has and how they
are crossed; `simulate(design, rng)` draws one experiment's judgments and
`truth(design)` gives the estimand each interval should cover: per method, the
trial-weighted fooling rate of the population of images and raters,

    theta_m = E[sum over a rater's trials of m of P(fooled)] / E[trials of m per rater],

which is the expected fooling rate of a trial when raters judge as many trials as the
design gives them (with rater sizes independent of the raters' effects it is simply
E[P(fooled)]).

Answers follow a logistic model with crossed random effects (Baayen, Davidson and
Bates 2008):

    logit P(fooled) = logit(p_m) + a_i + c_im + b_r + d_rm,

with a_i (image), c_im (image x method), b_r (rater) and d_rm (rater x method) normal
with the design's standard deviations. Each (image, method) is judged by K distinct
raters (when there are at least K). Raters see every method ("mixed") or one
("single"); their numbers of trials are equal, unbalanced (lognormal, coefficient of
variation about 1), or informative (unbalanced, and more trials for raters who are
fooled more often: size proportional to a lognormal times exp(b_r / 2); "informative-heavy":
exp(b_r), a coefficient of variation about 2, the limit the calibration states).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy.special import expit, logit

__all__ = ["Design", "Sample", "simulate", "truth", "DESIGNS"]

_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(60)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


@dataclass(frozen=True)
class Design:
    """One experiment's layout and the spread of its random effects (logit scale)."""

    name: str
    n_images: int = 500
    rates: tuple = (0.30,)  # each method's fooling rate at zero effects
    k: int = 5  # distinct raters per (image, method)
    trials_per_rater: int = 40  # mean scored trials per rater (over all the methods it sees)
    mixing: str = "mixed"  # "mixed": raters see every method; "single": one method each
    sd_image: float = 0.5
    sd_image_method: float = 0.5
    sd_rater: float = 0.5
    sd_rater_method: float = 0.0
    sizes: str = "equal"  # "equal", "unbalanced", "informative"
    n_raters: int | None = None  # override: this many raters in all (per method when single)
    control: bool = False  # the last method is the ground-truth control: fair coin flips, no effects
    notes: str = field(default="", compare=False)

    def with_(self, **changes) -> "Design":
        return replace(self, **changes)


@dataclass(frozen=True)
class Sample:
    y: np.ndarray  # 1 when the rater picked the colorized image
    image: np.ndarray
    rater: np.ndarray
    method: np.ndarray
    n_raters: int


def _sizes(design: Design, n: int, mean: float, rater_effect: np.ndarray, rng) -> np.ndarray:
    """Relative numbers of trials of `n` raters (they need not sum to anything yet)."""
    if design.sizes == "equal":
        return np.full(n, mean)
    if design.sizes == "unbalanced":
        return rng.lognormal(0.0, 0.83, n)  # coefficient of variation about 1
    if design.sizes == "informative":
        return rng.lognormal(0.0, 0.6, n) * np.exp(0.5 * rater_effect)
    if design.sizes == "informative-heavy":
        return rng.lognormal(0.0, 0.83, n) * np.exp(rater_effect)
    raise ValueError(f"unknown sizes {design.sizes!r}")


def _stream(weights: np.ndarray, total: int, rng) -> np.ndarray:
    """A sequence of `total` rater codes, rater r about total * w_r / sum(w) times, each rater's turns evenly
    spread (so that K consecutive slots rarely share a rater)."""
    counts = np.floor(weights / weights.sum() * total).astype(np.int64)
    short = total - counts.sum()
    if short:
        extra = rng.choice(weights.size, size=short, replace=True, p=weights / weights.sum())
        np.add.at(counts, extra, 1)
    rater = np.repeat(np.arange(weights.size), counts)
    within = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    # A random point in each turn's stretch, so that raters do not keep one order (and one method) round after round.
    return rater[np.argsort((within + rng.random(total)) / counts[rater], kind="stable")]


def _spread(slots_rater: np.ndarray, group: np.ndarray, rng) -> np.ndarray:
    """Swap raters so that no (image, method) group repeats one, where a swap can fix it."""
    for _ in range(4):
        key = group.astype(np.int64) * (slots_rater.max() + 1) + slots_rater
        order = np.argsort(key, kind="stable")
        dup = np.zeros(key.size, dtype=bool)
        dup[order[1:]] = key[order[1:]] == key[order[:-1]]
        bad = np.flatnonzero(dup)
        if bad.size == 0:
            break
        other = rng.integers(0, key.size, bad.size)
        slots_rater[bad], slots_rater[other] = slots_rater[other], slots_rater[bad].copy()
    return slots_rater


def simulate(design: Design, rng) -> Sample:
    """One experiment's judgments under `design`."""
    m = len(design.rates)
    n_img = design.n_images
    mu = logit(np.asarray(design.rates, dtype=np.float64))
    groups = [np.arange(m)] if design.mixing == "mixed" else [np.array([g]) for g in range(m)]
    img_parts, meth_parts, rat_parts, rater_parts = [], [], [], []
    offset = 0
    for methods in groups:
        per_image = methods.size * design.k
        n_slots = n_img * per_image
        n = design.n_raters or max(1, round(n_slots / design.trials_per_rater))
        b = rng.normal(0, design.sd_rater, n)
        weights = _sizes(design, n, design.trials_per_rater, b, rng)
        img = np.repeat(np.arange(n_img), per_image)
        meth = np.tile(np.repeat(methods, design.k), n_img)
        if design.n_raters is not None and n <= per_image:
            # Few raters in all: each (image, method) gets K of them at random, distinct.
            rat = np.argsort(rng.random((n_img * methods.size, n)), axis=1)[:, :design.k].ravel()
        else:
            rat = _stream(weights, n_slots, rng)
            rat = _spread(rat, img * m + meth, rng)
        img_parts.append(img)
        meth_parts.append(meth)
        rat_parts.append(rat + offset)
        rater_parts.append(b)
        offset += n
    rater_effect = np.concatenate(rater_parts)
    img = np.concatenate(img_parts)
    meth = np.concatenate(meth_parts)
    rat = np.concatenate(rat_parts)
    eta = (mu[meth] + rng.normal(0, design.sd_image, n_img)[img]
           + rng.normal(0, design.sd_image_method, (n_img, m))[img, meth]
           + rater_effect[rat] + rng.normal(0, design.sd_rater_method, (offset, m))[rat, meth])
    if design.control:
        eta = np.where(meth == m - 1, 0.0, eta)
    y = (rng.random(img.size) < expit(eta)).astype(np.int8)
    return Sample(y=y, image=img, rater=rat, method=meth, n_raters=offset)


def truth(design: Design) -> np.ndarray:
    """Each method's trial-weighted fooling rate over the population of images and raters."""
    mu = logit(np.asarray(design.rates, dtype=np.float64))
    rest = np.sqrt(design.sd_image**2 + design.sd_image_method**2 + design.sd_rater_method**2)
    b = design.sd_rater * _NODES  # quadrature over the rater effect, the rest folded into one normal
    inner = expit(mu[:, None, None] + b[None, :, None] + rest * _NODES[None, None, :]) @ _WEIGHTS  # (m, nodes)
    if design.control:
        inner[-1] = 0.5
    if design.sizes.startswith("informative"):
        w = _WEIGHTS * np.exp(b if design.sizes == "informative-heavy" else 0.5 * b)
    else:
        w = _WEIGHTS
    return inner @ w / w.sum()


# The designs of the calibration tables. Every design has a pair of methods with the same rate (0 and 1: the
# type I error of `compare`) and a pair that differs (0 and 2: coverage and power). The first follows PixColor
# (500 images x 4 methods + the ground truth, K = 5, 40 mixed trials per rater); the others vary one thing each.
_PIX = Design("pixcolor", n_images=500, rates=(0.30, 0.30, 0.38, 0.25, 0.50), control=True)
_TWO = dict(rates=(0.30, 0.30, 0.38), control=False)
DESIGNS = [
    _PIX,
    _PIX.with_(name="pilot-40", n_images=40),
    _PIX.with_(name="single", mixing="single"),
    _PIX.with_(name="heavy", sd_image=1.0, sd_image_method=1.0, sd_rater=1.5, sd_rater_method=0.5),
    _PIX.with_(name="k3", k=3),
    _PIX.with_(name="near-0", rates=(0.005, 0.005, 0.01), sd_image=1.0, sd_image_method=0.5, sd_rater=1.0,
               control=False),
    _PIX.with_(name="near-50", rates=(0.45, 0.45, 0.50), control=False),
    _PIX.with_(name="unbalanced", sizes="unbalanced"),
    _PIX.with_(name="informative", sizes="informative", sd_rater=1.0),
    _PIX.with_(name="informative-heavy", sizes="informative-heavy", sd_rater=1.0),
    _PIX.with_(name="independent", sd_image=0.0, sd_image_method=0.0, sd_rater=0.0),
    _PIX.with_(name="100-img-20", n_images=100, trials_per_rater=20, **_TWO),
    _PIX.with_(name="single-heavy", mixing="single", n_images=100, trials_per_rater=20, sd_image=0.5,
               sd_image_method=1.0, sd_rater=1.5, **_TWO),
    _PIX.with_(name="3-raters", n_images=40, k=3, n_raters=3, **_TWO),
    _PIX.with_(name="6-raters", n_images=40, k=3, n_raters=6, **_TWO),
    _PIX.with_(name="12-raters", n_images=60, k=4, n_raters=12, **_TWO),
    _PIX.with_(name="20-raters", n_images=80, k=5, n_raters=20, **_TWO),
    _PIX.with_(name="10-images", n_images=10, trials_per_rater=10, **_TWO),
    _PIX.with_(name="20-images", n_images=20, trials_per_rater=10, **_TWO),
]
