"""The web dashboard: server-rendered pages over the same queries as the REST API.

Names, paths and evidence come from the scanned repositories, so from attackers: templates are
rendered with autoescape on, nothing from a repository is ever put in a URL other than through
quoting, in a script or in a style, and the Content-Security-Policy (see app.py) forbids inline
scripts and styles. Triage is a plain form posted to the server with the API token in a
password field; a small static script remembers the token in sessionStorage for the tab.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from . import actions, queries
from .auth import check_write_token
from .chart import verdict_chart
from .schemas import (AcceptRequest, EscalateRequest, FindingsQuery, ReposQuery, RescanRequest, SearchQuery,
                      valid_content_key)

TEMPLATES = Path(__file__).with_name("templates")
MAX_FORM_BYTES = 16 * 1024
OVERVIEW_DAYS = 30
DONE_MESSAGES = {
    "accepted": "The findings were accepted.",
    "escalated": "The findings were escalated.",
    "queued": "The file was queued for another scan.",
    "already-queued": "The file is already queued; the decision was recorded.",
}
FORM_ACTIONS = {"accept": (actions.accept, AcceptRequest, "accepted"),
                "escalate": (actions.escalate, EscalateRequest, "escalated")}

router = APIRouter(include_in_schema=False)


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.globals.update(file_url=file_url, repo_url=repo_url, short=short, verdicts=queries.VERDICTS,
                       severities=queries.SEVERITIES)
    return env


def file_url(content_key: str) -> str:
    return "/files/" + quote(content_key, safe=":")


def repo_url(repo_id: int) -> str:
    return f"/repos/{int(repo_id)}"


def short(text: str | None, limit: int = 16) -> str:
    text = text or ""
    return text if len(text) <= limit else text[:limit] + "…"


_env = _environment()


def render(name: str, status_code: int = 200, **context) -> HTMLResponse:
    context.setdefault("error", None)
    context.setdefault("message", None)
    # scan-safe: renders the dashboard's own packaged templates; repository names, paths and
    # evidence arrive only as context values, escaped by autoescape, never as template source
    return HTMLResponse(_env.get_template(name).render(**context), status_code=status_code)


def _params(request: Request) -> dict[str, str]:
    """Query parameters without the empty ones an HTML form sends for "any"."""
    return {key: value for key, value in request.query_params.items() if value != ""}


def _errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'input'}: {err['msg']}" for err in exc.errors())


def _pages(path: str, params: dict, page: int, per_page: int, total: int) -> dict:
    def link(number: int) -> str:
        return path + "?" + urlencode({**params, "page": number})

    last = max((total + per_page - 1) // per_page, 1)
    return {"page": page, "last": last, "total": total,
            "prev": link(page - 1) if page > 1 else None, "next": link(page + 1) if page < last else None}


@router.get("/", response_class=HTMLResponse)
def overview(request: Request):
    from .routes import overview as overview_data

    data = overview_data(request.app, OVERVIEW_DAYS)
    with request.app.state.store.session() as session:
        latest = queries.list_findings(session, FindingsQuery(verdict="malicious", per_page=10))
    return render("overview.html", page_title="Overview", stats=data, chart=verdict_chart(data["over_time"]),
                  latest=latest["items"])


@router.get("/findings", response_class=HTMLResponse)
def findings(request: Request):
    params = _params(request)
    with request.app.state.store.session() as session:
        facets = queries.finding_facets(session)
        try:
            query = FindingsQuery.model_validate(params)
        except ValidationError as exc:
            return render("findings.html", 422, page_title="Findings", error=_errors(exc), facets=facets,
                          params=params, result=None, pages=None)
        result = queries.list_findings(session, query)
    return render("findings.html", page_title="Findings", facets=facets, params=params, result=result,
                  pages=_pages("/findings", params, query.page, query.per_page, result["total"]))


@router.get("/repos", response_class=HTMLResponse)
def repos(request: Request):
    params = _params(request)
    try:
        query = ReposQuery.model_validate(params)
    except ValidationError as exc:
        return render("repos.html", 422, page_title="Repositories", error=_errors(exc), params=params,
                      result=None, pages=None)
    with request.app.state.store.session() as session:
        result = queries.list_repos(session, query)
    return render("repos.html", page_title="Repositories", params=params, result=result,
                  pages=_pages("/repos", params, query.page, query.per_page, result["total"]))


@router.get("/repos/{repo_id}", response_class=HTMLResponse)
def repo(request: Request, repo_id: int):
    with request.app.state.store.session() as session:
        data = queries.repo_detail(session, repo_id) if 0 < repo_id < 2**62 else None
    if data is None:
        return render("error.html", 404, page_title="Not found", error="No such repository.")
    return render("repo.html", page_title=data["name"], repo=data)


@router.get("/search", response_class=HTMLResponse)
def search(request: Request):
    params = _params(request)
    if "q" not in params:
        return render("search.html", page_title="Search", params=params, result=None)
    try:
        query = SearchQuery.model_validate(params)
    except ValidationError as exc:
        return render("search.html", 422, page_title="Search", params=params, result=None, error=_errors(exc))
    with request.app.state.store.session() as session:
        result = queries.search(session, query.q, query.limit)
    return render("search.html", page_title="Search", params=params, result=result)


def _file_page(request: Request, content_key: str, status_code: int = 200, **extra) -> HTMLResponse:
    try:
        valid_content_key(content_key)
    except ValueError:
        return render("error.html", 404, page_title="Not found", error="No such file.")
    with request.app.state.store.session() as session:
        data = queries.file_detail(session, content_key)
    if data is None:
        return render("error.html", 404, page_title="Not found", error="No such file.")
    rules = sorted({f["rule"] for result in data["results"] for f in result["findings"]})
    done = request.query_params.get("done")
    extra.setdefault("message", DONE_MESSAGES.get(done))
    return render("file.html", status_code, page_title="File " + short(content_key, 23), file=data, rules=rules,
                  writes_enabled=bool(request.app.state.settings.api_token), form=extra.pop("form", {}), **extra)


@router.get("/files/{content_key}", response_class=HTMLResponse)
def file_page(request: Request, content_key: str):
    return _file_page(request, content_key)


@router.post("/files/{content_key}/triage", response_class=HTMLResponse)
async def triage_form(request: Request, content_key: str):
    """The dashboard's triage form: token checked like the API's, then the same action."""
    try:
        valid_content_key(content_key)
    except ValueError:
        return render("error.html", 404, page_title="Not found", error="No such file.")
    body = b""
    async for chunk in request.stream():  # read no more than a form can hold
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return render("error.html", 413, page_title="Too large", error="The form is too large.")
    form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    kept = {key: form.get(key, "") for key in ("reason", "rule", "actor")}
    try:
        check_write_token(request.app.state.settings.api_token, form.get("token") or None)
    except HTTPException as exc:
        return await run_in_threadpool(_file_page, request, content_key, exc.status_code, error=exc.detail, form=kept)
    action = form.get("action", "")
    fields = {"reason": form.get("reason", ""), "actor": form.get("actor") or "dashboard"}
    if form.get("rule"):
        fields["rule"] = form["rule"]
    try:
        if action == "rescan":
            body_model = RescanRequest.model_validate(fields)
            result = await run_in_threadpool(actions.rescan, request.app.state.store, request.app.state.queue,
                                             content_key, body_model)
            done = "queued" if result["queued"] else "already-queued"
        elif action in FORM_ACTIONS:
            act, model, done = FORM_ACTIONS[action]
            await run_in_threadpool(act, request.app.state.store, content_key, model.model_validate(fields))
        else:
            return await run_in_threadpool(_file_page, request, content_key, 422, error="unknown action", form=kept)
    except ValidationError as exc:
        return await run_in_threadpool(_file_page, request, content_key, 422, error=_errors(exc), form=kept)
    except LookupError:
        return render("error.html", 404, page_title="Not found", error="No such file.")
    except RuntimeError as exc:
        return await run_in_threadpool(_file_page, request, content_key, 503, error=str(exc), form=kept)
    return RedirectResponse(file_url(content_key) + "?" + urlencode({"done": done}), status_code=303)

