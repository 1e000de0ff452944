"""Running an exported model with onnxruntime, as Triton's python backend runs it: for evaluation, the export's
parity check and the publisher's smoke comparison."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray


def onnx_proba(path: Path, x: NDArray[np.float32]) -> NDArray[np.float32]:
    """Run an exported model with onnxruntime, as Triton's python backend will."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {session.get_inputs()[0].name: x})[0], dtype=np.float32)
