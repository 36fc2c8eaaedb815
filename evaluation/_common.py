"""Input validation and resampling helpers shared by the modules of `evaluation`.

Every check raises ``ValueError`` with a message that names the parameter and
echoes the bad value, as in scipy.stats.
"""
import numbers
import operator

import numpy as np
from scipy.sparse import coo_array

# Bound on the memory of the per-batch blocks of a bootstrap, in bytes.
BATCH_BYTES = 2**28


def one_dimensional(name, values):
    values = np.asarray(values)
    if values.ndim != 1:
        raise ValueError(f"`{name}` must be one-dimensional; "
                         f"got shape {values.shape}.")
    return values


def binary(name, values, what="booleans or 0/1"):
    """1-D array of 0/1 as float64; anything else is an error."""
    y = one_dimensional(name, values)
    if y.dtype.kind in "biufO":
        bad = y[~((y == 0) | (y == 1))]
    else:
        bad = y
    if bad.size:
        raise ValueError(f"`{name}` must contain only {what}; "
                         f"got {bad[:1].tolist()[0]!r}.")
    return y.astype(np.float64)


def codes(name, ids, n, reference="chose_generated"):
    """Integer codes 0..k-1 of `ids` (length `n`), the sorted unique ids."""
    ids = one_dimensional(name, ids)
    if ids.size != n:
        raise ValueError(f"`{name}` must have the same length as "
                         f"`{reference}` ({n}); got {ids.size}.")
    try:
        uniques, inverse = np.unique(ids, return_inverse=True)
    except TypeError as exc:
        raise ValueError(f"`{name}` must be ids of one kind (all str or "
                         f"all int) so that they can be sorted; {exc}."
                         ) from exc
    return inverse.ravel(), uniques


def judgments(chose_generated, image_ids, rater_ids):
    """Validated answers (0/1) with image and rater codes: (y, img, images, rat, raters)."""
    y = binary("chose_generated", chose_generated)
    if y.size == 0:
        raise ValueError("`chose_generated` must contain at least one "
                         "judgment; got an empty array.")
    img, images = codes("image_ids", image_ids, y.size)
    rat, raters = codes("rater_ids", rater_ids, y.size)
    return y, img, images, rat, raters


def choice(name, value, options):
    if value not in options:
        raise ValueError(f"`{name}` must be one of {options}; got {value!r}.")
    return value


def confidence_level(confidence):
    if not isinstance(confidence, numbers.Real) or not 0 < confidence < 1:
        raise ValueError("`confidence` must be a real number strictly "
                         f"between 0 and 1; got {confidence!r}.")
    return float(confidence)


def positive_int(name, value, *, none_ok=False):
    if none_ok and value is None:
        return None
    try:
        result = operator.index(value)
    except TypeError:
        result = 0
    if result < 1:
        prefix = "None or " if none_ok else ""
        raise ValueError(f"`{name}` must be {prefix}a positive integer; "
                         f"got {value!r}.")
    return result


def generator(seed):
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError) as exc:
        raise ValueError("`seed` must be None, a non-negative integer or a "
                         f"numpy.random.Generator; got {seed!r}.") from exc


def batch_size(batch, n_boot, per_resample_bytes):
    """Resamples per batch: `batch` if given, else what fits in BATCH_BYTES."""
    batch = positive_int("batch", batch, none_ok=True)
    if batch is None:
        batch = max(1, BATCH_BYTES // per_resample_bytes)
    return min(batch, n_boot)


def cell_matrices(y, img, rat, n_images, n_raters):
    """Judgments summed per (rater, image) cell, as CSR arrays.

    Duplicates add up in tocsr(). Rows are raters so that the sparse-times-
    dense products of the bootstrap run along contiguous rows of the image
    counts.
    """
    shape = (n_raters, n_images)
    y_cell = coo_array((y, (rat, img)), shape=shape).tocsr()
    y_cell.eliminate_zeros()
    n_cell = coo_array((np.ones_like(y), (rat, img)), shape=shape).tocsr()
    return y_cell, n_cell


def draw_weights(rng, n, size):
    """`size` draws of how often each of `n` clusters is picked, shape (size, n).

    Each row counts `n` picks with replacement: a multinomial draw, made by
    counting uniform integers, which is several times faster than
    ``Generator.multinomial`` for many clusters.
    """
    picks = rng.integers(0, n, size=(size, n))
    picks += np.arange(size)[:, None] * n
    return np.bincount(picks.ravel(), minlength=size * n).reshape(size, n)
