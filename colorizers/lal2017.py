"""Lal, Garg, Verma, adversarial colorization with class guidance, ICSPS 2017 (``lal2017``).

The paper's model, as far as it is described: a generator with no noise input
maps L* to a distribution over Zhang et al.'s 313 a*b* bins and, through Zhang's
annealed-mean decoding, to a*b* at 1/4 of the input's side (64 x 64 for 256 x 256
images); a classification head on the generator's last layer predicts the image's
class (softmax cross-entropy on the ImageNet labels); a Wasserstein critic f_w
tells real L*a*b* from generated. The generator minimises

    L_total = lambda1 L_co + lambda2 L_cl + lambda3 L_g,    L_g = -E f_w(G(L)),

with L_co Zhang's class-rebalanced soft-encoded cross-entropy, and the critic
L_critic = E f_w(G(L)) - E f_w(real). Nothing else is published, and there is no
code; every choice below is ours.

Choices (every deviation from the paper, and why; there is no authors' code)
-----------------------------------------------------------------------------
* **Bins and decoding**: Zhang et al.'s 313 bins, their list in their order
  (`colorizers.quantization.ab_bins`), and the annealed mean at T = 0.38. T is
  an inference setting (``temperature`` in `inference_options`, recorded in
  `params`); a checkpoint decodes with the T in its config unless
  `from_checkpoint` is given another. The critic, in training, sees the mean at
  the configured T.
* **Generator**: Zhang et al.'s ``eccv16`` trunk (`colorizers.zhang2016.eccv16_blocks`),
  the network whose output space and loss the paper adopts, so that a comparison
  with ``zhang2016`` isolates what the adversarial and class terms add. Widths
  scale with ``width_mult``. Test time: the annealed mean upsampled x4
  bilinearly, exactly as ``zhang2016``; deterministic, ``generator`` is ignored
  (there is no noise input).
* **Classification head**: global average pooling of the generator's last
  feature map (the 256 channels before the 313-way 1x1 convolution), then one
  linear layer to ``num_classes`` = 1000 ImageNet classes. Cross-entropy ignores
  label -1 (unknown; folder and demo data), so unlabelled data trains the other
  terms only.
* **Critic**: sees L* and a*b* at the generator's output resolution (the true
  image area-averaged down by 4, so real and generated a*b* are equally smooth),
  normalised as (L* - 50) / 100 and a*b* / 110. Four 3x3 stride-2 convolutions
  (64, 128, 256, 512 x ``critic_width_mult``) with LeakyReLU(0.2) and no
  normalisation, global average, linear to one score. The generated a*b* that it
  sees is the differentiable annealed mean, so L_g reaches the logits.
* **Lipschitz constraint: gradient penalty** (Gulrajani et al., "Improved Training
  of Wasserstein GANs", NeurIPS 2017), weight 10, on random interpolates of real
  and generated inputs, rather than the original WGAN's weight clipping: they
  show that clipping drives the critic to extremes of the clip range and to
  simple functions (capacity underuse) and makes training sensitive to the clip
  value, with exploding or vanishing gradients, while the penalty trains stably
  across architectures. That is why the critic has no batch normalisation (the
  penalty is per input, which batch statistics would couple).
* **Schedule**: ``n_critic`` = 5 critic updates per generator update (WGAN-GP's
  Algorithm 1). Algorithm 1 draws fresh real images for each critic update; here
  a training step is one batch, so its critic updates reuse it with fresh
  interpolates, and every batch still trains both players.
* **Loss weights** (the paper gives none; they are its lambdas): lambda1 = 1
  (L_co is the anchor; its scale is that of ``zhang2016``), lambda2 =
  0.08 and lambda3 = 0.01, set from a measurement
  (``benchmarks/lal2017_loss_weights.py``). ChromaGAN (Vitoria et al., WACV
  2020), the closest published recipe with the same three kinds of terms, uses
  0.003 and 0.1, but beside an MSE on a*b* (scaled by 1/255), whose gradient is
  a small fraction of this cross-entropy's, which starts near ln 313. The script
  measures, on the demo photos early in training (width 1/4, batch 8 of 176 px
  crops, lr 1e-4, every 15 steps, summarised over steps 30 to 75, ``--data demo
  --steps 75 --every 15``, when the
  critic has trained), the norm of each unweighted term's gradient at the
  generator's last shared feature map (the 256 channels both heads read):
  |grad L_co| 3.0e-3 to 4.9e-3, |grad L_cl| / |grad L_co| 0.95 to 1.50 (median
  1.17), |grad L_g| / |grad L_co| 7.5 to 14.3 (median 10.8; 1e-2 at step 0,
  before the critic has trained). With ChromaGAN's weights the class term would
  thus carry 0.35% of the colour gradient (nothing) and the adversarial one
  108% (as much as colour); rescaling both by the colour terms' ratio
  (|grad L_co| / |grad MSE|, median 52, so 0.16 and 5.2)
  does not transfer either, because the adversarial gradient is set by the
  critic's gradient penalty, not by the colour loss. So we fix the balance
  itself: each auxiliary term's weighted gradient is one tenth of the colour
  term's (the supervised loss keeps the colours anchored; the class term shapes
  the features and the critic sharpens, neither competes with colour), which
  gives 0.1 / 1.17 = 0.085 and 0.1 / 10.8 = 0.0093, kept to one significant
  digit as 0.08 and 0.01: between measurements the ratios move by a third either
  way, far more than the rounding.
* **Optimiser** (`default_train_config`): Adam, lr 1e-4, betas (0, 0.9) for both
  players, WGAN-GP's defaults; batch 32 of 176 x 176 random crops (mirrored) of
  images whose shorter side is scaled to 256 (``resize``): Zhang et al.'s data
  scales, those of the loss and trunk adopted (the paper's 64 x 64 ab output is
  that of a 256 x 256 test image; the network is fully convolutional, so it
  trains on crops); constant lr, 200k generator steps (the length of WGAN-GP's
  runs). The rebalancing prior is estimated from the training
  data as for ``zhang2016``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .color import rgb_to_lab
from .quantization import SIGMA, TEMPERATURE, ab_bins, annealed_mean, float32, rebalanced_cross_entropy
from .registry import register
from .distributed import shared_divisor
from .training import TrainableColorizer, TrainBatch, TrainingForward
from .zhang2016 import (
    AB_NORM, L_CENT, L_NORM, _class_weights, check_temperature, eccv16_blocks, estimate_prepared,
    pad_to_multiple,
)

__all__ = ["Lal2017Config", "Lal2017", "lal2017", "Generator", "Critic"]


@dataclass
class Lal2017Config:
    """Constructor arguments of `Lal2017` (defaults justified in the module docstring)."""

    width_mult: float = 1.0            # generator widths x this (1.0 = Zhang's 64 ... 512)
    critic_width_mult: float = 1.0     # critic widths 64, 128, 256, 512 x this
    num_classes: int = 1000            # classification head outputs (ImageNet)
    temperature: float = TEMPERATURE   # annealed mean, for the critic's input and at test time
    neighbours: int = 5                # soft encoding of L_co, as zhang2016
    sigma: float = SIGMA
    rebalance_lambda: float = 0.5
    chroma_threshold: float = 5.0
    lambda_co: float = 1.0             # lambda1: colorization cross-entropy
    lambda_cl: float = 0.08            # lambda2: classification cross-entropy (measured; docstring)
    lambda_g: float = 0.01             # lambda3: adversarial term -E f_w(G(L)) (measured; docstring)
    gp_weight: float = 10.0            # gradient penalty weight
    n_critic: int = 5                  # critic updates per generator update


def _width(channels: int, mult: float) -> int:
    return max(1, round(channels * mult))


class Generator(nn.Module):
    """Zhang's trunk: L* -> (313 logits at 1/4, the last 256-channel features)."""

    def __init__(self, width_mult: float, num_bins: int) -> None:
        super().__init__()
        for name, block in eccv16_blocks(width_mult, num_bins).items():
            self.add_module(name, block)

    @property
    def feature_channels(self) -> int:
        return self.model8[-1].in_channels

    def forward(self, L: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = ((L - L_CENT) / L_NORM).to(self.model1[0].weight.dtype)
        for block in (self.model1, self.model2, self.model3, self.model4, self.model5, self.model6, self.model7):
            x = block(x)
        features = self.model8[:-1](x)                                    # (B, 256, H/4, W/4)
        return self.model8[-1](features), features                        # (B, 313, H/4, W/4)


class Critic(nn.Module):
    """f_w: normalised (L*, a*, b*) (B, 3, h, w) -> (B,) float32 scores.

    The scores are always float32 (under bf16 autocast too): they only ever enter
    losses, the Wasserstein estimate, L_g and the gradient penalty's sum.
    """

    def __init__(self, width_mult: float = 1.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for width in (64, 128, 256, 512):
            cout = _width(width, width_mult)
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.score = nn.Linear(cin, 1)

    def forward(self, lab: torch.Tensor) -> torch.Tensor:
        return self.score(self.features(lab).mean(dim=(2, 3))).squeeze(1).float()


@register("lal2017")
class Lal2017(TrainableColorizer):
    """Lal et al. 2017's adversarial, class-guided colorizer (see the module docstring)."""

    inference_options = {"temperature": (
        "annealed-mean decoding temperature T > 0: softmax(logits / T), then the mean over the 313 bins; "
        "1 = the plain mean, towards 0 = the most likely bin (default: the checkpoint's, Zhang et al.'s 0.38)")}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        cfg = Lal2017Config(**kwargs)
        cfg.temperature = check_temperature(cfg.temperature)
        if min(cfg.width_mult, cfg.critic_width_mult) <= 0 or cfg.n_critic < 1 or cfg.num_classes < 1:
            raise ValueError(f"widths, temperature, n_critic and num_classes must be positive, got {cfg}")
        self.config = asdict(cfg)
        self.cfg = cfg
        bins = ab_bins()
        self.generator = Generator(cfg.width_mult, len(bins))
        self.classifier = nn.Linear(self.generator.feature_channels, cfg.num_classes)
        self.critic = Critic(cfg.critic_width_mult)
        self.register_buffer("centres", bins)                            # (313, 2) a*b*
        self.register_buffer("class_weights", torch.ones(len(bins)), persistent=False)

    # --- inference -----------------------------------------------------------

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """Annealed mean in float32 (autocast or not): (B, 313, h, w) -> (B, 2, h, w) a*b*; differentiable."""
        return annealed_mean(logits, self.centres, temperature=self.cfg.temperature)

    def forward(self, L, *, generator=None, reference_ab=None) -> torch.Tensor:
        H, W = L.shape[-2:]
        logits, _ = self.generator(pad_to_multiple(L))
        ab = F.interpolate(self.decode(logits), scale_factor=4, mode="bilinear", align_corners=False)
        return ab[..., :H, :W]

    # --- training ------------------------------------------------------------

    @classmethod
    def default_train_config(cls) -> dict[str, Any]:
        return {
            "batch_size": 32, "resize": 256, "crop": 176, "steps": 200_000,
            "lr": 1e-4, "betas": [0.0, 0.9], "weight_decay": 0.0,
            "prior_images": 50_000,
        }

    def configure_optimizers(self, config: Mapping[str, Any]) -> dict[str, tuple]:
        def adam(params):
            return torch.optim.Adam(params, lr=config["lr"], betas=tuple(config["betas"]),
                                    weight_decay=config["weight_decay"])
        generator_params = [*self.generator.parameters(), *self.classifier.parameters()]
        return {"generator": (adam(generator_params), None), "critic": (adam(self.critic.parameters()), None)}

    @classmethod
    def prepare(cls, config: Mapping[str, Any], batches: Iterable[TrainBatch]) -> dict[str, Any]:
        return estimate_prepared(batches, ab_bins(), limit=config.get("prior_images"))

    def load_prepared(self, prepared: Mapping[str, Any]) -> None:
        self.class_weights.copy_(_class_weights(prepared, self.centres, self.cfg.rebalance_lambda))

    def critic_input(self, L_small: torch.Tensor, ab_small: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) normalised L*a*b* for the critic."""
        return torch.cat([(L_small - L_CENT) / L_NORM, ab_small / AB_NORM], dim=1)

    def gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor | None = None
                         ) -> torch.Tensor:
        """E (||grad f_w(x_hat)|| - 1)^2 on x_hat uniformly between real and fake inputs.

        ``eps`` (B, 1, 1, 1): each item's mixing weight (default: drawn with ``torch.rand``;
        training passes the batch's `TrainBatch.uniform` draws).
        """
        if eps is None:
            eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
        x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
        grad, = torch.autograd.grad(self.critic(x_hat).sum(), x_hat, create_graph=True)
        return (grad.flatten(1).norm(dim=1) - 1).square().mean()

    def generate(self, L: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The generator's logits (B, 313, h, w) and the classification head's class logits (B, classes)."""
        logits, features = self.generator(L)
        return logits, self.classifier(features.mean(dim=(2, 3)))

    def critic_terms(self, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """E f(real) - E f(fake) and the gradient penalty (mixing weights ``eps``), for the critic's loss."""
        return self.critic(real).mean() - self.critic(fake).mean(), self.gradient_penalty(real, fake, eps)

    def training_forwards(self) -> dict[str, TrainingForward]:
        """The generator with its classification head, and the critic: two updates, two replicas.

        The generator's loss also runs the critic on the fakes, with the critic's
        parameters frozen (``requires_grad`` off): that call trains nothing of the
        critic, so it is not the critic's training forward.
        """
        return {"generator": TrainingForward(self.generate, [self.generator, self.classifier]),
                "critic": TrainingForward(self.critic_terms, [self.critic])}

    def train_step(self, batch: TrainBatch, step: int, optimizers: Mapping[str, tuple]) -> dict[str, float]:
        """One step: ``n_critic`` critic updates on this batch's fakes, then one generator update.

        The gradient penalty's mixing weights are the batch's per-item draws
        (`TrainBatch.uniform`, one set per critic update), and the classification
        loss is a mean over the labelled images of the global batch, so that a run on
        several ranks is the one-process run of its global batch.
        """
        cfg = self.cfg
        opt_g, _ = optimizers["generator"]
        opt_c, _ = optimizers["critic"]
        with float32(batch.rgb.device):    # the batch and its targets in float32 under bf16 autocast too
            lab = rgb_to_lab(batch.rgb)                                   # (B, 3, H, W) float32
        L, ab = lab[:, :1], lab[:, 1:]

        logits, class_logits = self.replica("generator")(L)               # (B, 313, h, w), (B, classes)
        logits = logits.float()                                           # L_co and the critic's input in float32
        size = logits.shape[-2:]
        real = self.critic_input(F.adaptive_avg_pool2d(L, size), F.adaptive_avg_pool2d(ab, size))
        fake = self.critic_input(F.adaptive_avg_pool2d(L, size), self.decode(logits))

        # critic: n_critic updates of E f(fake) - E f(real) + gp_weight * GP
        fake_fixed = fake.detach()
        for i in range(cfg.n_critic):
            wasserstein, gp = self.replica("critic")(real, fake_fixed, batch.uniform(1, 1, 1, salt=i))
            critic_loss = -wasserstein + cfg.gp_weight * gp
            opt_c.zero_grad(set_to_none=True)
            critic_loss.backward()
            opt_c.step()

        # generator: lambda1 L_co + lambda2 L_cl + lambda3 L_g
        loss_co = rebalanced_cross_entropy(
            logits, ab, self.centres, self.class_weights, neighbours=cfg.neighbours, sigma=cfg.sigma,
            chroma_threshold=cfg.chroma_threshold)
        labelled = batch.labels >= 0      # a mean over the labelled images (0 when none is)
        loss_cl = (F.cross_entropy(class_logits.float()[labelled], batch.labels[labelled], reduction="sum")
                   / shared_divisor(labelled.sum().float()))
        self.critic.requires_grad_(False)
        loss_g = -self.critic(fake).mean()
        self.critic.requires_grad_(True)
        loss = cfg.lambda_co * loss_co + cfg.lambda_cl * loss_cl + cfg.lambda_g * loss_g
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        return {"loss": loss.item(), "co": loss_co.item(), "cl": loss_cl.item(), "g": loss_g.item(),
                "critic": critic_loss.item(), "wasserstein": wasserstein.item(), "gp": gp.item()}


def lal2017(**kwargs: Any) -> Lal2017:
    """Lal et al. 2017's model (``width_mult=1.0``: Zhang's full-width trunk as generator)."""
    return Lal2017(**kwargs)
