"""Statistics of Visual Turing Test (VTT) results.

score
    VTT score (the trial-weighted fraction of trials where the generated image
    was picked) with a two-way cluster-robust confidence interval (images and
    raters; by default), a pigeonhole bootstrap or a Wilson interval.
compare, compare_all
    Difference of the VTT scores of two methods rated on the same images (or
    of every pair of methods), with a paired two-way cluster-robust interval,
    a two-sided p-value and Holm's adjustment.
holm
    Holm's step-down adjustment of a family of p-values.
quality
    Catch-trial accuracy per rater and the rule that flags inattentive raters.
agreement
    Agreement between raters: Krippendorff's alpha for nominal answers.
hype_time
    HYPE_time score of a method rated with adaptive exposures: the mean of its
    raters' staircase thresholds (in ms), with a bootstrap interval over
    raters. The staircase rule itself is `evaluation.staircase.next_exposure`.
VTTResult, Comparison, RaterQuality, Agreement, HypeTimeResult
    Their results.

Ids (of images, raters, methods, units) are all str or all int (or all float):
a missing id (None, NaN) or a mix of kinds (1 and "1") raises ValueError, since
either would silently merge or split clusters. An array numpy has already
converted (``np.asarray([1, "1"])`` is two strings "1") cannot be checked.

Depends on numpy and scipy only. Submodules imported by those who ask for them:
`evaluation.metrics` (automatic image metrics of a colorization against its real image: PSNR,
SSIM, CIEDE2000, colorfulness, raw-accuracy AuC; it also needs scikit-image),
`evaluation.fid` (the Frechet distance of two sets of Inception features) and
`evaluation.metric_agreement` (how well a metric predicts the VTT: Kendall's tau across
methods, the AUC across pairs, each with a bootstrap interval over images).
"""
from .comparison import Comparison, compare, compare_all, holm
from .raters import Agreement, RaterQuality, agreement, quality
from .staircase import HypeTimeResult, hype_time
from .vtt import VTTResult, score

__all__ = ["score", "VTTResult", "compare", "compare_all", "holm", "Comparison",
           "quality", "RaterQuality", "agreement", "Agreement", "hype_time", "HypeTimeResult"]
