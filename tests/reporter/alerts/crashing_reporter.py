"""A reporter that commits one run's alerts and then waits to be killed (``kill -9``) before sending.

python -m tests.reporter.alerts.crashing_reporter STATE_FILE RECEIVER_URL   (secret in DCC_TEST_WEBHOOK_SECRET)
"""

from __future__ import annotations

import sys
import time

from services.reporter.alerts import Alerting
from shared.alerts_config import AlertsConfig, WebhookReceiver
from shared.config import Config
from tests.reporter.alerts.runs import expired, report


def main(state_file: str, url: str) -> None:
    receiver = WebhookReceiver(name="ops", url=url, secret_env="DCC_TEST_WEBHOOK_SECRET")
    alerting = Alerting.from_config(Config(alerts=AlertsConfig(state_file=state_file, receivers=[receiver])))
    assert alerting is not None
    outcome = alerting.on_report(report("r1", [expired("www.a.test"), expired("api.a.test", "127.0.0.2")]))
    print(f"committed {outcome.queued}", flush=True)
    time.sleep(60)  # never started its senders: killed before delivering anything


if __name__ == "__main__":
    main(*sys.argv[1:])
