"""Create, configure, run and show an experiment from the command line: every setting of the admin."""
from __future__ import annotations

import json
from decimal import Decimal
from urllib.parse import urlencode

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import models
from django.urls import reverse

from vtt import preview, services
from vtt.management import experiments
from vtt.management.help import KeepLinesFormatter
from vtt.models import Experiment

EPILOG = """\
Settings: one option per setting of the admin, derived from the model's fields (their help
texts below), so that none is missed; the state is set by the state subcommands, the
images (split, image size, preprocessing) by generate_pairs. An empty value ("") empties
an optional setting. Every value is checked as the admin checks it (full_clean): on any
error the command prints each setting's problem and writes nothing.

Life of a study: draft -> pilot -> open <-> paused -> closed (also draft -> open; draft or
pilot -> closed); closed is final. The dashboard's buttons do the same. Setting an experiment
to the state it is in is refused, unless --if-needed: then the command says so and does
nothing (for scripts run more than once, e.g. `make demo`).
"""
STATE_ACTIONS = {"pilot": Experiment.State.PILOT, "open": Experiment.State.OPEN, "pause": Experiment.State.PAUSED,
                 "close": Experiment.State.CLOSED}


def _option(field) -> str:
    return "--" + field.name.replace("_", "-")


def _help(field) -> str:
    """The field's help text, its choices and its default, for --help."""
    text = str(field.help_text or field.verbose_name).rstrip(".")
    if field.choices:
        text += ". One of: " + "; ".join(f"{value} ({label})" for value, label in field.choices)
    if isinstance(field, models.BooleanField):
        text += ". yes or no"
    if not field.has_default():
        default = "empty" if field.blank else "required"
    elif callable(field.default):
        default = "a new random one"
    elif isinstance(field, models.BooleanField):
        default = "yes" if field.default else "no"
    else:
        default = "empty" if field.default in (None, "") else str(field.default)
    return f"{text}. Default: {default}."


def _value(field, text: str):
    """The Python value of a setting given on the command line ("" empties an optional one)."""
    if text == "" and (field.null or field.blank):
        return None if field.null else ""
    if isinstance(field, models.BooleanField):
        flags = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}
        if text.strip().lower() not in flags:
            raise ValidationError({field.name: f"expected yes or no, got {text!r}"})
        return flags[text.strip().lower()]
    try:
        return field.to_python(text)
    except ValidationError as exc:
        raise ValidationError({field.name: exc.messages}) from None


def _json_value(value):
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def settings_of(experiment: Experiment) -> dict:
    """Every field of the experiment, state and images included, as JSON values (decimals as text)."""
    return {f.name: _json_value(getattr(experiment, f.name)) for f in Experiment._meta.concrete_fields
            if f.name != "id"}


