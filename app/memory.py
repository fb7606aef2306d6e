"""Give large freed blocks back to the operating system (glibc).

PERF: every password hash (app/passwords.py) allocates argon2's 19 MiB in a
pool thread. glibc serves a block that large with ``mmap`` and unmaps it
when freed, but after that first free it raises its mmap threshold to the
block's size ("dynamic threshold"), so every later 19 MiB block comes from
the thread's heap arena and stays resident when freed: one sign-in grew a
worker from 54 to 80 MB (RssAnon 38 -> 59 MB) for the rest of its life.
Pinning the threshold keeps large blocks on mmap: after the same sign-in
the worker stays at 61 MB. The price is faulting in fresh pages on each
hash (~5 % of a 60 ms hash); sign-ins are rare next to reads.
"""

from __future__ import annotations

import ctypes

M_MMAP_THRESHOLD = -3  # <malloc.h>
LARGE_BLOCK = 128 * 1024  # glibc's own default threshold


def release_large_blocks(threshold: int = LARGE_BLOCK) -> bool:
    """Serve blocks of ``threshold`` bytes and more with mmap, always.

    Returns False where the C library has no ``mallopt`` (not glibc): there
    the allocator's own policy stays.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, threshold) == 1
