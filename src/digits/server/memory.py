"""glibc's memory in a server worker: few malloc arenas, and freed pages handed back after big decodes.

Decoding big uploads in threads spreads freed memory over glibc's arenas (eight per core by default),
which it keeps: a worker's memory crept up with every round of big photos (docs/experiments.md). Both
calls do nothing where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys


def _glibc():
    name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    return ctypes.CDLL(name) if name else None


_LIBC = _glibc()
_M_ARENA_MAX = -8


def limit_arenas(count: int = 2) -> None:
    """At most ``count`` malloc arenas in this process."""
    mallopt = getattr(_LIBC, "mallopt", None)  # glibc only (musl has no arenas to limit)
    if mallopt:
        mallopt(_M_ARENA_MAX, count)


def return_freed_memory() -> None:
    """Hand the whole pages malloc holds free back to the system."""
    trim = getattr(_LIBC, "malloc_trim", None)  # glibc only
    if trim:
        trim(0)
