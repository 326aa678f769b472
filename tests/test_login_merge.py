"""Identity across login and logout, through the site's real login and logout views."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from wagtail_crm.models import Interaction, VisitorProfile
from wagtail_crm.profiles.merge import merge_profiles, profile_for_login

COOKIE = "wagtail_crm_vid"


@pytest.fixture
def ann(django_user_model, transactional_db):
    return django_user_model.objects.create_user("ann", "ann@example.com", "secret")


def login(browser, username="ann"):
    response = browser.post("/accounts/login/", {"username": username, "password": "secret"})
    assert response.status_code == 302, response.content
    return response


def test_login_turns_the_anonymous_profile_into_the_users_profile(home, browser, ann):
    browser.get("/shop/?utm_source=newsletter")
    anonymous = VisitorProfile.objects.get()

    login(browser)
    browser.get("/about/")

    profile = VisitorProfile.objects.get()  # still one profile
    assert profile.pk == anonymous.pk
    assert profile.user == ann
    assert profile.first_utm_source == "newsletter"
    assert list(profile.interactions.filter(kind="page_view").values_list("data__path", flat=True)) == [
        "/about/",
        "/shop/",
    ]
    assert profile.interactions.filter(kind="login").count() == 1


def test_login_merges_history_into_an_existing_user_profile(home, browser, ann):
    # Ann used the site on another device earlier, logged in, from a paid campaign.
    client = Client(HTTP_USER_AGENT=browser.defaults["HTTP_USER_AGENT"])
    client.get("/?utm_source=google&utm_medium=cpc")
    login(client)
    users_profile = VisitorProfile.objects.get(user=ann)
    VisitorProfile.objects.filter(pk=users_profile.pk).update(
        first_touch_at=timezone.now() - timedelta(days=10), email="ann@example.com"
    )

    # Now, on this browser, anonymously, from the newsletter a while back (earlier first touch).
    browser.get("/shop/shoes/?utm_source=newsletter")
    anonymous = VisitorProfile.objects.get(user__isnull=True)
    VisitorProfile.objects.filter(pk=anonymous.pk).update(
        first_touch_at=timezone.now() - timedelta(days=30), phone="+44 113 496 0000"
    )
    anonymous_views = anonymous.interactions.count()

    response = login(browser)
    merged = VisitorProfile.objects.get(user=ann)
    tombstone = VisitorProfile.objects.get(pk=anonymous.pk)

    assert tombstone.merged_into == merged
    assert tombstone.interactions.count() == 0
    assert merged.interactions.exclude(kind="login").count() >= anonymous_views + 2
    assert merged.first_utm_source == "newsletter"  # the earliest first touch wins
    assert merged.email == "ann@example.com" and merged.phone == "+44 113 496 0000"
    assert merged.facts["counts"]["page_view"] == 2
    # The browser now carries the user's profile id.
    assert response.cookies[COOKIE].value.startswith(merged.visitor_id + ":")
    browser.get("/about/")
    assert merged.interactions.filter(kind="page_view").count() == 3


def test_two_users_profiles_are_never_merged(home, browser, ann, django_user_model):
    django_user_model.objects.create_user("bob", "bob@example.com", "secret")
    login(browser, "bob")
    browser.get("/")
    bob_profile = VisitorProfile.objects.get(user__username="bob")
    browser.post("/accounts/logout/")

    # Same browser: after logout it is a new anonymous visitor, so nothing of Bob's reaches Ann.
    browser.get("/about/")
    login(browser, "ann")
    ann_profile = VisitorProfile.objects.get(user=ann)
    assert ann_profile.pk != bob_profile.pk
    assert bob_profile.interactions.filter(kind="page_view").count() == 1

    with pytest.raises(ValueError, match="never merged"):
        merge_profiles(bob_profile, ann_profile)


def test_an_old_cookie_of_another_user_is_not_merged(transactional_db, ann, django_user_model):
    bob = django_user_model.objects.create_user("bob", "bob@example.com", "secret")
    bobs = VisitorProfile.objects.create(user=bob)
    profile = profile_for_login(bobs.visitor_id, ann)
    assert profile.user == ann
    assert profile.pk != bobs.pk
    assert VisitorProfile.objects.get(pk=bobs.pk).merged_into is None


def test_logout_starts_a_fresh_anonymous_visitor(home, browser, ann):
    browser.get("/")
    login(browser)
    user_profile = VisitorProfile.objects.get(user=ann)

    response = browser.post("/accounts/logout/")
    new_cookie = response.cookies[COOKIE].value
    assert not new_cookie.startswith(user_profile.visitor_id)

    browser.get("/about/")
    anonymous = VisitorProfile.objects.exclude(pk=user_profile.pk).get()
    assert anonymous.user is None
    assert new_cookie.startswith(anonymous.visitor_id + ":")
    assert not user_profile.interactions.filter(data__path="/about/").exists()


def test_login_before_the_anonymous_events_are_written_leaves_a_tombstone(transactional_db, ann):
    """With a queue, a visitor's page views may still be buffered when they log in."""
    existing = VisitorProfile.objects.create(user=ann)
    profile = profile_for_login("ab" * 16, ann)
    assert profile == existing
    tombstone = VisitorProfile.objects.get(visitor_id="ab" * 16)
    assert tombstone.merged_into == existing

    # The late events of the old visitor id land on the user's profile.
    from wagtail_crm.profiles.events import make_event
    from wagtail_crm.profiles.ingest import ingest_events

    ingest_events([make_event("page_view", visitor_id="ab" * 16, data={"path": "/late/"})])
    assert Interaction.objects.get(kind="page_view").profile == existing


def test_login_with_no_profile_at_all_creates_the_users_profile_with_the_browser_id(transactional_db, ann):
    profile = profile_for_login("cd" * 16, ann)
    assert profile.user == ann and profile.visitor_id == "cd" * 16
