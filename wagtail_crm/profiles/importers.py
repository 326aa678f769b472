"""Import offline transactions (till exports, phone orders, posted forms) from a CSV file.

``import_offline_transactions(file)`` is the plain function behind the admin's "Import offline transactions"
page; sites can call it from a management command or a scheduled job too. It reads the file row by row,
matches every row to a profile (by email, case-insensitive, then by phone digits), writes the matched rows
in batches through ``ingest_events`` (so spend and order counts update) and returns an ``ImportResult``
listing what it did with every row: nothing is dropped silently.

Importing the same file twice imports nothing the second time: each row's event id is derived from its
``reference`` (or, without one, from the row's content), and ingestion skips event ids already written.
"""

import codecs
import csv
import io
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db.models import F, Value
from django.db.models.functions import Lower, Replace
from django.utils import timezone
from django.utils.translation import gettext as _

from wagtail_crm.conf import get_setting
from wagtail_crm.profiles.events import make_event
from wagtail_crm.profiles.ingest import ingest_events
from wagtail_crm.profiles.models import Channel, Interaction, InteractionKind, VisitorProfile, kind_validator

COLUMNS = ("email", "phone", "occurred_at", "kind", "channel", "amount", "currency", "reference", "note")
DEFAULT_KIND = InteractionKind.OFFLINE_PURCHASE.value
DEFAULT_CHANNEL = Channel.STORE.value
# An import records what happened away from the website; online activity comes from tracking.
IMPORT_CHANNELS = (Channel.STORE.value, Channel.PHONE.value, Channel.EMAIL.value, Channel.MAIL.value)
# Kinds the tracking machinery owns: importing them would fake web visits.
RESERVED_KINDS = (InteractionKind.PAGE_VIEW.value, InteractionKind.VISIT_STARTED.value)
MAX_NOTE_LENGTH = 2000
MAX_REFERENCE_LENGTH = 200

# Event ids of imported rows are uuid5 names in this namespace (never change it: re-imports rely on it).
IMPORT_NAMESPACE = uuid.UUID("0b6c8f0e-2f0a-4d59-9a53-6c1f4f7d2b31")

