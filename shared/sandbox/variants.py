"""Response variants: ways a real vendor's answer may differ from the sandbox's, applied per endpoint like faults.

A variant transforms the JSON body of a successful (2xx) answer of one endpoint (``faults.ENDPOINTS`` names;
wildcards as for faults). Variants apply in the order they were added; faults take precedence (a faulted request
is not transformed). Paths address parts of the body: dot-separated keys, plus list selectors ``[*]`` (every
element), ``[N]`` (one index) and ``[key=value]`` (elements whose ``key`` renders as ``value``), e.g.
``metrics[id=mrr].value``, ``items[*].store``, ``data[0].medianTransTimes``.

Kinds:

- ``drop`` / ``null`` / ``set`` / ``rename`` / ``empty``: remove the addressed key or list element, set it to
  null, set it to ``value`` (creating keys), rename the key to ``value``, or replace it with ``[]``;
  ``append``: add ``value`` at the end of the addressed list (e.g. an unknown overview metric).
- ``unknown_fields``: add an unknown key (``value`` or a default object) to every object in the body.
- ``rename_measure`` / ``drop_measure``: rename a chart measure (``measure`` → ``value``; summary keys follow) or
  remove it (its points go, later measures are renumbered, summary keys go).
- ``array_values``: serve chart ``values`` as rows ``[cohort, value_measure0, value_measure1, ...]`` (one row per
  period; ``value`` true: cohort in ms). Segmented charts are left as they are (rows carry no segment).
- ``extra_empty_page``: a list's last page links (``next_page``) to one more page, which is empty.
- ``drop_next_page``: remove ``next_page`` from every page (with ``page_size``: the later pages go missing).
- ``page_size``: the server cuts list pages to at most ``value`` items, whatever ``limit`` asked for.

``chart`` restricts a variant of ``revenuecat.chart`` / ``revenuecat.chart_options`` to one chart name.

Long because it is a small path language plus one transform per kind of vendor variance; each is a few lines.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from typing import Literal, cast
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .faults import ENDPOINTS, WILDCARDS

VariantKind = Literal[
    "drop",
    "null",
    "set",
    "rename",
    "empty",
    "append",
    "unknown_fields",
    "rename_measure",
    "drop_measure",
    "array_values",
    "extra_empty_page",
    "drop_next_page",
    "page_size",
]
VARIANT_KINDS: tuple[VariantKind, ...] = (
    "drop",
    "null",
    "set",
    "rename",
    "empty",
    "append",
    "unknown_fields",
    "rename_measure",
    "drop_measure",
    "array_values",
    "extra_empty_page",
    "drop_next_page",
    "page_size",
)
_PATH_KINDS = ("drop", "null", "set", "rename", "empty", "append")
UNKNOWN_FIELD = "x_sandbox_unknown"
_UNKNOWN_VALUE: object = {"object": "sandbox_unknown", "flags": ["new"], "count": 1}
_TOKEN = re.compile(r"\.?([^.\[\]]+)|\[([^\]]*)\]")

Json = object
Token = (
    tuple[Literal["key"], str]
    | tuple[Literal["all"], None]
    | tuple[Literal["index"], int]
    | tuple[Literal["where"], tuple[str, str]]
)


@dataclass(frozen=True, slots=True)
class Variant:
    """One transform of an endpoint's successful answers (see the module docstring for the kinds)."""

    kind: VariantKind
    path: str = ""
    value: Json = None
    measure: str | None = None
    chart: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in VARIANT_KINDS:
            raise ValueError(f"unknown variant kind {self.kind!r}; expected one of {VARIANT_KINDS}")
        if self.kind in _PATH_KINDS:
            parse_path(self.path)
        if self.kind == "rename" and not isinstance(self.value, str):
            raise ValueError("rename needs the new key name as value")
        if self.kind in ("rename_measure", "drop_measure") and not self.measure:
            raise ValueError(f"{self.kind} needs the measure's display name")
        if self.kind == "rename_measure" and not isinstance(self.value, str):
            raise ValueError("rename_measure needs the new display name as value")
        if self.kind == "page_size" and (isinstance(self.value, bool) or not isinstance(self.value, int)):
            raise ValueError("page_size needs a positive integer value")
        if self.kind == "page_size" and cast("int", self.value) < 1:
            raise ValueError("page_size needs a positive integer value")


