"""Learning what works: impressions and conversions of personalised blocks' variants, counted by the ingest
job in daily counters, and the CRM › Personalisation report that shows them."""

import json
import threading
from datetime import UTC, timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from wagtail import hooks

import wagtail_crm
from tests.testapp.models import StreamTestPage
from wagtail_crm import jobs
from wagtail_crm.content.models import VariantStats
from wagtail_crm.models import Interaction, VisitorProfile
from wagtail_crm.profiles import events
from wagtail_crm.profiles.events import make_event, record_events
from wagtail_crm.profiles.facts import merge_facts, utc_stamp
from wagtail_crm.profiles.ingest import ingest_events
from wagtail_crm.segments.models import Segment

from .conftest import BROWSER, staff_user

HERO, SIGNUP_BOX = "8c7e0d4e-hero", "1f0a4b2c-signup"
FOR_READERS, FOR_PARTNERS, READERS_TEXT = "v-readers", "v-partners", "v-readers-text"
LISTING = reverse("wagtail_crm_personalisation:index")


def block_url(page, block_id):
    return reverse("wagtail_crm_personalisation:block", args=[page.pk, block_id])


def campaign(value):
    return {
        "type": "campaign",
        "value": {"parameter": "utm_source", "touch": "either", "operator": "equals", "value": value},
    }


def variant(variant_id, segment, content):
    return {
        "type": "item",
        "id": variant_id,
        "value": {"segments": [str(segment.pk)], "hide_from": [], "content": content},
    }


def hero(readers, partners, **settings):
    return {
        "type": "personalised",
        "id": HERO,
        "value": {
            "variants": [
                variant(
                    FOR_READERS,
                    readers,
                    [{"type": "rich_text", "value": "<p>Readers save 10%</p>", "id": "c1"}],
                ),
                variant(
                    FOR_PARTNERS,
                    partners,
                    [{"type": "rich_text", "value": "<p>Partner deal</p>", "id": "c2"}],
                ),
            ],
            "default": [{"type": "rich_text", "value": "<p>Welcome, everyone</p>", "id": "c3"}],
            "name": "Home hero",
            "goal": "",
            "goal_days": None,
            **settings,
        },
    }


def signup_box(readers):
    # Unnamed, with a goal of its own: a newsletter sign-up within 3 days.
    return {
        "type": "personalised_text",
        "id": SIGNUP_BOX,
        "value": {
            "variants": [variant(READERS_TEXT, readers, "<p>You read us: join the club</p>")],
            "default": "<p>Sign up for news</p>",
            "name": "",
            "goal": "signup",
            "goal_days": 3,
        },
    }


@pytest.fixture
def readers(home):
    return Segment.objects.create(name="Newsletter readers", slug="readers", rules=[campaign("newsletter")])


@pytest.fixture
def partners(home):
    return Segment.objects.create(name="Partner visitors", slug="partners", rules=[campaign("partner")])


@pytest.fixture
def deals(home, readers, partners):
    return home.add_child(
        instance=StreamTestPage(
            title="Deals", slug="deals", body=[hero(readers, partners), signup_box(readers)]
        )
    )


def new_browser():
    return Client(HTTP_USER_AGENT=BROWSER)


def visit(client, path="/deals/", expect=None, **extra):
    response = client.get(path, **extra)
    assert response.status_code == 200
    if expect:
        assert expect in response.content.decode()
    return response


def counts(block_id=HERO, **filters):
    """``{variant: (impressions, conversions)}`` of a block, summed over days."""
    totals = {}
    for row in VariantStats.objects.filter(block_id=block_id, **filters):
        impressions, conversions = totals.get(row.variant, (0, 0))
        totals[row.variant] = (impressions + row.impressions, conversions + row.conversions)
    return totals


def today(offset=0):
    return (timezone.now() + timedelta(days=offset)).astimezone(UTC).date()


def profile_from(source):
    return VisitorProfile.objects.get(first_utm_source=source)


# -- counting impressions --------------------------------------------------------------------------------


