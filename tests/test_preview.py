"""Previewing a page as a segment: the preview modes of ``SegmentPreviewMixin`` in Wagtail's preview panel, and
the admin's "Preview as…" view (several segments, or one visitor profile) that works for any page."""

import re
from datetime import timedelta

import pytest
from bs4 import BeautifulSoup
from django.contrib.auth.models import Group, Permission
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone
from wagtail.models import GroupPagePermission

from tests.testapp.models import PersonalisedTestPage, PlainPersonalisedTestPage
from wagtail_crm.conf import get_setting
from wagtail_crm.models import Interaction, VisitorProfile
from wagtail_crm.profiles.identity import sign_visitor_id
from wagtail_crm.segments.models import Segment

DRAFTAIL_BODY = (
    '{"entityMap": {}, "blocks": [{"inlineStyleRanges": [], "text": "Spring offers inside", "depth": 0, '
    '"type": "unstyled", "key": "00000", "entityRanges": []}]}'
)


def rule(name, **value):
    return {"type": name, "value": value}


def make_segment(name, *rules, **fields):
    slug = name.lower().replace(" ", "-")
    return Segment.objects.create(name=name, slug=slug, rules=list(rules), **fields)


def newsletter_rule():
    return rule("campaign", parameter="utm_source", touch="either", operator="equals", value="newsletter")


def shown_segments(response):
    """The segment slugs the previewed page says its visitor is in (see personalised_test_page.html)."""
    html = response.content.decode()
    listing = re.search(r'<ul id="segments">(.*?)</ul>', html, re.DOTALL)
    assert listing, html
    return re.findall(r"<li>(.*?)</li>", listing.group(1))


def shown_visitor(response):
    match = re.search(r'<p id="visitor">(.*?)</p>', response.content.decode())
    return match.group(1) if match else None


def soup(response):
    return BeautifulSoup(response.content, "html.parser")


def preview_as_url(page, **params):
    url = reverse("wagtail_crm_preview:preview_as", args=[page.pk])
    return url, {"preview": "1", **params}


def render_preview_as(client, page, **params):
    """Submit the "Preview as…" form and load the preview its iframe shows."""
    url, query = preview_as_url(page, **params)
    response = client.get(url, query)
    assert response.status_code == 200
    iframe = soup(response).select_one("[data-crm-preview] iframe")
    assert iframe is not None, response.content.decode()
    return client.get(iframe["src"])


@pytest.fixture
def segments(db):
    return {
        "newsletter": make_segment("Newsletter readers", newsletter_rule()),
        "returning": make_segment("Returning", rule("visitor_type", visitor="returning")),
        "first-time": make_segment("First time", rule("visitor_type", visitor="first_time")),
    }


@pytest.fixture
def page(home):
    return home.add_child(
        instance=PersonalisedTestPage(title="Spring offers", slug="spring", body="<p>Offers</p>")
    )


@pytest.fixture
def plain_page(home):
    return home.add_child(
        instance=PlainPersonalisedTestPage(title="Plain offers", slug="plain", body="<p>Plain</p>")
    )


@pytest.fixture
def editor_user(django_user_model, home):
    return django_user_model.objects.create_superuser("editor", "editor@example.com", "secret")


@pytest.fixture
def editor(browser, editor_user):
    browser.force_login(editor_user)
    return browser


@pytest.fixture
def ann(db):
    return VisitorProfile.objects.create(
        first_name="Ann",
        last_name="Lovelace",
        email="ann@example.com",
        first_utm_source="newsletter",
        visit_count=4,
        last_seen=timezone.now() - timedelta(days=3),
    )


