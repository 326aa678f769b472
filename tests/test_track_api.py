"""The documented Python API: wagtail_crm.track() and wagtail_crm.get_visitor()."""

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import RequestFactory
from django.utils import timezone

import wagtail_crm
from wagtail_crm.models import Interaction, VisitorProfile
from wagtail_crm.profiles.identity import sign_visitor_id
from wagtail_crm.segments.evaluation import active_segments
from wagtail_crm.signals import interactions_recorded

from .conftest import BROWSER


def make_request(cookie_visitor_id=None, **headers):
    request = RequestFactory().get("/", HTTP_USER_AGENT=BROWSER, **headers)
    if cookie_visitor_id:
        request.COOKIES["wagtail_crm_vid"] = sign_visitor_id(cookie_visitor_id)
    from django.contrib.auth.models import AnonymousUser

    request.user = AnonymousUser()
    request.session = {}
    return request


@pytest.fixture
def profile(transactional_db):
    return VisitorProfile.objects.create(email="ann@example.com", first_name="Ann")


def test_track_a_profile_records_an_offline_interaction_and_updates_facts(profile):
    when = timezone.now() - timedelta(days=2)
    event_id = wagtail_crm.track(
        profile, "offline_purchase", channel="store", amount=Decimal("19.90"), store="Leeds", occurred_at=when
    )

    interaction = Interaction.objects.get(event_id=event_id)
    assert interaction.profile == profile
    assert interaction.channel == "store"
    assert interaction.occurred_at == when
    assert interaction.data == {"amount": "19.90", "store": "Leeds"}
    profile.refresh_from_db()
    assert profile.facts["orders"] == 1
    assert profile.facts["spend"] == 19.9
    assert profile.visit_count == 0  # offline activity is not a web visit


def test_same_event_id_is_recorded_once(profile):
    for _ in range(3):
        wagtail_crm.track(profile, "checkout_completed", event_id="order-1001", amount=50)
    assert Interaction.objects.filter(kind="checkout_completed").count() == 1
    profile.refresh_from_db()
    assert profile.facts["spend"] == 50.0
    assert profile.facts["orders"] == 1


def test_track_a_request_creates_the_visitor_and_returns_its_event_id(transactional_db):
    request = make_request()
    event_id = wagtail_crm.track(request, "signup", plan="free")

    assert isinstance(event_id, uuid.UUID)
    visitor = wagtail_crm.get_visitor(request)
    profile = VisitorProfile.objects.get(visitor_id=visitor.visitor_id)
    assert profile.interactions.get(kind="signup").data == {"plan": "free"}
    assert visitor.events_recorded  # the middleware will now set the cookie


def test_track_respects_do_not_track(transactional_db):
    assert wagtail_crm.track(make_request(HTTP_DNT="1"), "signup") is None
    assert not VisitorProfile.objects.exists()


@pytest.mark.parametrize("kind", ["", "Has Spaces", "9starts_with_digit", "x" * 51, "dash-ed"])
def test_bad_kind_is_a_clear_error(profile, kind):
    with pytest.raises(ValueError, match="Invalid interaction kind"):
        wagtail_crm.track(profile, kind)


def test_custom_kinds_and_channels(profile):
    wagtail_crm.track(profile, "webinar_attended", channel="email")
    interaction = Interaction.objects.get(kind="webinar_attended")
    assert interaction.get_kind_display() == "Webinar attended"
    with pytest.raises(ValueError, match="Unknown channel"):
        wagtail_crm.track(profile, "custom", channel="pigeon")


def test_data_must_be_json_serialisable(profile):
    with pytest.raises(ValueError, match="JSON"):
        wagtail_crm.track(profile, "custom", thing=object())


def test_unsaved_profile_or_wrong_type_is_rejected(transactional_db):
    with pytest.raises(ValueError):
        wagtail_crm.track(VisitorProfile(), "custom")
    with pytest.raises(TypeError):
        wagtail_crm.track("someone", "custom")


def test_interactions_recorded_signal(profile):
    received = []

    def handler(sender, interactions, profile_ids, **kwargs):
        received.append(([i.kind for i in interactions], profile_ids))

    interactions_recorded.connect(handler)
    try:
        wagtail_crm.track(profile, "checkout_started")
    finally:
        interactions_recorded.disconnect(handler)
    assert received == [(["checkout_started"], [profile.pk])]


def test_interactions_are_append_only(profile):
    wagtail_crm.track(profile, "custom")
    interaction = Interaction.objects.get()
    interaction.kind = "changed"
    with pytest.raises(ValueError, match="append-only"):
        interaction.save()


def test_survey_and_points_facts(profile):
    wagtail_crm.track(
        profile,
        "survey_submitted",
        answers={"interest": "running", "size": 42, "ok": True, "topics": ["shoes", 7], "bad": {"x": 1}},
    )
    wagtail_crm.track(profile, "points_earned", points=100)
    wagtail_crm.track(profile, "points_redeemed", points=30)
    wagtail_crm.track(profile, "checkout_abandoned", amount="12.00")
    profile.refresh_from_db()
    # Answers are kept as text (lists of text for multiple choice) so rules compare them alike in SQL.
    assert profile.facts["survey"] == {
        "interest": "running",
        "size": "42",
        "ok": "true",
        "topics": ["shoes", "7"],
    }
    assert profile.facts["points"] == 70
    assert profile.facts["counts"]["checkout_abandoned"] == 1
    assert "orders" not in profile.facts  # an abandoned checkout is not a purchase


def test_get_visitor_costs_no_query_until_profile_and_one_query_then(
    transactional_db, django_assert_num_queries
):
    stored = VisitorProfile.objects.create()
    request = make_request(cookie_visitor_id=stored.visitor_id)
    active_segments()  # loaded once per process (tests/test_segments.py counts that query)
    with django_assert_num_queries(0):
        visitor = wagtail_crm.get_visitor(request)
        assert not visitor.is_new
        assert visitor.visitor_id == stored.visitor_id
    with django_assert_num_queries(1):
        assert visitor.profile == stored
        assert wagtail_crm.get_visitor(request).profile == stored  # cached on the request
    assert visitor.is_known


def test_get_visitor_for_a_new_visitor_gives_an_unsaved_profile(transactional_db, django_assert_num_queries):
    request = make_request()
    with django_assert_num_queries(0):
        visitor = wagtail_crm.get_visitor(request)
        assert visitor.is_new
        assert visitor.profile.pk is None
        assert visitor.profile.visit_count == 0
    assert not visitor.is_known


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"page": "abc"}, "page must be a Page or a page id"),
        ({"page": True}, "page must be a Page or a page id"),
        ({"occurred_at": "2024-01-01"}, "occurred_at must be a datetime"),
    ],
)
def test_bad_reserved_arguments_are_clear_errors(profile, kwargs, message):
    with pytest.raises(ValueError, match=message):
        wagtail_crm.track(profile, "custom", **kwargs)
    assert not Interaction.objects.exists()
