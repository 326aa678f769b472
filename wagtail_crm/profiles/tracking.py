"""``track()``: the one function every capability (and any site code) records an interaction with."""

import json
import uuid
from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest

from wagtail_crm.profiles.events import make_event, record_events
from wagtail_crm.profiles.models import Channel, VisitorProfile, kind_validator
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

    if isinstance(request_or_profile, VisitorProfile):
        if request_or_profile.pk is None:
            raise ValueError("track() needs a saved VisitorProfile")
        record_events([make_event(kind, profile_id=request_or_profile.pk, **fields)])
        return event_id
    if not isinstance(request_or_profile, HttpRequest) and not hasattr(request_or_profile, "COOKIES"):
        raise TypeError("track() takes a request or a VisitorProfile")

    visitor = get_visitor(request_or_profile)
    if not visitor.may_identify:
        return None
    record_events([make_event(kind, visitor_id=visitor.visitor_id, user_id=visitor.user_id, **fields)])
    visitor.events_recorded = True
    return event_id
