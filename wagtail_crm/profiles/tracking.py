"""``track()`` and ``identify()``: how every capability (and any site code) records what a visitor did."""

import json
import uuid
from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import validate_email
from django.http import HttpRequest

from wagtail_crm.profiles.events import make_event, record_events
from wagtail_crm.profiles.models import Channel, InteractionKind, VisitorProfile, kind_validator
from wagtail_crm.profiles.visitor import get_visitor


def _clean_data(data):
    """Round-trip through JSON so Decimals, dates and UUIDs are stored as the timeline will read them."""
    try:
        return json.loads(json.dumps(data, cls=DjangoJSONEncoder))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"track() data must be JSON-serialisable: {exc}") from exc


def track(request_or_profile, kind, channel=Channel.ONLINE, **data):
    """Record an interaction of ``kind`` for the visitor behind a request, or for a ``VisitorProfile``.

    Reserved keyword arguments (not stored in ``data``): ``occurred_at`` (aware datetime, default now),
    ``page`` (a Page or page id), ``event_id`` (a UUID or any string, e.g. an order number: recording the
    same event id twice records it once). Everything else is stored as the interaction's JSON ``data``.

    Returns the event id (a UUID), or ``None`` when the visitor may not be tracked (bot, Do Not Track).
    The interaction is written after the current transaction commits: inline, or by the RQ worker.
    """
    try:
        kind_validator(kind)
    except ValidationError as exc:
        raise ValueError(f"Invalid interaction kind {kind!r}: {exc.messages[0]}") from exc
    if channel not in Channel.values:
        raise ValueError(f"Unknown channel {channel!r}; expected one of {', '.join(Channel.values)}")
    occurred_at = data.pop("occurred_at", None)
    if occurred_at is not None and not isinstance(occurred_at, datetime):
        raise ValueError(f"occurred_at must be a datetime, not {type(occurred_at).__name__}")
    page = data.pop("page", None)
    page_id = getattr(page, "pk", page)
    if page_id is not None and (isinstance(page_id, bool) or not isinstance(page_id, int)):
        raise ValueError(f"page must be a Page or a page id, not {page!r}")
    event_id = data.pop("event_id", None)
    if event_id is not None and not isinstance(event_id, uuid.UUID):
        try:
            event_id = uuid.UUID(str(event_id))
        except ValueError:
            event_id = uuid.uuid5(uuid.NAMESPACE_URL, f"wagtail-crm:{kind}:{event_id}")
    event_id = event_id or uuid.uuid4()
    fields = {
        "channel": channel,
        "occurred_at": occurred_at,
        "page_id": page_id,
        "data": _clean_data(data),
        "event_id": event_id,
    }

    return _record(request_or_profile, kind, fields, "track")


def _record(request_or_profile, kind, fields, caller):
    """Hand one event to the job layer for a profile or for the visitor behind a request."""
    if isinstance(request_or_profile, VisitorProfile):
        if request_or_profile.pk is None:
            raise ValueError(f"{caller}() needs a saved VisitorProfile")
        record_events([make_event(kind, profile_id=request_or_profile.pk, **fields)])
        return fields["event_id"]
    if not isinstance(request_or_profile, HttpRequest) and not hasattr(request_or_profile, "COOKIES"):
        raise TypeError(f"{caller}() takes a request or a VisitorProfile")

    visitor = get_visitor(request_or_profile)
    if not visitor.may_identify:
        return None
    record_events([make_event(kind, visitor_id=visitor.visitor_id, user_id=visitor.user_id, **fields)])
    visitor.events_recorded = True
    return fields["event_id"]


CONTACT_LIMITS = {"first_name": 150, "last_name": 150, "email": 254, "phone": 32}
CONSENT_CHANNELS = ("email", "phone")


def identify(request_or_profile, *, consent=None, **contact):
    """Store contact details and consent the visitor gave (a sign-up or newsletter form, a checkout).

    ``contact``: any of ``first_name``, ``last_name``, ``email``, ``phone``; empty values are ignored (a
    blank form field never erases what is known). ``consent``: ``{"email": True, "phone": False}``; each
    decision is stored with its time. Records a ``details_updated`` interaction naming the fields that were
    given (not their values). Like ``track()``, the profile is updated after commit (inline or by the
    worker) and nothing happens for a visitor who may not be tracked (returns ``None``).

    Profiles are never merged on an email address: an address typed into a form is not proof of identity.
    """
    unknown = set(contact) - set(CONTACT_LIMITS)
    if unknown:
        raise ValueError(f"identify() got unknown contact fields: {', '.join(sorted(unknown))}")
    cleaned = {}
    for name, value in contact.items():
        value = "" if value is None else str(value).strip()
        if not value:
            continue
        if len(value) > CONTACT_LIMITS[name]:
            raise ValueError(f"{name} is longer than {CONTACT_LIMITS[name]} characters")
        if name == "email":
            try:
                validate_email(value)
            except ValidationError as exc:
                raise ValueError(f"Invalid email address {value!r}") from exc
        cleaned[name] = value
    consent = dict(consent or {})
    for channel, granted in consent.items():
        if channel not in CONSENT_CHANNELS or not isinstance(granted, bool):
            raise ValueError(
                f"consent must map {' or '.join(CONSENT_CHANNELS)} to True/False, got {consent!r}"
            )
    if not cleaned and not consent:
        raise ValueError("identify() needs at least one contact detail or consent decision")
    fields = {
        "channel": Channel.ONLINE,
        "occurred_at": None,
        "page_id": None,
        "data": {"fields": sorted(cleaned), "consent": consent},
        "event_id": uuid.uuid4(),
        "profile_updates": {"contact": cleaned, "consent": consent},
    }
    return _record(request_or_profile, InteractionKind.DETAILS_UPDATED.value, fields, "identify")
