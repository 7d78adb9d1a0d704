"""Reports: periods, values on hand-computed data, the file a browser opens, and the
scheduled report delivered by email (aiosmtpd) with its charts inline."""

from __future__ import annotations

import base64
import re
import struct
import subprocess
import sys
import textwrap
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser

import pytest

from monitor.config import load_config
from monitor.history import load_history
from monitor.outbox import Sender
from monitor.report import bounds, build_report, queue_report, render
from monitor.runtime import build
from monitor.store import Store
from tests.conftest import write
from tests.test_email import smtp  # noqa: F401  (the aiosmtpd fixture)

AT = datetime(2026, 3, 11, 12, tzinfo=UTC)  # a Wednesday


def test_periods_are_the_last_complete_week_and_month():
    assert bounds("last-week", date(2026, 3, 11)) == (
        date(2026, 3, 2), date(2026, 3, 9), date(2026, 2, 23))
    assert bounds("last-month", date(2026, 3, 11)) == (
        date(2026, 2, 1), date(2026, 3, 1), date(2026, 1, 1))


class Page(HTMLParser):
    """What a browser would show: table rows, and the images with their sources."""

    def __init__(self):
        super().__init__()
        self.rows: dict[str, list[list[str]]] = {}
        self.images: list[str] = []
        self._table, self._row, self._cell = "", None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = attrs.get("class", "")
            self.rows[self._table] = []
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "img":
            self.images.append(attrs["src"])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._row is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows[self._table].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def ads_config(tmp_path, extra: str = "") -> object:
    lines = ["date,channel,cost,conversions,revenue,clicks,impressions"]
    for d in range(14):
        day = date(2026, 2, 23) + timedelta(days=d)
        this_week = day >= date(2026, 3, 2)
        for channel, cost, conv, rev in (("google", 1000, 4 if this_week else 5, 20000),
                                         ("meta", 1000, 1, 1500)):
            lines.append(f"{day},{channel},{cost},{conv},{rev},100,10000")
    write(tmp_path / "ads.csv", "\n".join(lines) + "\n")
    return write(tmp_path / "kpimon.yaml", textwrap.dedent("""
        global: {timezone: UTC, locale: en_US}
        store: {url: "sqlite:///k.db"}
        sources:
          - {name: ads, type: csv, path: ads.csv, dimensions: [channel],
             measures: [cost, conversions, revenue, clicks, impressions]}
        rule_files: []
        goals:
          - {name: cpa_google, kpi: cpa, target: 220, where: {channel: google}, owner: ppc}
          - {name: week_conversions, kpi: conversions, target: 50, period: week, owner: ppc}
    """) + extra)


def test_report_values_changes_plan_and_ranking_by_hand(tmp_path):
    rt = build(load_config(ads_config(tmp_path)))
    frame = load_history(rt, AT - timedelta(days=60), AT, poll=True)
    report = build_report(rt, frame, "last-week", AT, owner="ppc")
    rows = {r["title"]: {k: str(v).replace("\u00a0", " ") for k, v in r.items()}
            for r in report.rows}
    # google: 7 x 1000 spent, 28 conversions (35 the week before): CPA 250 against 220.
    assert rows["CPA · google"]["value"] == "RUB 250"
    assert rows["CPA · google"]["previous"] == "RUB 200"
    assert rows["CPA · google"]["change"] == "+25%"
    assert rows["CPA · google"]["plan_fact"] == "RUB 250 against a plan of RUB 220: 14% above plan"
    # 35 conversions this week (28 + 7) against a weekly plan of 50.
    assert rows["Conversions"]["plan_fact"] == "35 against a plan of 50: 30% below plan"
    # A ratio changes in percentage points, never in percent.
    assert rows["Conversion rate"]["value"] == "2.5%"
    assert rows["Conversion rate"]["change"] == "-0.5 pp"
    assert rows["Conversions"]["change"] == "-17%"  # 35 against 42
    ranking = {r["segment"]: r for r in report.ranking}
    assert ranking["google"]["decision"] == "scale" and ranking["meta"]["decision"] == "cut"
    assert list(ranking) == ["google", "meta"]  # by ROAS, best first
    assert set(report.charts) >= {"conversions", "cpa"}


