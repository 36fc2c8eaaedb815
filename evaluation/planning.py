r"""Planning a VTT experiment: how wide its intervals will be, and how many raters a target needs.

components, difference_components
    Variance components of a pilot's judgments (one method; two methods' difference) by the method of
    moments that matches the two-way cluster-robust variance of `evaluation.score` and `evaluation.compare`.
components_from_priors
    The same from stated standard deviations, before any pilot.
predict, predict_difference
    The interval half-width of one method's VTT score, or the standard error and the smallest detectable
    difference of two methods, for a design: images x K raters per (image, method) x T trials per rater.
raters_needed
    "Now +-x; to reach +-y, about N more raters": the K per image and the raters a target half-width needs,
    or the images it would need when the image effects alone keep the interval wider than the target.

The model
---------
A judgment of image :math:`i` by rater :math:`r` under method :math:`m` is, on the probability scale,

.. math::  y = p_m + a_{im} + b_{rm} + e,

with image effects :math:`a` (variance :math:`s_a^2` per method; the image x method part is what
differs between two methods), rater effects :math:`b` (:math:`s_b^2`) and a residual :math:`e`
(:math:`s_e^2`) that holds the judgment's own noise and every image x rater interaction. This is not an
assumption about how raters decide: any exchangeable crossed array of 0/1 answers has this decomposition
of its covariances (the Hoeffding, or ANOVA, decomposition), with :math:`s_a^2` the covariance of two
judgments of one image by different raters and :math:`s_b^2` that of two judgments of one rater on
different images. No cell (image, rater) is judged twice under one method: the platform never shows a
rater an image twice (a pilot that does is still fitted; see `components`).

A method's VTT score :math:`\hat p = \bar y` from :math:`I` images, each judged by :math:`K` distinct
raters, each rater giving the method :math:`T` judgments (so :math:`R = IK/T` raters), has variance

.. math::  \operatorname{Var}\hat p = \frac{s_a^2}{I} + \frac{T s_b^2}{IK} + \frac{s_e^2}{IK},

and the predicted half-width is about :math:`t_{1-\alpha/2,\,\nu} \sqrt{\operatorname{Var}\hat p}`, with the
Student t critical value at :math:`\nu` = `design_df` degrees of freedom (see there): exactly, half the
Wilson interval at the effective number of trials :math:`p(1-p)/\operatorname{Var}\hat p` with that critical
value, which is the interval `evaluation.score` computes (the two differ only for rates near 0 or 1 with few
effective trials). More raters per image shrink the last two terms only: :math:`t\,s_a/\sqrt I` is a floor
that only more images lower.

The difference of two methods :math:`A - B` rated on the same images has, in a mixed design (every rater
sees both methods),

.. math::  \operatorname{Var}(\hat p_A - \hat p_B) = \frac{s_{a\Delta}^2}{I}
           + \frac{T s_{b\Delta}^2}{IK} + \frac{s_{eA}^2 + s_{eB}^2}{IK},

with :math:`s_{a\Delta}^2 = \operatorname{Var}(a_{iA} - a_{iB})` and
:math:`s_{b\Delta}^2 = \operatorname{Var}(b_{rA} - b_{rB})`: the image x method and rater x method parts
that do not cancel. When each rater sees one method ("single"), nothing of the rater effects cancels and
:math:`s_{bA}^2 + s_{bB}^2` stands for :math:`s_{b\Delta}^2`. The smallest difference detectable with
power :math:`1 - \beta` by a two-sided level-:math:`\alpha` test is
:math:`(t_{1-\alpha/2,\nu} + t_{1-\beta,\nu})\,\mathrm{se}`.

The estimator
-------------
`evaluation.score` and `evaluation.compare` use the two-way cluster-robust variance (Cameron, Gelbach and
Miller 2011): with :math:`e_t = (y_t - \hat p)/n`, :math:`V_{img} = \sum_i (\sum_{t \in i} e_t)^2`,
:math:`V_{rat}` likewise over raters and :math:`V_{cell}` over (image, rater) cells. `components` solves
the three moment equations

.. math::  V_X = E[V_X] = \sum_k s_k^2\, c_{Xk}, \qquad X \in \{img, rat, cell\},\ k \in \{a, b, e\},

for :math:`(s_a^2, s_b^2, s_e^2)`, where the coefficients :math:`c_{Xk}` are computed exactly for the pilot's
own layout (any numbers of judgments per image and per rater), the centering at :math:`\hat p` included.
For cells judged once and ignoring the centering these are the familiar

.. math::  E[V_{img}] = \frac{\sum_i n_i^2 s_a^2 + n (s_b^2 + s_e^2)}{n^2},\quad
           E[V_{rat}] = \frac{\sum_r n_r^2 s_b^2 + n (s_a^2 + s_e^2)}{n^2},\quad
           E[V_{cell}] = \frac{s_a^2 + s_b^2 + s_e^2}{n};

the centering multiplies the image terms by about :math:`1 - 1/I`, which is what the :math:`G/(G-1)`
factors of the cluster-robust variance put back. The three equations are exactly determined; a component
that comes out negative (sampling noise where the true one is small) is clipped at 0 by solving the
equations as non-negative least squares (each equation scaled to unit norm), and `Components.clipped` names
it. The difference's components come from the cross-products of the two methods' cluster sums (the
off-diagonal terms of `evaluation.compare`'s decomposition), which identify the covariances of the two
methods' image effects and rater effects; the non-cancelling parts are then clipped into the range a
covariance matrix allows, :math:`[(s_A - s_B)^2, (s_A + s_B)^2]`.

Measured by simulation (``python benchmarks/planning.py``; crossed logistic effects of `benchmarks.crossed`,
500-image designs; tables in BENCHMARKS.md): components fitted on full-size experiments predicted the mean
half-width of `evaluation.score`'s interval within 5% (ratios 0.96 to 1.05 per method and design); from
40-image pilots the prediction averaged over 40 pilots was within 12% (0.95 to 1.12) except for rates near 0%
(0.83), and one pilot's prediction fell within 0.70 to 1.24 of the achieved width in 80% of pilots (0.53 to
1.51 near 0%, where a pilot holds a handful of fooled answers). With the true difference set to the pilots'
mean minimal detectable difference, `evaluation.compare` rejected in 86% and 90% of mixed-design runs (the
pilot's rater x method part is clipped upward: conservative) and 71% with one method per rater and heavy
rater effects; the power predicted from full-size components was 0.86, 0.91 and 0.81.

Depends on numpy and scipy only.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from . import _cluster, _common
from .vtt import _wilson_bounds

__all__ = ["Components", "DifferenceComponents", "Prediction", "RatersNeeded", "components",
           "difference_components", "components_from_priors", "design_df", "predict", "predict_difference",
           "raters_needed", "power_at", "MIXINGS"]

MIXINGS = ("mixed", "single")


@dataclass(frozen=True)
class Components:
    """Variance components of one method's judgments, on the probability scale (fractions, not points).

    Attributes
    ----------
    rate : float
        The method's VTT score (fraction of its judgments where the colorized image was picked).
    image, rater, residual : float
        :math:`s_a^2`, :math:`s_b^2`, :math:`s_e^2`: variances of the image effects, the rater effects and
        the residual (judgment noise and image x rater interaction).
    n_trials, n_images, n_raters : int
        The pilot's size (0 for priors).
    clipped : tuple of str
        Names of the components that were clipped at 0 (negative unconstrained estimates).
    source : str
        ``'pilot'`` or ``'priors'``.
    rater_size_factor : float
        :math:`\\sum_r n_r^2 / (n \\bar n_r)`, 1 when every rater gave the method as many judgments, about
        :math:`1 + CV^2` when their numbers vary with coefficient of variation CV (see `predict`).
    """

    rate: float
    image: float
    rater: float
    residual: float
    n_trials: int = 0
    n_images: int = 0
    n_raters: int = 0
    clipped: tuple = ()
    source: str = "pilot"

    @property
    def raters_per_image(self) -> float:
        """Mean judgments per image: the pilot's K (distinct raters per image, since no rater repeats one)."""
        return self.n_trials / self.n_images if self.n_images else float("nan")

    @property
    def trials_per_rater(self) -> float:
        """Mean judgments of this method per rater: the pilot's T."""
        return self.n_trials / self.n_raters if self.n_raters else float("nan")

    rater_size_factor: float = 1.0


