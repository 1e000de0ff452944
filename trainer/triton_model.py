"""Triton python-backend model: runs the version's ``model.onnx`` with onnxruntime on the CPU.

This file is copied verbatim into every version folder as ``model.py``; Triton imports it there (it is not
imported by inferloop itself). All requests of one ``execute`` call run as one onnxruntime batch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Serves one version: input ``image`` float32 [N, C, H, W], output ``probabilities`` float32 [N, K]."""

    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        here = Path(args["model_repository"]) / args["model_version"]
        options = ort.SessionOptions()
        # Triton runs one process per instance; each gets few threads so instances do not fight for cores.
        options.intra_op_num_threads = int(config.get("parameters", {}).get("ort_threads", {}).get("string_value", "1"))
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(here / "model.onnx"), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.onnx_input = self.session.get_inputs()[0].name

    def execute(self, requests: list[Any]) -> list[Any]:
        batches = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        sizes = [len(b) for b in batches]
        try:
            probabilities = self.session.run(None, {self.onnx_input: np.concatenate(batches)})[0]
        except Exception as exc:  # one bad batch fails its requests, not the model
            error = pb_utils.TritonError(f"inference failed: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        responses = []
        start = 0
        for size in sizes:
            out = pb_utils.Tensor(self.output_name, probabilities[start : start + size].astype(np.float32))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
            start += size
        return responses
