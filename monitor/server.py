"""The HTTP server: /metrics, health, reload, the JSON API and a status page.

A small WSGI app on wsgiref with one thread per request. Handlers read the
daemon's immutable values; none of them polls or evaluates. Secrets never
appear: the API shows names, states and numbers, not receiver settings.
"""

from __future__ import annotations

import html
import json
import logging
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from exporters.exposition import CONTENT_TYPE, Payload
from exporters.prometheus import series_counts
from monitor import __version__
from monitor.dispatch import AlertViews
from monitor.durations import format_duration
from monitor.health import with_builtin_rules

log = logging.getLogger("kpimon.http")


@dataclass(frozen=True)
class ApiContext:
    live: Callable[[], Any]
    runtime: Callable[[], Any]
    ready: Callable[[], bool]
    reload: Callable[[], str | None]  # returns an error message or None
    metrics: Callable[[], Payload]  # the latest pre-built exposition
    store: Callable[[], Any] | None = None  # for the silences API
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


MAX_BODY = 64 * 1024


def _json(start_response, body: Any, status: str = "200 OK") -> list[bytes]:
    data = json.dumps(body, ensure_ascii=False, default=str).encode()
    start_response(status, [("Content-Type", "application/json; charset=utf-8"),
                            ("Content-Length", str(len(data)))])
    return [data]


def _text(start_response, body: str, status: str = "200 OK",
          content_type: str = "text/plain; charset=utf-8") -> list[bytes]:
    data = body.encode()
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data)))])
    return [data]


