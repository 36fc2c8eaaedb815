"""The platform's data: experiments, the images and colorizations they rate, and raters' trials.

Data flows one way: SourceImage -> (ExperimentImage, Colorization) -> Trial; the automatic
metrics of each pair (PairMetrics, RealImageFeatures) sit beside the colorizations.
Writes happen in `vtt.services`, `vtt.generation` and `vtt.pair_metrics`; views and commands call them.
"""
from __future__ import annotations

import re
import secrets
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, URLValidator
from django.db import models


def pairs_dir() -> Path:
    """The folder of the rendered pair images (``MEDIA_ROOT/pairs``); rows below name files in it."""
    return Path(settings.MEDIA_ROOT) / "pairs"


def new_token() -> str:
    """An opaque, unguessable identifier (128 bits) for URLs and file names."""
    return secrets.token_hex(16)


def random_rank() -> int:
    """A random rank in 0 .. 2**31 - 1 (`Colorization.order`)."""
    return secrets.randbelow(2**31)


def new_completion_code() -> str:
    """A completion code for raters who finish: 'C' and 8 hexadecimal digits, e.g. 'C7F2A9B41'."""
    return "C" + secrets.token_hex(4).upper()


_CODE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def validate_outcome_code(value: str) -> None:
    """An outcome's code: 1 to 64 letters, digits, '-' or '_' (Prolific's codes), or an http(s) URL, a panel's
    own address for that outcome, where the participant is sent as it is."""
    if value and not _CODE.fullmatch(value):
        if not value.startswith(("https://", "http://")):
            raise ValidationError(
                f"{value!r} is neither a code (1 to 64 letters, digits, '-' or '_') nor an http(s) URL")
        URLValidator(schemes=["http", "https"])(value)


def outcome_code_field(help_text: str) -> models.CharField:
    """The field of one outcome's code (`validate_outcome_code`), optional."""
    return models.CharField(max_length=500, blank=True, validators=[validate_outcome_code], help_text=help_text)


