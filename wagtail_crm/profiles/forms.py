"""Admin forms: a profile's contact details and consent, an offline interaction, a CSV import upload."""

import uuid
from datetime import timedelta

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import FileExtensionValidator, RegexValidator
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from wagtail.admin.forms import WagtailAdminModelForm
from wagtail.admin.panels import FieldPanel, FieldRowPanel, MultiFieldPanel, ObjectList
from wagtail.admin.widgets import AdminDateTimeInput

from wagtail_crm.conf import get_setting
from wagtail_crm.profiles import importers
from wagtail_crm.profiles.events import make_event
from wagtail_crm.profiles.models import Channel, InteractionKind, VisitorProfile, kind_validator

CONTACT_FIELDS = ("first_name", "last_name", "email", "phone")
CONSENT_CHANNELS = ("email", "phone")

phone_validator = RegexValidator(
    r"^[0-9+()./\- ]*$",
    _("Use digits, spaces and + ( ) - . / only."),
)


class ProfileForm(WagtailAdminModelForm):
    """Contact details and consent: the only parts of a profile staff edit (the rest is recorded).

    Changing a consent box records when it changed (``VisitorProfile.set_consent``). Saving an existing
    profile writes only these fields, so that it never overwrites visits or facts that the ingest job
    updated meanwhile.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "phone" in self.fields:
            self.fields["phone"].validators.append(phone_validator)
        for channel in CONSENT_CHANNELS:
            name = f"{channel}_consent"
            changed_at = getattr(self.instance, f"{channel}_consent_at", None)
            if name in self.fields and changed_at:
                self.fields[name].help_text = _("Last changed %(when)s.") % {
                    "when": timezone.localtime(changed_at).strftime("%Y-%m-%d %H:%M")
                }

    def clean_email(self):
        email = self.cleaned_data.get("email", "").strip()
        changed = email.lower() != (self.instance.email or "").lower()
        if email and changed:
            other = (
                VisitorProfile.objects.filter(merged_into__isnull=True, email__iexact=email)
                .exclude(pk=self.instance.pk)
                .first()
            )
            if other is not None:
                raise ValidationError(
                    _("Another profile (%(name)s) already has this email address."), params={"name": other}
                )
        return email

    def clean(self):
        cleaned_data = super().clean()
        if self.instance._state.adding and not any(cleaned_data.get(name) for name in CONTACT_FIELDS):
            raise ValidationError(_("Enter at least a name, an email address or a phone number."))
        return cleaned_data

    def save(self, commit=True):
        instance = super().save(commit=False)
        update_fields = [name for name in CONTACT_FIELDS if name in self.fields]
        for channel in CONSENT_CHANNELS:
            name = f"{channel}_consent"
            if name in self.fields:
                update_fields.append(name)
                if name in self.changed_data:
                    instance.set_consent(channel, self.cleaned_data[name])
                    update_fields.append(f"{name}_at")
        if commit:
            if instance._state.adding:
                instance.save()
            else:
                instance.save(update_fields=update_fields)
        return instance


profile_edit_handler = ObjectList(
    [
        MultiFieldPanel(
            [FieldRowPanel([FieldPanel("first_name"), FieldPanel("last_name")])],
            heading=_("Name"),
        ),
        MultiFieldPanel([FieldPanel("email"), FieldPanel("phone")], heading=_("Contact details")),
        MultiFieldPanel(
            [FieldPanel("email_consent"), FieldPanel("phone_consent")],
            heading=_("Consent"),
            help_text=_("Tick only what the person agreed to. The date of every change is recorded."),
        ),
    ],
    base_form_class=ProfileForm,
)


# Kinds staff record by hand. Any other lowercase slug can be used as a custom kind.
OFFLINE_KINDS = [
    (InteractionKind.OFFLINE_PURCHASE.value, InteractionKind.OFFLINE_PURCHASE.label),
    (InteractionKind.CALL_LOGGED.value, InteractionKind.CALL_LOGGED.label),
    (InteractionKind.LETTER.value, InteractionKind.LETTER.label),
    (InteractionKind.CUSTOM.value, InteractionKind.CUSTOM.label),
]
OFFLINE_CHANNELS = [(value, label) for value, label in Channel.choices if value != Channel.ONLINE]


class OfflineInteractionForm(forms.Form):
    kind = forms.ChoiceField(label=_("Kind"), choices=OFFLINE_KINDS)
    custom_kind = forms.CharField(
        label=_("Custom kind"),
        required=False,
        max_length=50,
        validators=[kind_validator],
        help_text=_(
            "Only for the kind “Custom”: a short lowercase name such as store_visit or event_attended."
        ),
    )
    channel = forms.ChoiceField(label=_("Channel"), choices=OFFLINE_CHANNELS, initial=Channel.STORE.value)
    occurred_at = forms.DateTimeField(label=_("When"), widget=AdminDateTimeInput, initial=timezone.now)
    amount = forms.DecimalField(
        label=_("Amount"),
        required=False,
        max_digits=12,
        decimal_places=2,
        help_text=_("For a purchase: the amount spent. Counts towards the person’s total spend."),
    )
    note = forms.CharField(
        label=_("Note"),
        required=False,
        max_length=importers.MAX_NOTE_LENGTH,
        widget=forms.Textarea(attrs={"rows": 4}),
    )
    # Generated when the form is shown: submitting the same form twice records the interaction once.
    event_id = forms.UUIDField(widget=forms.HiddenInput, initial=uuid.uuid4)

    def clean_occurred_at(self):
        occurred_at = self.cleaned_data["occurred_at"]
        if occurred_at > timezone.now() + timedelta(minutes=5):
            raise ValidationError(_("This is in the future: record interactions once they have happened."))
        return occurred_at

    def clean(self):
        cleaned_data = super().clean()
        custom_kind = cleaned_data.get("custom_kind")
        if custom_kind:
            if cleaned_data.get("kind") != InteractionKind.CUSTOM:
                self.add_error("custom_kind", _("Choose the kind “Custom” to give a custom kind."))
            elif custom_kind in importers.RESERVED_KINDS:
                self.add_error("custom_kind", _("This kind is recorded by the website; choose another name."))
        return cleaned_data

    def get_kind(self):
        return self.cleaned_data.get("custom_kind") or self.cleaned_data["kind"]

    def get_event(self, profile, user):
        data = {}
        if self.cleaned_data.get("amount") is not None:
            data["amount"] = str(self.cleaned_data["amount"])
        if self.cleaned_data.get("note"):
            data["note"] = self.cleaned_data["note"]
        return make_event(
            self.get_kind(),
            profile_id=profile.pk,
            channel=self.cleaned_data["channel"],
            occurred_at=self.cleaned_data["occurred_at"],
            data=data,
            event_id=self.cleaned_data["event_id"],
            recorded_by_id=user.pk,
        )


def max_upload_size():
    """Largest CSV file (bytes) the import accepts: ``WAGTAIL_CRM["IMPORT_MAX_UPLOAD_SIZE"]``, default 10 MB."""
    return get_setting("IMPORT_MAX_UPLOAD_SIZE")


class ImportTransactionsForm(forms.Form):
    file = forms.FileField(
        label=_("CSV file"),
        validators=[FileExtensionValidator(["csv", "txt"], message=_("Choose a .csv file."))],
        help_text=_(
            "UTF-8 CSV with a header row. Columns: email, phone, occurred_at, kind, channel, amount, "
            "currency, reference, note."
        ),
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv"}),
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        try:
            importers.validate_file(upload, max_size=max_upload_size())
        except importers.ImportFileError as exc:
            raise ValidationError(str(exc)) from exc
        return upload
