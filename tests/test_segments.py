"""Segments on the request path: ``wagtail_crm.segments_for(request)``, the per-process cache, and what the
rules see of the current request. (Python ≡ SQL for every rule: tests/test_segment_rules_property.py.)"""

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone
from wagtail.blocks import StructBlockValidationError

import wagtail_crm
from wagtail_crm.models import VisitorProfile
from wagtail_crm.profiles.identity import sign_visitor_id
from wagtail_crm.segments import evaluation
from wagtail_crm.segments.models import Segment
from wagtail_crm.segments.rules import BUILTIN_RULES

from .conftest import BROWSER

RULES = dict(BUILTIN_RULES)


def rule(name, **value):
    return {"type": name, "value": value}


def make_segment(slug, *rules, match="all", exclude=(), **fields):
    return Segment.objects.create(
        name=slug.replace("-", " ").title(),
        slug=slug,
        match=match,
        rules=list(rules),
        exclude_rules=list(exclude),
        **fields,
    )


def my_segments(client, path="/my-segments/", **extra):
    response = client.get(path, HTTP_USER_AGENT=BROWSER, **extra)
    assert response.status_code == 200
    return response.json()["segments"]


def returning_client(client, profile):
    client.cookies["wagtail_crm_vid"] = sign_visitor_id(profile.visitor_id)
    return client


# -- segments_for on a real request ---------------------------------------------------------------------


@pytest.mark.django_db
def test_a_new_visitor_from_the_newsletter_is_a_newsletter_reader_on_the_landing_page(client):
    make_segment(
        "newsletter",
        rule("campaign", parameter="utm_source", touch="either", operator="equals", value="Newsletter"),
    )
    make_segment("first-time", rule("visitor_type", visitor="first_time"))
    make_segment("returning", rule("visitor_type", visitor="returning"))
    assert my_segments(client, "/my-segments/?utm_source=newsletter") == ["first-time", "newsletter"]
    assert my_segments(client) == ["first-time"]


@pytest.mark.django_db
def test_a_returning_visitor_counts_the_visit_they_are_starting(client):
    make_segment("returning", rule("visitor_type", visitor="returning"))
    make_segment("three-visits", rule("visit_count", operator="gte", count=3))
    profile = VisitorProfile.objects.create(visit_count=1, last_seen=timezone.now() - timedelta(minutes=5))
    returning_client(client, profile)
    assert my_segments(client) == []  # still within their first visit
    profile.last_seen = timezone.now() - timedelta(days=2)
    profile.save()
    assert my_segments(client) == ["returning"]  # this request opens visit number two
    profile.visit_count = 2
    profile.save()
    assert my_segments(client) == ["returning", "three-visits"]


@pytest.mark.django_db
def test_stored_last_touch_is_replaced_by_the_campaign_the_visitor_arrives_with(client):
    make_segment(
        "spring",
        rule("campaign", parameter="utm_campaign", touch="last", operator="contains", value="spring"),
    )
    make_segment("first-from-partner", rule("referrer", touch="first", host="partner"))
    profile = VisitorProfile.objects.create(
        visit_count=3, last_utm_campaign="spring-sale", first_referrer_host="www.partner.example"
    )
    returning_client(client, profile)
    assert my_segments(client) == ["first-from-partner", "spring"]
    # Arriving from another campaign: that is now their last touch; the first touch never changes.
    assert my_segments(client, "/my-segments/?utm_campaign=black-friday") == ["first-from-partner"]


