"""Prototypes of speed-ups for ``count_segments()``, measured by ``segment_counts.py --experiments``.

Nothing here changes the package: each variant rewrites the SQL that ``count_segments()`` runs (captured from
it, parameters inlined) or changes session settings, runs it, and checks it returns exactly the same counts.
Which variant gives which figure is in ``docs/performance.md``; adopting one is a change to
``wagtail_crm/segments/expressions.py`` / ``jobs.py``.
"""

import re
import statistics
import time

from benchmarks import _common

TABLE = '"wagtail_crm_visitorprofile"'
FACTS = f'{TABLE}."facts"'

# The SQL DailySum compiles to, followed by the comparison the rule makes with it.
DAILY_SUM = re.compile(
    r"COALESCE\(\(SELECT (?P<round>ROUND\()?SUM\(\(day\.value #>> '(?P<path>\{[^']*\})'\)::numeric\)"
    r"(?:, 2\))? FROM jsonb_each\(" + re.escape(FACTS) + r" -> 'daily'\) AS day "
    r"WHERE day\.key >= '(?P<since>\d{4}-\d\d-\d\d)'\), 0\)::float8(?P<cmp> >= (?P<threshold>-?[\d.]+))?"
)
# GroupRule: a correlated EXISTS on the user's groups.
GROUP_EXISTS = re.compile(
    r'EXISTS\(SELECT 1 AS "a" FROM "auth_user_groups" "U0" WHERE \("U0"\."group_id" = (?P<group>\d+) AND '
    r'"U0"\."user_id" = \(' + re.escape(TABLE) + r'\."user_id"\)\) LIMIT 1\)'
)
FROM_CLAUSE = f"FROM {TABLE} WHERE"


def _day_before(day):
    from datetime import date, timedelta

    return (date.fromisoformat(day) - timedelta(days=1)).isoformat()


def guard(sql):
    """Evaluate a daily sum only for profiles with any activity in its window, according to ``facts.last``.

    ``facts["last"]`` holds the latest time of every kind, so a profile whose latest stamps are all older than
    the window has nothing to sum there. A day of margin covers stamps written with a UTC offset (the daily
    buckets are UTC dates). jsonpath compares the ISO strings without leaving the row.
    """

    def replace(match):
        threshold = match.group("threshold")
        if threshold is None or float(threshold) <= 0:
            return match.group(0)
        since = _day_before(match.group("since"))
        return f"""({FACTS} @? '$.last.* ? (@ >= "{since}")' AND {match.group(0)})"""

    return DAILY_SUM.sub(replace, sql)


def lateral(sql, cast=False, guarded=False):
    """All daily sums of all segments from ONE ``jsonb_each`` over the profile's daily buckets (a LATERAL
    subquery with a ``SUM(...) FILTER (WHERE day.key >= ...)`` per distinct sum), instead of one correlated
    subquery per rule.

    ``cast``: read the numbers with a jsonb → numeric cast instead of through text.
    ``guarded``: give ``jsonb_each`` nothing when ``facts.last`` shows no activity in the widest window.
    """
    sums = {}

    def replace(match):
        key = (match.group("path"), match.group("since"), bool(match.group("round")))
        alias = sums.setdefault(key, f"d{len(sums) + 1}")
        return f"COALESCE(daily.{alias}, 0)::float8{match.group('cmp') or ''}"

    sql = DAILY_SUM.sub(replace, sql)
    if not sums:
        return sql
    columns = []
    for (path, since, money), alias in sums.items():
        value = f"(day.value #> '{path}')::numeric" if cast else f"(day.value #>> '{path}')::numeric"
        total = f"SUM({value}) FILTER (WHERE day.key >= '{since}')"
        columns.append(f"{'ROUND(' + total + ', 2)' if money else total} AS {alias}")
    daily = f"{FACTS} -> 'daily'"
    if guarded:
        oldest = _day_before(min(since for _, since, _ in sums))
        daily = f"""CASE WHEN {FACTS} @? '$.last.* ? (@ >= "{oldest}")' THEN {daily} END"""
    join = (
        f"FROM {TABLE} CROSS JOIN LATERAL (SELECT {', '.join(columns)} "
        f"FROM jsonb_each({daily}) AS day) AS daily WHERE"
    )
    assert sql.count(FROM_CLAUSE) == 1
    return sql.replace(FROM_CLAUSE, join)