def page_editor(django_user_model, client, home, *, username="moderator", profile_codenames=()):
    """A user who may edit the site's pages (and, with ``profile_codenames``, see visitor profiles)."""
    user = django_user_model.objects.create_user(username, f"{username}@example.com", "secret")
    group = Group.objects.create(name=f"{username}-group")
    group.permissions.add(Permission.objects.get(codename="access_admin"))
    for codename in profile_codenames:
        group.permissions.add(
            Permission.objects.get(content_type__app_label="wagtail_crm", codename=codename)
        )
    GroupPagePermission.objects.create(
        group=group, page=home, permission=Permission.objects.get(codename="change_page")
    )
    user.groups.add(group)
    client.force_login(user)
    return client


# -- Wagtail's preview panel: one mode per live segment --------------------------------------------------


def test_the_preview_panel_offers_each_live_segment_as_a_mode(editor, page):
    now = timezone.now()
    newsletter = make_segment("Newsletter readers", newsletter_rule())
    make_segment("Paused", newsletter_rule(), active=False)
    make_segment("Next week", newsletter_rule(), starts_at=now + timedelta(days=7))
    make_segment("Last year", newsletter_rule(), ends_at=now - timedelta(days=300))

    response = editor.get(reverse("wagtailadmin_pages:edit", args=[page.pk]))

    assert response.status_code == 200
    options = soup(response).select("#id_preview_mode option")
    assert [(option["value"], option.get_text(strip=True)) for option in options] == [
        ("", "Default (no segment)"),
        (f"crm-segment:{newsletter.pk}", "As segment: Newsletter readers"),
    ]


def test_the_preview_panel_shows_the_unsaved_page_as_the_chosen_segment(editor, editor_user, page, segments):
    # The editor's own profile is a newsletter reader: the default mode must not show their own segments.
    VisitorProfile.objects.create(user=editor_user, first_utm_source="newsletter")
    preview_url = reverse("wagtailadmin_pages:preview_on_edit", args=[page.pk])
    response = editor.post(
        preview_url, {"title": "Spring offers (draft)", "slug": "spring", "body": DRAFTAIL_BODY}
    )
    assert response.json() == {"is_valid": True, "is_available": True}

    as_newsletter = editor.get(preview_url, {"mode": f"crm-segment:{segments['newsletter'].pk}"})
    as_returning = editor.get(preview_url, {"mode": f"crm-segment:{segments['returning'].pk}"})
    default = editor.get(preview_url, {"mode": ""})

    assert as_newsletter.status_code == 200
    assert "Spring offers (draft)" in as_newsletter.content.decode()  # the unsaved edit, not the live page
    assert "Spring offers inside" in as_newsletter.content.decode()
    assert shown_segments(as_newsletter) == ["newsletter-readers"]
    assert shown_segments(as_returning) == ["returning"]
    assert shown_segments(default) == ["no segment"]
    assert shown_visitor(default) is None


def test_a_new_page_previews_as_a_segment_before_it_is_saved(editor, home, segments):
    preview_url = reverse(
        "wagtailadmin_pages:preview_on_add", args=["testapp", "personalisedtestpage", home.pk]
    )
    response = editor.post(preview_url, {"title": "Autumn offers", "slug": "autumn", "body": DRAFTAIL_BODY})
    assert response.json() == {"is_valid": True, "is_available": True}

    response = editor.get(preview_url, {"mode": f"crm-segment:{segments['first-time'].pk}"})

    assert "Autumn offers" in response.content.decode()
    assert shown_segments(response) == ["first-time"]


@pytest.mark.parametrize(
    "mode", ["crm-segment:999999", "crm-segment:abc", "crm-segment:²", "crm-segment:" + "9" * 30]
)
def test_a_preview_mode_for_a_segment_that_does_not_exist_is_not_found(editor, page, mode):
    response = editor.get(reverse("wagtailadmin_pages:view_draft", args=[page.pk]), {"mode": mode})
    assert response.status_code == 404


def test_a_live_visit_to_the_page_is_personalised_as_usual(browser, page, segments):
    response = browser.get(page.url, {"utm_source": "newsletter"})
    assert response.status_code == 200
    assert shown_segments(response) == ["first-time", "newsletter-readers"]


