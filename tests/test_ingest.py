"""The ingest job: batching, idempotency, facts, and concurrency on PostgreSQL."""

import logging
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from wagtail_crm.models import Interaction, VisitorProfile
from wagtail_crm.profiles.events import make_event
from wagtail_crm.profiles.facts import merge_facts
from wagtail_crm.profiles.ingest import ingest_events


def test_one_batch_many_visitors(transactional_db):
    events = [
        make_event("page_view", visitor_id=f"{i:032x}", data={"path": f"/p/{i % 3}/"}) for i in range(50)
    ] + [make_event("page_view", visitor_id=f"{i:032x}", data={"path": "/again/"}) for i in range(10)]

    assert ingest_events(events) == 60 + 50  # plus one visit_started per new visitor
    assert VisitorProfile.objects.count() == 50
    assert VisitorProfile.objects.get(visitor_id=f"{3:032x}").facts["counts"]["page_view"] == 2
    assert ingest_events(events) == 0  # the whole batch again: nothing new


def test_invalid_events_are_skipped_and_logged_not_fatal(transactional_db, caplog):
    good = make_event("page_view", visitor_id="a" * 32)
    with caplog.at_level(logging.ERROR, logger="wagtail_crm.ingest"):
        written = ingest_events(
            [
                {"id": "not-a-uuid", "kind": "page_view", "visitor_id": "b" * 32},
                {**make_event("page_view"), "visitor_id": None},  # nobody to attach it to
                {**make_event("page_view", visitor_id="c" * 32), "occurred_at": "yesterday-ish"},
                {**make_event("", visitor_id="d" * 32)},
                make_event("Bad Kind!", visitor_id="d" * 32),
                make_event("custom", channel="shop", visitor_id="d" * 32),
                make_event("page_view", visitor_id="d" * 32, page_id="abc"),
                make_event("page_view", visitor_id=["not", "a", "string"]),
                {**make_event("custom", visitor_id="d" * 32), "data": ["not", "an", "object"]},
                good,
            ]
        )
    assert written == 2  # the good page view and its visit
    assert len([r for r in caplog.records if "Skipping invalid event" in r.getMessage()]) == 9
    assert VisitorProfile.objects.count() == 1


def test_a_page_deleted_before_ingest_is_recorded_without_page(home):
    about = home.get_children().get(slug="about")
    event = make_event("page_view", visitor_id="e" * 32, page_id=about.pk, data={"path": "/about/"})
    about.delete()
    ingest_events([event])
    view = Interaction.objects.get(kind="page_view")
    assert view.page is None and view.data["path"] == "/about/"


def test_events_in_one_batch_are_applied_in_time_order(transactional_db):
    now = timezone.now()
    later = make_event("page_view", visitor_id="f" * 32, occurred_at=now, data={"path": "/b/"})
    earlier = make_event(
        "page_view",
        visitor_id="f" * 32,
        occurred_at=now - timedelta(hours=3),
        data={"path": "/a/"},
        attribution={"utm_source": "newsletter"},
    )
    ingest_events([later, earlier])
    profile = VisitorProfile.objects.get()
    assert profile.visit_count == 2
    assert profile.first_seen == earlier_time(earlier)
    assert profile.last_seen == now
    assert profile.first_utm_source == "newsletter"
    assert profile.first_landing_page == "/a/"


def earlier_time(event):
    from datetime import datetime

    return datetime.fromisoformat(event["occurred_at"])


@override_settings(WAGTAIL_CRM={"FACTS_DAILY_DAYS": 7, "FACTS_MAX_PAGES": 2})
def test_facts_stay_bounded(home):
    pages = list(home.get_descendants())
    now = timezone.now()
    events = [
        make_event(
            "page_view", visitor_id="1" * 32, occurred_at=now - timedelta(days=30), page_id=pages[0].pk
        )
    ] + [make_event("page_view", visitor_id="1" * 32, page_id=page.pk) for page in pages]
    ingest_events(events)
    facts = VisitorProfile.objects.get().facts
    assert len(facts["pages"]) == 2
    assert all(day >= (now - timedelta(days=7)).date().isoformat() for day in facts["daily"])
    assert facts["counts"]["page_view"] == len(pages) + 1  # all-time counts are kept


def test_merge_facts_adds_counts_and_keeps_the_latest_stamps():
    target = {"counts": {"page_view": 2}, "last": {"page_view": "2026-01-02"}, "spend": 10.0, "orders": 1}
    source = {
        "counts": {"page_view": 3, "signup": 1},
        "last": {"page_view": "2026-01-05"},
        "spend": 5.5,
        "orders": 1,
        "survey": {"q": "a"},
        "daily": {"2026-01-05": {"page_view": 3}},
    }
    merged = merge_facts(target, source)
    assert merged["counts"] == {"page_view": 5, "signup": 1}
    assert merged["last"]["page_view"] == "2026-01-05"
    assert (merged["spend"], merged["orders"]) == (15.5, 2)
    assert merged["survey"] == {"q": "a"}
    assert merged["daily"]["2026-01-05"]["page_view"] == 3


def test_merge_facts_adds_daily_purchases_and_page_views():
    target = {"daily": {"2026-01-05": {"@orders": 1, "@spend": 0.1, "@pages": {"3": 1}}}}
    source = {
        "daily": {"2026-01-05": {"@orders": 2, "@spend": 0.7, "@pages": {"3": 2, "4": 1}}, "2026-01-06": {}}
    }
    merged = merge_facts(target, source)
    assert merged["daily"]["2026-01-05"] == {"@orders": 3, "@spend": 0.8, "@pages": {"3": 3, "4": 1}}
    assert isinstance(merged["daily"]["2026-01-05"]["@orders"], int)
    assert merged["daily"]["2026-01-06"] == {}


def test_concurrent_batches_for_one_profile_lose_no_update(postgres, transactional_db):
    """Two workers ingesting events of the same profile at once: row locks serialise the facts update."""
    profile = VisitorProfile.objects.create()
    barrier = threading.Barrier(2)
    errors = []

    def worker():
        try:
            barrier.wait(timeout=10)
            for _ in range(5):
                ingest_events([make_event("custom", profile_id=profile.pk) for _ in range(20)])
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    profile.refresh_from_db()
    assert Interaction.objects.filter(profile=profile).count() == 200
    assert profile.facts["counts"]["custom"] == 200


@pytest.mark.parametrize("amount", ["abc", None, "NaN", "1e400"])
def test_bad_amounts_do_not_break_spend(transactional_db, amount):
    profile = VisitorProfile.objects.create()
    ingest_events([make_event("checkout_completed", profile_id=profile.pk, data={"amount": amount})])
    profile.refresh_from_db()
    assert profile.facts["orders"] == 1
    assert profile.facts.get("spend", 0) == 0
