"""Colorizer checkpoints: plain-data files that load without running any code.

A checkpoint is a ``torch.save`` of one dict::

    {
        "format": "vtt-colorizer",   # tells it apart from any other .pt file
        "format_version": 1,
        "model": str,                # registry name, e.g. "mean_chroma"
        "config": dict,              # constructor keyword arguments
        "state_dict": dict[str, Tensor],
        "extra": dict,               # provenance: data description, data hash, ...
    }

holding only tensors, str, int, float, bool, None, lists and dicts with str keys,
so that ``torch.load(path, map_location="cpu", weights_only=True)`` reads it:
a checkpoint never needs to unpickle arbitrary objects, and one that would is
refused. Files are written atomically (a temporary file in the same directory,
then ``os.replace``), so a reader never sees half a checkpoint.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import uuid
from pathlib import Path
from typing import Any, Mapping

import torch

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "export_weights", "sha256_file"]

FORMAT = "vtt-colorizer"
FORMAT_VERSION = 1
_KEYS = ("format", "format_version", "model", "config", "state_dict", "extra")
#: what `colorizers.training` keeps in ``extra`` only to resume a run
TRAINING_STATE = ("optimizers", "schedulers", "rng")


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or not the one expected."""


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    model_name: str,
    state_dict: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically and return its path.

    Tensors are detached and moved to the CPU. A value of any type other than
    those listed in the module docstring raises TypeError naming its key, at
    save time rather than when someone tries to load the file.
    """
    path = Path(path)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model_name,
        "config": dict(config),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in state_dict.items()},
        "extra": dict(extra or {}),
    }
    _check_plain(payload, "checkpoint")
    path.parent.mkdir(parents=True, exist_ok=True)
    # opened by name rather than with tempfile.mkstemp, so the umask applies
    # (mkstemp's 0600 would leave the checkpoint unreadable to other users)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "xb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike[str], *, expected_model: str) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` for model ``expected_model``.

    Raises
    ------
    CheckpointError
        if the file is missing, is not a readable checkpoint (corrupt, another
        kind of file, or one that would need unpickling arbitrary objects),
        lacks any of the keys above, or belongs to another model. The message
        names the path.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path} holds objects other than tensors and plain data; "
            f"refusing to unpickle it ({str(exc).splitlines()[0]})"
        ) from exc
    except Exception as exc:  # torch.load reports damage as many types
        raise CheckpointError(
            f"{path} is corrupt or not a torch checkpoint ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a colorizer checkpoint")
    missing = [k for k in _KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} lacks the key(s) {', '.join(missing)}")
    if ckpt["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {ckpt['format_version']!r}, "
            f"this code reads version {FORMAT_VERSION}"
        )
    if ckpt["model"] != expected_model:
        raise CheckpointError(
            f"{path} is a checkpoint of model {ckpt['model']!r}, expected {expected_model!r}"
        )
    return ckpt


def export_weights(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    expected_model: str,
) -> Path:
    """Write a weights-only copy of checkpoint ``src`` to ``dst``, for serving and shipping.

    The copy keeps the model name, config, weights and provenance (data, data hash,
    seed, train config, step, last losses), drops the optimiser and scheduler states
    that only resuming a run needs (and the RNG state that checkpoints written before
    the trainer seeded each step held). It loads like any checkpoint; it cannot be
    resumed.
    """
    ckpt = load_checkpoint(src, expected_model=expected_model)
    kept = {k: v for k, v in ckpt["extra"].items() if k not in TRAINING_STATE}
    return save_checkpoint(dst, model_name=ckpt["model"], state_dict=ckpt["state_dict"], config=ckpt["config"],
                           extra=kept)


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks of ``chunk_size``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _check_plain(value: Any, where: str) -> None:
    """Raise TypeError unless ``value`` is plain data that ``weights_only`` loads."""
    if isinstance(value, (torch.Tensor, str, int, float, bool, type(None))):
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has a non-str key {key!r}")
            _check_plain(item, f"{where}[{key!r}]")
    else:
        raise TypeError(f"{where} is a {type(value).__name__}, not a tensor or plain data")
