"""Request plumbing every route of the controller API shares: strict JSON bodies and the
authenticated caller (`Who`)."""

import json
import math
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from dpunet.controller.auth import Principal
from dpunet.controller.errors import Forbidden

_bearer = HTTPBearer(
    auto_error=False, description="a node's, a DPU's ('<token> dpu:<chassis>') or the admin token"
)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number: numbers must be finite")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is out of range: numbers must be finite")
    return value


def parse_json(body: bytes) -> Any:
    """A request body as strict JSON (RFC 8259): no NaN/Infinity, no number that does not
    fit a finite float or int; json.JSONDecodeError (a 422) naming the problem."""
    try:
        return json.loads(body, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError:
        raise
    except (ValueError, RecursionError) as exc:  # a hook's refusal, an int over the digit limit
        text = body.decode("utf-8", "replace")
        raise json.JSONDecodeError(str(exc) or type(exc).__name__, text, 0) from None


class _StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    """A route whose JSON body is parsed by `parse_json`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(_StrictJsonRequest(request.scope, request.receive))

        return strict


async def _caller(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller `_Authenticate` found (`_bearer` only documents the scheme)."""
    who: Principal = request.state.principal
    return who


async def _principal(who: Annotated[Principal, Depends(_caller)]) -> Principal:
    """The caller, an admin or a node: a DPU may only register and renew its lease (403)."""
    if who.dpu is not None:
        raise Forbidden(
            f"{who} may only register itself and renew the DPU lease of the node it serves"
        )
    return who


Who = Annotated[Principal, Depends(_principal)]
AnyCaller = Annotated[Principal, Depends(_caller)]  # DPUs included: registration and lease
