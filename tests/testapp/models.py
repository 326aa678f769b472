from wagtail.blocks import RichTextBlock
from wagtail.fields import RichTextField, StreamField
from wagtail.models import Page

import wagtail_crm
from wagtail_crm.blocks import OfferBlock, PersonalisedBlock
from wagtail_crm.segments.preview import SegmentPreviewMixin


class ContentPage(Page):
    body = RichTextField(blank=True)
    content_panels = Page.content_panels + ["body"]


class ShowsVisitorSegments:
    """Puts the visitor and the segments they are in into the template context, as personalised pages do."""

    def get_context(self, request, *args, **kwargs):
        context = super().get_context(request, *args, **kwargs)
        context["visitor"] = wagtail_crm.get_visitor(request)
        context["segments"] = wagtail_crm.segments_for(request)
        return context


class PersonalisedTestPage(SegmentPreviewMixin, ShowsVisitorSegments, Page):
    """Previewed as each live segment from Wagtail's preview panel."""

    body = RichTextField(blank=True)
    content_panels = Page.content_panels + ["body"]
    template = "testapp/personalised_test_page.html"


class PlainPersonalisedTestPage(ShowsVisitorSegments, Page):
    """The same page without ``SegmentPreviewMixin``: previewed as a segment only through "Preview as…"."""

    body = RichTextField(blank=True)
    content_panels = Page.content_panels + ["body"]
    template = "testapp/personalised_test_page.html"


class StreamTestPage(SegmentPreviewMixin, Page):
    """A page whose body uses every content block of wagtail_crm, rendered with ``{% include_block %}``."""

    body = StreamField(
        [
            ("paragraph", RichTextBlock()),
            ("personalised", PersonalisedBlock()),
            ("offer", OfferBlock()),
            ("personalised_text", PersonalisedBlock(content_block=RichTextBlock())),
        ],
        blank=True,
    )
    content_panels = Page.content_panels + ["body"]
    template = "testapp/stream_test_page.html"
