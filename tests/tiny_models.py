"""Each trainable model in a configuration small enough to train a few steps on the CPU in a test.

Shared by the training tests; imports no Django, so that the processes the
distributed tests spawn can import it.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from colorizers import get_colorizer

CONFIGS: dict[str, dict[str, Any]] = {
    "zhang2016": {"width_mult": 1 / 16},
    "lal2017": {"width_mult": 1 / 16, "critic_width_mult": 1 / 8, "num_classes": 4, "n_critic": 1},
    "liang2016": {"widths": [4, 4, 4, 4], "mse_iters": 1},      # step 1 trains with the KL loss
    "pixcolor": {"image_size": 32, "trunk_layers": [1, 1, 1], "trunk_width": 8, "cond_channels": 8,
                 "pixelcnn_channels": 8, "pixelcnn_blocks": 2, "first_kernel": 3, "block_kernel": 3,
                 "hidden": 16, "bins": 4, "refine_width": 8},
    "royer2017": {"working_size": 32, "embed_widths": [4, 4, 8, 8], "embed_blocks": 1, "embed_dilations": [2],
                  "embed_dilated_blocks": 1, "embed_channels": 16, "channels": 8, "n_blocks": 2, "n_mix": 2,
                  "dropout": 0.0, "polyak": False},
}


def tiny_model(model: str, seed: int, **config: Any) -> tuple[nn.Module, dict[str, tuple]]:
    """The model with weights from ``seed``, in training mode, and its optimisers (lr 1e-3)."""
    torch.manual_seed(seed)
    net = get_colorizer(model)(**{**CONFIGS[model], **config})
    if model == "liang2016":   # its output layer starts at zero (grey, exactly, in any precision): give it weights
        for patch_net in (net.net_u, net.net_v):
            nn.init.normal_(patch_net.out.weight, std=0.1)
    optimizers = net.configure_optimizers({**net.default_train_config(), "lr": 1e-3})
    return net.train(), optimizers
