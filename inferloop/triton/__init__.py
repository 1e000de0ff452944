"""The Triton boundary: the one place that calls ``tritonclient``.

* :mod:`.errors`: Triton's failures as inferloop errors, one status-to-error mapping for every client;
* :mod:`.signature`: what a served model takes and answers (input/output names, shape, labels), shared by the
  exporter that writes it and the worker that reads it back from each served version;
* :mod:`.model_config`: the typed model configuration, rendered to ``config.pbtxt``;
* :mod:`.options`: gRPC channel options (TLS) from ``settings.triton``;
* :mod:`.control`: the control plane (load, unload, readiness, smoke inference) of one server or a fleet;
* :mod:`.inference`: the worker's asynchronous data plane.
"""
