"""AMQP transport (RabbitMQ through pika). The only package that imports pika.

- ``url``: the broker URL and the parameters of every connection;
- ``topology``: exchange and queue names, declared from one place;
- ``client``: pika, imported once, and pika's own log records turned into DEBUG lines;
- ``retry``: what a broken connection looks like, and how long we reconnect;
- ``health``: the broker as the whole transport sees it: an outage logged once (lost, back after
  N s), and a refusal (wrong credentials, vhost, permissions) as ``BrokerRefused``, never retried;
- ``links``: the pool of publisher connections and its heartbeat pump;
- ``consumer``: one connection per consumer, settles from any thread, redelivery counting;
- ``transport``: ``AmqpTransport``, tying them together, with the operator helpers.

Threading (pika connections are not thread-safe, and BlockingConnection only heartbeats while its
thread is inside a pika call): a consumer's connection is used only by the thread that calls
``get``; publishers take a pooled link for the duration of a publish.

Delivery guarantees: persistent messages, publisher confirms (a batch: one committed transaction per
``PUBLISH_WINDOW`` messages), ``mandatory`` (an unroutable message
raises instead of vanishing), manual acks. A redelivered message is counted in the
``x-dcc-redeliveries`` header (classic queues do not count for us): past ``max_redeliveries`` it is
dead-lettered, so a message that kills its consumer every time cannot loop forever. Giving a
message back is not a redelivery (``consumer``'s docstring says how that is told apart).
"""

from shared.transport.base import DeadLetter
from shared.transport.env import DEFAULT_AMQP_URL, amqp_url_from_env
from shared.transport.redelivery import REDELIVERIES_HEADER, RETURNED_HEADER

from .consumer import AmqpConsumer
from .topology import DEAD_AT_HEADER, QUEUE_HEADER, REASON_HEADER, Topology
from .transport import AmqpTransport, open_transport
from .url import parse_amqp_url

__all__ = [
    "DEAD_AT_HEADER",
    "DEFAULT_AMQP_URL",
    "QUEUE_HEADER",
    "REASON_HEADER",
    "REDELIVERIES_HEADER",
    "RETURNED_HEADER",
    "AmqpConsumer",
    "AmqpTransport",
    "DeadLetter",
    "Topology",
    "amqp_url_from_env",
    "open_transport",
    "parse_amqp_url",
]
