"""The 20 segments both segment benchmarks use: every built-in rule type, ALL and ANY, with and without exclude
rules, in the vocabulary of the example site (its pages, campaigns, offer codes and survey).

``create_segments()`` stores them (replacing any benchmark segments from an earlier run) and returns them.
"""

SLUG_PREFIX = "bench-"
GROUP_NAMES = ("Wholesale", "Staff picks")


def _rule(type_, **value):
    return {"type": type_, "value": value}


def definitions(pages, group_id):
    """(name, match, rules, exclude rules) of the 20 segments; ``pages`` maps "shop", "shoes", "bags",
    "blog" to page ids, ``group_id`` is the "Wholesale" group."""
    orders = _rule("purchases", measure="orders", amount="1.00", within_days=None)
    return [
        ("Newsletter readers", "all", [_rule("campaign", parameter="utm_source", touch="either",
                                             operator="equals", value="newsletter")], []),
        ("Returning customers", "all", [_rule("visitor_type", visitor="returning"), orders], []),
        ("First-time visitors", "all", [_rule("visitor_type", visitor="first_time")], []),
        ("Lapsed", "all", [_rule("days_since_last_visit", operator="gte", days=60)], []),
        ("Survey: running shoes next", "all", [_rule("survey_answer", question="next_design",
                                                     answer="running shoes")], []),
        ("Search arrivals", "any", [_rule("referrer", touch="first", host="google"),
                                    _rule("campaign", parameter="utm_medium", touch="last",
                                          operator="equals", value="cpc")], []),
        ("Offer code, no order this month", "all", [_rule("offer_code", touch="either", code="")],
         [_rule("purchases", measure="orders", amount="1.00", within_days=30)]),
        ("Members with email consent", "all", [_rule("logged_in", state="yes"),
                                               _rule("consent", channel="email")], []),
        ("Wholesale accounts", "all", [_rule("group", group=str(group_id))], []),
        ("Shoe browsers this month", "all", [_rule("page_views", page=pages["shoes"], count=3,
                                                   within_days=30)], []),
        ("Blog readers", "all", [_rule("page_views", page=pages["blog"], count=2, within_days=None)], []),
        ("Big spenders (90 days)", "all", [_rule("purchases", measure="spend", amount="200.00",
                                                 within_days=90)], []),
        ("Frequent buyers", "all", [_rule("purchases", measure="orders", amount="2.00", within_days=60),
                                    _rule("visit_count", operator="gte", count=5)], []),
        ("Active this week", "all", [_rule("activity", kind="page_view", custom_kind="", count=5,
                                           within_days=7)], []),
        ("Abandoned a basket", "all", [_rule("abandoned_checkout", within_days=7)],
         [_rule("purchases", measure="orders", amount="1.00", within_days=7)]),
        ("Gold tier", "all", [_rule("loyalty_tier", tier="gold")], []),
        ("Points to spend", "all", [_rule("loyalty_points", operator="gte", points=500),
                                    _rule("consent", channel="email")], []),
        ("Weekday lunchtime regulars", "all", [_rule("time_window", days=["0", "1", "2", "3", "4"],
                                                     start="11:00:00", end="14:00:00"),
                                               _rule("visit_count", operator="gte", count=3)], []),
        ("Campaign responders, not customers", "any", [
            _rule("campaign", parameter="utm_campaign", touch="either", operator="contains", value="sale"),
            _rule("referrer", touch="either", host="facebook"),
            _rule("offer_code", touch="last", code="summer15"),
        ], [orders]),
        ("Engaged bag shoppers", "all", [
            _rule("page_views", page=pages["bags"], count=2, within_days=60),
            _rule("activity", kind="checkout_started", custom_kind="", count=1, within_days=None),
            _rule("days_since_last_visit", operator="lte", days=30),
        ], [_rule("logged_in", state="no"), _rule("consent", channel="phone")]),
    ]  # fmt: skip


def example_pages():
    """Page ids of the example site's sections the segments refer to."""
    from wagtail.models import Page

    pages = {}
    for key, path in {
        "shop": "/shop/",
        "shoes": "/shop/shoes/",
        "bags": "/shop/bags/",
        "blog": "/blog/",
    }.items():
        page = Page.objects.filter(url_path__endswith=path).order_by("depth").first()
        if page is None:
            raise RuntimeError(f"The example site has no page at {path}: was load_crm_demo run?")
        pages[key] = page.pk
    return pages


def ensure_groups():
    """The benchmark's groups, by name → id."""
    from django.contrib.auth.models import Group

    return {name: Group.objects.get_or_create(name=name)[0].pk for name in GROUP_NAMES}


def create_segments(pages, group_id):
    """Store the 20 segments (active, no dates), replacing every other segment; returns them in order.

    ``bulk_create`` sends no ``post_save``, so no recount job runs; the segment cache is invalidated.
    """
    from wagtail_crm.segments.evaluation import invalidate_segment_cache
    from wagtail_crm.segments.models import Segment

    # The benchmark database holds exactly these 20 (the example site's demo data defines a few more).
    Segment.objects.all().delete()
    segments = []
    for number, (name, match, rules, excludes) in enumerate(definitions(pages, group_id), start=1):
        segment = Segment(
            name=name,
            slug=f"{SLUG_PREFIX}{number:02d}",
            match=match,
            rules=rules,
            exclude_rules=excludes,
        )
        segment.full_clean()  # the definitions must pass the same validation as the editor's form
        segments.append(segment)
    Segment.objects.bulk_create(segments)
    invalidate_segment_cache()
    return list(Segment.objects.filter(slug__startswith=SLUG_PREFIX).order_by("slug"))


def rule_types(segments):
    """The rule type names the segments use (to check every built-in type is covered)."""
    names = set()
    for segment in segments:
        for stream in (segment.rules, segment.exclude_rules):
            names.update(child.block_type for child in stream)
    return names
