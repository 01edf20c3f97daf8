"""``python -m rivers``: the command line."""

from __future__ import annotations

from rivers.cli import main

if __name__ == "__main__":
    main()
