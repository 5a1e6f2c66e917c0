"""Process-level memory settings for megabyte messages.

rclpy copies every published or serialised message into a freshly allocated buffer (a 640x480 cloud is
4.9 MB, a 1280x720 colour cloud 29 MB). glibc serves allocations that large with mmap and returns them
with munmap, so every copy page-faults its whole buffer in again: measured on a 2-core VM, serialising a
29 MB cloud took 73 ms that way and 12 ms once such buffers are kept and reused from the heap.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's largest allowed value on 64-bit: covers a 720p colour cloud
TRIM_THRESHOLD_BYTES = 256 << 20  # keep up to this much freed heap for the next frame's buffers

_applied: bool | None = None


def tune_malloc_for_large_messages() -> bool:
    """Make glibc reuse large freed buffers instead of unmapping them; True when applied (glibc only).

    Safe to call more than once. Trades up to TRIM_THRESHOLD_BYTES of retained heap for not
    page-faulting tens of MB per frame.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    return _applied
