"""Local process launchers: the real Apache Kafka broker and the real Triton server, started on this machine.

The CLI (`inferloop up/status/down`, the demo, the bench) and the test fixtures use these; nothing else starts
servers. :mod:`.settings` holds what only the launchers read.
"""

from infra.local.errors import (
    PortInUse,
    RuntimeMissing,
    ServiceStartFailed,
    StackError,
)
from infra.local.kafka_broker import KafkaBroker
from infra.local.triton_server import TritonServer

__all__ = [
    "KafkaBroker",
    "PortInUse",
    "RuntimeMissing",
    "ServiceStartFailed",
    "StackError",
    "TritonServer",
]
