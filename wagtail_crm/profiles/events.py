"""Events: the plain-data form of an interaction on its way to the timeline.

An event is a JSON-serialisable dict (see ``make_event``). ``record_events`` hands events to the ingest job:
inline after commit when no queue is configured; otherwise it appends them to a Redis list and makes sure a
drain job is queued, so that page views cost no database write in the request and are written in batches.
If Redis is unreachable the events are written inline instead (logged as a warning): never lost.
"""

import json
import logging
import time
import uuid

from django.db import transaction
from django.utils import timezone

from wagtail_crm import jobs
from wagtail_crm.conf import get_setting

logger = logging.getLogger("wagtail_crm.events")

INGEST_EVENTS = "wagtail_crm.profiles.ingest.ingest_events"
DRAIN_BUFFER = "wagtail_crm.profiles.events.drain_buffer"

# How long a "drain job is queued" flag lives: if a worker dies, the next event re-queues a drain.
DRAIN_FLAG_TTL = 10
DRAIN_LOCK_TTL = 300
# One drain job works at most this long (well inside the lock's lifetime and RQ's default job timeout of
# 180 s), then queues the next one for the rest of the backlog.
DRAIN_MAX_SECONDS = 60


def make_event(
    kind,
    *,
    channel="online",
    visitor_id=None,
    profile_id=None,
    user_id=None,
    page_id=None,
    occurred_at=None,
    data=None,
    attribution=None,
    event_id=None,
    recorded_by_id=None,
    profile_updates=None,
    impressions=None,
):
    """``profile_updates``: ``{"contact": {field: value}, "consent": {"email": bool, ...}}`` to apply to the
    profile when the event is written (see ``tracking.identify``).
    ``impressions``: variants of personalised blocks the page view showed (see ``content/rendering.py``)."""
    event = {
        "id": str(event_id or uuid.uuid4()),
        "kind": kind,
        "channel": channel,
        "visitor_id": visitor_id,
        "profile_id": profile_id,
        "user_id": user_id,
        "page_id": page_id,
        "occurred_at": (occurred_at or timezone.now()).isoformat(),
        "data": data or {},
        "attribution": attribution or {},
        "recorded_by_id": recorded_by_id,
        "profile_updates": profile_updates or {},
    }
    if impressions:
        event["impressions"] = impressions
    return event


def _keys():
    prefix = get_setting("REDIS_KEY_PREFIX")
    return f"{prefix}:events", f"{prefix}:drain-queued", f"{prefix}:drain-lock"


def record_events(events):
    """Queue ``events`` for ingestion after the current transaction commits."""
    if not events:
        return
    if jobs.get_queue() is None:
        jobs.enqueue(INGEST_EVENTS, events)
    else:
        transaction.on_commit(lambda: _buffer(events))


def _buffer(events):
    queue = jobs.get_queue()
    buffer_key, flag_key, _ = _keys()
    try:
        # One round trip: append the events and claim the "drain queued" flag. One queued drain at a
        # time; the flag expires so that a lost job cannot strand events.
        pipe = queue.connection.pipeline(transaction=False)
        pipe.rpush(buffer_key, *(json.dumps(event) for event in events))
        pipe.set(flag_key, "1", nx=True, ex=DRAIN_FLAG_TTL)
        _, claimed = pipe.execute()
        if claimed:
            queue.enqueue(DRAIN_BUFFER)
    except jobs.redis_errors():
        logger.warning("Redis unreachable: writing %d event(s) inline", len(events), exc_info=True)
        _ingest_inline(events)


def _ingest_inline(events):
    from wagtail_crm.profiles.ingest import ingest_events

    try:
        ingest_events(events)
    except Exception:
        logger.exception("Could not write %d event(s)", len(events))


def drain_buffer(max_batches=None, max_seconds=DRAIN_MAX_SECONDS):
    """RQ job: write buffered events in batches until the buffer is empty. Returns the number written.

    Events are read with LRANGE and trimmed only after their batch committed, and ingestion skips event ids
    already written, so a worker that dies mid-batch loses and duplicates nothing. A lock keeps drains serial.
    A drain stops after ``max_seconds`` and queues its successor, so that a large backlog never outlives the
    lock or the RQ job timeout.
    """
    queue = jobs.get_queue()
    if queue is None:
        return 0
    redis = queue.connection
    buffer_key, flag_key, lock_key = _keys()
    failed_key = f"{buffer_key}:failed"
    batch_size = get_setting("INGEST_BATCH_SIZE")
    deadline = time.monotonic() + max_seconds
    written = batches = 0
    while True:
        lock = redis.lock(lock_key, timeout=DRAIN_LOCK_TTL, blocking=False)
        if not lock.acquire():
            return written  # another drain is running and will empty the buffer
        out_of_time = False
        try:
            # Events pushed from now on must queue a new drain if this one has already passed them by.
            redis.delete(flag_key)
            while max_batches is None or batches < max_batches:
                if time.monotonic() > deadline:
                    out_of_time = True
                    break
                lock.reacquire()  # a fresh lifetime per batch; raises if the lock was lost meanwhile
                raw = redis.lrange(buffer_key, 0, batch_size - 1)
                if not raw:
                    break
                written += _ingest_raw(raw, redis, failed_key)
                redis.ltrim(buffer_key, len(raw), -1)
                batches += 1
        finally:
            lock.release()
        if out_of_time:
            if redis.llen(buffer_key) and redis.set(flag_key, "1", nx=True, ex=DRAIN_FLAG_TTL):
                queue.enqueue(DRAIN_BUFFER)
            return written
        # An event may have been pushed between our last empty read and the release, while a drain it
        # queued found the lock taken: look once more before leaving.
        if (max_batches is not None and batches >= max_batches) or not redis.llen(buffer_key):
            return written


def _ingest_raw(raw, redis, failed_key):
    """Write one batch. If the batch fails as a whole, write its events one by one and set the ones that
    still fail aside in a "failed" list (kept for inspection), so one bad event cannot stall the buffer."""
    from wagtail_crm.profiles.ingest import ingest_events

    events = []
    for item in raw:
        try:
            events.append(json.loads(item))
        except ValueError:
            logger.error("Unreadable buffered event set aside: %r", item[:200])
            redis.rpush(failed_key, item)
    try:
        return ingest_events(events)
    except Exception:
        logger.exception("A batch of %d events failed; retrying them one by one", len(events))
    written = 0
    for event in events:
        try:
            written += ingest_events([event])
        except Exception:
            logger.exception("Event %s set aside in %s", event.get("id"), failed_key)
            redis.rpush(failed_key, json.dumps(event))
    return written


def buffered_count():
    queue = jobs.get_queue()
    if queue is None:
        return 0
    return queue.connection.llen(_keys()[0])
