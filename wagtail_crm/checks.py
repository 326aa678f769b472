"""System checks: name what is missing or misordered in a site's configuration."""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from wagtail_crm.conf import DEFAULTS, user_settings

MIDDLEWARE_PATH = "wagtail_crm.middleware.VisitorMiddleware"
MIDDLEWARE_ALIASES = {MIDDLEWARE_PATH, "wagtail_crm.profiles.middleware.VisitorMiddleware"}
REQUIRED_BEFORE = {
    "django.contrib.sessions.middleware.SessionMiddleware": "SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware": "AuthenticationMiddleware",
}


@register(Tags.compatibility)
def check_middleware(app_configs=None, **kwargs):
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    positions = [i for i, path in enumerate(middleware) if path in MIDDLEWARE_ALIASES]
    if not positions:
        return [
            Error(
                f"'{MIDDLEWARE_PATH}' is not in MIDDLEWARE.",
                hint="Add it after SessionMiddleware and AuthenticationMiddleware.",
                id="wagtail_crm.E001",
            )
        ]
    errors = []
    position = positions[0]
    for path, name in REQUIRED_BEFORE.items():
        if path not in middleware:
            errors.append(
                Error(
                    f"wagtail_crm needs '{path}' in MIDDLEWARE.",
                    hint="Visitors are merged into users at login through the session.",
                    id="wagtail_crm.E002",
                )
            )
        elif middleware.index(path) > position:
            errors.append(
                Error(
                    f"'{MIDDLEWARE_PATH}' must come after {name} in MIDDLEWARE.",
                    hint=f"Move it below '{path}'.",
                    id="wagtail_crm.E003",
                )
            )
    return errors


@register(Tags.compatibility)
def check_settings(app_configs=None, **kwargs):
    messages = []
    configured = user_settings()
    if not isinstance(configured, dict):
        return [Error("WAGTAIL_CRM must be a dict.", id="wagtail_crm.E010")]
    for key in sorted(set(configured) - set(DEFAULTS)):
        messages.append(
            Warning(
                f"WAGTAIL_CRM has an unknown key {key!r}; it is ignored.",
                hint="See docs/reference/settings.md for the settings wagtail_crm reads.",
                id="wagtail_crm.W011",
            )
        )
    queue = configured.get("RQ_QUEUE")
    if queue:
        if "django_rq" not in settings.INSTALLED_APPS:
            messages.append(
                Error(
                    "WAGTAIL_CRM['RQ_QUEUE'] is set but 'django_rq' is not in INSTALLED_APPS.",
                    hint="Add 'django_rq' to INSTALLED_APPS, or remove RQ_QUEUE to run jobs inline.",
                    id="wagtail_crm.E012",
                )
            )
        queues = getattr(settings, "RQ_QUEUES", None) or {}
        if queue not in queues:
            messages.append(
                Error(
                    f"WAGTAIL_CRM['RQ_QUEUE'] is {queue!r}, but RQ_QUEUES has no such queue.",
                    hint=f"Define RQ_QUEUES[{queue!r}] or use one of: {', '.join(queues) or 'none'}.",
                    id="wagtail_crm.E013",
                )
            )
    return messages
