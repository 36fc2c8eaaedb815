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


def _id_kind(kind):
    """The kind of an id's type: 'str', 'int', 'float', 'bool', 'None' or the type's name."""
    if issubclass(kind, (str, np.str_, bytes, np.bytes_)):
        return "str"
    if issubclass(kind, (bool, np.bool_)):
        return "bool"
    if issubclass(kind, numbers.Integral):
        return "int"
    if issubclass(kind, numbers.Real):
        return "float"
    if kind is type(None):
        return "None"
    return kind.__name__


_DTYPE_KINDS = {"U": "str", "S": "str", "i": "int", "u": "int", "f": "float", "b": "bool"}


def check_ids(name, ids):
    """`ids` (array_like) as a 1-D array, refusing what would silently merge or split ids.

    A missing id (None, NaN) would become one id shared by every missing one, and
    ids of mixed kinds (1 and "1", 1 and 1.0) would be merged or ordered by accident:
    each is a ValueError naming the parameter and the first offending value.
    """
    if isinstance(ids, np.ndarray) and ids.dtype != object:
        kinds = {_DTYPE_KINDS.get(ids.dtype.kind, str(ids.dtype))}
        flat = ids.ravel()
    else:
        flat = ids.ravel() if isinstance(ids, np.ndarray) else ids
        if not isinstance(flat, (list, tuple, np.ndarray)):
            flat = list(flat)
        kinds = {_id_kind(t) for t in set(map(type, flat))}
    if "None" in kinds:
        at = next(i for i, v in enumerate(flat) if v is None)
        raise ValueError(f"`{name}` must not contain None (a missing id); got None at position {at}.")
    if len(kinds) > 1 and "float" in kinds:
        at = next((i for i, v in enumerate(flat) if isinstance(v, numbers.Real) and v != v), None)
        if at is not None:
            raise ValueError(f"`{name}` must not contain NaN (a missing id); got nan at position {at}.")
    if len(kinds) > 1:
        examples = {}
        for v in flat:
            examples.setdefault(_id_kind(type(v)), v)
            if len(examples) == len(kinds):
                break
        shown = " and ".join(f"{examples[k]!r} ({k})" for k in sorted(examples))
        raise ValueError(f"`{name}` must be ids of one kind (all str or all int); got a mix: {shown}.")
    values = one_dimensional(name, ids)
    if kinds == {"float"}:
        missing = np.flatnonzero(np.isnan(values.astype(np.float64)))
        if missing.size:
            raise ValueError(f"`{name}` must not contain NaN (a missing id); got nan at position {missing[0]}.")
    if kinds - {"str", "int", "float", "bool"}:
        raise ValueError(f"`{name}` must be ids of one kind (all str or all int); got {', '.join(sorted(kinds))}.")
    return values


def codes(name, ids, n, reference="chose_generated"):
    """Integer codes 0..k-1 of `ids` (length `n`), the sorted unique ids."""
    ids = check_ids(name, ids)
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
