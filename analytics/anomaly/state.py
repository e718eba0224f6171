"""Per-series state held as numpy arrays (one row per series), so one step scores every series at once.

Each method keeps its state in an :class:`Arrays`: named arrays whose first axis is the series. New series
are appended with the method's defaults, and the whole state is a plain ``dict`` of arrays, so a running
system can save it between jobs (``numpy.savez``) and carry on exactly where it stopped.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Index = slice | npt.NDArray[np.intp]
"""Which series a step touches: a slice (a batch's active prefix, no copies) or an index array.

Beware: ``arrays[idx]`` is a view for a slice and a copy for an index array, so a value read through ``idx``
and still used after its array is updated must be copied, or batch and online scores would differ (the
property tests compare them).
"""


class Arrays:
    """Named per-series arrays with defaults for new rows; attributes are the arrays themselves."""

    def __init__(self, **arrays: np.ndarray[Any, Any]) -> None:
        self._names = tuple(arrays)
        for name, array in arrays.items():
            setattr(self, name, array)

    def defaults(self) -> dict[str, float]:
        """The value each array takes for a new series (0 unless overridden)."""
        return {}

    def rows(self, idx: Index) -> npt.NDArray[np.intp]:
        """The series ``idx`` selects as an index array (a slice becomes the row numbers it covers)."""
        return np.arange(len(getattr(self, self._names[0])))[idx]

    def grow(self, count: int) -> None:
        """Append ``count`` new series."""
        fill = self.defaults()
        for name in self._names:
            old = getattr(self, name)
            new = np.full((count, *old.shape[1:]), fill.get(name, 0.0), dtype=old.dtype)
            setattr(self, name, np.concatenate([old, new]))

    def state(self, prefix: str) -> dict[str, np.ndarray[Any, Any]]:
        """The arrays, keyed ``prefix.name``."""
        return {f"{prefix}.{name}": getattr(self, name) for name in self._names}

    def load(self, prefix: str, state: dict[str, np.ndarray[Any, Any]]) -> None:
        """Restore arrays saved by :meth:`state`."""
        for name in self._names:
            old = getattr(self, name)
            setattr(self, name, np.asarray(state[f"{prefix}.{name}"], dtype=old.dtype))
