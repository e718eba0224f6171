"""The in-memory series catalogue: series key → id, and a wide frame of labels for selectors.

Selectors are evaluated over this frame in polars (one column per label), so a query touches the
``samples`` tables only for the ids it needs. Only the store's writer mutates the catalogue, after its
transaction commits; readers see an immutable frame that is swapped whole.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from qwq_core.model import series_key

_EMPTY = pl.DataFrame(schema={"series_id": pl.Int32, "name": pl.String})


def wide_labels(rows: pl.DataFrame) -> pl.DataFrame:
    """Turn ``series_id, name, keys, values`` (label lists) into ``series_id, name, <one column per label>``."""
    if rows.is_empty():
        return _EMPTY
    base = rows.select(pl.col("series_id").cast(pl.Int32), "name")
    pairs = rows.select("series_id", "keys", "values").explode("keys", "values").drop_nulls("keys")
    if pairs.is_empty():
        return base
    wide = pairs.pivot(on="keys", index="series_id", values="values")
    return base.join(wide.with_columns(pl.col("series_id").cast(pl.Int32)), on="series_id", how="left")


class SeriesCatalog:
    """Known series. ``frame`` is ``series_id, name, <labels>``; keys are canonical series texts."""

    def __init__(self, rows: pl.DataFrame | None = None) -> None:
        """``rows``: ``series_id, name, keys, values, key`` as stored in the series table."""
        rows = rows if rows is not None and not rows.is_empty() else None
        self.frame: pl.DataFrame = wide_labels(rows) if rows is not None else _EMPTY
        self._ids: dict[str, int] = (
            dict(zip(rows["key"].to_list(), rows["series_id"].to_list(), strict=True)) if rows is not None else {}
        )
        self._next_id = (max(self._ids.values()) + 1) if self._ids else 1

    def __len__(self) -> int:
        return len(self._ids)

    def resolve(self, keys: pl.DataFrame, now: datetime) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Assign ids to unique label sets.

        ``keys`` holds unique rows of ``name`` plus label columns. Returns ``keys`` with a ``series_id``
        column, and the rows of new series to insert (``series_id, name, keys, values, key, created``).
        New ids are only reserved; call :meth:`commit` once they are stored.
        """
        label_names = [c for c in keys.columns if c != "name"]
        ids: list[int] = []
        new: list[dict[str, object]] = []
        next_id = self._next_id
        for row in keys.iter_rows():
            name, values = row[0], row[1:]
            labels = {k: v for k, v in zip(label_names, values, strict=True) if v}
            key = series_key(name, labels)
            series_id = self._ids.get(key)
            if series_id is None:
                series_id = next_id
                next_id += 1
                new.append(
                    {
                        "series_id": series_id,
                        "name": name,
                        "keys": list(labels),
                        "values": list(labels.values()),
                        "key": key,
                        "created": now,
                    }
                )
            ids.append(series_id)
        resolved = keys.with_columns(pl.Series("series_id", ids, dtype=pl.Int32))
        new_rows = pl.DataFrame(
            new,
            schema={
                "series_id": pl.Int32,
                "name": pl.String,
                "keys": pl.List(pl.String),
                "values": pl.List(pl.String),
                "key": pl.String,
                "created": pl.Datetime("us"),
            },
        )
        return resolved, new_rows

    def commit(self, new_rows: pl.DataFrame) -> None:
        """Record series that are now stored (the second result of :meth:`resolve`)."""
        if new_rows.is_empty():
            return
        for key, series_id in zip(new_rows["key"].to_list(), new_rows["series_id"].to_list(), strict=True):
            self._ids[key] = series_id
        self._next_id = max(self._next_id, max(new_rows["series_id"].to_list()) + 1)
        self.frame = pl.concat([self.frame, wide_labels(new_rows)], how="diagonal_relaxed")

    def label_columns(self, frame: pl.DataFrame) -> list[str]:
        """Label columns that have at least one value in ``frame`` (a slice of :attr:`frame`), sorted."""
        return sorted(
            c for c in frame.columns if c not in ("series_id", "name") and frame[c].null_count() < frame.height
        )
