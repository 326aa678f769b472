"""The StreamField blocks of the demo pages: a few plain ones, and wagtail_crm's personalised content and offer."""

from django.apps import apps
from django.core.exceptions import ValidationError
from wagtail import blocks
from wagtail.blocks.struct_block import StructBlockValidationError
from wagtail.images.blocks import ImageChooserBlock


class HeadingBlock(blocks.CharBlock):
    class Meta:
        icon = "title"
        form_classname = "title"
        template = "home/blocks/heading.html"


class ImageBlock(blocks.StructBlock):
    image = ImageChooserBlock()
    caption = blocks.CharBlock(required=False)

    class Meta:
        icon = "image"
        template = "home/blocks/image.html"


class CallToActionValue(blocks.StructValue):
    def url(self):
        page = self.get("page")
        return page.url if page else self.get("link_url") or ""


class CallToActionBlock(blocks.StructBlock):
    heading = blocks.CharBlock()
    text = blocks.TextBlock(required=False)
    button_label = blocks.CharBlock(default="Find out more")
    page = blocks.PageChooserBlock(required=False, help_text="A page of this site…")
    link_url = blocks.URLBlock(required=False, label="Link URL", help_text="…or any other address.")

    class Meta:
        icon = "pick"
        template = "home/blocks/call_to_action.html"
        value_class = CallToActionValue

    def clean(self, value):
        value = super().clean(value)
        if bool(value.get("page")) == bool(value.get("link_url")):
            message = ValidationError("Choose a page or enter a URL (one of the two).")
            raise StructBlockValidationError(block_errors={"page": message})
        return value


class PlainBlocks(blocks.StreamBlock):
    """The site's own blocks: what a page body and each variant of a personalised block are made of."""

    heading = HeadingBlock()
    paragraph = blocks.RichTextBlock(features=["bold", "italic", "link", "ol", "ul", "h3"])
    image = ImageBlock()
    call_to_action = CallToActionBlock()


# The benchmarks also serve this site as plain Wagtail, with wagtail_crm not installed at all (its models
# cannot even be imported then): the CRM's blocks are left out there, and Wagtail skips stored blocks of a
# type the StreamField does not define.
if apps.is_installed("wagtail_crm"):
    from wagtail_crm.blocks import OfferBlock, PersonalisedBlock

    class BodyBlock(PlainBlocks):
        # Variants are made of the site's own blocks, so a personalised hero looks like the rest of the page.
        personalised = PersonalisedBlock(content_block=PlainBlocks())
        offer = OfferBlock()

else:
    BodyBlock = PlainBlocks
