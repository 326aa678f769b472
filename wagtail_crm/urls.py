"""Public URLs of wagtail_crm, mounted by the site with ``path("crm/", include("wagtail_crm.urls"))``.

The namespace is ``wagtail_crm``. Visitor-facing endpoints of later capabilities (survey submission, the
loyalty webhook, personalised fragments) are added here, so sites mount the include once, now.
"""

app_name = "wagtail_crm"

urlpatterns = []
