"""wagtail_crm: an online CRM for Wagtail sites.

The public API is importable from the package root. The functions are thin wrappers so that importing
``wagtail_crm`` (e.g. from settings) never imports Django models.
"""

__version__ = "0.1.0"

__all__ = ["get_visitor", "identify", "redeem_offer_code", "segments_for", "track"]


def get_visitor(request):
    """Return the :class:`~wagtail_crm.profiles.visitor.Visitor` for ``request`` (lazy, cached)."""
    from wagtail_crm.profiles.visitor import get_visitor as _get_visitor

    return _get_visitor(request)


def track(request_or_profile, kind, channel="online", **data):
    """Record an interaction on the visitor's timeline. See ``docs/reference/api.md``."""
    from wagtail_crm.profiles.tracking import track as _track

    return _track(request_or_profile, kind, channel=channel, **data)


def identify(request_or_profile, *, consent=None, **contact):
    """Store contact details / consent the visitor gave. See ``docs/reference/api.md``."""
    from wagtail_crm.profiles.tracking import identify as _identify

    return _identify(request_or_profile, consent=consent, **contact)


def segments_for(request):
    """The live segments the request's visitor is in (a list of ``Segment``), computed once per request."""
    from wagtail_crm.segments.evaluation import segments_for as _segments_for

    return _segments_for(request)


def redeem_offer_code(code, *, pool=None, profile=None):
    """Mark an issued offer code as redeemed at checkout (and on the timeline). See the API reference."""
    from wagtail_crm.content.offers import redeem_code

    return redeem_code(code, pool=pool, profile=profile)
