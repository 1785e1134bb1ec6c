"""What the servers the tests start have in common: a `with` block, and an outage."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import TracebackType
from typing import Self


class Managed:
    """A server with start() (returns self), stop() and close() (stop, clean up)."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """The server down for the duration of the block (an outage), then up again."""
        self.stop()
        try:
            yield
        finally:
            self.start()