class Experiment(models.Model):
    class State(models.TextChoices):
        DRAFT = "draft", "draft (being prepared)"
        PILOT = "pilot", "pilot (open to a capped number of raters, whose answers are kept apart)"
        OPEN = "open", "open to raters"
        PAUSED = "paused", "paused (no new raters; those who started may finish)"
        CLOSED = "closed", "closed"

    class Design(models.TextChoices):
        MIXED = "mixed", "each rater sees all methods, evenly mixed"
        SINGLE = "single", "each rater sees a single method (Zhang et al. 2016)"

    class CatchFailAction(models.TextChoices):
        FLAG = "flag", "let them finish; the flagged code (or the completion code)"
        SCREEN_OUT = "screen_out", "screen out at once, with the screened-out code"

    class Panel(models.TextChoices):
        NONE = "none", "no panel: anonymous raters, completion code shown"
        PROLIFIC = "prolific", "Prolific (PROLIFIC_PID, STUDY_ID, SESSION_ID; redirect to Prolific)"
        CUSTOM = "custom", "another panel (participant parameter and completion URL below)"

    slug = models.SlugField(unique=True, help_text="Used in the rater URL, e.g. 'pixcolor-ctest10k'.")
    title = models.CharField(max_length=200)
    instructions = models.TextField(
        blank=True,
        help_text="Consent and instructions shown on the landing page before the first trial.",
    )
    state = models.CharField(max_length=10, choices=State.choices, default=State.DRAFT)
    raters_per_pair = models.PositiveSmallIntegerField(
        default=5,
        validators=[MinValueValidator(1)],
        help_text="Distinct raters who answer each (image, method) pair (PixColor: 5).",
    )
    trials_per_rater = models.PositiveSmallIntegerField(
        default=40, validators=[MinValueValidator(1)],
        help_text="Trials in one rater's session after the practice, catch trials included (Zhang et al. 2016: 40); "
        "at most the number of images, since no rater sees an image twice.",
    )
    practice_trials = models.PositiveSmallIntegerField(
        default=5, help_text="Practice trials with feedback before the scored ones (never scored)."
    )
    catch_trial_rate = models.FloatField(
        default=0.1,
        validators=[MinValueValidator(0.0), MaxValueValidator(0.5)],
        help_text="Fraction of the session's trials that pair the real image with an obviously wrong one.",
    )
    catch_fail_threshold = models.FloatField(
        default=0.25,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="A rater who fails more than this fraction of their catch trials is flagged and, by "
        "default, left out of the report.",
    )
    design = models.CharField(max_length=10, choices=Design.choices, default=Design.MIXED)
    lease_seconds = models.PositiveIntegerField(
        default=600,
        validators=[MinValueValidator(1)],
        help_text="A pair handed to a rater and not answered within this time goes back to the pool.",
    )
    class Timing(models.TextChoices):
        FIXED = "fixed", "fixed exposure (exposure_ms), or untimed when it is empty"
        STAIRCASE = "staircase", "HYPE_time: each rater's exposure adapts, 100-1,000 ms (3-down/1-up staircase)"

    exposure_ms = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(600_000)],
        help_text="Fixed timing: hide the pair after this many milliseconds (Zhang et al. 2016: 1000); empty: no limit.",
    )
    timing = models.CharField(
        max_length=10, choices=Timing.choices, default=Timing.FIXED,
        help_text="How long a pair is shown: a fixed exposure (or no limit), or HYPE_time's adaptive staircase, "
        "which ends each exposure with noise masks and reports each method's threshold exposure.",
    )
    display_size = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(32), MaxValueValidator(2048)],
        help_text="Side of each image on the rater's screen in CSS pixels; empty: the file's own size (image_size). "
        "Both images are always exactly this size, side by side; a window too small for them shows no trial.",
    )
    allow_mobile = models.BooleanField(
        default=True, help_text="Let raters on phones and tablets take part (they must still fit the pair)."
    )
    require_fullscreen = models.BooleanField(
        default=False, help_text="Show trials only while the browser is in fullscreen mode."
    )
    panel = models.CharField(max_length=10, choices=Panel.choices, default=Panel.NONE)
    participant_param = models.CharField(
        max_length=64, blank=True, default="",
        help_text="Custom panel: the URL parameter that carries the participant id, e.g. 'workerId'.",
    )
    completion_code = outcome_code_field(
        "Outcome 'completed': the code shown to raters who finish, or sent to the panel, e.g. 'C1A2B3C4' "
        "(or, for a custom panel, an https URL to send them to).",
    )
    flagged_code = outcome_code_field(
        "Outcome 'completed_flagged': the code for a participant who finished but failed too many catch "
        "trials (Prolific: a second completion code of the study, so that you review them before approving); "
        "sent like the completion code. Empty: they get the completion code like everyone.",
    )
    catch_fail_action = models.CharField(
        max_length=12, choices=CatchFailAction.choices, default=CatchFailAction.FLAG,
        help_text="What happens to a participant who fails too many catch trials: 'flag' lets them finish and "
        "gives the flagged code; 'screen_out' ends the session at the answer that makes the rule certain to be "
        "broken, with the screened-out code (Prolific's in-study screening).",
    )
    screened_out_code = outcome_code_field(
        "Outcome 'screened_out' (catch_fail_action 'screen_out'): the panel's screen-out code (Prolific: "
        "the study's screened-out completion code). Required with a panel when screening out.",
    )
    no_consent_code = outcome_code_field(
        "Outcome 'declined': the panel's code for a participant who does not consent (Prolific: the "
        "study's no-consent completion code); sent to the panel like the completion code. Empty: the page just "
        "thanks them.",
    )
    no_pairs_code = outcome_code_field(
        "Outcome 'no_pairs': the code for a participant for whom no pair was left to rate (every place "
        "taken) before any scored trial. Empty: the page asks them to return the study.",
    )
    returned_code = outcome_code_field(
        "Outcome 'returned': the code for a participant who chose 'Stop taking part' during the session. "
        "Empty: the page asks them to return the study on the panel.",
    )
    timed_out_code = outcome_code_field(
        "Outcome 'timed_out': the code for a participant whose session ran past session_minutes. Empty: "
        "the page asks them to return the study on the panel.",
    )
    session_minutes = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(24 * 60)],
        help_text="A session not finished this many minutes after it started times out (outcome 'timed_out'): "
        "its pending places go back to the pool. Empty: no limit (Prolific times out on its side anyway).",
    )
    completion_url = models.URLField(
        blank=True, max_length=500,
        help_text="Custom panel: where raters who finish are sent; '{code}' is replaced by the completion "
        "code, e.g. 'https://panel.example/complete?code={code}'.",
    )
    split = models.CharField(
        max_length=300, blank=True, help_text="Where the images came from: demo, ctest10k, cval1k, folder:PATH."
    )
    image_size = models.PositiveSmallIntegerField(
        default=256, help_text="Side of the square images raters see, in pixels."
    )
    preprocessing = models.JSONField(
        default=dict, blank=True, help_text="How source images were turned into the rated pairs."
    )
    # The pre-registered stopping rule (vtt.planning): precise enough at the first scheduled look where every
    # tested method's interval half-width is below the target.
    precision_target = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.1), MaxValueValidator(49.9)],
        help_text="Stopping rule: the experiment is precise enough when every tested method's interval half-width "
        "is below this many percentage points at a scheduled look (e.g. 3 for +-3 points; 95% intervals, the "
        "controls not counted); empty: no rule.",
    )
    look_every = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)],
        help_text="Stopping rule: look after every this many finished raters (the data of a look are the judgments "
        "of the raters finished by then). Required with a precision target.",
    )
    max_looks = models.PositiveSmallIntegerField(
        default=10, validators=[MinValueValidator(1)],
        help_text="Stopping rule: at most this many looks; after the last one the rule no longer stops the "
        "experiment.",
    )
    pilot_raters = models.PositiveIntegerField(
        default=10, validators=[MinValueValidator(1)],
        help_text="Pilot: at most this many raters start while the experiment is in pilot; their answers are "
        "marked pilot and left out of the main report unless asked for.",
    )
    # The bonus rule of the pay sheet (vtt.payments): a fixed bonus per participant who completed the study,
    # was not flagged, and reached the catch-trial accuracy below.
    bonus_amount = models.DecimalField(
        max_digits=6, decimal_places=2, default=0, validators=[MinValueValidator(0), MaxValueValidator(50)],
        help_text="Pay sheet: bonus per participant who completed and was not flagged, in the panel's currency "
        "(0 to 50; 0: no bonus).",
    )
    bonus_min_catch_accuracy = models.FloatField(
        default=0.0, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Pay sheet: the bonus goes only to participants whose catch-trial accuracy is at least this "
        "(0 to 1; 0: any).",
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return self.slug

    # The code field of each outcome that ends a session (`Rater.Outcome`); in progress has none.
    OUTCOME_CODES = {
        "completed": "completion_code", "completed_flagged": "flagged_code", "screened_out": "screened_out_code",
        "declined": "no_consent_code", "no_pairs": "no_pairs_code", "returned": "returned_code",
        "timed_out": "timed_out_code",
    }

    def code_for(self, rater: "Rater", outcome: str | None = None) -> str:
        """The code (or the panel's URL) of the rater's ``outcome`` (default: the rater's own): the outcome's code
        field, `OUTCOME_CODES`; a flagged participant without a flagged code gets the completion code. "" where
        the outcome has no code."""
        outcome = outcome or rater.outcome
        if outcome == "completed_flagged" and not self.flagged_code:
            outcome = "completed"
        field = self.OUTCOME_CODES.get(outcome)
        return getattr(self, field) if field else ""

    def past_time_limit(self, started, now) -> bool:
        """A session that started at ``started`` has run past ``session_minutes`` by ``now`` (never without a
        limit)."""
        return bool(self.session_minutes) and now > started + timedelta(minutes=self.session_minutes)

    def outcome_problems(self) -> dict[str, str]:
        """What the panel lacks to send each participant back with their outcome, by field (empty: nothing).

        Prolific needs its completion code and takes codes, not URLs; a custom panel needs a completion URL (or
        a URL as the completion code); screening out with a panel needs the screen-out code, or the screened-out
        participants could not be paid for what they did.
        """
        problems = {}
        if self.panel == self.Panel.PROLIFIC:
            if not self.completion_code:
                problems["completion_code"] = ("Prolific needs the study's completion code, or participants who "
                                               "finish cannot submit.")
            for field in self.OUTCOME_CODES.values():
                if getattr(self, field).startswith(("http://", "https://")):
                    problems[field] = "Prolific takes completion codes, not URLs."
        if self.panel == self.Panel.CUSTOM and not self.completion_url \
                and not self.completion_code.startswith(("http://", "https://")):
            problems["completion_url"] = ("A custom panel needs a completion URL ('{code}' is replaced by the code) or "
                                          "a URL as the completion code.")
        if self.catch_fail_action == self.CatchFailAction.SCREEN_OUT and self.panel != self.Panel.NONE \
                and not self.screened_out_code:
            problems["screened_out_code"] = ("Screening out needs the panel's screen-out code (Prolific: the study's "
                                             "screened-out completion code).")
        return problems

    def clean(self) -> None:
        """A precision target needs a look schedule, and a schedule a target; the panel needs its codes
        (`outcome_problems`); the staircase takes no fixed exposure."""
        super().clean()
        problems = self.outcome_problems()
        if (self.precision_target is None) != (self.look_every is None):
            missing = "look_every" if self.look_every is None else "precision_target"
            problems[missing] = ("The stopping rule needs both a precision target and a look schedule "
                                 "(look_every); leave both empty for no rule.")
        if self.timing == self.Timing.STAIRCASE and self.exposure_ms is not None:
            problems["exposure_ms"] = ("The staircase sets each exposure itself: leave exposure_ms empty with "
                                       "staircase timing.")
        if problems:
            raise ValidationError(problems)

    @property
    def shown_size(self) -> int:
        """The side of each image on screen, in CSS pixels."""
        return self.display_size or self.image_size


class Method(models.Model):
    """One colorization method of one experiment: a registered colorizer or imported results."""

    class Kind(models.TextChoices):
        REGISTERED = "registered", "registered colorizer"
        IMPORTED = "imported", "imported folder of results"

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="methods")
    name = models.SlugField(max_length=100, help_text="Name in reports, e.g. 'zhang2016'.")
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.REGISTERED)
    colorizer = models.CharField(
        max_length=100, blank=True, help_text="Registry name of the colorizer (registered methods)."
    )
    checkpoint_sha256 = models.CharField(max_length=64, blank=True)
    checkpoint_path = models.CharField(max_length=500, blank=True)
    class Role(models.TextChoices):
        TESTED = "tested", "method under test"
        CALIBRATION = "calibration", "calibration control (the real chroma: must score about 50%)"
        CATCH = "catch", "catch trials only (an obviously wrong colorization)"

    params = models.JSONField(default=dict, blank=True)
    role = models.CharField(
        max_length=12, choices=Role.choices, default=Role.TESTED,
        help_text="Tested and calibration methods are rated K times per image; catch methods only serve catch trials.",
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["experiment", "name"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "name"], name="unique_method_name_per_experiment")
        ]

    def __str__(self) -> str:
        return f"{self.experiment.slug}/{self.name}"

    @property
    def is_control(self) -> bool:
        return self.role != self.Role.TESTED


