from wagtail import hooks
from wagtail.snippets.models import register_snippet

from wagtail_crm.admin_viewsets import CRMViewSetGroup
from wagtail_crm.content.offer_admin import OfferCodePoolViewSet
from wagtail_crm.profiles.middleware import PAGE_ATTRIBUTE
from wagtail_crm.profiles.visitor import PROFILE_QUERYSET_HOOK
from wagtail_crm.segments.admin import SegmentViewSet
from wagtail_crm.segments.evaluation import active_profile_annotations


@hooks.register("before_serve_page")
def remember_served_page(page, request, serve_args, serve_kwargs):
    # The middleware records the page view after the response; this tells it which page was served.
    setattr(request, PAGE_ATTRIBUTE, page.pk)


@hooks.register("register_admin_viewset")
def register_crm_admin():
    return CRMViewSetGroup()


register_snippet(SegmentViewSet)
register_snippet(OfferCodePoolViewSet)


@hooks.register(PROFILE_QUERYSET_HOOK)
def annotate_profile_for_segments(queryset, request):
    # Rules that need more than the profile row (group membership) read it from the same single query.
    annotations = active_profile_annotations()
    return queryset.annotate(**annotations) if annotations else queryset


# -- Preview as a segment (wagtail_crm/segments/preview_views.py) -------------------------------------------


@hooks.register("register_admin_urls")
def register_preview_as_urls():
    from django.urls import include, path

    from wagtail_crm.segments import preview_views

    urls = (preview_views.urlpatterns, preview_views.app_name)
    return [path("crm/preview/", include(urls, namespace=preview_views.app_name))]


@hooks.register("register_page_header_buttons")
def preview_as_header_button(page, user, view_name, next_url=None):
    from wagtail_crm.segments.preview_views import PreviewAsMenuItem

    yield PreviewAsMenuItem(page=page, priority=12)


# -- end of preview as a segment ----------------------------------------------------------------------------


# -- Personalisation report (wagtail_crm/content/reports.py) ------------------------------------------------


@hooks.register("register_admin_viewset")
def register_personalisation_report():
    from wagtail_crm.content.reports import PersonalisationReportViewSet

    return PersonalisationReportViewSet()


# -- end of personalisation report --------------------------------------------------------------------------
