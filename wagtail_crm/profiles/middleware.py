"""``VisitorMiddleware``: attaches ``request.crm_visitor``, records page views, keeps the visitor cookie.

Place it after ``SessionMiddleware`` and ``AuthenticationMiddleware``. The request path does no database
write when a queue is configured (page views are buffered in Redis) and no read at all unless something
asks for ``visitor.profile``.
"""

from urllib.parse import urlsplit

from wagtail_crm.conf import get_setting
from wagtail_crm.profiles import identity
from wagtail_crm.profiles.events import make_event, record_events
from wagtail_crm.profiles.models import InteractionKind
from wagtail_crm.profiles.visitor import get_visitor

UTM_PARAMS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
PAGE_ATTRIBUTE = "_wagtail_crm_page_id"


class VisitorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        visitor = get_visitor(request)
        response = self.get_response(request)
        if not visitor.may_identify:
            if visitor.identity_changed and visitor.cookie_value_valid:
                # e.g. logging out through the admin: the old id must not follow the next anonymous visit
                identity.delete_visitor_cookie(response)
            return response
        if is_page_view(request, response):
            record_events([page_view_event(request, visitor)])
            visitor.events_recorded = True
        # A first-time visitor gets a cookie only once something was recorded for them, so a page that
        # records nothing (a 404, a JSON endpoint) stays cookie-free and cacheable.
        if visitor.cookie_dirty and (
            visitor.events_recorded or visitor.identity_changed or visitor.cookie_value_valid
        ):
            identity.set_visitor_cookie(request, response, visitor.visitor_id)
        return response


def is_page_view(request, response):
    if request.method != "GET" or response.status_code != 200:
        return False
    if getattr(request, "is_preview", False) or getattr(response, "streaming", False):
        return False
    content_type = response.get("Content-Type", "")
    return content_type.split(";")[0].strip().lower() == "text/html"


def attribution_for(request):
    """Campaign data carried by this request: UTM parameters, an external referrer, an offer code."""
    query = request.GET
    attribution = {name: query[name].strip()[:100] for name in UTM_PARAMS if query.get(name)}
    offer = query.get(get_setting("OFFER_CODE_PARAM"))
    if offer:
        attribution["offer_code"] = offer.strip()[:64]
    referrer = request.META.get("HTTP_REFERER", "")
    if referrer:
        try:
            host = (urlsplit(referrer).hostname or "").lower()
        except ValueError:
            host = ""
        if host and host != _request_host(request):
            attribution["referrer_host"] = host[:255]
    if attribution:
        attribution["landing_page"] = request.path[:500]
    return attribution


def _request_host(request):
    try:
        return request.get_host().split(":")[0].lower()
    except Exception:  # DisallowedHost: Django answers 400 elsewhere; here it only means "not us"
        return ""


def page_view_event(request, visitor):
    return make_event(
        InteractionKind.PAGE_VIEW,
        visitor_id=visitor.visitor_id,
        user_id=visitor.user_id,
        page_id=getattr(request, PAGE_ATTRIBUTE, None),
        data={"path": request.path[:500]},
        attribution=attribution_for(request),
    )
