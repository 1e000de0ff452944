"""The image URI policy: only files inside the configured roots are read, however the URI is written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from streams.image_uris import ImageUriPolicy, UriNotAllowed, UriUnreadable
from streams.images import ImageRejected
from streams.settings import Settings


@pytest.fixture
def tree(tmp_path: Path) -> tuple[ImageUriPolicy, Path]:
    allowed = tmp_path / "images"
    (allowed / "sub").mkdir(parents=True)
    (allowed / "a.png").write_bytes(b"inside")
    (allowed / "sub" / "b.png").write_bytes(b"nested")
    (tmp_path / "secret").write_bytes(b"outside")
    (allowed / "out").symlink_to(tmp_path / "secret")
    (allowed / "in").symlink_to(allowed / "a.png")
    (allowed / "dir-out").symlink_to(tmp_path)
    os.mkfifo(allowed / "fifo")
    return ImageUriPolicy.from_roots([str(allowed)]), allowed


def test_files_inside_the_root_are_read_by_uri_or_path(tree: tuple[ImageUriPolicy, Path]) -> None:
    policy, allowed = tree
    assert policy.read((allowed / "a.png").as_uri(), 100) == b"inside"
    assert policy.read(str(allowed / "sub" / "b.png"), 100) == b"nested"
    assert policy.read(f"file://localhost{allowed}/a.png", 100) == b"inside"
    assert policy.read((allowed / "in").as_uri(), 100) == b"inside"  # a symlink that stays inside
    assert policy.read(f"file://{allowed}/sub/../a.png", 100) == b"inside"  # '..' that stays inside


@pytest.mark.parametrize(
    "uri",
    [
        "file://{root}/../secret",
        "file://{root}/%2e%2e/secret",
        "{root}/../secret",
        "file://{root}/out",  # symlink leading out
        "file://{root}/dir-out/secret",  # symlinked folder leading out
        "file:///etc/hostname",
        "file://otherhost{root}/a.png",
        "images/a.png",  # relative
        "http://169.254.169.254/latest/meta-data",
        "simplecache::file://{root}/a.png",
        "s3://bucket/a.png",
        "file://{root}/a.png\x00.jpg",
    ],
)
def test_uris_that_leave_the_root_are_refused(tree: tuple[ImageUriPolicy, Path], uri: str) -> None:
    policy, allowed = tree
    with pytest.raises(UriNotAllowed):
        policy.read(uri.format(root=allowed), 100)


def test_missing_files_fifos_and_folders_are_unreadable_without_blocking(tree: tuple[ImageUriPolicy, Path]) -> None:
    policy, allowed = tree
    for name in ("missing.png", "fifo", "sub"):
        with pytest.raises(UriUnreadable):
            policy.read((allowed / name).as_uri(), 100)


def test_a_file_over_the_limit_is_rejected_as_too_large(tree: tuple[ImageUriPolicy, Path]) -> None:
    policy, allowed = tree
    with pytest.raises(ImageRejected) as caught:
        policy.read((allowed / "a.png").as_uri(), 3)
    assert caught.value.reason == "too_large"


def test_no_roots_refuses_every_uri(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    policy = ImageUriPolicy.from_roots([])
    assert not policy.enabled
    with pytest.raises(UriNotAllowed, match="INFERLOOP_STREAMS__IMAGE_URI_ROOTS"):
        policy.read((tmp_path / "a.png").as_uri(), 10)


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
    policy = Settings().streams.image_uris()
    assert policy.folders == (tmp_path.resolve(),) and policy.prefixes == ("s3://b/p/",)
    monkeypatch.setenv("INFERLOOP_STREAMS__IMAGE_URI_ROOTS", '["relative/images"]')
    with pytest.raises(ValidationError, match="not an absolute path"):
        Settings()
