"""``/docs``: the API's routes as one plain page, built from the app's own OpenAPI schema.

FastAPI's default ``/docs`` loads Swagger UI from a CDN, which the app's
Content-Security-Policy forbids and an offline machine cannot reach. This page
needs nothing from outside: no script, no style, only the list of operations
(method, path, summary, who may call it, the answers it can give) and a link to
``/openapi.json`` for any OpenAPI viewer or client generator.
"""

from __future__ import annotations

from html import escape
from typing import Any

METHODS = ("get", "post", "put", "patch", "delete")


def _who(operation: dict[str, Any], path: str) -> str:
    codes = operation.get("responses", {})
    if "403" in codes and path.startswith("/api/admin"):
        return "admin token"
    if "401" in codes:
        return "token or session"
    return "anyone"


def docs_page(schema: dict[str, Any]) -> str:
    """The HTML of the ``/docs`` page for an OpenAPI ``schema`` (every value is escaped)."""
    info = schema.get("info", {})
    rows = []
    for path, item in schema.get("paths", {}).items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            summary = op.get("summary") or ""
            description = (op.get("description") or "").strip().splitlines()
            about = summary + (f": {description[0]}" if description and description[0] != summary else "")
            codes = ", ".join(sorted(op.get("responses", {})))
            rows.append(
                f"<tr><td><code>{escape(method.upper())}</code></td><td><code>{escape(path)}</code></td>"
                f"<td>{escape(about)}</td><td>{escape(_who(op, path))}</td><td>{escape(codes)}</td></tr>"
            )
    title = escape(str(info.get("title", "API")))
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<link rel="stylesheet" href="/static/style.css"><title>{title}: API</title></head><body>\n'
        f"<h1>{title}, version {escape(str(info.get('version', '')))}</h1>\n"
        f"<p>{escape(str(info.get('description', '')))}</p>\n"
        '<p>The machine-readable schema is <a href="/openapi.json">/openapi.json</a> '
        "(OpenAPI 3): open it in any OpenAPI viewer or give it to a client generator. "
        "Scripts send <code>Authorization: Bearer TOKEN</code>; the pages sign in with "
        "<code>POST /api/session</code>, which sets a session cookie. Errors are JSON "
        "<code>{&quot;detail&quot;: ...}</code>; 503 means the store cannot be used now "
        "(retry after <code>Retry-After</code> seconds).</p>\n"
        "<table><thead><tr><th>method</th><th>path</th><th>what it does</th><th>who</th><th>answers</th></tr>"
        "</thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table>\n</body></html>\n"
    )