# ---- constructors (the Python API for tests) ------------------------------------------------------------


def drop_field(path: str, *, chart: str | None = None) -> Variant:
    return Variant("drop", path, chart=chart)


def null_field(path: str, *, chart: str | None = None) -> Variant:
    return Variant("null", path, chart=chart)


def set_field(path: str, value: Json, *, chart: str | None = None) -> Variant:
    return Variant("set", path, value, chart=chart)


def rename_field(path: str, new_name: str, *, chart: str | None = None) -> Variant:
    return Variant("rename", path, new_name, chart=chart)


def empty_list(path: str, *, chart: str | None = None) -> Variant:
    return Variant("empty", path, chart=chart)


def append_item(path: str, value: Json, *, chart: str | None = None) -> Variant:
    return Variant("append", path, value, chart=chart)


def unknown_fields(value: Json = None) -> Variant:
    return Variant("unknown_fields", value=value)


def rename_measure(chart: str, measure: str, new_name: str) -> Variant:
    return Variant("rename_measure", value=new_name, measure=measure, chart=chart)


def drop_measure(chart: str, measure: str) -> Variant:
    return Variant("drop_measure", measure=measure, chart=chart)


def array_values(chart: str | None = None, *, cohort_ms: bool = False) -> Variant:
    return Variant("array_values", value=cohort_ms, chart=chart)


def extra_empty_page() -> Variant:
    return Variant("extra_empty_page")


def drop_next_page() -> Variant:
    return Variant("drop_next_page")


def page_size(size: int) -> Variant:
    return Variant("page_size", value=size)


