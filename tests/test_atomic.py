"""The one way state is written: all of the new content, or the old content untouched."""

import pytest

from reverie.atomic import atomic_copy, atomic_file, atomic_write


def test_a_failed_write_keeps_the_old_content_and_leaves_no_temporary_file(tmp_path):
    path = atomic_write(tmp_path / "state" / "data.bin", b"old")  # missing folders are made
    with pytest.raises(RuntimeError):
        with atomic_file(path) as handle:
            handle.write(b"new, half")
            raise RuntimeError("crash")
    assert path.read_bytes() == b"old" and [p.name for p in path.parent.iterdir()] == ["data.bin"]
    assert path.stat().st_mode & 0o777 == 0o644  # not the temporary file's private mode
    path.chmod(0o600)
    atomic_write(path, b"new")
    assert path.read_bytes() == b"new" and [p.name for p in path.parent.iterdir()] == ["data.bin"]
    assert path.stat().st_mode & 0o777 == 0o600  # a rewrite keeps the mode


def test_copy_replaces_the_target_whole(tmp_path):
    source = atomic_write(tmp_path / "big.bin", bytes(range(256)) * 10_000)
    target = atomic_copy(source, tmp_path / "copy" / "big.bin")
    assert target.read_bytes() == source.read_bytes()
