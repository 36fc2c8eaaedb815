"""50+ simulated raters in parallel over HTTP against gunicorn run a whole experiment.

Runs on the database the suite runs on: SQLite by default, PostgreSQL when
DATABASE_URL names it (``make test`` does both). Some raters abandon midway (their
leases run out and the pairs go back to the pool), some send every answer twice at
once. Afterwards: every rated pair has exactly K counted answers from K distinct
raters, no rater saw a source image twice, and every acknowledged answer is stored.
"""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import colour_image
from tests.conftest import suite_backend as backend
from vtt.loadtest import SimulatedRater, deployment

pytestmark = [pytest.mark.slow, pytest.mark.database]

K, IMAGES, LEASE_SECONDS = 5, 12, 3
CONFIGURE = f"""
from vtt import services
from vtt.models import Experiment
Experiment.objects.filter(slug="c").update(raters_per_pair={K}, trials_per_rater=5, practice_trials=1,
                                           catch_trial_rate=0.25, lease_seconds={LEASE_SECONDS})
services.experiment_open(experiment=Experiment.objects.get(slug="c"))
"""
DUMP = """
import json
from vtt.models import Method, Slot, Trial
print(json.dumps({
    "trials": list(Trial.objects.values_list("token", "rater_id", "colorization__image_id", "colorization_id",
                                              "kind", "choice", "counted")),
    "rated": list(Method.objects.filter(role__in=["tested", "calibration"]).values_list("colorizations__id", flat=True)),
    "filled": list(Slot.objects.filter(filled=True).values_list("colorization_id", "trial_id")),
}))
"""


def test_fifty_concurrent_raters_complete_an_experiment(tmp_path, mean_chroma_checkpoint):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(IMAGES):
        colour_image(200 + i).save(photos / f"p{i:02d}.png")
    with deployment(backend()) as site:
        site.manage("generate_pairs", "--experiment", "c", "--split", f"folder:{photos}", "--size", "64",
                    "--checkpoint", f"mean_chroma={mean_chroma_checkpoint}", "--verbosity", "0")
        site.manage("shell", "-c", CONFIGURE)

        def rater(i: int):
            sim = SimulatedRater(site.base_url, "c", seed=i)
            if i % 5 == 1:
                return sim.run(abandon_after=1 + i % 3)   # leaves with a leased pair
            return sim.run(double_submit=i % 5 == 2, think=0.05)

        logs = []
        with ThreadPoolExecutor(max_workers=50) as pool:
            logs += pool.map(rater, range(50))
        # Late comers pick up the pairs whose leases ran out, until every pair is complete.
        for wave in range(6):
            state = json.loads(site.manage("shell", "-c", DUMP).splitlines()[-1])
            if len(state["filled"]) == K * len(state["rated"]):
                break
            time.sleep(LEASE_SECONDS)
            with ThreadPoolExecutor(max_workers=10) as pool:
                logs += pool.map(rater, range(100 + 10 * wave, 110 + 10 * wave))
        state = json.loads(site.manage("shell", "-c", DUMP).splitlines()[-1])

    trials = {token: (rater_id, image, colorization, kind, choice, counted)
              for token, rater_id, image, colorization, kind, choice, counted in state["trials"]}
    # Exactly K counted answers per rated pair, from K distinct raters.
    per_pair: dict[int, list[int]] = {c: [] for c in state["rated"]}
    for rater_id, _, colorization, kind, choice, counted in trials.values():
        if kind == "scored" and counted:
            per_pair[colorization].append(rater_id)
    assert {len(r) for r in per_pair.values()} == {K}, "some pair has not exactly K counted answers"
    assert all(len(set(r)) == K for r in per_pair.values()), "a rater answered the same pair twice"
    counted = sum(1 for *_, kind, _, c in trials.values() if kind == "scored" and c)
    assert len(state["filled"]) == K * len(state["rated"]) == counted
    # No rater saw a source image twice.
    seen: dict[int, list[int]] = {}
    for rater_id, image, *_ in trials.values():
        seen.setdefault(rater_id, []).append(image)
    assert all(len(images) == len(set(images)) for images in seen.values())
    # Every acknowledged answer is stored as it was given.
    acknowledged = {token: choice for log in logs for token, choice in log.acknowledged.items()}
    assert acknowledged and all(trials[token][4] == choice for token, choice in acknowledged.items())
    assert [e for log in logs for e in log.errors] == []
    assert len(logs) >= 50 and sum(log.finished for log in logs) >= 40
