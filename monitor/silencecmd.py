"""``kpimon silence add | list | expire``: silences through a running daemon's API.

Like amtool, the command talks to the daemon over HTTP, so a silence takes
effect at the next evaluation and is persisted in the daemon's store. The
daemon's address is ``--url``, or ``server.listen`` of the config given with
``-c``, or http://127.0.0.1:8464.
"""

from __future__ import annotations

import argparse
import getpass
import os
from datetime import UTC, datetime

import requests
import yaml

from monitor.durations import parse_duration, parse_time
from monitor.errors import KpimonError, UsageError

DEFAULT_URL = "http://127.0.0.1:8464"


def add_parser(sub) -> None:
    silence = sub.add_parser("silence", help="add, list or expire silences on a running daemon")
    actions = silence.add_subparsers(dest="silence_command", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_mutually_exclusive_group()
    where.add_argument("--url", help=f"the daemon's address (default {DEFAULT_URL})")
    where.add_argument("-c", "--config", help="take the address from this config's "
                                              "server.listen")
    add = actions.add_parser("add", parents=[common], help="silence alerts matching every "
                             'matcher, e.g. campaign="brand" severity=~"warning|info"')
    add.add_argument("matchers", nargs="+", metavar="MATCHER")
    until = add.add_mutually_exclusive_group()
    until.add_argument("--duration", default="1h", help="how long (default 1h)")
    until.add_argument("--end", help="end time, ISO 8601 with an offset")
    add.add_argument("--start", help="start time, ISO 8601 with an offset (default now)")
    add.add_argument("--comment", default="", help="why: shown to whoever wonders")
    add.add_argument("--author", default=os.environ.get("USER") or getpass.getuser(),
                     help="who (default $USER)")
    actions.add_parser("list", parents=[common], help="list silences and their state")
    expire = actions.add_parser("expire", parents=[common], help="end silences now")
    expire.add_argument("ids", nargs="+", metavar="ID")


def run(args: argparse.Namespace) -> int:
    base = _base_url(args)
    if args.silence_command == "add":
        start = parse_time(args.start, "--start") if args.start else datetime.now(UTC)
        if args.end:
            end = parse_time(args.end, "--end")
        else:
            try:
                end = start + parse_duration(args.duration)
            except ValueError as exc:
                raise UsageError(f"--duration: {exc}") from None
        body = {"matchers": args.matchers, "startsAt": start.isoformat(),
                "endsAt": end.isoformat(), "createdBy": args.author, "comment": args.comment}
        data = _call("POST", f"{base}/api/v1/silences", json=body)
        print(data["silenceID"])
    elif args.silence_command == "list":
        data = _call("GET", f"{base}/api/v1/silences")
        rows = [(s["id"], s["status"]["state"], s["endsAt"], s["createdBy"],
                 " ".join(s["matchers"]), s["comment"]) for s in data["silences"]]
        header = ("ID", "STATE", "ENDS", "BY", "MATCHERS", "COMMENT")
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(5)]
        for row in [header, *rows]:
            print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=False))
                  + "  " + str(row[5]))
    else:
        for silence_id in args.ids:
            _call("DELETE", f"{base}/api/v1/silences/{silence_id}")
            print(f"expired {silence_id}")
    return 0


def _base_url(args: argparse.Namespace) -> str:
    if args.url:
        return args.url.rstrip("/")
    if args.config:
        # Only the address is needed: read server.listen without validating the rest,
        # so the command works without the daemon's secrets in the environment.
        try:
            with open(args.config, encoding="utf-8") as f:
                document = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise UsageError(f"cannot read {args.config}: {exc}") from None
        listen = str((document.get("server") or {}).get("listen", "127.0.0.1:8464"))
        host, _, port = listen.rpartition(":")
        return f"http://{'127.0.0.1' if host in ('', '0.0.0.0') else host}:{port}"
    return DEFAULT_URL


def _call(method: str, url: str, **kwargs) -> dict:
    try:
        answer = requests.request(method, url, timeout=10, **kwargs)
    except requests.RequestException as exc:
        raise KpimonError(f"cannot reach kpimon at {url.split('/api/')[0]}: "
                          f"{type(exc).__name__}") from None
    try:
        body = answer.json()
    except ValueError:
        raise KpimonError(f"{url}: HTTP {answer.status_code}: not a kpimon API answer") \
            from None
    if body.get("status") != "success":
        raise KpimonError(f"HTTP {answer.status_code}: {body.get('error', 'failed')}")
    return body["data"]
