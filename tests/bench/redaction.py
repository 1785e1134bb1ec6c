"""`python -m tests.bench.redaction`: how well and how fast the built-in redaction works.

Prints, for each built-in detector and overall, precision and recall on the
labelled messages in tests/daemon/fixtures/pii/messages.jsonl, then messages
per second of `Redactor.redact()` on three kinds of text. Nothing here asserts.

- recall: a labelled value counts as caught when findings of its own detector
  cover all of it; "left readable" counts labelled values that no detector
  covered at all (a phone number caught as something else is not readable).
- precision: a finding counts as right when it overlaps a labelled value of its
  own detector.

With BENCH_NER_MODEL set (a spaCy package name or directory, and the ner extra
installed) the named-entity detectors are measured too.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from labelsync.redact import BUILTIN_DETECTORS, NER_DETECTORS, Redactor, build_redactor
from tests.support.corpus import conversation

DATA = Path(__file__).parents[1] / "daemon" / "fixtures" / "pii" / "messages.jsonl"


def load() -> list[dict[str, Any]]:
    with DATA.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def conversations(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    grouped: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[row["conversation"]].append(row)
    return list(grouped.values())


def score(redactor: Redactor, rows: list[dict[str, Any]], labels: Sequence[str]) -> None:
    tp_pred: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    caught: Counter[str] = Counter()
    gold: Counter[str] = Counter()
    readable: Counter[str] = Counter()
    near_miss_hits: Counter[str] = Counter()
    for conv in conversations(rows):
        result = redactor.redact([row["text"] for row in conv])
        for row, findings in zip(conv, result.findings, strict=True):
            spans = [s for s in row["spans"] if s["label"] in labels]
            for f in findings:
                if any(s["label"] == f.detector and _overlap(s, f.start, f.end) for s in spans):
                    tp_pred[f.detector] += 1
                else:
                    fp[f.detector] += 1
                    if row["kind"] == "near_miss":
                        near_miss_hits[f.detector] += 1
            for s in spans:
                gold[s["label"]] += 1
                own = [(f.start, f.end) for f in findings if f.detector == s["label"]]
                if _covered(row["text"], s, own):
                    caught[s["label"]] += 1
                if not _covered(
                    row["text"], s, [(f.start, f.end) for f in findings], any_part=True
                ):
                    readable[s["label"]] += 1

    print(
        f"{'detector':<16}{'precision':>10}{'recall':>9}{'labelled':>10}{'found':>7}"
        f"{'false +':>9}{'missed':>8}{'left readable':>15}"
    )
    totals: Counter[str] = Counter()
    for label in labels:
        found = tp_pred[label] + fp[label]
        row = {
            "labelled": gold[label],
            "found": found,
            "fp": fp[label],
            "missed": gold[label] - caught[label],
            "readable": readable[label],
            "tp": tp_pred[label],
            "caught": caught[label],
        }
        totals.update(row)
        _line(label, row)
    _line("overall", totals)
    print(f"false positives on near-miss messages: {dict(near_miss_hits) or 0}")


def _line(label: str, row: Any) -> None:
    precision = row["tp"] / row["found"] if row["found"] else float("nan")
    recall = row["caught"] / row["labelled"] if row["labelled"] else float("nan")
    print(
        f"{label:<16}{precision:>10.3f}{recall:>9.3f}{row['labelled']:>10}{row['found']:>7}"
        f"{row['fp']:>9}{row['missed']:>8}{row['readable']:>15}"
    )


def _overlap(span: dict[str, Any], start: int, end: int) -> bool:
    return start < span["end"] and span["start"] < end


def _covered(
    text: str, span: dict[str, Any], found: list[tuple[int, int]], any_part: bool = False
) -> bool:
    """Every non-space character of the span is inside a finding (or, any_part: some is)."""
    chars = [i for i in range(span["start"], span["end"]) if not text[i].isspace()]
    inside = [any(s <= i < e for s, e in found) for i in chars]
    return any(inside) if any_part else all(inside)


def throughput(redactor: Redactor, name: str, convs: list[list[str]], runs: int = 5) -> None:
    messages = sum(len(c) for c in convs)
    chars = sum(len(m) for c in convs for m in c)
    rates = []
    for _ in range(runs):
        started = time.perf_counter()
        for conv in convs:
            redactor.redact(conv)
        rates.append(messages / (time.perf_counter() - started))
    rate = statistics.median(rates)
    print(
        f"  {name}: {rate:,.0f} messages/s ({rate * chars / messages / 1e6:.2f} MB/s; "
        f"{messages} messages of {chars // messages} characters on average, "
        f"median of {runs} runs)"
    )


def main() -> None:
    rows = load()
    kinds = Counter(row["kind"] for row in rows)
    print(
        f"labelled set: {len(rows)} messages ({dict(kinds)}), "
        f"{sum(len(r['spans']) for r in rows)} labelled values"
    )
    redactor = build_redactor("default")
    print(f"\nbuilt-in detectors ({redactor!r}):")
    score(redactor, rows, BUILTIN_DETECTORS)

    rng = random.Random(7)
    labelled = [[row["text"] for row in conv] for conv in conversations(rows)]
    chat = []
    for i in range(400):
        doc = conversation(f"c{i}", rng.randint(2, 6), rng)
        chat.append([m["content"] for m in doc["messages"]])
    texts = [row["text"] for row in rows]
    long_replies = [[" ".join(rng.sample(texts, 12)) for _ in range(8)] for _ in range(40)]
    print("\nthroughput of redact(), one call per conversation of 2 to 12 messages:")
    for label, r in (("default", redactor), ("off", build_redactor("off"))):
        print(f" LABELSYNC_REDACT={label}")
        throughput(r, "labelled set (PII-dense chat)", labelled)
        throughput(r, "benchmark corpus chat (tests/support/corpus.py)", chat)
        throughput(r, "long replies (12 labelled messages joined)", long_replies)

    model = os.environ.get("BENCH_NER_MODEL")
    if model:
        ner = build_redactor("default,ner", ner_model=model)
        print(f"\nwith named entities ({ner!r}, spaCy model {model}):")
        score(ner, rows, [*BUILTIN_DETECTORS, *NER_DETECTORS])
        throughput(ner, "labelled set (PII-dense chat)", labelled, runs=1)
        throughput(ner, "benchmark corpus chat", chat, runs=1)


if __name__ == "__main__":
    main()
