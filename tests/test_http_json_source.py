"""The http_json source against a real local HTTP server that pages, throttles and fails."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from werkzeug import Request, Response

from monitor.errors import SourceError
from monitor.sources.http_json import HttpJsonConfig, HttpJsonSource

START, END = datetime(2026, 3, 9, 21, tzinfo=UTC), datetime(2026, 3, 12, 9, tzinfo=UTC)
RECORDS = [{"date": f"2026-03-{10 + i // 3}", "campaign": {"name": f"c{i % 3}"},
            "stats": {"clicks": str(100 + i), "cost": f"{i},5"}} for i in range(7)]


def source(httpserver, waits: list[float] | None = None, **kw) -> HttpJsonSource:
    kw.setdefault("url", httpserver.url_for("/v1/stats") + "?account=42")
    cfg = HttpJsonConfig(name="ads_api", type="http_json", decimal=",",
                         dimensions={"campaign": "campaign.name"},
                         measures={"clicks": "stats.clicks", "cost": "stats.cost"}, **kw)
    return HttpJsonSource(cfg, timezone="Europe/Moscow",
                          sleep=(waits.append if waits is not None else lambda s: None))


def json_response(body: object, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers,
                    content_type="application/json")


def test_offset_paging_time_placeholders_headers_and_numbers_as_strings(httpserver):
    seen = []

    def handler(request: Request) -> Response:
        seen.append(dict(request.args))
        assert request.headers["Authorization"] == "Bearer t0ken"
        offset, limit = int(request.args["offset"]), int(request.args["limit"])
        return json_response({"data": {"rows": RECORDS[offset:offset + limit]}})

    httpserver.expect_request("/v1/stats").respond_with_handler(handler)
    src = source(httpserver, records="data.rows", headers={"Authorization": "Bearer t0ken"},
                 params={"from": "{start_date}", "to": "{end_date}", "since": "{start}"},
                 pagination={"type": "offset", "limit": 3})
    frame = src.poll(START, END)
    assert frame.height == 7
    assert frame["clicks"].to_list() == [float(100 + i) for i in range(7)]
    assert frame["cost"].to_list()[:2] == [0.5, 1.5]
    assert [s["offset"] for s in seen] == ["0", "3", "6"]
    # Dates are local (Moscow) days; the query string of the configured URL is kept.
    assert seen[0]["from"] == "2026-03-10" and seen[0]["to"] == "2026-03-12"
    assert seen[0]["since"] == "2026-03-09T21:00:00Z" and seen[0]["account"] == "42"


def test_page_token_paging(httpserver):
    pages = {"": (RECORDS[:4], "p2"), "p2": (RECORDS[4:], None)}

    def handler(request: Request) -> Response:
        rows, token = pages[request.args.get("page_token", "")]
        return json_response({"items": rows, "paging": {"next": token}})

    httpserver.expect_request("/v1/stats").respond_with_handler(handler)
    src = source(httpserver, records="items",
                 pagination={"type": "token", "token_path": "paging.next"})
    assert src.poll(START, END).height == 7


def test_next_link_paging_from_the_link_header(httpserver):
    def first(request: Request) -> Response:
        return json_response(RECORDS[:5], headers={"Link": '</v1/stats/p2>; rel="next"'})

    httpserver.expect_request("/v1/stats").respond_with_handler(first)
    httpserver.expect_request("/v1/stats/p2").respond_with_json(RECORDS[5:])
    src = source(httpserver, pagination={"type": "next_link"})
    assert src.poll(START, END).height == 7


def test_429_honours_retry_after_and_5xx_backs_off(httpserver, caplog):
    answers = iter([(429, {"Retry-After": "7"}), (503, {}), (502, {}), (200, {})])

    def handler(request: Request) -> Response:
        status, headers = next(answers)
        return json_response(RECORDS if status == 200 else {"error": "busy"}, status, headers)

    httpserver.expect_request("/v1/stats").respond_with_handler(handler)
    waits: list[float] = []
    src = source(httpserver, waits, backoff="1s")
    assert src.poll(START, END).height == 7
    assert waits == [7.0, 2.0, 4.0]  # Retry-After, then the doubling backoff
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("monitor"))
    assert "HTTP 429" in ours and "account=42" not in ours


def test_retries_give_up_with_a_clear_error(httpserver):
    httpserver.expect_request("/v1/stats").respond_with_data("oops", status=500)
    with pytest.raises(SourceError, match=r"HTTP 500 .*after 3 attempts") as err:
        source(httpserver, retries=2).poll(START, END)
    assert err.value.kind == "http"


def test_401_fails_at_once_without_leaking_the_token(httpserver):
    httpserver.expect_request("/v1/stats").respond_with_data("no", status=401)
    waits: list[float] = []
    with pytest.raises(SourceError) as err:
        source(httpserver, waits, headers={"Authorization": "Bearer s3cret"},
               url=httpserver.url_for("/v1/stats") + "?token=s3cret").poll(START, END)
    assert err.value.kind == "auth" and waits == []
    assert "s3cret" not in str(err.value) and "HTTP 401" in str(err.value)


def test_a_timeout_is_retried_then_reported(httpserver):
    import time

    def slow(request: Request) -> Response:
        time.sleep(0.5)
        return json_response(RECORDS)

    httpserver.expect_request("/v1/stats").respond_with_handler(slow)
    with pytest.raises(SourceError, match="timed out") as err:
        source(httpserver, retries=1, timeout="100ms").poll(START, END)
    assert err.value.kind == "timeout"


def test_records_path_that_is_not_a_list(httpserver):
    httpserver.expect_request("/v1/stats").respond_with_json({"data": {"rows": "none"}})
    with pytest.raises(SourceError, match=r"records path 'data\.rows' is not a list"):
        source(httpserver, records="data.rows").poll(START, END)
