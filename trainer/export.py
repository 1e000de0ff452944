"""From a trained PyTorch model to a servable artifact folder, checked for parity, and its Triton config.

An artifact folder holds what one version folder of the Triton repository holds: ``model.onnx`` (what Triton
runs), ``model.py`` (the python-backend wrapper), ``weights.pt`` (the PyTorch state, to fine-tune from) and
``model_card.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from inferloop.images.preprocess import InputSpec
from inferloop.triton.model_config import (
    KIND_CPU,
    ONNX_PLATFORM,
    DataType,
    DynamicBatching,
    ModelConfig,
    TensorRT,
    TensorSpec,
)
from inferloop.triton.signature import INPUT_NAME, OUTPUT_NAME, ModelSignature
from trainer.card import ModelCard
from trainer.errors import ExportParityError
from trainer.model import SmallCNN
from trainer.onnx_inference import onnx_proba
from trainer.train import predict_proba

ONNX_FILE = "model.onnx"
WEIGHTS_FILE = "weights.pt"
MODEL_PY = "model.py"
TRITON_MODEL_SOURCE = Path(__file__).resolve().parent / "triton_model.py"
PARITY_ATOL = 1e-4


def export_onnx(model: SmallCNN, path: Path) -> None:
    """Export ``model`` to ONNX with a dynamic batch dimension."""
    model.eval()
    example = torch.zeros((2, *model.spec.shape), dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(
            model,
            (example,),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamo=True,
            dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=4096)}},
            verbose=False,
        )
        if program is None:
            raise ExportParityError("torch.onnx.export returned no program")
        # One self-contained file: the checksum in the model card then covers every weight.
        program.save(str(path), external_data=False)


def check_parity(model: SmallCNN, onnx_path: Path, x: NDArray[np.float32]) -> float:
    """The largest absolute difference between PyTorch and ONNX outputs on ``x``; raises past tolerance."""
    expected = predict_proba(model, x)
    got = onnx_proba(onnx_path, x)
    if got.shape != expected.shape:
        raise ExportParityError(f"exported output shape {got.shape} differs from PyTorch's {expected.shape}")
    diff = float(np.max(np.abs(got - expected))) if len(x) else 0.0
    if diff > PARITY_ATOL or not np.array_equal(got.argmax(1), expected.argmax(1)):
        raise ExportParityError(f"exported model differs from PyTorch by {diff:.2e} (tolerance {PARITY_ATOL:.0e})")
    return diff


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_artifact(model: SmallCNN, card: ModelCard, folder: Path, parity_inputs: NDArray[np.float32]) -> ModelCard:
    """Write the artifact folder for ``model`` and check the export; returns the card with its checksum."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = folder / ONNX_FILE
    export_onnx(model, onnx_path)
    check_parity(model, onnx_path, parity_inputs)
    torch.save(model.state_dict(), folder / WEIGHTS_FILE)
    shutil.copyfile(TRITON_MODEL_SOURCE, folder / MODEL_PY)
    card.artifact_sha256 = sha256_file(onnx_path)
    card.write(folder)
    return card


def load_weights(folder: Path, spec: InputSpec, num_classes: int) -> SmallCNN:
    """The PyTorch model saved in an artifact or version folder."""
    model = SmallCNN(spec, num_classes)
    model.load_state_dict(torch.load(folder / WEIGHTS_FILE, weights_only=True))
    return model.eval()


def triton_config(
    signature: ModelSignature,
    spec: InputSpec,
    serving_versions: list[int],
    instance_count: int = 1,
    max_queue_delay_us: int = 100,
    *,
    native: bool = False,
    instance_kind: str = KIND_CPU,
    tensorrt: TensorRT | None = None,
) -> ModelConfig:
    """The Triton config of a classifier with ``signature``, serving exactly ``serving_versions``: the python
    backend's ``model.py`` wrapper, or (``native``) Triton's own onnxruntime backend on the same ``model.onnx``.

    Each instance runs onnxruntime on one thread (instances scale with ``instance_count``, not threads that would
    fight over the same cores). With TensorRT every instance warms up at load with a batch of one and a full batch.
    ``labels`` and ``input_spec`` ride along as parameters: every backend keeps parameters it does not use, and the
    workers read them from the served config.
    """
    parameters = {"labels": json.dumps(list(signature.labels)), "input_spec": spec.to_json()}
    if native:  # on GPUs too: the CPU threads only feed the device, and would count the node's cores, not the pod's
        parameters |= {"intra_op_thread_count": "1", "inter_op_thread_count": "1"}
    else:
        parameters["ort_threads"] = "1"
    return ModelConfig(
        name=signature.model,
        inputs=(TensorSpec(signature.input_name, DataType.FP32, signature.input_shape),),
        outputs=(TensorSpec(signature.output_name, DataType.FP32, (len(signature.labels),)),),
        platform=ONNX_PLATFORM if native else "",
        max_batch_size=signature.max_batch_size,
        dynamic_batching=DynamicBatching(max_queue_delay_us=max_queue_delay_us),
        instance_count=instance_count,
        instance_kind=instance_kind,
        tensorrt=tensorrt,
        # TensorRT builds its engine at the first request of each instance: let the load do it (the trainer waits
        # for loads with trainer.load_timeout_s), not a smoke test's or a worker's request
        warmup_batch_sizes=tuple(sorted({1, signature.max_batch_size}))
        if tensorrt is not None and all(d > 0 for d in signature.input_shape)
        else (),
        versions=tuple(serving_versions),
        parameters=parameters,
    )