def group_in(sql):
    """GroupRule as ``user_id IN (SELECT ...)``: a hashed subplan, built once, instead of a probe per row."""
    return GROUP_EXISTS.sub(
        lambda m: (
            f'{TABLE}."user_id" IN (SELECT "U0"."user_id" FROM "auth_user_groups" "U0" '
            f'WHERE "U0"."group_id" = {m.group("group")})'
        ),
        sql,
    )


ASCII_FOLD_ARGS = ["'ABCDEFGHIJKLMNOPQRSTUVWXYZ'", "'abcdefghijklmnopqrstuvwxyz'"]


def _call_arguments(sql, start):
    """The top-level arguments of the call whose "(" is at ``start``, and the index after its ")"."""
    depth, quote, arguments, begin = 0, None, [], start + 1
    for index in range(start, len(sql)):
        char = sql[index]
        if quote:
            if char == quote:
                quote = None  # a doubled quote ('' or "") closes and reopens: same result
        elif char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                arguments.append(sql[begin:index].strip())
                return arguments, index + 1
        elif char == "," and depth == 1:
            arguments.append(sql[begin:index].strip())
            begin = index + 1
    raise ValueError("unbalanced parentheses")


def fold_c(sql):
    """ASCII-only case folding with ``lower(x COLLATE "C")`` instead of ``TRANSLATE(x, 'A…Z', 'a…z')``.

    Under the "C" collation PostgreSQL's lower() folds ASCII letters only, byte by byte, and leaves every
    other character as it is: exactly what ``fold()`` does in Python (and TRANSLATE here), at a tenth of the
    cost (TRANSLATE scans its 26-letter alphabet for every character).
    """
    out, position = [], 0
    while (found := sql.find("TRANSLATE(", position)) >= 0:
        arguments, end = _call_arguments(sql, found + len("TRANSLATE"))
        out.append(sql[position:found])
        if arguments[1:] == ASCII_FOLD_ARGS:
            out.append(f'lower({fold_c(arguments[0])} COLLATE "C")')
        else:
            out.append(sql[found:end])
        position = end
    out.append(sql[position:])
    return "".join(out)


def _compiled(expression):
    """The SQL of ``expression`` over the profile table, parameters inlined (as in the captured query)."""
    from django.db import connection

    from wagtail_crm.profiles.models import VisitorProfile

    query = VisitorProfile.objects.annotate(bench_value=expression).values("bench_value").query
    sql, params = query.sql_with_params()
    sql = connection.ops.compose_sql(sql, params)
    return sql[len("SELECT ") : sql.index(' AS "bench_value"')]


def generated_definitions():
    """Hot facts as stored generated columns: (column, type, the expression the rules compile to, folded).

    The expressions are compiled from the package's own ``FactNumber`` / ``FactText`` (as the rules use them),
    so the rewrite finds them in the count query whatever SQL they produce.
    """
    from wagtail_crm.segments.expressions import AsciiLower, FactNumber, FactText

    return [
        ("bench_orders", "float8", fold_c(_compiled(FactNumber("orders")))),
        ("bench_points", "float8", fold_c(_compiled(FactNumber("points")))),
        ("bench_tier", "text", fold_c(_compiled(AsciiLower(FactText("tier"))))),
    ]


def generated_columns(sql):
    for column, _, expression in generated_definitions():
        assert expression in sql, f"{expression} not in the count query"
        sql = sql.replace(expression, f'{TABLE}."{column}"')
    return sql


def combined(sql):
    return group_in(lateral(fold_c(sql)))


COUNT_SUM = re.compile(r"SUM\(\(day\.value #>> '\{([^}]*)\}'\)::numeric\)")


