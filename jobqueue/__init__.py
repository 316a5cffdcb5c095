"""jobqueue: a durable, fully async background-job service."""

from __future__ import annotations

__version__ = "0.1.0"