@dataclass(frozen=True)
class DifferenceComponents:
    """What the variance of the difference of two methods' scores depends on (probability scale).

    Attributes
    ----------
    method_a, method_b
        The two methods; the difference is a - b.
    a, b : Components
        Each method's own components.
    image : float
        :math:`s_{a\\Delta}^2 = Var(a_{iA} - a_{iB})`: the image x method part that does not cancel.
    rater : float
        :math:`s_{b\\Delta}^2 = Var(b_{rA} - b_{rB})` for raters who see both methods. When no pilot rater
        saw both, the covariance is unknown and taken as 0 (no cancellation): ``rater_identified`` is False.
    rater_identified : bool
        Whether some pilot rater judged both methods.
    n_images_shared, n_raters_shared : int
        Images judged under both methods, raters who judged both.
    """

    method_a: object
    method_b: object
    a: Components
    b: Components
    image: float
    rater: float
    rater_identified: bool = True
    n_images_shared: int = 0
    n_raters_shared: int = 0

    @property
    def residual(self) -> float:
        """:math:`s_{eA}^2 + s_{eB}^2`: the judgment noise of the two methods, which never cancels."""
        return self.a.residual + self.b.residual

    @property
    def difference(self) -> float:
        return self.a.rate - self.b.rate


@dataclass(frozen=True)
class Prediction:
    """The predicted interval of one score (or difference) for one design.

    ``variance`` and ``standard_error`` of the estimate; ``df`` and ``critical`` (the Student t value of the
    interval); ``half_width`` = critical * standard_error; ``n_raters`` the design's raters (of this
    method, or of the pair); ``floor`` the half-width with infinitely many raters per image (the image
    effects alone, at the same images).
    """

    n_images: int
    k: float
    trials_per_rater: float
    n_raters: float
    variance: float
    standard_error: float
    df: float
    critical: float
    half_width: float
    confidence: float
    floor: float


