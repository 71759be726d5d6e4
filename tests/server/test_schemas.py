"""The stored output schemas (`server/tool_schemas.json`): what the SDK derives, byte for byte, and still enforced."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from server.schemas import STORED, derive, main, render, stored
from server.tools import build_mcp
from shared.operations import OPERATIONS


def test_stored_schemas_are_the_sdks_derivation_of_every_result_model() -> None:
    derived = derive()
    assert set(derived) == {operation.id for operation in OPERATIONS}
    assert STORED.read_text(encoding="utf-8") == render(derived), (
        "server/tool_schemas.json is stale: a result model changed; run `make schemas` and commit the file"
    )


def test_every_tool_publishes_its_stored_schema() -> None:
    # Results are not validated again on each call (the cached answer is the result model's own serialization):
    # tests/server/test_tools.py validates every tool's structuredContent against this schema and into the model.
    mcp = build_mcp(lambda: None)  # pyright: ignore[reportArgumentType] - no call reaches the runtime here
    published = stored()
    for operation in OPERATIONS:
        tool = mcp._tool_manager.get_tool(operation.id)
        assert tool is not None
        assert tool.output_schema == published[operation.id]
        assert tool.fn_metadata.output_model is None


def test_a_tool_without_a_stored_schema_gets_the_sdks_derivation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("server.tools.stored_schemas", dict)
    mcp = build_mcp(lambda: None)  # pyright: ignore[reportArgumentType]
    expected = stored()
    for operation in OPERATIONS:
        tool = mcp._tool_manager.get_tool(operation.id)
        assert tool is not None and tool.output_schema == expected[operation.id]


def test_an_unreadable_file_means_deriving_at_start_up(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "tool_schemas.json"
    broken.write_text("{not json", encoding="utf-8")
    monkeypatch.setattr("server.schemas.STORED", broken)
    stored.cache_clear()
    try:
        assert stored() == {}
        broken.unlink()
        stored.cache_clear()
        assert stored() == {}
    finally:
        stored.cache_clear()


def test_the_file_is_json_the_listing_can_send_as_is() -> None:
    loaded = json.loads(STORED.read_text(encoding="utf-8"))
    for schema in loaded.values():
        assert schema["type"] == "object" and "properties" in schema


@pytest.mark.anyio
async def test_make_schemas_rewrites_the_file(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "tool_schemas.json"
    monkeypatch.setattr("server.schemas.STORED", target)
    with anyio.fail_after(30):
        assert await anyio.to_thread.run_sync(main) == 0
    assert target.read_text(encoding="utf-8") == render(derive())
