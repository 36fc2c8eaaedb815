"""Measure the gradient each term of lal2017's generator loss sends into the generator.

Usage::

    .venv/bin/python benchmarks/lal2017_loss_weights.py --data demo
    .venv/bin/python benchmarks/lal2017_loss_weights.py --data synthetic --width-mult 0.25 --steps 60

Lal et al. give no loss weights. ChromaGAN (Vitoria et al., WACV 2020) weighs the
same kinds of terms 1 : 0.003 : 0.1 (colour : class : adversarial), but its colour
term is an MSE on a*b* scaled as OpenCV's 8-bit Lab stores them (1 a* unit = 1/255),
while lal2017's is Zhang's rebalanced cross-entropy over 313 bins. This script
trains lal2017 for a few steps (the critic as in training, so that L_g is measured
against a critic of the current generator) and, every ``--every`` steps from step
0, measures the norm of the gradient of each unweighted term with respect to the
generator's last shared feature map F (the 256 channels both heads read; every
term reaches the generator through it):

    co   Zhang's rebalanced soft-encoded cross-entropy (lal2017's L_co)
    mse  ChromaGAN's colour term on the same decoded a*b*: mean(((ab_hat - ab) / 255)^2)
    cl   the class cross-entropy (1000 classes, a fixed random label per image: at
         this stage of training the gradient's size does not depend on which label)
    g    the adversarial term -E f_w(G(L))

It prints, over the measurements from step ``--settle`` on (the critic, random at
step 0, needs a few updates before its gradient has its working size), the median
ratio r_x = |grad_F x| / |grad_F co| of each auxiliary term, what ChromaGAN's
weights would make of it (lambda_x r_x: the weighted term's share of the colour
gradient), and the weights that give each auxiliary term the share ``--target``
(default 1/10): lambda_x = target / r_x. For reference it also prints
s = |grad co| / |grad mse| and the weights 0.003 s and 0.1 s that would carry
ChromaGAN's weights over by rescaling its colour term to this one (this assumes
the auxiliary gradients are alike in both models, which the adversarial one,
set by the critic's gradient penalty, is not), and the same norms over the
trunk's parameters (every generator parameter below F) as a second view. CPU by
default; ``--device cuda`` where there is one.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from colorizers.color import rgb_to_lab  # noqa: E402
from colorizers.lal2017 import Lal2017  # noqa: E402
from colorizers.quantization import rebalanced_cross_entropy  # noqa: E402
from colorizers.training import RandomCrops, TrainBatch, resolve_data  # noqa: E402

CHROMAGAN = {"cl": 0.003, "g": 0.1}
AB_SCALE_8BIT = 255.0


def synthetic_batches(batch_size: int, crop: int, seed: int, device: torch.device):
    """Smooth random colour images: 4 x 4 random sRGB upsampled bicubically, plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    while True:
        coarse = torch.rand(batch_size, 3, 4, 4, generator=g)
        rgb = F.interpolate(coarse, size=(crop, crop), mode="bicubic", align_corners=False)
        rgb = (rgb + 0.02 * torch.randn(rgb.shape, generator=g)).clamp(0, 1)
        labels = torch.randint(0, 1000, (batch_size,), generator=g)
        yield TrainBatch(rgb.to(device), labels.to(device))


def data_batches(spec: str, batch_size: int, crop: int, resize: int, seed: int, device: torch.device):
    data = resolve_data(spec)
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 1000, (len(data.names),), generator=g).tolist()
    crops = RandomCrops(dataclasses.replace(data, labels=labels), crop=crop, resize=resize, seed=seed)
    k = 0
    while True:
        items = [crops[k + i] for i in range(batch_size)]
        k += batch_size
        rgb = torch.stack([x for x, _ in items]).float().div(255)
        yield TrainBatch(rgb.to(device), torch.tensor([y for _, y in items]).to(device))


