#!/usr/bin/env python
"""What do personalised blocks cost a page? 5 PersonalisedBlocks over 20 segments vs plain Wagtail, one run.

Two pages of the example site, side by side in the same section (``--path``, default ``/shop/``) with the same
title, intro and template (``home/content_page.html``):

- the **personalised page**: 5 ``PersonalisedBlock``, each with 2 to 4 variants (a rich text each) shown to
  segments of ``benchmarks/_segments.py`` (some with "but not to" segments) and a default, in the 20 segments'
  vocabulary: a hero, an offer, a loyalty note, a recommendation, a come-back message;
- the **plain page**: the 5 rich texts the returning visitor below sees on the personalised page, as 5
  ordinary paragraph blocks. Both pages show that visitor the same text (checked before timing).

The visitor is the returning visitor of ``segments_render.py`` (a signed cookie; a stored profile with three
months of history, in 13 of the 20 active segments). Four configurations, in alternating blocks in one run:

- **personalised**: the plugin on, the personalised page, the returning visitor;
- **personalised, new visitor**: the same page for a visitor without a cookie (no profile to load);
- **plain blocks, plugin on**: the plain page with the plugin on (the plugin's cost without personalisation);
- **plain Wagtail**: a subprocess without ``wagtail_crm`` installed serving the plain page. The target:
  personalised / plain Wagtail <= 1.10 (median of paired ratios).

It prints median times, the paired ratios, the queries per request, and where the time of the body goes in
the plugin's requests (an instrumented pass, untimed otherwise): converting the stored body into blocks,
rendering them, of which the personalised blocks, of which evaluating the segments, of which loading the
profile.

    python benchmarks/personalised_render.py                  # SQLite, queue on Redis DB 14
    python benchmarks/personalised_render.py --db postgres    # database wagtail_crm_bench_personalised
    python benchmarks/personalised_render.py --inline         # no queue: page views written in the request
"""

import argparse
import re
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import _common, segments_render  # noqa: E402
from benchmarks import request_overhead as overhead  # noqa: E402

TARGET_RATIO = 1.10
CASE = "page"
CONFIGS = ("personalised", "personalised_new", "plain_on", "plain")
CONFIG_LABELS = {
    "personalised": "personalised page, returning visitor",
    "personalised_new": "personalised page, new visitor",
    "plain_on": "plain blocks, plugin on",
    "plain": "plain blocks, plain Wagtail (no app)",
}
TITLE = "The autumn edit"
INTRO = "Boots, bags and care kits for the colder months, picked by the workshop."
SLUGS = {"personalised": "autumn-edit", "plain": "autumn-edit-plain"}


def _text(heading, *sentences):
    # Rich text as an editor writes it: a small heading, a paragraph with emphasis and a link.
    return f'<h3>{heading}</h3><p>{" ".join(sentences)} <a href="/shop/">Shop the <b>autumn edit</b></a>.</p>'


# (block name, variants: (show to, but not to, rich text), default rich text), segments by name.
BLOCKS = [
    ("Hero", [
        (["First-time visitors"], [],
         _text("New here? Shoes and bags made by hand", "Twelve of us cut, stitch and finish what we sell.")),
        (["Returning customers"], ["Lapsed"],
         _text("Good to see you again", "Everything you bought from us is repaired free for two years.")),
        (["Newsletter readers"], [],
         _text("Thanks for reading our newsletter", "This month: a winter routine for your shoes.")),
    ], _text("Made to last, made to mend", "Every pair and every bag comes from our own workshop.")),
    ("Offer", [
        (["Abandoned a basket"], [],
         _text("Your basket is waiting", "We kept your size aside until Sunday.")),
        (["Offer code, no order this month", "Campaign responders, not customers"], [],
         _text("Your code still works", "Use it on anything in the autumn edit.")),
        (["Big spenders (90 days)"], ["Wholesale accounts"],
         _text("A gift with your next order", "Pick a care kit or a card holder.")),
        (["Frequent buyers"], [],
         _text("Free resoling for regulars", "Bring any pair to one of our shops.")),
    ], _text("Free delivery over 100", "Orders ship within two working days.")),
    ("Loyalty", [
        (["Gold tier"], [],
         _text("Gold members shop the sale first", "Your early access starts on Thursday.")),
        (["Points to spend"], [],
         _text("You have points to spend", "500 points take 10 off your next order.")),
    ], _text("Join our loyalty scheme", "Earn a point for every pound you spend with us.")),
    ("Recommendation", [
        (["Survey: running shoes next"], [],
         _text("Our first running shoe", "You asked for it: first pairs in March.")),
        (["Shoe browsers this month"], [],
         _text("Still thinking about boots?", "The Chelsea boot comes in three new colours.")),
        (["Engaged bag shoppers", "Blog readers"], [],
         _text("Bags for every commute", "By bike, by train or on foot: find yours.")),
    ], _text("New this season", "Chelsea boots, work totes and a weekend holdall.")),
    ("Come back", [
        (["Lapsed"], [],
         _text("We have missed you", "Come back for 15% off for two weeks.")),
        (["Search arrivals"], [],
         _text("Found us on Google?", "Here is what people search for most.")),
        (["Members with email consent"], ["Wholesale accounts"],
         _text("News from the workshop", "Our monthly letter is out on Friday.")),
    ], _text("Made in Yorkshire", "Visit the workshop in Leeds on the first Saturday of the month.")),
]  # fmt: skip
HEADING = re.compile(rb"<h3>([^<]+)</h3>")


