"""The command line: ``kpimon run | check | eval | backtest | report | notify | silence | test
| schema``.

Exit codes:
  0  success
  1  a runtime failure (a store that cannot be opened, a port in use), or failed rule tests
  2  invalid config, rule or template files, or invalid arguments
  130 interrupted
User errors print ``error: ...`` and never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime

from monitor import __version__, silencecmd
from monitor.durations import parse_time
from monitor.errors import ConfigError, KpimonError

EXIT_CODES = """exit codes:
  0    success
  1    runtime failure (store, network, port in use), or a rule test failed
  2    invalid config, rule or template files, or invalid arguments
  130  interrupted"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kpimon", description="Watch marketing KPIs: poll sources, "
                                "evaluate rules, export metrics, send notifications.",
                                epilog=EXIT_CODES, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--version", action="version", version=f"kpimon {__version__}")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon", epilog=EXIT_CODES)
    run.add_argument("-c", "--config", required=True)
    run.add_argument("--listen", help="override server.listen (host:port)")

    check = sub.add_parser("check", help="validate config, rules and templates",
                           epilog=EXIT_CODES)
    check.add_argument("-c", "--config", required=True)

    ev = sub.add_parser("eval", help="evaluate every rule once and print the result",
                        epilog=EXIT_CODES)
    ev.add_argument("-c", "--config", required=True)
    ev.add_argument("--at", help="evaluation time, ISO 8601 (default: now)")
    ev.add_argument("--rule", help="only this rule")
    ev.add_argument("--format", choices=["table", "json"], default="table")
    ev.add_argument("--no-poll", action="store_true",
                    help="use stored data only (default: also poll sources, without storing)")

    bt = sub.add_parser("backtest", help="replay history: every alert that would have fired",
                        epilog=EXIT_CODES)
    bt.add_argument("-c", "--config", required=True)
    bt.add_argument("--from", dest="start", required=True, help="ISO 8601 time or date")
    bt.add_argument("--to", dest="end", help="ISO 8601 time or date (default: now)")
    bt.add_argument("--step", default="1h", help="evaluation step (default 1h)")
    bt.add_argument("--format", choices=["table", "json"], default="table")
    bt.add_argument("--no-poll", action="store_true",
                    help="use stored data only (default: also poll sources, without storing)")

    notify = sub.add_parser("notify", help="notification tools", epilog=EXIT_CODES)
    notify_sub = notify.add_subparsers(dest="notify_command", required=True, metavar="ACTION")
    ntest = notify_sub.add_parser("test", help="send a sample message to one receiver")
    ntest.add_argument("-c", "--config", required=True)
    ntest.add_argument("--receiver", required=True)
    ntest.add_argument("--status", choices=["firing", "resolved"], default="firing")

    silencecmd.add_parser(sub)

    report = sub.add_parser("report", help="render a weekly or monthly report to an HTML file",
                            epilog=EXIT_CODES)
    report.add_argument("-c", "--config", required=True)
    report.add_argument("--period", choices=["last-week", "last-month"], default="last-week")
    report.add_argument("--owner", help="only this owner's goals and funnels")
    report.add_argument("--locale", help="ru_RU or en_US (default: global.locale)")
    report.add_argument("--at", help="as if run at this time, ISO 8601 (default: now)")
    report.add_argument("--out", required=True, metavar="FILE.html")
    report.add_argument("--no-poll", action="store_true",
                        help="use stored data only (default: also poll sources, without storing)")

    test = sub.add_parser("test", help="run rule unit tests", epilog=EXIT_CODES)
    test.add_argument("files", nargs="+", metavar="FILE")
    test.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report")

    schema = sub.add_parser("schema", help="print the JSON Schema of the config or rule files")
    schema.add_argument("kind", choices=["config", "rules", "tests"], nargs="?",
                        default="config")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                        datefmt="%Y-%m-%dT%H:%M:%S%z")
    # The scheduler logs every job run at INFO: useful only when debugging it.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.root.level))
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"error: invalid configuration ({len(exc.problems)} problem(s)):", file=sys.stderr)
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return exc.exit_code
    except KpimonError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def cmd_run(args: argparse.Namespace) -> int:
    from monitor.daemon import Daemon

    listen = None
    if args.listen:
        host, _, port = args.listen.rpartition(":")
        listen = (host.strip("[]") or "127.0.0.1", int(port))
    try:
        daemon = Daemon(args.config, listen=listen)
    except OSError as exc:
        raise KpimonError(f"cannot listen: {exc.strerror}") from None
    daemon.run_forever()
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from monitor.config import load_config
    from monitor.goals import MAX_KPIS_PER_GOAL
    from monitor.resources import rules_dir
    from monitor.runtime import build

    rt = build(load_config(args.config))
    builtin = str(rules_dir())
    own = [w for w in rt.rules.warnings if not w.file.startswith(builtin)]
    for warning in own:
        print(f"warning: {warning}", file=sys.stderr)
    for goal in rt.config.goals:
        tracked = 1 + len(goal.supporting)
        if tracked > MAX_KPIS_PER_GOAL:
            print(f"warning: goal {goal.name!r} tracks {tracked} KPIs; keep 3 to 5 per goal, "
                  "one main and a few supporting, or what matters gets lost", file=sys.stderr)
    idle = len(rt.rules.warnings) - len(own)
    if idle:
        print(f"note: {idle} rule(s) of the built-in pack group by labels no source has yet "
              "(they start working when a source provides them)", file=sys.stderr)
    print(f"{args.config}: ok: {len(rt.sources)} source(s), {len(rt.rules.rules)} rule(s) in "
          f"{len(rt.rules.groups)} group(s), {len(rt.notifiers)} receiver(s)")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from monitor.evalcmd import run_eval

    at = parse_time(args.at, "--at") if args.at else datetime.now(UTC)
    rows = run_eval(args.config, at, rule=args.rule, poll=not args.no_poll)
    if args.format == "json":
        print(json.dumps({"at": at.isoformat(), "results": rows}, ensure_ascii=False, indent=2))
    else:
        from monitor.evalcmd import table

        print(table(rows))
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    from monitor import backtest
    from monitor.durations import parse_duration

    end = parse_time(args.end, "--to") if args.end else datetime.now(UTC)
    try:
        step = parse_duration(args.step)
    except ValueError as exc:
        raise ConfigError(f"--step: {exc}") from None
    progress = sys.stderr if sys.stderr.isatty() else None
    report = backtest.run(args.config, parse_time(args.start, "--from"), end, step,
                          poll=not args.no_poll, progress=progress)
    if args.format == "json":
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        print(backtest.table(report))
    return 0


