"""Custom segment rules added with the ``register_wagtail_crm_rule`` hook, as docs/how-to/custom-rules.md shows.

``tests/testapp/wagtail_hooks.py`` registers the documented example, "email domain is …".
"""

import inspect
import json
import re
from io import StringIO
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import transaction
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wagtail import blocks, hooks
from wagtail.test.utils.form_data import nested_form_data, streamfield

from tests.testapp.wagtail_hooks import EmailDomainRule
from wagtail_crm.profiles.identity import sign_visitor_id
from wagtail_crm.profiles.models import VisitorProfile
from wagtail_crm.segments.models import Segment
from wagtail_crm.segments.rules import RULE_HOOK, get_rule_blocks

from .conftest import BROWSER

REPO = Path(__file__).resolve().parent.parent

EMAILS = [
    "ann@example.org",
    "BOB@Example.ORG",
    "ß@EXAMPLE.ORG",
    "a%b@example.org",
    "carl@mail.example.org",  # another domain (a subdomain)
    "dora@notexample.org",
    "eve@example.org.uk",
    "",
    "öz@exÄmple.org",
    "öz@exämple.org",
    "x@example_org",
]


def domain_segment(domain):
    return Segment(name="s", slug="s", rules=[{"type": "email_domain", "value": {"domain": domain}}])


def verdicts(segment, profiles):
    """(emails the Python verdict accepts, emails the segment's Q selects)."""
    in_python = {profile.email for profile in profiles if segment.matches(profile)}
    in_sql = set(
        VisitorProfile.objects.filter(pk__in=[p.pk for p in profiles])
        .filter(segment.as_q())
        .values_list("email", flat=True)
    )
    return in_python, in_sql


@pytest.fixture
def admin_client(client):
    client.force_login(User.objects.create_superuser("editor", "editor@example.com", "secret"))
    return client


def rule_types_offered(html):
    """For each StreamField of the form, {rule type name: options} of the rule blocks it offers."""

    def walk(node, offered):
        if isinstance(node, dict):
            args = node.get("_args")
            if node.get("_type") == "wagtail.blocks.StructBlock" and len(args) == 3:
                offered[args[0]] = {
                    k: v.get("_val", v) if isinstance(v, dict) else v for k, v in args[2].items()
                }
            for value in node.values():
                walk(value, offered)
        elif isinstance(node, list):
            for value in node:
                walk(value, offered)
        return offered

    soup = BeautifulSoup(html, "html.parser")
    return [
        walk(json.loads(element["data-w-block-data-value"]), {})
        for element in soup.select("[data-w-block-data-value]")
    ]


# -- in the admin ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_custom_rule_is_offered_in_the_segment_form(admin_client):
    response = admin_client.get(reverse("wagtail_crm_segments:add"))
    assert response.status_code == 200
    rules, exclude_rules = rule_types_offered(response.content.decode())
    for offered in (rules, exclude_rules):
        assert offered["email_domain"]["label"] == "Email domain"
        assert offered["email_domain"]["icon"] == "mail"
        # Next to the built-in rules.
        assert {"campaign", "survey_answer", "time_window"} <= set(offered)


def segment_form(domain, slug="colleagues"):
    return nested_form_data(
        {
            "name": "Colleagues",
            "slug": slug,
            "description": "",
            "active": "on",
            "starts_at": "",
            "ends_at": "",
            "match": "all",
            "rules": streamfield([("email_domain", {"domain": domain})]),
            "exclude_rules": streamfield([]),
        }
    )