# -- "Preview as…": several segments, a visitor profile, any page --------------------------------------


def test_the_page_header_menu_links_to_preview_as(editor, page):
    response = editor.get(reverse("wagtailadmin_pages:edit", args=[page.pk]))
    link = soup(response).find("a", href=reverse("wagtail_crm_preview:preview_as", args=[page.pk]))
    assert link is not None
    assert "Preview as…" in link.get_text()


def test_preview_as_several_segments(editor, page, segments):
    response = render_preview_as(editor, page, segments=[segments["newsletter"].pk, segments["returning"].pk])
    assert response.status_code == 200
    assert "Spring offers" in response.content.decode()
    assert shown_segments(response) == ["newsletter-readers", "returning"]
    assert shown_visitor(response) is None


def test_preview_as_no_segment_shows_what_everyone_else_sees(editor, page, segments):
    response = render_preview_as(editor, page)
    assert shown_segments(response) == ["no segment"]


def test_preview_as_renders_the_latest_draft(editor, page, segments):
    draft = page.get_latest_revision_as_object()
    draft.title = "Spring offers, second draft"
    draft.save_revision()

    response = render_preview_as(editor, page, segments=[segments["newsletter"].pk])

    assert "Spring offers, second draft" in response.content.decode()


@pytest.mark.parametrize(
    "lookup",
    [lambda p: p.email.upper(), lambda p: str(p.pk), lambda p: p.visitor_id],
    ids=["email", "number", "id"],
)
def test_preview_as_a_profile_shows_the_segments_the_profile_is_in(editor, page, segments, ann, lookup):
    url, query = preview_as_url(page, profile=lookup(ann))
    form_page = editor.get(url, query)
    summary = soup(form_page).select_one("[data-crm-preview]").get_text(" ", strip=True)
    assert "As visitor Ann Lovelace" in summary
    assert "This visitor is in these segments now: Newsletter readers , Returning" in summary

    response = render_preview_as(editor, page, profile=lookup(ann))

    assert shown_visitor(response) == "Hello Ann Lovelace"
    assert shown_segments(response) == ["newsletter-readers", "returning"]


def test_chosen_segments_take_the_place_of_the_profiles_own(editor, page, segments, ann):
    response = render_preview_as(editor, page, profile=ann.email, segments=[segments["first-time"].pk])
    assert shown_visitor(response) == "Hello Ann Lovelace"
    assert shown_segments(response) == ["first-time"]


def test_an_old_visitor_id_previews_the_profile_it_was_merged_into(editor, page, segments, ann):
    tombstone = VisitorProfile.objects.create(merged_into=ann)
    response = render_preview_as(editor, page, profile=tombstone.visitor_id)
    assert shown_visitor(response) == "Hello Ann Lovelace"


def test_a_page_without_the_mixin_previews_as_segments_and_as_a_profile(editor, plain_page, segments, ann):
    # No segment modes in Wagtail's preview panel for it …
    edit = editor.get(reverse("wagtailadmin_pages:edit", args=[plain_page.pk]))
    assert soup(edit).select("#id_preview_mode option") == []
    # … but "Preview as…" works.
    as_segments = render_preview_as(editor, plain_page, segments=[segments["first-time"].pk])
    as_ann = render_preview_as(editor, plain_page, profile=ann.email)

    assert as_segments.status_code == 200
    assert shown_segments(as_segments) == ["first-time"]
    assert shown_visitor(as_ann) == "Hello Ann Lovelace"
    assert shown_segments(as_ann) == ["newsletter-readers", "returning"]


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        ("nobody@example.com", "No visitor profile matches “nobody@example.com”."),
        ("424242", "No visitor profile matches “424242”."),
        ("9" * 40, "No visitor profile matches"),
        ("²", "No visitor profile matches"),
        ("twin@example.com", "Several profiles have this email address"),
    ],
)
def test_a_profile_that_cannot_be_found_is_a_form_error(editor, page, profile, message):
    VisitorProfile.objects.create(email="twin@example.com")
    VisitorProfile.objects.create(email="Twin@example.com")
    url, query = preview_as_url(page, profile=profile)

    response = editor.get(url, query)

    assert response.status_code == 200
    errors = soup(response).select(".error-message")
    assert any(message in error.get_text() for error in errors), response.content.decode()
    assert soup(response).select_one("[data-crm-preview]") is None
    # The preview address itself answers 400 with the same message, never a 500.
    render = editor.get(reverse("wagtail_crm_preview:render", args=[page.pk]), query)
    assert render.status_code == 400
    assert message in render.content.decode()


