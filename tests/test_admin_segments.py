"""Segments in the admin: the listing with stored member counts and recounts, creating a segment with rules,
the ``crm_count_segments`` command, and on a visitor's profile the segments they are in and why."""

import io
import re
from datetime import timedelta

import pytest
from django.core.cache import caches
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from wagtail.test.utils.form_data import nested_form_data, streamfield

from wagtail_crm import jobs
from wagtail_crm.conf import get_setting
from wagtail_crm.profiles.events import make_event
from wagtail_crm.profiles.ingest import ingest_events
from wagtail_crm.profiles.models import VisitorProfile
from wagtail_crm.segments.models import Segment, SegmentMemberCount

from .conftest import staff_user

LIST = reverse("wagtail_crm_segments:list")
ADD = reverse("wagtail_crm_segments:add")
RECOUNT = reverse("wagtail_crm_segments:recount")
BULK_RECOUNT = reverse("wagtail_bulk_action", args=["wagtail_crm", "segment", "recount_members"])
COUNT_JOB = "wagtail_crm.segments.jobs.count_segments"


def profile_url(profile):
    return reverse("wagtail_crm_profiles:inspect", args=[profile.pk])


@pytest.fixture(autouse=True)
def empty_cache():
    # The listing remembers queued recounts in the cache: every test starts with none pending.
    caches[get_setting("CACHE_ALIAS")].clear()
    yield
    caches[get_setting("CACHE_ALIAS")].clear()


@pytest.fixture
def queued(monkeypatch):
    """The background jobs queued during the test, as (function path, args); none of them runs."""
    calls = []
    monkeypatch.setattr(jobs, "enqueue", lambda func_path, *args, **kwargs: calls.append((func_path, args)))
    return calls


def recounts(calls):
    """The segment ids of each queued recount (None: all segments)."""
    return [args[0] if args[0] is None else sorted(args[0]) for path, args in calls if path == COUNT_JOB]


def make_segment(name, rules=(), exclude_rules=(), **fields):
    slug = fields.pop("slug", name.lower().replace(" ", "-"))
    return Segment.objects.create(
        name=name,
        slug=slug,
        rules=[{"type": kind, "value": value} for kind, value in rules],
        exclude_rules=[{"type": kind, "value": value} for kind, value in exclude_rules],
        **fields,
    )


def store_count(segment, count, age):
    SegmentMemberCount.objects.update_or_create(
        segment=segment, defaults={"count": count, "counted_at": timezone.now() - age}
    )


NEWSLETTER = (
    "campaign",
    {"parameter": "utm_source", "touch": "either", "operator": "equals", "value": "newsletter"},
)
RETURNING = ("visit_count", {"operator": "gte", "count": 2})
EMAIL_CONSENT = ("consent", {"channel": "email"})


@pytest.fixture
def editor(client, django_user_model):
    """Staff who may read visitor profiles but has no permission on segments."""
    client.force_login(staff_user(django_user_model, "editor", "view_visitorprofile"))
    return client


def rows(content, table_id):
    """The text of each row of the table with this id, one string per row, whitespace collapsed."""
    table = re.search(rf'<table[^>]*id="{table_id}".*?</table>', content, re.S).group(0)
    texts = [
        re.sub(r"<[^>]+>", " ", row)
        for row in re.findall(r"<tbody>.*?</tbody>", table, re.S)[0].split("</tr>")
    ]
    return [" ".join(text.split()) for text in texts if text.strip()]


def listing_row(content, segment):
    match = re.search(rf"<tr[^>]*>(?:(?!</tr>).)*?snippet_{segment.pk}_title.*?</tr>", content, re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(0)).split())


# --- creating a segment in the admin ----------------------------------------------------------------------


def segment_form(rules=(), exclude_rules=(), **fields):
    data = {
        "name": "Newsletter regulars",
        "slug": "newsletter-regulars",
        "description": "",
        "active": "on",
        "starts_at": "",
        "ends_at": "",
        "match": "all",
        "rules": streamfield(list(rules)),
        "exclude_rules": streamfield(list(exclude_rules)),
    }
    data.update(fields)
    return nested_form_data(data)


def form_rule(kind, value):
    return kind, {key: "" if item is None else str(item) for key, item in value.items()}


