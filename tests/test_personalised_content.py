"""``PersonalisedBlock`` and the template tags, rendered in real pages through HTTP: which variant each visitor
sees, the defaults without a request, the admin form, and previews as a segment."""

import pytest
from bs4 import BeautifulSoup
from django.db import connection
from django.template import Context, Template, TemplateSyntaxError
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from wagtail.blocks import StreamBlockValidationError, StructBlockValidationError

from tests.testapp.models import StreamTestPage
from wagtail_crm.blocks import CallToActionBlock, PersonalisedBlock
from wagtail_crm.models import VisitorProfile
from wagtail_crm.profiles.identity import sign_visitor_id
from wagtail_crm.segments.models import Segment

from .conftest import BROWSER

NEWSLETTER = {"utm_source": "newsletter"}


def rule(name, **value):
    return {"type": name, "value": value}


def text(html):
    return [{"type": "rich_text", "value": html}]


def variant(variant_id, segments, html, hide_from=()):
    return {
        "type": "item",
        "id": variant_id,
        "value": {
            "segments": [str(s.pk) for s in segments],
            "hide_from": [str(s.pk) for s in hide_from],
            "content": text(html),
        },
    }


def personalised(block_id, variants, default_html="", **settings):
    return {
        "type": "personalised",
        "id": block_id,
        "value": {"variants": variants, "default": text(default_html) if default_html else [], **settings},
    }


def shown(response, block_type="personalised"):
    """The text of each block of ``block_type`` on a StreamTestPage."""
    soup = BeautifulSoup(response.content, "html.parser")
    return [section.get_text(" ", strip=True) for section in soup.select(f"section.block-{block_type}")]


@pytest.fixture
def segments(db):
    def make(name, *rules):
        return Segment.objects.create(name=name, slug=name.lower().replace(" ", "-"), rules=list(rules))

    return {
        "newsletter": make(
            "Newsletter readers",
            rule("campaign", parameter="utm_source", touch="either", operator="equals", value="newsletter"),
        ),
        "returning": make("Returning", rule("visitor_type", visitor="returning")),
        "first": make("First time", rule("visitor_type", visitor="first_time")),
        "staff": make("Staff", rule("logged_in", logged_in=True)),
    }


@pytest.fixture
def hero_page(home, segments):
    body = [
        personalised(
            "hero",
            [
                variant("v-news", [segments["newsletter"]], "<p>Hello newsletter reader</p>"),
                variant(
                    "v-back",
                    [segments["returning"]],
                    "<p>Welcome back</p>",
                    hide_from=[segments["staff"]],
                ),
            ],
            "<p>Hello stranger</p>",
            name="Home hero",
        )
    ]
    return home.add_child(instance=StreamTestPage(title="Landing", slug="landing", body=body))


def returning_cookie(client, **profile_fields):
    profile = VisitorProfile.objects.create(visit_count=3, **profile_fields)
    client.cookies["wagtail_crm_vid"] = sign_visitor_id(profile.visitor_id)
    return profile


# -- which variant --------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_each_segment_sees_its_variant_and_everyone_else_the_default(hero_page, client):
    client.defaults["HTTP_USER_AGENT"] = BROWSER
    assert shown(client.get(hero_page.url)) == ["Hello stranger"]
    assert shown(client.get(hero_page.url, NEWSLETTER)) == ["Hello newsletter reader"]


@pytest.mark.django_db(transaction=True)
def test_the_first_matching_variant_wins_in_editor_order(hero_page, browser):
    # A returning visitor who came from the newsletter matches both variants: the first one is shown.
    returning_cookie(browser, first_utm_source="newsletter")
    assert shown(browser.get(hero_page.url)) == ["Hello newsletter reader"]
    returning_cookie(browser)
    assert shown(browser.get(hero_page.url)) == ["Welcome back"]


@pytest.mark.django_db(transaction=True)
def test_hide_from_passes_the_visitor_on_to_the_next_match(hero_page, browser, django_user_model):
    user = django_user_model.objects.create_user("sam", password="secret")
    returning_cookie(browser, user=user)
    browser.force_login(user)
    # Returning, but also staff: the "welcome back" variant is hidden from them, so the default shows.
    assert shown(browser.get(hero_page.url)) == ["Hello stranger"]


@pytest.mark.django_db(transaction=True)
def test_an_empty_default_shows_nothing_to_everyone_else(home, segments, browser):
    body = [personalised("only-news", [variant("v1", [segments["newsletter"]], "<p>News only</p>")])]
    page = home.add_child(instance=StreamTestPage(title="News", slug="news", body=body))
    assert shown(browser.get(page.url)) == [""]
    assert shown(browser.get(page.url, NEWSLETTER)) == ["News only"]


