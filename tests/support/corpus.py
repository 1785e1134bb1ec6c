"""Conversation files for tests, the demo and the benchmark, in every supported shape."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

QUESTIONS = [
    "How do I reset my password?",
    "Can you summarise the refund policy in two sentences?",
    "What is the difference between a list and a tuple in Python?",
    "My order #{n} has not arrived. What can I do?",
    "Write a haiku about label studio.",
    "Which plan includes single sign-on?",
    "Explain exactly-once delivery like I am five.",
    "Is it safe to run the migration on a live database?",
]
ANSWERS = [
    "Sure. Open Settings, choose Security, then 'Reset password' and follow the e-mail link.",
    "Refunds are possible within 30 days of purchase. Digital items are refunded as credit.",
    "A list can change after it is made; a tuple cannot, which makes it hashable.",
    "I am sorry about that. I have opened ticket {n}; a courier update follows within a day.",
    "Tasks line up in rows / a human reads each careful word / the model learns slow.",
    "Single sign-on is part of the Business and Enterprise plans.",
    "You get exactly one sticker per good deed, even if you ask twice.",
    "Take a backup first and run it in a maintenance window; it locks two tables briefly.",
]


def conversation(
    thread: str, turns: int, rng: random.Random, shape: str = "tutorial"
) -> dict[str, Any]:
    pairs = []
    for t in range(turns):
        i = rng.randrange(len(QUESTIONS))
        n = rng.randrange(10_000, 99_999)
        pairs.append((QUESTIONS[i].format(n=n), ANSWERS[i].format(n=n) + f" (turn {t + 1})"))
    if shape == "sharegpt":
        return {
            "id": thread,
            "conversations": [
                m
                for q, a in pairs
                for m in ({"from": "human", "value": q}, {"from": "gpt", "value": a})
            ],
        }
    messages = [
        m
        for q, a in pairs
        for m in ({"role": "user", "content": q}, {"role": "assistant", "content": a})
    ]
    if shape == "openai":
        for m in messages[::2]:
            m["content"] = [{"type": "text", "text": m["content"]}]
        return {"id": thread, "messages": messages}
    return {
        "session_id": thread,
        "timestamp": "2026-11-24T10:00:00",
        "model": "llama3.2:1b",
        "messages": messages,
        "turn_count": turns,
        "metadata": {"thread_id": thread, "source": "labelsync-corpus"},
    }


def write_atomic(path: Path, document: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(document, indent=1))
    os.replace(tmp, path)


def write_corpus(directory: Path, count: int, seed: int = 7, prefix: str = "conv") -> list[Path]:
    """count files: mostly the tutorial shape, some OpenAI and ShareGPT, 2 to 6 turns."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paths = []
    for i in range(count):
        shape = ("tutorial", "tutorial", "openai", "sharegpt")[i % 4]
        thread = f"{prefix}-{seed}-{i:06d}"
        path = directory / f"conversation_{thread}.json"
        write_atomic(path, conversation(thread, rng.randint(2, 6), rng, shape))
        paths.append(path)
    return paths


def rich_conversation(thread: str = "reset-token") -> dict[str, Any]:
    """A conversation as chat replies really are: markdown code, a table, lists, a system
    prompt, a tool call, and the chat user's thumbs on two replies (demo and browser tests)."""
    code = (
        "Here is a helper:\n\n```python\nimport secrets\n\n\n"
        "def reset_token(user_id: int) -> str:\n"
        '    """A token the user gets by e-mail."""\n'
        "    return f\"{user_id}-{secrets.token_urlsafe(16)}\"\n```\n\n"
        "Call it when the user asks for a reset."
    )
    table = (
        "The options:\n\n| option | meaning |\n|---|---|\n"
        "| `--ttl` | how long a token lives |\n| `--once` | the token works once |\n"
        "| `--notify` | e-mail the user |"
    )
    steps = (
        "To roll it out:\n\n1. Deploy the helper.\n2. Add the `--ttl` flag.\n"
        "3. Open **Settings > Tokens** and enable resets.\n4. Tell support.\n\n"
        "Watch for:\n\n- expired tokens\n- tokens used twice"
    )
    messages = [
        {"role": "system", "content": "You are the support assistant of a web shop."},
        {"role": "user", "content": "How do I let users reset their password with a token?"},
        {"role": "assistant", "content": code, "model": "llama3.2:latest"},
        {"role": "user", "content": "Which options does the command take?"},
        {"role": "assistant", "content": table, "model": "llama3.2:latest"},
        {"role": "user", "content": "And how do I roll it out?"},
        {
            "role": "assistant",
            "content": steps,
            "model": "llama3.2:latest",
            "feedback": {"score": 0, "comment": "there is no Settings > Tokens menu"},
        },
        {"role": "user", "content": "That menu does not exist. Please check again."},
        {
            "role": "assistant",
            "content": "You are right, sorry: it is **Admin > Security > Password resets**.",
            "model": "llama3.2:latest",
            "feedback": {"score": 1},
        },
    ]
    return {
        "contract": "labelsync/1",
        "thread_id": thread,
        "model": "llama3.2:latest",
        "provider": "ollama",
        "timestamp": "2026-11-24T10:00:00Z",
        "messages": messages,
        "ended": True,
    }