def test_impressions_are_counted_per_variant_in_one_row_per_day(deals):
    reader, partner, passer_by = new_browser(), new_browser(), new_browser()
    visit(reader, "/deals/?utm_source=newsletter", "Readers save 10%")
    visit(reader, "/deals/", "Readers save 10%")  # still a reader: the first touch was the newsletter
    visit(partner, "/deals/?utm_source=partner", "Partner deal")
    visit(passer_by, expect="Welcome, everyone")

    assert counts() == {FOR_READERS: (2, 0), FOR_PARTNERS: (1, 0), "default": (1, 0)}
    assert counts(SIGNUP_BOX) == {READERS_TEXT: (2, 0), "default": (2, 0)}
    # Counters, not rows per view: one row per variant and day.
    assert VariantStats.objects.filter(block_id=HERO).count() == 3
    assert set(VariantStats.objects.values_list("day", flat=True)) == {today()}
    assert set(VariantStats.objects.values_list("page_id", flat=True)) == {deals.pk}


def test_impressions_fall_on_the_utc_day_of_the_page_view(deals):
    profile = VisitorProfile.objects.create()
    yesterday = timezone.now() - timedelta(days=1)
    shown = [{"page": deals.pk, "block": HERO, "variant": "default", "goal": "checkout_completed", "days": 7}]
    ingest_events(
        [
            make_event(
                "page_view", profile_id=profile.pk, page_id=deals.pk, occurred_at=yesterday, impressions=shown
            ),
            make_event("page_view", profile_id=profile.pk, page_id=deals.pk, impressions=shown),
            make_event("page_view", profile_id=profile.pk, page_id=deals.pk, impressions=shown),
        ]
    )
    by_day = dict(VariantStats.objects.values_list("day", "impressions"))
    assert by_day == {today(-1): 1, today(): 2}


def test_bots_and_do_not_track_visitors_are_not_counted(deals):
    visit(Client(HTTP_USER_AGENT="Mozilla/5.0 (compatible; Googlebot/2.1)"), expect="Welcome, everyone")
    visit(new_browser(), "/deals/?utm_source=newsletter", HTTP_DNT="1")
    visit(new_browser(), "/deals/?utm_source=newsletter", HTTP_SEC_GPC="1")
    assert not VariantStats.objects.exists()
    assert not VisitorProfile.objects.exists()


def test_pages_without_personalised_blocks_count_nothing_and_keep_no_seen_facts(home):
    visit(new_browser(), "/shop/")
    assert not VariantStats.objects.exists()
    assert "@seen" not in VisitorProfile.objects.get().facts


def test_malformed_impressions_are_dropped_but_the_page_view_is_written(deals, caplog):
    profile = VisitorProfile.objects.create()
    good = {"page": deals.pk, "block": HERO, "variant": "default", "goal": "checkout_completed", "days": 7}
    malformed = [
        "not a dict",
        {**good, "page": "abc"},
        {**good, "page": True},
        {**good, "block": ""},
        {**good, "block": "x" * 65},
        {**good, "variant": None},
        {**good, "goal": "Not A Kind"},
        {**good, "days": 0},
        {**good, "days": "7"},
        {**good, "days": True},
        {key: value for key, value in good.items() if key != "goal"},
    ]
    written = ingest_events(
        [
            make_event(
                "page_view", profile_id=profile.pk, page_id=deals.pk, impressions=malformed + [good] * 60
            ),
            {**make_event("page_view", profile_id=profile.pk), "impressions": "not a list"},
            {**make_event("page_view", profile_id=profile.pk), "impressions": {"page": deals.pk}},
        ]
    )
    assert written == 4  # three page views and the visit they start
    # At most 50 entries are read from one event: 11 malformed ones and 39 good ones.
    assert counts() == {"default": (39, 0)}
    assert not [record for record in caplog.records if "Skipping invalid event" in record.getMessage()]


def test_a_long_window_is_capped_at_a_year(deals):
    profile = VisitorProfile.objects.create()
    shown = [
        {"page": deals.pk, "block": HERO, "variant": "default", "goal": "checkout_completed", "days": 10_000}
    ]
    ingest_events([make_event("page_view", profile_id=profile.pk, page_id=deals.pk, impressions=shown)])
    profile.refresh_from_db()
    assert profile.facts["@seen"][f"{deals.pk}:{HERO}"][3] == 365


