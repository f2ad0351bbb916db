"""One server interceptor: authentication, error mapping, kept replies, commit numbers
and access logging.

It wraps each method handler once: the wrapper authenticates the bearer key
(except for health checks and reflection), refuses a request that lacks a REQUIRED
field (`required_fields`), exposes the principal to the servicer
through `current_principal()`, turns domain errors into `google.rpc.Status`, and
logs one line per call (never the key; `OK (kept)` for a kept reply). For the
read-only `KEPT_METHODS` it first looks for the reply kept for the same method, key
and request bytes (`storage.reply_cache`: valid until the next commit to the database),
and keeps the serialized reply of each successful call. With metrics on
(`api/metrics.py`) it counts each call, by method and status code, with its latency.

The access line carries the method, status code, duration, principal, peer and a
request id (the caller's `x-request-id` metadata, else one made up); `logs.py` writes
it as text or as one JSON object.

Read-your-writes across replicas (PostgreSQL, `storage.commits`): a unary call that
committed answers the number of its commit as trailing metadata `x-registry-commit`
(with an error too, if it committed before failing). A call that carries
`x-registry-after-commit: N` is answered with state at least that new: a replica that
has not heard of commit N yet answers it from the database (not from kept replies,
and checking the key there rather than in its key cache).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import DecodeError
from sqlalchemy.exc import IntegrityError

from ..domain.errors import (
    Aborted,
    DeadlineExceeded,
    InvalidArgument,
    RegistryError,
    Unauthenticated,
)
from ..service.auth import Authenticator
from ..service.context import Principal
from ..storage import commits
from ..storage.reply_cache import ReplyCache
from .required_fields import check_required
from .status import to_grpc_status

if TYPE_CHECKING:
    from .metrics import CallMetrics, CallObserver

log = logging.getLogger("registry.access")

PUBLIC_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)

_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("principal")


# Reads whose reply depends only on the caller, the request and the database: no clock,
# no side effect. A reply is kept per API key, so a key sees only what it was shown.
KEPT_METHODS = frozenset(
    {
        "/registry.v1.ArtifactService/ResolvePath",
        "/registry.v1.CollectionService/GetCollectionVersion",
        "/registry.v1.CollectionService/ListCollectionVersions",
        "/registry.v1.RegistryService/GetEffectiveRole",
    }
)


# Trailing metadata of a call that committed: the number of its (last) commit.
COMMIT_METADATA = "x-registry-commit"
# Request metadata: the commit number the answer must reflect, as a client was told it.
AFTER_COMMIT_METADATA = "x-registry-after-commit"
_MAX_COMMIT_DIGITS = 19  # a bigint
# Request metadata: the caller's id for the call, written in its access line.
REQUEST_ID_METADATA = "x-request-id"
_MAX_REQUEST_ID = 64


def current_principal() -> Principal:
    return _principal.get()


def is_public(method: str) -> bool:
    return method.startswith(PUBLIC_PREFIXES)


def call_metadata(metadata: Any) -> tuple[str, int]:
    """(the bearer key, the commit number the call asks for: 0 for none)."""
    token: str | None = None
    after_commit = 0
    for key, value in metadata or ():
        if key == "authorization":
            if token is None:
                token = _bearer(str(value))
        elif key == AFTER_COMMIT_METADATA:
            after_commit = max(after_commit, _commit_number(str(value)))
    if token is None:
        raise Unauthenticated(
            "missing 'authorization: Bearer <api key>' metadata", reason="MISSING_API_KEY"
        )
    return token, after_commit


def bearer_token(metadata: Any) -> str:
    return call_metadata(metadata)[0]


def _bearer(value: str) -> str:
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(
            "authorization must be 'Bearer <api key>'", reason="INVALID_AUTHORIZATION"
        )
    return token.strip()


def _commit_number(value: str) -> int:
    if not value.isdigit() or len(value) > _MAX_COMMIT_DIGITS:
        raise InvalidArgument(
            AFTER_COMMIT_METADATA, f"must be a commit number as {COMMIT_METADATA} gave it"
        )
    return int(value)


def request_id(metadata: Any) -> str:
    """The caller's `x-request-id` (printable, at most 64 characters), else a new one."""
    for key, value in metadata or ():
        if key == REQUEST_ID_METADATA:
            text = str(value)[:_MAX_REQUEST_ID]
            if text.isprintable() and text.strip():
                return text
    return uuid.uuid4().hex[:16]


