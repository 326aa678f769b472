"""The ingest job: write a batch of events as interactions and bring each profile's summary up to date.

One transaction per batch: resolve (or create) the profiles, lock them, bulk-insert the interactions that are
not already written (event ids make the job idempotent), then update visit counts, last seen, attribution
and facts with one bulk update.
"""

import json
import logging
import uuid
from collections import defaultdict, namedtuple
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from wagtail_crm.conf import get_setting
from wagtail_crm.content import stats as variant_stats
from wagtail_crm.profiles import facts as profile_facts
from wagtail_crm.profiles.models import Channel, Interaction, InteractionKind, VisitorProfile, kind_validator
from wagtail_crm.signals import interactions_recorded

logger = logging.getLogger("wagtail_crm.ingest")

ATTRIBUTION_FIELDS = (
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "referrer_host",
    "landing_page",
    "offer_code",
)
# Attribution keys that make a visit a campaign "touch" (a plain direct visit does not replace last touch).
TOUCH_KEYS = ("utm_source", "utm_medium", "utm_campaign", "referrer_host", "offer_code")
_MAX_LENGTHS = {
    name: VisitorProfile._meta.get_field(f"first_{name}").max_length for name in ATTRIBUTION_FIELDS
}

# An interaction on its way to the database: building model instances costs more than writing the rows.
InteractionRow = namedtuple(
    "InteractionRow", "event_id profile_id kind channel occurred_at page_id data recorded_by_id"
)

VISIT_NAMESPACE = uuid.UUID("6f1d3c1e-7a51-4c47-9a3e-3b1f0b7e2a10")


_CHANNELS = frozenset(Channel.values)  # Channel.values builds a new list at every access