@pytest.mark.django_db(transaction=True)
def test_an_inactive_segment_shows_its_variant_to_nobody(hero_page, segments, browser):
    segments["newsletter"].active = False
    segments["newsletter"].save()
    assert shown(browser.get(hero_page.url, NEWSLETTER)) == ["Hello stranger"]


@pytest.mark.django_db(transaction=True)
def test_a_site_chosen_content_block(home, segments, browser):
    body = [
        {
            "type": "personalised_text",
            "id": "plain",
            "value": {
                "variants": [
                    {
                        "type": "item",
                        "id": "x",
                        "value": {"segments": [str(segments["newsletter"].pk)], "content": "<p>Rich</p>"},
                    }
                ],
                "default": "<p>Default rich</p>",
            },
        }
    ]
    page = home.add_child(instance=StreamTestPage(title="Text", slug="text", body=body))
    assert shown(browser.get(page.url), "personalised_text") == ["Default rich"]
    assert shown(browser.get(page.url, NEWSLETTER), "personalised_text") == ["Rich"]


def test_the_default_content_block_set_renders_every_kind(segments):
    block = PersonalisedBlock()
    content = block.child_blocks["default"]
    assert set(content.child_blocks) == {"rich_text", "image", "call_to_action", "embed"}
    value = block.to_python(
        {
            "variants": [],
            "default": [
                {"type": "call_to_action", "value": {"text": "Join us", "url": "https://example.com/join"}},
            ],
        }
    )
    html = block.render(value)
    assert 'class="crm-cta crm-cta--button" href="https://example.com/join"' in html
    assert "Join us" in html


def test_a_call_to_action_needs_a_page_or_a_url_but_not_both():
    block = CallToActionBlock()
    with pytest.raises(StructBlockValidationError) as error:
        block.clean(block.to_python({"text": "Go", "style": "button"}))
    assert "url" in error.value.block_errors


# -- without a request ----------------------------------------------------------------------------------


def test_without_a_request_the_block_renders_its_default(segments):
    block = PersonalisedBlock()
    value = block.to_python(
        personalised("b", [variant("v", [segments["first"]], "<p>First</p>")], "<p>All</p>")["value"]
    )
    assert "All" in block.render(value)
    assert "All" in block.render(value, context={"page": None})


def test_search_indexing_reads_every_variant(segments):
    block = PersonalisedBlock()
    value = block.to_python(
        personalised("b", [variant("v", [segments["first"]], "<p>First</p>")], "<p>All</p>")["value"]
    )
    searchable = " ".join(block.get_searchable_content(value))
    assert "First" in searchable and "All" in searchable
    assert "First time" not in searchable  # segment names are not page content


# -- admin ----------------------------------------------------------------------------------------------


def test_a_variant_needs_a_segment(segments):
    block = PersonalisedBlock()
    value = block.to_python(
        {
            "variants": [{"type": "item", "value": {"segments": [], "content": text("<p>x</p>")}}],
            "default": [],
        }
    )
    with pytest.raises(StructBlockValidationError) as error:
        block.clean(value)
    assert "variants" in error.value.block_errors


def test_a_variant_cannot_name_a_deleted_segment(segments):
    block = PersonalisedBlock()
    value = block.to_python(
        {"variants": [{"type": "item", "value": {"segments": ["999999"], "content": text("<p>x</p>")}}]}
    )
    with pytest.raises((StructBlockValidationError, StreamBlockValidationError)):
        block.clean(value)


