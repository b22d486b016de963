"""RFC 9457 problem details: every HTTP error of chatlog is `application/problem+json`."""

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Final

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

PROBLEM_JSON: Final = "application/problem+json"


class ProblemError(Exception):
    """An error that is answered as a problem; services subclass it with their own status."""

    status: int = 500
    title: str | None = None

    def __init__(
        self, detail: str, *, headers: Mapping[str, str] | None = None, **extensions: object
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = dict(headers or {})
        self.extensions: dict[str, object] = extensions


def problem_body(
    status: int, detail: str | None = None, *, title: str | None = None, **extensions: object
) -> bytes:
    """The JSON body of a problem; `title` defaults to the status phrase."""
    body: dict[str, object] = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
    }
    if detail is not None:
        body["detail"] = detail
    body.update(extensions)
    return orjson.dumps(body)


def problem(
    status: int,
    detail: str | None = None,
    *,
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extensions: object,
) -> Response:
    """A problem+json response."""
    return Response(
        problem_body(status, detail, title=title, **extensions),
        status_code=status,
        headers=headers,
        media_type=PROBLEM_JSON,
    )


def problem_parts(exc: ProblemError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, raw ASGI headers and body of the problem `exc`, for endpoints that speak ASGI."""
    headers = [(b"content-type", PROBLEM_JSON.encode())]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()]
    body = problem_body(exc.status, exc.detail, title=exc.title, **exc.extensions)
    return exc.status, headers, body


def validation_errors(errors: list[Any]) -> list[dict[str, Any]]:
    """Pydantic errors as `{"field", "message"}` pairs a client can show."""
    return [
        {"field": ".".join(str(p) for p in err.get("loc", ())), "message": err.get("msg", "")}
        for err in errors
    ]


async def _on_http_exception(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for this type only
    return problem(exc.status_code, str(exc.detail), headers=exc.headers)


async def _on_validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for this type only
    errors = validation_errors(list(exc.errors()))
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return problem(422, summary, errors=errors)


async def _on_problem(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProblemError)  # noqa: S101 - registered for this type only
    return problem(exc.status, exc.detail, title=exc.title, headers=exc.headers, **exc.extensions)


def install_problem_handlers(app: FastAPI) -> None:
    """Render 404/405/422/... and every `ProblemError` as problem+json."""
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(ProblemError, _on_problem)
