"""The StreamField that holds a segment's rules.

Its block types come from the rule registry (built-in rules plus the ``register_wagtail_crm_rule`` hook) when
the field is first used, and it deconstructs without them: the rule types a site registers never show up
as a migration of ``wagtail_crm`` (rules are stored as JSON either way).
"""

import json

from wagtail.blocks import StreamBlock
from wagtail.fields import StreamField


class RuleStreamBlock(StreamBlock):
    def __init__(self, local_blocks=None, **kwargs):
        if local_blocks is None:
            from wagtail_crm.segments.rules import get_rule_blocks

            local_blocks = get_rule_blocks()
        super().__init__(local_blocks, **kwargs)

    def to_python(self, value):
        # Wagtail drops blocks of a type it does not know. A rule type that is no longer registered must not
        # silently widen a segment to everyone: remember which types were dropped, and evaluation fails closed.
        result = super().to_python(value)
        raw = value
        if isinstance(raw, str) and raw:
            try:
                raw = json.loads(raw)
            except ValueError:
                raw = []
        if isinstance(raw, list):
            result.unknown_rule_types = [
                item.get("type")
                for item in raw
                if isinstance(item, dict) and item.get("type") not in self.child_blocks
            ]
        return result

    def deconstruct(self):
        return ("wagtail_crm.segments.fields.RuleStreamBlock", (), {})


class RuleStreamField(StreamField):
    def __init__(self, *args, **kwargs):
        # Migrations (and historical models) construct the field with the block definitions of their time;
        # the rule types in use are always the registry's.
        kwargs.pop("block_lookup", None)
        super().__init__(RuleStreamBlock, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super(StreamField, self).deconstruct()
        return name, "wagtail_crm.segments.fields.RuleStreamField", [], kwargs
