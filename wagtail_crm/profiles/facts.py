"""``VisitorProfile.facts``: the summary of a timeline that segment rules read without querying it.

Shape (every key optional; absent means zero/none)::

    {
      "counts": {"page_view": 12, "checkout_completed": 2, ...},   # all-time, per kind
      "last": {"page_view": "2026-11-20T10:00:00+00:00", ...},     # latest occurrence, per kind
      "pages": {"42": 5, ...},       # views of page 42 *or any page under it* (section counts)
      "orders": 2, "spend": 84.5,    # purchases online (checkout_completed) and offline
      "daily": {"2026-11-20": {"page_view": 3, "spend": 40.0}},   # last FACTS_DAILY_DAYS days
      "survey": {"<question>": "<answer>"},                       # latest answer per question
      "points": 120,                 # points balance as earned/redeemed events report it
    }

Only the ingest job (and a merge) writes facts, inside the transaction that writes the interactions.
"""

from datetime import timedelta
from decimal import Decimal, InvalidOperation

from wagtail_crm.conf import get_setting
from wagtail_crm.profiles.models import PURCHASE_KINDS, InteractionKind

MAX_AMOUNT = Decimal(10) ** 12


def _amount(value):
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError, TypeError):
        return None
    # Anything beyond a trillion is a data error, and would overflow the decimal context when rounded.
    return amount if amount.is_finite() and abs(amount) < MAX_AMOUNT else None


def _points(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def apply_interaction(facts, kind, occurred_at, data, page_keys=()):
    """Fold one interaction into ``facts`` (mutated in place)."""
    stamp = occurred_at.isoformat()
    counts = facts.setdefault("counts", {})
    counts[kind] = counts.get(kind, 0) + 1
    last = facts.setdefault("last", {})
    if last.get(kind, "") < stamp:
        last[kind] = stamp

    day = facts.setdefault("daily", {}).setdefault(occurred_at.date().isoformat(), {})
    day[kind] = day.get(kind, 0) + 1

    if page_keys:
        pages = facts.setdefault("pages", {})
        for key in page_keys:
            pages[key] = pages.get(key, 0) + 1

    if kind in PURCHASE_KINDS:
        facts["orders"] = facts.get("orders", 0) + 1
        amount = _amount(data.get("amount"))
        if amount is not None:
            facts["spend"] = float(round(Decimal(str(facts.get("spend", 0))) + amount, 2))
            day["spend"] = float(round(Decimal(str(day.get("spend", 0))) + amount, 2))
    elif kind == InteractionKind.SURVEY_SUBMITTED:
        answers = data.get("answers")
        if isinstance(answers, dict):
            facts.setdefault("survey", {}).update(
                {str(k): v for k, v in answers.items() if isinstance(v, str | int | float | bool)}
            )
    elif kind == InteractionKind.POINTS_EARNED:
        facts["points"] = facts.get("points", 0) + _points(data.get("points"))
    elif kind == InteractionKind.POINTS_REDEEMED:
        facts["points"] = facts.get("points", 0) - _points(data.get("points"))


def prune(facts, now):
    """Keep the facts bounded: daily counters for the configured window, the most viewed pages."""
    daily = facts.get("daily")
    if daily:
        oldest = (now - timedelta(days=get_setting("FACTS_DAILY_DAYS"))).date().isoformat()
        for day in [day for day in daily if day < oldest]:
            del daily[day]
    pages = facts.get("pages")
    limit = get_setting("FACTS_MAX_PAGES")
    if pages and len(pages) > limit:
        keep = sorted(pages.items(), key=lambda item: item[1], reverse=True)[:limit]
        facts["pages"] = dict(keep)
    return facts


def merge_facts(target, source):
    """Combine the facts of two profiles (used when an anonymous profile is merged into another)."""
    for key in ("counts", "pages"):
        merged = target.setdefault(key, {})
        for name, value in source.get(key, {}).items():
            merged[name] = merged.get(name, 0) + value
    last = target.setdefault("last", {})
    for name, stamp in source.get("last", {}).items():
        if last.get(name, "") < stamp:
            last[name] = stamp
    daily = target.setdefault("daily", {})
    for day, values in source.get("daily", {}).items():
        bucket = daily.setdefault(day, {})
        for name, value in values.items():
            bucket[name] = round(bucket.get(name, 0) + value, 2)
    target["orders"] = target.get("orders", 0) + source.get("orders", 0)
    target["spend"] = round(target.get("spend", 0) + source.get("spend", 0), 2)
    target["points"] = target.get("points", 0) + source.get("points", 0)
    # The logged-in person's own answers win over what the anonymous browser answered.
    target["survey"] = {**source.get("survey", {}), **target.get("survey", {})}
    return target
