from wagtail.fields import RichTextField
from wagtail.models import Page


class ContentPage(Page):
    body = RichTextField(blank=True)
    content_panels = Page.content_panels + ["body"]
