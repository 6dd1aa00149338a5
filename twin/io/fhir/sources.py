"""Where FHIR resources come from: bundle files, single resources, NDJSON bulk exports.

:func:`list_files` enumerates the inputs (a file, a folder searched recursively, or a
list of them);
:func:`plan_tasks` turns them into units of work (:class:`Task`), and
:func:`read_task` yields ``(entry index, resource or error, fullUrl)`` for one
task.  Errors are values, never exceptions: a truncated gzip, a file that is not
JSON or a bad NDJSON line becomes one reported problem and the rest is kept.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

JSON_SUFFIXES = (".json", ".json.gz")
NDJSON_SUFFIXES = (".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz")
NDJSON_CHUNK_LINES = 5000


@dataclass(frozen=True)
class Task:
    """One unit of work for a worker process.

    ``fmt`` is ``"json"`` (a Bundle or one resource; the worker reads the file) or
    ``"ndjson"`` (``lines`` holds a chunk of raw lines, the first being line
    ``first_line`` counted from 0).  ``error`` reports a problem met while reading
    the file after these lines (e.g. a truncated gzip); ``final`` marks the last
    task of a file (for progress bars).
    """

    file: str
    fmt: str
    first_line: int = 0
    lines: tuple[bytes, ...] | None = None
    error: str | None = None
    compressed_bytes: int = 0
    final: bool = True


def input_format(path: Path) -> str | None:
    """``"json"``, ``"ndjson"`` or None (not a FHIR file) from the file name."""
    name = path.name.lower()
    if name.endswith(NDJSON_SUFFIXES):
        return "ndjson"
    if name.endswith(JSON_SUFFIXES):
        return "json"
    return None


def list_files(
    path: str | os.PathLike | Sequence[str | os.PathLike],
) -> tuple[list[Path], list[Path]]:
    """FHIR files under ``path`` in a stable order, and the files ignored there.

    ``path`` is a file, a folder (searched recursively) or a list of files and
    folders, read in the order given; a file reached twice (listed and inside a
    listed folder) is read once.  A file given explicitly is always read (as NDJSON
    if so named, else as JSON); in a folder only ``*.json``, ``*.json.gz``,
    ``*.ndjson(.gz)`` and ``*.jsonl(.gz)`` files are read, hidden files are skipped.
    """
    if isinstance(path, str | os.PathLike):
        return _list_one(Path(path))
    roots = [Path(p) for p in path]
    if not roots:
        raise ValueError("no FHIR input given: the list of files and folders is empty")
    found, ignored, seen = [], [], set()
    for root in roots:
        files, skipped = _list_one(root)
        for p in files:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                found.append(p)
        ignored += skipped
    return found, ignored


def _list_one(root: Path) -> tuple[list[Path], list[Path]]:
    if not root.exists():
        raise FileNotFoundError(f"no such file or folder: {root}")
    if root.is_file():
        return [root], []
    found, ignored = [], []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        (found if input_format(p) else ignored).append(p)
    return found, ignored


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if path.name.lower().endswith(".gz") or raw[:2] == b"\x1f\x8b":
        return gzip.decompress(raw)
    return raw


def describe_read_error(exc: BaseException) -> str:
    """A readable reason for a failure to read/decompress a file."""
    if isinstance(exc, EOFError):
        return f"truncated gzip file ({exc})"
    if isinstance(exc, gzip.BadGzipFile | zlib.error):
        return f"corrupt gzip file ({exc})"
    if isinstance(exc, orjson.JSONDecodeError):
        return f"invalid JSON ({exc})"
    if isinstance(exc, OSError):
        return f"cannot read file ({exc.strerror or exc})"
    return f"{type(exc).__name__}: {exc}"


def plan_tasks(files: list[Path]) -> Iterator[Task]:
    """Tasks for the given files, in order; NDJSON files are split into line chunks."""
    for path in files:
        fmt = input_format(path) or "json"
        size = path.stat().st_size if path.exists() else 0
        if fmt == "json":
            yield Task(str(path), "json", compressed_bytes=size)
            continue
        yield from _ndjson_tasks(path, size)


def _gzip_lines(path: Path) -> Iterator[bytes]:
    """Lines of a gzip file, streamed; a truncated file yields every complete line first,
    then raises EOFError (``gzip.open`` loses its read-ahead buffer in that case)."""
    decomp = zlib.decompressobj(wbits=31)
    pending = b""
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            data = decomp.decompress(chunk)
            while decomp.eof and decomp.unused_data:  # concatenated gzip members
                rest = decomp.unused_data
                decomp = zlib.decompressobj(wbits=31)
                data += decomp.decompress(rest)
            lines = (pending + data).split(b"\n")
            pending = lines.pop()
            for line in lines:
                yield line + b"\n"
    if not decomp.eof:
        raise EOFError("compressed file ended before the end-of-stream marker was reached")
    if pending:
        yield pending


def _ndjson_tasks(path: Path, size: int) -> Iterator[Task]:
    chunk: list[bytes] = []
    first = 0
    n = 0
    error = None
    gz = path.name.lower().endswith(".gz")
    try:
        with contextlib.ExitStack() as stack:
            lines = _gzip_lines(path) if gz else stack.enter_context(open(path, "rb"))
            for line in lines:
                chunk.append(line)
                n += 1
                if len(chunk) >= NDJSON_CHUNK_LINES:
                    yield Task(str(path), "ndjson", first, tuple(chunk), final=False)
                    first, chunk = n, []
    except (OSError, EOFError, zlib.error) as exc:
        error = describe_read_error(exc)
        if chunk and not chunk[-1].endswith(b"\n"):
            chunk.pop()  # the last, cut-off line is part of the damage
            n -= 1
    yield Task(str(path), "ndjson", first, tuple(chunk), error, compressed_bytes=size)


#: (entry index, resource dict or (category, reason) of a bad entry, fullUrl)
Entry = tuple[int, dict | tuple[str, str], str | None]


def read_task(task: Task) -> tuple[Iterator[Entry], int, str | None]:
    """Open a task: ``(entries, uncompressed bytes, file-level error or None)``.

    ``entries`` yields ``(entry index, resource dict or (category, reason), fullUrl)``.  For a
    Bundle the index is the position in ``Bundle.entry`` (nested Bundles are
    flattened under their parent's index); for a single-resource file it is 0; for
    NDJSON it is the line number counted from 0.  A file that cannot be read at all
    gives no entries and the reason.
    """
    if task.fmt == "ndjson":
        lines = task.lines or ()
        return _ndjson_entries(task.first_line, lines), sum(map(len, lines)), task.error
    try:
        raw = _read_bytes(Path(task.file))
        doc = orjson.loads(raw)
    except (OSError, EOFError, zlib.error, orjson.JSONDecodeError) as exc:
        return iter(()), 0, describe_read_error(exc)
    if not isinstance(doc, dict):
        return iter(()), len(raw), f"not a FHIR resource or Bundle (JSON {type(doc).__name__})"
    if doc.get("resourceType") == "Bundle":
        return _bundle_entries(doc, None), len(raw), None
    return iter([(0, doc, None)]), len(raw), None


def _ndjson_entries(first_line: int, lines: tuple[bytes, ...]) -> Iterator[Entry]:
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        line = line.rstrip()
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            # the parser's own line numbers count within this one line: give a column
            where = f"column {exc.pos + 1}" if exc.pos < len(line) else "the end of the line"
            yield (
                first_line + i,
                ("invalid-json", f"invalid JSON line ({exc.msg} at {where})"),
                None,
            )
            continue
        if isinstance(doc, dict):
            yield first_line + i, doc, None
        else:
            yield first_line + i, ("not-a-resource", "line is not a JSON object"), None


def _bundle_entries(bundle: dict, outer_index: int | None) -> Iterator[Entry]:
    entries = bundle.get("entry")
    if entries is None:
        return
    if not isinstance(entries, list):
        yield outer_index or 0, ("not-a-resource", "Bundle.entry is not a list"), None
        return
    for i, entry in enumerate(entries):
        index = i if outer_index is None else outer_index
        if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
            yield index, ("not-a-resource", "Bundle entry without a resource"), None
            continue
        resource = entry["resource"]
        if resource.get("resourceType") == "Bundle":
            yield from _bundle_entries(resource, index)
            continue
        full_url = entry.get("fullUrl")
        yield index, resource, full_url if isinstance(full_url, str) else None
