"""The job layer with a real Redis and a real ``rqworker`` process.

These tests need Redis: locally they skip without it; in CI (CRM_REQUIRE_SERVICES=1) they fail instead.
"""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from wagtail_crm import jobs
from wagtail_crm.models import Interaction, VisitorProfile
from wagtail_crm.profiles import events
from wagtail_crm.profiles.events import make_event, record_events
from wagtail_crm.profiles.identity import sign_visitor_id

ROOT = Path(__file__).resolve().parent.parent
QUEUED = {"RQ_QUEUE": "crm"}


@pytest.fixture
def queued(redis_url, settings):
    settings.WAGTAIL_CRM = QUEUED
    jobs._queues.clear()
    yield jobs.get_queue()
    jobs._queues.clear()


def run_worker():
    """Run ``manage.py rqworker crm --burst`` against this test database, as production would."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "CRM_DB_NAME": str(connection.settings_dict["NAME"]),
        "CRM_TEST_RQ": "1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "django", "rqworker", "crm", "--burst"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def writes(queries):
    return [q["sql"] for q in queries if q["sql"].split()[0].upper() in {"INSERT", "UPDATE", "DELETE"}]


def test_page_views_are_buffered_and_written_by_a_real_worker(home, browser, queued):
    first = browser.get("/shop/?utm_source=newsletter")
    assert first.status_code == 200
    assert not Interaction.objects.exists()  # nothing written in the request
    assert events.buffered_count() == 1
    assert queued.count == 1  # one drain job queued

    with CaptureQueriesContext(connection) as queries:
        response = browser.get("/about/")
    assert response.status_code == 200
    assert writes(queries.captured_queries) == []
    assert events.buffered_count() == 2
    assert queued.count == 1  # still one drain job for both events

    run_worker()

    profile = VisitorProfile.objects.get()
    assert profile.first_utm_source == "newsletter"
    assert sorted(profile.interactions.values_list("kind", flat=True)) == [
        "page_view",
        "page_view",
        "visit_started",
    ]
    assert events.buffered_count() == 0


def test_returning_visitor_request_costs_no_crm_query(home, browser, queued):
    """With a queue, a returning visitor's page view does no read and no write of ours."""
    browser.get("/")
    run_worker()
    with CaptureQueriesContext(connection) as queries:
        assert browser.get("/about/").status_code == 200
    crm_queries = [q["sql"] for q in queries.captured_queries if "wagtail_crm" in q["sql"]]
    assert crm_queries == []
    assert writes(queries.captured_queries) == []


def test_jobs_enqueue_goes_to_redis_and_runs_on_the_worker(transactional_db, queued):
    profile = VisitorProfile.objects.create()
    jobs.enqueue(
        "wagtail_crm.profiles.ingest.ingest_events",
        [make_event("custom", profile_id=profile.pk, data={"via": "worker"})],
    )
    assert queued.count == 1
    assert not Interaction.objects.exists()
    run_worker()
    assert Interaction.objects.get().data == {"via": "worker"}


def test_drain_is_idempotent_when_a_worker_dies_after_writing(transactional_db, queued, monkeypatch):
    profile = VisitorProfile.objects.create()
    record_events([make_event("custom", profile_id=profile.pk) for _ in range(5)])

    # Simulate a crash between the database commit and the Redis trim: the batch stays in the buffer.
    redis = queued.connection
    monkeypatch.setattr(redis, "ltrim", lambda *args: None)
    assert events.drain_buffer(max_batches=1) == 5
    assert events.buffered_count() == 5
    monkeypatch.undo()

    assert events.drain_buffer() == 0  # already written: skipped, then trimmed
    assert events.buffered_count() == 0
    assert Interaction.objects.count() == 5
    profile.refresh_from_db()
    assert profile.facts["counts"]["custom"] == 5


def test_batches_respect_the_batch_size(transactional_db, queued, settings):
    settings.WAGTAIL_CRM = {**QUEUED, "INGEST_BATCH_SIZE": 3}
    profile = VisitorProfile.objects.create()
    record_events([make_event("custom", profile_id=profile.pk) for _ in range(7)])
    assert events.drain_buffer(max_batches=2) == 6
    assert events.buffered_count() == 1
    assert events.drain_buffer() == 1


