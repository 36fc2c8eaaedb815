"""The answer path: a few statements per answer, the place pick on its index, raters' requests side by side.

`benchmarks/answer_path.py` measures the time of each statement; here the properties that
make it cheap are checked: how many statements an answer runs, that the pick walks
`slot_pick_idx` instead of sorting the free places, and that a rater's request locks the
experiment's row in share mode only (other raters go on; a change of state waits).
"""
from __future__ import annotations

import json
import threading

import pytest
from django.db import OperationalError, connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from tests.test_rater_flow import JSON, page_state, start
from vtt import services
from vtt.models import Colorization, Experiment, Method, Rater, Slot
from vtt.synthetic import synthetic_experiment

# Besides BEGIN/COMMIT or the savepoints of a test's transaction: the experiment's row, the rater's, the rater's
# trials, the place filled, the answer, and the next place (PostgreSQL: one statement; SQLite: pick, insert, lease).
STATEMENTS = {"postgresql": 6, "sqlite": 8}


def _answer(client: Client, slug: str, token: str) -> dict:
    response = client.post(f"/e/{slug}/answer/", {"trial": token, "choice": "L", "response_ms": "700"}, **JSON)
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.django_db
def test_an_answer_runs_a_few_statements(media_root):
    experiment = synthetic_experiment("s", images=30, methods=3, k=3, trials_per_rater=8, catch_trial_rate=0)
    client = Client()
    start(client, experiment)
    state = page_state(client, experiment)
    current = _answer(client, experiment.slug, state["current"]["token"])["current"]  # the next is preloaded
    for _ in range(5):
        with CaptureQueriesContext(connection) as queries:
            current = _answer(client, experiment.slug, current["token"])["current"]
        statements = [q["sql"] for q in queries.captured_queries
                      if not q["sql"].upper().startswith(("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE SAVEPOINT"))]
        assert len(statements) == STATEMENTS[connection.vendor], "\n".join(statements)
    trials = Rater.objects.get().trials.order_by("position")
    assert [t.answered is not None for t in trials] == [True] * 6 + [False] * 2
    assert all(t.slot.filled for t in trials[:6]) and all(not t.slot.filled and t.slot.lease_expires for t in trials[6:])


@pytest.mark.postgresql
@pytest.mark.django_db
def test_the_pick_walks_its_index_without_sorting_the_free_places(media_root):
    experiment = synthetic_experiment("s", images=400, methods=5, k=5)  # 10,000 places; opening analyzes them
    method = Method.objects.filter(experiment=experiment, role=Method.Role.TESTED).first()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + services.PICK,
                       [experiment.pk, method.pk, "2026-01-01T00:00:00Z", list(range(1, 40))])
        plan = cursor.fetchone()[0]
        plan = json.loads(plan) if isinstance(plan, str) else plan

    def nodes(node):
        yield node
        for child in node.get("Plans", []):
            yield from nodes(child)

    found = list(nodes(plan[0]["Plan"]))
    assert [n["Node Type"] for n in found] == ["Limit", "LockRows", "Index Scan"], json.dumps(plan, indent=1)
    assert found[-1]["Index Name"] == "slot_pick_idx"


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_raters_requests_go_side_by_side_and_a_change_of_state_waits_for_them(media_root):
    """A rater's request holds the experiment's row in share mode: another rater's answer goes
    through meanwhile; pausing the study waits (here: gives up after its lock timeout) until it ends."""
    experiment = synthetic_experiment("s", images=30, methods=2, k=3, trials_per_rater=6, catch_trial_rate=0)
    first, second = (services.rater_start(experiment=experiment) for _ in range(2))
    token = services.trial_next(rater=second)[0].token
    holding, release, errors = threading.Event(), threading.Event(), []

    def in_thread(work):
        def run():
            try:
                work()
            except Exception as exc:  # reported by the main thread
                errors.append(exc)
            finally:
                connection.close()
        thread = threading.Thread(target=run)
        thread.start()
        return thread

    def request_under_way():
        with transaction.atomic():
            services.trial_next(rater=first)  # locks as an answer does (`services._locked`)
            holding.set()
            release.wait(20)

    def answer():
        with transaction.atomic():
            connection.cursor().execute("SET LOCAL lock_timeout = '2s'")
            services.trial_answer(rater=second, token=token, choice="L", response_ms=500)

    def pause():
        with transaction.atomic():
            connection.cursor().execute("SET LOCAL lock_timeout = '300ms'")
            services.experiment_pause(experiment=experiment)

    under_way = in_thread(request_under_way)
    try:
        assert holding.wait(20)
        in_thread(answer).join()
        assert not errors, errors  # another rater's answer did not wait
        in_thread(pause).join()
        assert len(errors) == 1 and isinstance(errors[0], OperationalError) and "lock timeout" in str(errors[0])
        assert Experiment.objects.get(pk=experiment.pk).state == Experiment.State.OPEN
    finally:
        release.set()
        under_way.join()
    services.experiment_pause(experiment=experiment)  # once the request has ended
    assert Experiment.objects.get(pk=experiment.pk).state == Experiment.State.PAUSED
    assert Slot.objects.filter(trial__rater=second, filled=True).count() == 1


