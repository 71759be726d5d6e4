"""The README and the guides: every relative link resolves, the onboarding facts a newcomer needs are stated, and
the going-live glossary covers every KPI the service returns."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUIDES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("guide", GUIDES, ids=[p.name for p in GUIDES])
def test_every_relative_link_in_the_guides_resolves(guide: Path) -> None:
    for target in _LINK.findall(guide.read_text(encoding="utf-8")):
        if "://" not in target:
            assert (guide.parent / target).exists(), f"{guide.name}: {target}"


def test_the_readme_states_what_the_first_ten_minutes_need() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")

    assert "make demo PORT=" in readme
    assert "loop-kpi token --sub you --ttl 2592000" in readme and "30 days" in readme
    assert "Node >= 22.19" in readme and "Node 20" in readme
    assert "(docs/going-live.md)" in readme and "(CHANGELOG.md)" in readme


def test_the_going_live_guide_covers_credentials_auth_monitoring_and_every_status() -> None:
    guide = (ROOT / "docs" / "going-live.md").read_text(encoding="utf-8")

    for fact in (
        "analytics.eu.amplitude.com",
        "AMPLITUDE_SECRET_KEY",
        "Charts & Metrics: read",
        "Customer Information: read",
        "KPI_JWKS_URL",
        "secrets.token_urlsafe(48)",
        "--ttl 2592000",
        "/readyz",
        "loop_kpi.audit",
    ):
        assert fact in guide, fact
    for status in ("**401**", "**403**", "**502**", "**503**", "**504**"):
        assert status in guide, status
    assert "upstream-apis.md" not in guide  # cite the vendors' public docs, not the internal handbook


def test_the_glossary_defines_every_kpi() -> None:
    guide = (ROOT / "docs" / "going-live.md").read_text(encoding="utf-8")
    glossary = guide.split("## 6. Glossary", 1)[1]

    for kpi in (
        "DAU",
        "MAU",
        "New users",
        "Funnel conversion",
        "MRR",
        "Revenue (28 d)",
        "Active subscriptions",
        "Active trials",
        "New customers (28 d)",
        "Active users (28 d)",
        "Trial conversion",
        "Refund rate",
        "User journey",
    ):
        assert f"| **{kpi}** |" in glossary, kpi