def test_a_segment_that_does_not_exist_is_a_form_error(editor, page):
    url, query = preview_as_url(page, segments=["999999", "abc", "²", "9" * 30])
    response = editor.get(url, query)
    assert response.status_code == 200
    assert soup(response).select(".error-message")
    assert soup(response).select_one("[data-crm-preview]") is None


def test_the_form_lists_every_segment_and_says_which_are_not_live(editor, page, segments):
    make_segment("Paused", newsletter_rule(), active=False)
    url, _query = preview_as_url(page)
    response = editor.get(url)
    labels = [label.get_text(" ", strip=True) for label in soup(response).select("label[for^=id_segments_]")]
    assert labels == ["First time", "Newsletter readers", "Paused (not live)", "Returning"]
    assert soup(response).select_one("[data-crm-preview]") is None  # nothing rendered before submitting


def test_a_link_can_prefill_the_profile(editor, page, ann):
    response = editor.get(reverse("wagtail_crm_preview:preview_as", args=[page.pk]), {"profile": ann.pk})
    assert soup(response).select_one("input[name=profile]")["value"] == str(ann.pk)
    assert soup(response).select_one("[data-crm-preview]") is None


@pytest.mark.parametrize("page_id", [999999, int("9" * 30)])
def test_an_unknown_page_is_not_found(editor, home, page_id):
    assert editor.get(reverse("wagtail_crm_preview:preview_as", args=[page_id])).status_code == 404
    assert editor.get(reverse("wagtail_crm_preview:render", args=[page_id])).status_code == 404


# -- permissions --------------------------------------------------------------------------------------


def test_a_user_who_cannot_edit_the_page_cannot_preview_it(client, django_user_model, page, segments):
    user = django_user_model.objects.create_user("reader", "reader@example.com", "secret")
    user.user_permissions.add(Permission.objects.get(codename="access_admin"))
    client.force_login(user)
    url, query = preview_as_url(page, segments=[segments["newsletter"].pk])

    for address in (url, reverse("wagtail_crm_preview:render", args=[page.pk])):
        response = client.get(address, query)
        assert response.status_code == 302
        assert response["Location"] == reverse("wagtailadmin_home")

    edit = client.get(reverse("wagtailadmin_pages:edit", args=[page.pk]))
    assert edit.status_code == 302


def test_anonymous_visitors_are_sent_to_the_login_page(client, page):
    response = client.get(reverse("wagtail_crm_preview:preview_as", args=[page.pk]))
    assert response.status_code == 302
    assert reverse("wagtailadmin_login") in response["Location"]


def test_previewing_as_a_person_needs_the_permission_to_see_profiles(client, django_user_model, page, ann):
    moderator = page_editor(django_user_model, client, page.get_parent())

    form_page = moderator.get(reverse("wagtail_crm_preview:preview_as", args=[page.pk]))
    assert form_page.status_code == 200
    assert soup(form_page).select_one("input[name=profile]") is None
    # A hand-made address with a profile shows no one's page.
    response = render_preview_as(moderator, page, profile=ann.email)
    assert shown_visitor(response) is None


