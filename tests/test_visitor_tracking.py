"""Page views through HTTP: who gets a cookie and a profile, and what is recorded."""

import pytest
from django.test import override_settings
from django.utils import timezone

from wagtail_crm.models import Interaction, VisitorProfile
from wagtail_crm.profiles.identity import sign_visitor_id

COOKIE = "wagtail_crm_vid"


def test_first_page_view_sets_a_signed_cookie_and_records_the_view(home, browser):
    response = browser.get("/shop/shoes/")

    assert response.status_code == 200
    morsel = response.cookies[COOKIE]
    assert morsel["httponly"]
    assert morsel["samesite"] == "Lax"
    assert not morsel["secure"]  # plain HTTP
    assert int(morsel["max-age"]) == 60 * 60 * 24 * 365 * 2
    profile = VisitorProfile.objects.get()
    assert morsel.value.startswith(profile.visitor_id + ":")
    view = profile.interactions.get(kind="page_view")
    assert view.page.title == "Shoes"
    assert view.data == {"path": "/shop/shoes/"}
    assert profile.visit_count == 1
    assert profile.interactions.filter(kind="visit_started").count() == 1


def test_cookie_is_secure_over_https(home, browser):
    response = browser.get("/", secure=True)
    assert response.cookies[COOKIE]["secure"]


def test_returning_visitor_keeps_the_same_profile(home, browser):
    browser.get("/")
    browser.get("/about/")
    response = browser.get("/shop/")

    assert COOKIE not in response.cookies  # fresh cookie, nothing to re-send
    profile = VisitorProfile.objects.get()
    assert profile.interactions.filter(kind="page_view").count() == 3
    assert profile.visit_count == 1  # all within one visit


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        "0123456789abcdef0123456789abcdef:1abc:forged",
        sign_visitor_id("0123456789abcdef0123456789abcdef")[:-1] + "x",
        sign_visitor_id("not-a-hex-visitor-id-at-all-xxxx"),
        "x" * 5000,
    ],
)
def test_tampered_or_malformed_cookie_is_a_new_visitor(home, browser, value):
    browser.cookies[COOKIE] = value
    response = browser.get("/")

    assert response.status_code == 200
    profile = VisitorProfile.objects.get()
    assert response.cookies[COOKIE].value.startswith(profile.visitor_id + ":")
    assert profile.visitor_id not in value


@override_settings(WAGTAIL_CRM={"COOKIE_NAME": "vid", "COOKIE_AGE": 3600})
def test_cookie_name_and_age_are_configurable(home, browser):
    response = browser.get("/")
    assert int(response.cookies["vid"]["max-age"]) == 3600
    assert COOKIE not in response.cookies


@pytest.mark.parametrize(
    "headers",
    [
        {"HTTP_DNT": "1"},
        {"HTTP_SEC_GPC": "1"},
        {"HTTP_USER_AGENT": "Googlebot/2.1 (+http://www.google.com/bot.html)"},
        {"HTTP_USER_AGENT": "Mozilla/5.0 (compatible; bingbot/2.0)"},
        {"HTTP_USER_AGENT": ""},
    ],
)
def test_no_cookie_and_no_row_for_bots_and_privacy_signals(home, browser, headers):
    response = browser.get("/", **headers)

    assert response.status_code == 200
    assert COOKIE not in response.cookies
    assert not VisitorProfile.objects.exists()
    assert not Interaction.objects.exists()


@override_settings(WAGTAIL_CRM={"RESPECT_DNT": False})
def test_dnt_can_be_ignored_by_configuration(home, browser):
    response = browser.get("/", HTTP_DNT="1")
    assert COOKIE in response.cookies
    assert VisitorProfile.objects.count() == 1


def test_no_tracking_for_admin_non_html_non_get_and_404(home, browser, django_user_model):
    django_user_model.objects.create_superuser("boss", "boss@example.com", "pw")
    browser.login(username="boss", password="pw")
    assert browser.get("/admin/").status_code == 200
    assert browser.get("/api/ping/").status_code == 200  # JSON
    assert browser.post("/about/").status_code in (200, 405)
    assert browser.get("/no-such-page/").status_code == 404
    assert browser.get("/static/app.css").status_code == 404

    assert not Interaction.objects.filter(kind="page_view").exists()


