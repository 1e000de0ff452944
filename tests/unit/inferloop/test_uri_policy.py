"""The image URI policy: which URIs may be read (local folders, remote prefixes), decided before any read."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from inferloop.settings import Settings
from inferloop.uri_policy import ImageUriPolicy, UriNotAllowed


def test_no_roots_refuses_every_uri(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    policy = ImageUriPolicy.from_roots([])
    assert not policy.enabled
    with pytest.raises(UriNotAllowed, match="INFERLOOP_STREAMS__IMAGE_URI_ROOTS"):
        policy.check((tmp_path / "a.png").as_uri())


def test_remote_prefixes_match_whole_segments_and_refuse_escapes() -> None:
    policy = ImageUriPolicy.from_roots(["s3://bucket/images"])
    assert policy.check("s3://bucket/images/x/y.png") == "s3://bucket/images/x/y.png"
    for uri in (
        "s3://bucket/images-private/y.png",
        "s3://bucket/images/../private/y.png",
        "s3://bucket/images/%2E%2E/private/y.png",
        "s3://bucket/images/y.png?versionId=1",
        "gs://bucket/images/y.png",
        "/bucket/images/y.png",
    ):
        with pytest.raises(UriNotAllowed):
            policy.check(uri)


def test_settings_parse_roots_from_the_environment_and_refuse_relative_folders(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("INFERLOOP_STREAMS__IMAGE_URI_ROOTS", f'["{tmp_path}", "s3://b/p/"]')
    policy = ImageUriPolicy.from_settings(Settings().streams)
    assert policy.folders == (tmp_path.resolve(),) and policy.prefixes == ("s3://b/p/",)
    monkeypatch.setenv("INFERLOOP_STREAMS__IMAGE_URI_ROOTS", '["relative/images"]')
    with pytest.raises(ValidationError, match="not an absolute path"):
        Settings()
