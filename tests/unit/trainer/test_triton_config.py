"""Every config.pbtxt the publisher can render, for each backend and device, parsed with Triton's own model-config
protobuf (strict text format: a misspelt field or a wrong enum fails), and checked field by field."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from inferloop.images.preprocess import InputSpec
from inferloop.settings import ModelSettings, Settings
from inferloop.triton.model_config import ModelConfig, TensorRT
from inferloop.triton.signature import ModelSignature
from trainer.jobs.context import serving_options

SIGNATURE = ModelSignature.classifier("digits", (1, 28, 28), tuple("0123456789"), max_batch_size=64)
SPEC = InputSpec(1, 28, 28)
MODELS: dict[str, dict[str, Any]] = {
    "python-cpu": {},
    "onnxruntime-cpu": {"backend": "onnxruntime", "instance_count": 2},
    "onnxruntime-gpu": {"backend": "onnxruntime", "device": "gpu", "instance_count": 2},
    "tensorrt-fp32": {"backend": "onnxruntime", "device": "gpu", "tensorrt": True},
    "tensorrt-fp16": {"backend": "onnxruntime", "device": "gpu", "tensorrt": True, "tensorrt_precision": "fp16"},
}


def parse(text: str) -> Any:
    return text_format.Parse(text, pb.ModelConfig())


def config_of(model: dict[str, Any], versions: list[int]) -> ModelConfig:
    return serving_options(Settings(model=ModelSettings(**model))).model_config(SIGNATURE, SPEC, versions)


@pytest.mark.parametrize("versions", [[1], [3, 7]])
@pytest.mark.parametrize("name", list(MODELS))
def test_every_rendered_config_is_a_valid_triton_model_config(name: str, versions: list[int]) -> None:
    model = MODELS[name]
    config = parse(config_of(model, versions).to_pbtxt())

    assert config.name == "digits" and config.max_batch_size == 64
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [("image", pb.TYPE_FP32, [1, 28, 28])]
    assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == [("probabilities", pb.TYPE_FP32, [10])]
    assert list(config.version_policy.specific.versions) == versions
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000

    native = model.get("backend") == "onnxruntime"
    assert (config.platform, config.backend) == (("onnxruntime_onnx", "") if native else ("", "python"))
    (group,) = config.instance_group
    gpu = model.get("device") == "gpu"
    assert group.kind == (pb.ModelInstanceGroup.KIND_GPU if gpu else pb.ModelInstanceGroup.KIND_CPU)
    assert group.count == model.get("instance_count", 1)

    # the workers read the labels and the input spec from the served config, whatever the backend
    parameters = {k: v.string_value for k, v in config.parameters.items()}
    assert json.loads(parameters["labels"]) == list("0123456789")
    assert InputSpec.from_json(parameters["input_spec"]) == SPEC
    if not native:
        assert parameters["ort_threads"] == "1"
    elif not gpu:
        assert parameters["intra_op_thread_count"] == "1"

    accelerators = config.optimization.execution_accelerators.gpu_execution_accelerator
    if model.get("tensorrt"):
        (trt,) = accelerators
        assert trt.name == "tensorrt"
        assert trt.parameters["precision_mode"] == str(model.get("tensorrt_precision", "fp32")).upper()
        assert int(trt.parameters["max_workspace_size_bytes"]) > 0
    else:
        assert not accelerators


def test_a_misspelt_field_fails_the_parse() -> None:
    """The parse is strict, so the test above would catch a typo in the renderer."""
    text = config_of(MODELS["tensorrt-fp16"], [1]).to_pbtxt()
    parse(text)
    with pytest.raises(text_format.ParseError):
        parse(text.replace("max_batch_size", "max_batchsize"))
    with pytest.raises(text_format.ParseError):
        parse(text.replace("KIND_GPU", "KIND_GPUS"))
    with pytest.raises(text_format.ParseError):
        parse(text.replace("gpu_execution_accelerator", "gpu_accelerator"))


def test_answer_tolerance_grows_with_what_the_backend_may_change() -> None:
    tolerances = [serving_options(Settings(model=ModelSettings(**m))).answer_tolerance for m in MODELS.values()]
    python_cpu, native_cpu, gpu, trt32, trt16 = tolerances
    assert python_cpu == native_cpu == 1e-4
    assert native_cpu < gpu < trt32 < trt16 <= 2e-2  # a rolled or retrained version differs by far more


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"device": "gpu"}, "needs model.backend onnxruntime"),
        ({"backend": "onnxruntime", "tensorrt": True}, "needs model.device gpu"),
    ],
)
def test_settings_refuse_what_triton_could_not_run(model: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelSettings(**model)


def test_the_model_config_refuses_the_same_without_settings() -> None:
    python_cpu = config_of({}, [1])
    with pytest.raises(ValueError, match="GPU instances need a native platform"):
        dataclasses.replace(python_cpu, instance_kind="KIND_GPU")
    with pytest.raises(ValueError, match="TensorRT accelerator runs on GPU"):
        dataclasses.replace(python_cpu, platform="onnxruntime_onnx", tensorrt=TensorRT())