def test_editor_creates_a_segment_and_the_listing_shows_its_member_count(admin_client, transactional_db):
    VisitorProfile.objects.create(first_utm_source="newsletter", visit_count=3)
    VisitorProfile.objects.create(last_utm_source="Newsletter", visit_count=2, email_consent=True)
    VisitorProfile.objects.create(first_utm_source="newsletter", visit_count=1)
    VisitorProfile.objects.create(first_utm_source="google", visit_count=5)

    response = admin_client.post(
        ADD,
        segment_form(
            rules=[form_rule(*NEWSLETTER), form_rule(*RETURNING)],
            exclude_rules=[form_rule(*EMAIL_CONSENT)],
        ),
    )

    assert response.status_code == 302
    segment = Segment.objects.get(slug="newsletter-regulars")
    assert [child.block_type for child in segment.rules] == ["campaign", "visit_count"]
    assert [child.block_type for child in segment.exclude_rules] == ["consent"]
    # Saving queued a count, which ran after the commit (no queue configured).
    listing = admin_client.get(LIST).content.decode()
    assert "1 · counted just now" in listing_row(listing, segment)


@pytest.mark.parametrize(
    "rule, message",
    [
        (
            ("purchases", {"measure": "orders", "amount": "1", "within_days": "91"}),
            "Profiles keep daily activity for 90 days",
        ),
        (
            ("time_window", {"days": [], "start": "09:00", "end": "09:00"}),
            "The window must end at another time than it starts.",
        ),
        (
            ("activity", {"kind": "", "custom_kind": "", "count": "1", "within_days": ""}),
            "Choose what the visitor did, or type a custom kind.",
        ),
    ],
    ids=["window-beyond-the-daily-facts", "time-window-start-equals-end", "activity-without-kind"],
)
def test_invalid_rule_is_a_form_error_and_saves_nothing(admin_client, db, rule, message):
    response = admin_client.post(ADD, segment_form(rules=[form_rule(*NEWSLETTER), rule]))

    assert response.status_code == 200
    assert "The segment could not be created due to errors." in response.content.decode()
    # The rule's error is handed to the StreamField editor, which shows it next to the field.
    assert message in response.content.decode().replace("\\u201c", "“").replace("\\u201d", "”")
    assert not Segment.objects.exists()


# --- the listing --------------------------------------------------------------------------------------------


def test_listing_shows_status_match_rules_and_stored_counts(admin_client, db, queued):
    now = timezone.now()
    counted = make_segment(
        "Newsletter readers", rules=[NEWSLETTER, RETURNING], exclude_rules=[EMAIL_CONSENT], match="any"
    )
    store_count(counted, 1234, timedelta(minutes=3))
    never = make_segment("Lapsed", rules=[("days_since_last_visit", {"operator": "gte", "days": 60})])
    SegmentMemberCount.objects.filter(segment=never).delete()
    inactive = make_segment("Old campaign", active=False)
    scheduled = make_segment("Winter sale", starts_at=now + timedelta(days=3))
    ending = make_segment("Spring sale", ends_at=now + timedelta(days=3))
    ended = make_segment("Autumn sale", ends_at=now - timedelta(days=3))

    content = admin_client.get(LIST).content.decode()

    row = listing_row(content, counted)
    assert "newsletter-readers" in row
    assert "Live" in row
    assert "any of the rules" in row
    assert "2 rules, 1 exclude rule" in row
    assert "1,234 · counted 3 minutes ago" in row
    assert "not counted yet" in listing_row(content, never)
    assert "all of the rules" in listing_row(content, never) and "1 rule" in listing_row(content, never)
    assert "Inactive" in listing_row(content, inactive)
    assert "Scheduled from " in listing_row(content, scheduled)
    assert "Live until " in listing_row(content, ending)
    assert "Ended on " in listing_row(content, ended)


def test_listing_does_not_query_per_segment(admin_client, db, queued):
    for number in range(2):
        store_count(make_segment(f"Segment {number}", rules=[NEWSLETTER]), number, timedelta(0))
    admin_client.get(LIST)  # warm up: session, permissions, content types

    def queries():
        with CaptureQueriesContext(connection) as context:
            assert admin_client.get(LIST).status_code == 200
        return len(context.captured_queries)

    with_two = queries()
    for number in range(2, 8):
        store_count(make_segment(f"Segment {number}", rules=[NEWSLETTER]), number, timedelta(0))
    assert queries() == with_two


