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