@pytest.mark.django_db(transaction=True)
def test_an_editor_builds_a_segment_with_the_custom_rule(admin_client):
    for email in ["ann@example.org", "BOB@EXAMPLE.ORG", "carl@example.com"]:
        VisitorProfile.objects.create(email=email)
    response = admin_client.post(reverse("wagtail_crm_segments:add"), segment_form("Example.org"))
    assert response.status_code == 302
    segment = Segment.objects.get(slug="colleagues")
    assert sorted(segment.members().values_list("email", flat=True)) == ["BOB@EXAMPLE.ORG", "ann@example.org"]
    assert segment.member_count.count == 2  # counted after the save, like every segment
    anns = VisitorProfile.objects.get(email="ann@example.org")
    assert [(r.description, r.matched) for r in segment.explain(anns)] == [
        ("Email address at Example.org", True)
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("domain", ["ann@example.org", "@example.org", "example", "exa mple.org"])
def test_the_custom_rule_rejects_a_bad_domain_with_a_form_error(admin_client, domain):
    response = admin_client.post(reverse("wagtail_crm_segments:add"), segment_form(domain))
    assert response.status_code == 200
    assert "Type only the part after the @, e.g. example.com." in response.content.decode()
    assert not Segment.objects.exists()


@pytest.mark.django_db
def test_a_visitor_is_in_the_custom_rule_segment_on_the_live_site(client):
    Segment.objects.create(
        name="Colleagues",
        slug="colleagues",
        rules=[{"type": "email_domain", "value": {"domain": "example.org"}}],
    )
    ann = VisitorProfile.objects.create(email="Ann@Example.org")
    client.cookies["wagtail_crm_vid"] = sign_visitor_id(ann.visitor_id)
    assert client.get("/my-segments/", HTTP_USER_AGENT=BROWSER).json()["segments"] == ["colleagues"]
    client.cookies["wagtail_crm_vid"] = sign_visitor_id(VisitorProfile.objects.create().visitor_id)
    assert client.get("/my-segments/", HTTP_USER_AGENT=BROWSER).json()["segments"] == []


# -- one definition, two evaluations ---------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "domain, expected",
    [
        ("example.org", {"ann@example.org", "BOB@Example.ORG", "ß@EXAMPLE.ORG", "a%b@example.org"}),
        (" EXAMPLE.org ", {"ann@example.org", "BOB@Example.ORG", "ß@EXAMPLE.ORG", "a%b@example.org"}),
        ("mail.example.org", {"carl@mail.example.org"}),
        # Case-insensitive for A–Z only, in Python and in SQL alike.
        ("exÄmple.org", {"öz@exÄmple.org"}),
        # % and _ are plain characters, not wildcards.
        ("ex%mple.org", set()),
        ("example.org.uk", {"eve@example.org.uk"}),
        ("example_org", {"x@example_org"}),
        ("xample_org", set()),
    ],
)
def test_python_and_sql_verdicts_agree_on_chosen_addresses(domain, expected):
    profiles = [VisitorProfile.objects.create(email=email) for email in EMAILS]
    in_python, in_sql = verdicts(domain_segment(domain), profiles)
    assert in_python == expected
    assert in_sql == expected


# The test of docs/how-to/custom-rules.md, "Test it": random addresses, many of them at the rule's domain
# with the case of its letters changed at random, so that matches and near misses are both common.
# With the dotted İ and the Kelvin sign K, whose Unicode case mappings differ from Python to each database.
LETTERS = "aAäÄßİKx%_."
domains = st.text(alphabet=LETTERS, min_size=1, max_size=5)


@st.composite
def addresses(draw, domain):
    """An address at ``domain`` (letters in random case, maybe a longer domain), or any address at all."""
    local = draw(st.text(alphabet="ax%_", max_size=3))
    recased = "".join(draw(st.sampled_from(sorted({c, c.lower(), c.upper()}))) for c in domain)
    near = draw(st.sampled_from(["", "x", "."])) + recased
    return draw(st.sampled_from([f"{local}@{near}", f"{local}@{recased}", draw(st.text(LETTERS + "@"))]))


@pytest.mark.django_db
def test_python_and_sql_verdicts_agree_for_random_addresses():
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def check(data):
        domain = data.draw(domains, label="domain")
        emails = data.draw(st.lists(addresses(domain), min_size=1, max_size=5), label="emails")
        segment = Segment(name="s", slug="s", rules=[{"type": "email_domain", "value": {"domain": domain}}])
        with transaction.atomic():
            profiles = [VisitorProfile.objects.create(email=email) for email in emails]
            in_python = {p.pk for p in profiles if segment.matches(p)}
            in_sql = set(
                VisitorProfile.objects.filter(pk__in=[p.pk for p in profiles])
                .filter(segment.as_q())
                .values_list("pk", flat=True)
            )
            assert in_python == in_sql
            transaction.set_rollback(True)

    check()


