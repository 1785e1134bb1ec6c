"""The shipped systemd units: valid for systemd, and hardened enough."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS_DIR = Path(__file__).resolve().parents[2] / "systemd"
DAEMON, CHATBOT = "labelsync.service", "labelsync-chatbot.service"
INSTALLED_BINARIES = re.compile(r"^(ExecStart=)/opt/labelsync/bin/\S+", re.MULTILINE)
MAX_EXPOSURE = 2.0

# `make test` installs systemd's tools when they are missing: no silent skip here.
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None, "systemd-analyze is missing (apt-get install systemd)"
    return subprocess.run(
        [SYSTEMD_ANALYZE, *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def units_with_real_binaries(tmp_path: Path) -> Path:
    """Copies of the units whose ExecStart= points at a binary that exists here.

    `systemd-analyze verify` fails a unit whose ExecStart= binary is missing,
    and /opt/labelsync/bin/labelsync only exists once installed as the env
    example describes. Installing there from a test would touch the machine;
    pointing verify at a differently built unit would test something else. So
    only the program path changes, and every other line is verified as shipped.
    """
    true = shutil.which("true")
    assert true is not None
    for unit in (DAEMON, CHATBOT):
        text = (UNITS_DIR / unit).read_text()
        rewritten, count = INSTALLED_BINARIES.subn(rf"\g<1>{true}", text)
        assert count == 1, f"{unit}: expected one ExecStart= under /opt/labelsync/bin"
        (tmp_path / unit).write_text(rewritten)
    return tmp_path


@pytest.mark.parametrize("unit", [DAEMON, CHATBOT])
def test_systemd_accepts_the_unit(units_with_real_binaries: Path, unit: str) -> None:
    result = analyze("verify", "--man=no", str(units_with_real_binaries / unit))

    # Unknown keys and misplaced sections are only warnings (exit code 0), so
    # any complaint naming our unit fails the test too.
    complaints = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if unit in line or str(units_with_real_binaries) in line
    ]
    assert result.returncode == 0, result.stderr
    assert complaints == []


@pytest.mark.parametrize("unit", [DAEMON, CHATBOT])
def test_the_unit_is_hardened(unit: str) -> None:
    result = analyze("security", "--offline=yes", "--no-pager", str(UNITS_DIR / unit))
    if "--offline" in result.stderr and "unrecognized" in result.stderr:
        pytest.skip("this systemd-analyze predates --offline (systemd < 250)")

    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    score = float(match.group(1))
    print(f"{unit}: exposure {score}")
    assert score <= MAX_EXPOSURE, result.stdout


def test_the_daemon_unit_speaks_the_notify_protocol_and_keeps_its_key_out_of_env() -> None:
    settings = dict(
        line.split("=", 1)
        for line in (UNITS_DIR / DAEMON).read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )

    assert settings["Type"] == "notify"
    assert settings["WatchdogSec"]
    assert settings["LoadCredential"].startswith("label-studio-api-key:")
    assert "LABEL_STUDIO_API_KEY" not in (UNITS_DIR / DAEMON).read_text()


def test_the_env_example_is_plain_settings_and_holds_no_secret() -> None:
    lines = [
        line
        for line in (UNITS_DIR / "labelsync.env.example").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    settings = dict(line.split("=", 1) for line in lines)

    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", key) for key in settings)
    assert not any("KEY" in key or "TOKEN" in key for key in settings)
    # The daemon watches where the chatbot unit writes.
    chatbot = (UNITS_DIR / CHATBOT).read_text()
    assert "StateDirectory=labelsync-chatbot labelsync-chatbot/conversations" in chatbot
    assert settings["LABELSYNC_WATCH_DIR"] == "/var/lib/labelsync-chatbot/conversations"


def test_sysusers_creates_the_group_and_the_chatbot_user(tmp_path: Path) -> None:
    """What the units expect to exist: the group the daemon joins, the chatbot's user in it."""
    (tmp_path / "etc").mkdir()
    for name in ("passwd", "group"):
        (tmp_path / "etc" / name).write_text("")
    result = subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", str(UNITS_DIR / "labelsync.sysusers")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    groups = {
        line.split(":")[0]: line.split(":")[2]
        for line in (tmp_path / "etc" / "group").read_text().splitlines()
    }
    user = next(
        line.split(":")
        for line in (tmp_path / "etc" / "passwd").read_text().splitlines()
        if line.startswith("labelsync-chatbot:")
    )
    assert "labelsync" in groups and user[3] == groups["labelsync"]
    assert user[5] == "/var/lib/labelsync-chatbot"
    chatbot_unit = (UNITS_DIR / "labelsync-chatbot.service").read_text()
    assert "User=labelsync-chatbot" in chatbot_unit and "Group=labelsync" in chatbot_unit
    assert "SupplementaryGroups=labelsync" in (UNITS_DIR / "labelsync.service").read_text()
