"""Smoke test of the example site, run as a user would run it: ``manage.py`` in subprocesses.

The example site has its own settings (``example_site.settings.test``), so it cannot share this test
process; every step is a ``manage.py`` command against a temporary SQLite file (one per test, copied from a
database migrated once for the module).
"""

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MANAGE = REPO / "example_site" / "manage.py"

pytestmark = pytest.mark.slow

SERVE_HOME = """
import json
from django.test import Client
from wagtail_crm import segments_for
from wagtail_crm.profiles.identity import read_visitor_cookie
from wagtail_crm.profiles.models import Interaction, VisitorProfile

client = Client(HTTP_USER_AGENT="Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0 Safari/537.36")
before = VisitorProfile.objects.count()
pages = {}
segments = {}
for path in ["/", "/shop/shoes/", "/blog/", "/newsletter/"]:
    response = client.get(path, {"utm_source": "smoke", "utm_campaign": "smoke-test"} if path == "/" else {})
    pages[path] = [response.status_code, response.content.decode()]
    segments[path] = sorted(segment.slug for segment in segments_for(response.wsgi_request))
cookie = client.cookies.get("wagtail_crm_vid")
staff = Client()
admin_login = staff.login(username="admin", password="changeme")
admin_status = staff.get("/admin/").status_code
visitor_id = read_visitor_cookie(cookie.value)[0] if cookie else None
profile = VisitorProfile.objects.filter(visitor_id=visitor_id).first() if visitor_id else None
print(json.dumps({
    "pages": pages,
    "profiles_before": before,
    "profiles_after": VisitorProfile.objects.count(),
    "cookie": bool(cookie),
    "admin": [admin_login, admin_status],
    "segments": segments,
    "profile": profile and {
        "visits": profile.visit_count,
        "source": profile.first_utm_source,
        "campaign": profile.first_utm_campaign,
        "paths": sorted(
            Interaction.objects.filter(profile=profile, kind="page_view").values_list("data__path", flat=True)
        ),
    },
}))
"""


SEGMENTS = """
import json
from datetime import timedelta
from django.utils import timezone
from wagtail.models import ModelLogEntry
from wagtail_crm.profiles.models import VisitorProfile
from wagtail_crm.segments.models import Segment

now = timezone.now()
saturday_noon = (now + timedelta(days=(5 - now.weekday()) % 7)).replace(hour=12, minute=0)
segments = {}
for segment in Segment.objects.select_related("member_count", "latest_revision__user"):
    timed = any(child.block_type == "time_window" for child in segment.rules)
    segments[segment.slug] = {
        "name": segment.name,
        "description": segment.description,
        "members": segment.members(now=saturday_noon if timed else now).count(),
        "counted": segment.member_count.count if hasattr(segment, "member_count") else None,
        "revision_by": segment.latest_revision and segment.latest_revision.user.username,
        "logged": list(ModelLogEntry.objects.for_instance(segment).values_list("action", flat=True)),
    }
# The example site's own rule (home/rules.py): the same verdict in Python and in SQL.
colleagues = Segment(slug="x", rules=[{"type": "email_domain", "value": {"domain": "Example.ORG"}}])
profiles = VisitorProfile.objects.filter(merged_into__isnull=True)
print(json.dumps({
    "segments": segments,
    "custom_rule": [
        sorted(p.pk for p in profiles if colleagues.matches(p)),
        sorted(colleagues.members().values_list("pk", flat=True)),
    ],
}))
"""

DEMO_SEGMENTS = {
    "newsletter-readers": "Newsletter readers",
    "returning-customers": "Returning customers",
    "first-time-visitors": "First-time visitors",
    "lapsed": "Lapsed",
    "survey-running": "Survey: interested in running",
    "big-spenders-this-quarter": "Big spenders this quarter",
    "abandoned-checkout-this-week": "Abandoned a checkout this week",
    "window-shoppers": "Window shoppers",
    "deal-seekers": "Deal seekers",
    "weekend-customers": "Customers at the weekend",
}


