from django.apps import AppConfig


class WagtailCrmModelAdminAppConfig(AppConfig):
    name = "wagtail_crm.contrib.modeladmin"
    label = "wagtail_crm_modeladmin"
    verbose_name = "CRM (ModelAdmin)"
