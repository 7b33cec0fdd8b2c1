"""The dashboard's FastAPI app: pages from the watch cache, server-sent events, actions."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from bgjobs.api.v1alpha1 import Phase, is_batch
from bgjobs.dashboard import csrf, graph, present
from bgjobs.dashboard.cache import WatchCache
from bgjobs.dashboard.live import Coalescer, message
from bgjobs.redaction import redact
from bgjobs.schedule import next_fire_times

HERE = Path(__file__).parent
PAGE_SIZE = 100
FLASH_COOKIE = "bgjobs_flash"
PHASES = [p.value for p in Phase]


@dataclass
class Settings:
    actions: bool = False
    api_client: Any = None
    # Reads made for ONE object's page (its Events, its Job's uid): injectable for tests.
    extras: Callable[[str, str, dict[str, Any]], dict[str, Any]] | None = None
    sse_poll: float = 0.25
    templates: Environment = field(
        default_factory=lambda: Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
        )
    )


def create_app(settings: Settings, cache: WatchCache) -> FastAPI:
    app = FastAPI(title="bgjobs dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    env = settings.templates
    env.filters["json"] = present.as_json
    memo = present.RowMemo()

    @app.middleware("http")
    async def remember_seq(request: Request, call_next: Any) -> Response:
        # The cache's position before the page reads it: the page's event stream starts
        # there, so a change landing between the render and the stream's start is not lost.
        request.state.seq = cache.seq
        return cast(Response, await call_next(request))

    def render(request: Request, template: str, **ctx: Any) -> HTMLResponse:
        token = request.cookies.get(csrf.COOKIE) or csrf.new_token()
        flash = None
        raw = request.cookies.get(FLASH_COOKIE)
        if raw:
            try:
                flash = json.loads(raw)
            except ValueError:
                flash = None
        html = env.get_template(template).render(
            request=request,
            actions=settings.actions,
            csrf_token=token,
            flash=flash,
            namespaces=cache.namespaces(),
            seq=request.state.seq,
            **ctx,
        )
        resp = HTMLResponse(html)
        resp.set_cookie(csrf.COOKIE, token, httponly=True, samesite="strict")
        if raw:
            resp.delete_cookie(FLASH_COOKIE)
        resp.headers["Content-Security-Policy"] = (
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
        )
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp

    @app.get("/healthz")
    def healthz() -> Response:
        ok = cache.synced.is_set()
        return Response("ok" if ok else "syncing", status_code=200 if ok else 503)

    @app.get("/")
    def index() -> RedirectResponse:
        return RedirectResponse("/jobs")

    @app.get("/jobs", response_class=HTMLResponse)
    def jobs(request: Request, page: int = 1) -> HTMLResponse:
        q = request.query_params
        filters = {k: q.get(k, "") for k in ("namespace", "phase", "task", "queue", "label")}
        rows = memo.rows(cache.objects("backgroundjobs", filters["namespace"]))
        rows = [r for r in rows if present.matches(r, filters)]
        rows.sort(key=lambda r: (r["created"], r["name"]), reverse=True)
        shown, pages = present.page_of(rows, page, PAGE_SIZE)
        return render(
            request,
            "jobs.html",
            rows=shown,
            filters=filters,
            page=page,
            pages=pages,
            total=len(rows),
            phases=PHASES,
        )

    @app.get("/jobs/{namespace}/{name}", response_class=HTMLResponse)
    def job(request: Request, namespace: str, name: str) -> HTMLResponse:
        obj = cache.get_or_fetch("backgroundjobs", namespace, name)
        if obj is None:
            raise HTTPException(404, f"no BackgroundJob {namespace}/{name} (yet)")
        extra = settings.extras(namespace, name, obj) if settings.extras else {}
        row = present.job_row(obj)
        spec = obj.get("spec") or {}
        whole = present.as_json(
            {"args": spec.get("args") or [], "kwargs": spec.get("kwargs") or {}}
        )
        full = request.query_params.get("full") == "args"
        args_text, cut = (whole, False) if full else present.truncated(whole)
        return render(
            request,
            "job.html",
            obj=obj,
            row=row,
            status=obj.get("status") or {},
            args_text=args_text,
            args_cut=cut,
            extra=extra,
        )

    @app.get("/workflows", response_class=HTMLResponse)
    def workflows(request: Request) -> HTMLResponse:
        ns = request.query_params.get("namespace") or None
        objs = sorted(cache.objects("jobworkflows", ns), key=lambda o: o["metadata"]["name"])
        return render(request, "workflows.html", objs=objs)

    @app.get("/workflows/{namespace}/{name}", response_class=HTMLResponse)
    def workflow(request: Request, namespace: str, name: str) -> HTMLResponse:
        obj = cache.get_or_fetch("jobworkflows", namespace, name)
        if obj is None:
            raise HTTPException(404, f"no JobWorkflow {namespace}/{name} (yet)")
        return render(
            request,
            "workflow.html",
            obj=obj,
            status=obj.get("status") or {},
            g=graph.layout(present.workflow_steps(obj)),
        )

    @app.get("/batches", response_class=HTMLResponse)
    def batches(request: Request) -> HTMLResponse:
        ns = request.query_params.get("namespace") or None
        rows = [
            present.job_row(o)
            for o in cache.objects("backgroundjobs", ns)
            if is_batch(o.get("spec") or {})
        ]
        rows.sort(key=lambda r: r["created"], reverse=True)
        return render(request, "batches.html", rows=rows[:PAGE_SIZE])

    @app.get("/schedules", response_class=HTMLResponse)
    def schedules(request: Request) -> HTMLResponse:
        ns = request.query_params.get("namespace") or None
        rows = []
        for o in sorted(cache.objects("jobschedules", ns), key=lambda o: o["metadata"]["name"]):
            spec, st = o.get("spec") or {}, o.get("status") or {}
            nxt = st.get("nextScheduleTime")
            if not nxt and spec.get("schedule"):
                try:
                    times = next_fire_times(
                        spec["schedule"], datetime.now(UTC), tz=spec.get("timeZone")
                    )
                    nxt = times[0].isoformat() if times else None
                except Exception:  # noqa: BLE001 - a schedule the operator marks Invalid
                    nxt = None
            rows.append({"obj": o, "spec": spec, "status": st, "next": nxt})
        return render(request, "schedules.html", rows=rows)

    @app.get("/deadletters", response_class=HTMLResponse)
    def deadletters(request: Request) -> HTMLResponse:
        ns = request.query_params.get("namespace") or None
        rows = [present.dead_letter_row(o) for o in cache.objects("deadletters", ns)]
        rows.sort(key=lambda r: r["failedAt"], reverse=True)
        return render(request, "deadletters.html", rows=rows[:PAGE_SIZE])

    @app.get("/deadletters/{namespace}/{name}", response_class=HTMLResponse)
    def deadletter(request: Request, namespace: str, name: str) -> HTMLResponse:
        obj = cache.get_or_fetch("deadletters", namespace, name)
        if obj is None:
            raise HTTPException(404, f"no DeadLetter {namespace}/{name}")
        return render(request, "deadletter.html", obj=obj, row=present.dead_letter_row(obj))

    @app.get("/queues", response_class=HTMLResponse)
    def queues(request: Request) -> HTMLResponse:
        ns = request.query_params.get("namespace") or None
        rows = [
            {
                "ns": o["metadata"]["namespace"],
                "name": o["metadata"]["name"],
                **present.queue_row(o),
            }
            for o in sorted(cache.objects("jobqueues", ns), key=lambda o: o["metadata"]["name"])
        ]
        return render(request, "queues.html", rows=rows)

    @app.get("/submit", response_class=HTMLResponse)
    def submit_page(request: Request) -> HTMLResponse:
        return render(request, "submit.html")

    @app.get("/events")
    async def events(request: Request) -> StreamingResponse:
        ns = request.query_params.get("namespace") or None

        since = request.query_params.get("since", "")
        start = int(since) if since.isdigit() else cache.seq

        async def stream() -> AsyncIterator[str]:
            seq = start
            coalescer = Coalescer()
            yield ": connected\n\n"
            while not await request.is_disconnected():
                seq, changes = cache.changes_since(seq)
                coalescer.offer(
                    [(c.plural, c.key) for c in changes if ns is None or c.key[0] == ns]
                )
                for plural, key in coalescer.due(time.monotonic()):
                    body = message(plural, cache.get(plural, *key), key)
                    yield f"event: update\ndata: {json.dumps(body)}\n\n"
                await asyncio.sleep(settings.sse_poll)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    # -- actions ------------------------------------------------------------------------

    @app.post("/actions/{action}")
    async def act(request: Request, action: str) -> Response:
        if not settings.actions:
            return Response("actions are disabled on this dashboard", status_code=403)
        form = dict(await request.form())
        if not csrf.valid(
            request.cookies.get(csrf.COOKIE),
            str(form.get(csrf.FIELD) or ""),
            request.headers.get("host"),
            request.headers.get("origin"),
            request.headers.get("referer"),
        ):
            return Response("refused: cross-site request (bad or missing token)", status_code=403)
        from bgjobs.dashboard.actions import ACTIONS

        run = ACTIONS.get(action)
        if run is None:
            raise HTTPException(404, f"no action {action!r}")
        ns = str(form.get("namespace") or "")
        try:
            target, text = await asyncio.to_thread(run, settings.api_client, ns, form)
            flash = {"level": "info", "message": text}
        except Exception as exc:  # noqa: BLE001 - the API server's refusal, shown as it is
            back = urlsplit(request.headers.get("referer") or "")
            target = str(form.get("back") or "") or (
                back.path + (f"?{back.query}" if back.query else "") if back.path else "/jobs"
            )
            flash = {"level": "error", "message": redact(str(exc))[:2000]}
        if not target.startswith("/"):
            target = "/jobs"
        resp = RedirectResponse(target, status_code=303)
        resp.set_cookie(FLASH_COOKIE, json.dumps(flash), httponly=True, samesite="strict")
        return resp

    return app