@pytest.mark.django_db
def test_the_python_verdict_makes_no_query(django_assert_num_queries):
    segment = domain_segment("example.org")
    ann = VisitorProfile.objects.create(email="ann@example.org")
    with django_assert_num_queries(0):
        assert segment.matches(ann)
        assert not segment.matches(VisitorProfile(visitor_id="x"))  # a visitor not stored yet


# -- registering rules -----------------------------------------------------------------------------------


def test_registered_rules_follow_the_built_in_ones():
    names = [name for name, _block in get_rule_blocks()]
    assert names[-1] == "email_domain"
    assert names.index("campaign") < names.index("email_domain")


def test_a_hook_may_return_a_list_of_rules():
    with hooks.register_temporarily(
        RULE_HOOK, lambda: [("domain_a", EmailDomainRule()), ("b", EmailDomainRule())]
    ):
        assert [name for name, _block in get_rule_blocks()][-2:] == ["domain_a", "b"]


@pytest.mark.parametrize(
    "registered, message",
    [
        (
            ("plain", blocks.CharBlock()),
            "register_wagtail_crm_rule: 'plain' must be a wagtail_crm.segments.rules.RuleBlock instance, "
            "got CharBlock.",
        ),
        (
            ("plain", blocks.StructBlock([("domain", blocks.CharBlock())])),
            "register_wagtail_crm_rule: 'plain' must be a wagtail_crm.segments.rules.RuleBlock instance, "
            "got StructBlock.",
        ),
        (
            ("email_domain", EmailDomainRule()),
            "register_wagtail_crm_rule: a rule named 'email_domain' is already registered.",
        ),
        (
            [("campaign", EmailDomainRule())],
            "register_wagtail_crm_rule: a rule named 'campaign' is already registered.",
        ),
    ],
    ids=["not-a-block", "not-a-rule-block", "duplicate-custom", "duplicate-built-in"],
)
def test_a_bad_registration_is_refused_with_a_clear_message(registered, message):
    with hooks.register_temporarily(RULE_HOOK, lambda: registered):
        with pytest.raises(ImproperlyConfigured) as raised:
            get_rule_blocks()
    assert str(raised.value) == message


@pytest.mark.django_db
def test_registering_a_rule_makes_no_migration_of_wagtail_crm():
    assert "email_domain" in Segment._meta.get_field("rules").stream_block.child_blocks
    assert "email_domain" in Segment._meta.get_field("exclude_rules").stream_block.child_blocks
    out = StringIO()
    call_command("makemigrations", "wagtail_crm", check=True, dry_run=True, stdout=out)
    assert "No changes detected" in out.getvalue()


# -- the worked example ----------------------------------------------------------------------------------


def python_blocks(markdown):
    return re.findall(r"^```python\n(.*?)^```", markdown, re.MULTILINE | re.DOTALL)


def test_the_documented_example_is_the_example_sites_rule_and_the_one_tested_here():
    guide = (REPO / "docs" / "how-to" / "custom-rules.md").read_text()
    rules_py = (REPO / "example_site" / "home" / "rules.py").read_text()
    hooks_py = (REPO / "example_site" / "home" / "wagtail_hooks.py").read_text()
    code = python_blocks(guide)
    # Step 1 shows home/rules.py without its docstring, step 2 shows home/wagtail_hooks.py.
    assert code[0] == rules_py[rules_py.index("from django") :]
    assert code[1] == hooks_py
    assert inspect.getsource(EmailDomainRule) in rules_py
    # "Test it" shows the property test of this file.
    (snippet,) = [block for block in code if "@given" in block]
    assert snippet[snippet.index("# With the dotted") :] in Path(__file__).read_text()