def variant_from_json(body: dict[str, object]) -> Variant:
    """A Variant from the control API's JSON (``endpoint`` is ignored here)."""
    known = {"endpoint", "kind", "path", "value", "measure", "chart"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise ValueError(f"unknown variant fields: {unknown}")
    kind, path = body.get("kind"), body.get("path", "")
    measure, chart = body.get("measure"), body.get("chart")
    if not isinstance(kind, str) or kind not in VARIANT_KINDS:
        raise ValueError(f"kind must be one of {VARIANT_KINDS}")
    if not isinstance(path, str):
        raise TypeError("path must be a string")
    for name, item in (("measure", measure), ("chart", chart)):
        if item is not None and not isinstance(item, str):
            raise TypeError(f"{name} must be a string or null")
    return Variant(
        kind,
        path,
        body.get("value"),
        cast("str | None", measure),
        cast("str | None", chart),
    )


# ---- registry ---------------------------------------------------------------------------------------------


class VariantRegistry:
    """Thread-safe list of (endpoint, variant) in the order added."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._variants: list[tuple[str, Variant]] = []

    def add(self, endpoint: str, variant: Variant) -> None:
        if endpoint not in ENDPOINTS and endpoint not in WILDCARDS:
            raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {ENDPOINTS + WILDCARDS}")
        with self._lock:
            self._variants.append((endpoint, variant))

    def clear(self) -> None:
        with self._lock:
            self._variants.clear()

    def active(self) -> list[tuple[str, Variant]]:
        with self._lock:
            return list(self._variants)

    def for_request(self, endpoint: str, request: Request) -> list[Variant]:
        """The variants that apply to this request of ``endpoint``."""
        vendor = endpoint.split(".", 1)[0] + ".*"
        chart = request.path_params.get("chart_name")
        with self._lock:
            return [
                v
                for key, v in self._variants
                if key in (endpoint, vendor, "*") and (v.chart is None or v.chart == chart)
            ]

    def page_size(self, endpoint: str, request: Request) -> int | None:
        """The smallest ``page_size`` variant for this request, if any."""
        sizes = [cast("int", v.value) for v in self.for_request(endpoint, request) if v.kind == "page_size"]
        return min(sizes) if sizes else None


# ---- applying ---------------------------------------------------------------------------------------------


def parse_path(path: str) -> list[Token]:
    """Tokens of a variant path; ValueError when it is empty or malformed."""
    tokens: list[Token] = []
    position = 0
    while position < len(path):
        match = _TOKEN.match(path, position)
        if match is None or match.end() == position:
            raise ValueError(f"malformed variant path {path!r} at {position}")
        key, selector = match.group(1), match.group(2)
        if key is not None:
            tokens.append(("key", key))
        elif selector == "*":
            tokens.append(("all", None))
        elif selector is not None and selector.isdigit():
            tokens.append(("index", int(selector)))
        elif selector is not None and "=" in selector:
            name, _, wanted = selector.partition("=")
            tokens.append(("where", (name, wanted)))
        else:
            raise ValueError(f"malformed selector [{selector}] in variant path {path!r}")
        position = match.end()
    if not tokens:
        raise ValueError("variant path must not be empty")
    return tokens


def _render(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _step(node: object, token: Token) -> list[tuple[object, str | int]]:
    """(container, key or index) pairs that ``token`` addresses inside ``node`` (missing keys included)."""
    if token[0] == "key":
        return [(node, token[1])] if isinstance(node, dict) else []
    if not isinstance(node, list):
        return []
    items = cast("list[object]", node)
    if token[0] == "all":
        return [(items, i) for i in range(len(items))]
    if token[0] == "index":
        return [(items, token[1])] if token[1] < len(items) else []
    name, wanted = token[1]
    return [
        (items, i)
        for i, item in enumerate(items)
        if isinstance(item, dict) and name in item and _render(cast("dict[str, object]", item)[name]) == wanted
    ]


def _get(container: object, key: str | int) -> object:
    if isinstance(container, dict):
        return cast("dict[str, object]", container).get(cast("str", key))
    return cast("list[object]", container)[cast("int", key)]


def _targets(body: object, tokens: list[Token]) -> list[tuple[object, str | int]]:
    nodes: list[object] = [body]
    for token in tokens[:-1]:
        nodes = [_get(c, k) for node in nodes for c, k in _step(node, token)]
    return [pair for node in nodes for pair in _step(node, tokens[-1])]


def _apply_path(body: object, variant: Variant) -> None:
    targets = _targets(body, parse_path(variant.path))
    removals: list[tuple[list[object], int]] = []
    for container, key in targets:
        if isinstance(container, dict):
            obj = cast("dict[str, object]", container)
            name = cast("str", key)
            if variant.kind == "drop":
                obj.pop(name, None)
            elif variant.kind == "rename":
                if name in obj:
                    renamed = {(cast("str", variant.value) if k == name else k): v for k, v in obj.items()}
                    obj.clear()
                    obj.update(renamed)
            elif variant.kind == "null" and name in obj:
                obj[name] = None
            elif variant.kind == "set":
                obj[name] = variant.value
            elif variant.kind == "empty" and name in obj:
                obj[name] = []
            elif variant.kind == "append" and isinstance(obj.get(name), list):
                cast("list[object]", obj[name]).append(variant.value)
        else:
            items = cast("list[object]", container)
            index = cast("int", key)
            if variant.kind == "drop":
                removals.append((items, index))
            elif variant.kind == "null":
                items[index] = None
            elif variant.kind == "set":
                items[index] = variant.value
            elif variant.kind == "empty":
                items[index] = []
            elif variant.kind == "append" and isinstance(items[index], list):
                cast("list[object]", items[index]).append(variant.value)
    for items, index in sorted(removals, key=lambda r: r[1], reverse=True):
        del items[index]


def _add_unknown(node: object, value: object) -> None:
    if isinstance(node, dict):
        obj = cast("dict[str, object]", node)
        for child in list(obj.values()):
            _add_unknown(child, value)
        obj[UNKNOWN_FIELD] = value
    elif isinstance(node, list):
        for child in cast("list[object]", node):
            _add_unknown(child, value)


def _summary_tables(body: dict[str, object]) -> list[dict[str, object]]:
    """The summary's per-measure dicts (``summary.total``/``average``, nested per segment or not)."""
    summary = body.get("summary")
    tables: list[dict[str, object]] = []
    if not isinstance(summary, dict):
        return tables
    for table in cast("dict[str, object]", summary).values():
        if isinstance(table, dict):
            typed = cast("dict[str, object]", table)
            nested = [cast("dict[str, object]", v) for v in typed.values() if isinstance(v, dict)]
            tables.extend(nested or [typed])
    return tables


def _measure_index(body: dict[str, object], name: str) -> int | None:
    measures = body.get("measures")
    if not isinstance(measures, list):
        return None
    for index, item in enumerate(cast("list[object]", measures)):
        if isinstance(item, dict) and cast("dict[str, object]", item).get("display_name") == name:
            return index
    return None


def _rename_measure(body: dict[str, object], old: str, new: str) -> None:
    index = _measure_index(body, old)
    if index is None:
        return
    cast("list[dict[str, object]]", body["measures"])[index]["display_name"] = new
    for table in _summary_tables(body):
        if old in table:
            renamed = {(new if k == old else k): v for k, v in table.items()}
            table.clear()
            table.update(renamed)


def _drop_measure(body: dict[str, object], name: str) -> None:
    index = _measure_index(body, name)
    if index is None:
        return
    del cast("list[object]", body["measures"])[index]
    values = body.get("values")
    if isinstance(values, list):
        kept: list[object] = []
        for point in cast("list[object]", values):
            typed = _as_dict(point)
            if typed is not None:
                measure = typed.get("measure", 0)
                if measure == index:
                    continue
                if isinstance(measure, int) and measure > index:
                    typed["measure"] = measure - 1
            kept.append(point)
        body["values"] = kept
    for table in _summary_tables(body):
        table.pop(name, None)


def _array_values(body: dict[str, object], cohort_ms: bool) -> None:
    values, measures = _as_list(body.get("values")), _as_list(body.get("measures"))
    if values is None or measures is None:
        return
    points = [d for d in map(_as_dict, values) if d is not None]
    if len(points) != len(values) or any(p.get("segment") is not None for p in points):
        return
    width = len(measures)
    rows: dict[int, list[object]] = {}
    for point in points:
        cohort, measure = point.get("cohort"), point.get("measure", 0)
        if not isinstance(cohort, int) or not isinstance(measure, int) or not 0 <= measure < width:
            continue
        row = rows.setdefault(cohort, [cohort * 1000 if cohort_ms else cohort, *([None] * width)])
        row[1 + measure] = point.get("value")
    body["values"] = [rows[c] for c in sorted(rows)]


def _extra_empty_page(body: dict[str, object], request: Request) -> None:
    items = _as_list(body.get("items"))
    if body.get("next_page") is not None or not items:
        return
    last = _as_dict(items[-1])
    if last is None:
        return
    last_id = str(last.get("id"))
    body["next_page"] = f"{request.url.path}?starting_after={quote(last_id, safe='')}&limit={len(items)}"


def _as_dict(value: object) -> dict[str, object] | None:
    return cast("dict[str, object]", value) if isinstance(value, dict) else None


def _as_list(value: object) -> list[object] | None:
    return cast("list[object]", value) if isinstance(value, list) else None


def transform(body: object, variants: list[Variant], request: Request) -> object:
    """Apply ``variants`` in order to a parsed JSON body (mutated in place; also returned)."""
    obj = _as_dict(body)
    for variant in variants:
        if variant.kind in _PATH_KINDS:
            _apply_path(body, variant)
        elif variant.kind == "unknown_fields":
            _add_unknown(body, _UNKNOWN_VALUE if variant.value is None else variant.value)
        elif obj is None:
            continue
        elif variant.kind == "rename_measure":
            _rename_measure(obj, variant.measure or "", cast("str", variant.value))
        elif variant.kind == "drop_measure":
            _drop_measure(obj, variant.measure or "")
        elif variant.kind == "array_values":
            _array_values(obj, variant.value is True)
        elif variant.kind == "extra_empty_page":
            _extra_empty_page(obj, request)
        elif variant.kind == "drop_next_page":
            obj.pop("next_page", None)
    return body


def apply_variants(variants: list[Variant], request: Request, response: Response) -> Response:
    """``response`` transformed by ``variants`` when it is a 2xx JSON answer, else unchanged."""
    shaping = [v for v in variants if v.kind != "page_size"]
    if not shaping or not 200 <= response.status_code < 300 or not isinstance(response, JSONResponse):
        return response
    body: object = json.loads(bytes(response.body))
    transformed = transform(body, shaping, request)
    headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")}
    return JSONResponse(transformed, status_code=response.status_code, headers=headers)
