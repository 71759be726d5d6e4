"""The one scope checker: who may read KPIs."""

import pytest

from shared.auth.scopes import KPI_READ, PRIVILEGED_ROLES, Principal, has_kpi_access, require_kpi_access
from shared.errors import InsufficientScopeError


def principal(scopes: tuple[str, ...] = (), roles: tuple[str, ...] = ()) -> Principal:
    return Principal(subject="alice", scopes=frozenset(scopes), roles=frozenset(roles))


ACCESS_MATRIX = [
    pytest.param((KPI_READ,), (), True, id="kpi-read-scope"),
    pytest.param((KPI_READ, "other:write"), (), True, id="kpi-read-among-others"),
    pytest.param((), ("admin",), True, id="admin-role"),
    pytest.param((), ("exec",), True, id="exec-role"),
    pytest.param((), ("user", "exec"), True, id="exec-among-roles"),
    pytest.param((), ("user",), False, id="plain-user-role"),
    pytest.param((), (), False, id="no-scopes-no-roles"),
    pytest.param(("kpi:write", "kpi"), (), False, id="similar-but-wrong-scopes"),
    pytest.param(("admin",), (), False, id="admin-as-a-scope-is-not-a-role"),
    pytest.param((), ("kpi:read",), False, id="kpi-read-as-a-role-is-not-a-scope"),
    pytest.param((), ("Admin",), False, id="roles-are-case-sensitive"),
]


@pytest.mark.parametrize(("scopes", "roles", "allowed"), ACCESS_MATRIX)
def test_kpi_access_needs_kpi_read_or_a_privileged_role(
    scopes: tuple[str, ...], roles: tuple[str, ...], allowed: bool
) -> None:
    assert has_kpi_access(principal(scopes, roles)) is allowed


@pytest.mark.parametrize(("scopes", "roles", "allowed"), ACCESS_MATRIX)
def test_require_kpi_access_raises_exactly_when_access_is_denied(
    scopes: tuple[str, ...], roles: tuple[str, ...], allowed: bool
) -> None:
    if allowed:
        require_kpi_access(principal(scopes, roles))
        return
    with pytest.raises(InsufficientScopeError) as caught:
        require_kpi_access(principal(scopes, roles))
    assert caught.value.required_scope == KPI_READ
    assert caught.value.status == 403


def test_the_denial_message_names_the_scope_and_the_roles_that_would_do() -> None:
    with pytest.raises(InsufficientScopeError) as caught:
        require_kpi_access(principal(("other",), ("user",)))
    message = str(caught.value)
    assert KPI_READ in message
    for role in PRIVILEGED_ROLES:
        assert role in message


def test_a_local_principal_can_read_kpis() -> None:
    local = Principal.local("desktop-user")
    assert local.subject == "desktop-user"
    assert local.scopes == frozenset({KPI_READ})
    assert local.roles == frozenset()
    assert has_kpi_access(local)


def test_a_principal_is_immutable_and_hashable() -> None:
    p = principal((KPI_READ,))
    assert hash(p) == hash(principal((KPI_READ,)))
    with pytest.raises(AttributeError):
        setattr(p, "subject", "mallory")  # noqa: B010
