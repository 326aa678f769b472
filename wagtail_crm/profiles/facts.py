"""``VisitorProfile.facts``: the summary of a timeline that segment rules read without querying it.

Shape (every key optional; absent means zero/none)::

    {
      "counts": {"page_view": 12, "checkout_completed": 2, ...},   # all-time, per kind
      "last": {"page_view": "2026-11-20T10:00:00+00:00", ...},     # latest occurrence, per kind
      "pages": {"42": 5, ...},       # views of page 42 *or any page under it* (section counts)
      "orders": 2, "spend": 84.5,    # purchases online (checkout_completed) and offline
      "daily": {                     # the last FACTS_DAILY_DAYS days (UTC dates), for "within D days" rules
        "2026-11-20": {"page_view": 3, "checkout_completed": 1,   # counts per kind that day
                       "@orders": 1, "@spend": 40.0,              # purchases that day
                       "@pages": {"42": 3}},                      # views of page 42 or a page under it
      },
      "survey": {"<question>": "<answer>" or ["<answer>", ...]},  # latest answer(s) per question, as text
      "points": 120,                 # points balance as earned/redeemed events report it
      "@seen": {"<page id>:<block id>": [variant, seen at, goal kind, days]},  # see below
    }

``@seen`` remembers, per personalised block, the variant the visitor last saw (``seen at``: a UTC ISO time
with microseconds, so that stamps compare as strings) and the goal that would convert it within ``days``
(``wagtail_crm/content/stats.py``). Entries are dropped once their window has passed. No segment rule reads it.

Keys starting with "@" can never clash with an interaction kind (kinds are slugs). Segment rules read these
keys both in Python and in SQL (``wagtail_crm/segments/expressions.py``): change the shape in both places.

Only the ingest job (and a merge) writes facts, inside the transaction that writes the interactions.
"""

from datetime import UTC, timedelta
from decimal import Decimal, InvalidOperation

from wagtail_crm.conf import get_setting
from wagtail_crm.profiles.models import PURCHASE_KINDS, InteractionKind

MAX_AMOUNT = Decimal(10) ** 12
SEEN_KEY = "@seen"
MAX_SEEN = 100  # blocks remembered per profile (the latest seen win)


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


def _add_money(total, amount):
    return float(round(Decimal(str(total)) + Decimal(str(amount)), 2))


def _scalar_text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal | str):
        return str(value)
    return None


def answer_text(answer):
    """A survey answer as the facts keep it: text, or a list of texts for a multiple choice (None: unusable)."""
    if isinstance(answer, list | tuple):
        texts = [_scalar_text(item) for item in answer]
        return [text for text in texts if text is not None]
    return _scalar_text(answer)


def apply_interaction(facts, kind, occurred_at, data, page_keys=()):
    """Fold one interaction into ``facts`` (mutated in place)."""
    stamp = occurred_at.isoformat()
    # Daily buckets are UTC dates, whatever offset the event carried, so that "within D days" means the same
    # thing to every rule and to the SQL that counts segment members.
    day_key = occurred_at.astimezone(UTC).date().isoformat()
    counts = facts.setdefault("counts", {})
    counts[kind] = counts.get(kind, 0) + 1
    last = facts.setdefault("last", {})
    if last.get(kind, "") < stamp:
        last[kind] = stamp

    day = facts.setdefault("daily", {}).setdefault(day_key, {})
    day[kind] = day.get(kind, 0) + 1

    if page_keys:
        pages = facts.setdefault("pages", {})
        day_pages = day.setdefault("@pages", {})
        for key in page_keys:
            pages[key] = pages.get(key, 0) + 1
            day_pages[key] = day_pages.get(key, 0) + 1

    if kind in PURCHASE_KINDS:
        facts["orders"] = facts.get("orders", 0) + 1
        day["@orders"] = day.get("@orders", 0) + 1
        amount = _amount(data.get("amount"))
        if amount is not None:
            facts["spend"] = _add_money(facts.get("spend", 0), amount)
            day["@spend"] = _add_money(day.get("@spend", 0), amount)
    elif kind == InteractionKind.SURVEY_SUBMITTED:
        answers = data.get("answers")
        if isinstance(answers, dict):
            survey = facts.setdefault("survey", {})
            for question, answer in answers.items():
                answer = answer_text(answer)
                if answer is not None:
                    survey[str(question)] = answer
    elif kind == InteractionKind.POINTS_EARNED:
        facts["points"] = facts.get("points", 0) + _points(data.get("points"))
    elif kind == InteractionKind.POINTS_REDEEMED:
        facts["points"] = facts.get("points", 0) - _points(data.get("points"))


