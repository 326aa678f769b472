"""SQL expressions over ``VisitorProfile`` that mirror, value for value, what the rules compute in Python.

Django's own JSON key transforms are not used for the facts: they read a key made of digits (a page id such
as ``"42"``) as an array index, and they leave "missing means zero" and number types to each backend. These
few expressions are written once for PostgreSQL (jsonb) and once for SQLite (JSON1), the two databases the
test suite proves them on; any other backend gets a clear error instead of a wrong count.

Numbers come out as floating point on every backend (money is rounded to cents first), so comparing them
with a float parameter behaves the same everywhere, including SQLite, which would otherwise compare a number
with a text parameter as "always smaller".
"""

import json
from contextvars import ContextVar

from django.db import NotSupportedError
from django.db.models import BooleanField, Expression, F, FloatField, TextField

_FOLD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold(text):
    """Case-fold ASCII letters only: the one case-insensitivity both SQLite and PostgreSQL can match exactly."""
    return text.translate(_FOLD)


def sqlite_json_path(keys):
    return "$" + "".join(f".{json.dumps(str(key))}" for key in keys)


class _VendorExpression(Expression):
    """An expression compiled by a per-vendor method; other databases are refused with a clear message."""

    def __init__(self, source="facts", output_field=None):
        super().__init__(output_field=output_field)
        self.source = F(source) if isinstance(source, str) else source

    def get_source_expressions(self):
        return [self.source]

    def set_source_expressions(self, exprs):
        (self.source,) = exprs

    def resolve_expression(self, query=None, allow_joins=True, reuse=None, summarize=False, for_save=False):
        clone = self.copy()
        clone.is_summary = summarize
        clone.source = self.source.resolve_expression(query, allow_joins, reuse, summarize, for_save)
        return clone

    def as_sql(self, compiler, connection):
        raise NotSupportedError(
            "wagtail_crm segment rules run their SQL on PostgreSQL and SQLite only "
            f"(this database is {connection.vendor})."
        )

    def _source_sql(self, compiler, connection):
        return compiler.compile(self.source)


class FactNumber(_VendorExpression):
    """A number in ``facts`` at ``keys`` (a path of object keys); 0 where it is missing."""

    def __init__(self, *keys, source="facts", money=False):
        super().__init__(source, output_field=FloatField())
        self.keys = [str(key) for key in keys]
        self.money = money

    def as_postgresql(self, compiler, connection):
        sql, params = self._source_sql(compiler, connection)
        value = f"({sql} #>> %s)::numeric"
        if self.money:
            value = f"ROUND({value}, 2)"
        return f"COALESCE({value}, 0)::float8", [*params, self.keys]

    def as_sqlite(self, compiler, connection):
        sql, params = self._source_sql(compiler, connection)
        value = f"JSON_EXTRACT({sql}, %s)"
        if self.money:
            value = f"ROUND({value}, 2)"
        return f"CAST(COALESCE({value}, 0) AS REAL)", [*params, sqlite_json_path(self.keys)]


# While set (by ``count_segments()`` on PostgreSQL), DailySum compiles to a column of one lateral subquery that
# computes every window sum of the query in a single pass over each profile's daily buckets; the dict collects
# (keys, since_day, money) → column name.
lateral_daily_columns = ContextVar("wagtail_crm_lateral_daily_columns", default=None)


class DailySum(_VendorExpression):
    """The sum of ``facts["daily"][day][*keys]`` over the days on or after ``since_day`` (an ISO date)."""

    def __init__(self, *keys, since_day, source="facts", money=False):
        super().__init__(source, output_field=FloatField())
        self.keys = [str(key) for key in keys]
        self.since_day = since_day
        self.money = money

    def as_postgresql(self, compiler, connection):
        columns = lateral_daily_columns.get()
        if columns is not None:
            name = columns.setdefault((tuple(self.keys), self.since_day, self.money), f"d{len(columns)}")
            return f'crm_daily."{name}"', []
        sql, params = self._source_sql(compiler, connection)
        # Counts are whole numbers: float8 sums them exactly and faster than numeric. Money is summed exactly.
        total = (
            "ROUND(SUM((day.value #>> %s)::numeric), 2)" if self.money else "SUM((day.value #>> %s)::float8)"
        )
        # jsonb_each of NULL (no "daily", or an empty one) is no rows, without looking at a single day.
        return (
            f"COALESCE((SELECT {total} FROM jsonb_each(NULLIF({sql} -> 'daily', '{{}}'::jsonb)) AS day "
            f"WHERE day.key >= %s), 0)::float8",
            [self.keys, *params, self.since_day],
        )

    def as_sqlite(self, compiler, connection):
        sql, params = self._source_sql(compiler, connection)
        total = "SUM(JSON_EXTRACT(day.value, %s))"
        if self.money:
            total = f"ROUND({total}, 2)"
        return (
            f"CAST(COALESCE((SELECT {total} FROM JSON_EACH({sql}, '$.daily') AS day "
            f"WHERE day.key >= %s), 0) AS REAL)",
            [sqlite_json_path(self.keys), *params, self.since_day],
        )