def test_counters_of_a_deleted_page_are_dropped(deals, home):
    profile = VisitorProfile.objects.create()
    about = home.get_children().get(slug="about")
    gone = [{"page": about.pk, "block": HERO, "variant": "default", "goal": "checkout_completed", "days": 7}]
    kept = [{"page": deals.pk, "block": HERO, "variant": "default", "goal": "checkout_completed", "days": 7}]
    # The impression of the deleted page travels on a page view of another page (edge-mode fragments do).
    event = make_event("page_view", profile_id=profile.pk, page_id=deals.pk, impressions=gone + kept)
    about.delete()
    assert ingest_events([event]) == 2
    assert list(VariantStats.objects.values_list("page_id", "impressions")) == [(deals.pk, 1)]


# -- conversions -----------------------------------------------------------------------------------------


def test_a_goal_within_the_window_converts_the_variant_the_visitor_saw(deals):
    visit(new_browser(), "/deals/?utm_source=newsletter", "Readers save 10%")
    visit(new_browser(), "/deals/?utm_source=partner", "Partner deal")
    reader = profile_from("newsletter")

    wagtail_crm.track(reader, "checkout_completed", occurred_at=timezone.now() + timedelta(days=2))
    assert counts() == {FOR_READERS: (1, 1), FOR_PARTNERS: (1, 0)}
    # The conversion is counted on the day of the goal event.
    assert VariantStats.objects.get(block_id=HERO, variant=FOR_READERS, day=today(2)).conversions == 1
    # The sign-up box has a goal of its own: a checkout does not convert it.
    assert counts(SIGNUP_BOX) == {READERS_TEXT: (1, 0), "default": (1, 0)}

    # Every goal event in the window counts, once per block.
    wagtail_crm.track(reader, "checkout_completed", occurred_at=timezone.now() + timedelta(days=6, hours=23))
    assert counts()[FOR_READERS] == (1, 2)


def test_a_goal_outside_the_window_of_another_kind_or_before_the_view_converts_nothing(deals):
    visit(new_browser(), "/deals/?utm_source=newsletter", "Readers save 10%")
    reader = profile_from("newsletter")
    wagtail_crm.track(reader, "checkout_completed", occurred_at=timezone.now() + timedelta(days=7, hours=1))
    wagtail_crm.track(reader, "checkout_completed", occurred_at=timezone.now() - timedelta(hours=1))
    wagtail_crm.track(reader, "survey_submitted")
    wagtail_crm.track(reader, "checkout_abandoned")
    assert counts() == {FOR_READERS: (1, 0)}
    assert Interaction.objects.filter(kind__in=["checkout_completed", "survey_submitted"]).count() == 3


def test_a_block_with_its_own_goal_converts_on_that_goal_within_its_own_window(deals):
    reader = new_browser()
    visit(reader, "/deals/?utm_source=newsletter", "You read us: join the club")
    response = reader.post("/newsletter/", {"email": "ann@example.com", "consent": "on"})
    assert response.status_code == 200
    assert counts(SIGNUP_BOX) == {READERS_TEXT: (1, 1)}
    assert counts() == {FOR_READERS: (1, 0)}  # the hero converts on checkouts only

    # Three days is the sign-up box's window: a sign-up on the fourth day is too late.
    wagtail_crm.track(
        profile_from("newsletter"), "signup", occurred_at=timezone.now() + timedelta(days=3, hours=1)
    )
    assert counts(SIGNUP_BOX) == {READERS_TEXT: (1, 1)}


def test_the_site_default_goal_and_window_apply_to_blocks_without_their_own(deals, settings):
    settings.WAGTAIL_CRM = {"CONVERSION_GOAL": "survey_submitted", "CONVERSION_DAYS": 2}
    visit(new_browser(), "/deals/?utm_source=partner", "Partner deal")
    partner = profile_from("partner")
    wagtail_crm.track(partner, "checkout_completed")
    wagtail_crm.track(partner, "survey_submitted", occurred_at=timezone.now() + timedelta(days=1))
    wagtail_crm.track(partner, "survey_submitted", occurred_at=timezone.now() + timedelta(days=2, hours=1))
    assert counts() == {FOR_PARTNERS: (1, 1)}


def test_the_last_variant_seen_is_the_one_converted(deals):
    visitor = new_browser()
    visit(visitor, expect="Welcome, everyone")
    visit(visitor, "/deals/?utm_source=partner", "Partner deal")  # a campaign click moves them to a segment
    wagtail_crm.track(VisitorProfile.objects.get(), "checkout_completed")
    assert counts() == {"default": (1, 0), FOR_PARTNERS: (1, 1)}


