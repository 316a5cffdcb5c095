"""Example handlers shipped with jobqueue, registered by job type."""

from __future__ import annotations

from jobqueue.handlers.generation import registry as generation_registry
from jobqueue.worker import Registry


def default_registry() -> Registry:
    """The handlers a pool started by ``python -m jobqueue`` runs out of the box."""
    registry = Registry()
    registry.merge(generation_registry)
    return registry