# -- the pages ----------------------------------------------------------------------------------------------


def chosen(blocks, segment_names):
    """The rich text each block shows a visitor in ``segment_names``: the first variant shown to one of their
    segments and hidden from none (editor order), else the default. Written out here to check the plugin."""
    texts = []
    for _name, variants, default in blocks:
        for show_to, hide_from, text in variants:
            if segment_names.intersection(show_to) and not segment_names.intersection(hide_from):
                texts.append(text)
                break
        else:
            texts.append(default)
    return texts


def personalised_body(segment_ids):
    def variant(number, show_to, hide_from, text):
        return {
            "type": "item",
            "id": f"variant-{number}",
            "value": {
                "segments": [segment_ids[name] for name in show_to],
                "hide_from": [segment_ids[name] for name in hide_from],
                "content": [{"type": "paragraph", "value": text}],
            },
        }

    return [
        {
            "type": "personalised",
            "id": f"block-{number}",
            "value": {
                "variants": [variant(n, *spec) for n, spec in enumerate(variants, start=1)],
                "default": [{"type": "paragraph", "value": default}],
                "name": name,
                "goal": "",
                "goal_days": None,
            },
        }
        for number, (name, variants, default) in enumerate(BLOCKS, start=1)
    ]


def create_pages(args, segments, visitor_segments):
    """The personalised page and its plain twin (what the returning visitor sees) in the ``--path`` section;
    returns their URLs."""
    from home.models import ContentPage
    from wagtail.models import Page

    parent = Page.objects.filter(url_path__endswith=args.path).order_by("depth").first()
    if parent is None:
        sys.exit(f"No page at {args.path} in the example site.")
    segment_ids = {segment.name: str(segment.pk) for segment in segments}
    missing = {name for _, variants, _ in BLOCKS for v in variants for name in v[0] + v[1]} - set(segment_ids)
    assert not missing, f"unknown segments: {missing}"
    bodies = {
        "personalised": personalised_body(segment_ids),
        "plain": [{"type": "paragraph", "value": text} for text in chosen(BLOCKS, visitor_segments)],
    }
    stream_block = ContentPage._meta.get_field("body").stream_block
    urls = {}
    for kind, body in bodies.items():
        page = ContentPage(title=TITLE, slug=SLUGS[kind], intro=INTRO, body=body)
        stream_block.clean(page.body)  # what the page editor's form would accept
        parent.add_child(instance=page)
        urls[kind] = page.get_url_parts()[2]
    return urls


# -- instrumentation ----------------------------------------------------------------------------------------


class Breakdown:
    """Where a request's time goes, per request: converting the stored body into blocks (``load``: Wagtail
    does it when the template first iterates the body), rendering the body's blocks (``blocks``: every
    ``{% include_block %}``), of which the personalised blocks (``personalised``), of which evaluating the
    active segments (``segments``), of which loading the visitor's profile (``profile``).

    Patches those functions while it runs (outermost calls count); the timed requests run without it."""

    PARTS = ("load", "blocks", "personalised", "segments", "profile")

    def __init__(self):
        self.current = defaultdict(int)
        self.active = defaultdict(int)

    def _timed(self, part, func, outside=None):
        current, active, clock = self.current, self.active, time.perf_counter_ns

        def wrapper(*args, **kwargs):
            if active[part] or (outside and active[outside]):
                return func(*args, **kwargs)
            active[part] += 1
            started = clock()
            try:
                return func(*args, **kwargs)
            finally:
                current[part] += clock() - started
                active[part] -= 1

        return wrapper

    def run(self, handler, environ, n):
        from wagtail.blocks import StreamValue
        from wagtail.templatetags.wagtailcore_tags import IncludeBlockNode

        from wagtail_crm.content.blocks import PersonalisedBlock
        from wagtail_crm.profiles.visitor import Visitor
        from wagtail_crm.segments import evaluation

        profile_property = Visitor.__dict__["profile"]
        patches = [
            (StreamValue, "_prefetch_blocks", "load", "blocks"),  # nested streams convert while rendering
            (IncludeBlockNode, "render", "blocks", None),
            (PersonalisedBlock, "render", "personalised", None),
            (evaluation, "evaluate_visitor", "segments", None),
            (profile_property, "func", "profile", None),
        ]
        originals = [(owner, name, getattr(owner, name)) for owner, name, _part, _outside in patches]
        for (owner, name, func), (_, _, part, outside) in zip(originals, patches, strict=True):
            setattr(owner, name, self._timed(part, func, outside))
        requests = []
        try:
            for _ in range(n):
                self.current.clear()
                overhead.run_requests(handler, environ, 1)
                requests.append(dict(self.current))
        finally:
            for owner, name, func in originals:
                setattr(owner, name, func)
        return {part: statistics.median(r.get(part, 0) for r in requests) / 1e6 for part in self.PARTS}


