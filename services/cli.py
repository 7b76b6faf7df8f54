"""``dns-cert-checker``: the original's command line, plus the services of the distributed mode.

    dns-cert-checker [--from-zones-json zones.json] -o out.csv [--config config.json]   (as the original)
    dns-cert-checker run ...                 the same job, with progress and a summary
    dns-cert-checker fetch-zones -o zones.json
    dns-cert-checker collector|resolver|scanner|reporter ...   (distributed mode, over AMQP_URL)

Bad input (config, zones JSON) is one line on stderr naming file, place and problem; exit 2.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from shared.config import Config, ConfigError, default_config_path, load_config
from shared.logging import setup_logging
from shared.signals import stop_on_signals
from shared.transport import open_amqp

if TYPE_CHECKING:
    from services.collector.service import CollectorOptions

EXIT_OK = 0
EXIT_INCOMPLETE = 1
EXIT_BAD_INPUT = 2
SUBCOMMANDS = ("run", "fetch-zones", "collector", "resolver", "scanner", "reporter", "report")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", default=None, help="config.json (default: ./config.json when it exists, else built-in defaults)"
    )
    parser.add_argument("--log-level", type=int, default=None, help="override the config's log_level (10=DEBUG)")


def _run_args(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument(
        "--from-zones-json", default=None, help="zones JSON to scan (default: AXFR from the config's sources)"
    )
    parser.add_argument("-o", "--output-csv", "--output_csv", dest="output_csv", default=None, help="findings CSV")
    parser.add_argument("--jsonl", default=None, help="also write findings as JSON lines (with codes) here")
    parser.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bar (default: on a terminal)"
    )
    parser.add_argument("--quiet", action="store_true", help="no summary table on stdout")
    _metrics_args(parser)
    parser.add_argument(
        "--metrics-file", default=None, help="write the metrics here for node_exporter's textfile collector"
    )


def _metrics_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus /metrics on this port")


def _health_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--health-port",
        type=_port,
        default=None,
        help="serve /healthz, /readyz and /metrics on this port (default: the config's health_port; none)",
    )


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port (1-65535)")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 1 <= value <= 1_000_000_000:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dns-cert-checker", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _run_args(sub.add_parser("run", help="the whole job in one process"))

    fetch = sub.add_parser("fetch-zones", help="write the zones JSON from AXFR / zone files")
    _common(fetch)
    fetch.add_argument("-o", "--output", "--output_file", dest="output", default=None, help="file (default stdout)")

    collector = sub.add_parser("collector", help="start runs: publish zones to the pipeline")
    _common(collector)
    collector.add_argument("--from-zones-json", default=None)
    when = collector.add_mutually_exclusive_group()
    when.add_argument("--once", action="store_true", help="publish one run and exit")
    when.add_argument("--every", default=None, help="start a run every interval, e.g. 1h, 30m, 90s")
    collector.add_argument(
        "--skip-unchanged",
        action="store_true",
        help="do not re-transfer zones whose SOA serial did not change (served from state_dir; still scanned)",
    )
    _health_args(collector)

    resolver = sub.add_parser("resolver", help="resolve zones into scan jobs")
    _common(resolver)
    _health_args(resolver)
    scanner = sub.add_parser("scanner", help="scan the jobs of one network segment")
    _common(scanner)
    _health_args(scanner)
    scanner.add_argument("--segment", default="default", help="network segment whose queue to consume")
    scanner.add_argument(
        "--processes", type=_positive, default=1, help="scanner processes on this queue, supervised (default 1)"
    )
    scanner.add_argument(
        "--max-scans", type=_positive, default=None, help="recycle a scanner process after this many scans"
    )
    # what the supervisor tells each child (services/scanner_processes.py)
    scanner.add_argument("--connection-share", type=_positive, default=1, help=argparse.SUPPRESS)
    scanner.add_argument("--process-index", type=int, default=0, help=argparse.SUPPRESS)
    reporter = sub.add_parser("reporter", help="write each completed run's CSV/JSONL")
    _common(reporter)
    reporter.add_argument("--output-dir", required=True, type=Path)
    _health_args(reporter)
    _metrics_args(reporter)
    report = sub.add_parser("report", help="the open problems (and deliveries) from the alert state")
    _common(report)
    report.add_argument("--format", choices=("table", "json", "csv"), default="table")
    report.add_argument("--by", choices=("endpoint", "certificate"), default="endpoint")
    report.add_argument("--deliveries", action="store_true", help="pending and dead deliveries per receiver")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or args_list[0] not in SUBCOMMANDS + ("-h", "--help"):
        args_list.insert(0, "run")  # the original's command line has no subcommand
    args = build_parser().parse_args(args_list)
    args.argv = args_list
    try:
        config = load_config(default_config_path(args.config))
    except ConfigError as exc:
        print(f"dns-cert-checker: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    setup_logging(args.log_level if args.log_level is not None else config.log_level)
    try:
        return _dispatch(args, config)
    except ConfigError as exc:
        print(f"dns-cert-checker: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace, config: Config) -> int:
    if args.command == "run":
        return cmd_run(args, config)
    if args.command == "fetch-zones":
        from services.collector import fetch_zones

        return fetch_zones.main(config, args.output)
    if args.command == "report":
        from services.reporter.alerts import report_main

        return report_main(config, format=args.format, by=args.by, deliveries=args.deliveries)
    collector = _collector_options(args) if args.command == "collector" else None  # bad input before the broker
    if args.command == "scanner" and args.processes > 1:
        from services.scanner_processes import supervise

        stop = threading.Event()
        with stop_on_signals(stop):
            port = args.health_port if args.health_port is not None else config.health_port
            return supervise(args.argv, args.processes, stop, port)
    transport = open_amqp()  # a malformed AMQP_URL is a ConfigError: one line, the password never quoted
    try:
        import services.daemons as daemons

        stop = threading.Event()
        port = args.health_port if args.health_port is not None else config.health_port
        with stop_on_signals(stop):
            if collector is not None:
                return daemons.run_collector(config, transport, stop, collector, health_port=port)
            if args.command == "resolver":
                return daemons.run_resolver(config, transport, stop, health_port=port)
            if args.command == "scanner":
                return daemons.run_scanner(
                    config,
                    transport,
                    stop,
                    args.segment,
                    share=args.connection_share,
                    max_scans=args.max_scans,
                    health_port=port,
                )
            return daemons.run_reporter(
                config, transport, stop, args.output_dir, metrics_port=args.metrics_port, health_port=port
            )
    finally:
        transport.close()


def _collector_options(args: argparse.Namespace) -> CollectorOptions:
    from services.collector.runs import CollectOptions
    from services.collector.service import CollectorOptions, parse_interval

    try:
        every = parse_interval(args.every) if args.every else None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    collect = CollectOptions(zones_json=args.from_zones_json, skip_unchanged=args.skip_unchanged)
    return CollectorOptions(collect=collect, every=None if args.once else every)


def cmd_run(args: argparse.Namespace, config: Config) -> int:
    from services import console
    from services.collector.runs import CollectOptions, plan_run
    from services.pipeline import PipelineError, run_in_process
    from services.reporter.outputs import CsvFileSink
    from services.reporter.runner import alerting_for

    run = plan_run(config, CollectOptions(zones_json=args.from_zones_json))
    sink = CsvFileSink(Path(args.output_csv) if args.output_csv else None, Path(args.jsonl) if args.jsonl else None)
    show_progress = args.progress if args.progress is not None else sys.stderr.isatty()
    with alerting_for(config, metrics_port=args.metrics_port, metrics_file=args.metrics_file) as alerting:
        try:
            with console.progress_bar(enabled=show_progress) as progress:
                report = run_in_process(config, run, sink, progress=progress, alerting=alerting)
        except PipelineError as exc:
            print(f"dns-cert-checker: run {run.run_id} failed: {exc}", file=sys.stderr)
            return EXIT_INCOMPLETE
        pending = alerting.flush(config.alerts.flush_timeout) if alerting and config.alerts else 0
    if not args.quiet:
        console.print_report(report, csv_path=args.output_csv)
        if pending:
            print(f"{pending} alert deliveries still pending: the next run (or the reporter service) sends them")
    return EXIT_OK if report.complete else EXIT_INCOMPLETE


if __name__ == "__main__":
    sys.exit(main())
