"""A partitioned Parquet panel read one data-parallel rank's share at a time (issue #36).

The dataset is the one :mod:`ssmcast.evaluation.partitioned` takes for ``compare``/``backtest``: a directory of
``.parquet`` files (nested folders allowed; names starting with ``.`` or ``_``, such as ``_SUCCESS`` or
``_metadata``, are skipped, as pyarrow does) in the long format ``unique_id, ds, y`` plus covariate columns,
each file holding whole series. :class:`ParquetShards` lists the files and reads their footers only (row counts,
schema, ``unique_id`` statistics: no data), checks that no series is split over two files, and hands each of
``W`` ranks its own files (:func:`assign_files`: balanced by rows, deterministic), which :meth:`ParquetShards.read`
reads (the columns asked for only) into one long pandas frame. So a rank's memory is bounded by its shard, not by
the panel: ``NeuralForecaster.fit(path)`` under DDP trains each rank on the windows of its own files.
"""

from __future__ import annotations

import heapq
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ssmcast.data.frames import ID, TARGET, TIME

__all__ = ["ParquetShards", "assign_files"]

_REQUIRED = (ID, TIME, TARGET)


def assign_files(rows, names, world: int) -> list[list[int]]:
    """Files (indices into ``rows``/``names``) of each of ``world`` ranks: every file exactly once, balanced by rows.

    Largest file first to the least loaded rank (ties: the lower rank; equal files in name order), the classic
    greedy schedule: no rank holds more than the average plus one file's rows. Deterministic (it depends on the
    row counts and names only), so every rank computes the same assignment without talking to the others. Each
    rank's files are listed in name order."""
    rows = [int(r) for r in rows]
    if len(rows) != len(names):
        raise ValueError(f"{len(rows)} row counts for {len(names)} file names")
    if isinstance(world, bool) or not isinstance(world, (int, np.integer)) or world < 1:
        raise ValueError(f"world must be a positive integer; got {world!r}")
    if len(rows) < world:
        raise ValueError(f"the dataset has {len(rows)} Parquet file(s) for {world} ranks: every rank needs at least "
                         "one file of whole series (write the dataset as more files, or run fewer ranks)")
    loads = [(0, rank) for rank in range(world)]  # a heap of (rows so far, rank)
    shares: list[list[int]] = [[] for _ in range(world)]
    for i in sorted(range(len(rows)), key=lambda i: (-rows[i], names[i])):
        load, rank = heapq.heappop(loads)
        shares[rank].append(i)
        heapq.heappush(loads, (load + rows[i], rank))
    return [sorted(share, key=names.__getitem__) for share in shares]