class SourceImage(models.Model):
    """A colour photograph as found on disk, identified by split and path."""

    split = models.CharField(max_length=300, help_text="demo, ctest10k, cval1k or folder:PATH.")
    path = models.CharField(max_length=500, help_text="Path within the split, e.g. 'n01440764/ILSVRC2012_val_00000293.JPEG'.")
    class_index = models.PositiveSmallIntegerField(null=True, blank=True, help_text="ImageNet class 0-999, if known.")
    sha256 = models.CharField(max_length=64, help_text="Content hash of the source file.")
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["split", "path"]
        constraints = [models.UniqueConstraint(fields=["split", "path"], name="unique_source_path")]

    def __str__(self) -> str:
        return f"{self.split}:{self.path}"


class ExperimentImage(models.Model):
    """A source image taken into an experiment, with its real-colour rendering."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="images")
    source = models.ForeignKey(SourceImage, on_delete=models.PROTECT, related_name="uses")
    real_file = models.CharField(max_length=100, help_text="Stored file (random name) of the real image.")
    real_sha256 = models.CharField(max_length=64, blank=True, help_text="Content hash of the real image's file.")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["experiment", "source"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "source"], name="unique_image_per_experiment")
        ]

    def __str__(self) -> str:
        return f"{self.experiment.slug}:{self.source.path}"


class Colorization(models.Model):
    """One method's colorization of one experiment image: the other half of a pair."""

    image = models.ForeignKey(ExperimentImage, on_delete=models.CASCADE, related_name="colorizations")
    method = models.ForeignKey(Method, on_delete=models.CASCADE, related_name="colorizations")
    file = models.CharField(max_length=100, help_text="Stored file (random name) of the colorized image.")
    sha256 = models.CharField(
        max_length=64, blank=True,
        help_text="Content hash of the file. One equal to the real image's makes a pair of two identical images, "
        "which the engine never shows (catch trials aside).",
    )
    seed = models.BigIntegerField(help_text="Seed of the random generator the colorizer was given.")
    order = models.PositiveIntegerField(
        default=random_rank,
        help_text="Random rank: a practice or catch trial takes, of one method, the first pair from a random point "
        "of this order (`vtt.services`), through one index instead of shuffling every pair.",
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["image", "method"]
        constraints = [
            models.UniqueConstraint(fields=["image", "method"], name="unique_colorization_per_pair")
        ]
        indexes = [models.Index(fields=["method", "order"], name="colorization_draw_idx")]

    def __str__(self) -> str:
        return f"{self.method.name} on {self.image.source.path}"


class Rater(models.Model):
    """A person taking an experiment, anonymous or identified by a panel's participant id."""

    class Outcome(models.TextChoices):
        IN_PROGRESS = "in_progress", "in progress (or abandoned)"
        COMPLETED = "completed", "completed"
        COMPLETED_FLAGGED = "completed_flagged", "completed, flagged by the catch trials"
        SCREENED_OUT = "screened_out", "screened out by the catch trials during the session"
        DECLINED = "declined", "declined consent"
        NO_PAIRS = "no_pairs", "no pair left to rate"
        RETURNED = "returned", "stopped taking part during the session"
        TIMED_OUT = "timed_out", "timed out (session_minutes)"

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="raters")
    token = models.CharField(max_length=32, unique=True, default=new_token, editable=False)
    external_id = models.CharField(max_length=200, blank=True, help_text="e.g. PROLIFIC_PID.")
    study_id = models.CharField(max_length=200, blank=True)
    session_id = models.CharField(max_length=200, blank=True)
    user_agent = models.CharField(max_length=400, blank=True)
    method = models.ForeignKey(
        "Method", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="Single-method design: the one method this rater sees.",
    )
    methods = models.JSONField(
        default=list, blank=True,
        help_text="Ids of the rated methods this rater's scored trials come from, fixed when the rater starts "
        "(the one method of a single-method design): the engine reads them with the rater's row.",
    )
    plan = models.JSONField(
        default=list, blank=True,
        help_text="The session's trials in order: [kind, real side] per position, fixed when the rater starts.",
    )
    viewing = models.JSONField(
        default=dict, blank=True,
        help_text="Viewing conditions the browser reported at the start: screen and window size in CSS pixels, "
        "devicePixelRatio, colour gamut, touch screen (see vtt.services.clean_viewing).",
    )
    started = models.DateTimeField(auto_now_add=True)
    declined = models.DateTimeField(
        null=True, blank=True, help_text="Did not consent: the session ended before any trial, taking no place."
    )
    finished = models.DateTimeField(
        null=True, blank=True, help_text="When the session ended, whatever its outcome (declining aside)."
    )
    outcome = models.CharField(
        max_length=20, choices=Outcome.choices, default=Outcome.IN_PROGRESS,
        help_text="How the session ended, set when it ended; each outcome has its own code (Experiment.OUTCOME_CODES).",
    )
    flagged = models.BooleanField(default=False, help_text="Failed too many catch trials.")
    pilot = models.BooleanField(
        default=False, help_text="Started while the experiment was in pilot: left out of the main report unless "
        "asked for.",
    )

    class Meta:
        ordering = ["experiment", "started"]
        constraints = [
            models.UniqueConstraint(
                fields=["experiment", "external_id"],
                condition=~models.Q(external_id=""),
                name="one_session_per_external_id",
            )
        ]

    def __str__(self) -> str:
        return self.external_id or self.token[:8]


