"""Page types of the demo site.

``HomePage`` is the site root; everything else (sections such as Shop and Blog, their children, the
newsletter page) is a ``ContentPage`` for now. A section page lists its children, so the tree can grow
(products, posts, a checkout) without new templates.

Both can hold personalised content and offers (``home/blocks.py``); ``SegmentPreviewMixin`` adds an
"As segment: …" mode per segment to their preview panel, so editors see what each audience gets.
"""

from django.db import models
from wagtail.admin.panels import FieldPanel
from wagtail.fields import RichTextField, StreamField
from wagtail.models import Page
from wagtail.search import index

from home.blocks import BodyBlock
from wagtail_crm.segments.preview import SegmentPreviewMixin


class HomePage(SegmentPreviewMixin, Page):
    hero_heading = models.CharField(max_length=255, blank=True)
    intro = RichTextField(blank=True, features=["bold", "italic", "link"])
    body = StreamField(BodyBlock(), blank=True)

    content_panels = Page.content_panels + [
        FieldPanel("hero_heading"),
        FieldPanel("intro"),
        FieldPanel("body"),
    ]
    search_fields = Page.search_fields + [index.SearchField("intro"), index.SearchField("body")]

    max_count = 1
    parent_page_types = ["wagtailcore.Page"]
    template = "home/home_page.html"

    def get_context(self, request, *args, **kwargs):
        context = super().get_context(request, *args, **kwargs)
        context["sections"] = self.get_children().live().in_menu().specific()
        return context


class ContentPage(SegmentPreviewMixin, Page):
    intro = models.TextField(blank=True, help_text="A sentence or two shown under the title and in listings.")
    body = StreamField(BodyBlock(), blank=True)

    content_panels = Page.content_panels + [FieldPanel("intro"), FieldPanel("body")]
    search_fields = Page.search_fields + [index.SearchField("intro"), index.SearchField("body")]

    template = "home/content_page.html"

    def get_context(self, request, *args, **kwargs):
        context = super().get_context(request, *args, **kwargs)
        context["children"] = self.get_children().live().public().specific()
        return context
