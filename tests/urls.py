from django.contrib.auth import views as auth_views
from django.http import JsonResponse
from django.urls import include, path
from wagtail import urls as wagtail_urls
from wagtail.admin import urls as wagtailadmin_urls

from tests.testapp import views

urlpatterns = [
    path("admin/", include(wagtailadmin_urls)),
    path("accounts/login/", auth_views.LoginView.as_view(template_name="testapp/login.html")),
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="/")),
    path("api/ping/", lambda request: JsonResponse({"ok": True})),
    path("newsletter/", views.newsletter_signup),
    path("my-segments/", views.my_segments),
    path("crm/", include("wagtail_crm.urls")),
    path("", include(wagtail_urls)),
]
