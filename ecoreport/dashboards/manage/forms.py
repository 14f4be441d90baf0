"""Forms of the settings pages. They parse what a person typed; the rules that decide whether
a value is acceptable live in the services and are called from here, not copied."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.text import slugify

from ecoreport.carbon.importer import FactorError, parse_zone
from ecoreport.carbon.models import MAX_INTENSITY_G_PER_KWH, Basis, InstrumentKind, Scope
from ecoreport.carbon.validation import CarbonInputError, pue_validate
from ecoreport.fleet.models import Site
from ecoreport.organizations.models import Project, Role, Team, slug_validator

MAX_IMPORT_BYTES = 5 * 1024 * 1024

# The service accepts 1.0 to 5.0 (pue_validate); the input's bounds are there for the browser.
_PUE_WIDGET = forms.NumberInput(attrs={"step": "0.001", "min": "1", "max": "5"})


def _pue(value: Decimal | None) -> Decimal | None:
    if value is None:
        return None
    try:
        return pue_validate(value)
    except CarbonInputError as exc:
        raise ValidationError(str(exc)) from None


def utc_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


class _Form(forms.Form):
    """Several forms share a page: each gets its own id prefix so labels find their inputs."""

    id_prefix = "f"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", f"{self.id_prefix}-%s")
        super().__init__(*args, **kwargs)


class SiteForm(_Form):
    id_prefix = "site"
    name = forms.CharField(max_length=200)
    slug = forms.CharField(
        max_length=64,
        required=False,
        validators=[slug_validator],
        help_text="Short id for the API and issue_agent_token --site; made from the name if empty.",
    )
    grid_zone = forms.CharField(
        max_length=64,
        help_text="A zone with carbon-intensity factors, e.g. FR, US, GCP-us-central1.",
        widget=forms.TextInput(attrs={"list": "known-zones", "autocomplete": "off"}),
    )
    pue = forms.DecimalField(
        label="PUE",
        initial=Decimal("1.580"),
        help_text="Facility energy / IT energy, 1.0 to 5.0.",
        widget=_PUE_WIDGET,
    )
    provider = forms.CharField(max_length=64, required=False, help_text="e.g. own, equinix, gcp")

    def __init__(
        self, *args: Any, known_zones: list[str], site: Site | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.known_zones = known_zones
        self.site = site
        if site is not None:
            # The slug is the site's id in the API and on agents' command lines: fixed once made.
            del self.fields["slug"]
            self.fields["pue"].label = "PUE from now on"
            self.fields[
                "pue"
            ].help_text = (
                "Applies from the current hour. To correct past hours, add a dated PUE period."
            )

    def clean_grid_zone(self) -> str:
        try:
            zone = parse_zone(self.cleaned_data["grid_zone"])
        except FactorError as exc:
            raise ValidationError(str(exc)) from None
        if self.site is not None and zone == self.site.grid_zone:
            return zone
        by_lower = {z.lower(): z for z in self.known_zones}
        if zone.lower() not in by_lower:
            raise ValidationError(
                f"No carbon-intensity factor is known for zone {zone!r}. Pick a listed zone, or "
                "add a factor for it under Carbon factors first."
            )
        return by_lower[zone.lower()]

    def clean_pue(self) -> Decimal | None:
        return _pue(self.cleaned_data.get("pue"))

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.site is None and not data.get("slug") and data.get("name"):
            slug = slugify(data["name"])[:64]
            try:
                slug_validator(slug)
            except ValidationError:
                self.add_error("slug", "Could not make a slug from the name; type one.")
            else:
                data["slug"] = slug
        return data


class PuePeriodForm(_Form):
    id_prefix = "pue"
    pue = forms.DecimalField(label="PUE", widget=_PUE_WIDGET, help_text="1.0 to 5.0.")
    valid_from = forms.DateField(
        label="From (UTC midnight)",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Holds until the next period; the hours it covers are recomputed.",
    )
    source = forms.CharField(max_length=300, required=False, help_text="e.g. Q3 meter audit")

    def clean_pue(self) -> Decimal | None:
        return _pue(self.cleaned_data.get("pue"))


class InstrumentForm(_Form):
    id_prefix = "instrument"
    kind = forms.ChoiceField(choices=InstrumentKind.choices)
    valid_from = forms.DateField(label="Valid from", widget=forms.DateInput(attrs={"type": "date"}))
    valid_to = forms.DateField(
        label="Valid until (exclusive)",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Empty: open-ended.",
    )
    intensity_g_per_kwh = forms.FloatField(
        label="Factor (g CO2e/kWh)",
        required=False,
        min_value=0,
        max_value=MAX_INTENSITY_G_PER_KWH,
        help_text="For a supplier or residual-mix factor.",
    )
    covered_pct = forms.FloatField(
        label="Certificates cover (% of consumption)",
        required=False,
        min_value=0,
        max_value=100,
        help_text="For certificates only.",
    )
    source = forms.CharField(max_length=300, help_text="The contract or registry.")
    year = forms.IntegerField(min_value=1990, max_value=2100, help_text="Year of the data.")

    def service_kwargs(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "kind": data["kind"],
            "valid_from": utc_midnight(data["valid_from"]),
            "valid_to": utc_midnight(data["valid_to"]) if data.get("valid_to") else None,
            "intensity_g_per_kwh": data.get("intensity_g_per_kwh"),
            "covered_share": (
                data["covered_pct"] / 100 if data.get("covered_pct") is not None else None
            ),
            "source": data["source"],
            "year": data["year"],
        }


class FactorForm(_Form):
    id_prefix = "factor"
    zone = forms.CharField(
        max_length=64,
        help_text="A zone code; a new one is fine (then sites can use it).",
        widget=forms.TextInput(attrs={"list": "known-zones", "autocomplete": "off"}),
    )
    resolution = forms.ChoiceField(
        choices=[("year", "Calendar year"), ("month", "Calendar month"), ("hour", "One hour")],
        initial="year",
    )
    day = forms.DateField(
        label="Period",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Any day in the year or month; for one hour, the day of that hour.",
    )
    hour = forms.IntegerField(
        label="Hour (UTC, 0-23)",
        required=False,
        min_value=0,
        max_value=23,
        help_text="Only for one-hour factors.",
    )
    g_co2e_per_kwh = forms.FloatField(label="g CO2e/kWh")
    basis = forms.ChoiceField(choices=Basis.choices, initial=Basis.LOCATION)
    scope = forms.ChoiceField(choices=Scope.choices, initial=Scope.LIFECYCLE)
    source = forms.CharField(max_length=300, help_text="Where the figure comes from.")
    year = forms.IntegerField(
        label="Data year",
        required=False,
        help_text="Year of the underlying data; the period's year if empty.",
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("resolution") == "hour" and data.get("hour") is None:
            self.add_error("hour", "Give the hour of a one-hour factor.")
        return data

    def period(self) -> tuple[datetime, datetime]:
        data = self.cleaned_data
        day: date = data["day"]
        if data["resolution"] == "year":
            return datetime(day.year, 1, 1, tzinfo=UTC), datetime(day.year + 1, 1, 1, tzinfo=UTC)
        if data["resolution"] == "month":
            start = datetime(day.year, day.month, 1, tzinfo=UTC)
            return start, start.replace(year=day.year + (day.month == 12), month=day.month % 12 + 1)
        start = utc_midnight(day) + timedelta(hours=data["hour"])
        return start, start + timedelta(hours=1)

    def record(self) -> dict[str, object]:
        """The factor as the importer reads a CSV line, so it gets the same checks."""
        data = self.cleaned_data
        start, end = self.period()
        return {
            "zone": data["zone"],
            "start": start.isoformat(),
            "end": end.isoformat(),
            "g_co2e_per_kwh": data["g_co2e_per_kwh"],
            "basis": data["basis"],
            "scope": data["scope"],
            "source": data["source"],
            "year": data["year"] if data.get("year") is not None else start.year,
        }


class FactorImportForm(_Form):
    id_prefix = "import"
    file = forms.FileField(
        label="CSV file",
        help_text=(
            "Columns zone, start, end, g_co2e_per_kwh, basis, source, year (scope optional); "
            "UTF-8, at most 5 MiB."
        ),
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv"}),
    )
    replace = forms.BooleanField(
        required=False,
        label="Replace the organization's factors that the file overlaps (--replace)",
    )
    skip_bad = forms.BooleanField(
        required=False, label="Load the good lines even if some lines are wrong"
    )

    def clean_file(self) -> str:
        upload = self.cleaned_data["file"]
        if upload.size > MAX_IMPORT_BYTES:
            raise ValidationError("The file is larger than 5 MiB; split it.")
        try:
            return str(upload.read().decode("utf-8-sig"))
        except UnicodeDecodeError:
            raise ValidationError("The file is not UTF-8 text; save it as CSV UTF-8.") from None


class AgentTokenForm(_Form):
    id_prefix = "agent"
    hostname = forms.CharField(
        max_length=255,
        help_text="As `hostname` prints it on the GPU server; a new name registers the host.",
        widget=forms.TextInput(attrs={"list": "known-hosts", "autocomplete": "off"}),
    )
    site = forms.ModelChoiceField(
        queryset=Site.objects.none(),
        required=False,
        empty_label="(keep the host's site / none)",
        help_text="Where the host runs: its grid zone and PUE apply to its energy.",
    )

    def __init__(self, *args: Any, sites: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Only this organization's sites can be chosen: another's id is "not a valid choice".
        field = self.fields["site"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = sites


class CodeCarbonTokenForm(_Form):
    id_prefix = "codecarbon"
    team = forms.ModelChoiceField(queryset=Team.objects.none(), help_text="Whose runs these are.")
    project = forms.ModelChoiceField(
        queryset=Project.objects.none(), help_text="Each run becomes a job of this project."
    )
    site = forms.ModelChoiceField(
        queryset=Site.objects.none(),
        help_text="Where the trackers run: its grid zone and PUE apply to their energy.",
    )
    exclude_gpu = forms.BooleanField(
        required=False,
        label="Exclude GPU energy",
        help_text="For hosts whose GPUs an EcoReport agent already measures: the trackers' GPU "
        "energy is ignored, so it is not counted twice.",
    )

    def __init__(self, *args: Any, teams: Any, projects: Any, sites: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Only this organization's rows can be chosen: another's id is "not a valid choice".
        for name, queryset in (("team", teams), ("project", projects), ("site", sites)):
            field = self.fields[name]
            assert isinstance(field, forms.ModelChoiceField)
            field.queryset = queryset


def role_choices(*, is_owner: bool) -> list[tuple[str, str]]:
    # An admin who is not an owner cannot hand out the owner role (the service refuses it too).
    return [(value, label) for value, label in Role.choices if is_owner or value != Role.OWNER]


class InviteForm(_Form):
    id_prefix = "member"
    email = forms.EmailField(
        label="E-mail",
        max_length=254,
        help_text="They get a link to accept; they join only when they do.",
    )
    role = forms.ChoiceField(initial=Role.MEMBER)

    def __init__(self, *args: Any, is_owner: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["role"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = role_choices(is_owner=is_owner)


class RoleForm(_Form):
    id_prefix = "role"
    role = forms.ChoiceField(choices=Role.choices)
