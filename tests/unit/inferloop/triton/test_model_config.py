from __future__ import annotations

import pytest

from inferloop.triton.model_config import DataType, DynamicBatching, ModelConfig, TensorSpec


def _config(**kwargs: object) -> ModelConfig:
    base: dict[str, object] = {
        "name": "digits",
        "inputs": (TensorSpec("image", DataType.FP32, (1, 28, 28)),),
        "outputs": (TensorSpec("probabilities", DataType.FP32, (10,)),),
    }
    base.update(kwargs)
    return ModelConfig(**base)  # type: ignore[arg-type]


def test_renders_every_field() -> None:
    text = _config(
        max_batch_size=32,
        dynamic_batching=DynamicBatching(max_queue_delay_us=500, preferred_batch_sizes=(8, 16)),
        instance_count=2,
        versions_served=2,
        parameters={"labels": "0,1"},
    ).to_pbtxt()
    assert 'name: "digits"' in text
    assert 'backend: "python"' in text
    assert "max_batch_size: 32" in text
    assert '{ name: "image" data_type: TYPE_FP32 dims: [ 1, 28, 28 ] }' in text
    assert '{ name: "probabilities" data_type: TYPE_FP32 dims: [ 10 ] }' in text
    assert "instance_group [ { kind: KIND_CPU count: 2 } ]" in text
    assert "version_policy: { latest: { num_versions: 2 } }" in text
    assert "max_queue_delay_microseconds: 500 preferred_batch_size: [ 8, 16 ]" in text
    assert 'parameters { key: "labels" value: { string_value: "0,1" } }' in text


def test_no_dynamic_batching_when_disabled() -> None:
    assert "dynamic_batching" not in _config(dynamic_batching=None).to_pbtxt()


@pytest.mark.parametrize("name", ["../evil", "a/b", "", ".hidden", "x" * 200])
def test_model_names_cannot_escape_the_repository(name: str) -> None:
    with pytest.raises(ValueError, match="invalid model name"):
        _config(name=name)


def test_dims_are_checked() -> None:
    with pytest.raises(ValueError, match="dims"):
        TensorSpec("x", DataType.FP32, (0, 3))


def test_specific_versions_policy() -> None:
    text = _config(versions=(3, 1)).to_pbtxt()
    assert "version_policy: { specific: { versions: [ 1, 3 ] } }" in text
    with pytest.raises(ValueError, match="versions"):
        _config(versions=(0,))
