"""The engine against a real Label Studio: what lands, once, and what does not."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx

from labelsync.files import scan
from labelsync.labelstudio import AccessDenied, LabelStudio, ProjectNotFound
from tests.daemon.conftest import project_tasks, versions_in
from tests.support.corpus import conversation, write_atomic, write_corpus
from tests.support.faultproxy import Fault, FaultProxy


def chat(thread: str, *questions: str) -> dict:
    messages = []
    for q in questions:
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": f"A: {q}"}]
    return {
        "session_id": thread,
        "model": "m",
        "messages": messages,
        "metadata": {"thread_id": thread, "team": "support"},
    }


def test_backfill_sends_each_conversation_once_in_the_task_shape(
    make_engine, ls_project, conversations
):
    write_corpus(conversations, 40)
    tally = make_engine(batch_size=16).backfill()
    assert tally["new_tasks"] == 40

    tasks = project_tasks(ls_project)
    assert len(tasks) == 40
    openai_style = next(t for t in tasks if t["data"]["thread_id"].endswith("000002"))
    data = openai_style["data"]
    assert data["version"] == 1
    assert data["session_id"] == f"{data['thread_id']}_v1"
    assert data["source_file"] == f"conversation_{data['thread_id']}.json"
    assert all(
        isinstance(m["content"], str) and m["role"] in ("user", "assistant") for m in data["chat"]
    )
    assert data["turn_count"] == sum(m["role"] == "user" for m in data["chat"])
    assert len(data["sync_key"]) == 32
    tutorial = next(t for t in tasks if t["data"]["thread_id"].endswith("000000"))
    assert tutorial["meta"]["metadata"]["source"] == "labelsync-corpus"


def test_second_run_of_unchanged_directory_imports_nothing(make_engine, ls_project, conversations):
    write_corpus(conversations, 30)
    harness = make_engine()
    harness.backfill()
    again = harness.backfill()
    assert again["unchanged"] == 30
    assert again.get("new_tasks", 0) == again.get("new_versions", 0) == 0
    assert len(project_tasks(ls_project)) == 30


def test_growing_conversation_becomes_version_2_and_resaves_create_nothing(
    make_engine, ls_project, conversations
):
    path = conversations / "conversation_t1.json"
    write_atomic(path, chat("t1", "q1", "q2"))
    harness = make_engine(keep_versions=True)
    harness.backfill()

    # Same dialogue saved again with a new time stamp and turn_count: not a new version.
    write_atomic(path, {**chat("t1", "q1", "q2"), "timestamp": "later", "turn_count": 99})
    assert harness.backfill().get("duplicates") == 1
    # Touched, same bytes.
    os.utime(path)
    harness.backfill()
    assert versions_in(ls_project) == [("t1", 1)]

    write_atomic(path, chat("t1", "q1", "q2", "q3"))
    assert harness.backfill()["new_versions"] == 1
    tasks = {t["data"]["version"]: t["data"] for t in project_tasks(ls_project)}
    assert sorted(tasks) == [1, 2]
    assert len(tasks[2]["chat"]) == 6 and len(tasks[1]["chat"]) == 4
    assert tasks[2]["session_id"] == "t1_v2"
    assert tasks[2]["previous"] == [[1, tasks[1]["sync_key"]]]
    assert (tasks[1]["latest"], tasks[2]["latest"]) == (False, True)


def test_snapshot_files_of_one_conversation_become_ordered_versions(
    make_engine, ls_project, conversations
):
    early = conversations / "conversation_t9_20261124_100000.json"
    late = conversations / "conversation_t9.json"
    write_atomic(early, chat("t9", "q1", "q2"))
    write_atomic(late, chat("t9", "q1", "q2", "q3"))
    os.utime(early, ns=(1_000_000_000, 1_000_000_000))  # written first
    make_engine(keep_versions=True).backfill()
    by_version = {t["data"]["version"]: t["data"] for t in project_tasks(ls_project)}
    assert len(by_version[1]["chat"]) == 4 and len(by_version[2]["chat"]) == 6


def test_short_conversation_waits_until_it_has_enough_turns(make_engine, ls_project, conversations):
    path = conversations / "conversation_short.json"
    write_atomic(path, chat("short", "only one question"))
    harness = make_engine(min_turns=2)
    assert harness.backfill()["waiting"] == 1
    assert project_tasks(ls_project) == []
    write_atomic(path, chat("short", "only one question", "and another"))
    assert harness.backfill()["new_tasks"] == 1
    assert versions_in(ls_project) == [("short", 1)]


def test_bad_files_are_quarantined_and_never_block_the_others(
    make_engine, ls_project, conversations
):
    write_corpus(conversations, 5)
    (conversations / "broken.json").write_text('{"messages": [')
    (conversations / "empty.json").write_text('{"messages": []}')
    (conversations / "deep.json").write_text('{"messages": ' + "[" * 200 + "]" * 200 + "}")
    (conversations / "huge.json").write_text(json.dumps(chat("huge", "x" * 5000, "y")))
    harness = make_engine(max_file_bytes=4096)
    tally = harness.backfill()
    assert tally["new_tasks"] == 5 and tally["quarantined"] == 4
    reasons = {p: r for p, _, r in harness.engine.state.problems("quarantined")}
    assert "not valid JSON" in reasons[str(conversations / "broken.json")]
    assert "no messages" in reasons[str(conversations / "empty.json")]
    assert "nests deeper" in reasons[str(conversations / "deep.json")]
    assert "LABELSYNC_MAX_FILE_BYTES" in reasons[str(conversations / "huge.json")]

    # Tried again only when the content changes; fixed, it is sent.
    assert harness.backfill().get("quarantined", 0) == 0
    write_atomic(conversations / "broken.json", chat("fixed", "a", "b"))
    assert harness.backfill()["new_tasks"] == 1
    assert ("fixed", 1) in versions_in(ls_project)


def test_lost_state_directory_is_rebuilt_from_label_studio_without_duplicates(
    make_engine, ls_project, conversations
):
    write_corpus(conversations, 25)
    make_engine().backfill()
    fresh = make_engine(state_name="new-state.sqlite3")
    tally = fresh.backfill()
    assert tally["recovered"] == 25
    assert tally.get("new_tasks", 0) == 0 and tally["duplicates"] == 25
    assert len(project_tasks(ls_project)) == 25


def test_import_answered_with_an_error_after_it_happened_is_not_repeated(
    make_engine, ls_project, conversations
):
    """Label Studio imported the batch but the answer was a 502: resolve by sync_key."""
    write_corpus(conversations, 12)
    with FaultProxy(ls_project.url) as proxy:
        proxy.add(
            Fault(
                "POST", f"/api/projects/{ls_project.id}/import", "forward_then_status", status=502
            )
        )
        tally = make_engine(url=proxy.url).backfill()
    assert tally["new_tasks"] == 12
    assert tally["recovered"] == 12  # found by asking, as the summary says
    assert len(project_tasks(ls_project)) == 12
    imports = [s for m, p, s in proxy.seen if m == "POST" and "/import" in p]
    assert imports == [502]  # resolved by asking, never imported a second time


def test_import_that_timed_out_after_it_happened_is_not_repeated(
    make_engine, ls_project, conversations
):
    write_corpus(conversations, 8)
    with FaultProxy(ls_project.url) as proxy:
        proxy.add(
            Fault("POST", f"/api/projects/{ls_project.id}/import", "forward_then_hang", hang_s=4)
        )
        tally = make_engine(url=proxy.url, timeout_s=1.5).backfill()
    assert tally["new_tasks"] == 8
    assert len(project_tasks(ls_project)) == 8


def test_overloaded_label_studio_is_retried_honouring_retry_after(
    make_engine, ls_project, conversations
):
    write_corpus(conversations, 6)
    with FaultProxy(ls_project.url) as proxy:
        for status in (503, 429):
            proxy.add(
                Fault(
                    "POST",
                    f"/api/projects/{ls_project.id}/import",
                    "status",
                    status=status,
                    retry_after="1",
                )
            )
        tally = make_engine(url=proxy.url).backfill()
    assert tally["new_tasks"] == 6
    assert [s for m, p, s in proxy.seen if "/import" in p] == [503, 429, 201]
    assert len(project_tasks(ls_project)) == 6


def test_a_rejected_item_is_narrowed_down_and_quarantined_while_the_rest_are_sent(
    make_engine, ls_project, conversations
):
    write_corpus(conversations, 9)
    poison = conversations / "conversation_poison.json"
    write_atomic(poison, chat("poison", "q1", "q2"))
    with FaultProxy(ls_project.url) as proxy:
        proxy.reject_thread_ids.add("poison")
        harness = make_engine(url=proxy.url, batch_size=10)
        tally = harness.backfill()
    assert tally["new_tasks"] == 9 and tally["quarantined"] == 1
    reasons = {p: r for p, _, r in harness.engine.state.problems("rejected")}
    assert "HTTP 400" in reasons[str(poison)]
    assert len(project_tasks(ls_project)) == 9


def test_wrong_key_and_wrong_project_are_named_without_the_key(ls_project):
    secret = "wrong-key-0123456789abcdef"
    try:
        LabelStudio(ls_project.url, secret, ls_project.id, timeout_s=10).project_title()
    except AccessDenied as exc:
        assert "LABEL_STUDIO_API_KEY" in str(exc) and secret not in str(exc)
    else:
        raise AssertionError("a wrong key was accepted")
    try:
        LabelStudio(ls_project.url, ls_project.token, 999_999, timeout_s=10).project_title()
    except ProjectNotFound as exc:
        assert "LABEL_STUDIO_PROJECT_ID" in str(exc)
    else:
        raise AssertionError("a missing project was accepted")


def test_other_shapes_and_fields_reach_label_studio(make_engine, ls_project, conversations):
    path: Path = conversations / "sg.json"
    import random

    write_atomic(path, conversation("sharegpt-1", 2, random.Random(1), "sharegpt"))
    make_engine().backfill()
    (task,) = project_tasks(ls_project)
    assert task["data"]["thread_id"] == "sharegpt-1"
    assert [m["role"] for m in task["data"]["chat"]] == ["user", "assistant"] * 2


def test_recheck_decides_unchanged_files_again_after_a_settings_change(
    make_engine, ls_project, conversations
):
    write_atomic(conversations / "short.json", chat("short", "one question"))
    write_atomic(conversations / "long.json", chat("long", "q1", "q2"))
    assert make_engine(min_turns=2).backfill()["waiting"] == 1
    lowered = make_engine(min_turns=1)
    assert lowered.backfill()["unchanged"] == 2  # nothing looked at again
    tally = lowered.engine.sync(scan(conversations), recheck=True).tally
    assert tally["new_tasks"] == 1 and tally["duplicates"] == 1
    assert versions_in(ls_project) == [("long", 1), ("short", 1)]


def lines(*objects: dict) -> str:
    return "".join(json.dumps(o) + "\n" for o in objects)


def test_an_export_with_many_conversations_is_one_task_each_and_bad_elements_cost_themselves(
    make_engine, ls_project, conversations
):
    export = conversations / "conversations.json"
    good = [chat(f"c{i}", "q1", "q2") for i in range(5)]
    export.write_text(json.dumps([*good[:2], {"no": "messages"}, *good[2:]]))
    harness = make_engine(batch_size=2, keep_versions=True)
    tally = harness.backfill()
    assert tally["new_tasks"] == 5 and tally["quarantined"] == 1
    ((path, position, reason),) = harness.engine.state.problems("quarantined")
    assert path == str(export) and position == "[2]" and "no message list" in reason

    # Re-exported, reordered, one conversation grown: only that one is sent, as version 2.
    grown = chat("c3", "q1", "q2", "q3")
    export.write_text(json.dumps([grown, good[4], good[2], good[1], good[0]]))
    tally = harness.backfill()
    assert tally["new_versions"] == 1 and tally["duplicates"] == 4
    assert versions_in(ls_project) == sorted([(f"c{i}", 1) for i in range(5)] + [("c3", 2)])
    assert harness.engine.state.problems("quarantined") == []  # the bad element left the file


def test_a_jsonl_log_of_messages_becomes_one_task_per_conversation_and_grows_versions(
    make_engine, ls_project, conversations
):
    log = conversations / "bot.jsonl"
    log.write_text(
        lines(
            {"conversation_id": "x", "role": "user", "content": "hi"},
            {"conversation_id": "y", "role": "user", "content": "hello"},
            {"conversation_id": "x", "role": "assistant", "content": "hi!\n```py\nprint(1)\n```"},
            {"conversation_id": "y", "role": "assistant", "content": "hey"},
            {"conversation_id": "x", "role": "user", "content": "more"},
            {"conversation_id": "x", "role": "assistant", "content": "sure"},
        )
    )
    harness = make_engine(min_turns=1)
    assert harness.backfill()["new_tasks"] == 2
    by_thread = {t["data"]["thread_id"]: t["data"] for t in project_tasks(ls_project)}
    assert [m["content"] for m in by_thread["x"]["chat"]] == [
        "hi",
        "hi!\n```py\nprint(1)\n```",
        "more",
        "sure",
    ]
    assert by_thread["x"]["source_file"] == "bot.jsonl"

    with log.open("a") as f:
        f.write(
            lines(
                {"conversation_id": "y", "role": "user", "content": "again"},
                {"conversation_id": "y", "role": "assistant", "content": "ok"},
            )
        )
    tally = harness.backfill()
    assert tally["new_versions"] == 1 and tally.get("new_tasks", 0) == 0
    # Version 1 of y had nothing done on it: retired, one live task per conversation.
    assert tally["retired"] == 1
    assert versions_in(ls_project) == [("x", 1), ("y", 2)]
    v2 = next(t["data"] for t in project_tasks(ls_project) if t["data"]["version"] == 2)
    assert [m["content"] for m in v2["chat"]] == ["hello", "hey", "again", "ok"]


def test_a_dataset_of_one_question_conversations_is_too_short_not_waiting_forever(
    make_engine, ls_project, conversations
):
    rows = [
        {"conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": "a"}]}
        for i in range(3)
    ]
    (conversations / "sharegpt.json").write_text(json.dumps(rows))
    harness = make_engine(min_turns=2)
    tally = harness.backfill()
    assert tally["too_short"] == 3 and tally.get("waiting", 0) == 0
    reason = harness.engine.state.problems("too_short")[0][2]
    assert "LABELSYNC_MIN_TURNS=1 would send it" in reason
    lowered = make_engine(min_turns=1)
    assert lowered.backfill(recheck=True)["new_tasks"] == 3


def annotate(project, task_id: int) -> None:
    response = httpx.post(
        f"{project.url}/api/tasks/{task_id}/annotations/",
        headers={"Authorization": f"Token {project.token}"},
        json={
            "result": [
                {
                    "from_name": "rating",
                    "to_name": "chat",
                    "type": "choices",
                    "value": {"choices": ["good"]},
                }
            ]
        },
        timeout=60,
    )
    assert response.status_code == 201, response.text


def test_one_live_task_per_conversation_and_human_work_is_never_retired(
    make_engine, ls_project, conversations, tmp_path
):
    for thread in ("plain", "rated"):
        write_atomic(conversations / f"{thread}.json", chat(thread, "q1", "q2"))
    harness = make_engine()
    harness.backfill()
    rated_v1 = next(t for t in project_tasks(ls_project) if t["data"]["thread_id"] == "rated")
    annotate(ls_project, rated_v1["id"])
    for thread in ("plain", "rated"):
        write_atomic(conversations / f"{thread}.json", chat(thread, "q1", "q2", "q3"))
    tally = harness.backfill()
    assert tally["new_versions"] == 2 and tally["retired"] == 1
    tasks = {
        (t["data"]["thread_id"], t["data"]["version"]): t["data"] for t in project_tasks(ls_project)
    }
    # The unrated version 1 is gone; the rated one stays, no longer the latest.
    assert sorted(tasks) == [("plain", 2), ("rated", 1), ("rated", 2)]
    assert tasks[("rated", 1)]["latest"] is False and tasks[("rated", 2)]["latest"] is True

    # A lost state is rebuilt knowing the retired version: its content is not sent again.
    write_atomic(conversations / "plain-v1-copy.json", chat("plain", "q1", "q2"))
    rebuilt = make_engine(state_name="rebuilt.sqlite3")
    again = rebuilt.backfill()
    assert again.get("new_tasks", 0) == again.get("new_versions", 0) == 0
    assert sorted(
        (t["data"]["thread_id"], t["data"]["version"]) for t in project_tasks(ls_project)
    ) == [("plain", 2), ("rated", 1), ("rated", 2)]


def test_a_superseded_version_deleted_by_someone_else_is_told_retired_once(
    make_engine, ls_project, conversations
):
    """Whoever took the task out (a person, or another daemon on a shared state that has
    not recorded it yet), the daemon that records the retirement says so: once, and the
    count it expects of the project stays what Label Studio holds."""
    path = conversations / "gone.json"
    write_atomic(path, chat("gone", "q1", "q2"))
    harness = make_engine()
    harness.backfill()
    (v1,) = project_tasks(ls_project)
    ls_project.client.tasks.delete(id=v1["id"])
    write_atomic(path, chat("gone", "q1", "q2", "q3"))
    tally = harness.backfill()
    assert tally["new_versions"] == 1 and tally["retired"] == 1
    assert versions_in(ls_project) == [("gone", 2)]
    assert harness.engine.state.get_meta(f"task_count:{ls_project.id}") == "1"
    assert harness.backfill().get("retired", 0) == 0


def test_a_feedback_change_makes_no_version_and_shows_on_the_live_task(
    make_engine, ls_project, conversations
):
    path = conversations / "fb.json"
    write_atomic(path, chat("fb", "q1", "q2"))
    harness = make_engine()
    harness.backfill()
    rated = chat("fb", "q1", "q2")
    rated["messages"][1]["feedback"] = {"score": 0, "comment": "wrong answer"}
    write_atomic(path, rated)
    tally = harness.backfill()
    assert tally["feedback"] == 1 and tally.get("new_versions", 0) == 0
    (task,) = project_tasks(ls_project)
    assert task["data"]["version"] == 1 and task["data"]["feedback"] == "down #1"
    assert task["data"]["chat"][1]["feedback"]["comment"] == "wrong answer"
    assert "wrong answer" in task["data"]["chat"][1]["html"]
    assert task["meta"]["labelsync"]["feedback"][0]["comment"] == "wrong answer"

    # Once annotated, the task shown to annotators no longer changes: the new feedback
    # goes to its meta only, where the export reads it.
    annotate(ls_project, task["id"])
    rated["messages"][1]["feedback"] = {"score": 1}
    write_atomic(path, rated)
    assert harness.backfill()["feedback"] == 1
    (task,) = project_tasks(ls_project)
    assert task["data"]["chat"][1]["feedback"]["comment"] == "wrong answer"
    assert task["meta"]["labelsync"]["feedback"][0]["score"] == 1


def test_a_second_state_directory_on_the_same_project_sends_nothing_twice(
    make_engine, ls_project, conversations
):
    """A hand-run backfill (~/.local/state) beside the service (/var/lib/labelsync)."""
    write_corpus(conversations, 60)
    service = make_engine(state_name="service.sqlite3")
    service.backfill()
    by_hand = make_engine(state_name="by-hand.sqlite3")
    by_hand.backfill()  # learns the project on its first start
    write_corpus(conversations, 40, seed=9, prefix="later")
    service.backfill()  # the service sends the new ones
    tally = by_hand.backfill()  # the hand-run one notices before sending
    assert tally.get("new_tasks", 0) == 0
    assert len(project_tasks(ls_project)) == 100
