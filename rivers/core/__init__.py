"""Pure decision classes: no I/O, no awaiting, tested without an event loop."""
