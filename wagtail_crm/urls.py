"""Public URLs of wagtail_crm, mounted by the site with ``path("crm/", include("wagtail_crm.urls"))``.

The namespace is ``wagtail_crm``. Visitor-facing endpoints of later capabilities (survey submission, the
loyalty webhook) are added here, so sites mount the include once, now.
"""

from django.urls import path

from wagtail_crm.content import views as content_views

app_name = "wagtail_crm"

urlpatterns = [
    path("personalise/", content_views.fragments, name="fragments"),
]
