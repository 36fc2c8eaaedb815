r"""Two-way cluster-robust variance of VTT scores and of their differences.

A VTT score is a trial-weighted fraction, :math:`\hat v_g = \sum_{t \in g} y_t / n_g`;
a contrast of scores (one score, or the difference of two) is
:math:`\hat\theta = \sum_g c_g \hat v_g`. Its influence on judgment :math:`t` of
method :math:`g` is :math:`e_t = c_g (y_t - \hat v_g) / n_g`. Summed over an image,
a rater and an (image, rater) cell, squared and added up, these give

.. math::  V_{img} = \sum_i E_i^2, \quad V_{rat} = \sum_r E_r^2, \quad
           V_{cell} = \sum_{ir} E_{ir}^2,

and the two-way cluster-robust variance of Cameron, Gelbach and Miller (2011) is
:math:`c_I V_{img} + c_R V_{rat} - c_C V_{cell}`, with :math:`c = G / (G - 1)` for
:math:`G` clusters of each kind. When that is not positive (it can be, as a
difference of terms), their remedy for a scalar is to fall back to a one-way
cluster-robust variance; this module takes the larger of the two, which is what
would be used if the other factor were ignored.

All the contrasts of one set of judgments come from what is computed once per kind of
cluster: the Gram matrices of the per-cluster residual sums and of the 0/1 incidences
(for the number of clusters judged), and, for images and raters, the per-cluster
judgment counts (for the effective number of clusters).

Degrees of freedom. With few clusters the cluster-robust variance is biased down
and variable, and a normal critical value gives intervals that are too short.
Following Cameron and Miller (2015, section VI.D), the critical value is Student's
t with :math:`G - 1` degrees of freedom, :math:`G` the smaller of the numbers of
image and rater clusters; here each is an *effective* number of clusters,
:math:`(\sum_g w_g^2)^2 / \sum_g w_g^4` with :math:`w_g` a cluster's share of the
contrast's judgments. That is Satterthwaite's degrees of freedom of
:math:`\sum_g w_g^2 \chi^2_1` (a cluster's term has variance proportional to
:math:`w_g^2` when its random effect dominates, as it does for raters and images
with many judgments each): it equals the number of clusters when they are of equal
size and is smaller when a few clusters hold most of the judgments (a rater who
answered 500 trials weighs like many). It was chosen by simulation
(`benchmarks/calibration.py`) over the raw number of clusters and over Kish's
:math:`(\sum w)^2 / \sum w^2`, which both undercovered (91 to 93%) with
informative rater sizes.

References: A. C. Cameron, J. B. Gelbach and D. L. Miller, "Robust inference with
multiway clustering", J. Business & Economic Statistics 29(2), 238-249, 2011.
A. C. Cameron and D. L. Miller, "A practitioner's guide to cluster-robust
inference", J. Human Resources 50(2), 317-372, 2015. F. E. Satterthwaite, "An
approximate distribution of estimates of variance components", Biometrics Bulletin
2(6), 110-114, 1946.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_array

KINDS = ("image", "rater", "cell")


@dataclass(frozen=True)
class Components:
    """Per-method scores and the Gram matrices of one set of judgments (see the module docstring)."""

    rates: np.ndarray  # (n_groups,)
    n: np.ndarray  # (n_groups,) judgments per method
    residual: dict  # kind -> (n_groups, n_groups) Gram of per-cluster sums of (y - v_g) / n_g
    count: dict  # "image", "rater" -> (n_groups, n_clusters) judgment counts (for the effective numbers)
    seen: dict  # kind -> Gram of per-cluster 0/1 incidences


@dataclass(frozen=True)
class Variance:
    """Two-way cluster-robust variance of each contrast, and what it was made of."""

    variance: np.ndarray  # after the fall-back
    fell_back: np.ndarray  # bool: the two-way estimate was not positive
    df: np.ndarray  # degrees of freedom of the t critical value (NaN: fewer than 2 clusters)
    terms: dict  # kind -> V_kind
    clusters: dict  # kind -> number of clusters judged under the contrast's methods
    effective: dict  # "image", "rater" -> effective number of clusters (Satterthwaite)
    shared: dict  # kind -> clusters judged under both methods of a pair (= clusters for a single score)


def _gram(rows):
    gram = rows @ rows.T
    return gram.toarray() if hasattr(gram, "toarray") else np.asarray(gram, dtype=np.float64)


def components(y, img, rat, grp, n_images, n_raters, n_groups) -> Components:
    """Scores and Gram matrices of judgments `y` (0/1 floats) with integer codes for image, rater and method."""
    n = np.bincount(grp, minlength=n_groups).astype(np.float64)
    rates = np.bincount(grp, y, minlength=n_groups) / np.maximum(n, 1)
    r = (y - rates[grp]) / n[grp]
    residual, count, seen = {}, {}, {}
    for kind, index, size in (("image", img, n_images), ("rater", rat, n_raters)):
        flat = grp * size + index
        sums = np.bincount(flat, r, minlength=n_groups * size).reshape(n_groups, size)
        counts = np.bincount(flat, minlength=n_groups * size).reshape(n_groups, size).astype(np.float64)
        residual[kind] = sums @ sums.T
        count[kind] = counts
        seen[kind] = (counts > 0).astype(np.float64) @ (counts > 0).T.astype(np.float64)
    # Cells are sparse: there can be as many as judgments.
    key = img.astype(np.int64) * n_raters + rat
    cells, cell = np.unique(key, return_inverse=True)
    cell = cell.ravel()
    shape = (n_groups, cells.size)
    sums = coo_array((r, (grp, cell)), shape=shape).tocsr()
    incidence = coo_array((np.ones_like(r), (grp, cell)), shape=shape).tocsr()
    incidence.data[:] = 1.0  # duplicates were summed: a cell judged twice under one method is one cluster
    residual["cell"] = _gram(sums)
    seen["cell"] = _gram(incidence)
    return Components(rates=rates, n=n, residual=residual, count=count, seen=seen)


def _quadratic(gram, a, b, ca, cb):
    """c' G c for contrasts with coefficient ca on method a and cb on method b (b < 0: none)."""
    out = ca * ca * gram[a, a]
    has_b = b >= 0
    bb = np.where(has_b, b, 0)
    out = out + np.where(has_b, cb * cb * gram[bb, bb] + 2 * ca * cb * gram[a, bb], 0.0)
    return out


