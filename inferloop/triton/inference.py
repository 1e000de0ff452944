"""Triton's data plane for the worker: asynchronous gRPC, one model, batched float32 inputs.

The worker reads the model's :class:`~inferloop.triton.signature.ModelSignature` from Triton (never assumes it)
and infers with it, naming the version (the promoted one, or the candidate in shadow); every answer carries the
version that computed it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from inferloop.settings import Settings
from inferloop.triton.errors import client_errors, translate
from inferloop.triton.options import grpc_options
from inferloop.triton.signature import ModelSignature

FloatArray = NDArray[np.float32]


class TritonInference:
    """Asynchronous data-plane client (gRPC) of one model."""

    def __init__(self, url: str, model: str, timeout_s: float = 10.0, options: Mapping[str, Any] | None = None) -> None:
        import tritonclient.grpc.aio as aioclient

        self.url, self.model, self.timeout_s = url, model, timeout_s
        self._aio = aioclient
        self._client = aioclient.InferenceServerClient(url, **(options or {}))

    async def close(self) -> None:
        await self._client.close()

    async def _call(self, action: str, call: Awaitable[Any]) -> Any:
        try:
            return await call
        except client_errors() as exc:
            raise translate(exc, self.url, self.timeout_s, self.model, action) from exc

    async def signature(self, version: int | None = None) -> ModelSignature:
        """The signature of the model as Triton serves it now (of that version, when named)."""
        raw = await self._call(
            "config",
            self._client.get_model_config(
                self.model, model_version=str(version) if version else "", as_json=True, client_timeout=self.timeout_s
            ),
        )
        return ModelSignature.from_config(raw["config"])

    async def infer(
        self, signature: ModelSignature, x: FloatArray, version: int | None = None
    ) -> tuple[FloatArray, int]:
        """Class scores for ``x`` from ``version`` (the workers always name the promoted one) and the version that
        computed them."""
        inp = self._aio.InferInput(signature.input_name, list(x.shape), "FP32")
        inp.set_data_from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        result = await self._call(
            "inference",
            self._client.infer(
                self.model,
                [inp],
                model_version=str(version) if version else "",
                outputs=[self._aio.InferRequestedOutput(signature.output_name)],
                client_timeout=self.timeout_s,
            ),
        )
        return result.as_numpy(signature.output_name), int(result.get_response().model_version)


def triton_inference(settings: Settings, model: str | None = None) -> TritonInference:
    """The data-plane client of ``model`` (default: the served model) with the settings' address, timeout, TLS."""
    return TritonInference(
        settings.triton.grpc_url,
        model or settings.model.name,
        timeout_s=settings.streams.triton_timeout_s,
        options=grpc_options(settings.triton),
    )
