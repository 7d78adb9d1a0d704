"""The csv source: mapping, time zones, and bad rows rejected with clear messages."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.errors import SourceError
from monitor.sources.csvfile import CsvConfig, CsvSource

GOOD = """date,channel,campaign,impressions,clicks,cost,conversions
2026-03-10,google,brand,1000,50,500.5,5
2026-03-11,google,brand,1200,60,600,6
2026-03-11,yandex,search,800,20,300,1
"""


def source(tmp_path: Path, text: str, **kw) -> CsvSource:
    (tmp_path / "ads.csv").write_text(text, encoding="utf-8")
    cfg = CsvConfig(name="ads", type="csv", path="ads.csv",
                    dimensions=["channel", "campaign"],
                    measures=["impressions", "clicks", "cost", "conversions"], **kw)
    return CsvSource(cfg, timezone="Europe/Moscow", base_dir=tmp_path)


START, END = datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)


def test_reads_rows_with_local_dates_as_utc_instants(tmp_path):
    frame = source(tmp_path, GOOD).poll(START, END)
    assert frame.height == 3
    # Midnight in Moscow is 21:00 UTC the day before.
    assert frame["ts"][0] == datetime(2026, 3, 9, 21, 0, tzinfo=UTC)
    assert frame["cost"].to_list() == [500.5, 600.0, 300.0]
    assert frame["channel"].to_list() == ["google", "google", "yandex"]


def test_poll_range_filters_rows(tmp_path):
    frame = source(tmp_path, GOOD).poll(datetime(2026, 3, 10, 21, tzinfo=UTC), END)
    assert frame.height == 2


def test_missing_column_is_a_clear_error(tmp_path):
    text = GOOD.replace("conversions", "convs")
    with pytest.raises(SourceError, match=r"source 'ads': .*ads.csv: missing field\(s\) "
                                          "conversions"):
        source(tmp_path, text).poll(START, END)


def test_bad_rows_are_rejected_and_good_rows_kept(tmp_path):
    text = GOOD + "2026-03-12,google,brand,abc,10,100,1\n2026-03-12,meta,feed,10,-3,1,0\n" \
                  "yesterday,meta,feed,1,1,1,1\n"
    src = source(tmp_path, text)
    frame = src.poll(START, END)
    assert frame.height == 3
    assert src.rejected == 3


def test_rejection_messages_name_row_and_field(tmp_path, caplog):
    text = GOOD + "2026-03-12,google,brand,abc,10,100,1\n"
    source(tmp_path, text).poll(START, END)
    assert "row 5 field 'impressions': not a number (abc)" in caplog.text


def test_strict_source_refuses_the_whole_poll(tmp_path):
    text = GOOD + "2026-03-12,meta,feed,10,-3,1,0\n"
    with pytest.raises(SourceError, match="row 5 field 'clicks': negative count"):
        source(tmp_path, text, strict=True).poll(START, END)


def test_no_matching_file(tmp_path):
    cfg = CsvConfig(name="ads", type="csv", path="none-*.csv", measures=["cost"])
    with pytest.raises(SourceError, match="no file matches"):
        CsvSource(cfg, timezone="UTC", base_dir=tmp_path).poll(START, END)