@pytest.mark.django_db
def test_logged_in_visitor_in_a_group_costs_one_profile_query(client):
    staff = Group.objects.create(name="Trade customers")
    make_segment("trade", rule("group", group=str(staff.pk)))
    make_segment("members", rule("logged_in", state="yes"))
    user = User.objects.create_user("ann", password="pw")
    user.groups.add(staff)
    VisitorProfile.objects.create(user=user)
    client.force_login(user)
    evaluation.active_segments()  # the per-process cache, warm as it is after the first request
    with CaptureQueriesContext(connection) as queries:
        assert my_segments(client) == ["members", "trade"]
    profile_queries = [q["sql"] for q in queries.captured_queries if "wagtail_crm_visitorprofile" in q["sql"]]
    assert len(profile_queries) == 1  # group membership comes with the profile, as an annotation
    assert "auth_user_groups" in profile_queries[0]
    assert not [
        q
        for q in queries.captured_queries
        if "auth_user_groups" in q["sql"] and q["sql"] not in profile_queries
    ]
    assert not any("wagtail_crm_segment" in q["sql"] for q in queries.captured_queries)
    user.groups.clear()
    assert my_segments(client) == ["members"]


@pytest.mark.django_db
def test_segments_are_evaluated_once_per_request(rf):
    make_segment("everyone")
    request = rf.get("/", HTTP_USER_AGENT=BROWSER)
    request.session = {}
    first = wagtail_crm.segments_for(request)
    assert [s.slug for s in first] == ["everyone"]
    assert wagtail_crm.segments_for(request) is first


@pytest.mark.django_db
def test_inactive_and_out_of_window_segments_are_not_used(client):
    now = timezone.now()
    make_segment("live")
    make_segment("switched-off", active=False)
    make_segment("not-yet", starts_at=now + timedelta(hours=1))
    make_segment("over", ends_at=now - timedelta(seconds=1))
    make_segment("running", starts_at=now - timedelta(days=1), ends_at=now + timedelta(days=1))
    assert my_segments(client) == ["live", "running"]


@pytest.mark.django_db
def test_exclude_rules_and_any_match(client):
    make_segment(
        "shoppers",
        rule("offer_code", touch="either", code=""),
        rule("purchases", measure="orders", amount="1", within_days=None),
        match="any",
        exclude=[rule("consent", channel="phone")],
    )
    profile = VisitorProfile.objects.create(visit_count=2, facts={"orders": 1})
    returning_client(client, profile)
    assert my_segments(client) == ["shoppers"]
    profile.phone_consent = True
    profile.save()
    assert my_segments(client) == []
    assert Segment.objects.get().members().count() == 0


# -- the cache of active segments -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_saving_or_deleting_a_segment_reaches_the_next_request(client):
    segment = make_segment("a-segment")
    assert my_segments(client) == ["a-segment"]
    segment.rules = [rule("logged_in", state="yes")]
    segment.save()
    assert my_segments(client) == []
    segment.delete()
    make_segment("another")
    assert my_segments(client) == ["another"]


@pytest.mark.django_db
def test_other_processes_reload_when_the_shared_version_changes(monkeypatch):
    make_segment("one")
    clock = [1000.0]
    monkeypatch.setattr(evaluation.time, "monotonic", lambda: clock[0])
    assert [s.slug for s in evaluation.active_segments()] == ["one"]
    # Another process saves a segment: only the shared cache changes here.
    Segment.objects.create(
        name="Two", slug="two"
    )  # (in a test transaction: no commit, no local invalidation)
    cache.set(evaluation.CACHE_VERSION_KEY, "changed-elsewhere", None)
    with CaptureQueriesContext(connection) as queries:
        assert [s.slug for s in evaluation.active_segments()] == ["one"]  # within the check interval
    assert len(queries) == 0
    clock[0] += 5
    assert [s.slug for s in evaluation.active_segments()] == ["one", "two"]
    with CaptureQueriesContext(connection) as queries:
        clock[0] += 60
        evaluation.active_segments()  # version unchanged: no reload
    assert len(queries) == 0