def _manage_in(db_path):
    """``manage.py`` as a function: runs it with the test settings on the SQLite file ``db_path``."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_site.settings.test",
        "CRM_EXAMPLE_DB": str(db_path),
        "PYTHONDONTWRITEBYTECODE": "1",
    }

    def run(*args, cwd=REPO):
        result = subprocess.run(
            [sys.executable, str(MANAGE), *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    return run


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory):
    """A database migrated from scratch once; each test works on its own copy."""
    path = tmp_path_factory.mktemp("example_site") / "migrated.sqlite3"
    _manage_in(path)("migrate", "--no-input", "-v", "0")
    return path


@pytest.fixture
def manage(tmp_path, migrated_db):
    db_path = tmp_path / "example.sqlite3"
    shutil.copyfile(migrated_db, db_path)
    run = _manage_in(db_path)
    run.db_path = db_path
    return run


EDIT_SEGMENT = """
from wagtail_crm.segments.models import Segment
segment = Segment.objects.get(slug="lapsed")
segment.description = "Edited in the admin"
segment.save()
"""


def counts(manage):
    out = manage(
        "shell",
        "-c",
        "import json; from wagtail.models import Page, Site; from django.contrib.auth import get_user_model;"
        "from wagtail_crm.profiles.models import Interaction, VisitorProfile;"
        "print(json.dumps({'pages': Page.objects.count(), 'profiles': VisitorProfile.objects.count(),"
        "'interactions': Interaction.objects.count(), 'users': get_user_model().objects.count(),"
        "'sites': Site.objects.count(),"
        "'emails': VisitorProfile.objects.exclude(email='').count(),"
        "'consents': VisitorProfile.objects.filter(email_consent=True).count(),"
        "'linked': VisitorProfile.objects.filter(user__isnull=False).count(),"
        "'kinds': sorted(set(Interaction.objects.values_list('kind', flat=True))),"
        "'channels': sorted(set(Interaction.objects.values_list('channel', flat=True))),"
        "'campaigns': VisitorProfile.objects.exclude(first_utm_campaign='').count()}))",
    )
    return json.loads(out.strip().splitlines()[-1])


def test_example_site_checks_migrates_loads_demo_twice_and_serves_pages(manage):
    assert "no issues" in manage("check")
    manage("migrate", "--no-input", "-v", "0")
    # From the site's own folder as well as from the repository root.
    manage("makemigrations", "--check", "--dry-run", cwd=REPO / "example_site")

    first = manage("load_crm_demo", "--visitors", "30")
    assert "username: admin  password: changeme" in first
    assert "local demo only" in first
    assert "30 added, 0 already there" in first
    assert "Segments: 10 created, 0 already there" in first
    after_first = counts(manage)
    # An editor changes a demo segment: loading the demo again keeps their version.
    manage("shell", "-c", EDIT_SEGMENT)

    second = manage("load_crm_demo", "--visitors", "30")
    assert "0 added, 30 already there" in second
    assert "Segments: 0 created, 10 already there" in second
    assert counts(manage) == after_first  # running it again adds nothing

    assert after_first["profiles"] == 30
    assert after_first["sites"] == 1
    assert after_first["emails"] > 0 and after_first["consents"] > 0
    assert after_first["campaigns"] > 0
    assert {"page_view", "visit_started", "checkout_started"} <= set(after_first["kinds"])
    assert "online" in after_first["channels"]

    # A larger run only adds the visitors that are missing.
    third = manage("load_crm_demo", "--visitors", "45")
    assert "15 added, 30 already there" in third
    assert counts(manage)["profiles"] == 45
    for name in DEMO_SEGMENTS.values():
        assert f"    {name}: " in third  # with its member count

    loaded = json.loads(manage("shell", "-c", SEGMENTS).strip().splitlines()[-1])
    segments = loaded["segments"]
    assert {slug: s["name"] for slug, s in segments.items()} == DEMO_SEGMENTS
    for slug, segment in segments.items():
        assert segment["members"] > 0, slug  # the weekend segment counted on a Saturday
        assert segment["counted"] is not None, slug  # the listing has a count to show
        # Made as an editor would make it: a first revision by admin, logged as created.
        assert segment["revision_by"] == "admin", slug
        assert "wagtail.create" in segment["logged"], slug
    assert segments["lapsed"]["description"] == "Edited in the admin"
    in_python, in_sql = loaded["custom_rule"]
    assert in_python == in_sql and len(in_python) > 0

    served = json.loads(manage("shell", "-c", SERVE_HOME).strip().splitlines()[-1])
    for path, (status, _html) in served["pages"].items():
        assert status == 200, path
    assert "Leather goods that last" in served["pages"]["/"][1]
    assert "Caring for leather in winter" in served["pages"]["/blog/"][1]
    assert served["cookie"]
    assert served["profiles_after"] == served["profiles_before"] + 1
    profile = served["profile"]
    assert profile["visits"] == 1
    assert (profile["source"], profile["campaign"]) == ("smoke", "smoke-test")
    assert profile["paths"] == ["/", "/blog/", "/newsletter/", "/shop/shoes/"]
    # The documented demo login opens the Wagtail admin.
    assert served["admin"] == [True, 200]
    # Segments are evaluated on the live site: a new visitor is a first-time visitor on every page of the visit.
    assert all("first-time-visitors" in slugs for slugs in served["segments"].values())
    assert not any("returning-customers" in slugs for slugs in served["segments"].values())


HOME_PAGE = """
import json
from bs4 import BeautifulSoup
from django.test import Client
from django.urls import reverse
from home.models import HomePage
from wagtail_crm.profiles.identity import sign_visitor_id
from wagtail_crm.segments.models import Segment

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0 Safari/537.36"
segments = {segment.slug: segment for segment in Segment.objects.all()}
members = {slug: segment.members() for slug, segment in segments.items()}


