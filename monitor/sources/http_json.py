"""The ``http_json`` source: a JSON HTTP API, page by page.

Query parameters and the body take time placeholders ({start_date}, {end}…);
headers take secrets from the environment (``${ADS_TOKEN}`` in the config) and
never appear in logs or errors, nor does the query string. Records are found at
a dotted path and mapped by dotted field paths; numbers sent as strings are
parsed. 429 and 5xx answers and network errors are retried with exponential
backoff, honouring Retry-After; other 4xx answers fail the poll at once.
Pagination follows offset/limit, page numbers, a page token or a next link.
"""

from __future__ import annotations

import email.utils
import logging
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urljoin, urlsplit
from zoneinfo import ZoneInfo

import polars as pl
import requests
from pydantic import BaseModel, ConfigDict, Field

from monitor.durations import Duration
from monitor.errors import SourceError
from monitor.sources.base import TS, SourceConfig
from monitor.sources.jsonl import dig, records_frame
from monitor.sources.tabular import TabularConfig, TabularSource, parse_records, report

log = logging.getLogger(__name__)
PLACEHOLDER = re.compile(r"\{(start|end)(_date|_epoch|_epoch_ms)?\}")


class Pagination(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["none", "offset", "page", "token", "next_link"] = "none"
    limit: int = Field(default=100, gt=0, description="Page size sent in limit_param.")
    limit_param: str = "limit"
    offset_param: str = Field(default="offset", description="offset: the records skipped.")
    page_param: str = Field(default="page", description="page: the page number, from 1.")
    token_path: str = Field(default="next_page_token", description="token: dotted path of the "
                            "next token in the answer; empty or missing ends the paging.")
    token_param: str = "page_token"
    next_path: str | None = Field(default=None, description="next_link: dotted path of the next "
                                  "URL in the answer; the Link header when omitted.")
    max_pages: int = Field(default=1000, gt=0)


class HttpJsonConfig(TabularConfig):
    type: Literal["http_json"] = "http_json"
    url: str = Field(pattern=r"^https?://")
    method: Literal["GET", "POST"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict, description="Use ${ENV} for tokens.")
    params: dict[str, str | int | float] = Field(default_factory=dict, description="Query "
                                                 "parameters; {start_date}, {end_date}, {start}, "
                                                 "{end}, {start_epoch} are filled in.")
    body: dict[str, Any] | None = Field(default=None, description="JSON body for POST, with the "
                                        "same placeholders in its string values.")
    records: str = Field(default="", description="Dotted path of the record list in the "
                         "answer; empty when the answer is the list.")
    pagination: Pagination = Field(default_factory=Pagination)
    timeout: Duration = Field(default="30s", description="Per request.")
    retries: int = Field(default=4, ge=0, description="Retries after 429, 5xx or a network "
                         "error.")
    backoff: Duration = Field(default="1s", description="First retry delay; doubles each time.")
    max_backoff: Duration = Field(default="2m", description="Longest wait, Retry-After included.")


class HttpJsonSource(TabularSource):
    config_model: ClassVar[type[SourceConfig]] = HttpJsonConfig

    def __init__(self, config: HttpJsonConfig, *, timezone: str, base_dir: Path | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        super().__init__(config, timezone=timezone, base_dir=base_dir)
        self.sleep = sleep
        parts = urlsplit(config.url)
        port = f":{parts.port}" if parts.port else ""
        self.safe_url = f"{parts.scheme}://{parts.hostname}{port}{parts.path}"  # no query or user
        self.session = requests.Session()

    def poll(self, start: datetime, end: datetime) -> pl.DataFrame:
        values = self._placeholders(start, end)
        records: list[object] = []
        for page in self._pages(values):
            records.extend(page)
        raw = records_frame(records, list(range(1, len(records) + 1)), self.config.fields())
        parsed = parse_records(raw, self.config, self.tz)
        report(parsed, self.name, self.safe_url, self.config.strict)
        self.rejected = parsed.rejected
        return parsed.frame.filter((pl.col(TS) >= start) & (pl.col(TS) < end))

    # --- paging -------------------------------------------------------------------

    def _pages(self, values: dict[str, str]) -> Iterator[list[object]]:
        cfg, paging = self.config, self.config.pagination
        params = {k: fill(v, values) for k, v in cfg.params.items()}
        body = fill(cfg.body, values) if cfg.body is not None else None
        url, offset, number, seen = cfg.url, 0, 1, 0
        while True:
            page_params = dict(params)
            if paging.type in ("offset", "page"):
                page_params[paging.limit_param] = paging.limit
                if paging.type == "offset":
                    page_params[paging.offset_param] = offset
                else:
                    page_params[paging.page_param] = number
            # A next link carries its own query string.
            answer = self._request(url, page_params if url == cfg.url else None, body)
            document = self._json(answer)
            page = dig(document, cfg.records)
            if not isinstance(page, list):
                raise SourceError(f"source {self.name!r}: {self.safe_url}: records path "
                                  f"{cfg.records or '<root>'!r} is not a list", kind="parse")
            yield page
            seen += 1
            if seen >= paging.max_pages:
                log.warning("source %s: stopped after max_pages=%d", self.name, paging.max_pages)
                return
            if paging.type in ("offset", "page"):
                if len(page) < paging.limit:
                    return
                offset, number = offset + len(page), number + 1
            elif paging.type == "token":
                token = dig(document, paging.token_path)
                if not token:
                    return
                params[paging.token_param] = str(token)
            elif paging.type == "next_link":
                link = (dig(document, paging.next_path) if paging.next_path
                        else answer.links.get("next", {}).get("url"))
                if not link:
                    return
                url = urljoin(answer.url, str(link))
            else:
                return

    # --- one request with retries -----------------------------------------------------

    def _request(self, url: str, params: dict | None, body: Any) -> requests.Response:
        cfg = self.config
        delay = cfg.backoff.total_seconds()
        for attempt in range(cfg.retries + 1):
            last = attempt == cfg.retries
            try:
                answer = self.session.request(cfg.method, url, params=params, json=body,
                                              headers=cfg.headers,
                                              timeout=cfg.timeout.total_seconds())
            except requests.Timeout:
                problem, kind, wait = "timed out", "timeout", delay
            except requests.RequestException as exc:
                problem, kind, wait = f"cannot connect ({type(exc).__name__})", "connect", delay
            else:
                if answer.ok:
                    return answer
                status = answer.status_code
                problem, kind = f"HTTP {status} {answer.reason}", "http"
                if status == 429 or status >= 500:
                    wait = retry_after(answer.headers.get("Retry-After"), delay)
                else:
                    kind = "auth" if status in (401, 403) else "http"
                    raise SourceError(f"source {self.name!r}: {self.safe_url}: {problem}",
                                      kind=kind)
            if last:
                raise SourceError(f"source {self.name!r}: {self.safe_url}: {problem} "
                                  f"(after {cfg.retries + 1} attempts)", kind=kind)
            wait = min(wait, cfg.max_backoff.total_seconds())
            log.warning("source %s: %s: %s; retrying in %.1f s", self.name, self.safe_url,
                        problem, wait)
            self.sleep(wait)
            delay *= 2
        raise AssertionError("unreachable")

    def _json(self, answer: requests.Response) -> object:
        try:
            return answer.json()
        except ValueError:
            raise SourceError(f"source {self.name!r}: {self.safe_url}: the answer is not JSON "
                              f"({answer.headers.get('Content-Type', 'no content type')})",
                              kind="parse") from None

    def _placeholders(self, start: datetime, end: datetime) -> dict[str, str]:
        zone = ZoneInfo(self.tz)
        out = {}
        for name, t in (("start", start), ("end", end)):
            out[name] = t.astimezone(UTC).isoformat().replace("+00:00", "Z")
            out[f"{name}_date"] = t.astimezone(zone).date().isoformat()
            out[f"{name}_epoch"] = str(int(t.timestamp()))
            out[f"{name}_epoch_ms"] = str(int(t.timestamp() * 1000))
        return out


def fill(value: Any, values: dict[str, str]) -> Any:
    """Placeholders filled in strings, recursively through lists and objects."""
    if isinstance(value, str):
        return PLACEHOLDER.sub(lambda m: values[m.group(0)[1:-1]], value)
    if isinstance(value, dict):
        return {k: fill(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, values) for v in value]
    return value


def retry_after(header: str | None, default: float) -> float:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date)."""
    if not header:
        return default
    if header.strip().isdigit():
        return float(header.strip())
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return default
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
