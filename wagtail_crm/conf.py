"""The ``WAGTAIL_CRM`` settings dict, read lazily so ``override_settings`` works.

Every key and its default is documented in ``docs/reference/settings.md``.
"""

from django.conf import settings

DEFAULTS = {
    # Identity cookie
    "COOKIE_NAME": "wagtail_crm_vid",
    "COOKIE_AGE": 60 * 60 * 24 * 365 * 2,  # two years, in seconds
    "COOKIE_DOMAIN": None,
    "COOKIE_SAMESITE": "Lax",
    # None: Secure exactly when the request came over HTTPS.
    "COOKIE_SECURE": None,
    # Re-issue the cookie (sliding expiry) when its signature is older than this many seconds.
    "COOKIE_REFRESH_AGE": 60 * 60 * 24 * 7,
    # Privacy signals
    "RESPECT_DNT": True,
    "RESPECT_GPC": True,
    # Requests whose User-Agent matches any of these (case-insensitive regexes) are not tracked.
    "BOT_USER_AGENTS": [
        r"bot\b",
        r"bot/",
        r"spider",
        r"crawl",
        r"slurp",
        r"facebookexternalhit",
        r"headless",
        r"python-requests",
        r"curl/",
        r"wget/",
        r"httpclient",
        r"monitor",
        r"lighthouse",
        r"preview",
    ],
    # Paths (regexes matched against request.path) never tracked, in addition to admin, static and media.
    "IGNORE_PATHS": [r"^/favicon\.ico$", r"^/robots\.txt$"],
    # A visit ends after this many seconds without activity.
    "VISIT_TIMEOUT": 30 * 60,
    # Query parameter carrying an offer / promo code to attribute.
    "OFFER_CODE_PARAM": "offer",
    # Name of a django-rq queue (a key of RQ_QUEUES). None: run jobs inline after commit, no Redis needed.
    "RQ_QUEUE": None,
    # Largest number of events one ingest job writes in one transaction.
    "INGEST_BATCH_SIZE": 2000,
    # Prefix of the Redis keys used to buffer events.
    "REDIS_KEY_PREFIX": "wagtail_crm",
    # Facts: days of daily counters kept on each profile, and most pages/sections counted per profile.
    "FACTS_DAILY_DAYS": 90,
    "FACTS_MAX_PAGES": 200,
    # Segments: each process re-checks the segment cache version at most this often (seconds), so an edited
    # segment reaches every process within this time. 0: check on every request.
    "SEGMENT_CACHE_CHECK_INTERVAL": 5,
    # The Django cache (a key of CACHES) that holds the segment cache version. Share it between processes.
    "CACHE_ALIAS": "default",
    # Segment counts on PostgreSQL: connections that count ranges of profiles at the same time (one core each).
    "SEGMENT_COUNT_CONNECTIONS": 1,
    # Admin: the segment listing queues a recount of counts older than this many seconds.
    "SEGMENT_COUNT_MAX_AGE": 60 * 60,
    # Personalised content: "private" marks every response that rendered personalised content with
    # PERSONALISED_CACHE_CONTROL and PERSONALISED_VARY; "edge" keeps page HTML public and identical for
    # everyone and swaps personalised blocks in from the fragment endpoint (docs/how-to/caching.md).
    "CACHE_MODE": "private",
    # Keyword arguments of django.utils.cache.patch_cache_control for personalised responses.
    "PERSONALISED_CACHE_CONTROL": {"private": True},
    # Headers added to the Vary header of personalised responses.
    "PERSONALISED_VARY": ["Cookie"],
    # Variant reports: the interaction kind that counts as a conversion, and within how many days of
    # seeing a variant. A personalised block can choose its own.
    "CONVERSION_GOAL": "checkout_completed",
    "CONVERSION_DAYS": 7,
    # Admin: timeline entries per page on a profile's detail view.
    "TIMELINE_PAGE_SIZE": 50,
    # Admin: largest CSV file (bytes) accepted by the offline transactions import.
    "IMPORT_MAX_UPLOAD_SIZE": 10 * 1024 * 1024,
}


def get_setting(name):
    """Return ``WAGTAIL_CRM[name]`` or its documented default."""
    if name not in DEFAULTS:
        raise KeyError(f"Unknown wagtail_crm setting {name!r}")
    return getattr(settings, "WAGTAIL_CRM", {}).get(name, DEFAULTS[name])


def user_settings():
    return getattr(settings, "WAGTAIL_CRM", {})
