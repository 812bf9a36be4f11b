"""
kcrash.fleet.dashboard
======================

The crash database's web dashboard (``kcrash triage serve``): a FastAPI application rendering
server-side HTML with Jinja2 (templates in ``kcrash/fleet/templates``, autoescaped, no script and no
external resource) and answering the same routes in JSON when asked (``Accept: application/json`` or
``?format=json``). Routes: ``/`` the bucket list (``?sort=count|first_seen|last_seen&order=desc|asc``,
``limit``, ``skip``), ``/bucket/{id}`` a bucket (per-release table, daily sparkline, hosts, sample
crashes; a merged bucket's id redirects to the bucket it was merged into), ``POST /bucket/{id}/merge``
(form field ``into``) and ``POST /bucket/{id}/unmerge``, ``/crash/{id}`` a crash,
``/crash/{id}/report.html`` a dump's stored HTML report, ``/stats``. In JSON, times are ISO 8601 UTC
strings and integers beyond JavaScript's exact range (±2^53, such as the kernel addresses in a dump's
report) are ``"0x…"`` hex strings. The data comes from :mod:`kcrash.fleet.queries`; merges go through
:mod:`kcrash.fleet.buckets`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Final
from urllib.parse import parse_qs, urlencode, urlsplit

import jinja2
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from kcrash import __version__
from kcrash.errors import BucketNotFoundError, CrashNotFoundError, FleetError
from kcrash.fleet import buckets, queries
from kcrash.fleet.db import CrashDb

__all__ = ["create_app", "sparkline_points"]

_SPARK_W: Final = 600
_SPARK_H: Final = 48


def sparkline_points(days: Sequence[queries.DayCount], width: int = _SPARK_W, height: int = _SPARK_H) -> str:
    """The ``points`` of an SVG polyline drawing the daily counts (left: first day; top: the busiest).

    >>> from datetime import date
    >>> sparkline_points([queries.DayCount(date(2026, 1, 1), 0), queries.DayCount(date(2026, 1, 2), 4)], 10, 8)
    '0.0,8.0 10.0,0.0'
    """
    if not days:
        return ""
    peak = max(d.count for d in days) or 1
    step = width / max(len(days) - 1, 1)
    return " ".join(f"{i * step:.1f},{height - d.count * height / peak:.1f}" for i, d in enumerate(days))


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("kcrash.fleet", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = lambda t: "" if t is None else t.strftime("%Y-%m-%d %H:%M:%S")
    env.globals.update(version=__version__, sparkline_points=sparkline_points, sort_keys=queries.SORT_KEYS)
    return env


def _wants_json(request: Request) -> bool:
    fmt = request.query_params.get("format")
    if fmt is not None:
        return fmt == "json"
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


class _Dashboard:
    # The routes' shared state: the database and the template environment.

    def __init__(self, db: CrashDb) -> None:
        self.db = db
        self.env = _environment()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.db.sessions() as session:
            yield session

    def respond(self, request: Request, template: str, data: object, **extra: object) -> Response:
        if _wants_json(request):
            return JSONResponse(queries.jsonable(data))
        html = self.env.get_template(template).render(data=data, request=request, **extra)
        return HTMLResponse(html)


def _sort_args(sort: str, order: str) -> tuple[queries.SortKey, bool]:
    for key in queries.SORT_KEYS:
        if key == sort:
            if order not in ("asc", "desc"):
                raise HTTPException(400, f"order must be asc or desc, not {order!r}")
            return key, order == "desc"
    raise HTTPException(400, f"sort must be one of {', '.join(queries.SORT_KEYS)}, not {sort!r}")


async def _form(request: Request) -> dict[str, str]:
    # An application/x-www-form-urlencoded body (no multipart dependency for two fields).
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v[-1] for k, v in parse_qs(body).items()}


def create_app(db: CrashDb) -> FastAPI:
    """The dashboard application on the open crash database ``db``."""
    app = FastAPI(title="kcrash triage", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    dash = _Dashboard(db)
    _read_routes(app, dash)
    _crash_routes(app, dash)
    _write_routes(app, dash)
    return app


def _bucket_detail(dash: _Dashboard, bucket_id: int) -> queries.BucketDetail:
    with dash.session() as session:
        try:
            return queries.get_bucket(session, bucket_id)
        except BucketNotFoundError as exc:
            raise HTTPException(404, str(exc)) from exc


def _read_routes(app: FastAPI, dash: _Dashboard) -> None:
    @app.get("/")
    def index(request: Request, sort: str = "count", order: str = "desc", limit: int = 200, skip: int = 0) -> Response:
        key, descending = _sort_args(sort, order)
        if limit < 1 or skip < 0:
            raise HTTPException(400, "limit must be positive and skip not negative")
        with dash.session() as session:
            page = queries.list_buckets(session, key, descending=descending, limit=limit, skip=skip)
        links = {
            k: "?" + urlencode({"sort": k, "order": "asc" if k == key and descending else "desc"})
            for k in queries.SORT_KEYS
        }
        return dash.respond(request, "index.html.j2", page, sort_links=links)

    @app.get("/bucket/{bucket_id}")
    def bucket(request: Request, bucket_id: int) -> Response:
        detail = _bucket_detail(dash, bucket_id)
        if detail.bucket.id != bucket_id:
            query = f"?{request.url.query}" if request.url.query else ""
            return RedirectResponse(f"/bucket/{detail.bucket.id}{query}", status_code=307)
        return dash.respond(request, "bucket.html.j2", detail, error="")

    @app.get("/stats")
    def stats(request: Request) -> Response:
        with dash.session() as session:
            return dash.respond(request, "stats.html.j2", queries.get_stats(session))


def _crash_routes(app: FastAPI, dash: _Dashboard) -> None:
    @app.get("/crash/{crash_id}")
    def crash(request: Request, crash_id: int) -> Response:
        with dash.session() as session:
            try:
                detail = queries.get_crash(session, crash_id)
            except CrashNotFoundError as exc:
                raise HTTPException(404, str(exc)) from exc
        if _wants_json(request):
            return JSONResponse(queries.crash_jsonable(detail))
        return dash.respond(request, "crash.html.j2", detail)

    @app.get("/crash/{crash_id}/report.html")
    def report_html(crash_id: int) -> Response:
        with dash.session() as session:
            try:
                html = queries.get_crash_html(session, crash_id)
            except CrashNotFoundError as exc:
                raise HTTPException(404, str(exc)) from exc
        if html is None:
            raise HTTPException(404, f"crash {crash_id} was read from a log: it has no stored HTML report")
        return HTMLResponse(html)


def _same_origin(request: Request) -> None:
    # A form posted from another site (a page in the user's browser aiming at 127.0.0.1) is refused.
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise HTTPException(403, "cross-origin form refused")


def _write_routes(app: FastAPI, dash: _Dashboard) -> None:
    @app.post("/bucket/{bucket_id}/merge")
    async def merge(request: Request, bucket_id: int) -> Response:
        _same_origin(request)
        into = (await _form(request)).get("into", "").strip().removeprefix("#")
        if not into.isdigit():
            return _refused(dash, request, bucket_id, f"merge into which bucket? (a bucket id, not {into!r})")
        change = functools.partial(buckets.merge_buckets, source_id=bucket_id, target_id=int(into))
        return _change(dash, request, bucket_id, change, int(into))

    @app.post("/bucket/{bucket_id}/unmerge")
    def unmerge(request: Request, bucket_id: int) -> Response:
        _same_origin(request)
        change = functools.partial(buckets.unmerge_bucket, bucket_id=bucket_id)
        return _change(dash, request, bucket_id, change, bucket_id)


def _refused(dash: _Dashboard, request: Request, bucket_id: int, error: str) -> Response:
    # The page of bucket ``bucket_id`` with the reason a change was refused (409; JSON: the reason).
    if _wants_json(request):
        return JSONResponse({"detail": error}, status_code=409)
    detail = _bucket_detail(dash, bucket_id)
    html = dash.env.get_template("bucket.html.j2").render(data=detail, request=request, error=error)
    return HTMLResponse(html, status_code=409)


def _change(
    dash: _Dashboard, request: Request, bucket_id: int, change: Callable[[Session], object], then: int
) -> Response:
    # Runs one write of kcrash.fleet.buckets in its own transaction, then shows bucket ``then``
    # (a refused change shows bucket ``bucket_id`` with the reason).
    try:
        with dash.session() as session, session.begin():
            change(session)
    except (BucketNotFoundError, FleetError) as exc:
        return _refused(dash, request, bucket_id, str(exc))
    return RedirectResponse(f"/bucket/{then}", status_code=303)
