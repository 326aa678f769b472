"""wagtail_crm.identify(): contact details and consent a visitor gives through a site's own form."""

from datetime import timedelta

import pytest
from django.utils import timezone

import wagtail_crm
from wagtail_crm.models import Interaction, VisitorProfile

COOKIE = "wagtail_crm_vid"


def test_a_newsletter_form_identifies_the_browsing_visitor(home, browser):
    browser.get("/shop/?utm_source=facebook")
    response = browser.post(
        "/newsletter/", {"email": "ann@example.com", "first_name": "Ann", "consent": "on"}
    )

    assert response.status_code == 200
    profile = VisitorProfile.objects.get()  # the same profile that browsed the shop
    assert (profile.email, profile.first_name) == ("ann@example.com", "Ann")
    assert profile.email_consent is True
    assert profile.email_consent_at is not None
    assert profile.first_utm_source == "facebook"
    given = profile.interactions.get(kind="details_updated")
    assert given.data == {"fields": ["email", "first_name"], "consent": {"email": True}}  # no values
    assert profile.interactions.filter(kind="signup").count() == 1


def test_a_first_time_visitor_signing_up_gets_a_cookie_and_a_profile(home, browser):
    response = browser.post("/newsletter/", {"email": "bob@example.com"})
    profile = VisitorProfile.objects.get()
    assert response.cookies[COOKIE].value.startswith(profile.visitor_id + ":")
    assert profile.email == "bob@example.com"
    assert profile.email_consent is False  # the box was not ticked: a recorded "no"
    assert profile.email_consent_at is not None


def test_blank_fields_never_erase_what_is_known(transactional_db):
    profile = VisitorProfile.objects.create(first_name="Ann", phone="0113 496 0000")
    wagtail_crm.identify(profile, first_name="", phone=None, email="ann@example.com")
    profile.refresh_from_db()
    assert (profile.first_name, profile.phone, profile.email) == ("Ann", "0113 496 0000", "ann@example.com")


def test_an_older_consent_decision_does_not_override_a_newer_one(transactional_db):
    profile = VisitorProfile.objects.create()
    profile.set_consent("email", False, when=timezone.now() + timedelta(minutes=5))  # e.g. staff, later
    profile.save()
    wagtail_crm.identify(profile, consent={"email": True})
    profile.refresh_from_db()
    assert profile.email_consent is False


def test_email_is_not_an_identity_no_merge(transactional_db):
    existing = VisitorProfile.objects.create(email="ann@example.com", first_name="Ann")
    stranger = VisitorProfile.objects.create()
    wagtail_crm.identify(stranger, email="ann@example.com")
    stranger.refresh_from_db()
    existing.refresh_from_db()
    assert stranger.merged_into is None and existing.merged_into is None
    assert stranger.email == "ann@example.com"
    assert Interaction.objects.filter(profile=existing).count() == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"email": "not-an-email"}, "Invalid email"),
        ({"nickname": "x"}, "unknown contact fields"),
        ({"phone": "1" * 40}, "longer than 32"),
        ({"consent": {"sms": True}}, "consent must map"),
        ({"consent": {"email": "yes"}}, "consent must map"),
        ({}, "at least one"),
    ],
)
def test_bad_input_is_a_clear_error(transactional_db, kwargs, message):
    profile = VisitorProfile.objects.create()
    with pytest.raises(ValueError, match=message):
        wagtail_crm.identify(profile, **kwargs)
    assert not Interaction.objects.exists()


def test_do_not_track_visitors_are_not_identified(home, browser):
    response = browser.post("/newsletter/", {"email": "dnt@example.com"}, HTTP_DNT="1")
    assert response.status_code == 200
    assert not VisitorProfile.objects.exists()
    assert COOKIE not in response.cookies
