"""``AttachedRepositories``: the repositories a runtime runs, by name.

They are the ones given to ``rs.Runtime(...)`` and any passed later as
``repository=`` to ``rt.submit``, ``rt.submit_many`` or ``rt.materialize``. A name
stands for one repository: the runtime finds a run's repository by the name the
run records, so a second repository with a name already attached is refused.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, final

from rivers.definitions.repository import CodeRepository
from rivers.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ("AttachedRepositories",)


@final
class AttachedRepositories(Mapping[str, CodeRepository]):
    """The attached repositories by name, in the order they were attached."""

    def __init__(self, repositories: Iterable[CodeRepository]) -> None:
        self._by_name: dict[str, CodeRepository] = {}
        for repository in repositories:
            self.attach(repository)

    def __getitem__(self, name: str) -> CodeRepository:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def attach(self, repository: CodeRepository) -> None:
        """Attach ``repository`` (attaching it again changes nothing).

        Raises:
            ConfigError: it is not a ``rs.CodeRepository``, or another one has its
                name.
        """
        if not isinstance(repository, CodeRepository):
            raise ConfigError(
                f"Runtime takes rs.CodeRepository objects, got {repository!r}"
            )
        existing = self._by_name.get(repository.name)
        if existing is not None and existing is not repository:
            raise ConfigError(
                f"two repositories are named {repository.name!r}; give each "
                "CodeRepository(name=...) a distinct name"
            )
        self._by_name[repository.name] = repository

    def pick(self, repository: CodeRepository | None) -> CodeRepository:
        """Return ``repository``, attached now, or else the first one attached.

        Raises:
            ConfigError: none is given and none is attached, or as ``attach``.
        """
        if repository is not None:
            self.attach(repository)
            return repository
        if not self._by_name:
            raise ConfigError(
                "this Runtime has no repository; pass one to Runtime(...)"
            )
        return next(iter(self._by_name.values()))