def test_kpimon_report_writes_a_page_with_the_table_and_the_charts(tmp_path):
    config = ads_config(tmp_path)
    out = tmp_path / "week.html"
    result = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "report", "-c", str(config), "--period",
         "last-week", "--at", AT.isoformat(), "--out", str(out)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    page = Page()
    page.feed(out.read_text(encoding="utf-8"))
    header, *rows = page.rows["kpis"]
    assert header[:4] == ["KPI", "Value", "Previous", "Change"]
    assert len(rows) >= 6
    assert page.images and all(src.startswith("data:image/png;base64,") for src in page.images)
    for src in page.images:
        width, height = png_size(base64.b64decode(src.split(",", 1)[1]))
        assert (width, height) == (704, 286)
    assert page.rows["ranking"][1][0] == "google"


def test_report_argument_errors(tmp_path):
    config = ads_config(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "report", "-c", str(config), "--owner", "nobody",
         "--at", AT.isoformat(), "--out", str(tmp_path / "x.html")],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "no goals or funnels for owner 'nobody'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_scheduled_report_goes_out_by_email_with_inline_charts(tmp_path, smtp):  # noqa: F811
    inbox, port, ca = smtp
    config = ads_config(tmp_path, extra=textwrap.dedent(f"""
        receivers:
          - name: mail
            type: email
            smarthost: 127.0.0.1:{port}
            from: kpimon@example.com
            to: [ppc@example.com]
            username: kpimon
            password: pa55
            ca_file: {ca}
        route: {{receiver: mail}}
        reports:
          - {{name: weekly_ppc, period: last-week, owner: ppc, receivers: [mail]}}
    """))
    rt = build(load_config(config))
    store = Store(rt.config.store.url, rt.loaded.base_dir)
    frame = load_history(rt, AT - timedelta(days=60), AT, poll=True)
    assert queue_report(rt, store, frame, rt.config.reports[0], AT) == 1
    assert Sender(store, rt.notifiers).drain(AT) == 1
    [msg] = inbox.messages
    assert msg["Subject"] == "Weekly report: 02.03.2026 – 08.03.2026"
    html = msg.get_body(("html",)).get_content()
    cids = re.findall(r'src="cid:([^"]+)"', html)
    images = {part["Content-ID"].strip("<>"): part.get_content()
              for part in msg.walk() if part.get_content_type() == "image/png"}
    assert cids and set(cids) == set(images)
    assert all(png_size(data) == (704, 286) for data in images.values())
    text = msg.get_body(("plain",)).get_content().replace("\u00a0", " ")
    assert "CPA · google: RUB 250 (+25% vs previous)" in text
    store.close()


def test_reports_need_a_receiver_that_takes_them(tmp_path):
    config = ads_config(tmp_path, extra=textwrap.dedent("""
        receivers: [{name: hook, type: webhook, url: "http://127.0.0.1:9/x"}]
        route: {receiver: hook}
        reports: [{name: r, receivers: [hook]}]
    """))
    from monitor.errors import ConfigError

    with pytest.raises(ConfigError, match="a webhook receiver cannot take reports"):
        load_config(config)


def test_rendered_report_has_a_summary_for_chat(tmp_path):
    rt = build(load_config(ads_config(tmp_path)))
    frame = load_history(rt, AT - timedelta(days=60), AT, poll=True)
    rendered = render(rt, build_report(rt, frame, "last-week", AT, owner="ppc"))
    assert "• Conversions: 35 (-17% vs previous)" in rendered["text"]
    assert "→ google: shift budget here" in rendered["text"]
