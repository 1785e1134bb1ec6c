"""Named-entity redaction (people, locations, organisations) through Microsoft Presidio.

Optional: `pip install 'labelsync[ner]'` brings presidio-analyzer and spaCy.
The spaCy model is not a Python dependency: spaCy's own models are published
as GitHub release files (`python -m spacy download en_core_web_sm`), not on
PyPI, so the user installs one, or names a model directory. Presidio would
download a missing model by itself at load time; we check first and stop with
a message instead, so nothing is fetched behind the operator's back.

Only Presidio's spaCy recognizer is registered: its pattern recognizers
overlap the built-in detectors, and some (URLs, e-mail) consult a public-suffix
list that tldextract tries to download.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from labelsync.redact.base import Detector, Hit
from labelsync.redact.errors import RedactionConfigError, RedactionError

DEFAULT_MODEL = "en_core_web_sm"
# Detector name -> Presidio entity (and placeholder).
ENTITIES = {"person": "PERSON", "location": "LOCATION", "organization": "ORGANIZATION"}
# spaCy refuses texts over nlp.max_length (1,000,000 characters by default);
# long texts are cut at white space into pieces well below it.
_CHUNK = 100_000
_EXTRA = "pip install 'labelsync[ner]'"


class NamedEntities:
    def __init__(self, analyzer: Any, selected: Sequence[str], model: str) -> None:
        self._analyzer = analyzer
        self.model = model
        self._entities = {ENTITIES[name]: name for name in selected}
        self.detectors = tuple(
            Detector(name, ENTITIES[name], partial(self._find_one, name)) for name in selected
        )
        self._by_entity = {d.placeholder: d for d in self.detectors}
        # spaCy does not promise that one pipeline may run in two threads at once.
        self._lock = threading.Lock()

    def find_all(self, text: str) -> Iterator[tuple[Detector, Hit]]:
        for offset, piece in _pieces(text):
            for result in self._analyze(piece):
                start, end = offset + result.start, offset + result.end
                key = " ".join(text[start:end].split()).casefold()
                yield self._by_entity[result.entity_type], Hit(start, end, key)

    def _find_one(self, name: str, text: str) -> Iterator[Hit]:
        for det, hit in self.find_all(text):
            if det.name == name:
                yield hit

    def _analyze(self, text: str) -> list[Any]:
        try:
            with self._lock:
                results: list[Any] = self._analyzer.analyze(
                    text=text, language="en", entities=list(self._entities)
                )
        except Exception as exc:
            # The library's message may quote the text; say only what failed.
            raise RedactionError(f"named-entity redaction failed ({type(exc).__name__})") from None
        return [r for r in results if r.entity_type in self._entities]


def _pieces(text: str) -> Iterator[tuple[int, str]]:
    start = 0
    while len(text) - start > _CHUNK:
        cut = max(text.rfind(" ", start, start + _CHUNK), text.rfind("\n", start, start + _CHUNK))
        end = cut if cut > start else start + _CHUNK
        yield start, text[start:end]
        start = end
    yield start, text[start:]


def load(selected: Sequence[str], model: str = DEFAULT_MODEL) -> NamedEntities:
    """Load Presidio on the spaCy model `model` (a package name or a directory), or say why not."""
    subject = ", ".join(selected) + (" needs" if len(selected) == 1 else " need")
    try:
        import spacy
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import SpacyNlpEngine
        from presidio_analyzer.predefined_recognizers import SpacyRecognizer
    except ImportError:
        raise RedactionConfigError(
            f"LABELSYNC_REDACT: {subject} the named-entity extra: {_EXTRA}"
        ) from None
    if "/" in model and not Path(model).is_dir():
        raise RedactionConfigError(f"LABELSYNC_REDACT: no spaCy model directory at {model}")
    if not (spacy.util.is_package(model) or Path(model).is_dir()):
        raise RedactionConfigError(
            f"LABELSYNC_REDACT: {subject} the spaCy model {model!r}, which is not "
            f"installed: python -m spacy download {model} (it comes from GitHub), or "
            "install the model's wheel, or name a model directory"
        )
    try:
        engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": model}])
        engine.load()
        registry = RecognizerRegistry(supported_languages=["en"])
        registry.add_recognizer(
            SpacyRecognizer(supported_language="en", supported_entities=list(ENTITIES.values()))
        )
        analyzer = AnalyzerEngine(nlp_engine=engine, registry=registry, supported_languages=["en"])
    except Exception as exc:
        raise RedactionConfigError(
            f"LABELSYNC_REDACT: the spaCy model {model!r} does not load: {exc}"
        ) from None
    return NamedEntities(analyzer, selected, model)
