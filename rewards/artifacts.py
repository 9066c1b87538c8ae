"""Artifacts on disk: atomic writes, content hashes, per-item journals and stage manifests.

Stages meet only through these files, so every write here is atomic (temp file + rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from rewards.errors import UserError

MANIFEST = "manifest.json"
_UMASK = os.umask(0)
os.umask(_UMASK)

# Test hook (tests/kill_resume.py): COUNSEL_ALIGN_KILL_AT=<label>:<n> kills this process with SIGKILL at the n-th
# kill_point(<label>); COUNSEL_ALIGN_KILL_LOG=<file> appends every label reached to that file. Read once at import,
# so that with neither set a kill point costs one comparison.
_KILL_AT = os.environ.get("COUNSEL_ALIGN_KILL_AT")
_KILL_LOG = os.environ.get("COUNSEL_ALIGN_KILL_LOG")
_kill_counts: dict[str, int] = {}


def kill_point(label: str) -> None:
    """A labelled point where the kill -9 tests may kill the process (a test hook; does nothing unless armed)."""
    if _KILL_AT is None and _KILL_LOG is None:
        return
    if _KILL_LOG:
        with open(_KILL_LOG, "a", encoding="utf-8") as handle:
            handle.write(label + "\n")
    _kill_counts[label] = _kill_counts.get(label, 0) + 1
    if _KILL_AT and _KILL_AT == f"{label}:{_kill_counts[label]}":
        os.kill(os.getpid(), signal.SIGKILL)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clear_leftovers(path)  # a temp file of a writer killed before its rename
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-{os.getpid()}-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the permissions open() would
        kill_point("atomic.write")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def read_jsonl(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def jsonl_rows(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed row) of a JSONL file a user wrote; blank lines skipped, bad JSON a one-line error."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{number}: not valid JSON ({exc.msg})") from None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_json(obj: Any) -> str:
    return sha256_bytes(json.dumps(obj, sort_keys=True, default=str).encode("utf-8"))


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_tree(root: str | Path, exclude: Iterable[str] = (MANIFEST,)) -> str:
    """Hash of every file below ``root`` (names and contents), skipping hidden and excluded names."""
    root = Path(root)
    excluded = set(exclude)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if rel.name in excluded or any(part.startswith(".") for part in rel.parts):
            continue
        digest.update(str(rel).encode())
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _clear_leftovers(path: Path) -> None:
    """Remove temp/old files or folders of ``path`` left by killed writers (a live writer's are kept)."""
    for leftover in path.parent.glob(f".{path.name}.*-*"):
        kind, _, rest = leftover.name[len(path.name) + 2:].partition("-")
        pid = rest.split("-", 1)[0]
        if kind in ("tmp", "old") and pid.isdigit() and not _process_alive(int(pid)):
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


def atomic_replace_dir(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Build a folder with ``write(tmp)`` in a unique sibling temp folder, then swap it in for ``path`` by rename.

    Readers see the old folder or the new one, never a half-written one. Leftovers of a writer killed at any
    point (its temp folder, or the old folder moved aside) are cleared first, and an existing ``path`` is replaced,
    so a rerun after a kill always works.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clear_leftovers(path)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = path.with_name(f".{path.name}.tmp-{tag}")
    try:
        write(tmp)
        if not tmp.is_dir():
            raise FileNotFoundError(f"{tmp}: the writer did not create the folder")
        kill_point("atomic.dir")
        return swap_in_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def swap_in_dir(staged: Path, path: Path) -> Path:
    """Put the finished folder ``staged`` in place of ``path`` by rename; an existing ``path`` is moved aside
    first (a non-empty folder cannot be replaced in one rename), then removed."""
    old = path.with_name(f".{path.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        os.replace(path, old)
    except FileNotFoundError:
        old = None
    kill_point("atomic.swap")  # between the two renames: no folder at ``path``
    os.replace(staged, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return path


def save_dataset_atomic(dataset: Any, path: str | Path) -> Path:
    """Save a ``datasets.Dataset`` or ``DatasetDict`` to ``path`` atomically (see :func:`atomic_replace_dir`)."""
    return atomic_replace_dir(path, lambda tmp: dataset.save_to_disk(str(tmp)))


class Journal:
    """Append-only JSONL of finished items, so an interrupted stage resumes without repeating work.

    Each record is flushed and fsynced. A kill mid-write leaves a torn last line: it is ignored on read and cut
    off before the next append, so it can never swallow the record written after it.
    """

    def __init__(self, path: str | Path, key: str = "key") -> None:
        self.path = Path(path)
        self.key = key
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def records(self) -> Iterator[dict]:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue

    def done(self) -> dict[str, dict]:
        return {record[self.key]: record for record in self.records()}

    def repair_tail(self) -> None:
        """Make the file end with a newline: keep a complete last record that lacks only its newline, else cut the
        torn tail (an incomplete record from a kill) back to the last whole line."""
        if not self.path.exists():
            return
        with open(self.path, "r+b") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size == 0:
                return
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                return
            start = _last_line_start(handle, size)
            handle.seek(start)
            tail = handle.read()
            if _is_json_object(tail):
                handle.write(b"\n")
            else:
                handle.truncate(start)
            handle.flush()
            os.fsync(handle.fileno())

    def append_many(self, records: Iterable[dict]) -> None:
        self.repair_tail()
        with open(self.path, "a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        kill_point("journal.append")

    # Under `accelerate launch` each rank appends to a file of its own (`journal.rank1.jsonl`): appends from several
    # processes to one file could interleave. Rank 0 merges them into this journal.

    def rank_path(self, rank: int) -> Path:
        return self.path.with_name(f"{self.path.stem}.rank{rank}{self.path.suffix}")

    def for_rank(self, rank: int, world_size: int) -> Journal:
        """The journal a rank appends to: this one in a single process, else the rank's own file beside it."""
        return self if world_size == 1 else Journal(self.rank_path(rank), self.key)

    def rank_files(self) -> list[Path]:
        return sorted(self.path.parent.glob(f"{self.path.stem}.rank*{self.path.suffix}"))

    def merge_rank_files(self) -> int:
        """Append the records of every rank's file that this journal lacks, then delete those files; returns how
        many were added. A torn tail in a rank's file (a killed rank) is skipped; a kill during the merge leaves
        the rank files in place, and merging them again adds nothing twice."""
        done = set(self.done())
        added = 0
        for part in self.rank_files():
            new = [r for r in Journal(part, self.key).records() if self.key in r and r[self.key] not in done]
            self.append_many(new)
            done.update(r[self.key] for r in new)
            added += len(new)
            part.unlink()
        return added

    def compact(self) -> list[dict]:
        """Rewrite the journal atomically with one record per key, sorted by key, and return those records: its
        bytes then depend on what was done, not on the order or the processes that did it."""
        records = sorted(self.done().values(), key=lambda r: r[self.key])
        atomic_write_jsonl(self.path, records)
        return records


def _last_line_start(handle, size: int, block: int = 1 << 16) -> int:
    """Offset just after the last newline of a binary file (0 if it has none), reading backwards in blocks."""
    end = size
    while end > 0:
        start = max(0, end - block)
        handle.seek(start)
        found = handle.read(end - start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        end = start
    return 0


def _is_json_object(data: bytes) -> bool:
    try:
        return isinstance(json.loads(data.decode("utf-8")), dict)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False


def read_manifest(stage_dir: str | Path) -> dict | None:
    path = Path(stage_dir) / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
