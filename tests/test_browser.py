"""The edge-cache mode in a real browser: Chromium, driven by Playwright, loads pages from the live server and
runs ``personalise.js``, which swaps each visitor's variant and greeting into the one public page and reports the
page view through the fragment endpoint.

Chromium is Debian's (``CRM_CHROMIUM`` names another executable); Playwright never downloads a browser here.

Playwright's sync API keeps an asyncio loop running in the main thread while it is open, and Django refuses ORM
calls there (``SynchronousOnlyOperation``): each test prepares its data first, drives the browser inside
``with chromium() as browser:``, and reads the database after it is closed. The live server answers from its own
thread with its own connection, so the data is committed (``transactional_db``) and jobs run inline after commit.
"""

import os
import shutil
from contextlib import contextmanager

import pytest
from django.test import Client
from django.urls import reverse

from tests.testapp.models import StreamTestPage
from wagtail_crm.models import Interaction, VisitorProfile
from wagtail_crm.profiles.identity import read_visitor_cookie, sign_visitor_id

from .conftest import BROWSER, REQUIRE_SERVICES
from .test_personalised_content import personalised, variant

COOKIE = "wagtail_crm_vid"
EDGE = {"CACHE_MODE": "edge"}
HERO = '[data-crm-slot="hero"]'
# Headless Chromium says "HeadlessChrome", which the bot filter ignores: the visitors use a desktop browser's.
VISITOR = {"user_agent": BROWSER}
# Records the script's "done" event before any page script runs.
LISTEN = (
    "window.__crm = null;"
    "document.addEventListener('wagtail-crm:personalised', function (e) { window.__crm = e.detail; });"
)