@override_settings(
    WAGTAIL_CRM=QUEUED,
    RQ_QUEUES={"crm": {"HOST": "127.0.0.1", "PORT": 1, "DB": 0, "SOCKET_CONNECT_TIMEOUT": 0.2}},
)
def test_redis_down_still_renders_and_writes_inline(home, browser, caplog):
    jobs._queues.clear()
    visitor_id = "ef" * 16
    browser.cookies["wagtail_crm_vid"] = sign_visitor_id(visitor_id)
    with caplog.at_level(logging.WARNING, logger="wagtail_crm"):
        response = browser.get("/shop/")
    jobs._queues.clear()

    assert response.status_code == 200
    profile = VisitorProfile.objects.get(visitor_id=visitor_id)
    assert profile.interactions.filter(kind="page_view").count() == 1
    assert any("Redis unreachable" in record.getMessage() for record in caplog.records)


def test_login_with_buffered_events_lands_them_on_the_user(home, browser, queued, django_user_model):
    ann = django_user_model.objects.create_user("ann", "ann@example.com", "secret")
    browser.get("/shop/?utm_source=newsletter")  # buffered, not yet written
    assert not VisitorProfile.objects.exists()
    browser.post("/accounts/login/", {"username": "ann", "password": "secret"})
    browser.get("/about/")
    run_worker()

    profile = VisitorProfile.objects.get(user=ann)
    assert sorted(profile.interactions.filter(kind="page_view").values_list("data__path", flat=True)) == [
        "/about/",
        "/shop/",
    ]
    assert profile.first_utm_source == "newsletter"


def test_drain_command_writes_what_is_buffered(transactional_db, queued):
    from io import StringIO

    from django.core.management import call_command

    profile = VisitorProfile.objects.create()
    record_events([make_event("custom", profile_id=profile.pk) for _ in range(4)])
    out = StringIO()
    call_command("crm_drain_events", stdout=out)
    assert "4 buffered event(s) found, 4 new interaction(s) written" in out.getvalue()
    assert Interaction.objects.count() == 4


def test_drain_command_without_a_queue_says_so(transactional_db):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("crm_drain_events", stdout=out)
    assert "nothing to do" in out.getvalue()


def test_one_bad_event_cannot_stall_the_buffer(transactional_db, queued, caplog):
    profile = VisitorProfile.objects.create()
    good = [make_event("custom", profile_id=profile.pk) for _ in range(2)]
    # Valid in shape, but refers to a staff user that does not exist: the database refuses it.
    bad = make_event("custom", profile_id=profile.pk, recorded_by_id=987654)
    record_events([good[0], bad, good[1]])

    with caplog.at_level(logging.ERROR, logger="wagtail_crm.events"):
        assert events.drain_buffer() == 2

    assert events.buffered_count() == 0
    assert Interaction.objects.count() == 2
    failed = queued.connection.lrange("wagtail_crm:events:failed", 0, -1)
    assert [json.loads(item)["id"] for item in failed] == [bad["id"]]


def test_a_long_drain_hands_the_rest_of_the_backlog_to_a_new_job(transactional_db, queued, settings):
    settings.WAGTAIL_CRM = {**QUEUED, "INGEST_BATCH_SIZE": 2}
    profile = VisitorProfile.objects.create()
    record_events([make_event("custom", profile_id=profile.pk) for _ in range(5)])
    queued.empty()
    queued.connection.delete("wagtail_crm:drain-queued")

    assert events.drain_buffer(max_seconds=0) == 0  # out of time before the first batch
    assert events.buffered_count() == 5
    assert queued.count == 1  # its successor is queued

    run_worker()
    assert Interaction.objects.count() == 5
    assert events.buffered_count() == 0


def test_saving_a_segment_queues_its_count_and_a_real_worker_stores_it(transactional_db, queued):
    from wagtail_crm.segments.models import Segment, SegmentMemberCount

    for source in ("newsletter", "newsletter", "google"):
        VisitorProfile.objects.create(first_utm_source=source)
    segment = Segment.objects.create(
        name="Newsletter readers",
        slug="newsletter-readers",
        rules=[
            {
                "type": "campaign",
                "value": {
                    "parameter": "utm_source",
                    "touch": "first",
                    "operator": "equals",
                    "value": "Newsletter",
                },
            }
        ],
    )
    assert queued.count == 1  # counted on the worker, not in the editor's request
    assert not SegmentMemberCount.objects.exists()
    run_worker()
    counted = SegmentMemberCount.objects.get(segment=segment)
    assert counted.count == 2 and counted.counted_at is not None