def test_a_page_view_does_not_convert_what_it_shows(deals, settings):
    settings.WAGTAIL_CRM = {"CONVERSION_GOAL": "page_view"}
    visitor = new_browser()
    visit(visitor, expect="Welcome, everyone")
    assert counts() == {"default": (1, 0)}
    visit(visitor, expect="Welcome, everyone")
    assert counts() == {"default": (2, 1)}  # the second view converts the first


def test_events_in_one_batch_convert_in_time_order(deals):
    profile = VisitorProfile.objects.create()
    now = timezone.now()
    shown = [
        {"page": deals.pk, "block": HERO, "variant": FOR_READERS, "goal": "checkout_completed", "days": 7}
    ]
    checkout = make_event("checkout_completed", profile_id=profile.pk, occurred_at=now + timedelta(minutes=5))
    early = make_event("checkout_completed", profile_id=profile.pk, occurred_at=now - timedelta(minutes=5))
    view = make_event(
        "page_view", profile_id=profile.pk, page_id=deals.pk, occurred_at=now, impressions=shown
    )
    ingest_events([checkout, view, early])
    assert counts() == {FOR_READERS: (1, 1)}


def test_reingesting_the_same_events_does_not_count_twice(deals):
    profile = VisitorProfile.objects.create()
    shown = [
        {"page": deals.pk, "block": HERO, "variant": FOR_READERS, "goal": "checkout_completed", "days": 7}
    ]
    view = make_event("page_view", profile_id=profile.pk, page_id=deals.pk, impressions=shown)
    checkout = make_event(
        "checkout_completed", profile_id=profile.pk, occurred_at=timezone.now() + timedelta(hours=1)
    )
    assert ingest_events([view]) == 2
    assert ingest_events([view, checkout]) == 1  # the view is already written: only the checkout is new
    assert ingest_events([view, checkout]) == 0
    assert ingest_events([view, view, checkout, checkout]) == 0
    assert counts() == {FOR_READERS: (1, 1)}


# -- what the profile remembers ------------------------------------------------------------------------


def test_seen_variants_are_forgotten_when_their_window_has_passed(deals):
    now = timezone.now()
    profile = VisitorProfile.objects.create(
        facts={
            "@seen": {
                f"{deals.pk}:old": ["default", utc_stamp(now - timedelta(days=8)), "checkout_completed", 7],
                f"{deals.pk}:long": ["default", utc_stamp(now - timedelta(days=8)), "checkout_completed", 30],
                f"{deals.pk}:broken": "not a list",
            }
        }
    )
    wagtail_crm.track(profile, "checkout_completed")
    profile.refresh_from_db()
    assert set(profile.facts["@seen"]) == {f"{deals.pk}:long"}
    assert counts("long") == {"default": (0, 1)}
    assert counts("old") == {}

    # Once nothing awaits a goal, the key goes (and ingest skips the conversion check for this profile).
    profile.facts["@seen"][f"{deals.pk}:long"][1] = utc_stamp(now - timedelta(days=31))
    profile.save()
    wagtail_crm.track(profile, "custom")
    profile.refresh_from_db()
    assert "@seen" not in profile.facts


def test_merging_profiles_keeps_the_latest_exposure_per_block():
    target = {"@seen": {"1:a": ["x", "2026-01-02T00:00:00.000000+00:00", "signup", 7]}}
    source = {
        "@seen": {
            "1:a": ["y", "2026-01-01T00:00:00.000000+00:00", "signup", 7],
            "1:b": ["z", "2026-01-03T00:00:00.000000+00:00", "signup", 7],
        }
    }
    merged = merge_facts(target, source)
    assert merged["@seen"] == {
        "1:a": ["x", "2026-01-02T00:00:00.000000+00:00", "signup", 7],
        "1:b": ["z", "2026-01-03T00:00:00.000000+00:00", "signup", 7],
    }
    assert merge_facts({}, source)["@seen"]["1:a"][0] == "y"
    assert "@seen" not in merge_facts({}, {})


def test_a_visitor_who_logs_in_keeps_what_they_saw_for_their_conversions(deals, django_user_model):
    user = django_user_model.objects.create_user("ann", password="secret")
    VisitorProfile.objects.create(user=user)  # from another device
    visitor = new_browser()
    visit(visitor, "/deals/?utm_source=partner", "Partner deal")
    assert visitor.post("/accounts/login/", {"username": "ann", "password": "secret"}).status_code == 302
    profile = VisitorProfile.objects.get(user=user)
    assert f"{deals.pk}:{HERO}" in profile.facts["@seen"]
    wagtail_crm.track(profile, "checkout_completed")
    assert counts()[FOR_PARTNERS] == (1, 1)