def lean_daily(sql):
    """On top of ``lateral``: no ``jsonb_each`` call at all for a profile without daily buckets, and counts
    summed as float8 (money stays numeric, rounded to cents as before)."""
    empty = f"jsonb_each({FACTS} -> 'daily')"
    assert empty in sql
    sql = sql.replace(empty, f"jsonb_each(NULLIF({FACTS} -> 'daily', '{{}}'))")
    return COUNT_SUM.sub(
        lambda m: m.group(0) if m.group(1) == "@spend" else f"SUM((day.value #> '{{{m.group(1)}}}')::float8)",
        sql,
    )


def best(sql):
    return lean_daily(combined(sql))


def with_generated(sql):
    return generated_columns(best(sql))


PARALLEL = {"parallel_setup_cost": "0", "parallel_tuple_cost": "0", "max_parallel_workers_per_gather": "2"}
SERIAL = {"max_parallel_workers_per_gather": "0"}
NO_JIT = {"jit": "off"}

# (label, session settings, SQL rewrite, needs the generated columns, id-range slices on as many connections)
VARIANTS = [
    ("A. as count_segments() runs it (default settings: JIT on)", {}, None, False, 1),
    ("B. JIT off", NO_JIT, None, False, 1),
    ("C. B + guard on facts.last before each daily sum", NO_JIT, guard, False, 1),
    ('D. B + ASCII case folding with lower(x COLLATE "C") instead of TRANSLATE', NO_JIT, fold_c, False, 1),
    ("E. B + one LATERAL jsonb_each per profile for all daily sums", NO_JIT, lateral, False, 1),
    ("F. D + E", NO_JIT, lambda sql: lateral(fold_c(sql)), False, 1),
    ("G. F + group rule as IN (hashed subplan)", NO_JIT, combined, False, 1),
    ("H. G + no jsonb_each for empty daily, float8 sums of counts", {**NO_JIT, **SERIAL}, best, False, 1),
    ("I. H, parallel plan encouraged (2 workers)", {**NO_JIT, **PARALLEL}, best, False, 1),
    ("J. H + generated columns for orders, points, tier", {**NO_JIT, **SERIAL}, with_generated, True, 1),
    ("K. J in 2 id ranges counted at once on 2 connections", {**NO_JIT, **SERIAL}, with_generated, True, 2),
]


def add_generated_columns():
    """Add the generated columns (rewrites the table); returns the seconds it took."""
    from django.db import connection

    columns = [
        # A generated column refers to the other columns of its row unqualified.
        f"ADD COLUMN {column} {kind} GENERATED ALWAYS AS ({sql.replace(TABLE + '.', '')}) STORED"
        for column, kind, sql in generated_definitions()
    ]
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {TABLE} " + ", ".join(columns))
        cursor.execute(f"ANALYZE {TABLE}")
    return time.perf_counter() - started


