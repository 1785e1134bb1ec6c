"""Production traffic against a real Label Studio: redaction, sampling, caps and routing.

The redaction test seeds a corpus with personal data the built-in detectors claim
to catch, in every place a conversation can carry it (messages, the chat user's
comments, metadata, the user field, a title, the conversation's id), sends it with
LABELSYNC_REDACT=default, then searches every task's data and meta, the state
database (and its WAL) and all log output for each seeded value.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import httpx

from tests.daemon.conftest import project_tasks, run
from tests.support.corpus import write_atomic
from tests.support.labelstudio import create_project

SEEDED = {
    "email": "maria.gonzalez@example.com",
    "email2": "j.smith+billing@mail.example.org",
    "phone": "+44 20 7946 0958",
    "card": "4111 1111 1111 1111",
    "iban": "DE89 3704 0044 0532 0130 00",
    "ip": "203.0.113.77",
    "password": "hunter2secret",
}


def seeded_conversations(root: Path) -> None:
    for i in range(12):
        messages = [
            {
                "role": "user",
                "content": f"Hi, I am Maria ({SEEDED['email']}, {SEEDED['phone']}). "
                f"Refund to {SEEDED['iban']} please, not card {SEEDED['card']}.",
            },
            {"role": "assistant", "content": f"Sent to {SEEDED['email2']}. Is it {i}?"},
            {
                "role": "user",
                "content": f"My server {SEEDED['ip']} uses "
                f"postgres://admin:{SEEDED['password']}@db.example.com/app",
            },
            {
                "role": "assistant",
                "content": "Please rotate that password.",
                "feedback": {"score": 0, "comment": f"call me on {SEEDED['phone']}"},
            },
        ]
        document: dict[str, Any] = {
            "thread_id": f"pii-{i}",
            "user": SEEDED["email"],
            "title": f"Refund for {SEEDED['email']}",
            "metadata": {"contact": SEEDED["phone"], "notes": [SEEDED["card"]]},
            "messages": messages,
        }
        if i == 0:  # a bot that keys conversations by the user's address
            document["thread_id"] = SEEDED["email2"]
        write_atomic(root / f"conversation_{i}.json", document)


def test_nothing_the_built_in_detectors_catch_leaves_the_machine(env, ls_project, tmp_path):
    root = Path(env["LABELSYNC_WATCH_DIR"])
    root.mkdir(parents=True, exist_ok=True)
    seeded_conversations(root)
    env = {**env, "LABELSYNC_REDACT": "default", "LABELSYNC_LOG_LEVEL": "debug"}
    result = run(["backfill", "-v"], env)
    assert result.returncode == 0, result.stderr
    assert "personal data redacted" in result.stdout + result.stderr
    status = run(["status", "--all"], env)
    tasks = project_tasks(ls_project)
    assert len(tasks) == 12
    sent = json.dumps([{"data": t["data"], "meta": t["meta"]} for t in tasks], ensure_ascii=False)
    state = b"".join(p.read_bytes() for p in (tmp_path / "state").iterdir() if p.is_file())
    seen = {
        "Label Studio": sent,
        "the state": state.decode("utf-8", "replace"),
        "the log": result.stdout + result.stderr,
        "status": status.stdout + status.stderr,
    }
    for name, value in SEEDED.items():
        for where, text in seen.items():
            assert value not in text, f"{name} reached {where}"
            assert value.replace(" ", "") not in text.replace(" ", ""), f"{name} in {where}"
    # The dialogue still makes sense: the same address is the same placeholder everywhere.
    chat = tasks[0]["data"]["chat"]
    assert "<EMAIL_1>" in chat[0]["content"] and "<PHONE_1>" in chat[0]["content"]
    assert chat[3]["feedback"]["comment"] == "call me on <PHONE_1>"
    assert "<CREDENTIALS_1>@db.example.com" in chat[2]["content"]
    assert all(t["data"]["thread_id"] != SEEDED["email2"] for t in tasks)

    # Turning redaction off (or changing it) does not make every conversation look new.
    again = run(["backfill", "--recheck"], {**env, "LABELSYNC_REDACT": "email"})
    assert again.returncode == 0, again.stderr
    assert len(project_tasks(ls_project)) == 12


def test_file_names_with_personal_data_stay_out_of_the_log_and_status(env, ls_project):
    """A bot that names files after the user: with redaction on, labelsync's log lines
    and `status` show the name redacted (a sent file and a quarantined one)."""
    root = Path(env["LABELSYNC_WATCH_DIR"])
    root.mkdir(parents=True, exist_ok=True)
    good = root / f"{SEEDED['email']}.json"
    write_atomic(good, {"thread_id": "by-name", "messages": [
        {"role": "user", "content": "Where is my order?"},
        {"role": "assistant", "content": "On its way."},
        {"role": "user", "content": "Thanks"},
    ]})  # fmt: skip
    (root / f"call {SEEDED['phone']}.json").write_text('{"messages": [')  # broken
    plain = run(["backfill", "-v"], {**env, "LABELSYNC_LOG_LEVEL": "debug"})
    assert SEEDED["phone"] in plain.stdout + plain.stderr  # without redaction, it is there

    env = {**env, "LABELSYNC_REDACT": "default", "LABELSYNC_LOG_LEVEL": "debug"}
    good.touch()
    result = run(["backfill", "-v", "--recheck"], env)
    status = run(["status", "--all"], env)
    shown = result.stdout + result.stderr + status.stdout + status.stderr
    for value in (SEEDED["email"], SEEDED["phone"]):
        assert value not in shown, shown[shown.index(value) - 300 : shown.index(value) + 100]
    assert "call <PHONE_1>.json" in status.stdout  # still says which file, and why
    assert "quarantined" in status.stdout


def thumbs(i: int) -> bool:
    return i % 37 == 0


def sample_corpus(root: Path, count: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        messages = [
            {"role": "user", "content": f"question {i}"},
            {"role": "assistant", "content": f"answer {i}"},
            {"role": "user", "content": "thanks"},
            {"role": "assistant", "content": "you are welcome"},
        ]
        if thumbs(i):
            messages[1]["feedback"] = {"score": 0}
        (root / f"c{i}.json").write_text(json.dumps({"thread_id": f"s-{i}", "messages": messages}))


def test_a_10_percent_sample_plus_every_thumbs_down_then_raised_to_30(env, ls_project, tmp_path):
    root = Path(env["LABELSYNC_WATCH_DIR"])
    n = 5000
    sample_corpus(root, n)
    config = tmp_path / "rules.toml"
    config.write_text(
        '[[rules]]\nname = "unhappy"\nwhen = { feedback = "thumbs-down" }\nalways_send = true\n'
    )
    env = {**env, "LABELSYNC_SAMPLE_RATE": "0.1", "LABELSYNC_BATCH_SIZE": "1000"}
    first = run(["--config", str(config), "backfill"], env)
    assert first.returncode == 0, first.stderr
    sent = {t["data"]["thread_id"] for t in project_tasks(ls_project)}
    unhappy = {f"s-{i}" for i in range(n) if thumbs(i)}
    assert unhappy <= sent  # every thumbs-down, whatever the rate
    sampled = len(sent - unhappy)
    expected, sd = 0.1 * (n - len(unhappy)), math.sqrt(0.1 * 0.9 * (n - len(unhappy)))
    assert abs(sampled - expected) < 4.5 * sd, (sampled, expected)
    status = json.loads(run(["--config", str(config), "status", "--json"], env).stdout)
    assert status["counts"]["not_sampled"] == n - len(sent)
    assert status["counts"]["rule:unhappy"] == len(unhappy)

    # The same decision on a second run, from a state rebuilt from nothing.
    rerun = run(
        ["--config", str(config), "backfill"], {**env, "LABELSYNC_STATE_DIR": str(tmp_path / "s2")}
    )
    assert rerun.returncode == 0
    assert {t["data"]["thread_id"] for t in project_tasks(ls_project)} == sent

    # Raised to 30 %: --recheck sends only the newly selected, none twice.
    raised = run(
        ["--config", str(config), "backfill", "--recheck"], {**env, "LABELSYNC_SAMPLE_RATE": "0.3"}
    )
    assert raised.returncode == 0, raised.stderr
    tasks = project_tasks(ls_project)
    ids = [t["data"]["thread_id"] for t in tasks]
    assert len(ids) == len(set(ids))
    assert set(ids) > sent
    grown = len(set(ids) - unhappy)
    assert abs(grown - 0.3 * (n - len(unhappy))) < 4.5 * math.sqrt(0.3 * 0.7 * (n - len(unhappy)))


def test_a_cap_holds_the_overflow_for_later_instead_of_dropping_it(env, ls_project):
    root = Path(env["LABELSYNC_WATCH_DIR"])
    sample_corpus(root, 30)
    capped = run(["backfill"], {**env, "LABELSYNC_CAP_PER_HOUR": "20"})
    assert capped.returncode == 0, capped.stderr
    assert len(project_tasks(ls_project)) == 20
    status = json.loads(run(["status", "--json"], env).stdout)
    assert status["counts"]["deferred"] == 10
    # The next hour (here: the cap raised), the held ones go, each once.
    later = run(["backfill"], {**env, "LABELSYNC_CAP_PER_HOUR": "100"})
    assert later.returncode == 0, later.stderr
    ids = [t["data"]["thread_id"] for t in project_tasks(ls_project)]
    assert len(ids) == 30 == len(set(ids))


def test_two_routing_rules_fill_two_projects_and_no_conversation_is_in_both(
    env, ls_project, label_studio, tmp_path
):
    billing = create_project(label_studio, "routed billing")
    root = Path(env["LABELSYNC_WATCH_DIR"])
    root.mkdir(parents=True, exist_ok=True)
    for i in range(20):
        app = "billing" if i % 3 == 0 else "support"
        messages = [
            {"role": "user", "content": f"q{i}"},
            {"role": "assistant", "content": "a"},
            {"role": "user", "content": "more"},
            {"role": "assistant", "content": "b"},
        ]
        document = {"thread_id": f"r-{i}", "metadata": {"app": app}, "messages": messages}
        (root / f"r{i}.json").write_text(json.dumps(document))
    config = tmp_path / "routes.toml"
    config.write_text(
        "[[rules]]\n"
        'name = "billing"\n'
        'when = { "metadata.app" = "billing" }\n'
        f"project = {billing.id}\n"
        "[[rules]]\n"
        'name = "billing by title"\n'
        'when = { "metadata.app" = "nothing-matches" }\n'
        'project = "routed billing"\n'
    )
    result = run(["--config", str(config), "backfill"], env)
    assert result.returncode == 0, result.stderr
    in_billing = {t["data"]["thread_id"] for t in project_tasks(billing)}
    in_default = {t["data"]["thread_id"] for t in project_tasks(ls_project)}
    assert in_billing == {f"r-{i}" for i in range(20) if i % 3 == 0}
    assert in_default == {f"r-{i}" for i in range(20) if i % 3 != 0}
    assert not in_billing & in_default
    # A rerun sends nothing anywhere: versions are per (conversation, project).
    assert run(["--config", str(config), "backfill"], env).returncode == 0
    assert len(project_tasks(billing)) + len(project_tasks(ls_project)) == 20
    # validate says where a file would go, and why.
    said = run(["--config", str(config), "validate", str(root / "r0.json")], env).stdout
    assert f"to project {billing.id} (rule 'billing')" in said


def test_init_project_creates_the_projects_rules_name(env, label_studio, tmp_path):
    config = tmp_path / "routes.toml"
    config.write_text(
        '[[rules]]\nname = "vip"\nwhen = { user = "vip-*" }\nproject = "VIP conversations"\n'
    )
    first = run(["--config", str(config), "init-project", "--rules"], env)
    assert first.returncode == 0, first.stderr
    project_id = int(first.stdout.split()[0])
    again = run(["--config", str(config), "init-project", "--rules"], env)
    assert again.stdout.split()[0] == str(project_id) and "(exists)" in again.stdout
    answer = httpx.get(
        f"{label_studio.url}/api/projects/{project_id}",
        headers={"Authorization": f"Token {label_studio.legacy_token}"},
        timeout=30,
    )
    assert answer.json()["title"] == "VIP conversations"
