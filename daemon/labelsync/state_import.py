"""`labelsync state import`: a single-host SQLite state moved into PostgreSQL, as it is.

Every table is copied row for row, in one transaction, so the PostgreSQL state
knows what the SQLite one knew: each version sent and its task (nothing is sent
again), the outbox (imports of unknown outcome, resolved by asking Label Studio
as after a crash), how far each log was read, which lines make each conversation.

The target must hold no state yet. A target that already holds exactly the
versions being imported (the same import, run twice) is left as it is; any other
content is refused: two states merged could each believe the other's work undone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from labelsync.state import TABLES, State, StateError

# What a version is, for "the same data": the sync and its task, not when it was written.
_IDENTITY = ("project_id", "thread_id", "version", "sync_key", "task_id")


@dataclass
class Imported:
    rows: dict[str, int] = field(default_factory=dict)  # per table
    seconds: float = 0.0
    already: bool = False  # the target held these same versions: nothing was written


def import_state(
    source: State, target: State, progress: Callable[[str, int], None] = lambda t, n: None
) -> Imported:
    """Copy `source` into `target` (both open, migrated); progress(table, rows so far)."""
    started = time.monotonic()
    mine, theirs = source.get_meta("project_id"), target.get_meta("project_id")
    if mine is not None and theirs is not None and mine != theirs:
        raise StateError(
            f"the state database {target.where} belongs to project {theirs}, the state in "
            f"{source.where} to project {mine}: import into a database of its own"
        )
    held = {t: n for t, n in target.table_counts().items() if n and t != "meta"}
    if held:
        versions = _versions(source)
        if versions and versions == _versions(target):
            counts = source.table_counts()
            return Imported(counts, time.monotonic() - started, already=True)
        what = ", ".join(f"{n} rows in {t}" for t, n in held.items())
        raise StateError(
            f"the state database {target.where} already holds a state ({what}) that is not "
            f"the one in {source.where}: import only into a database without one"
        )
    imported = Imported()
    with target.transaction() as tx:
        for table in TABLES:
            columns, batches = source.rows_of(table)
            copied = 0
            for batch in batches:
                if table == "meta":  # the target's own schema version stays
                    for key, value in batch:
                        if key != "schema_version":
                            tx.set_meta(key, value)
                else:
                    tx.load(table, columns, batch)
                copied += len(batch)
                progress(table, copied)
            imported.rows[table] = copied
    after = target.table_counts()
    short = {t: (n, after[t]) for t, n in imported.rows.items() if t != "meta" and after[t] != n}
    if short:
        raise StateError(f"import incomplete, rows (copied, found) per table: {short}")
    imported.seconds = time.monotonic() - started
    return imported


def _versions(state: State) -> set[tuple[object, ...]]:
    from labelsync.state_postgres import _text  # both sides as PostgreSQL stores text

    columns, batches = state.rows_of("versions")
    at = [columns.index(c) for c in _IDENTITY]
    return {tuple(_text(row[i]) for i in at) for batch in batches for row in batch}
