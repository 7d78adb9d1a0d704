"""csv and jsonl sources as real exports write them: Russian formats, bad rows, duplicates."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.errors import SourceError
from monitor.sources.csvfile import CsvConfig, CsvSource, detect_delimiter
from monitor.sources.jsonl import JsonlConfig, JsonlSource

START, END = datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)


def csv_source(tmp_path: Path, data: bytes, **kw) -> CsvSource:
    (tmp_path / "export.csv").write_bytes(data)
    kw.setdefault("dimensions", ["campaign"])
    kw.setdefault("measures", ["clicks", "cost"])
    cfg = CsvConfig(name="ads", type="csv", path="export.csv", **kw)
    return CsvSource(cfg, timezone="Europe/Moscow", base_dir=tmp_path)


def test_a_russian_export_cp1251_semicolons_decimal_comma_and_spaced_thousands(tmp_path):
    text = ("Дата;Кампания;Клики;Расход\n"
            "10.03.2026;Поиск бренд;1\u00a0234;12 345,67\n"
            "11.03.2026;Поиск бренд;987;9 876,5\n")
    src = csv_source(tmp_path, text.encode("cp1251"), timestamp="Дата",
                     timestamp_format="%d.%m.%Y", decimal=",",
                     dimensions={"campaign": "Кампания"},
                     measures={"clicks": "Клики", "cost": "Расход"})
    frame = src.poll(START, END)
    assert frame["campaign"].to_list() == ["Поиск бренд", "Поиск бренд"]
    assert frame["clicks"].to_list() == [1234.0, 987.0]
    assert frame["cost"].to_list() == [12345.67, 9876.5]
    assert frame["ts"][0] == datetime(2026, 3, 9, 21, tzinfo=UTC)  # Moscow midnight


def test_utf8_with_bom_and_tab_delimiter_are_detected(tmp_path):
    text = "\ufeffdate\tcampaign\tclicks\tcost\n2026-03-10\tbrand\t10\t5.5\n"
    frame = csv_source(tmp_path, text.encode("utf-8")).poll(START, END)
    assert frame.select("campaign", "clicks", "cost").rows() == [("brand", 10.0, 5.5)]


def test_thousands_separator_with_decimal_comma(tmp_path):
    text = "date;campaign;clicks;cost\n2026-03-10;brand;1.234;1.234.567,89\n"
    frame = csv_source(tmp_path, text.encode(), decimal=",", thousands=".").poll(START, END)
    assert frame.select("clicks", "cost").rows() == [(1234.0, 1234567.89)]


@pytest.mark.parametrize(("header", "expected"), [
    ("a,b,c", ","), ("a;b;c", ";"), ("a\tb\tc", "\t"), ("a|b|c", "|")])
def test_delimiter_detection(header, expected):
    assert detect_delimiter(f"{header}\n1{expected}2{expected}3\n") == expected


def test_utf8_only_source_names_the_encoding_problem(tmp_path):
    src = csv_source(tmp_path, "date,campaign,clicks,cost\n2026-03-10,Бренд,1,1\n"
                     .encode("cp1251"), encoding="utf-8")
    with pytest.raises(SourceError, match=r"not utf-8 .*set encoding: cp1251"):
        src.poll(START, END)


def test_every_kind_of_bad_value_is_named_by_row_and_field(tmp_path, caplog):
    text = ("date,campaign,clicks,cost\n"
            "2026-03-10,ok,1,1\n"
            "2026-03-10 10:00,naive,1,1\n"
            "2026-13-45,baddate,1,1\n"
            "2026-03-10,nan,NaN,1\n"
            "2026-03-10,inf,1,inf\n"
            "2026-03-10,neg,-1,1\n"
            "2026-03-10,text,12abc,1\n")
    src = csv_source(tmp_path, text.encode())
    frame = src.poll(START, END)
    assert frame["campaign"].to_list() == ["ok"]
    assert src.rejected == 6
    for expected in ["row 3 field 'date': timestamp without a time zone",
                     "row 4 field 'date': not a timestamp (2026-13-45)",
                     "row 5 field 'clicks': not finite (NaN)"]:
        assert expected in caplog.text


def test_offsets_and_utc_make_timestamps_aware_and_a_source_timezone_allows_naive(tmp_path):
    text = ("date,campaign,clicks,cost\n2026-03-10T10:00:00+03:00,a,1,1\n"
            "2026-03-10T08:00:00Z,b,1,1\n")
    frame = csv_source(tmp_path, text.encode()).poll(START, END)
    assert frame["ts"].to_list() == [datetime(2026, 3, 10, 7, tzinfo=UTC),
                                     datetime(2026, 3, 10, 8, tzinfo=UTC)]
    naive = "date,campaign,clicks,cost\n2026-03-10 10:00,a,1,1\n"
    frame = csv_source(tmp_path, naive.encode(), timezone="Asia/Yekaterinburg").poll(START, END)
    assert frame["ts"].to_list() == [datetime(2026, 3, 10, 5, tzinfo=UTC)]


DUPLICATED = ("date,campaign,clicks,cost\n2026-03-10,a,1,10\n2026-03-10,a,2,20\n"
              "2026-03-10,b,5,5\n")


def test_duplicate_keys_are_rejected_by_default(tmp_path, caplog):
    src = csv_source(tmp_path, DUPLICATED.encode())
    assert src.poll(START, END)["campaign"].to_list() == ["b"]
    assert src.rejected == 2
    assert "row 2 field 'date': duplicate key" in caplog.text


@pytest.mark.parametrize(("mode", "clicks"), [("sum", 3.0), ("last", 2.0)])
def test_duplicate_keys_can_be_summed_or_the_last_kept(tmp_path, mode, clicks):
    frame = csv_source(tmp_path, DUPLICATED.encode(), duplicates=mode).poll(START, END)
    assert frame.filter(campaign="a")["clicks"].to_list() == [clicks]


def test_strict_refuses_a_poll_with_one_bad_row(tmp_path):
    src = csv_source(tmp_path, (DUPLICATED + "2026-03-11,c,x,1\n").encode(), duplicates="sum",
                     strict=True)
    with pytest.raises(SourceError, match="1 row\\(s\\) rejected: row 5 field 'clicks': "
                                          "not a number \\(x\\)") as err:
        src.poll(START, END)
    assert err.value.kind == "rejected"


def jsonl_source(tmp_path: Path, lines: list[str], **kw) -> JsonlSource:
    (tmp_path / "stats.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = JsonlConfig(name="api_dump", type="jsonl", path="*.jsonl", **kw)
    return JsonlSource(cfg, timezone="UTC", base_dir=tmp_path)


def test_jsonl_dotted_paths_strings_as_numbers_and_broken_lines(tmp_path, caplog):
    lines = [json.dumps({"day": "2026-03-10", "campaign": {"name": "brand"},
                         "metrics": {"clicks": "1 200", "cost": 300.5}}),
             "{not json",
             json.dumps(["a list"]),
             "",
             json.dumps({"day": "2026-03-11", "campaign": {"name": "brand"},
                         "metrics": {"clicks": 7, "cost": "12,5"}})]
    src = jsonl_source(tmp_path, lines, timestamp="day", decimal=",",
                       dimensions={"campaign": "campaign.name"},
                       measures={"clicks": "metrics.clicks", "cost": "metrics.cost"})
    frame = src.poll(START, END)
    assert frame.select("campaign", "clicks", "cost").rows() == [
        ("brand", 1200.0, 300.5), ("brand", 7.0, 12.5)]
    assert src.rejected == 2
    assert "row 2: not JSON" in caplog.text and "row 3: not a JSON object" in caplog.text