class ParquetShards:
    """A Parquet dataset of whole series, in the long format, to be read one rank's share at a time.

    Construction lists the files and reads their footers (row counts, columns, the ``unique_id`` statistics); it
    raises ``ValueError`` naming the problem for a path that is not a directory, a directory without ``.parquet``
    files, a file that lacks ``unique_id``/``ds``/``y``, and a series found in more than one file (from the
    footers' min/max statistics of ``unique_id`` where they rule an overlap out; else from the ``unique_id``
    column only, file by file, of the files whose statistics overlap or are missing).

    ``files`` (paths, in name order), ``names`` (relative to the root), ``rows`` (per file) and ``columns`` (the
    first file's, in order) describe it; :meth:`files_of` and :meth:`read` give rank ``r`` of ``W`` its share.
    """

    def __init__(self, path):
        import pyarrow.parquet as pq

        if isinstance(path, ParquetShards):
            path = path.path
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"a Parquet dataset is given by its directory (str or Path); got {type(path).__name__}")
        root = Path(path).expanduser()
        if not root.exists():
            raise ValueError(f"no Parquet dataset at {str(root)!r}: the path does not exist")
        if not root.is_dir():
            raise ValueError(f"{str(root)!r} is not a directory: a sharded fit reads a Parquet dataset, a directory of "
                             ".parquet files each holding whole series (pass a single file's frame to fit as a frame)")
        files = [p for p in root.rglob("*.parquet") if p.is_file()
                 and not any(part.startswith((".", "_")) for part in p.relative_to(root).parts)]
        if not files:
            raise ValueError(f"{str(root)!r} holds no .parquet files")
        self.path = root
        self.names = sorted(p.relative_to(root).as_posix() for p in files)
        self.files = [root / name for name in self.names]
        metas = []
        for name, file in zip(self.names, self.files):
            try:
                metas.append(pq.ParquetFile(file).metadata)
            except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a damaged file
                raise ValueError(f"{name} in {str(root)!r} is not a readable Parquet file ({type(err).__name__}: "
                                 f"{str(err)[:200]})") from None
        self.rows = np.array([m.num_rows for m in metas], dtype=np.int64)
        schemas = [m.schema.to_arrow_schema().names for m in metas]
        self.columns = list(schemas[0])
        for name, schema in zip(self.names, schemas):
            missing = [c for c in _REQUIRED if c not in schema]
            if missing:
                hint = (" (a Hive-partitioned dataset keeps unique_id in the folder names: write it as a column)"
                        if ID in missing else "")
                raise ValueError(f"{name} in {str(root)!r} lacks the column(s) {missing}; it has {schema} (the long "
                                 f"format: unique_id, ds, y plus covariates){hint}")
        self._check_series(metas)

    def __repr__(self) -> str:
        return f"ParquetShards({str(self.path)!r}: {len(self.files)} files, {int(self.rows.sum())} rows)"

    # ------------------------------------------------------------------ the series check
    def _check_series(self, metas) -> None:
        """No series in two files: files whose ``unique_id`` ranges (footer statistics) overlap no other need no
        reading; the others' ``unique_id`` columns are read (that column only, one file at a time)."""
        bounds = [_id_bounds(m) for m in metas]
        suspects: list[list[int]] = []
        if any(b is None for b, n in zip(bounds, self.rows) if n):  # (an empty file splits nothing)
            suspects = [list(range(len(bounds)))]
        else:
            try:
                order = sorted((i for i in range(len(bounds)) if self.rows[i]), key=lambda i: bounds[i][0])
                group, high = [], None
                for i in order:  # connected groups of overlapping [min, max] ranges
                    if group and bounds[i][0] <= high:
                        group.append(i)
                        high = max(high, bounds[i][1])
                        continue
                    if len(group) > 1:
                        suspects.append(group)
                    group, high = [i], bounds[i][1]
                if len(group) > 1:
                    suspects.append(group)
            except TypeError:  # files disagree on the column's type: read them
                suspects = [list(range(len(bounds)))]
        for group in suspects:
            seen: dict[str, int] = {}
            for i in group:
                for uid in _ids_in(self.files[i]):
                    first = seen.setdefault(uid, i)
                    if first != i:
                        raise ValueError(
                            f"series {uid!r} is split over two files of {str(self.path)!r} ({self.names[first]}, "
                            f"{self.names[i]}): every series must sit in one file (write the dataset grouped by "
                            "unique_id, e.g. ddf.shuffle('unique_id').to_parquet(...))"
                        )

    # ------------------------------------------------------------------ a rank's share
    def files_of(self, rank: int, world: int) -> list[str]:
        """The names of rank ``rank``'s files among ``world`` ranks (:func:`assign_files`)."""
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not one of the {world} ranks")
        return [self.names[i] for i in assign_files(self.rows, self.names, world)[rank]]

    def read(self, rank: int = 0, world: int = 1, columns: list[str] | None = None) -> pd.DataFrame:
        """Rank ``rank``'s files (all of them with ``world=1``) as one long pandas frame of ``columns`` (default:
        every column), in file order; the frame is not validated (``fit`` validates it as any frame)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = list(self.columns if columns is None else dict.fromkeys([*_REQUIRED, *columns]))
        names = self.files_of(rank, world)
        tables = []
        for name in names:
            file = pq.ParquetFile(self.path / name)
            missing = [c for c in columns if c not in file.schema_arrow.names]
            if missing:
                raise ValueError(f"{name} in {str(self.path)!r} lacks the column(s) {missing} the model needs; it has "
                                 f"{file.schema_arrow.names}")
            tables.append(file.read(columns=columns))
        try:
            table = pa.concat_tables(tables, promote_options="default")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            raise ValueError(f"the files {names} of {str(self.path)!r} disagree on their columns' types: "
                             f"{err}") from None
        del tables
        # one copy into pandas, the Arrow buffers released column by column as they are converted
        return table.to_pandas(split_blocks=True, self_destruct=True)


def _id_bounds(meta):
    """``(min, max)`` of ``unique_id`` over a file's row groups from its footer, or ``None`` where a row group with
    rows has no statistics (or the file has no row group)."""
    lows, highs = [], []
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        if group.num_rows == 0:
            continue
        column = next((group.column(j) for j in range(group.num_columns) if group.column(j).path_in_schema == ID),
                      None)
        stats = column.statistics if column is not None else None
        if stats is None or not stats.has_min_max:
            return None
        lows.append(stats.min)
        highs.append(stats.max)
    return (min(lows), max(highs)) if lows else None


def _ids_in(file: Path) -> list[str]:
    """The distinct ``unique_id`` values of one file, as ``str`` (what ``to_long`` makes of them)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    values = pc.unique(pq.ParquetFile(file).read(columns=[ID]).column(ID).combine_chunks()).to_pylist()
    return [str(v) for v in values if v is not None]
