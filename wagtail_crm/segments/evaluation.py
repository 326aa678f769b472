"""Evaluating segments: for one visitor in Python (the request path), or as SQL over all profiles.

The request path reads the active segments from a per-process copy that is checked against a version number
in Django's cache at most every ``SEGMENT_CACHE_CHECK_INTERVAL`` seconds, and bumped when a segment is saved or
deleted, so every process (and every server) picks up an editor's change.
"""

import logging
import threading
import time
import uuid
from dataclasses import dataclass

from django.core.cache import caches
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from wagtail_crm.conf import get_setting
from wagtail_crm.segments.rules import MATCH_NONE, EvaluationContext

logger = logging.getLogger("wagtail_crm.segments")

__all__ = [
    "EvaluationContext",
    "RuleResult",
    "active_segments",
    "explain",
    "invalidate_segment_cache",
    "segment_matches",
    "segment_q",
    "segments_for",
]

CACHE_VERSION_KEY = "wagtail_crm:segments:version"


def _rules(stream):
    """(block, value) for each rule of a rules StreamField value."""
    return [(child.block, child.value) for child in stream]


def unknown_rule_types(segment):
    """Rule types stored in ``segment`` that are no longer registered (the segment then matches nobody)."""
    return [
        *getattr(segment.rules, "unknown_rule_types", ()),
        *getattr(segment.exclude_rules, "unknown_rule_types", ()),
    ]


def segment_matches(segment, context):
    """Python verdict: the rules (ALL or ANY) pass and no exclude rule does. No rules: everyone."""
    if unknown_rule_types(segment):
        return False
    rules = _rules(segment.rules)
    if rules:
        verdicts = (block.matches(value, context) for block, value in rules)
        passed = all(verdicts) if segment.match == "all" else any(verdicts)
        if not passed:
            return False
    return not any(block.matches(value, context) for block, value in _rules(segment.exclude_rules))


def segment_q(segment, now=None):
    """SQL verdict: a ``Q`` over ``VisitorProfile`` for the same definition as :func:`segment_matches`."""
    if unknown_rule_types(segment):
        return MATCH_NONE
    context = EvaluationContext(None, now=now)
    q = Q()
    rules = _rules(segment.rules)
    if rules:
        qs = [block.as_q(value, context) for block, value in rules]
        q = qs[0]
        for other in qs[1:]:
            q = (q & other) if segment.match == "all" else (q | other)
    for block, value in _rules(segment.exclude_rules):
        q &= ~block.as_q(value, context)
    return q


@dataclass
class RuleResult:
    description: str
    matched: bool
    excluding: bool  # an exclude rule (the visitor is out when it matches)

    @property
    def in_favour(self):
        """Whether this verdict helps the visitor into the segment."""
        return self.matched != self.excluding


def explain(segment, context):
    """Every rule of ``segment`` with its verdict for the visitor of ``context``."""
    results = [
        RuleResult(block.describe(value), block.matches(value, context), False)
        for block, value in _rules(segment.rules)
    ]
    results += [
        RuleResult(block.describe(value), block.matches(value, context), True)
        for block, value in _rules(segment.exclude_rules)
    ]
    results += [
        RuleResult(
            _("A rule of type “%(type)s”, which is no longer registered: the segment matches nobody.")
            % {"type": rule_type},
            False,
            False,
        )
        for rule_type in unknown_rule_types(segment)
    ]
    return results


# -- the active segments, cached per process ---------------------------------------------------------------


class _LoadedSegments:
    def __init__(self, version, segments):
        self.version = version
        self.segments = segments
        self.checked = time.monotonic()
        annotations = {}
        for segment in segments:
            for stream in (segment.rules, segment.exclude_rules):
                for block, value in _rules(stream):
                    annotations.update(block.profile_annotations(value))
        self.profile_annotations = annotations


_loaded = None
_lock = threading.Lock()


def _cache():
    return caches[get_setting("CACHE_ALIAS")]


def _current_version():
    try:
        cache = _cache()
        version = cache.get(CACHE_VERSION_KEY)
        if version is None:
            # First process up, or the cache was flushed: agree on a version (another process may win the add).
            cache.add(CACHE_VERSION_KEY, uuid.uuid4().hex, None)
            version = cache.get(CACHE_VERSION_KEY)
        return version
    except Exception:
        # A cache outage must not take pages down: without a version, segments reload at every interval.
        logger.warning("Could not read the segment cache version", exc_info=True)
        return None


def _load(version):
    from wagtail_crm.segments.models import Segment

    segments = list(Segment.objects.filter(active=True).order_by("name", "pk"))
    for segment in segments:
        if unknown_rule_types(segment):
            logger.warning(
                "Segment %r uses rule types that are not registered (%s): it matches nobody",
                segment.slug,
                ", ".join(map(str, unknown_rule_types(segment))),
            )
        # Parse the rules now, once per process, not on every request.
        _rules(segment.rules)
        _rules(segment.exclude_rules)
    return _LoadedSegments(version, segments)


def _loaded_segments():
    global _loaded
    loaded = _loaded
    interval = get_setting("SEGMENT_CACHE_CHECK_INTERVAL")
    if loaded is not None and time.monotonic() - loaded.checked < interval:
        return loaded
    version = _current_version()
    if loaded is not None and version is not None and version == loaded.version:
        loaded.checked = time.monotonic()
        return loaded
    with _lock:
        # With no working cache (DummyCache) the version is None: reload at every interval.
        _loaded = loaded = _load(version)
    return loaded


def active_segments(now=None):
    """The segments used to personalise pages at ``now``: active and within their start/end window."""
    now = now or timezone.now()
    return [segment for segment in _loaded_segments().segments if segment.is_live(now)]


def active_profile_annotations():
    """Annotations the active segments' rules read from the visitor's profile query (see ``RuleBlock``)."""
    return _loaded_segments().profile_annotations


def invalidate_segment_cache():
    """Make every process reload the active segments (called after a segment is saved or deleted)."""
    global _loaded
    _loaded = None
    try:
        _cache().set(CACHE_VERSION_KEY, uuid.uuid4().hex, None)
    except Exception:  # a cache outage must not break saving a segment; other processes catch up later
        logger.warning("Could not bump the segment cache version", exc_info=True)


def segments_for(request):
    """The live segments the request's visitor is in, computed once per request."""
    from wagtail_crm.profiles.visitor import get_visitor

    return get_visitor(request).segments


def evaluate_visitor(visitor, request):
    """The live segments ``visitor`` (whose profile is loaded once) is in."""
    context = EvaluationContext(visitor.profile, request=request)
    return [segment for segment in active_segments(context.now) if _matches_safely(segment, context)]


def _matches_safely(segment, context):
    # A broken rule (a custom rule type's bug, say) leaves the visitor out of that segment and is logged: the
    # visitor gets the page everyone else gets instead of an error page.
    try:
        return segment_matches(segment, context)
    except Exception:
        logger.exception("Could not evaluate segment %r for a visitor", segment.slug)
        return False