def _optional_id(value):
    """A database id from an event: an int, or a string of digits (JSON round trips); else an error."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise ValueError(f"malformed id {value!r}")


def _parse(event):
    """Validate one event dict; returns a normalised copy or None (logged) when unusable."""
    try:
        parsed = dict(event)
        parsed["id"] = uuid.UUID(str(event["id"]))
        occurred_at = event.get("occurred_at")
        if isinstance(occurred_at, str):
            occurred_at = datetime.fromisoformat(occurred_at)
        if occurred_at is None:
            occurred_at = timezone.now()
        if timezone.is_naive(occurred_at):
            occurred_at = timezone.make_aware(occurred_at)
        parsed["occurred_at"] = occurred_at
        kind_validator(event.get("kind") if isinstance(event.get("kind"), str) else "")
        parsed["channel"] = event.get("channel") or Channel.ONLINE
        if parsed["channel"] not in _CHANNELS:
            raise ValueError(f"unknown channel {parsed['channel']!r}")
        for key in ("profile_id", "user_id", "page_id", "recorded_by_id"):
            parsed[key] = _optional_id(event.get(key))
        visitor_id = event.get("visitor_id")
        if visitor_id is not None and not (isinstance(visitor_id, str) and len(visitor_id) <= 32):
            raise ValueError("malformed visitor id")
        if not (parsed["profile_id"] or parsed["user_id"] or visitor_id):
            raise ValueError("no profile, user or visitor id")
        parsed["data"] = event.get("data") or {}
        parsed["attribution"] = event.get("attribution") or {}
        parsed["profile_updates"] = event.get("profile_updates") or {}
        if not all(isinstance(parsed[key], dict) for key in ("data", "attribution", "profile_updates")):
            raise ValueError("data, attribution and profile_updates must be objects")
        if "impressions" in event:  # personalised blocks' variants: malformed ones are dropped, not the event
            parsed["impressions"] = variant_stats.parse_impressions(event["impressions"])
        return parsed
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        logger.error("Skipping invalid event %r: %s", event, exc)
        return None


def ingest_events(events):
    """Write ``events`` (dicts from ``events.make_event``). Returns how many were newly written."""
    parsed = {}
    for event in events:
        event = _parse(event)
        if event is not None:
            parsed.setdefault(event["id"], event)  # the same event twice in one batch counts once
    if not parsed:
        return 0
    with transaction.atomic():
        already = set(
            Interaction.objects.filter(event_id__in=list(parsed)).values_list("event_id", flat=True)
        )
        todo = [event for event_id, event in parsed.items() if event_id not in already]
        if not todo:
            return 0
        profiles = _resolve_profiles(todo)
        page_keys = _page_keys({event.get("page_id") for event in todo if event.get("page_id")})
        variant_counts = variant_stats.VariantCounts()
        rows, changed, contact_changed = _apply(todo, profiles, page_keys, variant_counts)
        instances = _insert_interactions(rows)
        _save_profiles(changed, contact_changed)
        variant_counts.save(page_keys)  # last: the shared counter rows stay locked until commit
        profile_ids = sorted({profile.pk for profile in changed})
        transaction.on_commit(lambda: _send_recorded(rows, instances, profile_ids))
    return len(rows)


def _send_recorded(rows, instances, profile_ids):
    # Model instances are built only when someone listens: building them costs more than writing the rows.
    # COPY returns no ids, so on PostgreSQL the saved rows are read back (one query) for the receivers.
    if interactions_recorded.has_listeners(Interaction):
        if instances is None:
            instances = list(
                Interaction.objects.filter(event_id__in=[row.event_id for row in rows]).order_by(
                    "occurred_at", "pk"
                )
            )
        interactions_recorded.send(sender=Interaction, interactions=instances, profile_ids=profile_ids)


def stored_profile(*, visitor_id=None, user_id=None):
    """The saved profile that events of this visitor (or user) are written to, created now if it does not exist
    yet, and locked: call it inside a transaction. For code that must link a row to a first-time visitor
    before their first event is written (an offer code); the ingest job later finds and reuses this profile."""
    key = uuid.uuid4()
    event = {"id": key, "visitor_id": visitor_id, "user_id": user_id, "profile_id": None}
    event["occurred_at"] = timezone.now()
    return _resolve_profiles([event]).get(key)


def _resolve_profiles(events):
    """Map each event id to a locked, up-to-date profile, creating profiles for new visitors."""
    earliest = {}
    for e in events:
        key = e.get("visitor_id")
        if key and (key not in earliest or e["occurred_at"] < earliest[key]):
            earliest[key] = e["occurred_at"]
    by_profile_id = {e["profile_id"] for e in events if e.get("profile_id")}
    user_ids = {e["user_id"] for e in events if not e.get("profile_id") and e.get("user_id")}
    visitor_ids = {
        e["visitor_id"]
        for e in events
        if not e.get("profile_id") and not e.get("user_id") and e.get("visitor_id")
    }
    # Events of logged-in users carry their visitor id too: an unclaimed anonymous profile with that id
    # becomes the user's profile instead of a second one being created.
    user_visitor = {
        e["user_id"]: e["visitor_id"]
        for e in events
        if not e.get("profile_id") and e.get("user_id") and e.get("visitor_id")
    }

    existing_users = set(
        VisitorProfile.objects.filter(user_id__in=user_ids).values_list("user_id", flat=True)
    )
    missing_users = user_ids - existing_users
    if missing_users:
        _attach_or_create_user_profiles(missing_users, user_visitor, earliest)

    if visitor_ids:
        known = set(
            VisitorProfile.objects.filter(visitor_id__in=visitor_ids).values_list("visitor_id", flat=True)
        )
        VisitorProfile.objects.bulk_create(
            [
                VisitorProfile(visitor_id=vid, first_seen=earliest[vid], last_seen=earliest[vid])
                for vid in sorted(visitor_ids - known)
            ],
            ignore_conflicts=True,
        )

    # Lock every profile touched by this batch, in id order so concurrent batches cannot deadlock.
    candidates = VisitorProfile.objects.filter(pk__in=by_profile_id)
    if user_ids:
        candidates = candidates | VisitorProfile.objects.filter(user_id__in=user_ids)
    if visitor_ids:
        candidates = candidates | VisitorProfile.objects.filter(visitor_id__in=visitor_ids)
    rows = {p.pk: p for p in candidates.select_for_update().order_by("pk")}

    # Follow merge tombstones to the surviving profile.
    targets = {p.merged_into_id for p in rows.values() if p.merged_into_id} - set(rows)
    while targets:
        more = {p.pk: p for p in VisitorProfile.objects.select_for_update().filter(pk__in=targets)}
        rows.update(more)
        targets = {p.merged_into_id for p in more.values() if p.merged_into_id} - set(rows)

    def final(profile):
        while profile is not None and profile.merged_into_id:
            profile = rows.get(profile.merged_into_id)
        return profile

    by_user = {p.user_id: p for p in rows.values() if p.user_id}
    by_visitor = {p.visitor_id: p for p in rows.values()}
    resolved = {}
    for event in events:
        if event.get("profile_id"):
            profile = rows.get(event["profile_id"])
        elif event.get("user_id"):
            profile = by_user.get(event["user_id"])
        else:
            profile = by_visitor.get(event["visitor_id"])
        profile = final(profile)
        if profile is None:
            logger.error("Skipping event %s: its profile no longer exists", event["id"])
            continue
        resolved[event["id"]] = profile
    return resolved


def _attach_or_create_user_profiles(user_ids, user_visitor, earliest):
    from django.contrib.auth import get_user_model

    user_ids = set(get_user_model().objects.filter(pk__in=user_ids).values_list("pk", flat=True))
    claimable = {
        p.visitor_id: p
        for p in VisitorProfile.objects.filter(
            visitor_id__in=[user_visitor[u] for u in user_ids if u in user_visitor],
            user__isnull=True,
            merged_into__isnull=True,
        )
    }
    for user_id in sorted(user_ids):
        profile = claimable.pop(user_visitor.get(user_id), None)
        if profile is not None:
            VisitorProfile.objects.filter(pk=profile.pk, user__isnull=True).update(user_id=user_id)
        else:
            first = earliest.get(user_visitor.get(user_id)) or timezone.now()
            VisitorProfile.objects.get_or_create(
                user_id=user_id, defaults={"first_seen": first, "last_seen": first}
            )


def _page_keys(page_ids):
    """For each page id, the ids (as strings) of the page and its ancestors below the site root."""
    if not page_ids:
        return {}
    from wagtail.models import Page

    paths = dict(Page.objects.filter(pk__in=page_ids).values_list("pk", "path"))
    steplen = Page.steplen
    ancestor_paths = {
        path[:end] for path in paths.values() for end in range(steplen * 2, len(path) + 1, steplen)
    }
    ids_by_path = dict(Page.objects.filter(path__in=ancestor_paths).values_list("path", "pk"))
    keys = {}
    for page_id, path in paths.items():
        keys[page_id] = [
            str(ids_by_path[path[:end]])
            for end in range(steplen * 2, len(path) + 1, steplen)
            if path[:end] in ids_by_path
        ]
        # The site root (depth 2) would count every page view; keep it only when it is the page itself.
        if len(path) > steplen * 2 and keys[page_id]:
            keys[page_id] = keys[page_id][1:]
    return keys


def _apply(events, profiles, page_keys, variant_counts):
    timeout = timedelta(seconds=get_setting("VISIT_TIMEOUT"))
    now = timezone.now()
    interactions = []
    changed = {}
    contact_changed = {}
    per_profile = defaultdict(list)
    for event in events:
        profile = profiles.get(event["id"])
        if profile is not None:
            per_profile[profile.pk].append(event)

    for profile_pk, profile_events in per_profile.items():
        profile = profiles[profile_events[0]["id"]]
        changed[profile_pk] = profile
        facts = profile.facts if isinstance(profile.facts, dict) else {}
        for event in sorted(profile_events, key=lambda e: e["occurred_at"]):
            occurred_at = event["occurred_at"]
            # Visits and "last seen" follow page views: server-side events (a shop webhook, staff entries)
            # say nothing about when the person was browsing.
            online = event["kind"] == InteractionKind.PAGE_VIEW and event["channel"] == Channel.ONLINE
            if online and _starts_visit(profile, occurred_at, timeout):
                profile.visit_count += 1
                visit = _visit_started(profile, event)
                interactions.append(visit)
                profile_facts.apply_interaction(facts, visit.kind, occurred_at, {})
                _apply_attribution(profile, event, first_visit=profile.visit_count == 1)
            elif event["attribution"]:
                _apply_attribution(profile, event, first_visit=False)
            if online:
                profile.last_seen = max(profile.last_seen, occurred_at)
            if occurred_at < profile.first_seen:
                profile.first_seen = occurred_at
            if event["profile_updates"]:
                _apply_profile_updates(profile, event["profile_updates"], occurred_at)
                contact_changed[profile_pk] = profile
            page_id = event.get("page_id")
            if page_id and page_id not in page_keys:
                page_id = None  # the page was deleted before the event was written
            interactions.append(
                InteractionRow(
                    event_id=event["id"],
                    profile_id=profile.pk,
                    kind=event["kind"][:50],
                    channel=event["channel"],
                    occurred_at=occurred_at,
                    page_id=page_id,
                    data=event["data"],
                    recorded_by_id=event.get("recorded_by_id"),
                )
            )
            profile_facts.apply_interaction(
                facts, event["kind"], occurred_at, event["data"], page_keys.get(page_id, ())
            )
            if event.get("impressions") or profile_facts.SEEN_KEY in facts:  # personalised blocks' variants
                variant_counts.add(facts, event)
        profile.facts = profile_facts.prune(facts, now)
    return interactions, list(changed.values()), list(contact_changed.values())


def _starts_visit(profile, occurred_at, timeout):
    return profile.visit_count == 0 or occurred_at - profile.last_seen > timeout


def _visit_started(profile, event):
    data = {key: value for key, value in event["attribution"].items() if value}
    if event["data"].get("path"):
        data.setdefault("landing_page", event["data"]["path"])
    return InteractionRow(
        event_id=uuid.uuid5(VISIT_NAMESPACE, str(event["id"])),
        profile_id=profile.pk,
        kind=InteractionKind.VISIT_STARTED.value,
        channel=Channel.ONLINE,
        occurred_at=event["occurred_at"],
        page_id=None,
        data=data,
        recorded_by_id=None,
    )


def _apply_attribution(profile, event, *, first_visit):
    values = {
        name: str(event["attribution"].get(name) or "")[: _MAX_LENGTHS[name]] for name in ATTRIBUTION_FIELDS
    }
    if not values["landing_page"]:
        values["landing_page"] = str(event["data"].get("path") or "")[: _MAX_LENGTHS["landing_page"]]
    occurred_at = event["occurred_at"]
    is_touch = any(values[name] for name in TOUCH_KEYS)
    if first_visit and profile.first_touch_at is None:
        for name, value in values.items():
            setattr(profile, f"first_{name}", value)
        profile.first_touch_at = occurred_at
    if (first_visit or is_touch) and (profile.last_touch_at is None or occurred_at >= profile.last_touch_at):
        for name, value in values.items():
            setattr(profile, f"last_{name}", value)
        profile.last_touch_at = occurred_at


PROFILE_UPDATE_FIELDS = (
    ["first_seen", "last_seen", "visit_count", "facts"]
    + [f"{prefix}_{name}" for prefix in ("first", "last") for name in ATTRIBUTION_FIELDS]
    + ["first_touch_at", "last_touch_at"]
)


CONTACT_UPDATE_FIELDS = [
    "first_name",
    "last_name",
    "email",
    "phone",
    "email_consent",
    "email_consent_at",
    "phone_consent",
    "phone_consent_at",
]


def _copy_rows(cursor, table, columns, rows):
    """COPY ``rows`` (tuples of values psycopg adapts) into ``table``'s ``columns`` (PostgreSQL only)."""
    quote = connection.ops.quote_name
    with cursor.copy(f"COPY {quote(table)} ({', '.join(map(quote, columns))}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


INTERACTION_COLUMNS = InteractionRow._fields + ("created_at",)


def _insert_interactions(rows):
    """Write the rows; returns the saved ``Interaction`` instances where the backend made them anyway."""
    if connection.vendor != "postgresql":
        return Interaction.objects.bulk_create(
            [Interaction(**row._asdict()) for row in rows], batch_size=1000
        )
    # COPY: no SQL to build, quote and parse for thousands of rows (several times faster than INSERT).
    now = timezone.now()
    values = (
        (*row[:6], json.dumps(row.data, cls=DjangoJSONEncoder), row.recorded_by_id, now) for row in rows
    )
    with connection.cursor() as cursor:
        _copy_rows(cursor, Interaction._meta.db_table, INTERACTION_COLUMNS, values)
    return None


def _update_profiles(profiles):
    # Not bulk_update: it builds one CASE WHEN per field and row (rows x fields expressions to resolve and
    # compile, then evaluate), which took 90% of the ingest time.
    meta = VisitorProfile._meta
    fields = [meta.pk] + [meta.get_field(name) for name in PROFILE_UPDATE_FIELDS]
    quote = connection.ops.quote_name
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    if connection.vendor != "postgresql":
        # One plain UPDATE per profile, all sent by one executemany.
        assignments = ", ".join(f"{quote(f.column)} = %s" for f in fields[1:])
        params = [
            [f.get_db_prep_save(getattr(p, f.attname), connection) for f in fields[1:]] + [p.pk]
            for p in profiles
        ]
        with connection.cursor() as cursor:
            cursor.executemany(f"UPDATE {table} SET {assignments} WHERE {pk} = %s", params)
        return
    # PostgreSQL: COPY the new values into a temporary table and apply them with one UPDATE ... FROM.
    values = (
        tuple(
            json.dumps(p.facts, cls=DjangoJSONEncoder) if f.name == "facts" else getattr(p, f.attname)
            for f in fields
        )
        for p in profiles
    )
    with connection.cursor() as cursor:
        # Dropped again below, not ON COMMIT: ingest_events may run twice in one outer transaction.
        cursor.execute(
            "CREATE TEMPORARY TABLE wagtail_crm_profile_update AS "
            f"SELECT {', '.join(quote(f.column) for f in fields)} FROM {table} WITH NO DATA"
        )
        _copy_rows(cursor, "wagtail_crm_profile_update", [f.column for f in fields], values)
        assignments = ", ".join(f"{quote(f.column)} = u.{quote(f.column)}" for f in fields[1:])
        cursor.execute(
            f"UPDATE {table} AS p SET {assignments} FROM wagtail_crm_profile_update AS u WHERE p.{pk} = u.{pk}"
        )
        cursor.execute("DROP TABLE wagtail_crm_profile_update")


def _apply_profile_updates(profile, updates, occurred_at):
    """Contact details and consent given by the visitor (``tracking.identify``), in event time order."""
    for name, value in (updates.get("contact") or {}).items():
        if name in CONTACT_UPDATE_FIELDS[:4] and isinstance(value, str) and value:
            field = VisitorProfile._meta.get_field(name)
            setattr(profile, name, value[: field.max_length])
    for channel, granted in (updates.get("consent") or {}).items():
        if channel in ("email", "phone") and isinstance(granted, bool):
            decided_at = getattr(profile, f"{channel}_consent_at")
            if decided_at is None or occurred_at >= decided_at:  # a later decision (e.g. staff's) stands
                profile.set_consent(channel, granted, when=occurred_at)


def _save_profiles(profiles, contact_changed=()):
    _update_profiles(profiles)
    if contact_changed:
        VisitorProfile.objects.bulk_update(contact_changed, CONTACT_UPDATE_FIELDS, batch_size=500)
