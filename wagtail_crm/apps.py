from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class WagtailCrmAppConfig(AppConfig):
    name = "wagtail_crm"
    label = "wagtail_crm"
    verbose_name = _("CRM")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from wagtail_crm import checks  # noqa: F401  (registers system checks)
        from wagtail_crm.content.signal_handlers import register_signal_handlers as register_offer_handlers
        from wagtail_crm.profiles.signal_handlers import register_signal_handlers
        from wagtail_crm.segments.signal_handlers import register_signal_handlers as register_segment_handlers

        register_signal_handlers()
        register_segment_handlers()
        register_offer_handlers()