def _effective(counts, n, a, b):
    """Effective number of clusters of a contrast: (sum w^2)^2 / sum w^4, w a cluster's share of the judgments."""
    w = counts[a] / n[a]
    if b >= 0:
        w = w + counts[b] / n[b]
    w2 = w * w
    s4 = float(w2 @ w2)
    return float(w2.sum()) ** 2 / s4 if s4 > 0 else 0.0


def two_way(comp: Components, pairs) -> Variance:
    """Variance of each contrast: ``(a, None)`` for method a's score, ``(a, b)`` for its difference with b."""
    a = np.array([p[0] for p in pairs], dtype=np.int64)
    b = np.array([-1 if p[1] is None else p[1] for p in pairs], dtype=np.int64)
    has_b = b >= 0
    bb = np.where(has_b, b, 0)
    cb = np.where(has_b, -1.0, 0.0)
    terms, clusters, effective, shared = {}, {}, {}, {}
    for kind in KINDS:
        terms[kind] = np.maximum(_quadratic(comp.residual[kind], a, b, 1.0, cb), 0.0)
        seen = comp.seen[kind]
        clusters[kind] = seen[a, a] + np.where(has_b, seen[bb, bb] - seen[a, bb], 0.0)
        shared[kind] = np.where(has_b, seen[a, bb], seen[a, a])
        if kind != "cell":  # the degrees of freedom use the images and raters only
            effective[kind] = np.array([_effective(comp.count[kind], comp.n, i, j) for i, j in zip(a, b)])
    def correction(g):
        return np.where(g > 1, g / np.maximum(g - 1, 1), 1.0)

    c_img, c_rat, c_cell = (correction(clusters[k]) for k in KINDS)
    two = c_img * terms["image"] + c_rat * terms["rater"] - c_cell * terms["cell"]
    one = np.maximum(c_img * terms["image"], c_rat * terms["rater"])
    fell_back = ~(two > 0) & (one > 0)
    variance = np.where(two > 0, two, one)
    g = np.minimum(effective["image"], effective["rater"])
    few = np.minimum(clusters["image"], clusters["rater"]) < 2
    # Rounded to 10 digits, so that equal clusters give the integer G - 1 rather than G - 1 +- 1e-14.
    df = np.where(few, np.nan, np.maximum(np.round(g, 10) - 1, 1.0))
    return Variance(variance=variance, fell_back=fell_back, df=df, terms=terms, clusters=clusters,
                    effective=effective, shared=shared)
