"""`manage.py experiment`: every setting of the admin from the command line, checked; the state by the services."""
from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from vtt import services
from vtt.models import Experiment

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("experiment", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def show(slug: str) -> dict:
    return json.loads(run("show", slug, "--format", "json"))


def test_every_setting_of_the_admin_has_an_option_with_its_help_text():
    from vtt.admin import ExperimentAdmin

    admin_fields = {f for _, spec in ExperimentAdmin.fieldsets for f in spec["fields"]}
    settings = {f.name for f in services.experiment_settings()}
    assert settings == admin_fields - set(ExperimentAdmin.readonly_fields)
    out = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("experiment", "create", "--help", stdout=out)


def test_create_then_show_round_trips_every_setting():
    run("create", "a", "--title", "A study", "--raters-per-pair", "3", "--catch-trial-rate", "0.2", "--timing",
        "staircase", "--allow-mobile", "no", "--panel", "prolific", "--completion-code", "C0DE", "--precision-target",
        "4", "--look-every", "20", "--pilot-raters", "7", "--bonus-amount", "1.50", "--instructions", "Read this.")
    shown = show("a")
    assert shown["state"] == "draft" and shown["raters_per_pair"] == 3 and shown["allow_mobile"] is False
    assert shown["bonus_amount"] == "1.50" and shown["pilot_raters"] == 7 and shown["timing"] == "staircase"
    # What show prints, given back to create, makes the same experiment.
    args = []
    for field in services.experiment_settings():
        if field.name == "slug":
            continue
        value = shown[field.name]
        text = "" if value is None else ("yes" if value is True else "no" if value is False else str(value))
        args += ["--" + field.name.replace("_", "-"), text]
    run("create", "b", *args)
    again = show("b")
    assert {k: v for k, v in again.items() if k not in ("slug", "created")} == \
        {k: v for k, v in shown.items() if k not in ("slug", "created")}
    table = run("show", "a")
    assert "pilot_raters" in table and "state" in table and "draft" in table


def test_bad_values_are_all_named_and_nothing_is_written():
    with pytest.raises(CommandError) as error:
        run("create", "bad", "--title", "Bad", "--raters-per-pair", "0", "--catch-trial-rate", "x",
            "--allow-mobile", "maybe", "--precision-target", "3")
    message = str(error.value)
    assert "nothing was written" in message
    for option in ("--raters-per-pair", "--catch-trial-rate", "--allow-mobile", "--look-every"):
        assert option in message
    assert not Experiment.objects.exists()
    with pytest.raises(CommandError, match="--title: This field cannot be blank"):
        run("create", "untitled")
    assert not Experiment.objects.exists()


def test_configure_changes_only_what_is_given_and_refuses_bad_values_without_writing():
    run("create", "c", "--title", "C")
    run("configure", "c", "--trials-per-rater", "12", "--exposure-ms", "800")
    assert (show("c")["trials_per_rater"], show("c")["exposure_ms"], show("c")["title"]) == (12, 800, "C")
    run("configure", "c", "--exposure-ms", "")
    assert show("c")["exposure_ms"] is None
    before = show("c")
    with pytest.raises(CommandError, match=r"--design: Value 'both' is not a valid choice"):
        run("configure", "c", "--design", "both", "--trials-per-rater", "3")
    with pytest.raises(CommandError, match="--bonus-amount: Ensure this value is less than or equal to 50"):
        run("configure", "c", "--bonus-amount", "500")
    with pytest.raises(CommandError, match="nothing to change"):
        run("configure", "c")
    with pytest.raises(CommandError, match=r"no experiment 'nope' \(known: c\)"):
        run("configure", "nope", "--title", "x")
    assert show("c") == before


def test_the_state_subcommands_call_the_services():
    run("create", "d", "--title", "D", "--catch-trial-rate", "0")
    with pytest.raises(CommandError, match="'d' has no method to rate"):
        run("open", "d")
    with pytest.raises(CommandError, match="cannot be set to paused"):
        run("pause", "d")
    assert "d is now closed" in run("close", "d")
    with pytest.raises(CommandError, match="a closed experiment is final"):
        run("pilot", "d")
    assert show("d")["state"] == "closed"


def test_an_experiment_created_here_gets_its_images_from_generate_pairs(media_root, photo_dir,
                                                                        mean_chroma_checkpoint):
    run("create", "g", "--title", "G", "--trials-per-rater", "3", "--practice-trials", "1", "--pilot-raters", "2")
    call_command("generate_pairs", "--experiment", "g", "--split", f"folder:{photo_dir}", "--size", "64",
                 "--workers", "0", "--checkpoint", f"mean_chroma={mean_chroma_checkpoint}", stdout=io.StringIO(),
                 stderr=io.StringIO())
    shown = show("g")
    assert shown["split"] == f"folder:{photo_dir}" and shown["image_size"] == 64 and shown["trials_per_rater"] == 3
    assert "g is now pilot" in run("pilot", "g")


def test_a_state_subcommand_if_needed_does_nothing_when_the_experiment_is_already_there(media_root, photo_dir,
                                                                                   mean_chroma_checkpoint):
    call_command("generate_pairs", "--experiment", "n", "--split", f"folder:{photo_dir}", "--size", "64",
                 "--workers", "0", "--checkpoint", f"mean_chroma={mean_chroma_checkpoint}", stdout=io.StringIO(),
                 stderr=io.StringIO())
    assert "n is now open" in run("open", "n", "--if-needed")
    before = show("n")
    with pytest.raises(CommandError, match="'n' is open: it cannot be set to open"):
        run("open", "n")
    assert run("open", "n", "--if-needed").strip() == "n is already open: nothing to do"
    assert show("n") == before
    # Otherwise --if-needed moves the experiment as without it, and a refused move is still refused.
    assert "n is now paused" in run("pause", "n", "--if-needed")
    assert "n is now closed" in run("close", "n", "--if-needed")
    with pytest.raises(CommandError, match="a closed experiment is final"):
        run("open", "n", "--if-needed")
