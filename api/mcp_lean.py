"""The lean path of `/mcp`: single stateless JSON-response `tools/call` and `tools/list` without the SDK's per-request
session machinery, the same answers byte for byte.

In stateless JSON-response mode the SDK serves every POST of the handshake era (no `MCP-Protocol-Version` header,
or one of the `initialize` versions) by building a transport, two pairs of memory object streams, a JSON-RPC
dispatcher and a server task in the manager's task group, only to run one handler and tear it all down: about half
of the server CPU of a warm `tools/call` (the profile is in docs/benchmarks.md). This app sits between the bearer
guard (`McpGuard`, which stays in front of both paths) and the SDK's ASGI app, and for the two methods an assistant
calls all the time it drives the same kernel directly:

- the SDK's own checks, in the SDK's order, decide whether a request is eligible: the body size limit, the
  transport security check (Content-Type, Host against DNS rebinding, Origin), the Accept header of JSON-response
  mode, the transport's Content-Type check, the JSON parse and the JSON-RPC envelope validation
  (`jsonrpc_message_adapter`); the header checks read only Content-Type, Host, Origin and Accept, so a combination
  that passed is remembered. Anything that fails one of them, and anything that is not a single `tools/call` or
  `tools/list` request (initialize, ping, resources, prompts, completion, notifications, responses, batches, GET,
  DELETE, bad JSON, the 2026-07-28 per-request envelope, which the SDK already serves in the ASGI task), goes to the
  SDK unchanged, with the body replayed, so its answer is the SDK's own;
- an eligible request runs through `mcp.server.runner.serve_one`, the SDK's single-exchange driver: the same
  `ServerRunner` (params validation, the server middleware chain with the allowlist's unknown-tool error and the
  lean listing, the tool manager's `Tool.run` with its argument validation, `isError` results and
  `structuredContent`, the per-version result sieve), on a born-ready `Connection` for the header's version in the
  state the stateless transport builds it (`born_ready`); a raised error becomes `ErrorData` by the dispatcher's own
  mapping;
- the answer is framed as the transport frames it (`JSONRPCResponse`/`JSONRPCError`, `model_dump_json(by_alias=True,
  exclude_unset=True)`, `Content-Type: application/json`).

`tools/list` without params is answered from bytes computed once per protocol version (a server's tools are fixed
once built, and the allowlist decides which exist): the first listing runs through the kernel like any other and is
kept only if framing the cached bytes reproduces the kernel's answer exactly. `tests/server/test_mcp_lean.py` sends
a matrix of requests through this path and through the plain SDK (`KPI_MCP_LEAN=false`) and compares status,
headers and bytes.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import pydantic_core
from mcp.server.connection import Connection
from mcp.server.lowlevel.server import Server
from mcp.server.runner import ServerRunner, aclose_shielded
from mcp.server.streamable_http import check_accept_headers
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from mcp.shared.dispatcher import CallOptions, Outbound
from mcp.shared.exceptions import NoBackChannelError
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp.shared.jsonrpc_dispatcher import handler_exception_to_error_data
from mcp.shared.message import ServerMessageMetadata
from mcp.shared.transport_context import TransportContext
from mcp_types import (
    DEFAULT_NEGOTIATED_VERSION,
    ErrorData,
    JSONRPCError,
    JSONRPCRequest,
    JSONRPCResponse,
    RequestId,
    jsonrpc_message_adapter,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("loop_kpi.mcp")

LEAN_METHODS = frozenset({"tools/call", "tools/list"})
"""The methods served here; every other one goes to the SDK."""

_VERSION_HEADER = MCP_PROTOCOL_VERSION_HEADER.encode("ascii")
_CONTENT_LENGTH = b"content-length"
_JSON = "application/json"
_PASSING_HEADERS_KEPT = 1024


def _content_type_is_json(request: Request) -> bool:
    """The streamable HTTP transport's own Content-Type check (`_check_content_type`, private in the SDK)."""
    content_type = request.headers.get("content-type", "")
    return any(part.strip() == _JSON for part in content_type.split(";")[0].split(","))