# Characters that start a formula in spreadsheet applications (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_NUMBER_RE = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)$")
# Phone formatting characters ignored when matching (the database side strips the same ones).
PHONE_FORMATTING = (" ", "-", ".", "(", ")", "/", "+", "\t")


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (not UTF-8 text, not CSV, missing columns)."""


def escape_spreadsheet_value(value):
    """Neutralise a text value that a spreadsheet would run as a formula, by prefixing a single quote.

    Plain numbers such as ``-12.50`` and a lone ``-`` (an empty cell's placeholder) are left alone.
    """
    if (
        isinstance(value, str)
        and len(value) > 1
        and value.startswith(FORMULA_PREFIXES)
        and not _NUMBER_RE.match(value)
    ):
        return "'" + value
    return value


def normalise_email(value):
    return (value or "").strip().lower()


def normalise_phone(value):
    """The digits of a phone number: ``+44 (0)20 7946-0000`` and ``4402079460000`` are the same number."""
    return "".join(ch for ch in (value or "") if ch.isdigit())


@dataclass
class ImportedRow:
    """A row that was not imported (unmatched or invalid), with the values as read from the file."""

    row_number: int
    values: dict
    reason: str

    @property
    def email(self):
        return self.values.get("email", "")

    @property
    def phone(self):
        return self.values.get("phone", "")


@dataclass
class ImportResult:
    rows: int = 0  # data rows read (blank lines not counted)
    imported: int = 0  # interactions written
    duplicates: int = 0  # rows already imported before (or twice in this file): skipped
    unmatched: list = field(default_factory=list)  # ImportedRow: no profile has this email or phone
    errors: list = field(default_factory=list)  # ImportedRow: the row itself is invalid
    fieldnames: list = field(default_factory=list)  # the file's columns, normalised
    stopped: str = ""  # set when the file became unreadable part-way: rows after it were not read

    @property
    def has_problems(self):
        return bool(self.unmatched or self.errors or self.stopped)

    def unmatched_csv(self):
        """The unmatched rows as CSV text: the file's own columns plus ``row`` and ``reason``.

        After fixing the email/phone (or creating the profiles) the file can be imported as it is.
        """
        return rows_to_csv(self.unmatched, self.fieldnames)

    def errors_csv(self):
        return rows_to_csv(self.errors, self.fieldnames)


def rows_to_csv(rows, fieldnames):
    columns = [name for name in fieldnames if name not in ("row", "reason")]
    output = io.StringIO()
    writer = csv.writer(output)
    writer.writerow(["row", *columns, "reason"])
    for row in rows:
        writer.writerow(
            [row.row_number]
            + [escape_spreadsheet_value(row.values.get(name, "")) for name in columns]
            + [escape_spreadsheet_value(row.reason)]
        )
    return output.getvalue()


# --- reading the file -------------------------------------------------------------------------------------


def _binary_lines(fileobj):
    if hasattr(fileobj, "seek"):
        try:
            fileobj.seek(0)
        except (OSError, ValueError):
            pass
    return iter(fileobj)


def text_lines(fileobj):
    """Iterate the lines of ``fileobj`` as text, decoding UTF-8 (with or without a BOM) incrementally."""
    lines = _binary_lines(fileobj)
    first = next(lines, None)
    if first is None:
        return iter(())
    if isinstance(first, str):
        return _chain_first(first.lstrip("\ufeff"), lines)
    return codecs.iterdecode(_chain_first(first, lines), "utf-8-sig")


def _chain_first(first, rest):
    yield first
    yield from rest


def validate_file(fileobj, max_size=None):
    """Check that ``fileobj`` is a UTF-8 CSV file with the needed columns, reading it once in chunks.

    Raises ``ImportFileError`` with a message for the person who uploaded it. Leaves the file rewound.
    """
    size = getattr(fileobj, "size", None)
    if max_size is not None and size is not None and size > max_size:
        raise ImportFileError(
            _(
                "The file is too large (%(size)s MB). The largest file you can import is %(max)s MB: split it into smaller files."
            )
            % {"size": _megabytes(size), "max": _megabytes(max_size)}
        )
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    chunks = fileobj.chunks() if hasattr(fileobj, "chunks") else iter(lambda: fileobj.read(64 * 1024), b"")
    seen = 0
    try:
        for chunk in chunks:
            if isinstance(chunk, str):
                break  # a text stream: already decoded
            seen += len(chunk)
            if b"\x00" in chunk:
                raise ImportFileError(_("This is not a CSV file (it contains binary data)."))
            decoder.decode(chunk)
            if max_size is not None and seen > max_size:
                raise ImportFileError(
                    _(
                        "The file is too large. The largest file you can import is %(max)s MB: split it into smaller files."
                    )
                    % {"max": _megabytes(max_size)}
                )
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise ImportFileError(
            _(
                "The file is not UTF-8 text (unreadable byte at position %(position)s). "
                "Save it as “CSV UTF-8” and try again."
            )
            % {"position": seen - len(chunk) + exc.start}
        ) from exc
    if seen == 0 and size == 0:
        raise ImportFileError(_("The file is empty."))
    header = _read_header(text_lines(fileobj))
    _check_columns(header[0])
    if hasattr(fileobj, "seek"):
        fileobj.seek(0)


def _megabytes(size):
    return f"{size / (1024 * 1024):.1f}".rstrip("0").rstrip(".")


def _detect_delimiter(header_line):
    counts = {delimiter: header_line.count(delimiter) for delimiter in (",", ";", "\t")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _read_header(lines):
    """Return ``(fieldnames, delimiter, lines)`` where ``lines`` continues after the header line."""
    lines = iter(lines)
    for line in lines:
        if line.strip():
            delimiter = _detect_delimiter(line)
            try:
                names = next(csv.reader([line], delimiter=delimiter))
            except csv.Error as exc:
                raise ImportFileError(
                    _("The first line is not a CSV header: %(error)s") % {"error": exc}
                ) from exc
            return [name.strip().lower() for name in names], delimiter, lines
    raise ImportFileError(_("The file is empty."))


def _check_columns(fieldnames):
    if "occurred_at" not in fieldnames or not ({"email", "phone"} & set(fieldnames)):
        raise ImportFileError(
            _(
                "The file needs a header row with the columns “occurred_at” and “email” or “phone” "
                "(found: %(found)s). Optional columns: kind, channel, amount, currency, reference, note."
            )
            % {"found": ", ".join(name for name in fieldnames if name) or _("no columns")}
        )
    duplicates = sorted({name for name in fieldnames if name and fieldnames.count(name) > 1})
    if duplicates:
        raise ImportFileError(
            _("These columns appear more than once: %(columns)s.") % {"columns": ", ".join(duplicates)}
        )


# --- parsing a row ----------------------------------------------------------------------------------------


@dataclass
class _ParsedRow:
    row_number: int
    values: dict
    email: str
    phone: str
    event: dict


def _parse_occurred_at(value):
    value = value.strip()
    if not value:
        raise ValueError(_("The date (occurred_at) is missing."))
    try:
        if len(value) <= 10:
            parsed = datetime.combine(date.fromisoformat(value), time.min)
        else:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        raise ValueError(
            _("“%(value)s” is not a date: use YYYY-MM-DD or YYYY-MM-DD HH:MM.") % {"value": value[:40]}
        ) from None
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed)
    if parsed > timezone.now() + timedelta(days=1):
        raise ValueError(_("The date %(value)s is in the future.") % {"value": value[:40]})
    return parsed


def _parse_amount(value):
    value = value.strip().replace(" ", "")
    if not value:
        return None
    if "," in value and "." not in value and value.count(",") == 1:
        value = value.replace(",", ".")  # 12,50: a decimal comma
    try:
        amount = Decimal(value)
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite() or abs(amount) >= Decimal("1e12"):
        raise ValueError(
            _("“%(value)s” is not an amount: use digits and a decimal point, e.g. 12.50.")
            % {"value": value[:40]}
        )
    return amount


def _parse_row(row_number, values, recorded_by_id):
    """Return a ``_ParsedRow`` or raise ``ValueError`` with every problem of the row."""
    problems = []
    email = normalise_email(values.get("email"))
    phone = normalise_phone(values.get("phone"))
    if email:
        try:
            validate_email(email)
        except ValidationError:
            problems.append(_("“%(value)s” is not an email address.") % {"value": email[:80]})
    if not email and not phone:
        problems.append(_("The row has neither an email nor a phone number."))

    occurred_at = None
    try:
        occurred_at = _parse_occurred_at(values.get("occurred_at", ""))
    except ValueError as exc:
        problems.append(str(exc))

    kind = (values.get("kind") or "").strip().lower() or DEFAULT_KIND
    try:
        kind_validator(kind)
        if kind in RESERVED_KINDS:
            raise ValidationError(
                _("“%(kind)s” is recorded by the website and cannot be imported.") % {"kind": kind}
            )
    except ValidationError as exc:
        problems.append(
            _("Invalid kind “%(kind)s”: %(error)s") % {"kind": kind[:50], "error": exc.messages[0]}
        )

    channel = (values.get("channel") or "").strip().lower() or DEFAULT_CHANNEL
    if channel not in IMPORT_CHANNELS:
        problems.append(
            _("Unknown channel “%(channel)s”: use one of %(channels)s.")
            % {"channel": channel[:30], "channels": ", ".join(IMPORT_CHANNELS)}
        )

    amount = None
    try:
        amount = _parse_amount(values.get("amount") or "")
    except ValueError as exc:
        problems.append(str(exc))

    currency = (values.get("currency") or "").strip().upper()
    if currency and not re.fullmatch(r"[A-Z]{3}", currency):
        problems.append(
            _("“%(value)s” is not a currency code such as EUR or GBP.") % {"value": currency[:20]}
        )
    reference = (values.get("reference") or "").strip()
    if len(reference) > MAX_REFERENCE_LENGTH:
        problems.append(_("The reference is longer than %(max)s characters.") % {"max": MAX_REFERENCE_LENGTH})
    note = (values.get("note") or "").strip()
    if len(note) > MAX_NOTE_LENGTH:
        problems.append(_("The note is longer than %(max)s characters.") % {"max": MAX_NOTE_LENGTH})
    if values.get(None):
        problems.append(_("The row has more values than the header has columns."))
    if problems:
        raise ValueError(" ".join(problems))

    data = {"source": "import"}
    if amount is not None:
        data["amount"] = str(amount)
    for key, value in (("currency", currency), ("reference", reference), ("note", note)):
        if value:
            data[key] = value
    if reference:
        name = f"reference:{reference}"
    else:
        amount_key = format(amount.normalize(), "f") if amount is not None else ""
        name = "row:" + json.dumps(
            [email, phone, occurred_at.astimezone(UTC).isoformat(), kind, channel, amount_key, currency, note]
        )
    event = make_event(
        kind,
        channel=channel,
        occurred_at=occurred_at,
        data=data,
        event_id=uuid.uuid5(IMPORT_NAMESPACE, name),
        recorded_by_id=recorded_by_id,
    )
    return _ParsedRow(row_number=row_number, values=values, email=email, phone=phone, event=event)


# --- matching and writing ---------------------------------------------------------------------------------


def phone_digits_expression():
    """A database expression: the ``phone`` column without its usual formatting characters."""
    expression = F("phone")
    for character in PHONE_FORMATTING:
        expression = Replace(expression, Value(character), Value(""))
    return expression


def _pick(candidates):
    """Several live profiles share an email/phone: prefer one with a user account, then the oldest."""
    best = {}
    for pk, key, has_user in candidates:
        current = best.get(key)
        if current is None or (has_user and not current[1]):
            best[key] = (pk, has_user)
    return {key: pk for key, (pk, _has_user) in best.items()}


def match_profiles(emails=(), phones=()):
    """Map normalised emails and phone digits to the ids of the live profiles they belong to."""
    live = VisitorProfile.objects.filter(merged_into__isnull=True).order_by("pk")
    by_email = {}
    if emails:
        by_email = _pick(
            (pk, key, user_id is not None)
            for pk, key, user_id in live.annotate(email_key=Lower("email"))
            .filter(email_key__in=set(emails))
            .values_list("pk", "email_key", "user_id")
        )
    by_phone = {}
    if phones:
        rows = (
            live.exclude(phone="")
            .annotate(phone_key=phone_digits_expression())
            .filter(phone_key__in=set(phones))
            .values_list("pk", "phone", "user_id")
        )
        by_phone = _pick((pk, normalise_phone(phone), user_id is not None) for pk, phone, user_id in rows)
    return by_email, by_phone


def _write_batch(batch, result):
    by_email, by_phone = match_profiles(
        {row.email for row in batch if row.email}, {row.phone for row in batch if row.phone}
    )
    events = []
    seen = set()
    for row in batch:
        profile_id = by_email.get(row.email) if row.email else None
        if profile_id is None and row.phone:
            profile_id = by_phone.get(row.phone)
        if profile_id is None:
            if row.email and row.phone:
                reason = _("No profile has this email or this phone number.")
            elif row.email:
                reason = _("No profile has this email.")
            else:
                reason = _("No profile has this phone number.")
            result.unmatched.append(ImportedRow(row.row_number, row.values, reason))
            continue
        if row.event["id"] in seen:
            result.duplicates += 1  # the same transaction twice in the file
            continue
        seen.add(row.event["id"])
        row.event["profile_id"] = profile_id
        events.append(row.event)
    if not events:
        return
    already = {
        str(event_id)
        for event_id in Interaction.objects.filter(
            event_id__in=[event["id"] for event in events]
        ).values_list("event_id", flat=True)
    }
    new = [event for event in events if event["id"] not in already]
    result.duplicates += len(events) - len(new)
    written = ingest_events(new) if new else 0
    result.imported += written
    if written < len(new):
        # A matched profile was deleted between matching and writing: say so rather than lose the rows.
        result.errors.append(
            ImportedRow(
                0,
                {},
                _("%(count)s row(s) were not written because their profile was deleted during the import.")
                % {"count": len(new) - written},
            )
        )


def import_offline_transactions(fileobj, *, recorded_by=None, batch_size=None):
    """Import offline transactions from a CSV file object (binary or text). Returns an ``ImportResult``.

    Columns (header row required, any order, case-insensitive): ``email``, ``phone``, ``occurred_at``
    (ISO date or date-time), ``kind`` (default ``offline_purchase``), ``channel`` (store, phone, email or
    mail; default ``store``), ``amount``, ``currency``, ``reference``, ``note``. Other columns are ignored.
    Raises ``ImportFileError`` when the header is unusable.
    """
    batch_size = batch_size or get_setting("INGEST_BATCH_SIZE")
    recorded_by_id = getattr(recorded_by, "pk", recorded_by)
    fieldnames, delimiter, lines = _read_header(text_lines(fileobj))
    _check_columns(fieldnames)
    result = ImportResult(fieldnames=[name for name in fieldnames if name])
    reader = csv.DictReader(lines, fieldnames=fieldnames, delimiter=delimiter)
    batch = []
    row_number = 1  # the header is row 1, as in a spreadsheet
    while True:
        try:
            raw = next(reader, None)
        except UnicodeDecodeError:
            result.stopped = _(
                "The file is not UTF-8 text after row %(row)s: the rest of the file was not read."
            ) % {"row": row_number}
            break
        except csv.Error as exc:
            result.stopped = _(
                "Row %(row)s could not be read (%(error)s): the rest of the file was not read."
            ) % {
                "row": row_number + 1,
                "error": exc,
            }
            break
        if raw is None:
            break
        row_number += 1
        extra = raw.pop(None, None)
        values = {name: (value or "").strip() for name, value in raw.items() if name}
        if extra:
            values[None] = extra
        if not any(value for name, value in values.items() if name):
            continue  # a blank line (or only separators)
        result.rows += 1
        try:
            parsed = _parse_row(row_number, values, recorded_by_id)
        except ValueError as exc:
            values.pop(None, None)
            result.errors.append(ImportedRow(row_number, values, str(exc)))
            continue
        values.pop(None, None)
        batch.append(parsed)
        if len(batch) >= batch_size:
            _write_batch(batch, result)
            batch = []
    if batch:
        _write_batch(batch, result)
    return result