@pytest.mark.django_db
def test_rows_read_by_hand_equal_the_orms(media_root):
    """`services._one` (the rater's and the experiment's rows, written out) makes the instances the ORM makes:
    every field's value and type, JSON, decimals and datetimes included."""
    experiment = synthetic_experiment("s", images=10, methods=2, k=2, trials_per_rater=4, catch_trial_rate=0)
    rater = services.rater_start(experiment=experiment, viewing={"screen_w": 1920, "screen_h": 1080})
    for model, pk in ((Experiment, experiment.pk), (Rater, rater.pk)):
        by_hand, orm = services._one(model, "WHERE id = %s", [pk]), model.objects.get(pk=pk)
        for field in model._meta.concrete_fields:
            mine, theirs = getattr(by_hand, field.attname), getattr(orm, field.attname)
            assert (mine, type(mine)) == (theirs, type(theirs)), field.name
    assert services._one(Rater, "WHERE id = %s", [rater.pk + 1000]) is None


@pytest.mark.django_db
def test_practice_and_catch_pairs_are_drawn_from_a_random_point_of_the_random_rank(media_root, monkeypatch):
    """`services._draw`: a method at random, then its first pair at or after a random point of
    `Colorization.order`, wrapping around; never an image seen, a control, or two identical images."""
    experiment = synthetic_experiment("s", images=6, methods=2, k=2, trials_per_rater=4, catch_trial_rate=0)
    tested, control = Method.objects.filter(experiment=experiment, role=Method.Role.TESTED).order_by("id")
    Method.objects.filter(pk=control.pk).update(role=Method.Role.CALIBRATION)
    pairs = list(Colorization.objects.filter(method__experiment=experiment).select_related("image").order_by("id"))
    step = 2**31 // (len(pairs) + 1)  # ranks spread over the whole range, in id order
    for rank, pair in enumerate(pairs, start=1):
        Colorization.objects.filter(pk=pair.pk).update(order=step * rank)
    ours = [p for p in pairs if p.method_id == tested.pk]  # in rank order
    Colorization.objects.filter(pk=ours[0].pk).update(sha256=ours[0].image.real_sha256)  # two identical images

    def draw(role, seen, start):
        monkeypatch.setattr(services._random, "randrange", lambda n: start)
        return services._draw(experiment, role, seen)

    assert draw(Method.Role.TESTED, [], 0)[0] == ours[1].pk                # the first after 0, identical skipped
    assert draw(Method.Role.TESTED, [], step * len(pairs) + 1)[0] == ours[1].pk  # after the last: wraps around
    assert draw(Method.Role.TESTED, [ours[1].image_id], 0)[0] == ours[2].pk  # an image seen is skipped
    assert draw(Method.Role.TESTED, [p.image_id for p in ours], 0) is None
    catch = [p for p in pairs if p.method.role == Method.Role.CATCH]
    just_before = step * (pairs.index(catch[3]) + 1) - 1
    assert draw(Method.Role.CATCH, [], just_before)[0] == catch[3].pk
    assert draw(Method.Role.CATCH, [catch[3].image_id], just_before)[0] == catch[4].pk
    monkeypatch.undo()
    drawn = {services._draw(experiment, Method.Role.TESTED, [ours[2].image_id])[0] for _ in range(200)}
    assert drawn <= {p.pk for p in ours[1:]} - {ours[2].pk} and len(drawn) >= 2
