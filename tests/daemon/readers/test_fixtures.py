"""Every fixture reads as the dialogue a human expects (`<name>.expected.json`).

One row per fixture: the file is read the way the engine reads it, and each
conversation must come out with the expected id, roles and texts, in file order.
"""

from __future__ import annotations

import pytest

from tests.daemon.readers.reading import (
    dialogue,
    expected,
    expected_id,
    fixture_names,
    read_fixture,
)

# Entries that are not conversations, and the reason labelsync gives for each.
EXPECTED_PROBLEMS = {
    "chatgpt_export.json": [("[1]", 'a ChatGPT export entry without "mapping"')],
}


@pytest.mark.parametrize("name", fixture_names())
def test_fixture_reads_as_a_human_expects(name: str) -> None:
    read = read_fixture(name)
    cases = expected(name)
    got = [{"id": c.thread_id, "messages": dialogue(c)} for c in read.conversations]
    want = [
        {
            "id": expected_id(name, case, read, conversation),
            "messages": [
                {"role": m["role"], "content": m["content"].strip()} for m in case["messages"]
            ],
        }
        for case, conversation in zip(cases, read.conversations, strict=False)
    ]
    assert got == want
    assert len(read.conversations) == len(cases)
    problems = EXPECTED_PROBLEMS.get(name, [])
    assert [position for position, _ in read.problems] == [p for p, _ in problems]
    for (_, reason), (_, wanted) in zip(read.problems, problems, strict=True):
        assert wanted in reason and "\n" not in reason


@pytest.mark.parametrize("name", fixture_names())
def test_contents_are_text_and_placeholders_are_reported(name: str) -> None:
    for conversation in read_fixture(name).conversations:
        assert conversation.messages
        for message in conversation.messages:
            assert isinstance(message.content, str) and message.content.strip()
            assert message.role in ("user", "assistant", "system", "tool")
        shown = "\n".join(m.content for m in conversation.messages)
        for warning in conversation.warnings:
            # A warning names the placeholder the annotator sees.
            placeholder = warning.rsplit(" shown as ", 1)[-1]
            assert placeholder in shown