@pytest.mark.django_db(transaction=True)
def test_the_editor_form_lists_segments_by_name_for_the_collapsed_summary(hero_page, admin_client):
    response = admin_client.get(reverse("wagtailadmin_pages:edit", args=[hero_page.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    # The variant's segments are checkboxes whose labels are the segment names; the collapsed summary is
    # built from the ticked labels ("labelFormat": "{segments}").
    assert "Newsletter readers" in html and "Returning" in html
    assert "{segments}" in html


# -- template tags ----------------------------------------------------------------------------------------


def render_template(source, request=None, **context):
    if request is not None:
        context["request"] = request
    return Template("{% load wagtail_crm %}" + source).render(Context(context))


@pytest.mark.django_db(transaction=True)
def test_if_segment_renders_the_body_for_members_and_else_for_others(segments, home):
    factory = RequestFactory(HTTP_USER_AGENT=BROWSER)
    source = '{% if_segment "newsletter-readers" "staff" %}member{% else %}other{% endif_segment %}'
    assert render_template(source, factory.get("/", NEWSLETTER)) == "member"
    assert render_template(source, factory.get("/")) == "other"
    assert render_template(source) == "other"  # no request: the else branch
    assert (
        render_template(
            "{% if_segment seg %}yes{% endif_segment %}",
            factory.get("/", NEWSLETTER),
            seg=segments["newsletter"],
        )
        == "yes"
    )


def test_if_segment_needs_a_segment():
    with pytest.raises(TemplateSyntaxError):
        Template("{% load wagtail_crm %}{% if_segment %}x{% endif_segment %}")


@pytest.mark.django_db(transaction=True)
def test_visitor_segments_exposes_the_visitors_segments(segments, home):
    factory = RequestFactory(HTTP_USER_AGENT=BROWSER)
    source = "{% visitor_segments as segs %}{% for s in segs %}{{ s.slug }} {% endfor %}"
    assert render_template(source, factory.get("/", NEWSLETTER)).split() == [
        "first-time",
        "newsletter-readers",
    ]
    assert render_template(source) == ""


@pytest.mark.django_db(transaction=True)
def test_greeting_by_name_for_identified_visitors(home, django_user_model):
    factory = RequestFactory(HTTP_USER_AGENT=BROWSER)
    source = '{% crm_greeting "Welcome back, {name}!" fallback="Welcome!" %}'
    anonymous = factory.get("/")
    assert render_template(source, anonymous) == "Welcome!"
    profile = VisitorProfile.objects.create(first_name="Ann <b>", visit_count=2)
    known = factory.get("/")
    known.COOKIES["wagtail_crm_vid"] = sign_visitor_id(profile.visitor_id)
    assert render_template(source, known) == "Welcome back, Ann &lt;b&gt;!"
    assert render_template('{% crm_greeting "Hello" %}', known) == "Hello, Ann &lt;b&gt;"
    assert render_template('{% crm_greeting "Hello {name}" %}') == "Hello"
    # A logged-in user who never gave the CRM a name is greeted with their account's first name.
    user = django_user_model.objects.create_user("bo", first_name="Bo")
    logged_in = factory.get("/")
    logged_in.user = user
    logged_in._cached_user = user
    assert render_template(source, logged_in) == "Welcome back, Bo!"


@pytest.mark.django_db(transaction=True)
def test_tags_in_a_page_make_the_response_private(home, segments, browser):
    body = [personalised("hero", [variant("v", [segments["newsletter"]], "<p>News</p>")], "<p>Default</p>")]
    page = home.add_child(instance=StreamTestPage(title="Tags", slug="tags", body=body))
    response = browser.get(page.url)
    assert "private" in response["Cache-Control"]
    assert "Cookie" in response["Vary"]


# -- previews ---------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_preview_panel_shows_each_variant_as_its_segment(hero_page, segments, admin_client):
    # The page has never been saved through the form: Wagtail previews the latest revision on view_draft.
    hero_page.save_revision()
    url = reverse("wagtailadmin_pages:view_draft", args=[hero_page.pk])
    as_news = admin_client.get(url, {"mode": f"crm-segment:{segments['newsletter'].pk}"})
    as_back = admin_client.get(url, {"mode": f"crm-segment:{segments['returning'].pk}"})
    as_nobody = admin_client.get(url, {"mode": ""})
    assert shown(as_news) == ["Hello newsletter reader"]
    assert shown(as_back) == ["Welcome back"]
    assert shown(as_nobody) == ["Hello stranger"]


@pytest.mark.django_db(transaction=True)
def test_preview_as_several_segments_picks_the_first_matching_variant(hero_page, segments, admin_client):
    hero_page.save_revision()
    response = admin_client.get(
        reverse("wagtail_crm_preview:preview_as", args=[hero_page.pk]),
        {"preview": "1", "segments": [segments["returning"].pk, segments["newsletter"].pk]},
    )
    iframe = BeautifulSoup(response.content, "html.parser").select_one("[data-crm-preview] iframe")
    assert shown(admin_client.get(iframe["src"])) == ["Hello newsletter reader"]


@pytest.mark.django_db(transaction=True)
def test_personalised_blocks_cost_no_query_per_variant(home, segments, browser):
    # Wagtail's choice blocks look stored values up among their choices; for segments that would be a query
    # for every variant of every block on every page load.
    many = [
        personalised(
            f"b{n}",
            [variant(f"v{n}-{m}", [segments["newsletter"], segments["staff"]], "<p>x</p>") for m in range(3)],
            "<p>Default</p>",
        )
        for n in range(4)
    ]
    page = home.add_child(instance=StreamTestPage(title="Many", slug="many", body=many))
    browser.get(page.url)  # loads the active segments into the process cache
    with CaptureQueriesContext(connection) as queries:
        response = browser.get(page.url)
    assert shown(response) == ["Default"] * 4
    segment_table = Segment._meta.db_table
    assert [q["sql"] for q in queries if segment_table in q["sql"]] == []