def _chromium_executable():
    path = os.environ.get("CRM_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    return path if path and os.access(path, os.X_OK) else None


@pytest.fixture
def chromium():
    """``with chromium() as browser:`` a Playwright ``Browser`` on Debian's Chromium. Fails in CI
    (CRM_REQUIRE_SERVICES=1) instead of skipping when Playwright or Chromium is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    executable = _chromium_executable()
    if sync_playwright is None or not executable:
        missing = (
            "the playwright package" if sync_playwright is None else "Chromium (apt-get install chromium)"
        )
        if REQUIRE_SERVICES:
            pytest.fail(f"Browser tests need {missing} (CRM_REQUIRE_SERVICES=1)")
        pytest.skip(f"needs {missing}")

    @contextmanager
    def launch():
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable)
            try:
                yield browser
            finally:
                browser.close()

    return launch


@pytest.fixture
def edge(settings):
    settings.WAGTAIL_CRM = EDGE


@pytest.fixture
def hero_page(home, edge, newsletter):
    body = [
        {"type": "paragraph", "value": "<p>Shared intro</p>"},
        personalised(
            "hero", [variant("v-news", [newsletter], "<p>Newsletter hero</p>")], "<p>Default hero</p>"
        ),
    ]
    return home.add_child(instance=StreamTestPage(title="Landing", slug="landing", body=body))


def open_context(browser, **options):
    context = browser.new_context(**{**VISITOR, **options})
    context.set_default_timeout(10_000)
    return context


def is_fragment_request(url):
    return reverse("wagtail_crm:fragments") in url


def visit(context, url):
    """Load ``url`` in a new tab and wait for the script's answer: ``(page, HTML response, fragment response)``."""
    page = context.new_page()
    page.add_init_script(LISTEN)
    with page.expect_response(lambda response: is_fragment_request(response.url)) as fragment:
        response = page.goto(url)
    page.wait_for_function("window.__crm !== null")
    return page, response, fragment.value


def slot_text(page):
    return page.locator(HERO).inner_text().strip()


def visitor_id_in(context):
    values = [cookie["value"] for cookie in context.cookies() if cookie["name"] == COOKIE]
    return read_visitor_cookie(values[0])[0] if values else None


def test_each_visitor_gets_their_variant_swapped_into_the_same_public_page(chromium, live_server, hero_page):
    url = live_server.url + hero_page.url
    with chromium() as browser:
        reader = open_context(browser)
        page, reader_html, _fragment = visit(reader, url + "?utm_source=newsletter")
        page.wait_for_selector(f"{HERO}[data-crm-loaded]")
        assert slot_text(page) == "Newsletter hero"
        assert "Shared intro" in page.locator("main").inner_text()
        # The stored reader keeps the variant on the next visit, without the campaign parameter.
        page, *_ = visit(reader, url)
        page.wait_for_selector(f"{HERO}[data-crm-loaded]")
        assert slot_text(page) == "Newsletter hero"

        stranger = open_context(browser)
        page, stranger_html, _fragment = visit(stranger, url)
        page.wait_for_selector(f"{HERO}[data-crm-loaded]")
        assert slot_text(page) == "Default hero"
        reader_body, stranger_body = reader_html.text(), stranger_html.text()
    assert reader_body == stranger_body  # one page for everyone, cacheable at the edge
    assert "Default hero" in reader_body and "Newsletter hero" not in reader_body


def test_without_javascript_the_default_stays(chromium, live_server, hero_page):
    url = live_server.url + hero_page.url + "?utm_source=newsletter"
    with chromium() as browser:
        context = open_context(browser, java_script_enabled=False)
        page = context.new_page()
        requests = []
        page.on("request", lambda request: requests.append(request.url))
        assert page.goto(url).ok
        assert slot_text(page) == "Default hero"
        assert page.locator(f"{HERO}[data-crm-loaded]").count() == 0
        cookies = context.cookies()
    assert not any(is_fragment_request(url) for url in requests)
    assert cookies == []  # the public page sets no cookie
    assert not Interaction.objects.exists()


def test_the_page_view_is_recorded_and_the_cookie_set_through_the_endpoint(chromium, live_server, hero_page):
    url = live_server.url + hero_page.url + "?utm_source=newsletter"
    with chromium() as browser:
        context = open_context(browser)
        page, html, fragment = visit(context, url)
        page.wait_for_selector(f"{HERO}[data-crm-loaded]")
        page_cookie = html.header_value("set-cookie")
        fragment_cookie = fragment.header_value("set-cookie") or ""
        visitor_id = visitor_id_in(context)
    assert page_cookie is None
    assert fragment_cookie.startswith(COOKIE + "=")
    assert visitor_id
    timeline = Interaction.objects.filter(profile__visitor_id=visitor_id)
    assert sorted(timeline.values_list("kind", flat=True)) == ["page_view", "visit_started"]
    view = timeline.get(kind="page_view")  # one view, not one per request
    assert view.page_id == hero_page.pk
    assert view.data["path"] == hero_page.url
    assert view.profile.first_utm_source == "newsletter"


def test_a_stored_visitor_is_greeted_by_name(chromium, live_server, home, edge, settings):
    templates = settings.TEMPLATES[0]
    greeting_page = (
        "{% load wagtail_crm %}<!doctype html><html><body>"
        '<p id="greeting">{% crm_greeting "Welcome back, {name}!" fallback="Welcome!" %}</p>'
        "{% wagtail_crm_script %}</body></html>"
    )
    settings.TEMPLATES = [
        {
            **templates,
            "APP_DIRS": False,
            "OPTIONS": {
                **templates["OPTIONS"],
                "loaders": [
                    (
                        "django.template.loaders.locmem.Loader",
                        {"testapp/stream_test_page.html": greeting_page},
                    ),
                    "django.template.loaders.app_directories.Loader",
                ],
            },
        }
    ]
    page = home.add_child(instance=StreamTestPage(title="Hi", slug="hi", body=[]))
    ann = VisitorProfile.objects.create(first_name="Ann<b>y</b>", visit_count=2)
    url = live_server.url + page.url
    with chromium() as browser:
        known = open_context(browser)
        known.add_cookies(
            [{"name": COOKIE, "value": sign_visitor_id(ann.visitor_id), "url": live_server.url}]
        )
        tab, html, _fragment = visit(known, url)
        greeted = tab.locator("#greeting").inner_text()
        assert tab.locator("#greeting b").count() == 0  # the name is text, never markup
        stranger_tab, *_ = visit(open_context(browser), url)
        stranger_greeting = stranger_tab.locator("#greeting").inner_text()
        body = html.text()
    assert greeted == "Welcome back, Ann<b>y</b>!"
    assert stranger_greeting == "Welcome!"
    assert "Ann" not in body and 'data-crm-greeting="Welcome back, {name}!"' in body


@pytest.mark.parametrize("failure", ["unpublished", "unreachable", "not json"])
def test_the_default_stays_without_errors_when_the_endpoint_fails(chromium, live_server, hero_page, failure):
    url = live_server.url + hero_page.url
    # The edge keeps serving its copy of the page after the page is unpublished: the endpoint then answers 404.
    cached = Client(HTTP_USER_AGENT=BROWSER).get(hero_page.url).content.decode()
    if failure == "unpublished":
        hero_page.unpublish()
    with chromium() as browser:
        context = open_context(browser)
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(error))
        page.route(url, lambda route: route.fulfill(body=cached, content_type="text/html; charset=utf-8"))
        if failure == "unreachable":
            page.route(is_fragment_request, lambda route: route.abort("connectionrefused"))
            with page.expect_event("requestfailed", lambda request: is_fragment_request(request.url)):
                page.goto(url)
        else:
            if failure == "not json":  # a proxy's error page
                page.route(is_fragment_request, lambda route: route.fulfill(body="<html>Bad gateway</html>"))
            with page.expect_response(lambda response: is_fragment_request(response.url)) as fragment:
                page.goto(url)
            assert fragment.value.status == (404 if failure == "unpublished" else 200)
        page.wait_for_timeout(300)  # the script's promise chain settles after the response
        assert slot_text(page) == "Default hero"
        assert page.locator(f"{HERO}[data-crm-loaded]").count() == 0
        assert errors == []
    assert not Interaction.objects.exists()