def test_stale_and_missing_counts_queue_one_recount_until_it_is_done(admin_client, db, queued):
    fresh = make_segment("Fresh")
    store_count(fresh, 5, timedelta(minutes=1))
    stale = make_segment("Stale")
    store_count(stale, 5, timedelta(hours=2))
    missing = make_segment("Missing")
    SegmentMemberCount.objects.filter(segment=missing).delete()
    queued.clear()  # saving the segments queued their own counts

    first = admin_client.get(LIST).content.decode()
    assert recounts(queued) == [sorted([stale.pk, missing.pk])]
    assert "recount queued" in listing_row(first, stale) and "recount queued" in listing_row(first, missing)
    assert "recount queued" not in listing_row(first, fresh)

    # Reloading (or searching: the results-only view) while the recount is pending queues nothing more.
    admin_client.get(LIST)
    admin_client.get(reverse("wagtail_crm_segments:list_results"), {"q": "s"})
    assert len(recounts(queued)) == 1

    with override_settings(WAGTAIL_CRM={"SEGMENT_COUNT_MAX_AGE": 3 * 60 * 60}):
        caches[get_setting("CACHE_ALIAS")].clear()
        admin_client.get(LIST)
    assert recounts(queued)[1:] == [[missing.pk]]


def test_listing_recount_runs_inline_without_a_queue(admin_client, transactional_db):
    VisitorProfile.objects.create(first_utm_source="newsletter")
    segment = make_segment("Newsletter readers", rules=[NEWSLETTER])
    SegmentMemberCount.objects.all().delete()

    first = admin_client.get(LIST).content.decode()
    assert "not counted yet" in listing_row(first, segment)
    # No RQ_QUEUE: the recount ran as soon as it was queued, so the next load shows the count.
    assert "1 · counted just now" in listing_row(admin_client.get(LIST).content.decode(), segment)


# --- recounting on request ---------------------------------------------------------------------------------


def test_recount_button_queues_all_segments_and_goes_back(admin_client, db, queued):
    first, second = make_segment("First"), make_segment("Second")
    listing = admin_client.get(LIST).content.decode()
    assert f'data-w-action-url-value="{RECOUNT}"' in listing
    queued.clear()

    response = admin_client.post(RECOUNT, {"next": LIST + "?q=first"}, follow=True)

    assert response.redirect_chain == [(LIST + "?q=first", 302)]
    assert "Recount of 2 segments queued." in response.content.decode()
    assert recounts(queued) == [None]
    # The listing knows they are pending and queues nothing more.
    assert "recount queued" in listing_row(response.content.decode(), first)
    admin_client.get(LIST)
    assert recounts(queued) == [None]

    chosen = admin_client.post(RECOUNT, {"id": [second.pk, "nonsense"]})
    assert chosen["Location"] == LIST
    assert recounts(queued) == [None, [second.pk]]
    for unknown in ("999999", str(2**70), "²"):
        response = admin_client.post(RECOUNT, {"id": [unknown]}, follow=True)
        assert "None of the chosen segments exists." in response.content.decode()
    assert len(recounts(queued)) == 2
    # Off-site "next" URLs are ignored.
    assert admin_client.post(RECOUNT, {"next": "https://example.com/"})["Location"] == LIST


def test_recount_needs_a_post_with_a_csrf_token(admin_user, db, queued):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.get(RECOUNT).status_code == 405
    assert client.post(RECOUNT).status_code == 403
    assert recounts(queued) == []


def test_recount_selected_segments_from_the_bulk_actions(admin_client, db, queued):
    first, third = make_segment("First"), make_segment("Third")
    make_segment("Second")
    listing = admin_client.get(LIST).content.decode()
    assert BULK_RECOUNT in listing
    queued.clear()

    query = f"?id={first.pk}&id={third.pk}&next={LIST}"
    confirm = admin_client.get(BULK_RECOUNT + query)
    assert confirm.status_code == 200
    assert re.findall(r'<li><a href="[^"]+">([^<]+)</a></li>', confirm.content.decode()) == ["First", "Third"]

    response = admin_client.post(BULK_RECOUNT + query, follow=True)

    assert response.redirect_chain[-1][0] == LIST
    assert "Recount of 2 segments queued." in response.content.decode()
    assert recounts(queued) == [sorted([first.pk, third.pk])]


# --- permissions ---------------------------------------------------------------------------------------------


def test_staff_without_segment_permissions_is_turned_away(editor, db, queued):
    segment = make_segment("Newsletter readers", rules=[NEWSLETTER])
    queued.clear()
    for target in (LIST, ADD, reverse("wagtail_crm_segments:edit", args=[segment.pk])):
        response = editor.get(target)
        assert response.status_code == 302, target
        assert response["Location"] == reverse("wagtailadmin_home"), target
    assert editor.post(RECOUNT)["Location"] == reverse("wagtailadmin_home")
    assert editor.get(BULK_RECOUNT + f"?id={segment.pk}")["Location"] == reverse("wagtailadmin_home")
    assert editor.post(BULK_RECOUNT + f"?id={segment.pk}")["Location"] == reverse("wagtailadmin_home")
    assert editor.post(ADD, segment_form(rules=[form_rule(*NEWSLETTER)])).status_code == 302
    assert recounts(queued) == []
    assert list(Segment.objects.values_list("slug", flat=True)) == ["newsletter-readers"]


