"""Who may launch a run: repository identity and the runtimes serving it, decided.

A run belongs to a repository *definition*: the repository's name plus the
fingerprint of its assets and their upstreams. Only a live long-lived runtime
(``rs.Runtime``, ``rivers daemon``) serving that same definition admits and launches
it; a one-off runtime (``repo.materialize()``, ``rivers materialize``) serves
nothing. These functions decide, from what storage says each live runtime serves,
whether a queued run has a runtime and, when not, what it waits for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = (
    "START_A_DAEMON",
    "Served",
    "clash_warning",
    "queue_config_key",
    "queue_leader_key",
    "serves",
    "unserved_reason",
)

START_A_DAEMON = "start one with `rivers daemon -f FILE`"


@dataclass(frozen=True, slots=True)
class Served:
    """A repository definition a live long-lived runtime serves."""

    owner: str
    """The runtime's process (``host:pid:start``)."""
    repository: str
    fingerprint: str
    assets: tuple[str, ...]


def queue_leader_key(repository: str, fingerprint: str) -> str:
    """The storage key of the lease naming the runtime that admits a definition's runs."""
    return f"queue.leader:{repository}:{fingerprint}"


def queue_config_key(repository: str, fingerprint: str) -> str:
    """The storage key of a definition's run-queue settings (what explain reads)."""
    return f"queue.config:{repository}:{fingerprint}"


def serves(served: Served, repository: str, fingerprint: str | None) -> bool:
    """Whether ``served`` may launch a run of ``repository`` with ``fingerprint``.

    A run stored before runs had a fingerprint (None) goes to any runtime serving
    a repository of its name.
    """
    return served.repository == repository and fingerprint in (
        None,
        served.fingerprint,
    )


def unserved_reason(
    repository: str,
    fingerprint: str | None,
    assets: Sequence[str],
    live: Iterable[Served],
) -> str | None:
    """Return what a queued run waits for when no live runtime serves it, else None.

    Args:
        repository: the run's repository name.
        fingerprint: the run's repository fingerprint.
        assets: the run's assets (its selection, or every asset of its definition;
            empty when unknown).
        live: what the live long-lived runtimes serve.
    """
    same_name = [s for s in live if s.repository == repository]
    if any(serves(s, repository, fingerprint) for s in same_name):
        return None
    if not same_name:
        return f"no daemon is running for repository {repository!r}; {START_A_DAEMON}"
    missing = sorted(set(assets) - {a for s in same_name for a in s.assets})
    if missing:
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        noun = "asset" if len(missing) == 1 else "assets"
        what = f"with {noun} {shown}"
    else:
        what = f"with its definition ({fingerprint})"
    return (
        f"no runtime serves repository {repository!r} {what} (running daemons serve "
        f"another definition of {repository!r}); {START_A_DAEMON} for the file "
        "that submitted it"
    )


def clash_warning(
    owner: str, repository: str, fingerprint: str, live: Iterable[Served]
) -> str | None:
    """Return a warning when other live runtimes serve another definition of the name.

    Runs never cross definitions, but two files sharing a repository name on one
    storage is most likely a mistake: their runs wait for each other's daemon.
    """
    others = sorted(
        {
            s.owner.split(":")[1] if s.owner.count(":") >= 2 else s.owner
            for s in live
            if s.repository == repository
            and s.fingerprint != fingerprint
            and s.owner != owner
        }
    )
    if not others:
        return None
    pids = ", ".join(others)
    return (
        f"warning: repository {repository!r} is also served on this storage with "
        f"another definition (process {pids}); runs of each go only to runtimes "
        "of the same definition. Give each file's rs.CodeRepository(name=...) a "
        "distinct name"
    )
