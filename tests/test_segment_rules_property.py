"""One definition, two evaluations: for random profiles and random rule parameters, the Python verdict of
every built-in rule (and of ALL/ANY/NOT combinations) equals membership in the rule's ``Q`` queryset.

Runs on SQLite, and on PostgreSQL with CRM_TEST_DB=postgres (CI runs both).
"""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wagtail_crm.profiles.models import VisitorProfile
from wagtail_crm.segments.models import Segment
from wagtail_crm.segments.rules import BUILTIN_RULES

pytestmark = pytest.mark.django_db

# Small pools, so that rule values often hit profile values exactly: text that makes ASCII-only case-folding,
# LIKE wildcards and escaping, and non-ASCII letters matter; numbers on and around each other's boundaries.
TEXTS = ["news", "News", "NEWS", "Ésprit", "ésprit", "ß", "SS", "İ", "i", "50%_off", "a%b", "a_b", "x\\y"]
text = st.one_of(st.sampled_from(TEXTS), st.text(alphabet="aAéÉ%_\\", min_size=1, max_size=3))
maybe_text = st.one_of(st.just(""), text)
# Cents that do not add up exactly in floating point (0.1 + 0.2, 0.1 + 0.7).
MONEY = [0.0, 0.1, 0.2, 0.3, 0.7, 0.8, 1.0, 10.5]
money = st.sampled_from(MONEY)
THRESHOLDS = ["0", "0.1", "0.3", "0.8", "0.9", "1.0", "1.1", "10.5", "11.5"]

KINDS = ["page_view", "checkout_completed", "checkout_abandoned", "signup", "my_custom_kind"]
PAGE_KEYS = ["1", "2", "999"]  # the root page, the default "Welcome" page, a page that does not exist
QUESTIONS = ["colour", "q.1", 'say "hi"', "42"]
ANSWERS = ["red", "Red", "blue", "", "true", "1"]
counts = st.integers(min_value=0, max_value=4)


def facts_strategy():
    days_ago = st.sampled_from([0, 1, 2, 3, 4, 88, 89, 90, 91])
    day_bucket = st.fixed_dictionaries(
        {},
        optional={
            **{kind: counts for kind in KINDS},
            "@orders": counts,
            "@spend": money,
            "@pages": st.dictionaries(st.sampled_from(PAGE_KEYS), counts, max_size=3),
        },
    )
    answer = st.one_of(st.sampled_from(ANSWERS), st.lists(st.sampled_from(ANSWERS), max_size=3))
    return st.fixed_dictionaries(
        {"daily": st.dictionaries(days_ago, day_bucket, max_size=5)},
        optional={
            "counts": st.dictionaries(st.sampled_from(KINDS), counts, max_size=4),
            "pages": st.dictionaries(st.sampled_from(PAGE_KEYS), counts, max_size=3),
            "orders": counts,
            "spend": money,
            "points": st.integers(min_value=-3, max_value=3),
            "tier": st.sampled_from(["Gold", "gold", "Silver", "ÉLITE", "élite", 3, True, ["gold"]]),
            "survey": st.dictionaries(st.sampled_from(QUESTIONS), answer, max_size=3),
        },
    )


@st.composite
def profile_data(draw, now, users):
    elapsed = draw(
        st.one_of(
            st.integers(min_value=0, max_value=8).map(lambda d: timedelta(days=d)),  # exactly on a boundary
            st.integers(min_value=0, max_value=8).map(lambda d: timedelta(days=d, microseconds=-1)),
            st.integers(min_value=0, max_value=100 * 86400).map(lambda s: timedelta(seconds=s)),
        )
    )
    facts = draw(facts_strategy())
    if "daily" in facts:  # day keys are ISO dates, counted back from today (UTC)
        facts["daily"] = {
            (now - timedelta(days=ago)).date().isoformat(): v for ago, v in facts["daily"].items()
        }
    data = {
        "visit_count": draw(st.integers(min_value=0, max_value=5)),
        "last_seen": now - elapsed,
        "email_consent": draw(st.booleans()),
        "phone_consent": draw(st.booleans()),
        "facts": facts,
        "user": draw(st.sampled_from(users)),
    }
    for touch in ("first", "last"):
        for name in ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"):
            data[f"{touch}_{name}"] = draw(maybe_text)
        data[f"{touch}_referrer_host"] = draw(maybe_text)
        data[f"{touch}_offer_code"] = draw(maybe_text)
    return data


touch = st.sampled_from(["either", "first", "last"])
window = st.sampled_from([None, 1, 2, 3, 4, 5, 89, 90])
time_text = st.times().map(lambda t: t.replace(microsecond=0).isoformat())