def test_non_html_response_sets_no_cookie_for_a_new_visitor(home, browser):
    response = browser.get("/api/ping/")
    assert COOKIE not in response.cookies
    assert not VisitorProfile.objects.exists()


def test_preview_records_nothing(home, admin_client):
    admin_client.defaults["HTTP_USER_AGENT"] = "Mozilla/5.0 Firefox/130.0"
    response = admin_client.get(f"/admin/pages/{home.pk}/edit/preview/?mode=")
    assert response.status_code == 200
    assert not Interaction.objects.exists()
    assert COOKIE not in response.cookies


def test_campaign_attribution_first_and_last_touch(home, browser):
    browser.get(
        "/shop/?utm_source=newsletter&utm_medium=email&utm_campaign=spring&utm_term=shoes"
        "&utm_content=hero&offer=SPRING10",
        HTTP_REFERER="https://mail.example.org/inbox",
    )
    browser.get("/about/")  # direct navigation inside the visit: not a new touch
    profile = VisitorProfile.objects.get()
    assert (profile.first_utm_source, profile.first_utm_medium, profile.first_utm_campaign) == (
        "newsletter",
        "email",
        "spring",
    )
    assert profile.first_utm_term == "shoes" and profile.first_utm_content == "hero"
    assert profile.first_offer_code == "SPRING10"
    assert profile.first_referrer_host == "mail.example.org"
    assert profile.first_landing_page == "/shop/"
    assert profile.last_utm_campaign == "spring"

    # A later visit from another campaign moves the last touch only.
    profile.last_seen = timezone.now() - timezone.timedelta(hours=2)
    profile.save(update_fields=["last_seen"])
    browser.get("/about/?utm_source=facebook&utm_campaign=autumn")
    profile.refresh_from_db()
    assert profile.visit_count == 2
    assert profile.first_utm_source == "newsletter"
    assert profile.last_utm_source == "facebook"
    assert profile.last_utm_campaign == "autumn"
    assert profile.last_landing_page == "/about/"
    assert profile.last_offer_code == ""


def test_internal_referrer_is_not_a_source(home, browser):
    browser.get("/about/", HTTP_REFERER="http://testserver/")
    profile = VisitorProfile.objects.get()
    assert profile.first_referrer_host == ""
    assert profile.first_landing_page == "/about/"


@override_settings(WAGTAIL_CRM={"OFFER_CODE_PARAM": "promo"})
def test_offer_code_parameter_is_configurable(home, browser):
    browser.get("/?promo=WELCOME&offer=IGNORED")
    assert VisitorProfile.objects.get().first_offer_code == "WELCOME"


def test_a_new_visit_starts_after_the_idle_timeout(home, browser):
    browser.get("/")
    profile = VisitorProfile.objects.get()
    VisitorProfile.objects.filter(pk=profile.pk).update(
        last_seen=timezone.now() - timezone.timedelta(minutes=31)
    )
    browser.get("/")
    browser.get("/about/")
    profile.refresh_from_db()
    assert profile.visit_count == 2
    assert profile.interactions.filter(kind="visit_started").count() == 2


@override_settings(WAGTAIL_CRM={"VISIT_TIMEOUT": 3600})
def test_visit_timeout_is_configurable(home, browser):
    browser.get("/")
    VisitorProfile.objects.update(last_seen=timezone.now() - timezone.timedelta(minutes=31))
    browser.get("/")
    assert VisitorProfile.objects.get().visit_count == 1


def test_facts_count_page_views_per_section(home, browser):
    browser.get("/shop/")
    browser.get("/shop/shoes/")
    browser.get("/about/")
    profile = VisitorProfile.objects.get()
    shop = home.get_children().get(slug="shop")
    shoes = shop.get_children().get()
    about = home.get_children().get(slug="about")
    pages = profile.facts["pages"]
    assert pages[str(shop.pk)] == 2  # the section and a page under it
    assert pages[str(shoes.pk)] == 1
    assert pages[str(about.pk)] == 1
    assert str(home.pk) not in pages  # the site root would count everything
    assert profile.facts["counts"]["page_view"] == 3
