"""Checking a conversation file against the labelsync contract."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "daemon" / "labelsync" / "schema" / "conversation.v1.schema.json"


def assert_follows_contract(data: dict[str, Any]) -> None:
    try:
        import jsonschema
    except ImportError:  # check the fields the daemon relies on by hand
        assert isinstance(data["messages"], list) and data["messages"]
        for message in data["messages"]:
            assert isinstance(message["role"], str) and isinstance(message["content"], str)
    else:
        jsonschema.validate(data, json.loads(SCHEMA.read_text()))
    # What the chatbot promises on top of the schema:
    assert data["contract"] == "labelsync/1"
    assert data["metadata"] == {"thread_id": data["thread_id"], "app": "labelsync-chatbot"}
    assert data["turn_count"] == sum(1 for m in data["messages"] if m["role"] == "user")
    assert isinstance(data["ended"], bool)
    assert data["timestamp"].endswith("Z")
    assert data["started_at"].endswith("Z") and data["started_at"] <= data["timestamp"]
    assert data["sessions"][0] == data["session_id"]
    assert len(set(data["sessions"])) == len(data["sessions"])
    assert isinstance(data["system_prompt"], str)
    for message in data["messages"]:
        assert message["role"] in ("user", "assistant")
        assert message["timestamp"].endswith("Z")
        if "feedback" in message and "at" in message["feedback"]:
            assert message["feedback"]["at"].endswith("Z")
    # Never two user messages in a row: a failed reply records neither side.
    roles = [m["role"] for m in data["messages"]]
    assert all(a != b for a, b in itertools.pairwise(roles)), roles


def labelsync_validate(path: Path) -> subprocess.CompletedProcess[str]:
    """Run the daemon's own `labelsync validate` on a file the chatbot wrote."""
    return subprocess.run(
        [sys.executable, "-m", "labelsync.cli", "validate", str(path)],
        capture_output=True, text=True, check=False,
    )
