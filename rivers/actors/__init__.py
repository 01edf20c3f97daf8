"""Actors: tasks that own their state; each is a thin loop around a ``core`` class."""
