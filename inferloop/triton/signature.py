"""What a served model takes and answers: one type for the exporter that writes it and the worker that reads it.

The default classifier takes ``image`` (float32 ``[N, C, H, W]``) and answers ``probabilities`` (float32
``[N, K]``, one column per label). The trainer writes the signature into each version's Triton config (the
labels as a parameter); the worker reads it back from Triton for the version it calls, never assuming it, since
versions may differ.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"


@dataclass(frozen=True)
class ModelSignature:
    """A served model's input and output names, input shape (no batch dimension), labels and batch limit."""

    model: str
    input_name: str
    output_name: str
    input_shape: tuple[int, ...]
    labels: tuple[str, ...]
    max_batch_size: int

    @classmethod
    def classifier(
        cls, model: str, input_shape: tuple[int, ...], labels: tuple[str, ...], max_batch_size: int = 64
    ) -> ModelSignature:
        """The signature of inferloop's default classifier (``image`` in, ``probabilities`` out)."""
        return cls(model, INPUT_NAME, OUTPUT_NAME, tuple(input_shape), tuple(labels), max_batch_size)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelSignature:
        """From a model's configuration as Triton reports it (JSON)."""
        params = config.get("parameters", {})
        inputs, outputs = config["input"], config["output"]
        labels_raw = params.get("labels", {}).get("string_value")
        width = int(outputs[0]["dims"][-1])
        labels = tuple(json.loads(labels_raw)) if labels_raw else tuple(str(i) for i in range(width))
        return cls(
            model=config["name"],
            input_name=inputs[0]["name"],
            output_name=outputs[0]["name"],
            input_shape=tuple(int(d) for d in inputs[0]["dims"]),
            labels=labels,
            max_batch_size=max(1, int(config.get("max_batch_size", 1))),
        )
