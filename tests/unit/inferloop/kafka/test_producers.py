from __future__ import annotations

from pathlib import Path

import pytest

from inferloop.kafka.errors import FeedbackError
from inferloop.kafka.producers import parse_feedback_file


def test_feedback_files(tmp_path: Path) -> None:
    csv = tmp_path / "f.csv"
    csv.write_text("event_id,label\na,1\n\nb, 2 ,person\n")
    assert parse_feedback_file(csv) == [("a", "1", None), ("b", "2", "person")]
    jsonl = tmp_path / "f.jsonl"
    jsonl.write_text('{"event_id": "a", "label": "1"}\n{"event_id": "b", "label": "2", "source": "x"}\n')
    assert parse_feedback_file(jsonl) == [("a", "1", None), ("b", "2", "x")]
    jsonl.write_text('{"event_id": "a"}\n')
    with pytest.raises(FeedbackError, match=r"f\.jsonl:1"):
        parse_feedback_file(jsonl)
    csv.write_text("a\n")
    with pytest.raises(FeedbackError, match=r"f\.csv:1"):
        parse_feedback_file(csv)