@dataclass(frozen=True)
class RatersNeeded:
    """The answer to "to reach +-target, about how many more raters?" (see `raters_needed`).

    ``reachable`` is False when even infinitely many raters per image would leave the half-width above the
    target (the image floor); then ``k_needed`` and ``more_raters`` are None and ``images_needed`` (with
    ``raters_for_images``) says how many images at the current K and T would reach it. ``now`` is the
    model's half-width for the current design; ``at_target`` the prediction at ``k_needed``. ``cost`` is
    ``more_raters * price_per_rater`` (None without a price).
    """

    target: float
    reachable: bool
    now: Prediction
    k_needed: float | None
    more_raters: int | None
    at_target: Prediction | None
    floor: float
    images_needed: int | None
    raters_for_images: int | None
    cost: float | None


# --- the moment estimator -------------------------------------------------------------------------------------


def _coefficients(x, kappa, grp, n_g, g, h):
    r"""Coefficient of :math:`\theta^{(\kappa)}_{gh}` in :math:`E[\sum_x E_{xg} E_{xh}]`.

    :math:`E_{xg} = \sum_{t \in x, g} (y_t - \hat p_g)/n_g`; :math:`\theta^{(\kappa)}_{gh}` is the covariance
    of the effects of groups g and h on two judgments that share the cluster :math:`\kappa` (an image, a
    rater, or the judgment itself for the residual). With :math:`c_{\kappa g}` the vector of counts, over the
    clusters x, of the judgments of group g in :math:`\kappa`, :math:`c_g` that of all of group g and
    :math:`r_{\kappa g} = n_{\kappa g}/n_g`, the coefficient is

    .. math::  \frac{1}{n_g n_h}\sum_\kappa (c_{\kappa g} - r_{\kappa g} c_g)\cdot(c_{\kappa h} - r_{\kappa h} c_h),

    the centering at each group's mean included.
    """
    G = n_g.size
    _, joint = np.unique(np.stack([x, kappa]), axis=1, return_inverse=True)
    joint = joint.ravel()
    n_joint = np.bincount(joint * G + grp, minlength=(joint.max() + 1) * G).reshape(-1, G)
    n_x = np.bincount(x * G + grp, minlength=(x.max() + 1) * G).reshape(-1, G)
    n_k = np.bincount(kappa * G + grp, minlength=(kappa.max() + 1) * G).reshape(-1, G)
    r = n_k / n_g
    term1 = float(n_joint[:, g] @ n_joint[:, h])
    in_g, in_h = grp == g, grp == h
    term2 = float((r[kappa[in_g], h] * n_x[x[in_g], h]).sum())
    term3 = float((r[kappa[in_h], g] * n_x[x[in_h], g]).sum())
    term4 = float(r[:, g] @ r[:, h]) * float(n_x[:, g] @ n_x[:, h])
    return (term1 - term2 - term3 + term4) / (n_g[g] * n_g[h])