def test_segment_rules_ignore_what_the_visitor_saw(deals):
    viewers = Segment.objects.create(
        name="Deal hunters",
        slug="deal-hunters",
        rules=[
            {"type": "page_views", "value": {"page": deals.pk, "count": 2, "within_days": 7}},
            {
                "type": "activity",
                "value": {"kind": "page_view", "custom_kind": "", "count": 2, "within_days": None},
            },
        ],
    )
    visitor = new_browser()
    visit(visitor, "/deals/?utm_source=newsletter")
    visit(visitor)
    profile = VisitorProfile.objects.get()
    assert profile.facts["@seen"]
    assert viewers.matches(profile)
    assert list(viewers.members()) == [profile]


# -- the Redis queue and concurrent workers --------------------------------------------------------------


def test_buffered_page_views_are_counted_when_the_buffer_is_drained(deals, redis_url, settings, monkeypatch):
    settings.WAGTAIL_CRM = {"RQ_QUEUE": "crm"}
    jobs._queues.clear()
    try:
        reader = new_browser()
        # Both views carry the campaign: the first one's profile is not written before the drain.
        visit(reader, "/deals/?utm_source=newsletter", "Readers save 10%")
        visit(reader, "/deals/?utm_source=newsletter", "Readers save 10%")
        assert events.buffered_count() == 2
        assert not VariantStats.objects.exists()  # nothing written on the request path

        # A worker that dies between the commit and trimming the buffer: the next drain skips the batch.
        monkeypatch.setattr(jobs.get_queue().connection, "ltrim", lambda *args: None)
        assert events.drain_buffer() == 3
        monkeypatch.undo()
        assert events.drain_buffer() == 0
        assert counts() == {FOR_READERS: (2, 0)}

        record_events([make_event("checkout_completed", profile_id=profile_from("newsletter").pk)])
        events.drain_buffer()
        assert counts() == {FOR_READERS: (2, 1)}
    finally:
        jobs._queues.clear()


def test_concurrent_batches_add_up(postgres, deals):
    """Workers counting the same variants at once: the upsert adds, and rows locked in key order never
    deadlock."""
    profiles = [VisitorProfile.objects.create() for _ in range(4)]
    shown = [
        {"page": deals.pk, "block": block, "variant": "default", "goal": "checkout_completed", "days": 7}
        for block in (HERO, SIGNUP_BOX)
    ]
    barrier = threading.Barrier(4)
    errors = []

    def worker(profile, order):
        try:
            barrier.wait(timeout=10)
            for _ in range(5):
                impressions = shown if order else shown[::-1]
                ingest_events(
                    [
                        make_event(
                            "page_view", profile_id=profile.pk, page_id=deals.pk, impressions=impressions
                        )
                        for _ in range(2)
                    ]
                )
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(profile, n % 2)) for n, profile in enumerate(profiles)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert counts() == {"default": (40, 0)}
    assert counts(SIGNUP_BOX) == {"default": (40, 0)}


# -- the report ------------------------------------------------------------------------------------------


def menu_labels(response):
    start = response.content.index(b'id="wagtail-sidebar-props"')
    start = response.content.index(b">", start) + 1
    props = json.loads(response.content[start : response.content.index(b"</script>", start)])
    main_menu = next(m for m in props["modules"] if m["_type"] == "wagtail.sidebar.MainMenuModule")
    crm = [item for item in main_menu["_args"][0] if item["_args"][0]["name"] == "wagtail_crm"]
    return [item["_args"][0]["label"] for item in crm[0]["_args"][1]] if crm else []


@pytest.fixture
def traffic(deals):
    """Two readers and a partner saw the page; one reader bought within the window."""
    for source in ("newsletter", "newsletter", "partner"):
        visit(new_browser(), f"/deals/?utm_source={source}")
    visit(new_browser())
    reader = VisitorProfile.objects.filter(first_utm_source="newsletter").first()
    wagtail_crm.track(reader, "checkout_completed")
    return deals


