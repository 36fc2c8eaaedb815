"""Colorization models behind one interface, with no dependency on the web app.

Every model subclasses `Colorizer` (see `colorizers.base`): it maps a batch of
CIE L* images (B, 1, H, W) to predicted a*b* chroma (B, 2, H, W). Models are
looked up by name with `get_colorizer`; importing this package registers the
control methods of `colorizers.controls` (``ground_truth``, ``grayscale``,
``mean_chroma``). Colour conversions live in `colorizers.color`, checkpoint
files in `colorizers.checkpoint`, training in ``python -m colorizers.train``.
"""
from . import controls  # noqa: F401  (registers the controls)
from . import zhang2016  # noqa: F401  (registers zhang2016)
from . import lal2017  # noqa: F401  (registers lal2017)
from . import royer2017  # noqa: F401  (registers royer2017)
from . import liang2016  # noqa: F401  (registers liang2016)
from . import pixcolor  # noqa: F401  (registers pixcolor)
from .base import Colorizer, ColorizerInfo
from .registry import describe_inference_options, get_colorizer, list_colorizers, register

__all__ = ["Colorizer", "ColorizerInfo", "register", "get_colorizer", "list_colorizers", "describe_inference_options"]