def _decomposition(y, img, rat, grp, G):
    """Observed cross-products S_X[g, h] = sum_x E_xg E_xh for X = image, rater, cell; and the coefficient
    arrays coef[X][family][g, h] of their expectations (families: image, rater, residual)."""
    # The observed sums are the cluster-robust variance's own (`evaluation._cluster`).
    n_rat = rat.max() + 1
    comp = _cluster.components(y, img, rat, grp, img.max() + 1, n_rat, G)
    mean, n_g, observed = comp.rates, comp.n, comp.residual
    cell = np.unique(img.astype(np.int64) * n_rat + rat, return_inverse=True)[1].ravel()
    clusters = {"image": img, "rater": rat, "cell": cell}
    families = {"image": img, "rater": rat, "residual": np.arange(y.size)}
    coef = {}
    for name, x in clusters.items():
        coef[name] = {}
        for fam, kappa in families.items():
            c = np.zeros((G, G))
            for g in range(G):
                for h in range(g, G):
                    if fam == "residual" and g != h:
                        continue  # one judgment belongs to one group
                    c[g, h] = c[h, g] = _coefficients(x, kappa, grp, n_g, g, h)
            coef[name][fam] = c
    return mean, n_g, observed, coef


_CLUSTERS = ("image", "rater", "cell")
_FAMILIES = ("image", "rater", "residual")


def _solve_nonnegative(matrix, rhs):
    """Exact solution when it is non-negative, else non-negative least squares on rows of unit norm."""
    try:
        solution = np.linalg.solve(matrix, rhs)
    except np.linalg.LinAlgError:
        solution = np.full(rhs.size, -1.0)
    if np.all(solution >= 0):
        return solution, ()
    norms = np.linalg.norm(matrix, axis=1)
    norms[norms == 0] = 1.0
    clipped_solution, _ = optimize.nnls(matrix / norms[:, None], rhs / norms)
    clipped = tuple(name for name, s in zip(_FAMILIES, solution) if s < 0)
    return clipped_solution, clipped


def _fit_group(observed, coef, g):
    matrix = np.array([[coef[X][f][g, g] for f in _FAMILIES] for X in _CLUSTERS])
    rhs = np.array([observed[X][g, g] for X in _CLUSTERS])
    return _solve_nonnegative(matrix, rhs)


def _pilot(chose_generated, image_ids, rater_ids):
    y, img, images, rat, raters = _common.judgments(chose_generated, image_ids, rater_ids)
    if images.size < 2 or raters.size < 2:
        raise ValueError(f"A pilot needs at least 2 images and 2 raters to separate image from rater effects; "
                         f"got {images.size} image(s) and {raters.size} rater(s).")
    return y, img, rat


