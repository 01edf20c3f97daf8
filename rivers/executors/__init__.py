"""Step launchers: where and how a step's function runs."""
