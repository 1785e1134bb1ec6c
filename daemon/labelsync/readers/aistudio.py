"""Placeholder: the aistudio reader is being written."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labelsync.readers.base import Draft, Options, Reader


def matches(doc: Mapping[str, Any]) -> bool:
    return False


def read(doc: Mapping[str, Any], options: Options) -> Draft:
    raise NotImplementedError


READER = Reader("aistudio", matches, read)
