"""Cache files of `cache: {filename: ...}`: keyed by what they hold, one per worker, and
recovered after a killed run.

tf.data reads an existing cache file without asking what it was made from, so the file
name carries a key of everything the cached elements depend on (the split's source, its
files' sizes and modification times, the seed, the stages before the cache): a changed spec
or data file gets a new file instead of a stale one. A worker of a cluster adds its task to
the name, so two workers never share a file. tf.data refuses a cache whose lockfile a killed
run left behind; pipe holds an OS lock on each cache it uses, so a lockfile it finds while
holding that lock is stale and is removed (with a message). The lock's own `.pipe-lock` file
is removed as the process lets go of the cache (`release_caches`, as pipe exits), so a
finished run leaves only the cache files; a killed run's is taken over, then removed, by the
next run of the cache.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import glob
import hashlib
import json
import os
import sys
from pathlib import Path

from runner.spec.cluster import read_cluster

_HELD = {}  # cache path -> its open lock file, for the life of the process (the OS releases it)


def cache_file(spec, where: tuple, filename: str, key) -> str | None:
    """The cache file for `filename` and `key`, locked for this process; None when another
    running process holds it (the caller then caches in memory).

    Raises:
        SpecError: located at the filename when its folder cannot be created.
    """
    base = spec.resolve_path(filename)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]
    path = base.with_name(f"{base.name}-{digest}{_worker_suffix(spec)}")
    if str(path) in _HELD:  # this process built the same split before: its lock still holds
        return str(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = _lock(path)
    except OSError as e:
        raise spec.error((*where, "filename"), f"cannot create the cache file {path}: {e.strerror}",
                         at_value=True) from None
    if lock is None:
        print(f"cache: {path} is in use by another run; caching in memory instead", file=sys.stderr, flush=True)
        return None
    _HELD[str(path)] = lock
    _remove_stale_lockfiles(path)
    return str(path)


def _lock(path: Path):
    """`path`'s lock file, open and locked by this process; None when another process holds it."""
    lock_path = f"{path}.pipe-lock"
    while True:
        lock = open(lock_path, "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            return None
        try:
            current = os.stat(lock_path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(lock.fileno()).st_ino:
            return lock
        # The process that held it removed the file as it let go (`release_caches`): this lock
        # is on a file nobody else can open any more; lock the file at the path instead.
        lock.close()


def release_caches() -> None:
    """Let go of every cache this process locked: its `.pipe-lock` file removed, then the lock
    released (removed first, so a process that opens the path after it locks a new file)."""
    while _HELD:
        path, lock = _HELD.popitem()
        with contextlib.suppress(OSError):
            os.unlink(f"{path}.pipe-lock")
        lock.close()


atexit.register(release_caches)  # a process that ends through os._exit calls it itself


def source_key(spec, split: str, source) -> dict:
    """What a split's source elements depend on: its declaration, its files and the seed."""
    data = spec.sections.data
    declared = data.split(split).source or data.train.source
    files = []
    for file in source.files:
        try:
            stat = Path(file).stat()
            files.append([str(Path(file).resolve()), stat.st_size, stat.st_mtime_ns])
        except OSError:
            files.append([str(file), None, None])
    held = {"test_fraction": data.test.fraction} if data.test.declares("fraction") else {}
    return {"split": split, "source": declared, "fraction": data.validation.fraction, **held, "files": files,
            "seed": spec.sections.seed}


def _remove_stale_lockfiles(path: Path) -> None:
    # tf.data names its lock `<file>_<shard>.lockfile` (and older versions `<file>.lockfile`).
    pattern = glob.escape(str(path))
    for stale in sorted(glob.glob(pattern + "_*.lockfile") + glob.glob(pattern + ".lockfile")):
        try:
            os.unlink(stale)
        except OSError:
            continue
        print(f"cache: removed {stale}, a lockfile left by a run that did not finish", file=sys.stderr, flush=True)


def _worker_suffix(spec) -> str:
    """`-worker1` on a task of a multi-worker cluster; nothing on a single process."""
    device = spec.sections.device
    if device.strategy_name != "multi_worker_mirrored":
        return ""
    cluster = read_cluster(device, ("strategy",), device.strategy_options)
    return f"-{cluster.task_type}{cluster.task_index}" if cluster else ""
