"""Every config.pbtxt the publisher can render, for each backend and device, parsed with Triton's own model-config
protobuf (strict text format: a misspelt field or a wrong enum fails), and checked field by field."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from inferloop.images.preprocess import InputSpec
from inferloop.settings import ModelSettings, Settings
from inferloop.triton.model_config import ModelConfig, TensorRT
from inferloop.triton.signature import ModelSignature
from trainer.card import ModelCard
from trainer.export import ONNX_FILE
from trainer.jobs.context import serving_options

# what the onnxruntime backend of the chart's image reads (its README's tables): a misspelt key would be ignored
TENSORRT_KEYS = {
    "precision_mode", "max_workspace_size_bytes", "trt_timing_cache_enable", "trt_timing_cache_path",
    "trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes",
}  # fmt: skip
ONNXRUNTIME_PARAMETERS = {"intra_op_thread_count", "inter_op_thread_count"}
INFERLOOP_PARAMETERS = {"labels", "input_spec"}  # the workers read them; every backend ignores what it does not use
# the stock image the chart pins (nvcr.io/nvidia/tritonserver:24.10-py3) runs onnxruntime 1.19 with TensorRT 10.5:
# ONNX IR up to 10, opsets up to 21 (onnxruntime) and 20 (TensorRT's parser)
MAX_IR_VERSION, MAX_OPSET = 10, 20
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
    assert config.dynamic_batching.max_queue_delay_microseconds == 100

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
    if native:
        assert set(parameters) <= INFERLOOP_PARAMETERS | ONNXRUNTIME_PARAMETERS
        assert parameters["intra_op_thread_count"] == parameters["inter_op_thread_count"] == "1"
    else:
        assert set(parameters) == INFERLOOP_PARAMETERS | {"ort_threads"} and parameters["ort_threads"] == "1"

    accelerators = config.optimization.execution_accelerators.gpu_execution_accelerator
    if model.get("tensorrt"):
        (trt,) = accelerators
        assert trt.name == "tensorrt" and set(trt.parameters) <= TENSORRT_KEYS
        assert trt.parameters["precision_mode"] == str(model.get("tensorrt_precision", "fp32")).upper()
        assert int(trt.parameters["max_workspace_size_bytes"]) > 0
        assert trt.parameters["trt_timing_cache_enable"] == "1" and trt.parameters["trt_timing_cache_path"]
        # never the engine cache: onnxruntime keys engines by graph, not weights, and every version has one graph
        assert not any(key.startswith("trt_engine_cache") for key in trt.parameters)
        # one engine for every batch dynamic batching forms, from one request to max_batch_size
        assert trt.parameters["trt_profile_min_shapes"] == "image:1x1x28x28"
        assert trt.parameters["trt_profile_max_shapes"] == "image:64x1x28x28"
        # built while the version loads (the trainer waits for loads), not at a smoke test's or a worker's request
        image = [(w.batch_size, w.inputs["image"]) for w in config.model_warmup]
        warmups = [(batch, list(tensor.dims), tensor.zero_data) for batch, tensor in image]
        assert warmups == [(1, [1, 28, 28], True), (64, [1, 28, 28], True)]
    else:
        assert not accelerators and not config.model_warmup


def test_the_config_describes_the_exported_onnx_model(trained: tuple[Path, object, object]) -> None:
    """What Triton's native backend checks at load: the config's tensors are the graph's (names, types, dims after
    a dynamic batch dimension); and the graph's IR and opset are ones the chart's image can read."""
    import onnx

    folder, _, _ = trained
    graph = onnx.load(str(folder / ONNX_FILE))
    assert graph.ir_version <= MAX_IR_VERSION
    assert all(o.version <= MAX_OPSET for o in graph.opset_import if o.domain in ("", "ai.onnx"))
    card = ModelCard.read(folder)
    config = parse(serving_options(Settings(model=ModelSettings(**MODELS["tensorrt-fp16"]))).model_config(
        card.signature(64), card.input_spec, [1]).to_pbtxt())  # fmt: skip

    def tensors(values: Any) -> list[tuple[str, int, list[int | str]]]:
        return [(v.name, v.type.tensor_type.elem_type,
                 [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]) for v in values]  # fmt: skip

    batch = tensors(graph.graph.input)[0][2][0]
    assert isinstance(batch, str), "the batch dimension must be dynamic for max_batch_size > 0"
    assert tensors(graph.graph.input) == [(t.name, onnx.TensorProto.FLOAT, [batch, *t.dims]) for t in config.input]
    assert tensors(graph.graph.output) == [(t.name, onnx.TensorProto.FLOAT, [batch, *t.dims]) for t in config.output]


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
