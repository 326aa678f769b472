from django import forms
from django.http import HttpResponse, HttpResponseBadRequest, JsonResponse

import wagtail_crm


class NewsletterForm(forms.Form):
    email = forms.EmailField()
    first_name = forms.CharField(required=False)
    consent = forms.BooleanField(required=False)


def newsletter_signup(request):
    """What a site's own sign-up view does with the public API."""
    form = NewsletterForm(request.POST)
    if not form.is_valid():
        return HttpResponseBadRequest("invalid")
    wagtail_crm.identify(
        request,
        email=form.cleaned_data["email"],
        first_name=form.cleaned_data["first_name"],
        consent={"email": form.cleaned_data["consent"]},
    )
    wagtail_crm.track(request, "signup", list="newsletter")
    return HttpResponse("Thanks!")


def my_segments(request):
    """What a site's template or view sees: the slugs of the segments the visitor is in."""
    return JsonResponse({"segments": [segment.slug for segment in wagtail_crm.segments_for(request)]})
