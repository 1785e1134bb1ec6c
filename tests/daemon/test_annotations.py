"""Annotations read into the typed model: both templates, the chat user's feedback, foreign configs.

The result lists follow what Label Studio 1.23.2 stored for each template when a
browser rated a conversation (tests/daemon/test_templates.py, and its version before
the per-message template: Paragraphs regions whose per-region results share an id).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import pytest

from labelsync.annotations import (
    NotOurs,
    Template,
    UnknownConfig,
    parse_task,
    template_of,
)
from labelsync.readers import read
from labelsync.task import build_task
from tests.support.corpus import rich_conversation
from tests.support.labelstudio import MINIMAL_CHAT_CONFIG

# The earlier community template, trimmed to what decides how its annotations read.
EARLIER_TEMPLATE = """<View>
  <Paragraphs name="chat" value="$chat" layout="dialogue" nameKey="role" textKey="content"/>
  <Rating name="rating" toName="chat" maxRating="5"/>
  <Choices name="answered" toName="chat"><Choice value="Yes"/><Choice value="No"/></Choices>
  <TextArea name="conversation_comment" toName="chat"/>
  <ParagraphLabels name="message" toName="chat">
    <Label value="User message"/><Label value="Assistant message"/>
  </ParagraphLabels>
  <Choices name="user_intent" toName="chat" perRegion="true"><Choice value="Question"/></Choices>
  <Rating name="clarity" toName="chat" perRegion="true"/>
  <Rating name="accuracy" toName="chat" perRegion="true"/>
  <Choices name="tone" toName="chat" perRegion="true" choice="multiple">
    <Choice value="Too formal"/><Choice value="Rude or dismissive"/>
  </Choices>
  <TextArea name="message_comment" toName="chat" perRegion="true"/>
</View>"""


def rating(name: str, to: str, value: int) -> dict[str, Any]:
    return {"from_name": name, "to_name": to, "type": "rating", "value": {"rating": value}}


def choices(name: str, to: str, *values: str) -> dict[str, Any]:
    return {"from_name": name, "to_name": to, "type": "choices", "value": {"choices": list(values)}}


def text(name: str, to: str, value: str) -> dict[str, Any]:
    return {"from_name": name, "to_name": to, "type": "textarea", "value": {"text": [value]}}


def rich_task(**extra: Any) -> dict[str, Any]:
    task = build_task(read(rich_conversation()), 1, "conversation_reset-token.json")
    return {"id": 41, **task, **extra}


def per_message_result() -> list[dict[str, Any]]:
    """What the browser test submitted: 4 stars, Partly; reply 6 rated; message 7 a complaint."""
    return [
        rating("rating", "chat", 4),
        choices("answered", "chat", "Partly"),
        rating("clarity_6", "msg_6", 4),
        rating("accuracy_6", "msg_6", 2),
        choices("tone_6", "msg_6", "Appropriate"),
        choices("intent_7", "msg_7", "Complaint"),
        text("conversation_comment", "chat", "Fixed its own mistake, but only when told."),
        text("comment_6", "msg_6", "Step 3 names a menu that does not exist."),
    ]


def annotation(result: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "id": 7,
        "completed_by": 3,
        "created_at": "2026-11-25T10:00:00Z",
        "updated_at": "2026-11-25T10:05:00Z",
        "was_cancelled": False,
        "result": result,
        **extra,
    }


def test_the_shipped_template_reads_every_judgment_by_message_index():
    template = template_of(
        resources.files("labelsync").joinpath("templates", "community.xml").read_text()
    )
    assert template is Template.PER_MESSAGE
    task = parse_task(rich_task(annotations=[annotation(per_message_result())]), template)

    assert (task.task_id, task.thread_id, task.version, task.latest) == (41, "reset-token", 1, True)
    (a,) = task.annotations
    assert (a.rating, a.answered, a.comment) == (
        4,
        "Partly",
        "Fixed its own mistake, but only when told.",
    )
    assert (a.annotator_id, a.created_at) == (3, "2026-11-25T10:00:00Z")
    assert sorted(a.messages) == [6, 7]
    six = a.messages[6]
    assert (six.clarity, six.accuracy, six.tone, six.comment, six.intent) == (
        4,
        2,
        ("Appropriate",),
        "Step 3 names a menu that does not exist.",
        None,
    )
    assert a.messages[7].intent == "Complaint"
    assert task.chat[6].content.startswith("To roll it out:")
    assert task.model_of(6) == "llama3.2:latest"
    # The chat user's thumbs, from the task's chat.
    assert task.feedback[6].score == 0
    assert task.feedback[6].comment == "there is no Settings > Tokens menu"
    assert task.feedback[8].score == 1


def test_the_earlier_template_joins_region_results_by_region_id():
    assert template_of(EARLIER_TEMPLATE) is Template.PARAGRAPHS

    def region(rid: str, index: int, label: str) -> dict[str, Any]:
        return {
            "id": rid,
            "from_name": "message",
            "to_name": "chat",
            "type": "paragraphlabels",
            "value": {"start": str(index), "end": str(index), "paragraphlabels": [label]},
        }

    result = [
        rating("rating", "chat", 2),
        region("r6", 6, "Assistant message"),
        {**rating("clarity", "chat", 3), "id": "r6"},
        {**rating("accuracy", "chat", 1), "id": "r6"},
        {**choices("tone", "chat", "Too formal", "Rude or dismissive"), "id": "r6"},
        {**text("message_comment", "chat", "wrong menu"), "id": "r6"},
        region("r7", 7, "User message"),
        {**choices("user_intent", "chat", "Question"), "id": "r7"},
    ]
    task = parse_task(rich_task(annotations=[annotation(result)]), Template.PARAGRAPHS)
    (a,) = task.annotations
    assert a.rating == 2
    assert (a.messages[6].clarity, a.messages[6].accuracy) == (3, 1)
    assert a.messages[6].tone == ("Too formal", "Rude or dismissive")
    assert a.messages[6].comment == "wrong menu"
    assert a.messages[7].intent == "Question"
    assert sorted(a.messages) == [6, 7]


def test_feedback_changed_after_annotation_wins_over_the_chat():
    meta = {"labelsync": {"feedback": [{"index": 6, "role": "assistant", "score": 1}]}}
    task = parse_task(
        rich_task(meta=meta, annotations=[annotation(per_message_result())]),
        Template.PER_MESSAGE,
    )
    assert task.feedback[6].score == 1 and task.feedback[6].comment is None
    assert 8 not in task.feedback  # the user took that thumbs-up back


def test_skipped_and_empty_annotations_do_not_count_and_other_tasks_are_not_ours():
    task = parse_task(
        rich_task(
            annotations=[
                annotation(per_message_result(), was_cancelled=True),
                annotation([], id=8),
                annotation([rating("rating", "chat", 5), rating("clarity_99", "msg_99", 1)]),
            ]
        ),
        Template.PER_MESSAGE,
    )
    (a,) = task.annotations
    assert a.rating == 5 and not a.messages  # no message 99 in this task
    with pytest.raises(NotOurs):
        parse_task({"id": 1, "data": {"text": "hello"}}, Template.PER_MESSAGE)


def test_a_foreign_config_names_what_is_missing():
    with pytest.raises(UnknownConfig) as caught:
        template_of(MINIMAL_CHAT_CONFIG)
    message = str(caught.value)
    assert '<Rating name="rating">' in message
    assert "clarity_{{idx}}" in message and 'ParagraphLabels name="message"' in message
    assert "\n" not in message
    with pytest.raises(UnknownConfig, match="not XML"):
        template_of("<View>")
