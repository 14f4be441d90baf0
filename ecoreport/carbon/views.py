"""REST API: sites (with PUE periods and market instruments) and carbon-intensity factors.

Any member reads; admins and owners write. Lookups start from the caller's organization, so a
site or factor of another organization is a 404, never a leak. Shared factors (built-in,
imported, from providers) are readable by everyone and writable by no API caller.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from ecoreport.carbon.factors import factor_create, factor_delete
from ecoreport.carbon.instruments import market_instrument_create, market_instrument_delete
from ecoreport.carbon.models import (
    Basis,
    CarbonIntensity,
    InstrumentKind,
    MarketInstrument,
    Resolution,
    SitePue,
)
from ecoreport.carbon.pue import site_pue_set
from ecoreport.carbon.sites import site_create, site_update
from ecoreport.core.api import (
    ApiError,
    CountedLimitOffsetPagination,
    StrictSerializer,
    UtcDateTimeField,
    validated,
)
from ecoreport.fleet.models import Site
from ecoreport.organizations.api import OrgApiView
from ecoreport.organizations.models import slug_validator
from ecoreport.organizations.permissions import IsOrgAdmin

INVALID_BODY = "The request is not valid."


class FactorPagination(CountedLimitOffsetPagination):
    default_limit = 200
    max_limit = 1000


MAX_FACTORS_PER_PAGE = FactorPagination.max_limit


class PuePeriodOut(serializers.ModelSerializer):
    class Meta:
        model = SitePue
        fields = ["valid_from", "pue", "source"]


class InstrumentOut(serializers.ModelSerializer):
    site = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = MarketInstrument
        fields = [
            "id",
            "site",
            "kind",
            "valid_from",
            "valid_to",
            "intensity_g_per_kwh",
            "covered_share",
            "source",
            "year",
        ]


class SiteOut(serializers.ModelSerializer):
    pue_periods = PuePeriodOut(many=True, read_only=True)

    class Meta:
        model = Site
        fields = ["slug", "name", "grid_zone", "pue", "provider", "pue_periods", "created_at"]


class SiteIn(StrictSerializer):
    slug = serializers.CharField(max_length=64, validators=[slug_validator])
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    grid_zone = serializers.CharField(max_length=64)
    pue = serializers.DecimalField(max_digits=4, decimal_places=3, required=False, default="1.580")
    provider = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")


class SitePatch(StrictSerializer):
    name = serializers.CharField(max_length=200, required=False)
    grid_zone = serializers.CharField(max_length=64, required=False)
    pue = serializers.DecimalField(max_digits=4, decimal_places=3, required=False)
    provider = serializers.CharField(max_length=64, required=False, allow_blank=True)


class PueIn(StrictSerializer):
    pue = serializers.DecimalField(max_digits=4, decimal_places=3)
    valid_from = UtcDateTimeField()
    source = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")


class InstrumentIn(StrictSerializer):
    kind = serializers.ChoiceField(choices=InstrumentKind.choices)
    valid_from = UtcDateTimeField()
    valid_to = UtcDateTimeField(required=False, allow_null=True, default=None)
    intensity_g_per_kwh = serializers.FloatField(required=False, allow_null=True, default=None)
    covered_share = serializers.FloatField(required=False, allow_null=True, default=None)
    source = serializers.CharField(max_length=300)
    year = serializers.IntegerField(min_value=1990, max_value=2100)


class FactorOut(serializers.ModelSerializer):
    g_co2e_per_kwh = serializers.FloatField(source="intensity_g_per_kwh")
    own = serializers.SerializerMethodField()

    class Meta:
        model = CarbonIntensity
        fields = [
            "id",
            "zone",
            "resolution",
            "start",
            "end",
            "g_co2e_per_kwh",
            "basis",
            "source",
            "year",
            "scope",
            "is_forecast",
            "own",
        ]

    def get_own(self, obj: CarbonIntensity) -> bool:
        return obj.organization_id is not None


class FactorParams(StrictSerializer):
    zone = serializers.CharField(required=False)
    basis = serializers.ChoiceField(choices=Basis.choices, required=False)
    resolution = serializers.ChoiceField(choices=Resolution.choices, required=False)
    start = UtcDateTimeField(required=False)
    end = UtcDateTimeField(required=False)
    limit = FactorPagination.limit_field()
    offset = FactorPagination.offset_field()


def _results(name: str, item: serializers.Serializer, *, count: bool = False) -> Any:
    """The list envelope these endpoints answer: ``{"results": [...]}``, with the total before
    paging as ``count`` where the list is paged."""
    fields: dict[str, Any] = {"results": item}
    if count:
        fields = {"count": serializers.IntegerField(), **fields}
    return inline_serializer(name, fields=fields)


class _SiteApiView(OrgApiView):
    permission_classes = [IsOrgAdmin]

    def site(self, slug: str) -> Site:
        return self.org_object(self.org_objects(Site), "site", slug=slug)


class SitesView(_SiteApiView):
    @extend_schema(
        summary="Sites of the caller's organization",
        operation_id="v1_sites_list",
        responses=_results("SiteList", SiteOut(many=True)),
    )
    def get(self, request: Request) -> Response:
        sites = self.org_objects(Site).prefetch_related("pue_periods").order_by("slug")
        return Response({"results": SiteOut(sites, many=True).data})

    @extend_schema(summary="Create a site (admins)", request=SiteIn, responses={201: SiteOut})
    def post(self, request: Request) -> Response:
        data = validated(SiteIn(data=request.data), INVALID_BODY)
        site = site_create(organization=self.organization, **data)
        return Response(SiteOut(site).data, status=status.HTTP_201_CREATED)


class SiteDetailView(_SiteApiView):
    @extend_schema(summary="One site", responses=SiteOut)
    def get(self, request: Request, slug: str) -> Response:
        return Response(SiteOut(self.site(slug)).data)

    @extend_schema(
        summary="Change a site (admins). A new PUE applies from the current hour; a new grid zone "
        "recomputes all of the site's hours.",
        request=SitePatch,
        responses=SiteOut,
    )
    def patch(self, request: Request, slug: str) -> Response:
        site = self.site(slug)
        data = validated(SitePatch(data=request.data), INVALID_BODY)
        site = site_update(site=site, **data)
        return Response(SiteOut(Site.objects.get(pk=site.pk)).data)


class SitePueView(_SiteApiView):
    domain_error_field = "pue"  # what the service refuses without naming a field is the PUE

    @extend_schema(
        summary="PUE periods of a site",
        responses=_results("PuePeriodList", PuePeriodOut(many=True)),
    )
    def get(self, request: Request, slug: str) -> Response:
        site = self.site(slug)
        return Response(
            {"results": PuePeriodOut(site.pue_periods.order_by("valid_from"), many=True).data}
        )

    @extend_schema(
        summary="Set the site's PUE from a date (admins); recomputes those hours",
        request=PueIn,
        responses={201: PuePeriodOut},
    )
    def post(self, request: Request, slug: str) -> Response:
        site = self.site(slug)
        data = validated(PueIn(data=request.data), INVALID_BODY)
        period = site_pue_set(site=site, **data)
        return Response(PuePeriodOut(period).data, status=status.HTTP_201_CREATED)


class SiteInstrumentsView(_SiteApiView):
    @extend_schema(
        summary="Market-based instruments of a site",
        responses=_results("InstrumentList", InstrumentOut(many=True)),
    )
    def get(self, request: Request, slug: str) -> Response:
        site = self.site(slug)
        items = self.org_objects(MarketInstrument).filter(site=site).order_by("valid_from", "id")
        return Response({"results": InstrumentOut(items, many=True).data})

    @extend_schema(
        summary="Add a supplier factor, residual mix or certificates (admins)",
        request=InstrumentIn,
        responses={201: InstrumentOut},
    )
    def post(self, request: Request, slug: str) -> Response:
        site = self.site(slug)
        data = validated(InstrumentIn(data=request.data), INVALID_BODY)
        instrument = market_instrument_create(site=site, **data)
        return Response(InstrumentOut(instrument).data, status=status.HTTP_201_CREATED)


class SiteInstrumentDetailView(_SiteApiView):
    @extend_schema(
        summary="Remove an instrument (admins); recomputes its period", responses={204: None}
    )
    def delete(self, request: Request, slug: str, pk: int) -> Response:
        site = self.site(slug)
        instrument = self.org_object(
            self.org_objects(MarketInstrument), "instrument", site=site, pk=pk
        )
        market_instrument_delete(instrument=instrument)
        return Response(status=status.HTTP_204_NO_CONTENT)


class FactorsView(OrgApiView):
    permission_classes = [IsOrgAdmin]

    @extend_schema(
        summary="Carbon-intensity factors: shared ones and the organization's own",
        operation_id="v1_carbon_intensity_list",
        parameters=[
            OpenApiParameter("zone", str),
            OpenApiParameter("basis", str, enum=Basis.values),
            OpenApiParameter("resolution", str, enum=Resolution.values),
            OpenApiParameter(
                "start", OpenApiTypes.DATETIME, description="factors whose period ends after this"
            ),
            OpenApiParameter(
                "end", OpenApiTypes.DATETIME, description="factors whose period starts before this"
            ),
            OpenApiParameter("limit", int, description=f"1-{MAX_FACTORS_PER_PAGE}; default 200"),
            OpenApiParameter("offset", int, description="default 0"),
        ],
        responses=_results("FactorList", FactorOut(many=True), count=True),
    )
    def get(self, request: Request) -> Response:
        p = validated(
            FactorParams(data=request.query_params), "The query parameters are not valid."
        )
        qs = CarbonIntensity.objects.visible_to(self.organization)
        if "zone" in p:
            qs = qs.filter(zone=p["zone"])
        if "basis" in p:
            qs = qs.filter(basis=p["basis"])
        if "resolution" in p:
            qs = qs.filter(resolution=p["resolution"])
        if "start" in p:
            qs = qs.filter(end__gt=p["start"])
        if "end" in p:
            qs = qs.filter(start__lt=p["end"])
        qs = qs.order_by("zone", "basis", "start", "resolution", "id")
        paginator = FactorPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(FactorOut(page, many=True).data)

    @extend_schema(
        summary="Add an organization's own factor (admins); used for its sites only",
        request={"application/json": OpenApiTypes.OBJECT},
        responses={201: FactorOut},
    )
    def post(self, request: Request) -> Response:
        if not isinstance(request.data, dict):
            raise ApiError("Send one factor as a JSON object.")
        data = dict(request.data)
        data.setdefault("basis", Basis.LOCATION)
        factor = factor_create(organization=self.organization, data=data)
        return Response(FactorOut(factor).data, status=status.HTTP_201_CREATED)


class FactorDetailView(OrgApiView):
    permission_classes = [IsOrgAdmin]

    def _get(self, request: Request, pk: int) -> CarbonIntensity:
        visible = CarbonIntensity.objects.visible_to(self.organization)
        factor: CarbonIntensity = self.org_object(visible, "factor", pk=pk)
        return factor

    @extend_schema(summary="One factor", responses=FactorOut)
    def get(self, request: Request, pk: int) -> Response:
        return Response(FactorOut(self._get(request, pk)).data)

    @extend_schema(
        summary="Remove the organization's own factor (admins); recomputes its period",
        responses={204: None},
    )
    def delete(self, request: Request, pk: int) -> Response:
        factor = self._get(request, pk)
        if factor.organization_id is None:
            raise ApiError(
                "Shared factors are reference data; load corrections with import_carbon_intensity.",
                code="permission_denied",
                status_code=status.HTTP_403_FORBIDDEN,
            )
        factor_delete(factor=factor)
        return Response(status=status.HTTP_204_NO_CONTENT)
