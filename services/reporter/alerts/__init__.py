"""The alerting half of the reporter: problem state, deliveries, metrics, ``report``.

How the reporter uses it (``run`` in one process and the ``reporter`` service alike)::

    alerting = Alerting.from_config(config)       # None without "alerts"; ConfigError for a bad
                                                  # receiver; AlertStateLocked if another owns it
    alerting.start()                              # sender threads, one per receiver
    ...
    outcome = alerting.on_report(report)          # once per finished run, after its CSV is written:
                                                  # state + outbox in one SQLite transaction
    ...
    left = alerting.flush(config.alerts.flush_timeout)   # ``run`` before exiting: deliveries pending
    alerting.close()                              # pending ones stay for the next owner

``alerting.registry`` holds the metrics: ``serve_metrics(registry, port)`` serves ``/metrics``,
``write_textfile(registry, path)`` writes node_exporter's textfile format. ``report_main`` is the
``report`` command; it only reads the state, so it runs beside the owner.
"""

from services.reporter.alerts.alerting import Alerting, RunOutcome
from services.reporter.alerts.delivery import RetryPolicy
from services.reporter.alerts.metrics import serve_metrics, write_textfile
from services.reporter.alerts.report_view import report_main
from services.reporter.alerts.state import AlertStateError, AlertStateLocked

__all__ = [
    "AlertStateError",
    "AlertStateLocked",
    "Alerting",
    "RetryPolicy",
    "RunOutcome",
    "report_main",
    "serve_metrics",
    "write_textfile",
]
