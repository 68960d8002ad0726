"""Raw-directory scans and the ingest plan: keys, collisions, settle time, batches, changes."""

import pytest

from lightcurver_ops.db.frames import RawFileRecord
from lightcurver_ops.errors import ConfigError
from lightcurver_ops.files import file_sha256
from lightcurver_ops.ingest import RawFileStat, plan_ingest, safe_partition_key, scan_raw_dirs

NOW = 10_000 * 10**9


def _stat(path: str, mtime_s: float = 100.0, size: int = 10) -> RawFileStat:
    return RawFileStat(path, size, int(mtime_s * 1e9))


def _plan(scanned, registry=None, known=(), settle=10.0, max_frames=100):
    return plan_ingest(
        scanned, registry or {}, set(known), now_ns=NOW, settle_seconds=settle, max_frames=max_frames
    )


@pytest.mark.parametrize(
    ("stem", "key"),
    [
        ("OMEGA.2023-02-25T07:12:00.123", "OMEGA.2023-02-25T07_12_00.123"),
        ("a,b|c d/e", "a_b_c_d_e"),
        ("...", "frame"),
    ],
)
def test_safe_partition_keys(stem, key):
    assert safe_partition_key(stem) == key


def test_same_name_in_two_directories_gets_distinct_stable_keys():
    scanned = [_stat("/raw1/obs.fits", 1), _stat("/raw2/obs.fits", 2)]
    plan = _plan(scanned)
    keys = [record.partition_key for record in plan.new]
    assert keys[0] == "obs" and keys[1].startswith("obs-") and len(keys[1]) == len("obs-") + 8
    registry = {r.path: r for r in plan.new}
    assert _plan(scanned, registry, known=keys).new == []  # nothing left to do, keys unchanged


def test_files_still_being_written_wait_for_the_settle_time():
    plan = _plan([_stat("/raw/old.fits", 1), _stat("/raw/fresh.fits", NOW / 1e9 - 2)], settle=10)
    assert [r.partition_key for r in plan.new] == ["old"]
    assert plan.waiting == 1


def test_batches_are_bounded_oldest_first():
    scanned = [_stat(f"/raw/f{i:02d}.fits", 100 - i) for i in range(10)]
    plan = _plan(scanned, max_frames=4)
    assert [r.partition_key for r in plan.new] == ["f09", "f08", "f07", "f06"]
    assert plan.deferred == 6


def test_changed_file_reruns_its_partition_and_missing_partition_is_readded():
    registry = {
        "/raw/a.fits": RawFileRecord("a", "/raw/a.fits", 10, int(100e9)),
        "/raw/b.fits": RawFileRecord("b", "/raw/b.fits", 10, int(100e9)),
    }
    scanned = [_stat("/raw/a.fits", 200, size=20), _stat("/raw/b.fits", 100)]
    plan = _plan(scanned, registry, known={"a"})
    assert plan.changed == [RawFileRecord("a", "/raw/a.fits", 20, int(200e9))]
    assert [r.partition_key for r in plan.new] == ["b"]


def test_key_taken_by_a_manual_partition_is_not_reused():
    plan = _plan([_stat("/raw/x.fits")], known={"x"})
    assert plan.new[0].partition_key.startswith("x-")


def test_scan_finds_pattern_only_and_refuses_missing_directory(tmp_path):
    (tmp_path / "a.fits").write_bytes(b"1")
    (tmp_path / "b.txt").write_bytes(b"2")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.fits").write_bytes(b"3")
    found = scan_raw_dirs([tmp_path], "*.fits")
    assert [f.path for f in found] == [str(tmp_path / "a.fits")]
    with pytest.raises(ConfigError, match="raw_dirs"):
        scan_raw_dirs([tmp_path / "missing"], "*.fits")


def test_content_hash(tmp_path):
    (tmp_path / "a").write_bytes(b"abc")
    assert file_sha256(tmp_path / "a") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
