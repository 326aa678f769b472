"""Caches never hand one visitor's content (or identity) to another: Django's per-site cache middleware in
front of personalised pages, in the default ("private") mode and in the edge-cache mode."""

import pytest
from bs4 import BeautifulSoup
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from wagtail.models import PageViewRestriction

from tests.testapp.models import ContentPage, StreamTestPage
from wagtail_crm.models import Interaction
from wagtail_crm.profiles.identity import read_visitor_cookie

from .conftest import BROWSER
from .test_personalised_content import personalised, shown, variant

COOKIE = "wagtail_crm_vid"
PER_SITE_CACHE = {
    "CACHES": {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "cache-safety"}
    },
    "CACHE_MIDDLEWARE_SECONDS": 600,
    "CACHE_MIDDLEWARE_KEY_PREFIX": "cache-safety",
}


def with_cache_middleware(settings):
    from django.conf import settings as django_settings

    middleware = list(django_settings.MIDDLEWARE)
    return {
        **PER_SITE_CACHE,
        "MIDDLEWARE": [
            "django.middleware.cache.UpdateCacheMiddleware",
            *middleware,
            "django.middleware.cache.FetchFromCacheMiddleware",
        ],
    }


@pytest.fixture
def cached_site(settings):
    from django.core.cache import caches

    for name, value in with_cache_middleware(settings).items():
        setattr(settings, name, value)
    caches["default"].clear()
    yield
    caches["default"].clear()


@pytest.fixture
def hero_page(home, newsletter):
    body = [
        personalised(
            "hero", [variant("v-news", [newsletter], "<p>Newsletter hero</p>")], "<p>Default hero</p>"
        )
    ]
    return home.add_child(instance=StreamTestPage(title="Landing", slug="landing", body=body))


@pytest.fixture
def plain_page(home):
    return home.add_child(instance=ContentPage(title="About", slug="about-us", body="<p>Plain</p>"))


def visitor(**cookies):
    client = Client(HTTP_USER_AGENT=BROWSER)
    for name, value in cookies.items():
        client.cookies[name] = value
    return client


def visitor_id(response):
    morsel = response.cookies.get(COOKIE)
    return read_visitor_cookie(morsel.value)[0] if morsel is not None else None


# -- the default mode: personalised responses are private ------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_visitors_never_see_each_others_variant_through_the_cache_middleware(cached_site, hero_page):
    reader, stranger = visitor(), visitor()
    first = reader.get(hero_page.url, {"utm_source": "newsletter"})
    assert shown(first) == ["Newsletter hero"]
    assert "private" in first["Cache-Control"] and "Cookie" in first["Vary"]
    for _ in range(3):
        assert shown(stranger.get(hero_page.url)) == ["Default hero"]
        assert shown(reader.get(hero_page.url)) == ["Newsletter hero"]  # a stored newsletter reader now
    # The other order: the default rendered first must not be replayed to the reader either.
    late_reader = visitor()
    assert shown(late_reader.get(hero_page.url, {"utm_source": "newsletter"})) == ["Newsletter hero"]
    assert shown(late_reader.get(hero_page.url)) == ["Newsletter hero"]


@pytest.mark.django_db(transaction=True)
def test_a_page_without_personalised_content_is_cached_for_bots_and_sets_no_cookie(cached_site, plain_page):
    bot = Client(HTTP_USER_AGENT="Googlebot/2.1 (+http://www.google.com/bot.html)")
    first = bot.get(plain_page.url)
    assert COOKIE not in first.cookies
    assert "private" not in first.get("Cache-Control", "")
    assert "max-age=600" in first["Cache-Control"]
    with CaptureQueriesContext(connection) as queries:
        second = Client(HTTP_USER_AGENT="Bingbot/2.0").get(plain_page.url)
    assert second.status_code == 200 and b"Plain" in second.content
    assert len(queries) == 0  # served from the cache


@pytest.mark.django_db(transaction=True)
def test_a_returning_visitor_keeps_the_normal_headers_of_a_plain_page(cached_site, plain_page):
    first = visitor()
    first.get(plain_page.url)  # gets the cookie
    response = first.get(plain_page.url)
    assert COOKIE not in response.cookies
    assert "private" not in response.get("Cache-Control", "")


@pytest.mark.django_db(transaction=True)
def test_the_visitor_cookie_is_never_replayed_to_another_visitor(cached_site, plain_page):
    # Django's cache middleware stores Set-Cookie with the page: a response that sets a visitor's id must
    # therefore never be stored, or every new visitor would become the same visitor.
    ids = {visitor_id(visitor().get(plain_page.url)) for _ in range(3)}
    assert None not in ids
    assert len(ids) == 3
    # Visitors who get no cookie of their own (Do Not Track) or already have one must not receive another's.
    assert COOKIE not in Client(HTTP_USER_AGENT=BROWSER, HTTP_DNT="1").get(plain_page.url).cookies
    returning = visitor()
    returning.get(plain_page.url)
    assert COOKIE not in returning.get(plain_page.url).cookies


@pytest.mark.django_db(transaction=True)
def test_the_personalised_headers_are_configurable(hero_page, browser, settings):
    settings.WAGTAIL_CRM = {
        "PERSONALISED_CACHE_CONTROL": {"no_store": True},
        "PERSONALISED_VARY": ["Cookie", "Accept-Language"],
    }
    response = browser.get(hero_page.url)
    assert "no-store" in response["Cache-Control"]
    assert "Accept-Language" in response["Vary"]


