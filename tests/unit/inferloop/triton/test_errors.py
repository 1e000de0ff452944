"""One mapping from Triton client errors to inferloop's, for the control plane and the data plane alike."""

from __future__ import annotations

import asyncio

import pytest
from tritonclient.utils import InferenceServerException

from inferloop.errors import RetryableError
from inferloop.triton.control import TritonControl
from inferloop.triton.errors import ModelLoadFailed, TritonRequestFailed, TritonUnavailable, translate
from inferloop.triton.inference import TritonInference
from infra.local.process import free_ports


def server_error(message: str, status: str | None) -> InferenceServerException:
    return InferenceServerException(message, status=status)


@pytest.mark.parametrize(
    ("error", "action", "expected"),
    [
        (server_error("failed to connect", "StatusCode.UNAVAILABLE"), "inference", TritonUnavailable),
        (server_error("Deadline Exceeded", "StatusCode.DEADLINE_EXCEEDED"), "load", TritonUnavailable),
        (server_error("Cancelled", "StatusCode.CANCELLED"), "config", TritonUnavailable),
        (
            server_error("Request for unknown model: 'm' version 2 is not ready", "StatusCode.NOT_FOUND"),
            "inference",
            TritonUnavailable,
        ),
        (
            server_error("load failed: version 2 is at UNAVAILABLE state", "StatusCode.INTERNAL"),
            "load",
            ModelLoadFailed,
        ),
        (
            server_error("unexpected shape for input 'image'", "StatusCode.INVALID_ARGUMENT"),
            "inference",
            TritonRequestFailed,
        ),
        (server_error("no status at all", None), "index", TritonRequestFailed),
        (ConnectionRefusedError("refused"), "inference", TritonUnavailable),
        (TimeoutError("timed out"), "load", TritonUnavailable),
    ],
)
def test_each_client_error_maps_to_one_inferloop_error(error: Exception, action: str, expected: type) -> None:
    mapped = translate(error, "triton:8001", 5.0, "m", action)
    assert type(mapped) is expected
    assert isinstance(mapped, RetryableError) == (expected is TritonUnavailable), "only an outage is retried"
    if isinstance(mapped, TritonRequestFailed):
        assert mapped.model == "m" and mapped.action == action and str(error.message()) in str(mapped)  # type: ignore[attr-defined]


def test_both_planes_report_a_server_that_is_not_there_as_unavailable() -> None:
    (port,) = free_ports(1)
    control = TritonControl(f"127.0.0.1:{port}", timeout_s=2.0)
    try:
        assert not control.server_live()
        with pytest.raises(TritonUnavailable, match=f"127.0.0.1:{port}"):
            control.require_live()
        with pytest.raises(TritonUnavailable):
            control.config("m")
    finally:
        control.close()

    async def data_plane() -> None:
        client = TritonInference(f"127.0.0.1:{port}", "m", timeout_s=2.0)
        try:
            with pytest.raises(TritonUnavailable):
                await client.signature()
        finally:
            await client.close()

    asyncio.run(data_plane())
