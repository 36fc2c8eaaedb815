"""Write a contact sheet of an experiment's stored images: per image, the real one and each method's."""
from __future__ import annotations

import random
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from PIL import Image, ImageDraw, ImageFont

from vtt import selectors
from vtt.management import experiments
from vtt.models import pairs_dir

LABEL_HEIGHT = 22
GAP = 4
BACKGROUND = (128, 128, 128)   # the rater page's grey


class Command(BaseCommand):
    help = (
        "Write a contact sheet (JPEG or PNG) of an experiment's pairs as raters see them: one row per source "
        "image, its real image first, then each method's colorization, from the stored files."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser):
        parser.add_argument("--experiment", required=True, metavar="SLUG", help="Slug of the experiment.")
        parser.add_argument("--out", required=True, type=Path, help="File to write: .jpg, .jpeg or .png.")
        parser.add_argument(
            "--methods",
            help="Comma-separated methods, in column order. Default: every tested method by name (not the "
            "controls: the ground truth is the real image again).",
        )
        parser.add_argument("--images", type=int, default=6, help="Rows: this many images. Default: 6.")
        parser.add_argument("--seed", type=int, default=0,
                            help="Seed of the draw of images when the experiment has more. Default: 0.")
        parser.add_argument("--size", type=int, default=160, help="Side of each thumbnail in pixels. Default: 160.")

    def handle(self, *args, **options):
        out: Path = options["out"]
        if out.suffix.lower() not in {".jpg", ".jpeg", ".png"}:
            raise CommandError(f"--out must end in .jpg, .jpeg or .png, got {str(out)!r}")
        if options["images"] < 1 or not 16 <= options["size"] <= 1024:
            raise CommandError("--images must be at least 1 and --size between 16 and 1024")
        experiment = experiments.named(options["experiment"])
        wanted = [m.strip() for m in options["methods"].split(",") if m.strip()] if options["methods"] else None
        try:
            methods, rows = selectors.pair_files(experiment=experiment, methods=wanted)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if not rows:
            raise CommandError(f"experiment {experiment.slug!r} has no image colorized by every one of {', '.join(methods)}")
        if len(rows) > options["images"]:
            rows = sorted(random.Random(options["seed"]).sample(rows, options["images"]), key=lambda r: r["image"])
        sheet = contact_sheet(rows, methods, options["size"])
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".png":
            sheet.save(out, optimize=True)
        else:
            sheet.save(out, quality=88, subsampling=0)
        self.stdout.write(self.style.SUCCESS(
            f"wrote {out}: {len(rows)} images x (real + {len(methods)} methods), {sheet.width} x {sheet.height} px"))


def contact_sheet(rows: list[dict], methods: list[str], size: int) -> Image.Image:
    """Thumbnails of ``size`` px in a grid: columns 'real' then ``methods``, a label above each column."""
    columns = ["real", *methods]
    width = len(columns) * (size + GAP) + GAP
    height = LABEL_HEIGHT + len(rows) * (size + GAP) + GAP
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=14)
    for c, name in enumerate(columns):
        x = GAP + c * (size + GAP)
        draw.text((x + size / 2, LABEL_HEIGHT / 2), name, fill=(255, 255, 255), font=font, anchor="mm")
    folder = pairs_dir()
    for r, row in enumerate(rows):
        y = LABEL_HEIGHT + r * (size + GAP)
        for c, name in enumerate(columns):
            file = row["real"] if name == "real" else row["files"][name]
            try:
                with Image.open(folder / file) as img:
                    thumb = img.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
            except OSError as exc:
                raise CommandError(f"cannot read the stored image {folder / file} ({row['image']}, {name}): {exc}") from None
            sheet.paste(thumb, (GAP + c * (size + GAP), y))
    return sheet
