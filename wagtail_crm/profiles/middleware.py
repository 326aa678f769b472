"""``VisitorMiddleware``: attaches ``request.crm_visitor``, records page views, keeps the visitor cookie.

Place it after ``SessionMiddleware`` and ``AuthenticationMiddleware``. The request path does no database
write when a queue is configured (page views are buffered in Redis) and no read at all unless something
asks for ``visitor.profile``.
"""

from urllib.parse import urlsplit

from django.utils.cache import patch_cache_control, patch_vary_headers

from wagtail_crm.conf import get_setting
from wagtail_crm.profiles import identity
from wagtail_crm.profiles.events import make_event, record_events
from wagtail_crm.profiles.models import InteractionKind
from wagtail_crm.profiles.visitor import get_visitor

UTM_PARAMS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
PAGE_ATTRIBUTE = "_wagtail_crm_page_id"
ATTRIBUTION_ATTRIBUTE = "_wagtail_crm_attribution"


class VisitorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        visitor = get_visitor(request)
        response = self.get_response(request)
        if visitor.personalised:
            # The response depends on who is asking: never serve it to someone else from a shared cache.
            patch_cache_control(response, **get_setting("PERSONALISED_CACHE_CONTROL"))
            patch_vary_headers(response, get_setting("PERSONALISED_VARY"))
        if not visitor.may_identify:
            if visitor.identity_changed and visitor.cookie_value_valid:
                # e.g. logging out through the admin: the old id must not follow the next anonymous visit
                identity.delete_visitor_cookie(response)
            return response
        if is_page_view(request, response):
            if get_setting("CACHE_MODE") == "edge" and not visitor.personalised:
                # Edge-cache mode: the page is public and identical for everyone, so it carries no cookie
                # and records nothing; the page's script reports the view (content/views.py).
                if not (visitor.events_recorded or visitor.identity_changed):
                    return response
            else:
                record_events([page_view_event(request, visitor)])
                visitor.events_recorded = True
        # A first-time visitor gets a cookie only once something was recorded for them, so a page that
        # records nothing (a 404, a JSON endpoint) stays cookie-free and cacheable.
        if visitor.cookie_dirty and (
            visitor.events_recorded or visitor.identity_changed or visitor.cookie_value_valid
        ):
            identity.set_visitor_cookie(request, response, visitor.visitor_id)
            # A response carrying one visitor's id must never be replayed to another by a shared cache
            # (Django's cache middleware stores Set-Cookie with the page).
            patch_cache_control(response, private=True)
            patch_vary_headers(response, ["Cookie"])
        return response


def is_page_view(request, response):
    if request.method != "GET" or response.status_code != 200:
        return False
    if getattr(request, "is_preview", False) or getattr(response, "streaming", False):
        return False
    content_type = response.get("Content-Type", "")
    return content_type.split(";")[0].strip().lower() == "text/html"


def attribution_for(request, *, query=None, referrer=None, path=None):
    """Campaign data carried by this request: UTM parameters, an external referrer, an offer code.

    ``query``, ``referrer`` and ``path`` default to the request's own; the edge-mode fragment endpoint passes
    those of the page the visitor is looking at.
    """
    query = request.GET if query is None else query
    referrer = request.META.get("HTTP_REFERER", "") if referrer is None else referrer
    attribution = {name: query[name].strip()[:100] for name in UTM_PARAMS if query.get(name)}
    offer = query.get(get_setting("OFFER_CODE_PARAM"))
    if offer:
        attribution["offer_code"] = offer.strip()[:64]
    if referrer:
        try:
            host = (urlsplit(referrer).hostname or "").lower()
        except ValueError:
            host = ""
        if host and host != _request_host(request):
            attribution["referrer_host"] = host[:255]
    if attribution:
        attribution["landing_page"] = (request.path if path is None else path)[:500]
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
        impressions=visitor.impressions,
    )