def prune(facts, now):
    """Keep the facts bounded: daily counters for the configured window, the most viewed pages."""
    limit = get_setting("FACTS_MAX_PAGES")
    daily = facts.get("daily")
    if daily:
        oldest = (now.astimezone(UTC) - timedelta(days=get_setting("FACTS_DAILY_DAYS"))).date().isoformat()
        for day in [day for day in daily if day < oldest]:
            del daily[day]
        for bucket in daily.values():
            if len(bucket.get("@pages", ())) > limit:
                bucket["@pages"] = _most_viewed(bucket["@pages"], limit)
    pages = facts.get("pages")
    if pages and len(pages) > limit:
        facts["pages"] = _most_viewed(pages, limit)
    if SEEN_KEY in facts:
        seen = _current_seen(facts[SEEN_KEY], now)
        if seen:
            facts[SEEN_KEY] = seen
        else:
            del facts[SEEN_KEY]  # its absence is what lets ingest skip the conversion check
    return facts


def _most_viewed(pages, limit):
    return dict(sorted(pages.items(), key=lambda item: item[1], reverse=True)[:limit])


# -- "@seen": variants of personalised blocks awaiting their conversion goal (content/stats.py) ------------


def utc_stamp(moment):
    """``moment`` as the fixed-format UTC ISO text ``@seen`` keeps (it compares correctly as a string)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def seen_is_valid(entry):
    return (
        isinstance(entry, list)
        and len(entry) == 4
        and isinstance(entry[1], str)
        and isinstance(entry[3], int)
        and not isinstance(entry[3], bool)
    )


def _current_seen(seen, now):
    """The ``@seen`` entries whose conversion window is still open (at most ``MAX_SEEN``, the latest)."""
    if not isinstance(seen, dict):
        return {}
    cutoffs = {}  # days -> oldest stamp still in the window: computed once per distinct window
    current = {}
    for key, entry in seen.items():
        if not seen_is_valid(entry):
            continue
        days = entry[3]
        if days not in cutoffs:
            cutoffs[days] = utc_stamp(now - timedelta(days=days))
        if entry[1] >= cutoffs[days]:
            current[key] = entry
    if len(current) > MAX_SEEN:
        current = dict(sorted(current.items(), key=lambda item: item[1][1], reverse=True)[:MAX_SEEN])
    return current


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
            if isinstance(value, dict):  # "@pages"
                counts = bucket.setdefault(name, {})
                for key, count in value.items():
                    counts[key] = counts.get(key, 0) + count
            elif name == "@spend":
                bucket[name] = _add_money(bucket.get(name, 0), value)
            else:
                bucket[name] = bucket.get(name, 0) + value
    target["orders"] = target.get("orders", 0) + source.get("orders", 0)
    target["spend"] = _add_money(target.get("spend", 0), source.get("spend", 0))
    target["points"] = target.get("points", 0) + source.get("points", 0)
    # The logged-in person's own answers win over what the anonymous browser answered.
    target["survey"] = {**source.get("survey", {}), **target.get("survey", {})}
    # Per block, the latest exposure of either browser is the one a later goal converts.
    if isinstance(source.get(SEEN_KEY), dict) and source[SEEN_KEY]:
        seen = target[SEEN_KEY] if isinstance(target.get(SEEN_KEY), dict) else {}
        for key, entry in source[SEEN_KEY].items():
            if seen_is_valid(entry) and (not seen_is_valid(seen.get(key)) or seen[key][1] < entry[1]):
                seen[key] = entry
        target[SEEN_KEY] = seen
    return target