@dataclass
class _StatelessDispatchContext:
    """The dispatch context the stateless JSON-response transport gives a request (`DispatchContext`, structurally):
    no back-channel (a server-initiated request raises `NoBackChannelError`), and request-scoped notifications,
    progress included, have no wire in JSON-response mode, so they are dropped there as here."""

    transport: TransportContext
    request_id: RequestId
    message_metadata: ServerMessageMetadata
    _cancel_requested: anyio.Event | None = None

    @property
    def cancel_requested(self) -> anyio.Event:
        """Never set here (the request is answered before anything could cancel it); made when first asked for."""
        if self._cancel_requested is None:
            self._cancel_requested = anyio.Event()
        return self._cancel_requested

    @property
    def can_send_request(self) -> bool:
        return False

    async def send_raw_request(
        self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None
    ) -> dict[str, Any]:
        raise NoBackChannelError(method)

    async def notify(self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None) -> None:
        logger.debug("dropped %s: no response stream in JSON-response mode", method)

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        return None


_TRANSPORT = TransportContext(kind="streamable-http", can_send_request=False)


async def _send_json(send: Send, body: bytes) -> None:
    """A reply framed as the transport frames it (`_create_json_response`: a starlette `Response` with status 200
    and `Content-Type: application/json`, which adds the length), sent as that response sends itself."""
    headers = [(b"content-type", _JSON.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class LeanMcp:
    """ASGI app answering single stateless JSON `tools/call` and `tools/list` requests; the rest goes to `sdk`."""

    def __init__(
        self,
        sdk: ASGIApp,
        manager: StreamableHTTPSessionManager,
        security: TransportSecuritySettings | None,
    ) -> None:
        if not (manager.stateless and manager.json_response):
            raise ValueError("the lean MCP path serves a stateless JSON-response session manager only")
        self.sdk = sdk
        self.manager = manager
        self.server: Server[Any] = manager.app
        self.security = TransportSecurityMiddleware(security)
        self.listings: dict[str, bytes] = {}
        """Serialized `tools/list` results per protocol version."""
        self.answered = 0
        """Requests answered here rather than by the SDK (tests read it)."""
        self.no_channel = Connection.from_envelope(DEFAULT_NEGOTIATED_VERSION, None, None).outbound
        """The SDK's no-back-channel outbound of a born-ready connection."""
        self.passing_headers: set[tuple[str | None, ...]] = set()
        """Content-Type, Host, Origin and Accept values that passed the SDK's header checks."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.sdk(scope, receive, send)
            return
        version: str | None = None
        declared: int | None = None
        for name, value in scope["headers"]:
            if name == _VERSION_HEADER and version is None:  # the manager reads the first one
                version = value.decode("latin-1")
            elif name == _CONTENT_LENGTH and declared is None:
                declared = int(value) if value.isdigit() else None
        limit = self.manager.max_request_body_size
        if (version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS) or (
            declared is not None and declared > limit
        ):
            await self.sdk(scope, receive, send)
            return
        body = await _read_body(receive, limit)
        if not body.complete or len(body.data) > limit:
            await self.sdk(scope, body.replay(receive), send)
            return
        request = Request(scope)
        message = await self._eligible(request, body.data)
        if message is None:
            await self.sdk(scope, body.replay(receive), send)
            return
        answer = await self._answer(request, message, version or DEFAULT_NEGOTIATED_VERSION)
        self.answered += 1
        await _send_json(send, answer)

    async def _eligible(self, request: Request, body: bytes) -> JSONRPCRequest | None:
        """The request, when the SDK would serve it as a single stateless `tools/call` or `tools/list` (every check
        passed); None otherwise."""
        if not await self._headers_pass(request):
            return None
        try:
            raw = pydantic_core.from_json(body)
        except ValueError:
            return None
        if not isinstance(raw, dict) or raw.get("method") not in LEAN_METHODS:  # pyright: ignore[reportUnknownMemberType]
            return None
        try:
            message = jsonrpc_message_adapter.validate_python(raw, by_name=False)
        except ValidationError:
            return None
        return message if isinstance(message, JSONRPCRequest) else None

    async def _headers_pass(self, request: Request) -> bool:
        """The SDK's header checks (transport security, Accept, Content-Type), which read only these four headers:
        a combination that passed once passes again, so it is remembered (a few per client) and not re-checked."""
        headers = request.headers
        key = (headers.get("content-type"), headers.get("host"), headers.get("origin"), headers.get("accept"))
        if key in self.passing_headers:
            return True
        if await self.security.validate_request(request, is_post=True) is not None:
            return False
        has_json, _ = check_accept_headers(request)
        if not has_json or not _content_type_is_json(request):
            return False
        if len(self.passing_headers) >= _PASSING_HEADERS_KEPT:
            self.passing_headers.clear()
        self.passing_headers.add(key)
        return True

    async def _answer(self, request: Request, message: JSONRPCRequest, version: str) -> bytes:
        cacheable = message.method == "tools/list" and not message.params
        if cacheable and (listing := self.listings.get(version)) is not None:
            return _frame(message.id, listing)
        dctx = _StatelessDispatchContext(
            transport=_TRANSPORT,
            request_id=message.id,
            message_metadata=ServerMessageMetadata(request_context=request, can_send_request=False),
        )
        connection = born_ready(self.no_channel, version)
        runner = ServerRunner(self.server, connection, self._lifespan_state())
        try:  # `serve_one`, the SDK's single-exchange driver, step by step
            result = await runner.on_request(dctx, message.method, message.params)
        except Exception as exc:  # the dispatcher's exception-to-wire boundary, as the SDK's stateless path has it
            error = handler_exception_to_error_data(exc)
            if error is None:
                logger.exception("handler for %r raised", message.method)
                error = ErrorData(code=0, message=str(exc))
            return (
                JSONRPCError(jsonrpc="2.0", id=message.id, error=error)
                .model_dump_json(by_alias=True, exclude_unset=True)
                .encode()
            )
        finally:
            if not _nothing_to_close(connection):
                await aclose_shielded(connection)
        serialized = pydantic_core.to_json(result)
        if cacheable:
            # Kept only when framing the bytes gives exactly what the transport's own serialization gives.
            reference = JSONRPCResponse(jsonrpc="2.0", id=message.id, result=result)
            if _frame(message.id, serialized) == reference.model_dump_json(by_alias=True, exclude_unset=True).encode():
                self.listings[version] = serialized
        return _frame(message.id, serialized)

    def _lifespan_state(self) -> Any:
        # The state the manager entered the server's lifespan with (once, in `run()`), as it hands it to every
        # stateless request; the SDK keeps it on a private attribute.
        return getattr(self.manager, "_lifespan_state", None)


def born_ready(no_channel: Outbound, version: str) -> Connection:
    """The connection the stateless transport builds, `Connection.from_envelope(version, None, None)`, without the
    factory's two failed validations of the absent client info and capabilities (a raised pydantic error each, a
    twentieth of a warm `tools/call`): no back-channel, no client parameters, initialized. A test compares the two."""
    connection = Connection(no_channel, protocol_version=version)
    connection.initialized.set()
    return connection


def _nothing_to_close(connection: Connection) -> bool:
    """Whether the request left nothing on the connection's exit stack (the usual case): then the SDK's shielded,
    time-bounded close has nothing to run. Unsure (CPython's private attribute gone) means there is."""
    callbacks = getattr(connection.exit_stack, "_exit_callbacks", None)
    return callbacks is not None and not callbacks


def _frame(request_id: RequestId, result: bytes) -> bytes:
    """A `JSONRPCResponse` around an already serialized result, as `model_dump_json` writes it."""
    return b'{"jsonrpc":"2.0","id":' + pydantic_core.to_json(request_id) + b',"result":' + result + b"}"


@dataclass
class _Body:
    """What was read of a request body: the bytes, whether they are all of it, and the message that interrupted
    it (a disconnect), if any."""

    data: bytes
    received: bool
    complete: bool
    trailing: Message | None

    def replay(self, receive: Receive) -> Receive:
        """A `receive` giving the SDK what was read, then whatever follows (as `RequestBodyLimitMiddleware` replays
        it to the transport)."""
        queued: deque[Message] = deque()
        if self.received:
            queued.append({"type": "http.request", "body": self.data, "more_body": not self.complete})
        if self.trailing is not None:
            queued.append(self.trailing)

        async def replay() -> Message:
            return queued.popleft() if queued else await receive()

        return replay


async def _read_body(receive: Receive, limit: int) -> _Body:
    """The body, read until it ends, is interrupted or passes `limit`."""
    chunks: list[bytes] = []
    size = 0
    received = False
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return _Body(b"".join(chunks), received, False, message)
        received = True
        chunk: bytes = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        more = bool(message.get("more_body", False))
        if not more or size > limit:
            return _Body(b"".join(chunks), received, not more, None)
