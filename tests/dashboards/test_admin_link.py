"""The navigation's "Django admin" link: only for staff whom the admin lets do something."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

pytestmark = pytest.mark.django_db

LINK = '<a href="/admin/">Django admin</a>'


def _page(client, user) -> str:
    client.force_login(user)
    return client.get("/").content.decode()


def _staff(user, *, superuser: bool = False, perm: str | None = None):
    user.is_staff, user.is_superuser = True, superuser
    user.save()
    if perm:
        user.user_permissions.add(Permission.objects.get(codename=perm))
    return user


def test_organization_owner_and_member_see_no_django_admin_link(client, cast):
    for membership in (cast.owner, cast.member):
        page = _page(client, membership.user)
        assert "Acme AI" in page and LINK not in page
    # The owner's settings are linked instead.
    assert '<a href="/manage/"' in _page(client, cast.owner.user)


def test_staff_without_a_permission_sees_no_link_where_the_admin_would_show_nothing(client, cast):
    user = _staff(cast.owner.user)
    assert LINK not in _page(client, user)
    response = client.get("/admin/")
    assert response.status_code == 200
    assert "permission to view or edit anything" in response.content.decode()


@pytest.mark.parametrize(
    ("superuser", "perm"), [(True, None), (False, "view_host")], ids=["superuser", "view_host"]
)
def test_staff_who_can_use_the_admin_see_the_link_and_it_opens(client, cast, superuser, perm):
    user = _staff(cast.member.user, superuser=superuser, perm=perm)
    assert LINK in _page(client, user)
    response = client.get("/admin/")
    assert response.status_code == 200
    assert "permission to view or edit anything" not in response.content.decode()


def test_outsider_sees_no_link(client, cast):
    assert LINK not in _page(client, cast.outsider.user)
