"""numba's ``njit``, applied at a kernel's first call rather than at import.

Importing numba costs ~0.35 s of CPU in every process that imports the render core (each ``tiler serve``
worker, at start, beside boxlink's sync), and a node's first tiles (stored tiles) need no kernel at all.
``@njit(...)`` here records the function; the first call of any kernel of a module imports numba and
replaces every recorded kernel of that module by its numba dispatcher (in the module's globals, which is
where kernels calling kernels find each other, and where numba's ``cache=True`` entries are keyed, as before).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

_pending: dict[str, list[tuple[str, Callable, dict]]] = {}  # module -> its kernels not compiled yet
_compiled: dict[str, dict[str, Callable]] = {}                # module -> name -> numba dispatcher
_lock = threading.Lock()


class LazyKernel:
    """Stands for a kernel until its module's kernels are handed to numba; then calls the dispatcher."""

    def __init__(self, function: Callable):
        self.function = function
        self.__name__ = function.__name__
        self.__doc__ = function.__doc__

    def __call__(self, *args):
        return dispatchers(self.function.__module__)[self.__name__](*args)


def njit(**options) -> Callable[[Callable], LazyKernel]:
    def record(function: Callable) -> LazyKernel:
        _pending.setdefault(function.__module__, []).append((function.__name__, function, options))
        return LazyKernel(function)
    return record


def compiled(module: str) -> bool:
    """True once ``module``'s kernels have been handed to numba in this process: numba is imported, and each
    kernel loads its cache (or compiles) on its first call."""
    return module in _compiled


def dispatchers(module: str) -> dict[str, Callable]:
    """The numba dispatchers of ``module``'s kernels (made, and put in its globals, on the first call)."""
    found = _compiled.get(module)
    if found is not None:
        return found
    with _lock:
        if module not in _compiled:
            import numba

            made = {name: numba.njit(**options)(function) for name, function, options in _pending.pop(module, [])}
            vars(sys.modules[module]).update(made)
            _compiled[module] = made
    return _compiled[module]
