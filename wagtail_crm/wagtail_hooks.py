from wagtail import hooks
from wagtail.snippets.models import register_snippet

from wagtail_crm.admin_viewsets import CRMViewSetGroup
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


@hooks.register(PROFILE_QUERYSET_HOOK)
def annotate_profile_for_segments(queryset, request):
    # Rules that need more than the profile row (group membership) read it from the same single query.
    annotations = active_profile_annotations()
    return queryset.annotate(**annotations) if annotations else queryset
