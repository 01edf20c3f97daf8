"""The terminal views: ``rivers top``, run timelines and the materialize progress.

Everything here reads snapshots of the storage or the event stream and sends
nothing. Import the submodules: ``snapshot`` (``read_snapshot``), ``render``,
``timeline`` and ``progress``; this package imports none of them, so
``rivers.materialize`` can check whether to show progress without loading rich.
"""

from __future__ import annotations

__all__ = ()
