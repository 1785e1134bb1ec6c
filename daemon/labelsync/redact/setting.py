"""`LABELSYNC_REDACT` and the custom patterns, read into a ready `Redactor`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from labelsync.redact import ner
from labelsync.redact.custom import CustomPattern, compile_patterns
from labelsync.redact.detectors import BUILTINS
from labelsync.redact.errors import RedactionConfigError
from labelsync.redact.redactor import Redactor

OFF = frozenset({"", "off", "none", "false", "0", "no"})


def build_redactor(
    setting: str | Sequence[str] | None = None,
    patterns: Sequence[Mapping[str, Any] | CustomPattern] = (),
    *,
    ner_model: str = ner.DEFAULT_MODEL,
    named_entities: bool = True,
) -> Redactor:
    """The redactor the settings ask for, or `RedactionConfigError` naming every problem.

    `setting` is `LABELSYNC_REDACT`: empty or `off` (the default) redacts nothing;
    `default` runs every built-in detector and every custom pattern; otherwise a
    comma list (or a TOML list) of names: built-ins, custom pattern names,
    `person`, `location`, `organization`, or `ner` for those three, and
    `default` may be one of the names. Custom patterns are validated even when
    redaction is off, so a broken config file is reported before it is needed.
    `named_entities=False` leaves the model out (not loaded) whatever is asked.
    """
    builtin_names = [d.name for d in BUILTINS]
    custom, problems = compile_patterns(
        patterns, reserved={*builtin_names, *ner.ENTITIES, "default", "ner", "off", "none"}
    )
    names = _names(setting)
    valid = ["off", "default", *builtin_names, *ner.ENTITIES, "ner", *(d.name for d in custom)]
    if names and names <= OFF and len(names) == 1:
        names = set()
    elif names & OFF:
        problems.insert(0, f"LABELSYNC_REDACT: {setting!r} mixes off with detector names")
    else:
        unknown = sorted(n for n in names if n not in valid)
        if unknown:
            problems.insert(
                0,
                (
                    f"LABELSYNC_REDACT: unknown detector{'s' if len(unknown) > 1 else ''} "
                    f"{', '.join(repr(n) for n in unknown)} (valid: {', '.join(valid)})"
                ),
            )
    if problems:
        raise RedactionConfigError("; ".join(problems))
    if "default" in names:
        names |= {*builtin_names, *(d.name for d in custom)}
    if "ner" in names:
        names |= set(ner.ENTITIES)
    detectors = [d for d in (*BUILTINS, *custom) if d.name in names]
    wanted = [name for name in ner.ENTITIES if name in names] if named_entities else []
    return Redactor(detectors, ner.load(wanted, ner_model) if wanted else None)


def _names(setting: str | Sequence[str] | None) -> set[str]:
    if setting is None:
        return set()
    parts = setting.split(",") if isinstance(setting, str) else list(setting)
    return {str(p).strip().lower() for p in parts if str(p).strip()}
