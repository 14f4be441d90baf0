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
from rest_framework.views import APIView

from ecoreport.accounting.views import ApiThrottle
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
from ecoreport.carbon.validation import CarbonInputError
from ecoreport.core.api import ApiError, UtcDateTimeField
from ecoreport.fleet.models import Site
from ecoreport.fleet.services import site_create, site_update
from ecoreport.organizations.models import Organization, slug_validator
from ecoreport.organizations.permissions import IsOrgAdmin, request_membership

MAX_FACTORS_PER_PAGE = 1000


def _org(request: Request) -> Organization:
    membership = request_membership(request)
    assert membership is not None  # the permission class has checked
    return membership.organization


def _invalid(errors: Any) -> ApiError:
    return ApiError("The request is not valid.", details=errors)


def _not_found(what: str) -> ApiError:
    return ApiError(f"No such {what}.", code="not_found", status_code=status.HTTP_404_NOT_FOUND)


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


class SiteIn(serializers.Serializer):
    slug = serializers.CharField(max_length=64, validators=[slug_validator])
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    grid_zone = serializers.CharField(max_length=64)
    pue = serializers.DecimalField(max_digits=4, decimal_places=3, required=False, default="1.580")
    provider = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")


class SitePatch(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    grid_zone = serializers.CharField(max_length=64, required=False)
    pue = serializers.DecimalField(max_digits=4, decimal_places=3, required=False)
    provider = serializers.CharField(max_length=64, required=False, allow_blank=True)


class PueIn(serializers.Serializer):
    pue = serializers.DecimalField(max_digits=4, decimal_places=3)
    valid_from = UtcDateTimeField()
    source = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")


class InstrumentIn(serializers.Serializer):
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


class FactorParams(serializers.Serializer):
    zone = serializers.CharField(required=False)
    basis = serializers.ChoiceField(choices=Basis.choices, required=False)
    resolution = serializers.ChoiceField(choices=Resolution.choices, required=False)
    start = UtcDateTimeField(required=False)
    end = UtcDateTimeField(required=False)
    limit = serializers.IntegerField(min_value=1, max_value=MAX_FACTORS_PER_PAGE, default=200)
    offset = serializers.IntegerField(min_value=0, default=0)


def _results(name: str, item: serializers.Serializer, *, count: bool = False) -> Any:
    """The list envelope these endpoints answer: ``{"results": [...]}``, with the total before
    paging as ``count`` where the list is paged."""
    fields: dict[str, Any] = {"results": item}
    if count:
        fields = {"count": serializers.IntegerField(), **fields}
    return inline_serializer(name, fields=fields)


def _site(request: Request, slug: str) -> Site:
    site = Site.objects.for_org(_org(request)).filter(slug=slug).first()
    if site is None:
        raise _not_found("site")
    return site


class SitesView(APIView):
    permission_classes = [IsOrgAdmin]
    throttle_classes = [ApiThrottle]

    @extend_schema(
        summary="Sites of the caller's organization",
        operation_id="v1_sites_list",
        responses=_results("SiteList", SiteOut(many=True)),
    )
    def get(self, request: Request) -> Response:
        sites = Site.objects.for_org(_org(request)).prefetch_related("pue_periods").order_by("slug")
        return Response({"results": SiteOut(sites, many=True).data})

    @extend_schema(summary="Create a site (admins)", request=SiteIn, responses={201: SiteOut})
    def post(self, request: Request) -> Response:
        data = SiteIn(data=request.data)
        if not data.is_valid():
            raise _invalid(data.errors)
        try:
            site = site_create(organization=_org(request), **data.validated_data)
        except CarbonInputError as exc:
            raise ApiError(str(exc)) from None
        return Response(SiteOut(site).data, status=status.HTTP_201_CREATED)


class SiteDetailView(APIView):
    permission_classes = [IsOrgAdmin]
    throttle_classes = [ApiThrottle]

    @extend_schema(summary="One site", responses=SiteOut)
    def get(self, request: Request, slug: str) -> Response:
        return Response(SiteOut(_site(request, slug)).data)

    @extend_schema(
        summary="Change a site (admins). A new PUE applies from the current hour; a new grid zone "
        "recomputes all of the site's hours.",
        request=SitePatch,
        responses=SiteOut,
    )
    def patch(self, request: Request, slug: str) -> Response:
        site = _site(request, slug)
        data = SitePatch(data=request.data)
        if not data.is_valid():
            raise _invalid(data.errors)
        try:
            site = site_update(site=site, **data.validated_data)
        except CarbonInputError as exc:
            raise ApiError(str(exc)) from None
        return Response(SiteOut(Site.objects.get(pk=site.pk)).data)


class SitePueView(APIView):
    permission_classes = [IsOrgAdmin]
    throttle_classes = [ApiThrottle]

    @extend_schema(
        summary="PUE periods of a site",
        responses=_results("PuePeriodList", PuePeriodOut(many=True)),
    )
    def get(self, request: Request, slug: str) -> Response:
        site = _site(request, slug)
        return Response(
            {"results": PuePeriodOut(site.pue_periods.order_by("valid_from"), many=True).data}
        )

    @extend_schema(
        summary="Set the site's PUE from a date (admins); recomputes those hours",
        request=PueIn,
        responses={201: PuePeriodOut},
    )
    def post(self, request: Request, slug: str) -> Response:
        site = _site(request, slug)
        data = PueIn(data=request.data)
        if not data.is_valid():
            raise _invalid(data.errors)
        try:
            period = site_pue_set(site=site, **data.validated_data)
        except CarbonInputError as exc:
            raise ApiError(str(exc), details={exc.field or "pue": [str(exc)]}) from None
        return Response(PuePeriodOut(period).data, status=status.HTTP_201_CREATED)


class SiteInstrumentsView(APIView):
    permission_classes = [IsOrgAdmin]
    throttle_classes = [ApiThrottle]

    @extend_schema(
        summary="Market-based instruments of a site",
        responses=_results("InstrumentList", InstrumentOut(many=True)),
    )
    def get(self, request: Request, slug: str) -> Response:
        site = _site(request, slug)
        items = (
            MarketInstrument.objects.for_org(_org(request))
            .filter(site=site)
            .order_by("valid_from", "id")
        )
        return Response({"results": InstrumentOut(items, many=True).data})

    @extend_schema(
        summary="Add a supplier factor, residual mix or certificates (admins)",
        request=InstrumentIn,
        responses={201: InstrumentOut},
    )
    def post(self, request: Request, slug: str) -> Response:
        site = _site(request, slug)
        data = InstrumentIn(data=request.data)
        if not data.is_valid():
            raise _invalid(data.errors)
        try:
            instrument = market_instrument_create(site=site, **data.validated_data)
        except CarbonInputError as exc:
            raise ApiError(
                str(exc), details={exc.field: [str(exc)]} if exc.field else None
            ) from None
        return Response(InstrumentOut(instrument).data, status=status.HTTP_201_CREATED)


class SiteInstrumentDetailView(APIView):
    permission_classes = [IsOrgAdmin]
    throttle_classes = [ApiThrottle]

    @extend_schema(
        summary="Remove an instrument (admins); recomputes its period", responses={204: None}
    )
    def delete(self, request: Request, slug: str, pk: int) -> Response:
        site = _site(request, slug)
        instrument = (
            MarketInstrument.objects.for_org(_org(request)).filter(site=site, pk=pk).first()
        )
        if instrument is None:
            raise _not_found("instrument")
        market_instrument_delete(instrument=instrument)
        return Response(status=status.HTTP_204_NO_CONTENT)


class FactorsView(APIView):
    permission_classes = [IsOrgAdmin]
    throttle_classes = [ApiThrottle]

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
        params = FactorParams(data=request.query_params)
        if not params.is_valid():
            raise ApiError("The query parameters are not valid.", details=params.errors)
        p = params.validated_data
        qs = CarbonIntensity.objects.visible_to(_org(request))
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
        total = qs.count()
        page = qs[p["offset"] : p["offset"] + p["limit"]]
        return Response({"count": total, "results": FactorOut(page, many=True).data})

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
        try:
            factor = factor_create(organization=_org(request), data=data)
        except CarbonInputError as exc:
            raise ApiError(str(exc)) from None
        return Response(FactorOut(factor).data, status=status.HTTP_201_CREATED)


class FactorDetailView(APIView):
    permission_classes = [IsOrgAdmin]
    throttle_classes = [ApiThrottle]

    def _get(self, request: Request, pk: int) -> CarbonIntensity:
        factor = CarbonIntensity.objects.visible_to(_org(request)).filter(pk=pk).first()
        if factor is None:
            raise _not_found("factor")
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
