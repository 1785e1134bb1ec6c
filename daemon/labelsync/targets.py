"""The projects conversations go to: the default one, and those routing rules name.

Each project has its own connection, retry policy and versions (`Project`);
they are made when first needed. A rule may name a project by title: the
titles are looked up once, at start, and a missing one is a configuration
problem that says how to create it (`labelsync init-project --rules`).
A routed project's versions are rebuilt from Label Studio the first time this
state sends to it, as the default project's are.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from labelsync.delivery import Delivery
from labelsync.labelstudio import LabelStudio, ProjectNotFound
from labelsync.project import Project
from labelsync.rules import Rules
from labelsync.state import State

log = logging.getLogger(__name__)

Connect = Callable[[int], tuple[LabelStudio, Delivery]]


@dataclass
class Target:
    ls: LabelStudio
    delivery: Delivery
    project: Project


class Targets:
    def __init__(
        self,
        state: State,
        default: Target,
        rules: Rules,
        connect: Connect | None = None,
        keep_versions: bool = False,
    ) -> None:
        self.state = state
        self.default = default
        self.rules = rules
        self._connect = connect
        self._keep_versions = keep_versions
        self._by_id: dict[int, Target] = {default.project.id: default}
        self._titles: dict[str, int] = {}

    def resolve_titles(self) -> None:
        """Project titles in rules -> ids, once; a title with no project is a clear error."""
        titles = sorted(p for p in self.rules.projects if isinstance(p, str))
        if not titles:
            return
        found = self.default.delivery.call(self.default.ls.project_ids_by_title)
        missing = [t for t in titles if t not in found]
        if missing:
            raise ProjectNotFound(
                f"rules name projects that do not exist at {self.default.ls.url}: "
                + ", ".join(repr(t) for t in missing)
                + " (labelsync --config FILE init-project --rules creates them)"
            )
        self._titles = {t: found[t] for t in titles}

    def project_id(self, project: int | str) -> int:
        return project if isinstance(project, int) else self._titles[project]

    def get(self, project_id: int) -> Target:
        target = self._by_id.get(project_id)
        if target is None:
            if self._connect is None:
                raise ProjectNotFound(f"no connection for project {project_id}")
            ls, delivery = self._connect(project_id)
            target = Target(ls, delivery, Project(self.state, ls, delivery, self._keep_versions))
            self._by_id[project_id] = target
            key = f"rebuilt:{project_id}"
            if self.state.get_meta(key) is None:
                target.project.rebuild()
                self.state.set_meta(key, str(time.time()))
        return target

    def all(self) -> list[Target]:
        return list(self._by_id.values())