def rule_strategies(group_ids):
    return {
        "visitor_type": st.fixed_dictionaries({"visitor": st.sampled_from(["first_time", "returning"])}),
        "visit_count": st.fixed_dictionaries(
            {"operator": st.sampled_from(["gte", "lte", "eq"]), "count": st.integers(0, 5)}
        ),
        "days_since_last_visit": st.fixed_dictionaries(
            {
                "operator": st.sampled_from(["gte", "lte"]),
                "days": st.one_of(st.integers(0, 8), st.integers(0, 100)),
            }
        ),
        "campaign": st.fixed_dictionaries(
            {
                "parameter": st.sampled_from(
                    ["utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"]
                ),
                "touch": touch,
                "operator": st.sampled_from(["equals", "contains"]),
                "value": text,
            }
        ),
        "referrer": st.fixed_dictionaries({"touch": touch, "host": text}),
        "offer_code": st.fixed_dictionaries({"touch": touch, "code": maybe_text}),
        "logged_in": st.fixed_dictionaries({"state": st.sampled_from(["yes", "no"])}),
        "group": st.fixed_dictionaries({"group": st.sampled_from([str(pk) for pk in group_ids] + ["99999"])}),
        "consent": st.fixed_dictionaries({"channel": st.sampled_from(["email", "phone"])}),
        "page_views": st.fixed_dictionaries(
            {"page": st.sampled_from([1, 2]), "count": st.integers(1, 5), "within_days": window}
        ),
        "purchases": st.fixed_dictionaries(
            {
                "measure": st.sampled_from(["orders", "spend"]),
                "amount": st.sampled_from(THRESHOLDS),
                "within_days": window,
            }
        ),
        "activity": st.fixed_dictionaries(
            {
                "kind": st.sampled_from(["", "page_view", "checkout_completed", "signup"]),
                "custom_kind": st.sampled_from(["", "my_custom_kind", "never_seen"]),
                "count": st.integers(1, 5),
                "within_days": window,
            }
        ).filter(lambda v: v["kind"] or v["custom_kind"]),
        "abandoned_checkout": st.fixed_dictionaries({"within_days": st.sampled_from([1, 2, 3, 4, 5, 90])}),
        "survey_answer": st.fixed_dictionaries(
            {"question": st.sampled_from([*QUESTIONS, "never_asked"]), "answer": st.sampled_from(ANSWERS)}
        ),
        "loyalty_points": st.fixed_dictionaries(
            {"operator": st.sampled_from(["gte", "lte"]), "points": st.integers(-3, 3)}
        ),
        "loyalty_tier": st.fixed_dictionaries(
            {"tier": st.sampled_from(["gold", "GOLD", "élite", "bronze", "3", "true", "1"])}
        ),
        "time_window": st.fixed_dictionaries(
            {
                "days": st.lists(st.sampled_from([str(d) for d in range(7)]), unique=True, max_size=3),
                "start": st.one_of(st.none(), time_text),
                "end": st.one_of(st.none(), time_text),
            }
        ),
    }


def rule_entry(name, data, strategies):
    return {"type": name, "value": data.draw(strategies[name], label=name)}


@pytest.fixture
def world():
    a, b = Group.objects.create(name="Staff picks"), Group.objects.create(name="Wholesale")
    users = []
    for index, groups in enumerate([[a], [a, b], []]):
        user = User.objects.create_user(f"person{index}")
        user.groups.set(groups)
        users.append(user)
    return {"group_ids": [a.pk, b.pk], "users": users}


def assert_agree(segment, data, users, now):
    """Store 1–6 random profiles; the Python verdicts must equal the Q's members, exactly."""
    count = data.draw(st.integers(min_value=1, max_value=6), label="profiles")
    owners = data.draw(st.permutations([None, None, None, *users]), label="owners")[:count]
    owners += [None] * (count - len(owners))
    with transaction.atomic():
        created = []
        for owner in owners:
            fields = data.draw(profile_data(now, [owner]))
            created.append(VisitorProfile.objects.create(**fields))
        pks = [profile.pk for profile in created]
        in_sql = set(
            VisitorProfile.objects.filter(pk__in=pks)
            .filter(segment.as_q(now=now))
            .values_list("pk", flat=True)
        )
        # Profiles as the database returns them, loaded plainly (group rules ask once) ...
        plain = VisitorProfile.objects.filter(pk__in=pks)
        in_python = {profile.pk for profile in plain if segment.matches(profile, now=now)}
        assert in_python == in_sql
        # ... and with the annotations the request path adds to its one profile query.
        annotations = {}
        for stream in (segment.rules, segment.exclude_rules):
            for child in stream:
                annotations.update(child.block.profile_annotations(child.value))
        annotated = VisitorProfile.objects.filter(pk__in=pks).annotate(**annotations)
        assert {profile.pk for profile in annotated if segment.matches(profile, now=now)} == in_sql
        transaction.set_rollback(True)


def test_every_builtin_rule_has_a_strategy(world):
    assert set(rule_strategies(world["group_ids"])) == {name for name, _ in BUILTIN_RULES}


@pytest.mark.parametrize("rule_name", [name for name, _ in BUILTIN_RULES])
def test_rule_python_verdict_equals_sql(world, rule_name):
    strategies = rule_strategies(world["group_ids"])

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def check(data):
        now = timezone.now() - timedelta(minutes=data.draw(st.integers(0, 60 * 24 * 7), label="minutes"))
        segment = Segment(name="s", slug="s", rules=[rule_entry(rule_name, data, strategies)])
        assert_agree(segment, data, world["users"], now)

    check()


def test_combinations_python_verdict_equals_sql(world):
    strategies = rule_strategies(world["group_ids"])
    names = sorted(strategies)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def check(data):
        now = timezone.now()
        rules = [
            rule_entry(name, data, strategies)
            for name in data.draw(st.lists(st.sampled_from(names), max_size=3))
        ]
        excludes = [
            rule_entry(name, data, strategies)
            for name in data.draw(st.lists(st.sampled_from(names), max_size=2))
        ]
        segment = Segment(
            name="s",
            slug="s",
            match=data.draw(st.sampled_from(["all", "any"])),
            rules=rules,
            exclude_rules=excludes,
        )
        assert_agree(segment, data, world["users"], now)

    check()
