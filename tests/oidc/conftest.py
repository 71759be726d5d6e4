"""Fixtures of the sign-in tests: a real OpenID Connect provider on loopback (see README.md here)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.oidc.support import OidcProvider, node_missing, running_provider


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    """The test provider, one per module."""
    if node_missing():
        pytest.skip("no node")
    with running_provider() as running:
        yield running