def status_name(err: Exception) -> str:
    """The status code a failed call answers (`RegistryInterceptor._fail`)."""
    if isinstance(err, IntegrityError):
        return "ABORTED"
    return err.code if isinstance(err, RegistryError) else "INTERNAL"


async def authenticate(
    auth: Authenticator, run: Callable[..., Awaitable[Any]], token: str, after_commit: int = 0
) -> Principal:
    """The key's principal: from the key cache, else checked by `run` (off the event loop)."""
    principal = auth.cached(token, after_commit)
    if principal is None:
        principal = await run(auth.authenticate, token, after_commit)
    return principal


def _commit_metadata(note: commits.CommitNote | None) -> tuple[tuple[str, str], ...]:
    return ((COMMIT_METADATA, str(note.seq)),) if note is not None and note.seq else ()


class RegistryInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(
        self,
        authenticator: Authenticator,
        run: Callable[..., Awaitable[Any]],
        answers: ReplyCache | None = None,
        committed: Callable[[int], None] | None = None,
        metrics: CallMetrics | None = None,
    ) -> None:
        self.auth = authenticator
        self.run = run  # runs a blocking function off the event loop
        self.answers = answers  # None: nothing is kept
        # told of each commit a call made, before the call is answered (`App.committed`)
        self.committed = committed
        self.metrics = metrics  # None: calls are not counted
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = details.method
        cached = self._wrapped.get(method)
        if cached is not None:
            return cached
        handler = await continuation(details)
        if handler is None:
            return handler
        if is_public(method):
            self._wrapped[method] = handler
            return handler
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = wrapped
        return wrapped

    def _settle(self, context: grpc.aio.ServicerContext, note: commits.CommitNote | None) -> None:
        """After the handler: the call's commit, if any, is known here and told."""
        if note is not None and note.seq:
            if self.committed is not None:
                self.committed(note.seq)
            context.set_trailing_metadata(_commit_metadata(note))

    async def _fail(
        self,
        context: grpc.aio.ServicerContext,
        method: str,
        err: Exception,
        note: commits.CommitNote | None = None,
    ) -> None:
        if note is not None and note.seq and self.committed is not None:
            self.committed(note.seq)
        if isinstance(err, IntegrityError):
            log.info("integrity conflict in %s: %s", method, err.orig)
            err = Aborted("the change conflicted with a concurrent one; retry", reason="CONFLICT")
        if not isinstance(err, RegistryError):
            log.exception("unexpected error in %s", method, exc_info=err)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error", _commit_metadata(note))
            return
        status = to_grpc_status(err)
        await context.abort(
            status.code, status.details, (*status.trailing_metadata, *_commit_metadata(note))
        )

    def _finished(
        self,
        context: Any,
        method: str,
        observe: CallObserver | None,
        code: str,
        start: float,
        token: str,
        detail: str,
    ) -> None:
        """A call has ended (`start` from `time.perf_counter`): counts it, and logs its access
        line: text, or JSON with the same fields (`logs.py`)."""
        seconds = time.perf_counter() - start
        if observe is not None:
            observe(code, seconds)
        if not log.isEnabledFor(logging.INFO):
            return
        principal = _principal.get(None)
        if principal is None and token:  # a kept reply: the key's cached principal
            try:
                principal = self.auth.cached(token)
            except RegistryError:
                principal = None
        fields = {
            "method": method,
            "code": code,
            "duration_ms": round(seconds * 1e3, 3),
            "principal": principal.name if principal is not None else "",
            "peer": context.peer(),
            "request_id": request_id(context.invocation_metadata()),
        }
        if detail:
            fields["detail"] = detail
        log.info(
            "%s %s%s %.1fms %s %s %s",
            method,
            code,
            f" ({detail})" if detail else "",
            seconds * 1e3,
            fields["principal"] or "-",
            fields["peer"],
            fields["request_id"],
            extra={"call": fields},
        )

    @staticmethod
    async def _call(inner: Callable[..., Any], request: Any, context: Any) -> Any:
        remaining = context.time_remaining()
        if remaining is None:
            return await inner(request, context)
        if remaining <= 0:
            raise DeadlineExceeded("the call's deadline passed before it started")
        # Stop waiting at the deadline; the client has given up by then.
        # (asyncio.timeout cancels this task in place; wait_for would run the
        # handler in a task of its own, on every call that has a deadline.)
        try:
            async with asyncio.timeout(remaining):
                return await inner(request, context)
        except TimeoutError:
            raise DeadlineExceeded("the call's deadline passed") from None

    @contextlib.asynccontextmanager
    async def _streaming(
        self,
        context: grpc.aio.ServicerContext,
        method: str,
        kind: str,
        observe: CallObserver | None,
    ) -> AsyncIterator[None]:
        """Around a streaming call: authenticates it, errors become statuses, and it is
        counted and logged like a unary call."""
        start = time.perf_counter()
        code = "OK"
        token = ""
        try:
            token, after_commit = call_metadata(context.invocation_metadata())
            _principal.set(await authenticate(self.auth, self.run, token, after_commit))
            yield
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        except Exception as err:
            code = status_name(err)
            await self._fail(context, method, err)
        finally:
            self._finished(context, method, observe, code, start, token, kind)

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        decode = handler.request_deserializer

        def parse(raw: bytes) -> Any:
            # Decoded here rather than by grpc so that garbage is INVALID_ARGUMENT, not INTERNAL.
            if decode is None:
                return raw
            try:
                request = decode(raw)
            except (DecodeError, ValueError, RuntimeError) as e:
                raise InvalidArgument("request", f"is not a valid request message: {e}") from None
            check_required(request)
            return request

        observe: CallObserver | None = self.metrics.observer(method) if self.metrics else None

        if handler.unary_unary is not None:
            inner = handler.unary_unary
            serialize = handler.response_serializer
            answers = self.answers if method in KEPT_METHODS else None

            async def unary(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
                start = time.perf_counter()
                code = "OK"
                kept = False
                token = ""
                note = None
                try:
                    token, after_commit = call_metadata(context.invocation_metadata())
                    if answers is not None:
                        key = (method, token, raw)
                        reply, seen = answers.lookup(key, after_commit)
                        if reply is not None:
                            kept = True
                            return reply
                    note = commits.begin_call()
                    principal = await authenticate(self.auth, self.run, token, after_commit)
                    request = parse(raw)
                    _principal.set(principal)
                    reply = await self._call(inner, request, context)
                    self._settle(context, note)
                    if answers is not None:
                        reply = serialize(reply)
                        answers.store(key, reply, seen)
                    return reply
                except asyncio.CancelledError:
                    code = "CANCELLED"
                    raise
                except Exception as err:
                    code = status_name(err)
                    await self._fail(context, method, err, note)
                finally:
                    detail = "kept" if kept else ""
                    self._finished(context, method, observe, code, start, token, detail)

            def serialize_reply(reply: Any) -> bytes:
                # kept replies are already serialized
                return reply if isinstance(reply, bytes) else serialize(reply)

            return grpc.unary_unary_rpc_method_handler(
                unary, response_serializer=serialize_reply if answers is not None else serialize
            )
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            async def stream(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
                async with self._streaming(context, method, "stream", observe):
                    request = parse(raw)
                    async for item in inner_stream(request, context):
                        yield item

            return grpc.unary_stream_rpc_method_handler(
                stream, response_serializer=handler.response_serializer
            )
        if handler.stream_unary is not None:
            inner_upload = handler.stream_unary

            async def upload(raw_requests: Any, context: grpc.aio.ServicerContext) -> Any:
                async with self._streaming(context, method, "upload", observe):

                    async def requests() -> Any:
                        async for raw in raw_requests:
                            yield parse(raw)

                    return await inner_upload(requests(), context)

            return grpc.stream_unary_rpc_method_handler(
                upload, response_serializer=handler.response_serializer
            )
        return handler