class Command(BaseCommand):
    help = ("Create, configure, open (or pilot), pause, close and show an experiment: every setting of the admin; "
            "preview-link for a signed preview link.")

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.formatter_class = KeepLinesFormatter
        parser.epilog = EPILOG
        return parser

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        create = actions.add_parser("create", help="Create a draft experiment with these settings.",
                                    formatter_class=KeepLinesFormatter, epilog=EPILOG)
        create.add_argument("experiment", metavar="SLUG", help="Slug of the new experiment (its rater URL).")
        configure = actions.add_parser("configure", help="Change settings of an experiment (in any state).",
                                       formatter_class=KeepLinesFormatter, epilog=EPILOG)
        configure.add_argument("experiment", metavar="SLUG", help="Slug of the experiment.")
        for sub, skip in ((create, {"slug"}), (configure, set())):
            group = sub.add_argument_group("settings")
            for field in services.experiment_settings():
                if field.name in skip:
                    continue
                group.add_argument(_option(field), dest=field.name, metavar="VALUE", default=None,
                                   help=(_help(field) if sub is create else str(field.help_text or field.verbose_name))
                                   .replace("%", "%%"))  # argparse formats help with %
        for action, state in STATE_ACTIONS.items():
            sub = actions.add_parser(action, help=f"Set the experiment to {state}.")
            sub.add_argument("experiment", metavar="SLUG", help="Slug of the experiment.")
            sub.add_argument("--if-needed", action="store_true",
                             help=f"Do nothing, and say so, when the experiment is already {state} (otherwise "
                             "that is an error), e.g. in a script that may run twice.")
        link = actions.add_parser(
            "preview-link", help="Print a signed link that lets its holder go through the rater's pages of the "
            "experiment (any state) with nothing recorded and no place taken; staff need none.")
        link.add_argument("experiment", metavar="SLUG", help="Slug of the experiment.")
        link.add_argument("--hours", type=float, default=preview.DEFAULT_HOURS,
                          help=f"How long the link works, in hours (at most {preview.MAX_HOURS}). "
                          f"Default: {preview.DEFAULT_HOURS}.")
        link.add_argument("--base-url", default="", metavar="URL",
                          help="The site's address, e.g. https://vtt.example.org, put before the link's path.")
        show = actions.add_parser("show", help="Print every setting and the state.")
        show.add_argument("experiment", metavar="SLUG", help="Slug of the experiment.")
        show.add_argument("--format", choices=["table", "json"], default="table",
                          help="table (one setting a line) or json. Default: table.")

    def handle(self, *args, **options):
        action = options["action"]
        if action in ("create", "configure"):
            return self._write(action, options)
        experiment = experiments.named(options["experiment"])
        if action == "show":
            return self._show(experiment, options["format"])
        if action == "preview-link":
            try:
                key = preview.preview_key(experiment, hours=options["hours"])
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            path = f"{reverse('vtt:preview', args=[experiment.slug])}?{urlencode({'key': key})}"
            self.stdout.write(f"{options['base_url'].rstrip('/')}{path}")
            self.stderr.write(f"valid until {preview.key_expiry(key):%Y-%m-%d %H:%M} UTC")
            return
        if options["if_needed"] and experiment.state == STATE_ACTIONS[action]:
            self.stdout.write(f"{experiment.slug} is already {experiment.state}: nothing to do")
            return
        try:
            result = services.experiment_set_state(experiment=experiment, state=STATE_ACTIONS[action])
        except services.TrialRejected as exc:
            raise CommandError(str(exc)) from None
        created = f" ({result} places created)" if isinstance(result, int) else ""
        self.stdout.write(self.style.SUCCESS(f"{experiment.slug} is now {STATE_ACTIONS[action]}{created}"))

    def _write(self, action, options):
        fields = {f.name: f for f in services.experiment_settings()}
        values, problems = {}, {}
        for name, field in fields.items():
            text = options.get(name)
            if text is None:
                continue
            try:
                values[name] = _value(field, text)
            except ValidationError as exc:
                problems.update(exc.message_dict)
        try:
            if problems:  # the other values are checked too, so that every problem is named at once
                if action == "create":
                    candidate = Experiment(slug=options["experiment"], **values)
                else:
                    candidate = experiments.named(options["experiment"])
                    for name, value in values.items():
                        setattr(candidate, name, value)
                try:
                    candidate.full_clean(exclude=list(problems))
                except ValidationError as exc:
                    problems = {**exc.message_dict, **problems}
                raise ValidationError(problems)
            if action == "create":
                experiment = services.experiment_create(slug=options["experiment"], **values)
            else:
                if not values:
                    raise CommandError("nothing to change: give at least one setting (see --help)")
                experiment = services.experiment_configure(
                    experiment=experiments.named(options["experiment"]), **values)
        except ValidationError as exc:
            lines = [f"  {'--' + name.replace('_', '-') if name in fields else name}: {message}"
                     for name, messages in sorted(exc.message_dict.items()) for message in messages]
            raise CommandError(f"experiment {options['experiment']!r} not {action}d; nothing was written:\n"
                               + "\n".join(lines)) from None
        except services.TrialRejected as exc:
            raise CommandError(f"{exc}; nothing was written") from None
        done = "created (draft)" if action == "create" else f"configured ({', '.join(values)})"
        self.stdout.write(self.style.SUCCESS(f"{experiment.slug} {done}"))

    def _show(self, experiment: Experiment, fmt: str):
        values = settings_of(experiment)
        if fmt == "json":
            self.stdout.write(json.dumps(values, indent=2))
            return
        width = max(map(len, values))
        for name, value in values.items():
            shown = json.dumps(value) if isinstance(value, (dict, list)) else ("" if value is None else value)
            self.stdout.write(f"{name:<{width}}  {shown}")
