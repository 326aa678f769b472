"""A custom segment rule registered the documented way (docs/how-to/custom-rules.md), for the tests.

The same rule as the example site's ``home/rules.py``: the visitor's email address is at a domain.
"""

from django.core.exceptions import ValidationError
from django.db.models import Q
from django.db.models.lookups import EndsWith
from wagtail import blocks, hooks

from wagtail_crm.segments.expressions import AsciiLower, fold
from wagtail_crm.segments.rules import RuleBlock


class EmailDomainRule(RuleBlock):
    domain = blocks.CharBlock(
        max_length=255,
        label="email domain",
        help_text="The part after the @, e.g. example.com. Not case-sensitive.",
    )

    def ending(self, value):
        # Folded the way AsciiLower folds in SQL: A-Z only, so Python and the database agree on every address.
        return "@" + fold(value["domain"].strip())

    def matches(self, value, context):
        return fold(context.profile.email).endswith(self.ending(value))

    def as_q(self, value, context):
        # EndsWith escapes % and _ in the ending, so they match only themselves, as in Python.
        return Q(EndsWith(AsciiLower("email"), self.ending(value)))

    def validate(self, value, errors):
        domain = value["domain"].strip()
        if "@" in domain or "." not in domain or any(char.isspace() for char in domain):
            errors["domain"] = ValidationError("Type only the part after the @, e.g. example.com.")

    def describe(self, value):
        return f"Email address at {value['domain'].strip()}"

    class Meta:
        label = "Email domain"
        group = "Who they are"
        icon = "mail"


@hooks.register("register_wagtail_crm_rule")
def register_email_domain_rule():
    return ("email_domain", EmailDomainRule())
