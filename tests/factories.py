"""factory-boy factories for the objects tests arrange: organizations, members, teams, projects,
sites, hosts and GPUs.

Where the product creates an object through a service (``organization_create`` validates the
slug, ``membership_ensure`` makes the user, ``site_create`` opens the site's first PUE period,
``host_ensure`` is what ingest and the token command call), the factory calls that service, so
an arranged object is one the product could have made. Teams, projects and GPUs have no such
service outside the ingest, and are created as rows.

Import this module inside fixtures and tests, not at the top of a conftest: the agent's tests
run on Python 3.9 without Django.
"""

from __future__ import annotations

from typing import Any

import factory
from factory.django import DjangoModelFactory

from ecoreport.carbon.sites import site_create
from ecoreport.fleet.models import Gpu, Host, Site
from ecoreport.fleet.services import host_ensure
from ecoreport.organizations.models import Membership, Organization, Project, Team
from ecoreport.organizations.services import membership_ensure, organization_create


class OrganizationFactory(DjangoModelFactory):
    class Meta:
        model = Organization

    slug = factory.Sequence(lambda n: f"org-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.capitalize())

    @classmethod
    def _create(cls, model_class: type[Organization], *args: Any, **kwargs: Any) -> Organization:
        return organization_create(**kwargs)


class MembershipFactory(DjangoModelFactory):
    """``MembershipFactory(organization=org, username="mo", role="member")``; the user is
    created by the service, without a usable password."""

    class Meta:
        model = Membership

    organization = factory.SubFactory(OrganizationFactory)
    username = factory.Sequence(lambda n: f"user-{n}")
    role = "member"

    @classmethod
    def _create(cls, model_class: type[Membership], *args: Any, **kwargs: Any) -> Membership:
        return membership_ensure(**kwargs)


class TeamFactory(DjangoModelFactory):
    class Meta:
        model = Team

    organization = factory.SubFactory(OrganizationFactory)
    slug = factory.Sequence(lambda n: f"team-{n}")


class ProjectFactory(DjangoModelFactory):
    class Meta:
        model = Project

    organization = factory.SubFactory(OrganizationFactory)
    slug = factory.Sequence(lambda n: f"project-{n}")


class SiteFactory(DjangoModelFactory):
    class Meta:
        model = Site

    organization = factory.SubFactory(OrganizationFactory)
    slug = factory.Sequence(lambda n: f"site-{n}")
    name = factory.LazyAttribute(lambda o: o.slug)
    grid_zone = "FR"

    @classmethod
    def _create(cls, model_class: type[Site], *args: Any, **kwargs: Any) -> Site:
        return site_create(**kwargs)


class HostFactory(DjangoModelFactory):
    """``HostFactory(organization=org, hostname=..., site=..., default_team=...)``."""

    class Meta:
        model = Host

    organization = factory.SubFactory(OrganizationFactory)
    hostname = factory.Sequence(lambda n: f"gpu-node-{n:02d}")

    @classmethod
    def _create(cls, model_class: type[Host], *args: Any, **kwargs: Any) -> Host:
        return host_ensure(**kwargs)


class GpuFactory(DjangoModelFactory):
    class Meta:
        model = Gpu

    host = factory.SubFactory(HostFactory)
    organization = factory.SelfAttribute("host.organization")
    uuid = factory.Sequence(lambda n: f"GPU-{n}")


def energy_target(organization: Organization, **fields: Any) -> Any:
    """An organization-wide "energy at most" target through the service (a month, 5 kWh unless
    ``fields`` say otherwise)."""
    from ecoreport.policies.services import target_create

    spec: dict[str, Any] = {
        "name": "Monthly energy",
        "scope_kind": "org",
        "metric": "energy_kwh",
        "comparator": "at_most",
        "threshold": 5.0,
        "period": "month",
    }
    return target_create(organization=organization, **{**spec, **fields})
