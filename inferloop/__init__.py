"""inferloop's core library: what the streaming apps, the trainer, the launchers and the CLI all share.

Layers, top to bottom (imports point down only; ``lint-imports`` checks it, see ``pyproject.toml``)::

    cli/                  entry points: the `inferloop` command, the demo, the bench
    streams/  trainer/  infra/local/
                          the Faust apps (worker, joiner), the offline trainer, the local stack launchers
    inferloop.triton      the Triton boundary: errors, model signature and config, control and data planes
    inferloop.quality     online accuracy and confidence, from the training log and the predictions
    inferloop.metrics     Prometheus metrics of the worker, the joiner and the trainer
    inferloop.images      decoding untrusted image bytes, preprocessing, reading image URIs
    -- the light client layer, all the core install (`pip install inferloop`, no extras) holds: no torch, faust,
       tritonclient, numpy, Pillow; the extras (worker, trainer, local, demo) bring what the layers above need --
    inferloop.client      the public Python client: the stable names a producer or consumer of the streams imports
    inferloop.kafka       Kafka client options, topics, producers, readers and the consumer-group subscriber
    inferloop.logs        the log format (JSON lines need the json-logs extra: inferloop.json_logs)
    inferloop.events      the event contracts (one encode/decode pair each); inferloop.uri_policy
    inferloop.settings    the settings tree (values only); inferloop.errors: the error taxonomy
"""

__version__ = "0.1.0"
