"""The `labelsync` command as a user runs it: exit codes, one-line errors, no secrets."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.daemon.conftest import project_tasks, run
from tests.support.corpus import write_atomic, write_corpus


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    # Retry warnings may come first; the error itself is one line, last.
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("labelsync: "), result.stderr
    for needle in needles:
        assert needle in last


def test_backfill_exit_codes_summary_and_status(env, ls_project, tmp_path):
    root = Path(env["LABELSYNC_WATCH_DIR"])
    write_corpus(root, 12)
    result = run(["backfill"], env)
    assert result.returncode == 0, result.stderr
    assert "new conversations (version 1)" in result.stdout + result.stderr
    assert len(project_tasks(ls_project)) == 12

    (root / "broken.json").write_text("{nope")
    result = run(["backfill"], env)
    assert result.returncode == 1
    assert "broken.json" in result.stdout + result.stderr

    status = json.loads(run(["status", "--json"], env).stdout)
    assert status["counts"]["tasks"] == 12
    assert status["quarantined"][0]["path"].endswith("broken.json")
    assert "not valid JSON" in status["quarantined"][0]["reason"]
    human = run(["status"], env).stdout
    assert "12 conversations" in human.replace("conversations:  12", "12 conversations")
    assert "broken.json" in human


def test_dry_run_sends_and_records_nothing(env, ls_project):
    write_corpus(Path(env["LABELSYNC_WATCH_DIR"]), 5)
    result = run(["backfill", "--dry-run"], env)
    assert result.returncode == 0, result.stderr
    assert "dry run" in result.stdout + result.stderr
    assert project_tasks(ls_project) == []
    status = json.loads(run(["status", "--json"], env).stdout)
    assert status["last_backfill"] is None and status["counts"].get("files_synced", 0) == 0
    assert run(["backfill"], env).returncode == 0
    assert len(project_tasks(ls_project)) == 5


def test_missing_and_invalid_settings_are_one_line_exit_2(env, tmp_path):
    no_key = {k: v for k, v in env.items() if k != "LABEL_STUDIO_API_KEY"}
    assert_one_line_error(run(["backfill", str(tmp_path)], no_key), "LABEL_STUDIO_API_KEY")
    bad = {**env, "LABELSYNC_MIN_TURNS": "two", "LABEL_STUDIO_PROJECT_ID": "x"}
    assert_one_line_error(
        run(["backfill", str(tmp_path)], bad), "LABELSYNC_MIN_TURNS", "LABEL_STUDIO_PROJECT_ID"
    )


def test_wrong_key_is_named_and_never_printed(env, tmp_path):
    secret = "not-the-right-key-5f3a9c"
    result = run(["backfill", str(tmp_path)], {**env, "LABEL_STUDIO_API_KEY": secret})
    assert_one_line_error(result, "LABEL_STUDIO_API_KEY", "401")
    assert secret not in result.stderr + result.stdout


def test_wrong_project_and_unreachable_server(env, tmp_path):
    result = run(["backfill", str(tmp_path)], {**env, "LABEL_STUDIO_PROJECT_ID": "987654"})
    assert_one_line_error(result, "LABEL_STUDIO_PROJECT_ID")
    result = run(["backfill", str(tmp_path)], {**env, "LABEL_STUDIO_URL": "http://127.0.0.1:9"})
    assert_one_line_error(result, "cannot connect to http://127.0.0.1:9")


def test_settings_from_a_toml_file_and_a_credentials_directory(env, ls_project, tmp_path):
    root = tmp_path / "from-toml"
    write_corpus(root, 3)
    config = tmp_path / "labelsync.toml"
    config.write_text(f'watch_dir = "{root}"\nlabel_studio_project_id = {ls_project.id}\n')
    credentials = tmp_path / "creds"
    credentials.mkdir()
    (credentials / "label-studio-api-key").write_text(ls_project.token + "\n")
    minimal = {
        k: v
        for k, v in env.items()
        if k not in ("LABEL_STUDIO_API_KEY", "LABEL_STUDIO_PROJECT_ID", "LABELSYNC_WATCH_DIR")
    }
    result = run(
        ["--config", str(config), "backfill"],
        {**minimal, "CREDENTIALS_DIRECTORY": str(credentials)},
    )
    assert result.returncode == 0, result.stderr
    assert len(project_tasks(ls_project)) == 3


def test_the_key_never_reaches_logs_or_the_state_file(env, tmp_path):
    write_corpus(Path(env["LABELSYNC_WATCH_DIR"]), 3)
    (Path(env["LABELSYNC_WATCH_DIR"]) / "bad.json").write_text("[]")
    result = run(["backfill", "-v"], env)
    assert result.returncode == 1
    key = env["LABEL_STUDIO_API_KEY"]
    assert key not in result.stdout + result.stderr
    for path in Path(env["LABELSYNC_STATE_DIR"]).iterdir():
        assert key.encode() not in path.read_bytes(), path


def test_validate_tells_a_bot_author_what_is_wrong(env, tmp_path):
    good = tmp_path / "good.json"
    write_atomic(
        good,
        {
            "thread_id": "t",
            "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
        },
    )
    bad = tmp_path / "bad.json"
    bad.write_text('{"messages": [{"role": "user"}]}')
    result = run(["validate", str(good), str(bad)], env)
    assert result.returncode == 1
    assert f"{good}: ok:" in result.stdout and "1 user turns" in result.stdout
    assert "waits until it has 2 user turns" in result.stdout
    assert f'{bad}: invalid: messages[0] has no "content"' in result.stdout
    assert run(["validate", str(good)], env).returncode == 0


def test_init_project_creates_a_project_that_accepts_synced_tasks(env, ls_project, tmp_path):
    result = run(["init-project", "--title", "labelsync test project"], env)
    assert result.returncode == 0, result.stderr
    project_id = int(result.stdout.strip())
    root = tmp_path / "init"
    write_corpus(root, 2)
    result = run(
        ["backfill", str(root)],
        {
            **env,
            "LABEL_STUDIO_PROJECT_ID": str(project_id),
            "LABELSYNC_STATE_DIR": str(tmp_path / "s2"),
        },
    )
    assert result.returncode == 0, result.stderr
    assert len(project_tasks(ls_project, project_id)) == 2


def test_a_personal_access_token_works_also_with_legacy_tokens_off(
    env, ls_project, label_studio, ls_personal_access_token
):
    from tests.support.labelstudio import set_legacy_tokens_enabled

    write_corpus(Path(env["LABELSYNC_WATCH_DIR"]), 4)
    set_legacy_tokens_enabled(label_studio, False)
    try:
        legacy = run(["backfill"], env)
        assert_one_line_error(legacy, "LABEL_STUDIO_API_KEY")
        pat = run(["backfill"], {**env, "LABEL_STUDIO_API_KEY": ls_personal_access_token})
        assert pat.returncode == 0, pat.stderr
        assert ls_personal_access_token not in pat.stdout + pat.stderr
    finally:
        set_legacy_tokens_enabled(label_studio, True)
    assert len(project_tasks(ls_project)) == 4


def test_a_rejected_project_says_why(env):
    result = run(["init-project", "--title", "v2"], env)
    assert_one_line_error(result, "title", "at least 3 characters")
