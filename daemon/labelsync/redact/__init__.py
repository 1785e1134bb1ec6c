"""Redaction: personal data out of conversation texts before anything leaves the machine.

Pure and self-contained: no IO, no logging, no settings read. The engine builds
one `Redactor` at the edge and calls it for each conversation.

Building it (once, where settings are built; the CLI maps the error to exit 2)::

    from labelsync.redact import RedactionConfigError, build_redactor

    redactor = build_redactor(
        settings.redact,              # LABELSYNC_REDACT: "off" (default), "default",
                                      # or "email,phone,card,..."; a TOML list works too
        settings.redact_patterns,     # [{name, regex, placeholder}, ...] from the TOML file
        ner_model=settings.redact_ner_model,  # read only when person/location/organization is on
    )  # -> a Redactor, or RedactionConfigError naming every problem in one line

Names: the built-ins `url_credentials`, `email`, `iban`, `card`, `ip`, `phone`
(`default` = all of them plus every custom pattern); custom pattern names;
`person`, `location`, `organization` (or `ner` for the three), which need
`pip install 'labelsync[ner]'` and a spaCy model (see `ner.py`), and are never
part of `default`. An unknown name is an error that lists the valid ones.

Using it (pure, thread-safe, one call per conversation)::

    result = redactor.redact([m.content for m in conversation.messages])
    result.texts     # tuple[str, ...]: the same texts, values replaced by <EMAIL_1>, <PHONE_2>, ...
    result.counts    # {"email": 2, "phone": 1}: occurrences per detector, never values
    result.findings  # per message, Finding(start, end, detector, placeholder) into the original
    redactor.enabled        # False when off: redact() returns the texts unchanged
    redactor.detector_names # ("email", "phone", ...): what runs, for status / validate --show
    redactor.config_id      # 12 hex digits naming the configuration (task meta, status)

Contract for the engine:
- Pass every text of one conversation that will leave the machine in ONE call,
  in dialogue order (message contents, then e.g. the chat user's feedback
  comments, appended, and split back by position): numbering is per call, so
  the same e-mail is `<EMAIL_1>` in the question, the answer and the comment.
- The sync key should be computed over the *original* dialogue, as today, not
  over the redacted texts: then changing `LABELSYNC_REDACT` or a pattern does
  not make every conversation look new; it applies to versions sent from then
  on (`config_id` in the task's meta says which setting produced a task).
- What leaves the module besides `texts` holds no value: counts, findings
  (offsets only), reprs and error messages. Offsets do point into the original
  text, so never log `text[f.start:f.end]`. Redacting an already redacted text
  changes nothing (placeholders are protected), and numbering continues after
  the highest placeholder already present, so a literal `<EMAIL_1>` typed by a
  user is never confused with a new address.
- `redact()` raises `TypeError` for a non-string text and `RedactionError` only
  when the named-entity model fails; neither message quotes the text.
- Cost (python -m tests.bench.redaction, one shared core): the built-ins do
  about 30,000 to 100,000 short chat messages a second; named entities about
  150, one message at a time behind a lock, so with them on, redaction is most
  of the sync time and best done in the read-ahead stage, where files are parsed.
- Where two detectors claim overlapping text, the first in this order wins:
  url_credentials, email, iban, card, ip, phone, custom patterns (config
  order), then named entities. A hit that only partly overlaps a winning one is
  dropped whole, so its uncovered part stays visible.
"""

from labelsync.redact.custom import CustomPattern
from labelsync.redact.detectors import BUILTINS
from labelsync.redact.errors import RedactionConfigError, RedactionError
from labelsync.redact.ner import DEFAULT_MODEL as DEFAULT_NER_MODEL
from labelsync.redact.ner import ENTITIES as NER_DETECTORS
from labelsync.redact.redactor import Finding, Redaction, Redactor
from labelsync.redact.setting import build_redactor

BUILTIN_DETECTORS: tuple[str, ...] = tuple(d.name for d in BUILTINS)

__all__ = [
    "BUILTIN_DETECTORS",
    "DEFAULT_NER_MODEL",
    "NER_DETECTORS",
    "CustomPattern",
    "Finding",
    "Redaction",
    "RedactionConfigError",
    "RedactionError",
    "Redactor",
    "build_redactor",
]
