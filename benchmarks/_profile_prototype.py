"""Prototype for ``segments_render.py --prototype``: the visitor's profile query compiled once per process.

``Visitor.profile`` builds its queryset (34 columns plus the segments' annotations), compiles it to SQL and
builds the model instance through the ORM on every request: about 0.8 ms on the benchmark machine, of which
the database takes 0.05 ms. This prototype keeps the compiled SQL (per set of annotations) and only executes
it, then builds the instance with ``Model.from_db``. It replaces ``Visitor.profile`` in the benchmark process
for requests carrying ``HEADER`` (anonymous visitors with a cookie; everything else takes the normal path),
so the benchmark can show what such a change would give. It is not part of the package.
"""

from django.db import connections
from django.utils.functional import cached_property

HEADER = "HTTP_X_BENCH_PROFILE_PROTOTYPE"
PLACEHOLDER = "bench-visitor-id-placeholder"

_compiled = {}


def _compile(request):
    from wagtail_crm.profiles.visitor import _profile_queryset

    queryset = _profile_queryset(request).filter(visitor_id=PLACEHOLDER).order_by()[:1]
    compiler = queryset.query.get_compiler(using=queryset.db)
    sql, params = compiler.as_sql()
    select = [expression for expression, _, _ in compiler.select]
    model_columns = compiler.klass_info["select_fields"]
    return {
        "db": queryset.db,
        "sql": sql,
        "params": list(params),
        "slot": list(params).index(PLACEHOLDER),
        "compiler": compiler,
        "converters": compiler.get_converters(select),
        "model_columns": model_columns,
        "names": [select[index].target.attname for index in model_columns],
        "annotations": dict(compiler.annotation_col_map),
    }


def load_profile(request, visitor_id):
    """The profile of ``visitor_id`` (with the segments' annotations), or None."""
    from wagtail_crm.profiles.models import VisitorProfile
    from wagtail_crm.segments.evaluation import active_profile_annotations

    key = tuple(sorted(active_profile_annotations()))
    entry = _compiled.get(key)
    if entry is None:
        entry = _compiled[key] = _compile(request)
    params = list(entry["params"])
    params[entry["slot"]] = visitor_id
    with connections[entry["db"]].cursor() as cursor:
        cursor.execute(entry["sql"], params)
        rows = cursor.fetchall()
    if not rows:
        return None
    if entry["converters"]:
        rows = list(entry["compiler"].apply_converters(rows, entry["converters"]))
    row = rows[0]
    profile = VisitorProfile.from_db(entry["db"], entry["names"], [row[i] for i in entry["model_columns"]])
    for name, index in entry["annotations"].items():
        setattr(profile, name, row[index])
    return profile


def install():
    """Replace ``Visitor.profile`` in this process (requests without ``HEADER`` are unaffected)."""
    from wagtail_crm.profiles.visitor import Visitor

    original = Visitor.__dict__["profile"].func

    def profile(self):
        request = self._request
        if HEADER in request.META and self.user_id is None and self.may_identify and not self.is_new:
            found = load_profile(request, self.visitor_id)
            if found is not None and not found.merged_into_id:
                return found
        return original(self)

    prop = cached_property(profile)
    prop.__set_name__(Visitor, "profile")
    Visitor.profile = prop