def test_segment_viewers_see_counts_but_cannot_recount(client, django_user_model, db, queued):
    client.force_login(staff_user(django_user_model, "viewer", "view_segment"))
    segment = make_segment("Newsletter readers")
    store_count(segment, 7, timedelta(minutes=5))
    listing = client.get(LIST)
    assert listing.status_code == 200
    assert "7 · counted 5 minutes ago" in listing_row(listing.content.decode(), segment)
    assert RECOUNT not in listing.content.decode()
    queued.clear()
    assert client.post(RECOUNT)["Location"] == reverse("wagtailadmin_home")
    assert recounts(queued) == []


# --- the management command ----------------------------------------------------------------------------------


def test_count_command_counts_and_stores_every_segment(db):
    VisitorProfile.objects.create(first_utm_source="newsletter", visit_count=4)
    VisitorProfile.objects.create(visit_count=2)
    newsletter = make_segment("Newsletter readers", rules=[NEWSLETTER])
    returning = make_segment("Returning visitors", rules=[RETURNING])
    SegmentMemberCount.objects.all().delete()

    out = io.StringIO()
    call_command("crm_count_segments", stdout=out)

    lines = out.getvalue().splitlines()
    assert re.match(r"newsletter-readers\s+1 members\s+\(Newsletter readers\)", lines[0])
    assert re.match(r"returning-visitors\s+2 members\s+\(Returning visitors\)", lines[1])
    assert re.match(r"Counted 2 segment\(s\) in \d+\.\d\d s \(1 query\)\.", lines[2])
    assert SegmentMemberCount.objects.get(segment=newsletter).count == 1
    assert SegmentMemberCount.objects.get(segment=returning).count == 2


def test_count_command_counts_chosen_segments_or_queues_them(db, queued):
    newsletter = make_segment("Newsletter readers", rules=[NEWSLETTER])
    returning = make_segment("Returning visitors", rules=[RETURNING])
    make_segment("Lapsed")
    SegmentMemberCount.objects.all().delete()

    out = io.StringIO()
    call_command("crm_count_segments", "--segment", "returning-visitors", "--segment", "lapsed", stdout=out)
    assert [line.split()[0] for line in out.getvalue().splitlines()[:-1]] == ["lapsed", "returning-visitors"]
    assert not SegmentMemberCount.objects.filter(segment=newsletter).exists()

    with pytest.raises(CommandError, match="No segment with the slug: nope"):
        call_command("crm_count_segments", "--segment", "nope", "--segment", "lapsed")

    queued.clear()
    out = io.StringIO()
    call_command("crm_count_segments", "--enqueue", "--segment", "newsletter-readers", stdout=out)
    assert recounts(queued) == [[newsletter.pk]]
    assert "Queued a recount of 1 segment(s)" in out.getvalue()
    assert SegmentMemberCount.objects.filter(segment=returning).exists()


def test_count_command_with_no_segments(db):
    out = io.StringIO()
    call_command("crm_count_segments", stdout=out)
    assert out.getvalue() == "There are no segments to count.\n"


# --- a visitor's segments on the profile page -------------------------------------------------------------


@pytest.fixture
def reader(db):
    """A returning newsletter reader who agreed to emails, and the segments of the site."""
    profile = VisitorProfile.objects.create(
        first_name="Ann",
        last_name="Reader",
        first_utm_source="newsletter",
        visit_count=3,
        email_consent=True,
    )
    segments = {
        "newsletter": make_segment("Newsletter readers", rules=[NEWSLETTER]),
        # In by its rules, left out by the exclude rule.
        "no-email": make_segment("Returning without email", rules=[RETURNING], exclude_rules=[EMAIL_CONSENT]),
        "any": make_segment(
            "Google or returning",
            match="any",
            rules=[("campaign", {**NEWSLETTER[1], "value": "google"}), RETURNING],
        ),
        "inactive": make_segment("Old newsletter", rules=[NEWSLETTER], active=False),
        "first-time": make_segment(
            "First-time visitors", rules=[("visitor_type", {"visitor": "first_time"})]
        ),
    }
    return profile, segments


