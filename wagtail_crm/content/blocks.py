"""``PersonalisedBlock``: a StreamField block with a variant per audience segment and a default.

Sites import these from ``wagtail_crm.blocks``. Like every StructBlock, a ``PersonalisedBlock`` is frozen into
the site's migrations as plain blocks, so the classes here can change without touching those migrations.
"""

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _
from wagtail import blocks
from wagtail.blocks.struct_block import BlockGroup
from wagtail.embeds.blocks import EmbedBlock
from wagtail.images.blocks import ImageBlock

from wagtail_crm.content import rendering
from wagtail_crm.content.choices import GoalChoiceBlock, SegmentChoiceBlock


class CallToActionBlock(blocks.StructBlock):
    text = blocks.CharBlock(label=_("text"), max_length=80)
    page = blocks.PageChooserBlock(label=_("page"), required=False)
    url = blocks.URLBlock(label=_("or URL"), required=False)
    style = blocks.ChoiceBlock(
        label=_("style"),
        choices=[("button", _("Button")), ("link", _("Link"))],
        default="button",
    )

    class Meta:
        icon = "link-external"
        label = _("Call to action")
        label_format = "{text}"
        template = "wagtail_crm/content/call_to_action.html"

    def clean(self, value):
        value = super().clean(value)
        if bool(value.get("page")) == bool(value.get("url")):
            raise blocks.StructBlockValidationError(
                block_errors={"url": ValidationError(_("Choose a page or enter a URL (one of the two)."))}
            )
        return value

    def get_context(self, value, parent_context=None):
        context = super().get_context(value, parent_context=parent_context)
        page = value.get("page")
        context["href"] = page.url if page is not None else value.get("url")
        return context


class PersonalisedContentBlock(blocks.StreamBlock):
    """The default content of a variant: rich text, an image, a call to action, an embed."""

    rich_text = blocks.RichTextBlock(label=_("Text"))
    image = ImageBlock(label=_("Image"))
    call_to_action = CallToActionBlock()
    embed = EmbedBlock(label=_("Embed"), icon="media")

    class Meta:
        icon = "doc-full"


def _segment_field(label, help_text, required):
    return SegmentChoiceBlock(
        label=label, required=required, widget=forms.CheckboxSelectMultiple, help_text=help_text
    )


class VariantBlock(blocks.StructBlock):
    """One variant: shown to visitors in any of ``segments``, unless they are in any of ``hide_from``."""

    def __init__(self, content_block=None, **kwargs):
        content_block = content_block if content_block is not None else PersonalisedContentBlock()
        super().__init__(
            [
                (
                    "segments",
                    _segment_field(
                        _("show to"), _("Visitors in any of these segments see this variant."), True
                    ),
                ),
                (
                    "hide_from",
                    _segment_field(
                        _("but not to"),
                        _("Optional: visitors also in any of these see the next match."),
                        False,
                    ),
                ),
                ("content", content_block),
            ],
            **kwargs,
        )

    class Meta:
        icon = "group"
        label = _("Variant")
        # The collapsed variant shows its segments ("Newsletter readers, Returning customers").
        label_format = "{segments}"


class PersonalisedBlock(blocks.StructBlock):
    """Variants per segment (first match in editor order wins) and a default for everyone else.

    ``content_block``: the StreamBlock (or any block) each variant and the default are made of; by default
    ``PersonalisedContentBlock``. An empty default shows nothing to visitors no variant matches.
    """

    def __init__(self, local_blocks=None, content_block=None, **kwargs):
        if local_blocks is None:
            content_block = content_block if content_block is not None else PersonalisedContentBlock()
            default_block = content_block.__class__(
                *content_block._constructor_args[0],
                **{**content_block._constructor_args[1], "required": False},
            )
            local_blocks = [
                (
                    "variants",
                    blocks.ListBlock(
                        VariantBlock(content_block), label=_("Variants"), min_num=1, collapsed=True
                    ),
                ),
                ("default", default_block),
                (
                    "name",
                    blocks.CharBlock(
                        label=_("name in reports"),
                        required=False,
                        max_length=80,
                        help_text=_("e.g. “Home hero”: how the variant report names this block."),
                    ),
                ),
                (
                    "goal",
                    GoalChoiceBlock(
                        label=_("conversion goal"),
                        required=False,
                        help_text=_("What counts as a conversion of a variant in the variant report."),
                    ),
                ),
                (
                    "goal_days",
                    blocks.IntegerBlock(
                        label=_("within days"),
                        required=False,
                        min_value=1,
                        max_value=365,
                        help_text=_(
                            "Counted when the goal follows seeing the variant within this many days."
                        ),
                    ),
                ),
            ]
        super().__init__(local_blocks, **kwargs)
        # Deconstruct as the plain StructBlock of the children built above (Wagtail's convention).
        self._constructor_kwargs = {k: v for k, v in self._constructor_kwargs.items() if k != "content_block"}

    class Meta:
        icon = "group"
        label = _("Personalised content")
        form_layout = BlockGroup(
            children=["variants", "default"],
            settings=["name", "goal", "goal_days"],
        )
        label_format = "{name}"

    def choose(self, value, segment_ids):
        """``(variant key, content)`` for a visitor in ``segment_ids``: the first matching variant, else the
        default (``content`` is None when the default is empty)."""
        variants = value.get("variants")
        for position, item in enumerate(getattr(variants, "bound_blocks", ())):
            shown_to = item.value.get("segments") or ()
            hidden_from = item.value.get("hide_from") or ()
            if any(pk in segment_ids for pk in shown_to) and not any(pk in segment_ids for pk in hidden_from):
                # Saved variants have ids; one built in code before its first save is known by position.
                return item.id or f"#{position + 1}", item.value.get("content")
        return rendering.DEFAULT_VARIANT, value.get("default")

    def get_searchable_content(self, value):
        # Every variant's words make the page findable; segment names and report settings are not content.
        content_block = self.child_blocks["default"]
        searchable = []
        for item in value.get("variants") or ():
            searchable += content_block.get_searchable_content(item.get("content"))
        if value.get("default"):
            searchable += content_block.get_searchable_content(value.get("default"))
        return searchable

    def render(self, value, context=None):
        block_id = context.get("id") if context is not None else None
        if rendering.in_edge_slot(context):
            html = self._render_content(value.get("default"), context)
            return rendering.slot(block_id, html) if block_id else html
        visitor = rendering.visitor_for(context)
        if visitor is None:
            return self._render_content(value.get("default"), context)
        variant, content = self.choose(value, visitor.segment_ids)
        rendering.note_impression(
            context,
            block_id=block_id,
            variant=variant,
            goal=value.get("goal"),
            goal_days=value.get("goal_days"),
        )
        return self._render_content(content, context)

    def _render_content(self, content, context):
        if not content:
            return ""
        block = self.child_blocks["default"]
        return block.render(content, context=context)