def cmd_notify(args: argparse.Namespace) -> int:
    from monitor.config import load_config
    from monitor.runtime import SAMPLE, build
    from notifiers.base import DeliveryError, Notification

    rt = build(load_config(args.config))
    if args.receiver not in rt.notifiers:
        raise KpimonError(f"no receiver named {args.receiver!r} (receivers: "
                          f"{', '.join(rt.notifiers)})")
    alert = {**SAMPLE.alerts[0], "status": args.status}
    sample = Notification(args.receiver, args.status, (alert,), SAMPLE.group_labels)
    try:
        rt.notifiers[args.receiver].send(sample)
    except DeliveryError as exc:
        raise KpimonError(f"{exc} ({'will be retried' if exc.retryable else 'permanent'} "
                          "for real messages)") from None
    print(f"sent a sample {args.status} message to {args.receiver}")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from monitor.ruletest import run

    failed, report = run(args.files, args.junit)
    print(report)
    return 1 if failed else 0


def cmd_schema(args: argparse.Namespace) -> int:
    from monitor.config import Config
    from monitor.rulefile import RuleFileSpec
    from monitor.ruletest import TestFile

    model = {"config": Config, "rules": RuleFileSpec, "tests": TestFile}[args.kind]
    print(json.dumps(model.model_json_schema(by_alias=True), indent=2))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from monitor.report import run_report

    at = parse_time(args.at, "--at") if args.at else datetime.now(UTC)
    path = run_report(args.config, args.period, args.out, at, args.owner, args.locale,
                      poll=not args.no_poll)
    print(f"wrote {path}")
    return 0


COMMANDS = {"run": cmd_run, "check": cmd_check, "eval": cmd_eval, "backtest": cmd_backtest,
            "notify": cmd_notify, "test": cmd_test, "silence": silencecmd.run,
            "report": cmd_report,
            "schema": cmd_schema}

if __name__ == "__main__":
    sys.exit(main())