def seen(response):
    soup = BeautifulSoup(response.content, "html.parser")
    offer = soup.select_one(".crm-offer")
    return {
        "status": response.status_code,
        "private": "private" in response.get("Cache-Control", ""),
        "greeting": soup.select_one(".greeting").get_text(strip=True),
        "hero": [h.get_text(strip=True) for h in soup.select(".block-personalised h2")],
        "offer": offer and {
            "headline": offer.select_one(".crm-offer__headline").get_text(strip=True),
            "code": offer.select_one("code").get_text(strip=True),
            "ends": offer.select_one("time")["datetime"],
        },
    }


def visit(profile=None, **params):
    client = Client(HTTP_USER_AGENT=BROWSER)
    if profile is not None:
        client.cookies["wagtail_crm_vid"] = sign_visitor_id(profile.visitor_id)
    return seen(client.get("/", params))


# A demo customer who is not a newsletter reader nor lapsed, and gave their name at a checkout.
customer = (
    members["returning-customers"]
    .exclude(pk__in=members["newsletter-readers"].values("pk"))
    .exclude(pk__in=members["lapsed"].values("pk"))
    .exclude(first_name="")
    .order_by("pk")
    .first()
)
lapsed = members["lapsed"].order_by("pk").first()
home = HomePage.objects.get()
revision = home.latest_revision
staff = Client()
staff.login(username="admin", password="changeme")
print(json.dumps({
    "new": visit(),
    "newsletter": visit(utm_source="newsletter"),
    "customer": customer and dict(visit(customer), name=customer.first_name),
    "lapsed": lapsed and visit(lapsed),
    "revision": [home.live, home.has_unpublished_changes, revision.user.username, home.revisions.count()],
    "edit": staff.get(reverse("wagtailadmin_pages:edit", args=[home.pk])).status_code,
    "preview": {
        slug: seen(staff.get(reverse("wagtailadmin_pages:view_draft", args=[home.pk]),
                             {"mode": "crm-segment:%d" % segment.pk}))
        for slug, segment in segments.items() if slug in ("lapsed", "newsletter-readers")
    },
}))
"""

# What the home page shows each audience (example_site/home/demo_data.py).
HERO_NEWSLETTER = "Thanks for reading our newsletter"
HERO_RETURNING = "Good to see you again"
HERO_FIRST_TIME = "New here? We make shoes and bags by hand"
HERO_DEFAULT = "Made to last, made to mend"
OFFER_HEADLINE = "We have missed you: 15% off for two weeks"


def test_demo_home_page_shows_each_audience_its_hero_and_the_lapsed_their_offer(manage):
    started = datetime.now(UTC)
    manage("load_crm_demo", "--visitors", "45")
    finished = datetime.now(UTC)
    home = json.loads(manage("shell", "-c", HOME_PAGE).strip().splitlines()[-1])

    # A new visitor: the first-time hero; from the newsletter: the newsletter hero (the first match wins).
    assert home["new"]["hero"] == [HERO_FIRST_TIME]
    assert home["newsletter"]["hero"] == [HERO_NEWSLETTER]
    assert home["new"]["greeting"] == home["newsletter"]["greeting"] == "Welcome!"
    # A stored customer of the demo: the returning hero, greeted by name.
    customer = home["customer"]
    assert customer is not None, "the demo has no customer outside the newsletter and lapsed segments"
    assert customer["hero"] == [HERO_RETURNING]
    assert customer["greeting"] == f"Welcome back, {customer['name']}!"
    # The offer is for lapsed visitors only, with its code, for 14 days from loading the demo.
    for who in ("new", "newsletter", "customer"):
        assert home[who]["offer"] is None, who
    offer = home["lapsed"]["offer"]
    assert offer["headline"] == OFFER_HEADLINE and offer["code"] == "COMEBACK15"
    ends = datetime.fromisoformat(offer["ends"]) - timedelta(days=14)
    assert started - timedelta(seconds=1) <= ends <= finished
    # Every one of these responses depends on the visitor: kept out of shared caches.
    assert all(home[who]["private"] for who in ("new", "newsletter", "customer", "lapsed"))
    assert all(home[who]["status"] == 200 for who in ("new", "newsletter", "customer", "lapsed"))

    # Editors: the body is a published revision by admin, the editor opens, previews show each segment.
    assert home["revision"] == [True, False, "admin", 1]
    assert home["edit"] == 200
    as_lapsed, as_newsletter = home["preview"]["lapsed"], home["preview"]["newsletter-readers"]
    assert as_lapsed["hero"] == [HERO_DEFAULT] and as_lapsed["offer"]["code"] == "COMEBACK15"
    assert as_newsletter["hero"] == [HERO_NEWSLETTER] and as_newsletter["offer"] is None

    # Loading the demo again leaves the home page as it is (an editor's changes survive).
    manage("load_crm_demo", "--visitors", "45")
    again = json.loads(manage("shell", "-c", HOME_PAGE).strip().splitlines()[-1])
    assert again["revision"] == home["revision"]

    # The benchmarks measure against this site served as plain Wagtail, wagtail_crm not installed at all:
    # the CRM's blocks are skipped there, and its template tags stand in (benchmarks/settings.py).
    plain = subprocess.run(
        [sys.executable, "-c", SERVE_PLAIN],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
             "BENCH_PLAIN": "1", "BENCH_SQLITE_PATH": str(manage.db_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert plain.returncode == 0, plain.stderr
    served = json.loads(plain.stdout.strip().splitlines()[-1])
    assert served["installed"] is False
    assert served["/"][0] == 200 and "Leather goods that last" in served["/"][1]
    assert "Welcome!" in served["/"][1] and OFFER_HEADLINE not in served["/"][1]
    assert served["/shop/shoes/"][0] == 200


SERVE_PLAIN = """
import json
import django
django.setup()
from django.apps import apps
from django.test import Client
pages = {path: Client().get(path) for path in ["/", "/shop/shoes/"]}
print(json.dumps({
    "installed": apps.is_installed("wagtail_crm"),
    **{path: [response.status_code, response.content.decode()] for path, response in pages.items()},
}))
"""