class App:
    def __init__(self, ctx: ApiContext):
        self.ctx = ctx

    def metrics(self, environ: dict, start_response) -> list[bytes]:
        """The pre-built exposition; gzip when the scraper accepts it."""
        payload = self.ctx.metrics()
        body, headers = payload.plain, [("Content-Type", CONTENT_TYPE)]
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
            body = payload.gzipped
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(len(body))))
        start_response("200 OK", headers)
        return [body]

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", "/"), environ.get("REQUEST_METHOD", "GET")
        if path == "/metrics":
            return self.metrics(environ, start_response)
        if path == "/-/healthy":
            return _text(start_response, "OK\n")
        if path == "/-/ready":
            ready = self.ctx.ready()
            return _text(start_response, "Ready\n" if ready else "Not ready\n",
                         "200 OK" if ready else "503 Service Unavailable")
        if path == "/-/reload":
            if method not in ("POST", "PUT"):
                return _text(start_response, "use POST\n", "405 Method Not Allowed")
            error = self.ctx.reload()
            return (_text(start_response, "reloaded\n") if error is None
                    else _text(start_response, f"reload failed, old rules kept:\n{error}\n",
                               "500 Internal Server Error"))
        if path == "/api/v1/ranking":
            return self.ranking(environ, start_response)
        if path == "/api/v1/silences" or path.startswith("/api/v1/silences/"):
            return self.silences(environ, start_response, method, path)
        routes = {"/api/v1/alerts": self.alerts, "/api/v1/rules": self.rules,
                  "/api/v1/sources": self.sources, "/api/v1/goals": self.goals}
        if path in routes:
            return _json(start_response, {"status": "success", "data": routes[path]()})
        if path in ("/", "/status"):
            return _text(start_response, self.status_page(), content_type="text/html; "
                         "charset=utf-8")
        return _text(start_response, "not found\n", "404 Not Found")

    def silences(self, environ: dict, start_response, method: str, path: str) -> list[bytes]:
        """GET lists, POST creates or updates, DELETE /api/v1/silences/<id> expires."""
        from monitor import silences

        store, now = self.ctx.store() if self.ctx.store else None, self.ctx.clock()
        if store is None:
            return _json(start_response, {"status": "error", "error": "no store"},
                         "503 Service Unavailable")
        silence_id = path[len("/api/v1/silences/"):] if path.count("/") == 4 else ""
        try:
            if method == "GET" and not silence_id:
                every = [*self.ctx.runtime().silences, *silences.stored(store)]
                return _json(start_response, {"status": "success", "data": {
                    "silences": [s.as_dict(now) for s in every]}})
            if method == "POST" and not silence_id:
                size = int(environ.get("CONTENT_LENGTH") or 0)
                if size > MAX_BODY:
                    return _json(start_response, {"status": "error", "error": "body too large"},
                                 "413 Content Too Large")
                try:
                    body = json.loads(environ["wsgi.input"].read(size) or b"{}")
                except ValueError:
                    raise silences.SilenceError("the body is not JSON") from None
                silence = silences.parse_request(body, now)
                silences.save(store, silence, now)
                log.info("silence %s created by %s until %s: %s", silence.id,
                         silence.created_by, silence.ends_at.isoformat(),
                         ", ".join(silences.matcher_text(m) for m in silence.matchers))
                return _json(start_response, {"status": "success",
                                              "data": {"silenceID": silence.id}})
            if method == "DELETE" and silence_id:
                silences.expire(store, silence_id, now)
                log.info("silence %s expired", silence_id)
                return _json(start_response, {"status": "success", "data": {}})
        except silences.SilenceError as exc:
            status = "404 Not Found" if str(exc).startswith("no silence") else "400 Bad Request"
            return _json(start_response, {"status": "error", "error": str(exc)}, status)
        return _text(start_response, "use GET or POST on /api/v1/silences, DELETE on "
                                     "/api/v1/silences/<id>\n", "405 Method Not Allowed")

    def ranking(self, environ: dict, start_response) -> list[bytes]:
        """Segments ranked by ROAS over the last ``days`` complete days, with hints."""
        from urllib.parse import parse_qs

        from monitor.periods import Unit, period_start
        from monitor.ranking import rank_segments

        query = parse_qs(environ.get("QUERY_STRING", ""))
        by = [b for b in query.get("by", ["channel"])[0].split(",") if b]
        try:
            days = int(query.get("days", ["7"])[0])
        except ValueError:
            days = 0
        if not 1 <= days <= 366:
            return _json(start_response, {"status": "error", "error": "days: 1 to 366"},
                         "400 Bad Request")
        runtime, frame = self.ctx.runtime(), self.ctx.live().window.frame
        today = self.ctx.clock().astimezone(runtime.tz).date().toordinal()
        end = period_start(today, runtime.tz, Unit.DAY)
        start = period_start(today - days, runtime.tz, Unit.DAY)
        ranked = rank_segments(frame, by, start, end)
        return _json(start_response, {"status": "success", "data": {
            "by": by, "from": start.isoformat(), "to": end.isoformat(),
            "segments": ranked.to_dicts()}})

    def alerts(self) -> dict[str, Any]:
        live, runtime = self.ctx.live(), self.ctx.runtime()
        rules = with_builtin_rules(runtime.rules)
        views = AlertViews(rules, runtime.catalog, runtime.config.global_.external_url)
        known = {r.id for r in rules.rules}
        rows = live.alert_state.filter(live.alert_state["rule"].is_in(list(known)))
        out = []
        for row in rows.sort("active_at", descending=True).iter_rows(named=True):
            view = views.build(row)
            out.append({"state": row["state"], **view})
        return {"alerts": out}

    def rules(self) -> dict[str, Any]:
        live, runtime = self.ctx.live(), self.ctx.runtime()
        counts: dict[tuple[str, str], int] = {}
        for rule, state in live.alert_state.select("rule", "state").iter_rows():
            counts[(rule, state)] = counts.get((rule, state), 0) + 1
        groups = []
        for g in runtime.rules.groups:
            result = live.groups.get(g.name)
            errors = result.evaluation.errors if result else {}
            series: dict[str, dict[str, int]] = {}
            if result:
                for rule, status, n in series_counts(result.evaluation.candidates):
                    series.setdefault(rule, {})[status] = n
            groups.append({
                "name": g.name, "file": g.file,
                "lastEvaluation": result.evaluation.at.isoformat() if result else None,
                "evaluationTime": result.duration if result else None,
                "rules": [{
                    "id": r.id, "name": r.name,
                    "expr": r.spec.expr or r.spec.tiers.get(r.severity or "", ""),
                    "over": r.window.label, "by": list(r.by),
                    "for": format_duration(r.spec.for_), "labels": r.labels,
                    "health": "err" if r.id in errors else ("ok" if result else "unknown"),
                    "lastError": errors.get(r.id, ""),
                    "pending": counts.get((r.id, "pending"), 0),
                    "firing": counts.get((r.id, "firing"), 0),
                    "series": series.get(r.id, {}),
                } for r in g.rules],
            })
        return {"groups": groups}

    def goals(self) -> dict[str, Any]:
        return {"goals": self.ctx.live().goals.to_dicts()}

    def sources(self) -> dict[str, Any]:
        live = self.ctx.live()
        return {"sources": [{
            "name": name, "up": h.up, "lastSuccess": h.last_success, "lastError": h.last_error,
            "rows": h.rows, "rejected": h.rejected, "pollDuration": h.duration,
            "polls": h.polls, "failures": h.failures, "rowsTotal": h.rows_total,
            "rejectedTotal": h.rejected_total, "errors": dict(h.errors),
        } for name, h in sorted(live.sources.items())]}

    def status_page(self) -> str:
        alerts = self.alerts()["alerts"]
        sources = self.sources()["sources"]
        rows = "".join(
            f"<tr class='{html.escape(a['state'])}'><td>{html.escape(a['state'])}</td>"
            f"<td>{html.escape(a['labels']['alertname'])}</td>"
            f"<td>{html.escape(', '.join(f'{k}={v}' for k, v in a['labels'].items()))}</td>"
            f"<td>{html.escape(a['annotations'].get('summary', ''))}</td>"
            f"<td>{html.escape(a['startsAt'] or '')}</td></tr>" for a in alerts)
        src = "".join(
            f"<tr><td>{html.escape(s['name'])}</td><td>{'up' if s['up'] else 'DOWN'}</td>"
            f"<td>{html.escape(str(s['lastSuccess'] or ''))}</td>"
            f"<td>{html.escape(s['lastError'])}</td></tr>" for s in sources)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        return f"""<!doctype html><html><head><meta charset="utf-8"><title>kpimon</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border-bottom:1px solid #ddd;padding:.3em .8em;text-align:left}}
.firing td:first-child{{color:#c00;font-weight:bold}}.pending td:first-child{{color:#c80}}
.resolved td:first-child{{color:#080}}</style></head><body>
<h1>kpimon {__version__}</h1><p>{now} ·
<a href="/metrics">metrics</a> · <a href="/api/v1/alerts">alerts</a> ·
<a href="/api/v1/rules">rules</a> · <a href="/api/v1/sources">sources</a></p>
<h2>Alerts ({len(alerts)})</h2><table><tr><th>state</th><th>alert</th><th>labels</th>
<th>summary</th><th>active since</th></tr>{rows}</table>
<h2>Sources</h2><table><tr><th>source</th><th>state</th><th>last success</th>
<th>last error</th></tr>{src}</table></body></html>"""


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class HttpServer:
    """Serves the app on a background thread until ``stop``; TLS when given a context."""

    def __init__(self, host: str, port: int, app, tls: ssl.SSLContext | None = None):
        import socket

        server_class = _Server
        if ":" in host:
            class _V6(_Server):
                address_family = socket.AF_INET6
            server_class = _V6
        self.server = make_server(host, port, app, server_class=server_class,
                                  handler_class=_QuietHandler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, name="http",
                                       daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
