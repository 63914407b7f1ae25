"""A partitioned Parquet panel read one rank's share at a time (ssmcast.data.shards, issue #36)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ssmcast.data.shards import ParquetShards, assign_files


def _write(directory, make_panel, groups: dict[str, dict[str, int]], **kwargs):
    """One Parquet file per entry of ``groups`` (file name -> {series: length})."""
    directory.mkdir(parents=True, exist_ok=True)
    frames = {}
    for seed, (name, lengths) in enumerate(groups.items()):
        frames[name] = make_panel(lengths, seed=seed)
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        frames[name].to_parquet(path, index=False, **kwargs)
    return frames


@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_assignment_is_balanced_deterministic_and_covers_every_file_once(world):
    rng = np.random.default_rng(world)
    rows = rng.integers(1, 1000, size=11).tolist()
    names = [f"part{i:02d}.parquet" for i in range(11)]
    shares = assign_files(rows, names, world)
    assert shares == assign_files(rows, names, world)  # deterministic
    assert sorted(itertools.chain(*shares)) == list(range(11))  # every file exactly once
    assert all(share == sorted(share, key=names.__getitem__) for share in shares)  # each rank's in name order
    loads = [sum(rows[i] for i in share) for share in shares]
    assert max(loads) <= sum(rows) / world + max(rows)  # the greedy schedule's bound
    # the order the files are listed in does not matter: the names break ties, not positions
    perm = rng.permutation(11)
    again = assign_files([rows[i] for i in perm], [names[i] for i in perm], world)
    assert sorted(sorted(names[perm[i]] for i in share) for share in again) == sorted(
        sorted(names[i] for i in share) for share in shares)


def test_assignment_largest_first_to_the_least_loaded_rank():
    rows, names = [10, 40, 30, 20, 20], ["a", "b", "c", "d", "e"]
    # b(40) -> 0, c(30) -> 1, d(20) -> 1 (30 < 40), e(20) -> 0 (40 < 50), a(10) -> 0 or 1: both 60 / 50 -> 1
    assert assign_files(rows, names, 2) == [[1, 4], [0, 2, 3]]


def test_fewer_files_than_ranks_is_refused_naming_both():
    with pytest.raises(ValueError, match=r"2 Parquet file\(s\) for 3 ranks"):
        assign_files([5, 6], ["a", "b"], 3)


def test_reads_footers_and_each_ranks_files(tmp_path, make_panel):
    frames = _write(tmp_path / "ds", make_panel, {"p0.parquet": {"a": 30, "b": 20}, "p1.parquet": {"c": 45},
                                                 "sub/p2.parquet": {"d": 10, "e": 12}})
    (tmp_path / "ds" / "_SUCCESS").write_text("")
    (tmp_path / "ds" / "_common_metadata.parquet").write_bytes(b"not read")
    shards = ParquetShards(tmp_path / "ds")
    assert shards.names == ["p0.parquet", "p1.parquet", "sub/p2.parquet"]
    assert shards.rows.tolist() == [50, 45, 22]
    assert shards.files_of(0, 1) == shards.names
    assert shards.files_of(0, 2) == ["p0.parquet"] and shards.files_of(1, 2) == ["p1.parquet", "sub/p2.parquet"]
    whole = shards.read()
    pd.testing.assert_frame_equal(whole, pd.concat(frames.values(), ignore_index=True), check_dtype=False)
    rank1 = shards.read(1, 2, columns=["y"])
    assert list(rank1.columns) == ["unique_id", "ds", "y"]
    assert sorted(set(rank1["unique_id"])) == ["c", "d", "e"] and len(rank1) == 67
    assert ParquetShards(shards).names == shards.names


def test_a_series_split_over_two_files_is_refused_by_name(tmp_path, make_panel):
    panel = make_panel({"a": 20, "b": 20, "c": 20})
    ds = tmp_path / "ds"
    ds.mkdir()
    panel.iloc[:30].to_parquet(ds / "p0.parquet", index=False)  # a and half of b
    panel.iloc[30:].to_parquet(ds / "p1.parquet", index=False)  # the rest of b, and c
    with pytest.raises(ValueError, match=r"series 'b' is split over two files .*p0.parquet, p1.parquet"):
        ParquetShards(ds)


def test_overlapping_id_ranges_without_a_split_series_are_accepted(tmp_path, make_panel):
    """The footers' min/max of unique_id overlap (a..c and b): the unique_id columns are read, and nothing is split."""
    _write(tmp_path / "ds", make_panel, {"p0.parquet": {"a": 10, "c": 10}, "p1.parquet": {"b": 10}})
    assert ParquetShards(tmp_path / "ds").rows.tolist() == [20, 10]


def test_without_statistics_the_id_column_is_read(tmp_path, make_panel):
    frames = _write(tmp_path / "ok", make_panel, {"p0.parquet": {"a": 10}, "p1.parquet": {"b": 10}},
                    write_statistics=False)
    assert pq.ParquetFile(tmp_path / "ok" / "p0.parquet").metadata.row_group(0).column(0).statistics is None
    ParquetShards(tmp_path / "ok")
    split = tmp_path / "split"
    split.mkdir()
    both = pd.concat(frames.values(), ignore_index=True)
    pq.write_table(pa.Table.from_pandas(both.iloc[:15], preserve_index=False), split / "p0.parquet",
                   write_statistics=False)
    pq.write_table(pa.Table.from_pandas(both.iloc[15:], preserve_index=False), split / "p1.parquet",
                   write_statistics=False)
    with pytest.raises(ValueError, match="series 'b' is split over two files"):
        ParquetShards(split)


def test_bad_datasets_are_refused_naming_the_problem(tmp_path, make_panel):
    with pytest.raises(ValueError, match="does not exist"):
        ParquetShards(tmp_path / "nowhere")
    file = tmp_path / "one.parquet"
    make_panel({"a": 5}).to_parquet(file, index=False)
    with pytest.raises(ValueError, match="is not a directory"):
        ParquetShards(file)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.csv").write_text("x")
    with pytest.raises(ValueError, match="holds no .parquet files"):
        ParquetShards(tmp_path / "empty")
    (tmp_path / "cols").mkdir()
    make_panel({"a": 5}).rename(columns={"y": "value"}).to_parquet(tmp_path / "cols" / "p.parquet", index=False)
    with pytest.raises(ValueError, match=r"p.parquet .* lacks the column\(s\) \['y'\]"):
        ParquetShards(tmp_path / "cols")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "p.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ValueError, match="p.parquet .* is not a readable Parquet file"):
        ParquetShards(tmp_path / "broken")
    with pytest.raises(TypeError, match="directory"):
        ParquetShards(3)
    _write(tmp_path / "two", make_panel, {"p0.parquet": {"a": 5}, "p1.parquet": {"b": 5}})
    shards = ParquetShards(tmp_path / "two")
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['temp'\] the model needs"):
        shards.read(columns=["y", "temp"])
    with pytest.raises(ValueError, match=r"2 Parquet file\(s\) for 3 ranks"):
        shards.read(0, 3)
    with pytest.raises(ValueError, match="rank 2 is not one of the 2 ranks"):
        shards.files_of(2, 2)
