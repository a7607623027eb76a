"""The C memory allocator of a serving process.

Below the interpreter's own small-object allocator, libxml2 (every X-Road envelope and
Kela body), SQLite (statements, records, its page cache) and CPython's larger objects
call the C library's ``malloc``. Under the gateway's load glibc's allocator spent about
6 % of a Kela exchange's CPU in ``malloc`` and ``free`` and their free-list upkeep, and
a message cost 5 to 10 % less CPU with jemalloc or mimalloc in its place
(docs/performance.md, "The C allocator").

An allocator replaces glibc's only when the dynamic loader maps it before the
interpreter starts (``LD_PRELOAD``, ld.so(8)). ``silta serve`` therefore starts itself
once more with the allocator preloaded when one is installed. ``SILTA_ALLOCATOR``
chooses: ``auto`` (the default: mimalloc, else jemalloc, else the C library's own),
``mimalloc`` or ``jemalloc`` (an error when it is not installed), or ``system``.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

ALLOCATOR_VARIABLE = "SILTA_ALLOCATOR"
PRELOAD_VARIABLE = "LD_PRELOAD"
ALLOCATORS = ("mimalloc", "jemalloc")
"""The allocators ``auto`` looks for (``libNAME``), in its order of preference."""
DEBIAN_PACKAGES = {"mimalloc": "libmimalloc2.0", "jemalloc": "libjemalloc2"}
SYSTEM = "system"
AUTO = "auto"


class AllocatorError(ValueError):
    """``SILTA_ALLOCATOR`` names an allocator this host cannot load."""


def preload_for(
    env: Mapping[str, str],
    *,
    find_library: Callable[[str], str | None] = ctypes.util.find_library,
    platform: str = sys.platform,
) -> str | None:
    """The library to preload into a serving process, or None when it should run as it
    is: the system allocator was chosen, none is installed (``auto``), the host is not
    Linux, or one is preloaded already."""
    choice = env.get(ALLOCATOR_VARIABLE, AUTO).strip().lower() or AUTO
    if choice == SYSTEM:
        return None
    if choice != AUTO and choice not in ALLOCATORS:
        known = ", ".join((AUTO, *ALLOCATORS, SYSTEM))
        raise AllocatorError(f"{ALLOCATOR_VARIABLE}={choice} is not one of {known}")
    if not platform.startswith("linux"):
        if choice == AUTO:
            return None
        raise AllocatorError(f"{ALLOCATOR_VARIABLE}={choice}: preloading needs Linux")
    preloaded = env.get(PRELOAD_VARIABLE, "")
    if any(f"lib{name}" in preloaded for name in ALLOCATORS):
        return None
    for name in ALLOCATORS if choice == AUTO else (choice,):
        library = find_library(name)
        if library:
            return library
    if choice == AUTO:
        return None
    raise AllocatorError(
        f"{ALLOCATOR_VARIABLE}={choice}: lib{choice} is not installed "
        f"(on Debian and Ubuntu: apt install {DEBIAN_PACKAGES[choice]})"
    )


def restart_with_allocator(command: Sequence[str]) -> None:
    """Replaces this process by ``command`` (an interpreter command line) with the
    chosen allocator preloaded (execve(2): the process id stays the same); returns
    without doing anything when there is nothing to preload."""
    library = preload_for(os.environ)
    if library is None:
        return
    preloaded = os.environ.get(PRELOAD_VARIABLE, "")
    env = {**os.environ, PRELOAD_VARIABLE: f"{library} {preloaded}".strip()}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *command], env)


def allocator_in_use(maps: Path = Path("/proc/self/maps")) -> str:
    """The allocator mapped into this process (proc(5) maps): ``mimalloc``,
    ``jemalloc`` or ``system``."""
    try:
        mapped = maps.read_text()
    except OSError:
        return SYSTEM
    for name in ALLOCATORS:
        if f"/lib{name}." in mapped:
            return name
    return SYSTEM
