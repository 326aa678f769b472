from wagtail_crm.profiles.middleware import VisitorMiddleware  # noqa: F401
