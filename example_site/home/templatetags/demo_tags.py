from django import template
from wagtail.models import Site

register = template.Library()


@register.inclusion_tag("home/tags/main_menu.html", takes_context=True)
def main_menu(context):
    """Links to the site root's children marked "show in menus"; the current section is highlighted."""
    request = context.get("request")
    site = Site.find_for_request(request) if request is not None else None
    root = site.root_page if site else None
    page = context.get("page")
    current_path = getattr(page, "url_path", "")
    items = []
    if root is not None:
        items = [
            (item, current_path.startswith(item.url_path)) for item in root.get_children().live().in_menu()
        ]
    return {"root": root, "items": items, "request": request}
