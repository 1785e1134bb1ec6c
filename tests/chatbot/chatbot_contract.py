"""Checking a conversation file against the labelsync contract."""

from __future__ import annotations

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
    for message in data["messages"]:
        assert message["role"] in ("user", "assistant")
        assert message["timestamp"].endswith("Z")


def labelsync_validate(path: Path) -> subprocess.CompletedProcess[str]:
    """Run the daemon's own `labelsync validate` on a file the chatbot wrote."""
    return subprocess.run(
        [sys.executable, "-m", "labelsync.cli", "validate", str(path)],
        capture_output=True, text=True, check=False,
    )