def gradient_norms(model: Lal2017, batch: TrainBatch) -> tuple[dict[str, float], dict[str, float]]:
    """|grad_F term| and |grad_trunk term| of each unweighted term, on one batch (training mode)."""
    cfg = model.cfg
    lab = rgb_to_lab(batch.rgb)
    L, ab = lab[:, :1], lab[:, 1:]
    logits, features = model.generator(L)
    size = logits.shape[-2:]
    ab_hat = model.decode(logits)
    L_small, ab_small = F.adaptive_avg_pool2d(L, size), F.adaptive_avg_pool2d(ab, size)
    terms = {
        "co": rebalanced_cross_entropy(logits, ab, model.centres, model.class_weights, neighbours=cfg.neighbours,
                                       sigma=cfg.sigma, chroma_threshold=cfg.chroma_threshold),
        "mse": ((ab_hat - ab_small) / AB_SCALE_8BIT).square().mean(),
        "cl": F.cross_entropy(model.classifier(features.mean(dim=(2, 3))), batch.labels),
        "g": -model.critic(model.critic_input(L_small, ab_hat)).mean(),
    }
    trunk = [p for name, p in model.generator.named_parameters() if not name.startswith("model8.6")]
    at_features, at_trunk = {}, {}
    for name, term in terms.items():
        grads = torch.autograd.grad(term, [features, *trunk], retain_graph=True, allow_unused=True)
        at_features[name] = grads[0].norm().item()
        at_trunk[name] = torch.sqrt(sum(g.square().sum() for g in grads[1:] if g is not None)).item()
    return at_features, at_trunk


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="demo", help="'synthetic', or a trainer --data value (default: demo)")
    parser.add_argument("--width-mult", type=float, default=0.25)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, default=176)
    parser.add_argument("--resize", type=int, default=256)
    parser.add_argument("--steps", type=int, default=100, help="training steps; measured at 0, every, 2 every ...")
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--lambda-cl", type=float, default=CHROMAGAN["cl"], help="weights the warm-up trains with")
    parser.add_argument("--lambda-g", type=float, default=CHROMAGAN["g"])
    parser.add_argument("--settle", type=int, default=30, help="first step whose measurement is summarised")
    parser.add_argument("--target", type=float, default=0.1, help="share of the colour gradient for each term")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    if args.data == "synthetic":
        batches = synthetic_batches(args.batch_size, args.crop, args.seed, device)
    else:
        batches = data_batches(args.data, args.batch_size, args.crop, args.resize, args.seed, device)
    model = Lal2017(width_mult=args.width_mult, critic_width_mult=args.width_mult,
                    lambda_cl=args.lambda_cl, lambda_g=args.lambda_g).to(device)
    model.load_prepared(Lal2017.prepare({"prior_images": None}, [next(batches) for _ in range(4)]))
    optimizers = model.configure_optimizers({**Lal2017.default_train_config(), "lr": args.lr})
    model.train()
    print(f"lal2017 width {args.width_mult}, data {args.data}, batch {args.batch_size} of {args.crop} px, "
          f"lr {args.lr}, warm-up weights cl {args.lambda_cl} g {args.lambda_g}, device {device}")
    print(f"{'step':>5} | {'|grad_F co|':>11} {'mse':>10} {'cl':>10} {'g':>10} | {'co/mse':>8} | "
          f"trunk: {'co':>9} {'mse':>10} {'cl':>10} {'g':>10} | loss co")
    rows = []
    logs = {"co": float("nan")}
    start = time.perf_counter()
    for step in range(args.steps + 1):
        batch = next(batches)
        if step % args.every == 0:
            feat, trunk = gradient_norms(model, batch)
            rows.append((feat, trunk))
            print(f"{step:5d} | {feat['co']:11.3e} {feat['mse']:10.3e} {feat['cl']:10.3e} {feat['g']:10.3e} | "
                  f"{feat['co'] / feat['mse']:8.1f} | trunk: {trunk['co']:9.3e} {trunk['mse']:10.3e} "
                  f"{trunk['cl']:10.3e} {trunk['g']:10.3e} | {logs['co']:.3f}")
        if step < args.steps:
            logs = model.train_step(batch, step, optimizers)
    kept = [(f, t) for step, (f, t) in zip(range(0, args.steps + 1, args.every), rows) if step >= args.settle]
    s_feat = statistics.median(f["co"] / f["mse"] for f, _ in kept)
    s_trunk = statistics.median(t["co"] / t["mse"] for _, t in kept)
    print(f"\n{len(rows)} measurements in {time.perf_counter() - start:.0f} s; summary of the {len(kept)} "
          f"from step {args.settle} on")
    weights = {}
    for name in ("cl", "g"):
        ratio = statistics.median(f[name] / f["co"] for f, _ in kept)
        trunk_ratio = statistics.median(t[name] / t["co"] for _, t in kept)
        weights[name] = args.target / ratio
        print(f"  {name}: r = median |grad_F {name}| / |grad_F co| = {ratio:.3g} (trunk {trunk_ratio:.3g}); "
              f"ChromaGAN's {CHROMAGAN[name]} gives it {CHROMAGAN[name] * ratio:.3g} of the colour gradient")
    print(f"  ChromaGAN carried over by s = |grad co| / |grad mse| = {s_feat:.1f} (trunk {s_trunk:.1f}): "
          f"lambda_cl = {CHROMAGAN['cl'] * s_feat:.3g}, lambda_g = {CHROMAGAN['g'] * s_feat:.3g}")
    print(f"weights giving each term {args.target:g} of the colour gradient at F: "
          f"lambda_cl = {weights['cl']:.3g}, lambda_g = {weights['g']:.3g}")

if __name__ == "__main__":
    main()