@pytest.mark.django_db
@override_settings(
    CACHES={"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}},
    WAGTAIL_CRM={"SEGMENT_CACHE_CHECK_INTERVAL": 0},
)
def test_without_a_working_cache_segments_are_reloaded_not_stale():
    make_segment("one")
    assert [s.slug for s in evaluation.active_segments()] == ["one"]
    Segment.objects.create(name="Two", slug="two")
    assert [s.slug for s in evaluation.active_segments()] == ["one", "two"]


# -- windows and dates on real tracked data --------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_windowed_rules_read_what_tracking_recorded(home):
    profile = VisitorProfile.objects.create(email="ann@example.com")
    now = timezone.now()
    wagtail_crm.track(profile, "checkout_completed", amount="30.10", occurred_at=now - timedelta(days=2))
    wagtail_crm.track(
        profile, "offline_purchase", channel="store", amount="19.90", occurred_at=now - timedelta(days=10)
    )
    wagtail_crm.track(profile, "checkout_abandoned", occurred_at=now - timedelta(hours=1))
    shoes = home.get_children().get(slug="shop").get_children().get()
    for days in (0, 1, 40):
        wagtail_crm.track(profile, "page_view", page=shoes, occurred_at=now - timedelta(days=days))
    profile.refresh_from_db()

    def verdict(*rules):
        segment = Segment(name="s", slug="s", rules=list(rules))
        in_python = segment.matches(profile, now=now)
        in_sql = segment.members(now=now).filter(pk=profile.pk).exists()
        assert in_python == in_sql
        return in_python

    assert verdict(rule("purchases", measure="spend", amount="50.00", within_days=None))
    assert verdict(rule("purchases", measure="spend", amount="50.00", within_days=11))
    assert not verdict(rule("purchases", measure="spend", amount="50.00", within_days=10))
    assert verdict(rule("purchases", measure="orders", amount="1", within_days=3))
    assert not verdict(rule("purchases", measure="orders", amount="1", within_days=2))
    assert verdict(rule("abandoned_checkout", within_days=1))
    shop = shoes.get_parent()
    assert verdict(
        rule("page_views", page=shop.pk, count=3, within_days=None)
    )  # a view under the section counts
    assert verdict(rule("page_views", page=shoes.pk, count=2, within_days=2))
    assert not verdict(rule("page_views", page=shoes.pk, count=3, within_days=30))
    assert not verdict(
        rule("page_views", page=home.get_children().get(slug="about").pk, count=1, within_days=None)
    )


@pytest.mark.django_db
@override_settings(TIME_ZONE="Europe/Paris")
def test_time_window_uses_the_site_time_zone_and_may_pass_midnight():
    block = RULES["time_window"]
    value = block.to_python({"days": ["4", "5"], "start": "22:00", "end": "02:00"})
    profile = VisitorProfile()

    def at(utc):
        return Segment(
            name="s", slug="s", rules=[rule("time_window", **block.get_prep_value(value))]
        ).matches(profile, now=utc)

    # Friday 2026-11-20 21:30 UTC is 22:30 in Paris: inside. Sunday 00:30 Paris is outside (Sunday not ticked).
    assert at(datetime(2026, 11, 20, 21, 30, tzinfo=UTC))
    assert not at(datetime(2026, 11, 20, 20, 30, tzinfo=UTC))
    assert at(datetime(2026, 11, 20, 23, 30, tzinfo=UTC))  # Saturday 00:30 in Paris
    assert not at(datetime(2026, 11, 21, 23, 30, tzinfo=UTC))  # Sunday 00:30 in Paris


# -- explain and validation -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_explain_says_which_rules_matched():
    segment = make_segment(
        "loyal",
        rule("visit_count", operator="gte", count=3),
        rule("consent", channel="email"),
        exclude=[rule("loyalty_tier", tier="Gold")],
    )
    profile = VisitorProfile.objects.create(visit_count=5, facts={"tier": "gold"})
    results = segment.explain(profile)
    assert [(r.description, r.matched, r.excluding) for r in results] == [
        ("Visits ≥ 3", True, False),
        ("Has given consent to be contacted by email", False, False),
        ("Loyalty tier is “Gold”", True, True),
    ]
    assert [r.in_favour for r in results] == [True, False, False]
    assert not segment.matches(profile)


@pytest.mark.parametrize(
    "name, value, field, message",
    [
        ("page_views", {"page": 1, "count": 1, "within_days": 91}, "within_days", "90 or fewer"),
        ("purchases", {"measure": "spend", "amount": "10", "within_days": 365}, "within_days", "90 or fewer"),
        ("activity", {"kind": "", "custom_kind": "", "count": 1, "within_days": None}, "kind", "Choose what"),
        (
            "activity",
            {"kind": "", "custom_kind": "Not A Slug", "count": 1, "within_days": None},
            "custom_kind",
            "slug",
        ),
        ("time_window", {"days": [], "start": None, "end": None}, "days", "Choose days"),
        ("time_window", {"days": [], "start": "10:00", "end": "10:00"}, "end", "another time"),
        (
            "campaign",
            {"parameter": "utm_source", "touch": "first", "operator": "equals", "value": ""},
            "value",
            "required",
        ),
        ("visit_count", {"operator": "gte", "count": -1}, "count", "greater than or equal to 0"),
    ],
)
@pytest.mark.django_db
def test_rules_reject_bad_input_with_a_clear_message(name, value, field, message):
    block = RULES[name]
    with pytest.raises(StructBlockValidationError) as raised:
        block.clean(block.to_python(value))
    assert message in str(raised.value.block_errors[field])


@pytest.mark.django_db
def test_a_rule_type_that_is_no_longer_registered_makes_the_segment_match_nobody(client):
    import json

    segment = make_segment("retired", rule("visitor_type", visitor="first_time"))
    stored = [*json.loads(json.dumps(list(segment.rules.raw_data))), {"type": "retired_rule", "value": {}}]
    with (
        connection.cursor() as cursor
    ):  # as a site leaves it after removing the hook that registered the rule
        cursor.execute(
            "UPDATE wagtail_crm_segment SET rules = %s WHERE id = %s", [json.dumps(stored), segment.pk]
        )
    segment = Segment.objects.get()
    profile = VisitorProfile.objects.create()
    assert not segment.matches(profile)
    assert not segment.members().exists()
    assert segment.explain(profile)[-1].description.startswith("A rule of type “retired_rule”")
    assert my_segments(client) == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("connections", [1, 3])
def test_counting_on_several_connections_gives_the_same_counts(settings, connections):
    from wagtail_crm.segments.jobs import count_segments

    settings.WAGTAIL_CRM = {"SEGMENT_COUNT_CONNECTIONS": connections}
    VisitorProfile.objects.bulk_create(
        VisitorProfile(visit_count=index % 5, email_consent=index % 3 == 0) for index in range(50)
    )
    returning = make_segment("returning", rule("visitor_type", visitor="returning"))
    consenting = make_segment("consenting", rule("consent", channel="email"))
    empty = make_segment("nobody", rule("visit_count", operator="gte", count=99))
    assert count_segments() == {returning.pk: 30, consenting.pk: 17, empty.pk: 0}
    assert returning.member_count.count == 30


class BrokenCache:
    """A cache backend whose server is down."""

    def __init__(self, *args, **kwargs):
        pass

    def close(self, **kwargs):  # Django closes every cache after each request
        pass

    def __getattr__(self, name):
        def fail(*args, **kwargs):
            raise ConnectionError("cache server unreachable")

        return fail


@pytest.mark.django_db
def test_a_cache_outage_does_not_break_pages(client, caplog):
    make_segment("first-time", rule("visitor_type", visitor="first_time"))
    with override_settings(
        CACHES={
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            "broken": {"BACKEND": "tests.test_segments.BrokenCache"},
        },
        WAGTAIL_CRM={"CACHE_ALIAS": "broken", "SEGMENT_CACHE_CHECK_INTERVAL": 0},
    ):
        assert my_segments(client) == ["first-time"]
        make_segment("returning", rule("visitor_type", visitor="returning"))
        assert my_segments(client, HTTP_X_NEW="1") == [
            "first-time"
        ]  # reloaded: "returning" is there, not matched
        assert [s.slug for s in evaluation.active_segments()] == ["first-time", "returning"]
    assert "Could not read the segment cache version" in caplog.text


@pytest.mark.django_db
def test_a_rule_that_fails_leaves_the_visitor_out_of_that_segment_only(client, caplog, monkeypatch):
    make_segment("first-time", rule("visitor_type", visitor="first_time"))
    make_segment("survey", rule("survey_answer", question="colour", answer="red"))

    def broken(self, value, context):
        raise RuntimeError("bug in a rule")

    monkeypatch.setattr(type(RULES["survey_answer"]), "matches", broken)
    assert my_segments(client) == ["first-time"]
    assert "Could not evaluate segment 'survey'" in caplog.text


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("connections", [1, 2])
def test_count_segments_agrees_with_members_and_with_python(settings, connections):
    """count_segments() computes every window sum once per profile (PostgreSQL): same counts as one query per
    segment, and as the Python verdicts."""
    from wagtail_crm.segments.jobs import count_segments

    settings.WAGTAIL_CRM = {"SEGMENT_COUNT_CONNECTIONS": connections}
    now = timezone.now()
    staff = Group.objects.create(name="Staff")
    for index in range(40):
        daily = {
            (now - timedelta(days=ago)).date().isoformat(): {
                "page_view": index % 4,
                "checkout_abandoned": int((index + ago) % 5 == 0),
                "@orders": index % 3,
                "@spend": [0.1, 0.2, 0.7, 10.5][(index + ago) % 4],
                "@pages": {"2": index % 5},
            }
            for ago in range(index % 6)
        }
        user = User.objects.create_user(f"u{index}") if index % 7 == 0 else None
        if user and index % 14 == 0:
            user.groups.add(staff)
        VisitorProfile.objects.create(
            user=user,
            visit_count=index % 4,
            first_utm_source=["News", "google", ""][index % 3],
            facts={"daily": daily},
        )
    segments = [
        make_segment("spend", rule("purchases", measure="spend", amount="0.8", within_days=3)),
        make_segment("orders", rule("purchases", measure="orders", amount="2", within_days=2)),
        make_segment(
            "pages-or-views",
            rule("page_views", page=2, count=4, within_days=4),
            rule("activity", kind="page_view", custom_kind="", count=3, within_days=1),
            match="any",
            exclude=[rule("abandoned_checkout", within_days=2)],
        ),
        make_segment(
            "staff-news",
            rule("group", group=str(staff.pk)),
            rule("campaign", parameter="utm_source", touch="first", operator="equals", value="news"),
            match="any",
        ),
        make_segment("everyone"),
        make_segment("nobody", rule("visit_count", operator="gte", count=99)),
    ]
    with CaptureQueriesContext(connection) as queries:
        counts = count_segments()
    if connection.vendor == "postgresql" and connections == 1:
        assert any("CROSS JOIN LATERAL" in q["sql"] for q in queries.captured_queries)
    assert 0 < counts[segments[0].pk] < 40 and 0 < counts[segments[2].pk] < 40
    profiles = list(VisitorProfile.objects.all())
    for segment in segments:
        expected = sum(segment.matches(profile, now=now) for profile in profiles)
        assert counts[segment.pk] == segment.members(now=now).count() == expected, segment.slug
    assert counts[segments[-2].pk] == 40 and counts[segments[-1].pk] == 0


@pytest.mark.django_db(transaction=True)
def test_count_segments_counts_a_rule_that_joins_other_tables(monkeypatch):
    from django.db.models import Q

    from wagtail_crm.segments.jobs import count_segments

    # A custom rule may return a Q across a relation; the one-pass SQL cannot hold it, the ORM counts it.
    monkeypatch.setattr(
        type(RULES["logged_in"]),
        "as_q",
        lambda self, value, context: Q(user__email__endswith="@shop.example"),
    )
    for index, email in enumerate(["a@shop.example", "b@other.example", "c@shop.example"]):
        VisitorProfile.objects.create(user=User.objects.create_user(f"p{index}", email=email))
    VisitorProfile.objects.create()
    staff = make_segment("staff", rule("logged_in", state="yes"))
    windowed = make_segment("recent", rule("abandoned_checkout", within_days=3))
    assert count_segments() == {staff.pk: 2, windowed.pk: 0}
