"""The kernels' build folder: sources copied in by content (two checkouts share one build instead
of rebuilding each other's), and the lock a killed build left removed (torch would wait on it
forever and the server would never finish loading)."""

from __future__ import annotations

import os
import time

from mistral_serve.model import kernels


def test_the_sources_are_copied_into_the_build_folder_and_kept_while_unchanged(tmp_path):
    paths = kernels.build_sources(tmp_path)
    assert [os.path.basename(p) for p in paths] == [p.name for p in kernels.SOURCES]
    for path in kernels.SOURCES + kernels.HEADERS:  # headers too: the sources include them by name
        assert (tmp_path / "src" / path.name).read_bytes() == path.read_bytes()
    copy = tmp_path / "src" / kernels.SOURCES[0].name
    before = copy.stat().st_mtime_ns
    time.sleep(0.01)
    assert kernels.build_sources(tmp_path) == paths
    assert copy.stat().st_mtime_ns == before  # an unchanged copy is not rewritten (ninja would rebuild)


def test_a_copy_that_differs_is_replaced(tmp_path):
    kernels.build_sources(tmp_path)
    copy = tmp_path / "src" / kernels.HEADERS[0].name
    copy.write_text("// stale")
    kernels.build_sources(tmp_path)
    assert copy.read_bytes() == kernels.HEADERS[0].read_bytes()
    assert not [p for p in (tmp_path / "src").iterdir() if p.name not in
                {s.name for s in kernels.SOURCES + kernels.HEADERS}]  # no partial files left


def test_an_old_lock_is_removed_and_a_fresh_one_kept(tmp_path):
    lock = tmp_path / "lock"
    assert not kernels.clear_stale_lock(tmp_path)  # none there
    lock.touch()
    assert not kernels.clear_stale_lock(tmp_path) and lock.exists()  # a build may be running
    old = time.time() - kernels.STALE_LOCK_S - 60
    os.utime(lock, (old, old))
    assert kernels.clear_stale_lock(tmp_path) and not lock.exists()