def test_profile_lists_the_segments_the_visitor_is_in(admin_client, reader):
    profile, segments = reader

    content = admin_client.get(profile_url(profile)).content.decode()

    assert "In 3 of 5 segments." in content
    assert rows(content, "crm-segments-table") == [
        "First-time visitors Live Not in Why?",
        "Google or returning Live In Why?",
        "Newsletter readers Live In Why?",
        "Old newsletter Inactive In Why?",
        "Returning without email Live Not in Why?",
    ]
    edit_url = reverse("wagtail_crm_segments:edit", args=[segments["newsletter"].pk])
    assert f'<a href="{edit_url}">Newsletter readers</a>' in content


def test_profile_explains_a_segment_with_an_exclude_rule(admin_client, reader):
    profile, segments = reader

    response = admin_client.get(profile_url(profile), {"segment": segments["no-email"].pk})

    content = response.content.decode()
    assert "Why this visitor is not in “Returning without email”" in content
    assert "Visitors must match all of the rules:" in content
    assert rows(content, "crm-segment-rules") == ["Visits ≥ 2 Matched"]
    assert rows(content, "crm-segment-exclude-rules") == [
        "Has given consent to be contacted by email Matched: leaves the visitor out"
    ]
    assert "Not in the segment: an exclude rule matches." in content
    assert f'<option value="{segments["no-email"].pk}" selected>' in content


@pytest.mark.parametrize(
    "key, title, rule_rows, verdict",
    [
        (
            "any",
            "Why this visitor is in “Google or returning”",
            ["Source (utm_source) equals “google” (first or last visit) Not matched", "Visits ≥ 2 Matched"],
            "In the segment: at least one of the rules matches, and no exclude rule does.",
        ),
        (
            "first-time",
            "Why this visitor is not in “First-time visitors”",
            ["First-time visitor (first visit) Not matched"],
            "Not in the segment: not all of the rules match.",
        ),
        (
            "inactive",
            "Why this visitor is in “Old newsletter”",
            ["Source (utm_source) equals “newsletter” (first or last visit) Matched"],
            "In the segment: all of the rules match, and no exclude rule does.",
        ),
    ],
)
def test_profile_explains_any_segment(admin_client, reader, key, title, rule_rows, verdict):
    profile, segments = reader
    content = admin_client.get(profile_url(profile), {"segment": segments[key].pk}).content.decode()
    assert title in content
    assert rows(content, "crm-segment-rules") == rule_rows
    assert verdict in content
    assert ("This segment is not live (Inactive)" in content) == (key == "inactive")


@pytest.mark.parametrize("value", ["999999", str(2**70), "abc", "-1", "²"])
def test_profile_with_an_unknown_segment_says_so(admin_client, reader, value):
    profile, _segments = reader
    response = admin_client.get(profile_url(profile), {"segment": value})
    assert response.status_code == 200
    assert "There is no such segment" in response.content.decode()
    assert 'id="crm-segment-verdict"' not in response.content.decode()


@override_settings(WAGTAIL_CRM={"TIMELINE_PAGE_SIZE": 2})
def test_timeline_paging_keeps_the_chosen_segment(admin_client, reader):
    profile, segments = reader
    now = timezone.now()
    ingest_events(
        [
            make_event(
                "store_visit",
                profile_id=profile.pk,
                channel="store",
                occurred_at=now - timedelta(hours=hours),
            )
            for hours in range(3)
        ]
    )
    chosen = segments["newsletter"].pk

    page_two = admin_client.get(profile_url(profile), {"segment": chosen, "p": 2}).content.decode()

    assert "Page 2 of 2" in page_two
    assert rows(page_two, "crm-timeline-table")[0].startswith((now - timedelta(hours=2)).strftime("%Y-%m-%d"))
    assert "Why this visitor is in “Newsletter readers”" in page_two
    # Paging links keep the explanation; the segment form keeps the timeline page.
    assert f"?segment={chosen}&amp;p=1" in page_two
    assert '<input type="hidden" name="p" value="2">' in page_two


def test_profile_hides_segments_from_staff_without_segment_permissions(editor, reader):
    profile, segments = reader
    response = editor.get(profile_url(profile), {"segment": segments["newsletter"].pk})
    assert response.status_code == 200
    content = response.content.decode()
    assert "Ann Reader" in content
    assert 'id="crm-segments-section"' not in content and "Newsletter readers" not in content


def test_profile_with_no_segments_defined(admin_client, db):
    profile = VisitorProfile.objects.create(first_name="Bo")
    content = admin_client.get(profile_url(profile)).content.decode()
    assert "No segments have been defined yet." in content
