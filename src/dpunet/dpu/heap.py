"""glibc heap settings of `dpunet-dpu`, whose memory budget on the DPU's Arm cores is tight.

By default every thread that allocates gets its own glibc arena, and memory freed in one
arena is neither used by the other threads nor given back to the system: the daemon's
few threads (event loop, reconcile worker, two OVSDB replicas) each keep a partly used
arena. `limit_arenas()` caps their number before the threads start; `trim()` hands free
pages back after work that allocated much (a reconcile pass that changed ports). Both do
nothing where the C library is not glibc.
"""

from __future__ import annotations

import ctypes

_M_ARENA_MAX = -8  # mallopt parameter (malloc.h)
DEFAULT_ARENAS = 2


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


_LIBC = _glibc()


def limit_arenas(count: int = DEFAULT_ARENAS) -> bool:
    """At most `count` malloc arenas for the whole process; False when not applied."""
    return _LIBC is not None and _LIBC.mallopt(_M_ARENA_MAX, count) == 1


def trim() -> bool:
    """Give free heap pages back to the system; True when some were."""
    return _LIBC is not None and _LIBC.malloc_trim(0) == 1
