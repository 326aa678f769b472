"""Stand-ins for wagtail_crm's template tags where the app is not installed (the benchmarks' plain-Wagtail runs,
``BENCH_PLAIN=1``): they render what the real tags render without a visitor, so the example site's templates
render unchanged. Registered as the ``wagtail_crm`` tag library by ``benchmarks/settings.py``."""

import re

from django import template

register = template.Library()


@register.simple_tag
def crm_greeting(greeting, fallback=None):
    return fallback if fallback is not None else re.sub(r"[,\s]*\{name\}", "", greeting)


@register.simple_tag
def wagtail_crm_script():
    return ""