def components(chose_generated, image_ids, rater_ids) -> Components:
    """Variance components of one method's VTT judgments, by the method of moments (see the module's Notes).

    Parameters
    ----------
    chose_generated : array_like of bool or {0, 1}, shape (n,)
        One method's judgments: true when the rater picked the colorized image.
    image_ids, rater_ids : array_like, shape (n,)
        Ids of each judgment's image and rater (all str or all int). A repeated (image, rater) cell (a rater
        who judged an image twice under the method, which the platform never allows) is taken as it is: its
        two judgments share the image and rater effects, and their interaction counts as residual.

    Returns
    -------
    Components

    Raises
    ------
    ValueError
        Empty or invalid input, or fewer than 2 images or raters.
    """
    y, img, rat = _pilot(chose_generated, image_ids, rater_ids)
    grp = np.zeros(y.size, dtype=np.int64)
    mean, _, observed, coef = _decomposition(y, img, rat, grp, 1)
    (s_a, s_b, s_e), clipped = _fit_group(observed, coef, 0)
    return Components(rate=float(mean[0]), image=float(s_a), rater=float(s_b), residual=float(s_e),
                      n_trials=int(y.size), n_images=int(img.max() + 1), n_raters=int(rat.max() + 1),
                      clipped=clipped, rater_size_factor=_size_factor(rat))


def difference_components(chose_generated, image_ids, rater_ids, method_ids, pair) -> DifferenceComponents:
    """Components of the difference ``pair[0] - pair[1]`` of two methods' scores (see the module's Notes).

    Parameters
    ----------
    chose_generated, image_ids, rater_ids, method_ids : array_like, shape (n,)
        Judgments of several methods, as for `evaluation.compare`; those of methods outside `pair` are
        ignored.
    pair : tuple of two method ids

    Returns
    -------
    DifferenceComponents
        Each method's `Components` (equal to `components` of its own judgments) and the non-cancelling image
        and rater parts of the difference.
    """
    y = _common.binary("chose_generated", chose_generated)
    methods = _common.check_ids("method_ids", method_ids)
    if methods.size != y.size:
        raise ValueError(f"`method_ids` must have the same length as `chose_generated` ({y.size}); "
                         f"got {methods.size}.")
    try:
        first, second = pair
    except (TypeError, ValueError):
        raise ValueError(f"`pair` must be two method ids; got {pair!r}.") from None
    if first == second:
        raise ValueError(f"`pair` must be two different method ids; got {pair!r}.")
    for label in (first, second):
        if not (methods == label).any():
            raise ValueError(f"`pair` names {label!r}, which is not in `method_ids`.")
    keep = (methods == first) | (methods == second)
    image_ids = _common.check_ids("image_ids", image_ids)
    rater_ids = _common.check_ids("rater_ids", rater_ids)
    for name, ids in (("image_ids", image_ids), ("rater_ids", rater_ids)):
        if ids.size != y.size:
            raise ValueError(f"`{name}` must have the same length as `chose_generated` ({y.size}); "
                             f"got {ids.size}.")
    grp = np.where(methods[keep] == first, 0, 1)
    y, img, rat = _pilot(y[keep], image_ids[keep], rater_ids[keep])
    mean, n_g, observed, coef = _decomposition(y, img, rat, grp, 2)
    own = []
    for g in range(2):
        sel = grp == g
        (s_a, s_b, s_e), clipped = _fit_group(observed, coef, g)
        own.append(Components(rate=float(mean[g]), image=float(s_a), rater=float(s_b), residual=float(s_e),
                              n_trials=int(sel.sum()), n_images=int(np.unique(img[sel]).size),
                              n_raters=int(np.unique(rat[sel]).size), clipped=clipped,
                              rater_size_factor=_size_factor(rat[sel])))
    # Cross-products: E[S_X[0, 1]] = cov_a * coef[X]['image'][0, 1] + cov_b * coef[X]['rater'][0, 1].
    matrix = np.array([[coef[X]["image"][0, 1], coef[X]["rater"][0, 1]] for X in _CLUSTERS])
    rhs = np.array([observed[X][0, 1] for X in _CLUSTERS])
    shared_img = np.intersect1d(img[grp == 0], img[grp == 1]).size
    shared_rat = np.intersect1d(rat[grp == 0], rat[grp == 1]).size
    cov = np.zeros(2)
    usable = [j for j in range(2) if np.any(matrix[:, j] != 0)]
    if usable:
        cov[usable] = np.linalg.lstsq(matrix[:, usable], rhs, rcond=None)[0]
    a, b = own

    def non_cancelling(var_a, var_b, covariance):
        sa, sb = math.sqrt(var_a), math.sqrt(var_b)
        return float(np.clip(var_a + var_b - 2 * covariance, (sa - sb) ** 2, (sa + sb) ** 2))

    return DifferenceComponents(
        method_a=_label(first), method_b=_label(second), a=a, b=b,
        image=non_cancelling(a.image, b.image, cov[0] if shared_img else 0.0),
        rater=non_cancelling(a.rater, b.rater, cov[1] if shared_rat else 0.0),
        rater_identified=bool(shared_rat), n_images_shared=int(shared_img), n_raters_shared=int(shared_rat))