class FactText(_VendorExpression):
    """The string at ``facts[*keys]``; '' where it is missing or not a string (as the Python side reads it)."""

    def __init__(self, *keys, source="facts"):
        super().__init__(source, output_field=TextField())
        self.keys = [str(key) for key in keys]

    def as_postgresql(self, compiler, connection):
        sql, params = self._source_sql(compiler, connection)
        return (
            f"(CASE WHEN jsonb_typeof({sql} #> %s) = 'string' THEN {sql} #>> %s ELSE '' END)",
            [*params, self.keys, *params, self.keys],
        )

    def as_sqlite(self, compiler, connection):
        sql, params = self._source_sql(compiler, connection)
        path = sqlite_json_path(self.keys)
        return (
            f"(CASE WHEN JSON_TYPE({sql}, %s) = 'text' THEN JSON_EXTRACT({sql}, %s) ELSE '' END)",
            [*params, path, *params, path],
        )


class SurveyAnswered(_VendorExpression):
    """The visitor answered survey question ``question`` (with ``answer``, when given: equal, or in the list)."""

    conditional = True

    def __init__(self, question, answer=None, source="facts"):
        super().__init__(source, output_field=BooleanField())
        self.question = str(question)
        self.answer = answer

    def as_postgresql(self, compiler, connection):
        sql, params = self._source_sql(compiler, connection)
        answers = f"({sql} #> %s)"
        path = ["survey", self.question]
        if self.answer is None:
            return f"({answers} IS NOT NULL)", [*params, path]
        # jsonb containment: an array contains the string if it holds it; a string contains only itself.
        return f"COALESCE({answers} @> to_jsonb(%s::text), false)", [*params, path, str(self.answer)]

    def as_sqlite(self, compiler, connection):
        sql, params = self._source_sql(compiler, connection)
        # Questions are free text: match the key as a value instead of quoting it into a JSON path (SQLite's
        # path syntax has no escape for a double quote inside a key).
        question = f"SELECT 1 FROM JSON_EACH({sql}, '$.survey') AS question WHERE question.key = %s"
        if self.answer is None:
            return f"EXISTS ({question})", [*params, self.question]
        # A text answer is itself; a multiple choice (an array) matches when it holds the answer.
        return (
            f"EXISTS ({question} AND ((question.type = 'text' AND question.value = %s) OR "
            f"(question.type = 'array' AND EXISTS (SELECT 1 FROM JSON_EACH(question.value) AS answer "
            f"WHERE answer.type = 'text' AND answer.value = %s))))",
            [*params, self.question, str(self.answer), str(self.answer)],
        )


class AsciiLower(_VendorExpression):
    """A text column with ASCII letters lower-cased (the SQL twin of :func:`fold`)."""

    def __init__(self, source):
        super().__init__(source, output_field=TextField())

    def as_postgresql(self, compiler, connection):
        # Under the "C" collation LOWER() folds A-Z only, whatever the database's locale (and it is ~10 times
        # cheaper than TRANSLATE over the same letters).
        sql, params = self._source_sql(compiler, connection)
        return f'LOWER(({sql})::text COLLATE "C")', params

    def as_sqlite(self, compiler, connection):
        # SQLite's LOWER() folds ASCII letters only (unless built with ICU, which Python's sqlite3 is not).
        sql, params = self._source_sql(compiler, connection)
        return f"LOWER({sql})", params
