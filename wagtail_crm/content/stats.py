"""Impressions and conversions of personalised blocks, counted by the ingest job in daily counters.

A page view event carries the variants it showed (``impressions``, see ``rendering.note_impression``). The
ingest job (``profiles/ingest.py``) hands each event that has impressions, or whose profile has variants
awaiting a goal, to a ``VariantCounts`` for its batch, which

- counts a conversion for every variant the visitor last saw (``facts["@seen"]``, one entry per block) whose
  goal is this event's kind and which was seen at most its window of days before it;
- then counts the event's impressions and records them in ``@seen`` (the latest exposure per block wins);

and writes the batch's counters with one upsert that adds to ``VariantStats`` rows, in the ingest
transaction: an event that is already written is skipped by ingest, so nothing is counted twice.
"""

import re
from collections import defaultdict
from datetime import date, timedelta

from django.db import connection

from wagtail_crm.content.models import VariantStats
from wagtail_crm.profiles.facts import SEEN_KEY, seen_is_valid, utc_stamp
from wagtail_crm.profiles.models import kind_validator

MAX_IMPRESSIONS = 50  # per event: a page has a handful of personalised blocks
MAX_DAYS = 365  # the longest conversion window a block can choose
_KIND = re.compile(kind_validator.regex.pattern)
_TEXT_LIMIT = VariantStats._meta.get_field("block_id").max_length


def _text(value):
    return value if isinstance(value, str) and len(value) <= _TEXT_LIMIT else None


def _page_id(value):
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and value.isdigit() and len(value) < 19:
        return int(value) or None
    return None


def parse_impressions(value):
    """The usable entries of an event's ``impressions``: ``(page id, block id, variant, goal, days)`` tuples.

    Malformed entries are dropped (never the event); at most ``MAX_IMPRESSIONS`` are read.
    """
    if not isinstance(value, list):
        return []
    parsed = []
    for item in value[:MAX_IMPRESSIONS]:
        if not isinstance(item, dict):
            continue
        page, block, variant = (
            _page_id(item.get("page")),
            _text(item.get("block")),
            _text(item.get("variant")),
        )
        goal, days = item.get("goal"), item.get("days")
        if not (page and block and variant is not None and isinstance(goal, str) and _KIND.match(goal)):
            continue
        if not isinstance(days, int) or isinstance(days, bool) or days < 1:
            continue
        parsed.append((page, block, variant, goal, min(days, MAX_DAYS)))
    return parsed


class VariantCounts:
    """The counters of one ingest batch: ``{(day, page id, block id, variant): [impressions, conversions]}``."""

    def __init__(self):
        self.counts = defaultdict(lambda: [0, 0])

    def add(self, facts, event):
        """Count what ``event`` converts and shows; ``facts`` (the profile's, mutated) keeps ``@seen``.

        Conversions come first: a page view never converts the variants it shows itself.
        """
        occurred_at = event["occurred_at"]
        stamp = utc_stamp(occurred_at)
        day = stamp[:10]
        seen = facts.get(SEEN_KEY)
        if seen and isinstance(seen, dict):
            self._convert(seen, event["kind"], occurred_at, stamp, day)
        impressions = event.get("impressions")
        if impressions:
            if not isinstance(seen, dict):
                seen = facts[SEEN_KEY] = {}
            for page, block, variant, goal, days in impressions:
                self.counts[(day, page, block, variant)][0] += 1
                key = f"{page}:{block}"
                entry = seen.get(key)
                if not seen_is_valid(entry) or entry[1] <= stamp:  # events may arrive out of order
                    seen[key] = [variant, stamp, goal, days]

    def _convert(self, seen, kind, occurred_at, stamp, day):
        cutoffs = {}
        for key, entry in seen.items():
            if not seen_is_valid(entry) or entry[2] != kind or entry[1] > stamp:
                continue
            days = entry[3]
            if days not in cutoffs:
                cutoffs[days] = utc_stamp(occurred_at - timedelta(days=days))
            if entry[1] >= cutoffs[days]:
                page, _, block = key.partition(":")
                if page.isdigit() and block:
                    self.counts[(day, int(page), block, entry[0])][1] += 1

    def save(self, existing_pages):
        """Add the counters to ``VariantStats`` (one statement; rows in key order so that concurrent
        batches lock them in the same order). ``existing_pages``: ids known to exist; others are checked,
        and counters of deleted pages dropped."""
        if not self.counts:
            return
        pages = {key[1] for key in self.counts}
        unknown = pages.difference(existing_pages)
        if unknown:
            from wagtail.models import Page

            deleted = unknown - set(Page.objects.filter(pk__in=unknown).values_list("pk", flat=True))
            pages -= deleted
        rows = sorted(
            (date.fromisoformat(key[0]), *key[1:], *values)
            for key, values in self.counts.items()
            if key[1] in pages
        )
        if rows:
            _upsert(rows)


_COLUMNS = ("day", "page", "block_id", "variant", "impressions", "conversions")


def _upsert(rows):
    meta = VariantStats._meta
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    fields = [meta.get_field(name) for name in _COLUMNS]
    columns = [quote(field.column) for field in fields]
    conflict = ", ".join(
        quote(meta.get_field(name).column) for name in ("page", "block_id", "variant", "day")
    )
    on_conflict = f"ON CONFLICT ({conflict}) DO UPDATE SET " + ", ".join(
        f"{column} = {table}.{column} + EXCLUDED.{column}" for column in columns[4:]
    )
    insert = f"INSERT INTO {table} ({', '.join(columns)})"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One statement however many rows: a column array per parameter.
            arrays = ", ".join(f"%s::{field.db_type(connection)}[]" for field in fields)
            cursor.execute(
                f"{insert} SELECT * FROM unnest({arrays}) {on_conflict}",
                [list(column) for column in zip(*rows, strict=True)],
            )
            return
        # Elsewhere (SQLite) VALUES rows, in as few statements as the backend's parameter limit allows.
        size = max(1, (connection.features.max_query_params or 999) // len(columns))
        for start in range(0, len(rows), size):
            chunk = rows[start : start + size]
            values = ", ".join(["(" + ", ".join(["%s"] * len(columns)) + ")"] * len(chunk))
            cursor.execute(
                f"{insert} VALUES {values} {on_conflict}", [value for row in chunk for value in row]
            )