def drop_generated_columns(keep):
    """Drop the columns again; a kept database is rewritten so that the next run measures the same table."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            f"ALTER TABLE {TABLE} " + ", ".join(f"DROP COLUMN {c}" for c, _, _ in generated_definitions())
        )
    if keep:
        old = connection.get_autocommit()
        connection.set_autocommit(True)
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"VACUUM (FULL, ANALYZE) {TABLE}")
                cursor.execute(f"VACUUM {TABLE}")  # VACUUM FULL leaves the visibility map empty
        finally:
            connection.set_autocommit(old)


def _run(sql, settings, repeat, slices=1):
    """(seconds of each run, the counts, parallel workers planned). With ``slices`` > 1, the profiles are split
    into that many id ranges, each counted on its own connection (a thread each), and the counts added up."""
    import threading

    from django.db import connection, connections

    from benchmarks.segment_counts import session_settings

    with session_settings(**settings), connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}")
        plan = "\n".join(r[0] for r in cursor.fetchall())
        cursor.execute(f"SELECT min(id), max(id) + 1 FROM {TABLE}")
        low, high = cursor.fetchone()
    workers = re.search(r"Workers Planned: (\d+)", plan)
    bounds = [low + (high - low) * i // slices for i in range(slices + 1)]
    where = f'WHERE {TABLE}."merged_into_id" IS NULL'
    assert sql.count(where) == 1
    parts = [
        sql.replace(where, f'{where} AND {TABLE}."id" >= {bounds[i]} AND {TABLE}."id" < {bounds[i + 1]}')
        if slices > 1
        else sql
        for i in range(slices)
    ]
    rows = [None] * slices

    def count(index):
        try:
            with session_settings(**settings):
                with connections["default"].cursor() as cursor:
                    cursor.execute(parts[index])
                    rows[index] = cursor.fetchone()
        finally:
            if slices > 1:
                connections["default"].close()  # the thread's own connection

    times, total = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        if slices == 1:
            count(0)
        else:
            threads = [threading.Thread(target=count, args=(i,)) for i in range(slices)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        times.append(time.perf_counter() - started)
        result = tuple(sum(row[column] for row in rows) for column in range(len(rows[0])))
        total = result if total is None else total
    return times, total, int(workers.group(1)) if workers else 0


def per_segment_costs(segments, repeat):
    """Seconds one segment adds to a scan of the profiles (JIT off, serial): its one-segment aggregate minus the
    same aggregate with a filter every profile passes."""
    from django.db.models import Count, Q
    from django.utils import timezone

    from benchmarks.segment_counts import session_settings
    from wagtail_crm.profiles.models import VisitorProfile

    now = timezone.now()
    live = VisitorProfile.objects.filter(merged_into__isnull=True)

    def best(func):
        runs = []
        for _ in range(repeat):
            started = time.perf_counter()
            func()
            runs.append(time.perf_counter() - started)
        return min(runs)

    costs = {}
    with session_settings(jit="off", **SERIAL):
        # The same query shape with a filter every live profile passes: a sequential scan that reads the row.
        floor = best(lambda: live.aggregate(n=Count("pk", filter=Q(visit_count__gte=0))))
        for segment in segments:
            seconds = best(lambda s=segment: live.aggregate(n=Count("pk", filter=s.as_q(now=now))))
            costs[segment.name] = seconds - floor
    return floor, costs


def run(segments, counts, args):
    from benchmarks.segment_counts import count_query_sql

    sql = count_query_sql()
    baseline = None
    results = []
    floor, costs = per_segment_costs(segments, max(1, args.repeat - 1))
    generated_seconds = None
    try:
        for label, settings, rewrite, generated, slices in VARIANTS:
            if generated and generated_seconds is None:
                generated_seconds = add_generated_columns()
                print(f"  (added the generated columns in {generated_seconds:.1f} s)", flush=True)
            variant_sql = rewrite(sql) if rewrite else sql
            times, row, workers = _run(variant_sql, settings, args.repeat, slices)
            if baseline is None:
                baseline = row
            results.append({"label": label, "times": times, "same": row == baseline, "workers": workers})
            print(f"  {label}: {statistics.median(times):.2f} s", flush=True)
    finally:
        if generated_seconds is not None:
            drop_generated_columns(args.keep)
    return {"variants": results, "floor": floor, "costs": costs, "generated_seconds": generated_seconds}


def report(size, results):
    headers = ["variant", "runs, s", "median s", "parallel workers", "same counts"]
    rows = [
        [
            r["label"],
            " / ".join(f"{t:.2f}" for t in r["times"]),
            f"{statistics.median(r['times']):.2f}",
            str(r["workers"]),
            "yes" if r["same"] else "NO",
        ]
        for r in results["variants"]
    ]
    _common.print_table(
        headers, rows, title=f"Experiments: the one-pass count query, {size:,} profiles", left=1
    )
    print(
        "Each variant runs the SQL count_segments() builds (captured, parameters inlined), rewritten as labelled; "
        "'same counts' compares every segment's count with A."
    )
    if results["generated_seconds"] is not None:
        print(
            f"Adding the three generated columns (ALTER TABLE, rewrites the table) took {results['generated_seconds']:.1f} s."
        )
    headers = ["segment", "s over the scan (JIT off, serial)"]
    rows = [
        [name, f"{seconds:.3f}"] for name, seconds in sorted(results["costs"].items(), key=lambda i: -i[1])
    ]
    rows.append(["(the scan itself: a filter every live profile passes)", f"{results['floor']:.3f}"])
    _common.print_table(headers, rows, title=f"What each segment costs, {size:,} profiles", left=1)