class Trial(models.Model):
    """One pair shown to one rater: which side held the real image, and what they chose."""

    class Kind(models.TextChoices):
        PRACTICE = "practice", "practice (feedback, never scored)"
        SCORED = "scored", "scored"
        CATCH = "catch", "catch (attention check)"

    class Side(models.TextChoices):
        LEFT = "L", "left"
        RIGHT = "R", "right"

    rater = models.ForeignKey(Rater, on_delete=models.PROTECT, related_name="trials")
    colorization = models.ForeignKey(Colorization, on_delete=models.PROTECT, related_name="trials")
    token = models.CharField(max_length=32, unique=True, default=new_token, editable=False)
    left_image = models.CharField(
        max_length=32, unique=True, default=new_token, editable=False,
        help_text="Opaque name of the left image's URL: used by this trial only, served only while it is pending.",
    )
    right_image = models.CharField(max_length=32, unique=True, default=new_token, editable=False)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.SCORED)
    position = models.PositiveSmallIntegerField(help_text="Order of the trial in the rater's session, from 1.")
    real_side = models.CharField(max_length=1, choices=Side.choices)
    shown = models.DateTimeField(auto_now_add=True, help_text="When the trial was handed to the rater.")
    answered = models.DateTimeField(null=True, blank=True)
    choice = models.CharField(max_length=1, choices=Side.choices, blank=True)
    response_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="From the moment both images were visible to the answer (browser clock)."
    )
    exposure_ms = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="How long the pair was shown (fixed or staircase timing), set when the trial became current; "
        "empty: no limit.",
    )
    display_px = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Side of each image as displayed, in CSS pixels (reported by the browser)."
    )
    focus_lost = models.BooleanField(
        null=True, blank=True,
        help_text="The page lost focus or was hidden while the trial was on screen (the rater looked away).",
    )
    fullscreen = models.BooleanField(
        null=True, blank=True, help_text="The browser was in fullscreen mode for the whole trial."
    )
    lease_expires = models.DateTimeField(
        null=True, blank=True, help_text="Scored trials: the pair goes back to the pool if not answered by then."
    )
    counted = models.BooleanField(
        default=False,
        help_text="Scored trials: the answer filled one of the pair's K places. False for a late answer that "
        "would have given the pair more than K answers (kept, never scored).",
    )

    class Meta:
        ordering = ["rater", "position"]
        constraints = [
            models.UniqueConstraint(fields=["rater", "position"], name="unique_trial_position"),
        ]

    def __str__(self) -> str:
        return f"trial {self.position} of {self.rater}"

    @property
    def chose_generated(self) -> bool | None:
        """True when the rater picked the colorized image; None before an answer."""
        return None if not self.choice else self.choice != self.real_side