def test_the_report_needs_the_view_permission(traffic, client, django_user_model):
    assert client.get(LISTING).status_code == 302  # to the login page
    client.force_login(staff_user(django_user_model, "editor"))
    for url in (LISTING, LISTING + "results/", block_url(traffic, HERO), LISTING + "?export=csv"):
        response = client.get(url)
        assert (response.status_code, response["Location"]) == (302, reverse("wagtailadmin_home")), url
    assert "Personalisation" not in menu_labels(client.get(reverse("wagtailadmin_home")))

    client.force_login(staff_user(django_user_model, "analyst", "view_variantstats"))
    assert client.get(LISTING).status_code == 200
    assert client.get(block_url(traffic, HERO)).status_code == 200
    assert "Personalisation" in menu_labels(client.get(reverse("wagtailadmin_home")))

    # Offered on the group edit page, like the permissions of every CRM model.
    offered = [permission for hook in hooks.get_hooks("register_permissions") for permission in hook()]
    assert Permission.objects.get(codename="view_variantstats") in offered


def test_the_listing_shows_each_block_with_its_numbers(traffic, admin_client):
    response = admin_client.get(LISTING)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Home hero" in html and "Personalised block 2" in html
    assert block_url(traffic, HERO) in html and block_url(traffic, SIGNUP_BOX) in html
    assert reverse("wagtailadmin_pages:edit", args=[traffic.pk]) in html
    rows = {row.name: row for row in response.context["object_list"]}
    assert (rows["Home hero"].impressions, rows["Home hero"].conversions) == (4, 1)
    assert rows["Home hero"].rate_text == "25.0%" and "25.0%" in html
    assert (rows["Personalised block 2"].impressions, rows["Personalised block 2"].conversions) == (4, 0)


def test_the_block_report_shows_each_variant_a_chart_and_the_daily_numbers(traffic, admin_client, readers):
    response = admin_client.get(block_url(traffic, HERO))
    assert response.status_code == 200
    html = response.content.decode()
    rows = [
        (row.label, row.impressions, row.conversions, row.rate_text)
        for row in response.context["object_list"]
    ]
    assert rows == [
        ("Newsletter readers", 2, 1, "50.0%"),
        ("Partner visitors", 1, 0, "0.0%"),
        ("Everyone else (default)", 1, 0, "0.0%"),
    ]
    assert "Checkout completed within 7 days" in html
    assert html.count('role="img"') == 2 and "<polyline" in html and "Impressions per day" in html
    assert "Daily numbers" in html

    # Renaming a segment renames its variant; a variant removed from the page is reported as such.
    readers.name = "Subscribers"
    readers.save()
    only_readers = hero(readers, Segment.objects.get(slug="partners"))
    only_readers["value"]["variants"] = only_readers["value"]["variants"][:1]
    traffic.body = [only_readers]
    traffic.save_revision().publish()
    labels = [row.label for row in admin_client.get(block_url(traffic, HERO)).context["object_list"]]
    assert labels == ["Subscribers", "Everyone else (default)", "Removed variant"]

    # A variant nobody has seen yet is listed with nothing counted.
    with_new = hero(readers, Segment.objects.get(slug="partners"))
    with_new["value"]["variants"].append(
        variant("v-new", readers, [{"type": "rich_text", "value": "<p>New</p>"}])
    )
    traffic.body = [with_new]
    traffic.save_revision().publish()
    rows = admin_client.get(block_url(traffic, HERO)).context["object_list"]
    assert [(row.label, row.impressions, row.rate_text) for row in rows if row.variant == "v-new"] == [
        ("Subscribers", 0, "—")
    ]
    listing = admin_client.get(LISTING).content.decode()
    assert "Removed block" in listing  # the sign-up box is gone from the page, its numbers are not


def test_the_signup_box_report_names_its_own_goal(traffic, admin_client):
    html = admin_client.get(block_url(traffic, SIGNUP_BOX)).content.decode()
    assert "Sign-up within 3 days" in html


