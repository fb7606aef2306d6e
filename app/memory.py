"""Give a password hash's memory back to the operating system (glibc).

PERF: every password hash (app/passwords.py) allocates argon2's 19 MiB in a
pool thread. glibc serves a block that large with ``mmap`` and unmaps it
when freed, but after that first free it raises its mmap threshold to the
block's size and its trim threshold to twice that ("dynamic threshold"), so
every later 19 MiB block comes from the thread's heap arena and stays
resident when freed: one sign-in grew a worker from 54 to 80 MB (RssAnon
38 -> 59 MB) for the rest of its life. Pinning the mmap threshold at 16 MiB
keeps the hashes on mmap (after the same sign-in the worker stays at
61 MB); the trim threshold at 32 MiB is what glibc would have chosen for a
16 MiB block, so large responses and cache values (100 KB - 1 MB) are still
served from the heap without being unmapped and faulted in again on every
request (pinned at 128 KiB, a 500 KB cached list page cost ~680 page
faults per read). The price is faulting in a hash's fresh pages (~5 % of a
60 ms hash); sign-ins are rare next to reads.
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 16 * 1024 * 1024  # below argon2's 19 MiB, above any response
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD


def release_large_blocks() -> bool:
    """Serve blocks of 16 MiB and more with mmap, always; keep 32 MiB of heap top.

    Returns False, and changes nothing, where the C library has no
    ``mallopt`` (not glibc) or the operator set glibc's own variables
    (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``).
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # TypeError: no CDLL(None) on Windows
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return (mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
