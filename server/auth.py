"""Admin authentication: Models (and later Training) RPCs need ``authorization: Bearer
<token>`` when a token is configured; without one they are served only on loopback.
Tokens are compared in constant time and never logged."""

from __future__ import annotations

import hmac
import ipaddress

import grpc

ADMIN_SERVICES = ("/tagger.v1.Models/", "/tagger.v1.Training/")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class AdminAuth(grpc.aio.ServerInterceptor):
    def __init__(self, token: str | None, host: str, tagging_token: str | None = None):
        self.token, self.loopback, self.tagging_token = token, is_loopback(host), tagging_token

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None:
            return None
        admin = details.method.startswith(ADMIN_SERVICES)
        required = self.token if admin else self.tagging_token
        if required is None:
            if admin and not self.loopback:
                return _refuse(handler, grpc.StatusCode.PERMISSION_DENIED,
                               "admin RPCs need an admin token when the server listens beyond loopback")
            return handler
        presented = dict(details.invocation_metadata or ()).get("authorization", "")
        if hmac.compare_digest(presented.encode(), f"Bearer {required}".encode()):
            return handler
        return _refuse(handler, grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")


def _refuse(handler, code: grpc.StatusCode, message: str):
    async def deny_unary(request, context):
        await context.abort(code, message)

    async def deny_stream(request_or_iterator, context):
        await context.abort(code, message)
        yield  # pragma: no cover  (makes this an async generator)

    kwargs = {"request_deserializer": handler.request_deserializer, "response_serializer": handler.response_serializer}
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(deny_unary, **kwargs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(deny_stream, **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(deny_unary, **kwargs)
    return grpc.stream_stream_rpc_method_handler(deny_stream, **kwargs)
