"""Visitor identity: the signed first-party cookie and the decision whether a request may be tracked."""

import re
import time
import uuid
from functools import lru_cache

from django.conf import settings
from django.core import signing

from wagtail_crm.conf import get_setting

COOKIE_SALT = "wagtail_crm.visitor"
_VISITOR_ID_RE = re.compile(r"^[0-9a-f]{32}$")


def new_visitor_id():
    return uuid.uuid4().hex


def sign_visitor_id(visitor_id):
    return signing.TimestampSigner(salt=COOKIE_SALT).sign(visitor_id)


def read_visitor_cookie(value):
    """Return ``(visitor_id, age_seconds)`` for a valid cookie value, or ``(None, None)``.

    A tampered, expired or malformed value is simply not a visitor id: the caller treats the request as a
    new visitor.
    """
    if not value or len(value) > 200:
        return None, None
    signer = signing.TimestampSigner(salt=COOKIE_SALT)
    try:
        visitor_id = signer.unsign(value, max_age=get_setting("COOKIE_AGE"))
    except (signing.BadSignature, ValueError):
        return None, None
    if not _VISITOR_ID_RE.match(visitor_id):
        return None, None
    # The timestamp was just verified; decode it again to know when to refresh the cookie.
    _, timestamp, _signature = value.rsplit(signer.sep, 2)
    try:
        age = max(0, time.time() - signing.b62_decode(timestamp))
    except ValueError:
        return None, None
    return visitor_id, age


def set_visitor_cookie(request, response, visitor_id):
    secure = get_setting("COOKIE_SECURE")
    response.set_cookie(
        get_setting("COOKIE_NAME"),
        sign_visitor_id(visitor_id),
        max_age=get_setting("COOKIE_AGE"),
        domain=get_setting("COOKIE_DOMAIN"),
        secure=request.is_secure() if secure is None else secure,
        httponly=True,
        samesite=get_setting("COOKIE_SAMESITE"),
    )


def delete_visitor_cookie(response):
    response.delete_cookie(
        get_setting("COOKIE_NAME"),
        domain=get_setting("COOKIE_DOMAIN"),
        samesite=get_setting("COOKIE_SAMESITE"),
    )


@lru_cache(maxsize=16)
def _compile_any(patterns):
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)


def is_bot(request):
    user_agent = request.META.get("HTTP_USER_AGENT", "")
    if not user_agent.strip():
        return True  # real browsers always send one
    pattern = _compile_any(tuple(get_setting("BOT_USER_AGENTS")))
    return bool(pattern and pattern.search(user_agent))


def refuses_tracking(request):
    """True when the browser sent a Do Not Track or Global Privacy Control signal we honour."""
    if get_setting("RESPECT_DNT") and request.META.get("HTTP_DNT") == "1":
        return True
    if get_setting("RESPECT_GPC") and request.META.get("HTTP_SEC_GPC") == "1":
        return True
    return False


def _admin_prefixes():
    # Reversed once per URLconf and script prefix, not on every tracked request.
    from django.urls import get_script_prefix, get_urlconf

    return _reverse_admin_prefixes(get_urlconf() or settings.ROOT_URLCONF, get_script_prefix())


@lru_cache(maxsize=8)
def _reverse_admin_prefixes(urlconf, script_prefix):
    from django.urls import NoReverseMatch, reverse

    prefixes = []
    for name in ("wagtailadmin_home", "admin:index"):
        try:
            prefixes.append(reverse(name, urlconf=urlconf))
        except NoReverseMatch:
            pass
    return tuple(prefixes)


def is_excluded_path(request):
    path = request.path  # with the script prefix, like reversed URLs and STATIC_URL
    prefixes = list(_admin_prefixes())
    for url_setting in ("STATIC_URL", "MEDIA_URL"):
        url = getattr(settings, url_setting, None)
        if url and url.startswith("/") and url != "/":
            prefixes.append(url)
    if any(path.startswith(prefix) for prefix in prefixes):
        return True
    pattern = _compile_any(tuple(get_setting("IGNORE_PATHS")))
    return bool(pattern and pattern.search(path))


def may_identify(request):
    """May this request carry a visitor cookie and create a profile at all?"""
    return not (refuses_tracking(request) or is_bot(request) or is_excluded_path(request))
