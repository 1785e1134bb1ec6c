"""Log lines stay one event a line, whatever a file name or the server says."""

from __future__ import annotations

import json
import logging
import subprocess
import time
from pathlib import Path

import pytest

from labelsync import logs
from tests.daemon.conftest import LABELSYNC, run
from tests.support.corpus import write_corpus

FORGED = "INFO sent forged as version 1 (task 1) from x.json"
NAME = f"bad\n{FORGED}\r\u2028.json"  # a newline, a carriage return, a line separator


def emit(fmt: str, *args: object, exc: bool = False) -> str:
    import io

    stream = io.StringIO()
    logs.setup("info", fmt, logging.StreamHandler(stream))
    log = logging.getLogger("labelsync.test")
    if exc:
        try:
            raise ValueError(f"cannot read {args[0]}")
        except ValueError:
            log.exception("quarantined %s", *args)
    else:
        log.warning("quarantined %s: %s", *args)
    logging.getLogger().handlers.clear()
    return stream.getvalue()


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_newline_in_a_file_name_cannot_start_a_line(fmt: str):
    out = emit(fmt, f"/data/{NAME}", "not valid JSON")
    lines = out.splitlines()
    assert len(lines) == 1, out
    assert not any(line.startswith("INFO") for line in lines)
    if fmt == "json":
        assert FORGED in json.loads(lines[0])["msg"]  # kept, readable, one value
    else:
        assert "bad\\nINFO sent forged" in lines[0] and "\\u2028" in lines[0]


def test_a_traceback_in_text_lines_is_indented_under_its_event():
    out = emit("text", f"/data/{NAME}", exc=True)
    first, *rest = out.splitlines()
    assert first.startswith("ERROR quarantined")
    assert rest and all(line.startswith("  | ") for line in rest)


def test_escape_keeps_ordinary_text_and_tabs():
    assert logs.escape("plain\ttext é ✓") == "plain\ttext é ✓"
    assert logs.escape("a\x1b[2Jb\x85c") == "a\\x1b[2Jb\\x85c"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_daemon_logs_a_hostile_file_name_on_one_line(env, fmt):
    """`labelsync run`'s stderr is log records only: each one line, in both formats."""
    root = Path(env["LABELSYNC_WATCH_DIR"])
    write_corpus(root, 2)
    (root / NAME).write_text("{not json")
    process = subprocess.Popen(
        [*LABELSYNC, "run", "--log-format", fmt],
        env={**env, "LABELSYNC_QUIET_SECONDS": "1", "LABELSYNC_LOG_LEVEL": "info"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _quarantined(env):
            time.sleep(0.3)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    lines = stderr.splitlines()
    assert any("quarantined" in line and "bad\\nINFO sent forged" in line for line in lines), stderr
    if fmt == "json":
        entries = [json.loads(line) for line in lines]  # every line is one whole record
        assert any(FORGED in e["msg"] and "quarantined" in e["msg"] for e in entries)
    else:
        levels = ("DEBUG ", "INFO ", "WARNING ", "ERROR ", "CRITICAL ")
        assert all(line.startswith(levels) for line in lines), stderr
        assert not any(line.startswith("INFO sent forged") for line in lines)


def _quarantined(env: dict[str, str]) -> bool:
    status = run(["status", "--json"], env)
    return status.returncode == 0 and bool(json.loads(status.stdout)["quarantined"])


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_with_redaction_on_personal_data_in_arguments_is_redacted_server_addresses_are_not(
    fmt: str,
):
    import io

    from labelsync import privacy
    from labelsync.redact import build_redactor

    stream = io.StringIO()
    logs.setup("info", fmt, logging.StreamHandler(stream))
    logs.redact_arguments(privacy.for_logs(build_redactor("default")))
    log = logging.getLogger("labelsync.test")
    log.warning("quarantined %s: %s", Path("/data/ana@example.com\n.json"), "not valid JSON")
    log.warning("Label Studio at %s did not answer", "http://10.1.2.3:8080")
    logging.getLogger().handlers.clear()
    out = stream.getvalue()
    assert "ana@example.com" not in out
    assert "<EMAIL_1>" in out and "\\n.json" in out  # redacted, and still one line
    assert "http://10.1.2.3:8080" in out  # labelsync's own servers stay named


def test_a_redaction_that_fails_hides_the_argument_and_the_line_is_still_written():
    import io

    def broken(text: str) -> str:
        raise RuntimeError("detector crashed")

    stream = io.StringIO()
    logs.setup("info", "text", logging.StreamHandler(stream))
    logs.redact_arguments(broken)
    logging.getLogger("labelsync.test").warning("sent %s (task %d)", "ana@example.com.json", 7)
    logging.getLogger().handlers.clear()
    out = stream.getvalue()
    assert "ana@example.com" not in out
    assert "sent <not shown: redaction failed> (task 7)" in out
