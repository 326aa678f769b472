from wagtail import hooks

from wagtail_crm.admin_viewsets import CRMViewSetGroup
from wagtail_crm.profiles.middleware import PAGE_ATTRIBUTE


@hooks.register("before_serve_page")
def remember_served_page(page, request, serve_args, serve_kwargs):
    # The middleware records the page view after the response; this tells it which page was served.
    setattr(request, PAGE_ATTRIBUTE, page.pk)


@hooks.register("register_admin_viewset")
def register_crm_admin():
    return CRMViewSetGroup()
