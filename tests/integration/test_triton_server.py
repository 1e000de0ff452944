"""The real Triton server: loads a python-backend model from a repository and answers over gRPC."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from inferloop.triton.model_config import DataType, ModelConfig, TensorSpec
from infra.local.process import pid_cmdline
from infra.local.triton_server import TritonServer, http_ok

pytestmark = pytest.mark.integration

AFFINE_MODEL = textwrap.dedent(
    """
    import json

    import numpy as np
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def initialize(self, args):
            params = json.loads(args["model_config"])["parameters"]
            self.scale = float(params["scale"]["string_value"])
            self.version = int(args["model_version"])

        def execute(self, requests):
            responses = []
            for request in requests:
                x = pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy()
                y = (x * self.scale + self.version).astype(np.float32)
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT", y)]))
            return responses
    """
)


def write_affine_model(repository: Path, name: str, version: int, scale: float) -> None:
    config = ModelConfig(
        name=name,
        inputs=(TensorSpec("INPUT", DataType.FP32, (4,)),),
        outputs=(TensorSpec("OUTPUT", DataType.FP32, (4,)),),
        max_batch_size=8,
        parameters={"scale": str(scale)},
    )
    folder = repository / name
    (folder / str(version)).mkdir(parents=True, exist_ok=True)
    (folder / "config.pbtxt").write_text(config.to_pbtxt())
    (folder / str(version) / "model.py").write_text(AFFINE_MODEL)


def _infer(client: grpcclient.InferenceServerClient, name: str, x: np.ndarray) -> tuple[np.ndarray, str]:
    inp = grpcclient.InferInput("INPUT", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer(name, [inp], outputs=[grpcclient.InferRequestedOutput("OUTPUT")])
    return result.as_numpy("OUTPUT"), result.get_response().model_version


def test_server_is_the_real_tritonserver(triton_server: TritonServer) -> None:
    assert http_ok(f"{triton_server.http_url}/v2/health/live")
    procs = [p for p in Path("/proc").iterdir() if p.name.isdigit()]
    cmdlines = [pid_cmdline(int(p.name)) for p in procs]
    ours = [c for c in cmdlines if triton_server.marker in c]
    assert ours and ours[0][0].endswith("/tritonserver")
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    assert client.get_server_metadata().version.startswith("2.")


def test_python_backend_model_answers_over_grpc(triton_server: TritonServer) -> None:
    write_affine_model(triton_server.model_repository, "affine", version=1, scale=2.0)
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    client.load_model("affine")
    assert client.is_model_ready("affine")

    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    y, version = _infer(client, "affine", x)
    np.testing.assert_array_equal(y, x * 2.0 + 1)
    assert version == "1"

    metadata = client.get_model_metadata("affine")
    assert [i.name for i in metadata.inputs] == ["INPUT"]
    assert list(metadata.inputs[0].shape) == [-1, 4]


def test_bytecode_caches_do_not_reload_models_in_explicit_mode(triton_server: TritonServer) -> None:
    write_affine_model(triton_server.model_repository, "affine3", version=1, scale=3.0)
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    client.load_model("affine3")
    for _ in range(3):
        _infer(client, "affine3", np.ones((2, 4), dtype=np.float32))
    # The stub's interpreter writes a __pycache__ next to model.py (it ignores PYTHONDONTWRITEBYTECODE) ...
    assert (triton_server.model_repository / "affine3" / "1" / "__pycache__").is_dir()
    time.sleep(1.5)
    # ... and in explicit mode that never counts as a change: the model was loaded exactly once.
    log = triton_server.log_path.read_text()
    assert log.count("successfully loaded 'affine3'") == 1


def test_explicit_mode_loads_a_new_version_only_when_asked(triton_server: TritonServer) -> None:
    write_affine_model(triton_server.model_repository, "affine2", version=1, scale=1.0)
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    client.load_model("affine2")
    write_affine_model(triton_server.model_repository, "affine2", version=2, scale=1.0)
    x = np.ones((1, 4), dtype=np.float32)
    assert _infer(client, "affine2", x)[1] == "1"  # not loaded yet: explicit mode ignores the new folder
    client.load_model("affine2")
    y, version = _infer(client, "affine2", x)
    assert version == "2"
    np.testing.assert_array_equal(y, x + 2)


def test_unknown_model_is_a_clear_error(triton_server: TritonServer) -> None:
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    with pytest.raises(InferenceServerException, match=r"unknown model|not found"):
        client.get_model_metadata("no-such-model")


def test_a_fleet_loads_and_serves_on_every_replica(bootstrapped: dict[str, str], triton_server: TritonServer) -> None:
    """Fan-out control (Helm with many Triton replicas): the session server reached under two addresses."""
    from inferloop.triton.control import TritonControl, TritonFleet

    members = [TritonControl(triton_server.grpc_url), TritonControl(f"localhost:{triton_server.grpc_port}")]
    fleet = TritonFleet(members)
    assert fleet.server_live() and fleet.is_ready("digits", 1)
    x = np.zeros((2, 1, 28, 28), np.float32)
    outputs, version = fleet.infer("digits", x)
    assert version == 1 and outputs.shape == (2, 10)
    fleet.wait_ready("digits", 1, 10)
    resolved = TritonFleet.resolve("127.0.0.1", triton_server.grpc_port)
    assert [m.url for m in resolved.members] == [triton_server.grpc_url]