class Slot(models.Model):
    """One of the K places of a rated (image, method) pair: free, leased to a trial, or filled.

    The assignment engine hands out slots, never more than K per pair: a pair has
    exactly K answers once all its slots are filled. A lease that expires frees the
    slot for another rater.
    """

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="slots")
    colorization = models.ForeignKey(Colorization, on_delete=models.CASCADE, related_name="slots")
    # The colorization's method and image, copied (they never change) so that the place pick reads one table
    # through one index (`slot_pick_idx`), with no join.
    method = models.ForeignKey(Method, on_delete=models.CASCADE, related_name="+", db_index=False)
    image = models.ForeignKey(ExperimentImage, on_delete=models.CASCADE, related_name="+", db_index=False)
    index = models.PositiveSmallIntegerField(help_text="0 .. K-1; lower places are filled first across pairs.")
    order = models.PositiveIntegerField(help_text="Random rank: spreads the pairs handed out at one index.")
    trial = models.OneToOneField(Trial, null=True, blank=True, on_delete=models.SET_NULL, related_name="slot")
    lease_expires = models.DateTimeField(null=True, blank=True)
    filled = models.BooleanField(default=False)

    class Meta:
        ordering = ["experiment", "index", "order"]
        constraints = [models.UniqueConstraint(fields=["colorization", "index"], name="unique_slot_index")]
        # The free places of one method in hand-out order: the pick walks it from the start and stops at the
        # first place that is not leased and not of an image the rater has seen.
        indexes = [models.Index(fields=["experiment", "method", "index", "order"], name="slot_pick_idx",
                                condition=models.Q(filled=False))]

    def __str__(self) -> str:
        return f"slot {self.index} of {self.colorization}"