# -- edge-cache mode: one public page, per-visitor fragments ---------------------------------------------

EDGE = {"CACHE_MODE": "edge"}


def fragments(client, page, *slots, **params):
    return client.get(reverse("wagtail_crm:fragments"), {"page": page.pk, "slot": list(slots), **params})


@pytest.mark.django_db(transaction=True)
def test_edge_mode_serves_everyone_the_same_public_page_with_the_default_in_a_slot(hero_page, settings):
    settings.WAGTAIL_CRM = EDGE
    reader = visitor().get(hero_page.url, {"utm_source": "newsletter"})
    stranger = visitor().get(hero_page.url)
    assert reader.content == stranger.content
    for response in (reader, stranger):
        assert COOKIE not in response.cookies
        assert "private" not in response.get("Cache-Control", "")
    soup = BeautifulSoup(reader.content, "html.parser")
    assert soup.select_one('[data-crm-slot="hero"]').get_text(strip=True) == "Default hero"
    script = soup.select_one("script[data-endpoint]")
    assert script["data-endpoint"] == reverse("wagtail_crm:fragments")
    assert script["data-page"] == str(hero_page.pk)
    assert script["src"].endswith("wagtail_crm/js/personalise.js")
    assert not Interaction.objects.exists()  # the script reports the view


@pytest.mark.django_db(transaction=True)
def test_the_fragment_endpoint_renders_each_visitors_variant_and_records_the_view(hero_page, settings):
    settings.WAGTAIL_CRM = EDGE
    reader, stranger = visitor(), visitor()
    url = "http://testserver" + hero_page.url + "?utm_source=newsletter"
    response = fragments(reader, hero_page, "hero", "not-a-block", url=url, ref="https://mail.example.com/")
    assert response.status_code == 200
    assert "Newsletter hero" in response.json()["slots"]["hero"]
    assert set(response.json()["slots"]) == {"hero"}
    assert "no-store" in response["Cache-Control"] and "private" in response["Cache-Control"]
    assert "Cookie" in response["Vary"]
    reader_id = visitor_id(response)
    assert reader_id
    assert "Default hero" in fragments(stranger, hero_page, "hero").json()["slots"]["hero"]

    view = Interaction.objects.get(profile__visitor_id=reader_id, kind="page_view")
    assert view.page_id == hero_page.pk
    assert view.data["path"] == hero_page.url
    assert view.profile.first_utm_source == "newsletter"
    assert view.profile.first_referrer_host == "mail.example.com"
    # The stored reader keeps their variant without the campaign parameters.
    assert "Newsletter hero" in fragments(reader, hero_page, "hero").json()["slots"]["hero"]


@pytest.mark.django_db(transaction=True)
def test_edge_mode_through_the_cache_middleware(cached_site, hero_page, settings):
    settings.WAGTAIL_CRM = EDGE
    reader, stranger = visitor(), visitor()
    page = reader.get(hero_page.url, {"utm_source": "newsletter"})
    with CaptureQueriesContext(connection) as queries:
        cached = stranger.get(hero_page.url, {"utm_source": "newsletter"})
    assert len(queries) == 0 and cached.content == page.content  # one public page for everyone
    url = "http://testserver" + hero_page.url + "?utm_source=newsletter"
    assert "Newsletter hero" in fragments(reader, hero_page, "hero", url=url).json()["slots"]["hero"]
    assert "Default hero" in fragments(stranger, hero_page, "hero").json()["slots"]["hero"]
    assert "Default hero" in fragments(visitor(), hero_page, "hero").json()["slots"]["hero"]


@pytest.mark.django_db(transaction=True)
def test_the_greeting_is_filled_in_by_the_endpoint(home, settings):
    from wagtail_crm.models import VisitorProfile
    from wagtail_crm.profiles.identity import sign_visitor_id

    settings.WAGTAIL_CRM = EDGE
    page = home.add_child(instance=StreamTestPage(title="Hi", slug="hi", body=[]))
    profile = VisitorProfile.objects.create(first_name="Ann", visit_count=2)
    client = visitor(**{COOKIE: sign_visitor_id(profile.visitor_id)})
    assert fragments(client, page, greeting="1").json()["name"] == "Ann"
    assert fragments(visitor(), page, greeting="1").json()["name"] == ""


@pytest.mark.parametrize(
    "params, status",
    [
        ({"page": "abc"}, 400),
        ({"page": ""}, 400),
        ({"page": "999999"}, 404),
        ({"slot": [f"s{i}" for i in range(60)]}, 400),
    ],
)
@pytest.mark.django_db(transaction=True)
def test_the_fragment_endpoint_rejects_bad_input_with_a_message(hero_page, browser, params, status):
    params = {"page": hero_page.pk, **params}
    response = browser.get(reverse("wagtail_crm:fragments"), params)
    assert response.status_code == status
    assert response.json()["error"]


@pytest.mark.django_db(transaction=True)
def test_the_fragment_endpoint_answers_only_get(hero_page, browser):
    assert browser.post(reverse("wagtail_crm:fragments"), {"page": hero_page.pk}).status_code == 405


@pytest.mark.django_db(transaction=True)
def test_the_fragment_endpoint_keeps_private_and_draft_pages_private(hero_page, browser):
    PageViewRestriction.objects.create(page=hero_page, restriction_type="password", password="s3cret")
    assert fragments(browser, hero_page, "hero").status_code == 403
    hero_page.get_view_restrictions().delete()
    hero_page.unpublish()
    assert fragments(browser, hero_page, "hero").status_code == 404