# -- the benchmark ------------------------------------------------------------------------------------------


def visitor_segment_names(path, cookie):
    """The names of the segments the plugin puts a request with ``cookie`` in (``segments_for``)."""
    from django.core.handlers.wsgi import WSGIRequest

    import wagtail_crm

    request = WSGIRequest(dict(overhead.make_environ(path, cookie)))
    return {segment.name for segment in wagtail_crm.segments_for(request)}


def headings(body):
    return [heading.decode() for heading in HEADING.findall(body)]


def main_text(body):
    """The visible text of the page's <main>, whitespace collapsed (block wrappers differ, not the text)."""
    main = body.split(b"<main", 1)[1].split(b"</main>", 1)[0]
    return " ".join(re.sub(rb"<[^>]+>", b" ", main).decode().split())


def measure(args, env):
    import django

    django.setup()
    from django.conf import settings

    from wagtail_crm.segments.models import Segment

    assert overhead.PLUGIN_MIDDLEWARE in settings.MIDDLEWARE
    cookie, _profile = segments_render.prepare_site(args)
    segments = list(Segment.objects.all())
    assert len(segments) == 20, len(segments)
    handler = overhead.build_handler(settings.MIDDLEWARE)
    returning = visitor_segment_names("/", cookie)
    new = visitor_segment_names("/", None)
    urls = create_pages(args, segments, returning)
    environs = {
        "personalised": overhead.make_environ(urls["personalised"], cookie),
        "personalised_new": overhead.make_environ(urls["personalised"], None),
        "plain_on": overhead.make_environ(urls["plain"], cookie),
    }
    expected = {
        config: [HEADING.search(text.encode()).group(1).decode() for text in chosen(BLOCKS, names)]
        for config, names in (("personalised", returning), ("personalised_new", new), ("plain_on", returning))
    }

    # Sanity: each page shows the variants the rules above choose, and both pages show the returning visitor
    # the same text.
    bodies = {}
    for config, environ in environs.items():
        status, bodies[config] = segments_render.render_once(handler, environ)
        assert status == "200 OK", (config, status)
        assert headings(bodies[config]) == expected[config], (
            config,
            headings(bodies[config]),
            expected[config],
        )
    assert main_text(bodies["personalised"]) == main_text(bodies["plain_on"])
    defaults = [HEADING.search(default.encode()).group(1).decode() for _, _, default in BLOCKS]
    shown_variants = sum(a != b for a, b in zip(expected["personalised"], defaults, strict=True))

    configs = [c for c in CONFIGS if c != "plain" or args.plain]
    plain = overhead.PlainWagtail(urls["plain"], env) if args.plain else None

    def timed(config, n):
        if config == "plain":
            return plain.time(cookie, n)
        return overhead.run_requests(handler, environs[config], n)[0]

    try:
        for config in configs:  # warm-up: templates, URL resolvers, the per-process segment cache, Redis
            timed(config, args.warmup)
        blocks = {(config, CASE): [] for config in configs}
        rounds = max(1, args.n // args.block)
        started = time.monotonic()
        for round_number in range(rounds):
            order = configs if round_number % 2 == 0 else configs[::-1]
            for config in order:
                blocks[config, CASE].append(timed(config, args.block))
        elapsed = time.monotonic() - started

        queries = {}
        for config in configs:
            if config == "plain":
                queries[config] = dict(plain.count(cookie, args.count), profile=0.0, segments=0.0)
            else:
                statements = segments_render.capture_queries(handler, environs[config], args.count)
                queries[config] = segments_render.classify(statements, args.count)
    finally:
        if plain is not None:
            plain.close()
    breakdown = {
        config: Breakdown().run(handler, environs[config], args.count * 10)
        for config in configs
        if config != "plain"
    }
    report(
        args, urls, blocks, queries, configs, rounds, elapsed, returning, expected, shown_variants, breakdown
    )


def report(args, urls, blocks, queries, configs, rounds, elapsed, returning, expected, shown, breakdown):
    from django.conf import settings

    from wagtail_crm import jobs

    samples = {key: [t for block in value for t in block] for key, value in blocks.items()}
    mode = (
        f"queue {settings.WAGTAIL_CRM['RQ_QUEUE']!r} (page views buffered in Redis)"
        if jobs.get_queue() is not None
        else "inline (no queue: page views written in the request)"
    )
    print()
    print(f"Machine:   {_common.machine_description()}")
    print(f"Database:  {_common.database_description()}    Mode: {mode}")
    print(
        f"Pages:     {urls['personalised']} (5 personalised blocks) and {urls['plain']} (5 plain blocks); "
        f"{rounds} rounds x {args.block} requests per configuration (n={rounds * args.block}, after "
        f"{args.warmup} warm-up); queries counted over {args.count} more requests, untimed; "
        f"{elapsed:.0f} s timed"
    )
    print(f"Visitor:   returning, in {len(returning)} of the 20 active segments; variants in {shown} blocks:")
    for (name, _, _), heading in zip(BLOCKS, expected["personalised"], strict=True):
        print(f"             {name}: {heading}")
    print(f"New visitor sees: {' / '.join(expected['personalised_new'])}")

    headers = ["configuration", "median ms", "p90 ms", "vs plain", "vs plain on"]
    headers += ["queries/req", "profile", "segments"]
    rows = []
    for config in configs:
        times = samples[config, CASE]
        q = queries[config]

        def ratio(base, config=config):
            if base not in configs:
                return "-"
            return f"{overhead.paired_ratio(blocks, config, base, CASE):.3f}"

        rows.append(
            [
                CONFIG_LABELS[config],
                f"{_common.median_ms(times):.3f}",
                f"{_common.percentile_ms(times, 90):.3f}",
                ratio("plain"),
                ratio("plain_on"),
                f"{q['all']:.2f}",
                f"{q['profile']:.2f}" if config != "plain" else "-",
                f"{q['segments']:.2f}" if config != "plain" else "-",
            ]
        )
    _common.print_table(headers, rows, title="A page with 5 personalised blocks (20 active segments)", left=1)
    print(
        "Ratios: median over the rounds of the ratio of the two configurations' block medians in that round "
        "(paired). profile / segments: queries per request reading the profile / the segment tables."
    )

    print()
    base = "plain" if "plain" in configs else "plain_on"
    ratio = overhead.paired_ratio(blocks, "personalised", base, CASE)
    verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
    print(
        f"Target: {CONFIG_LABELS['personalised']} vs {CONFIG_LABELS[base]} <= {TARGET_RATIO:.2f}: "
        f"{ratio:.3f}  {verdict}"
    )
    extra = queries["personalised"]["all"] - queries[base]["all"]
    print(f"Queries: {extra:+.2f} per request vs {CONFIG_LABELS[base]}")

    headers = ["configuration", "body load", "body render", "personalised", "segments", "profile", "request"]
    rows = [
        [
            CONFIG_LABELS[config],
            *(f"{breakdown[config][part]:.3f}" for part in Breakdown.PARTS),
            f"{_common.median_ms(samples[config, CASE]):.3f}",
        ]
        for config in configs
        if config in breakdown
    ]
    _common.print_table(
        headers,
        rows,
        title=f"Where the time goes (ms per request, median of {args.count * 10} instrumented requests)",
    )
    print(
        "body load: converting the stored body into blocks (when the template first iterates it); "
        "body render: every {% include_block %} of the body; personalised: the personalised blocks' render "
        "(part of body render); segments: evaluating the 20 active segments (once per request, in the first "
        "personalised block); profile: loading the visitor's profile (part of segments). "
        "request: the timed median."
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], conflict_handler="resolve")
    _common.add_request_arguments(parser, n_help="timed requests per configuration (default 2000)")
    parser.add_argument(
        "--path",
        default="/shop/",
        help="the section the two pages are created in (default /shop/, beside /shop/shoes/)",
    )
    _common.add_db_arguments(parser, default_db="sqlite", default_pg_name="wagtail_crm_bench_personalised")
    args = parser.parse_args()
    if min(args.n, args.warmup, args.block, args.count) < 1:
        parser.error("--n, --warmup, --block and --count must be at least 1")
    if not args.inline:
        _common.check_redis(args.redis_url)
        _common.flush_redis_keys(args.redis_url)
    with _common.BenchEnvironment(args, queue=not args.inline) as bench:
        measure(args, bench.env())


if __name__ == "__main__":
    main()