def test_an_editor_who_may_see_profiles_previews_as_a_person(client, django_user_model, page, segments, ann):
    moderator = page_editor(
        django_user_model,
        client,
        page.get_parent(),
        username="crm",
        profile_codenames=["view_visitorprofile"],
    )
    response = render_preview_as(moderator, page, profile=ann.email)
    assert shown_visitor(response) == "Hello Ann Lovelace"


# -- no trace --------------------------------------------------------------------------------------------


@override_settings(WAGTAIL_CRM={"COOKIE_REFRESH_AGE": -1})  # any visit would re-send the cookie
def test_previews_record_nothing_and_set_no_cookie(editor, editor_user, page, plain_page, segments, ann):
    cookie_name = get_setting("COOKIE_NAME")
    own = VisitorProfile.objects.create(user=editor_user)
    editor.cookies[cookie_name] = sign_visitor_id(own.visitor_id)
    profiles, interactions = VisitorProfile.objects.count(), Interaction.objects.count()

    previews = [
        editor.get(reverse("wagtailadmin_pages:view_draft", args=[page.pk]), {"mode": ""}),
        editor.get(
            reverse("wagtailadmin_pages:view_draft", args=[page.pk]),
            {"mode": f"crm-segment:{segments['newsletter'].pk}"},
        ),
        render_preview_as(editor, page, segments=[segments["newsletter"].pk]),
        render_preview_as(editor, page, profile=ann.email),
        render_preview_as(editor, plain_page, segments=[segments["newsletter"].pk]),
        render_preview_as(editor, plain_page, profile=ann.email),
    ]

    for response in previews:
        assert response.status_code == 200
        assert cookie_name not in response.cookies
    assert VisitorProfile.objects.count() == profiles
    assert Interaction.objects.count() == interactions
    ann.refresh_from_db()
    assert ann.visit_count == 4
    # The same browser visiting the page for real is recorded and gets its cookie back.
    live = editor.get(page.url)
    assert cookie_name in live.cookies
    assert Interaction.objects.filter(profile=own, kind="page_view").count() == 1


@override_settings(WAGTAIL_CRM={"COOKIE_REFRESH_AGE": -1})
def test_wagtails_own_preview_of_any_page_is_untracked_and_in_no_segment(
    editor, editor_user, plain_page, segments
):
    cookie_name = get_setting("COOKIE_NAME")
    own = VisitorProfile.objects.create(user=editor_user, first_utm_source="newsletter")
    editor.cookies[cookie_name] = sign_visitor_id(own.visitor_id)

    response = editor.get(reverse("wagtailadmin_pages:view_draft", args=[plain_page.pk]))

    assert response.status_code == 200
    assert cookie_name not in response.cookies
    assert shown_segments(response) == ["no segment"]  # not the editor's own segments


def test_a_profile_page_links_to_preview_the_site_as_that_visitor(editor, ann, home, segments):
    response = editor.get(reverse("wagtail_crm_profiles:inspect", args=[ann.pk]))
    link = next(a for a in soup(response).select("a") if "Preview the site as this visitor" in a.get_text())
    assert link["href"] == reverse("wagtail_crm_preview:preview_as", args=[home.pk]) + f"?profile={ann.pk}"
    response = editor.get(link["href"])
    assert soup(response).select_one("input[name=profile]")["value"] == str(ann.pk)


def test_the_profile_page_offers_no_preview_to_staff_who_cannot_edit_pages(
    client, django_user_model, ann, home
):
    user = django_user_model.objects.create_user("analyst", "analyst@example.com", "secret")
    group = Group.objects.create(name="analysts")
    group.permissions.add(Permission.objects.get(codename="access_admin"))
    group.permissions.add(
        Permission.objects.get(content_type__app_label="wagtail_crm", codename="view_visitorprofile")
    )
    user.groups.add(group)
    client.force_login(user)
    response = client.get(reverse("wagtail_crm_profiles:inspect", args=[ann.pk]))
    assert response.status_code == 200
    assert "Preview the site as this visitor" not in response.content.decode()