def test_the_date_range_filters_both_views(traffic, admin_client):
    old = today(-40)
    VariantStats.objects.create(day=old, page=traffic, block_id="old-block", variant="default", impressions=9)
    listing = admin_client.get(LISTING)
    assert "old-block" not in {row.block_id for row in listing.context["object_list"]}

    since = (old - timedelta(days=1)).isoformat()
    until = (old + timedelta(days=1)).isoformat()
    listing = admin_client.get(LISTING, {"since": since, "until": until})
    assert [(row.block_id, row.impressions) for row in listing.context["object_list"]] == [("old-block", 9)]
    assert admin_client.get(LISTING + "results/", {"since": since, "until": until}).status_code == 200

    detail = admin_client.get(block_url(traffic, HERO), {"since": since, "until": until})
    assert detail.status_code == 200
    assert [row.impressions for row in detail.context["object_list"]] == [0, 0, 0]  # nothing in that range
    detail = admin_client.get(block_url(traffic, HERO), {"since": today(-1).isoformat()})
    assert [row.impressions for row in detail.context["object_list"]] == [2, 1, 1]
    assert detail.context["since"] == today(-1) and detail.context["until"] == today()


@pytest.mark.parametrize(
    "query",
    [
        {"since": "not a date"},
        {"until": "2026-02-30"},
        {"since": "2026-03-01", "until": "2026-02-01"},
        {"since": "2020-01-01", "until": "2026-01-01"},
        {"since": "2020-01-01"},  # up to today: more than a year
        {"since": "9999-12-31"},  # after today
    ],
)
def test_bad_dates_are_explained_and_the_default_range_shown(traffic, admin_client, query):
    for url in (LISTING, block_url(traffic, HERO)):
        response = admin_client.get(url, query)
        assert response.status_code == 200, url
        assert "Showing the default range instead." in response.content.decode()
        assert (response.context["since"], response.context["until"]) == (today(-29), today())
        assert sum(row.impressions for row in response.context["object_list"]) > 0


@pytest.mark.parametrize(
    "query", [{"ordering": "page__title; DROP TABLE"}, {"ordering": "-rate"}, {"p": "999"}]
)
def test_odd_listing_parameters_are_not_a_server_error(traffic, admin_client, query):
    for url in (LISTING, block_url(traffic, HERO)):
        assert admin_client.get(url, query).status_code == 200, url


def test_an_offer_block_is_reported_under_its_headline(home, admin_client):
    tote = {
        "type": "offer",
        "id": "tote",
        "value": {
            "headline": "Free tote bag",
            "body": "",
            "incentive": "free_gift",
            "code_source": "none",
            "code": "",
        },
    }
    page = home.add_child(instance=StreamTestPage(title="Bags", slug="bags", body=[tote]))
    visit(new_browser(), "/bags/", "Free tote bag")
    wagtail_crm.track(VisitorProfile.objects.get(), "checkout_completed")
    assert counts("tote") == {"offer": (1, 1)}

    listing = admin_client.get(LISTING)
    assert [(row.name, row.impressions, row.conversions) for row in listing.context["object_list"]] == [
        ("Free tote bag", 1, 1)
    ]
    detail = admin_client.get(block_url(page, "tote"))
    assert [(row.label, row.rate_text) for row in detail.context["object_list"]] == [("Offer", "100.0%")]


def test_unknown_pages_and_blocks(traffic, admin_client):
    assert (
        admin_client.get(reverse("wagtail_crm_personalisation:block", args=[999999, HERO])).status_code == 404
    )
    response = admin_client.get(block_url(traffic, "no-such-block"))
    assert response.status_code == 200 and list(response.context["object_list"]) == []
    assert "Removed block" in response.content.decode()


def test_csv_export_of_both_views_is_formula_safe(traffic, admin_client):
    traffic.title = "=HYPERLINK(1)"
    traffic.save_revision().publish()
    listing = b"".join(admin_client.get(LISTING, {"export": "csv"}).streaming_content).decode()
    assert listing.splitlines()[0] == "Page,Block,Block id,Impressions,Conversions,Conversion rate (%)"
    assert f"'=HYPERLINK(1),Home hero,{HERO},4,1,25.0" in listing
    detail = b"".join(
        admin_client.get(block_url(traffic, HERO), {"export": "csv"}).streaming_content
    ).decode()
    assert f"Newsletter readers,{FOR_READERS},2,1,50.0,Checkout completed within 7 days" in detail


def test_the_listing_reads_each_page_once(traffic, admin_client, django_assert_max_num_queries):
    for n in range(10):
        VariantStats.objects.create(
            day=today(), page=traffic, block_id=f"extra-{n}", variant="default", impressions=1
        )
    with django_assert_max_num_queries(20):
        response = admin_client.get(LISTING)
    assert len(response.context["object_list"]) == 12