class PairMetrics(models.Model):
    """Automatic metrics of one colorization against its real image, from the stored files raters see.

    Written by `vtt.pair_metrics` only, once per colorization (its files never change) and
    again when the definitions change (``version``). The learned metrics are filled when
    their weights are given and carry the SHA-256 of the weights they came from, so that
    other weights compute them again instead of mixing two networks in one column.
    """

    colorization = models.OneToOneField(Colorization, on_delete=models.CASCADE, primary_key=True,
                                        related_name="metrics")
    version = models.PositiveSmallIntegerField(help_text="`vtt.pair_metrics.VERSION` of the definitions used.")
    psnr = models.FloatField(null=True, help_text="dB on sRGB; empty for two identical images (infinite).")
    ssim = models.FloatField()
    ciede2000 = models.FloatField(help_text="Mean CIEDE2000 per pixel.")
    colorfulness = models.FloatField(help_text="Hasler and Suesstrunk's colourfulness of the colorization.")
    real_colorfulness = models.FloatField(help_text="The same, of the real image.")
    raw_accuracy_auc = models.FloatField(help_text="Zhang et al. 2016's raw-accuracy AuC, 0 to 1.")
    lpips = models.FloatField(null=True, blank=True)
    lpips_weights = models.CharField(max_length=80, blank=True, help_text="Network and SHA-256 of its weights.")
    inception = models.BinaryField(null=True, blank=True, help_text="FID Inception pool features, float32.")
    inception_weights = models.CharField(max_length=64, blank=True, help_text="SHA-256 of the Inception weights.")
    computed = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"metrics of {self.colorization_id}"


class RealImageFeatures(models.Model):
    """The FID Inception features of an experiment's real image (the other side of every pair of that image)."""

    image = models.OneToOneField(ExperimentImage, on_delete=models.CASCADE, primary_key=True,
                                 related_name="features")
    inception = models.BinaryField(help_text="FID Inception pool features, float32.")
    inception_weights = models.CharField(max_length=64, help_text="SHA-256 of the Inception weights.")

    def __str__(self) -> str:
        return f"features of {self.image_id}"