def _size_factor(rat):
    """sum_r n_r^2 / (n * mean n_r): how much unequal numbers of judgments per rater weigh the rater effects."""
    counts = np.bincount(rat)
    counts = counts[counts > 0].astype(np.float64)
    return float((counts @ counts) / counts.sum() / counts.mean())


def _label(value):
    return value.item() if isinstance(value, np.generic) else value


def _non_negative(name, value, *, positive=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or (
            value <= 0 if positive else value < 0):
        kind = "a positive" if positive else "a non-negative"
        raise ValueError(f"`{name}` must be {kind} finite number; got {value!r}.")
    return float(value)


def components_from_priors(*, sd_image, sd_rater, sd_residual=None, rate=None) -> Components:
    """Components from stated standard deviations on the probability scale (fractions: 0.1 is 10 points).

    ``sd_residual`` defaults to what the rate leaves: a 0/1 answer with mean ``rate`` has total variance
    ``rate * (1 - rate)``, so :math:`s_e^2 = p(1-p) - s_a^2 - s_b^2` (an error if negative). Give ``rate`` or
    ``sd_residual`` (or both; ``rate`` defaults to 0.5, the most variable, when only ``sd_residual`` is given).
    """
    s_a = _non_negative("sd_image", sd_image)
    s_b = _non_negative("sd_rater", sd_rater)
    if rate is not None:
        rate = _non_negative("rate", rate)
        if not 0 < rate < 1:
            raise ValueError(f"`rate` must be strictly between 0 and 1; got {rate!r}.")
    if sd_residual is None:
        if rate is None:
            raise ValueError("Give `sd_residual` or `rate` (from which the residual variance follows).")
        residual = rate * (1 - rate) - s_a**2 - s_b**2
        if residual < 0:
            raise ValueError(f"sd_image = {s_a:g} and sd_rater = {s_b:g} leave no residual variance at rate "
                             f"{rate:g}: a 0/1 answer has total variance {rate * (1 - rate):.4g} "
                             f"< {s_a**2 + s_b**2:.4g}.")
    else:
        residual = _non_negative("sd_residual", sd_residual) ** 2
    return Components(rate=0.5 if rate is None else rate, image=s_a**2, rater=s_b**2, residual=residual,
                      source="priors")


# --- predictions -----------------------------------------------------------------------------------------------


def design_df(n_images, n_raters) -> float:
    """Degrees of freedom of the t critical value of a design's two-way cluster-robust interval.

    ``min(n_images, n_raters) - 1`` (at least 1): the number of clusters of the scarcer kind, less one, as
    the interval of `evaluation.score` uses for few clusters (Cameron, Gelbach and Miller 2011 recommend
    G - 1 for the smaller dimension). Large designs barely depend on it: with 100 clusters t is 1.98.
    """
    return max(1.0, float(min(n_images, n_raters)) - 1.0)


def _design(n_images, k, trials_per_rater):
    n_images = _non_negative("n_images", n_images, positive=True)
    k = _non_negative("k", k, positive=True)
    trials_per_rater = _non_negative("trials_per_rater", trials_per_rater, positive=True)
    return n_images, k, trials_per_rater


def _critical(confidence, df):
    return float(stats.t.ppf(0.5 + 0.5 * confidence, df))


def _half_width(critical, variance, rate):
    """Half-width of the interval for this variance: t * se for a difference (``rate`` None); for a score, half
    the Wilson interval at the effective number of trials ``rate (1 - rate) / variance``, with the t critical
    value, as `evaluation.score` computes it (about t * se unless the effective number is small and the rate
    near 0 or 1, where the Wilson interval is the longer)."""
    if rate is None or not 0 < rate < 1 or variance <= 0:
        return critical * math.sqrt(variance)
    low, high = _wilson_bounds(rate, rate * (1 - rate) / variance, critical, False, False)
    return (high - low) / 2


def _prediction(n_images, k, t_per_rater, n_raters, image, rest, confidence, rate=None, n_raters_shown=None):
    """`n_raters`: the effective number that sets the degrees of freedom; `n_raters_shown`: the count."""
    variance = image / n_images + rest / (n_images * k)
    df = design_df(n_images, n_raters)
    critical = _critical(confidence, df)
    floor_critical = _critical(confidence, max(1.0, n_images - 1))
    floor = _half_width(floor_critical, image / n_images, rate) if image > 0 else 0.0
    return Prediction(n_images=n_images, k=k, trials_per_rater=t_per_rater,
                      n_raters=n_raters if n_raters_shown is None else n_raters_shown, variance=variance,
                      standard_error=math.sqrt(variance), df=df, critical=critical,
                      half_width=_half_width(critical, variance, rate), confidence=confidence, floor=floor)


def predict(comp: Components, n_images, k, trials_per_rater, *, confidence=0.95,
            rater_size_factor=1.0) -> Prediction:
    """Predicted interval of one method's VTT score for a design of `n_images` images, `k` raters per image
    and `trials_per_rater` judgments of this method per rater (see the module's Notes for the formula).

    The design may be fractional (a mean K of 2.4 in a running experiment). `rater_size_factor` (at least 1)
    is for raters who give unequal numbers of judgments: the rater term is
    :math:`s_b^2 \\sum_r n_r^2 / n^2 = s_b^2 T f / (IK)` with :math:`f = \\sum_r n_r^2 / (n \\bar n_r)`, and
    the degrees of freedom use the effective number of raters :math:`IK/(Tf)` (Kish's), as `evaluation.score`
    does. The default 1 is the platform's: every session deals the same number of trials. Pass
    ``comp.rater_size_factor`` to keep the pilot's spread of rater sizes.
    """
    n_images, k, t = _design(n_images, k, trials_per_rater)
    confidence = _common.confidence_level(confidence)
    f = _size(rater_size_factor)
    return _prediction(n_images, k, t, n_images * k / (t * f), comp.image, t * f * comp.rater + comp.residual,
                       confidence, comp.rate, n_raters_shown=n_images * k / t)


def _size(factor):
    factor = _non_negative("rater_size_factor", factor, positive=True)
    if factor < 1:
        raise ValueError(f"`rater_size_factor` must be at least 1 (equal numbers of judgments); got {factor!r}.")
    return factor


def predict_difference(diff: DifferenceComponents, n_images, k, trials_per_rater, *, mixing="mixed",
                       confidence=0.95, alpha=0.05, power=0.8, rater_size_factor=1.0) -> tuple[Prediction, float]:
    """Predicted interval of the difference of two methods' scores, and the minimal detectable difference.

    `trials_per_rater` is per method, as in `predict`. ``mixing='mixed'``: every rater sees both methods,
    so their rater x method parts are what counts (:math:`s_{b\\Delta}^2`); ``'single'``: each rater sees one
    method and the two methods' rater variances add up. Returns ``(prediction, mdd)`` with
    ``mdd = (t_{1 - alpha/2} + t_{power}) * se`` at the design's degrees of freedom: the smallest true
    difference a two-sided level-`alpha` test detects with probability `power`. `rater_size_factor` as in
    `predict`.
    """
    n_images, k, t = _design(n_images, k, trials_per_rater)
    mixing = _common.choice("mixing", mixing, MIXINGS)
    confidence = _common.confidence_level(confidence)
    alpha = _fraction("alpha", alpha)
    power = _fraction("power", power)
    f = _size(rater_size_factor)
    rater = diff.rater if mixing == "mixed" else diff.a.rater + diff.b.rater
    n_raters = n_images * k / t * (1 if mixing == "mixed" else 2)
    pred = _prediction(n_images, k, t, n_raters / f, diff.image, t * f * rater + diff.residual, confidence,
                       n_raters_shown=n_raters)
    mdd = (_critical(1 - alpha, pred.df) + float(stats.t.ppf(power, pred.df))) * pred.standard_error
    return pred, mdd


def power_at(difference, prediction: Prediction, *, alpha=0.05) -> float:
    """Probability that a two-sided level-`alpha` t test rejects no difference when the true difference is
    `difference` and the estimate has the predicted standard error (normal shift of a t statistic)."""
    crit = _critical(1 - _fraction("alpha", alpha), prediction.df)
    shift = abs(difference) / prediction.standard_error
    return float(stats.t.sf(crit - shift, prediction.df) + stats.t.cdf(-crit - shift, prediction.df))


def _fraction(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise ValueError(f"`{name}` must be a number strictly between 0 and 1; got {value!r}.")
    return float(value)


def raters_needed(comp: Components, target, *, n_images, k, trials_per_rater, n_raters_now=None,
                  confidence=0.95, price_per_rater=None, rater_size_factor=1.0, k_max=1e6) -> RatersNeeded:
    """How many more raters bring one method's predicted half-width down to `target` (a fraction).

    More raters means a larger K (raters per image) at the same images and the same judgments per rater:
    the design goes from ``(n_images, k, trials_per_rater)`` to ``(n_images, k_needed, trials_per_rater)``,
    ``k_needed`` the smallest (fractional) K whose predicted half-width is at most `target`, and
    ``more_raters = ceil(n_images * k_needed / trials_per_rater) - n_raters_now`` (``n_raters_now`` defaults to
    the current design's ``n_images * k / trials_per_rater``). When the current design already reaches the
    target, ``more_raters`` is 0. When the image floor :math:`t\\,s_a/\\sqrt I` is at or above the target, no
    number of raters reaches it: ``reachable`` is False and ``images_needed`` is the smallest number of images
    that would, at the same K and T (``raters_for_images`` the raters those would take in all). `cost` is
    ``more_raters * price_per_rater``. `rater_size_factor` as in `predict`.
    """
    target = _non_negative("target", target, positive=True)
    f = _size(rater_size_factor)
    n_images, k, t = _design(n_images, k, trials_per_rater)
    confidence = _common.confidence_level(confidence)
    if price_per_rater is not None:
        price_per_rater = _non_negative("price_per_rater", price_per_rater)
    if n_raters_now is None:
        n_raters_now = n_images * k / t
    now = predict(comp, n_images, k, t, confidence=confidence, rater_size_factor=f)

    def excess(k_new):
        return predict(comp, n_images, k_new, t, confidence=confidence, rater_size_factor=f).half_width - target

    floor = now.floor
    images_needed = raters_for_images = None
    if now.half_width <= target:
        k_needed, more, at_target, reachable = k, 0, now, True
    elif floor >= target or excess(k_max) > 0:
        reachable, k_needed, more, at_target = False, None, None, None

        def excess_images(i_new):
            return predict(comp, i_new, k, t, confidence=confidence, rater_size_factor=f).half_width - target

        hi = n_images
        while excess_images(hi) > 0 and hi < 1e9:
            hi *= 2
        if excess_images(hi) <= 0:
            images_needed = math.ceil(optimize.brentq(excess_images, n_images, hi, xtol=1e-6))
            raters_for_images = math.ceil(images_needed * k / t)
    else:
        hi = k
        while excess(hi) > 0:
            hi *= 2
        k_needed = float(optimize.brentq(excess, k, hi, xtol=1e-9))
        more = max(0, math.ceil(n_images * k_needed / t - 1e-9) - math.ceil(n_raters_now - 1e-9))
        at_target = predict(comp, n_images, k_needed, t, confidence=confidence, rater_size_factor=f)
        reachable = True
    cost = None if price_per_rater is None or more is None else more * price_per_rater
    return RatersNeeded(target=target, reachable=reachable, now=now, k_needed=k_needed, more_raters=more,
                        at_target=at_target, floor=floor, images_needed=images_needed,
                        raters_for_images=raters_for_images, cost=cost)
