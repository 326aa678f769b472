"""System checks: a developer who misconfigures the three settings lines is told what to fix."""

from django.conf import settings
from django.core.checks import ERROR, WARNING, run_checks
from django.test import override_settings

from wagtail_crm.checks import check_middleware, check_settings

SESSION = "django.contrib.sessions.middleware.SessionMiddleware"
AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"
CRM = "wagtail_crm.middleware.VisitorMiddleware"


def crm_messages():
    """Every message wagtail_crm's registered checks report, through Django's own check runner."""
    return [message for message in run_checks() if message.id.startswith("wagtail_crm.")]


def ids(messages):
    return [message.id for message in messages]


def middleware_without_crm():
    return [path for path in settings.MIDDLEWARE if path != CRM]


def test_default_test_settings_have_no_crm_messages():
    assert crm_messages() == []


def test_missing_middleware_is_e001():
    with override_settings(MIDDLEWARE=middleware_without_crm()):
        messages = crm_messages()
    assert ids(messages) == ["wagtail_crm.E001"]
    assert messages[0].level == ERROR
    assert CRM in messages[0].msg
    assert "after SessionMiddleware and AuthenticationMiddleware" in messages[0].hint


def test_middleware_before_authentication_is_e003():
    middleware = middleware_without_crm()
    middleware.insert(middleware.index(AUTH), CRM)
    with override_settings(MIDDLEWARE=middleware):
        messages = crm_messages()
    assert ids(messages) == ["wagtail_crm.E003"]
    assert "must come after AuthenticationMiddleware" in messages[0].msg
    assert AUTH in messages[0].hint


def test_middleware_first_is_e003_for_session_and_authentication():
    with override_settings(MIDDLEWARE=[CRM, *middleware_without_crm()]):
        messages = check_middleware()
    assert ids(messages) == ["wagtail_crm.E003", "wagtail_crm.E003"]
    assert "SessionMiddleware" in messages[0].msg
    assert "AuthenticationMiddleware" in messages[1].msg


def test_missing_session_middleware_is_e002():
    middleware = [path for path in settings.MIDDLEWARE if path != SESSION]
    with override_settings(MIDDLEWARE=middleware):
        messages = check_middleware()
    assert ids(messages) == ["wagtail_crm.E002"]
    assert SESSION in messages[0].msg


def test_middleware_by_its_full_module_path_is_accepted():
    middleware = [
        "wagtail_crm.profiles.middleware.VisitorMiddleware" if path == CRM else path
        for path in settings.MIDDLEWARE
    ]
    with override_settings(MIDDLEWARE=middleware):
        assert check_middleware() == []


def test_rq_queue_not_in_rq_queues_is_e013():
    queues = {"crm": {"URL": "redis://127.0.0.1:6379/15"}}
    with override_settings(RQ_QUEUES=queues, WAGTAIL_CRM={"RQ_QUEUE": "crm-typo"}):
        messages = crm_messages()
    assert ids(messages) == ["wagtail_crm.E013"]
    assert "'crm-typo'" in messages[0].msg
    assert "crm" in messages[0].hint


def test_rq_queue_without_rq_queues_setting_is_e013():
    with override_settings(RQ_QUEUES=None, WAGTAIL_CRM={"RQ_QUEUE": "crm"}):
        messages = check_settings()
    assert ids(messages) == ["wagtail_crm.E013"]
    assert "none" in messages[0].hint


def test_rq_queue_without_django_rq_installed_is_e012(monkeypatch):
    # Set the list directly: override_settings(INSTALLED_APPS=...) would rebuild the whole app registry
    # (and Wagtail's API routers with it) just to read one list of strings.
    apps_without_rq = [app for app in settings.INSTALLED_APPS if app != "django_rq"]
    monkeypatch.setattr(settings, "INSTALLED_APPS", apps_without_rq)
    queues = {"crm": {"URL": "redis://127.0.0.1:6379/15"}}
    with override_settings(RQ_QUEUES=queues, WAGTAIL_CRM={"RQ_QUEUE": "crm"}):
        messages = check_settings()
    assert ids(messages) == ["wagtail_crm.E012"]
    assert "django_rq" in messages[0].msg


def test_configured_queue_is_accepted():
    queues = {"crm": {"URL": "redis://127.0.0.1:6379/15"}}
    with override_settings(RQ_QUEUES=queues, WAGTAIL_CRM={"RQ_QUEUE": "crm"}):
        assert crm_messages() == []


def test_unknown_key_is_w011_and_known_keys_are_not():
    with override_settings(WAGTAIL_CRM={"COOKIE_NAME": "vid", "COOKIE_NAEM": "typo"}):
        messages = crm_messages()
    assert ids(messages) == ["wagtail_crm.W011"]
    assert messages[0].level == WARNING
    assert "'COOKIE_NAEM'" in messages[0].msg


def test_wagtail_crm_setting_that_is_not_a_dict_is_e010():
    with override_settings(WAGTAIL_CRM=["RQ_QUEUE", "crm"]):
        messages = check_settings()
    assert ids(messages) == ["wagtail_crm.E010"]
