"""`--source manifests:DIR`: a watched directory of YAML manifests.

Every `*.yaml` / `*.yml` file directly in DIR (not in subdirectories, like `kubectl apply
-f DIR`; names starting with "." are editor/temporary files and skipped) holds one or more
YAML documents, each a `v1 Service`, a `discovery.k8s.io/v1 EndpointSlice`, or a `List` of
them (what `kubectl get svc,endpointslices -o yaml` prints).

Changes are followed with inotify (close-after-write, renames, deletes: an editor's atomic
save and a ConfigMap volume's `..data` swap both work); without inotify the directory is
polled by stat. Only the objects that changed reach the translator, and only the services
they touch reach the sink.

Bad input, decided and why:
- Each document is split off and parsed on its own, so a broken document never hides its
  valid siblings in the same file.
- An object that parses but is invalid is refused like the API server refuses an invalid
  update: the object's previous good version stays in force until it is fixed.
- A document that cannot be read at all (broken YAML, no name) could have been any
  object. While a file has such a document, objects that vanished from the file are NOT
  deleted: a half-saved file must not tear down live services. Fixing the file (or deleting
  it) applies the deletions.
- The same object defined in two files: the file that claimed it first wins; the other is
  refused until the first lets go of it.
- The directory itself vanishing keeps the state (an unmount is not a deletion); deleting
  the files one by one deletes their objects.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kmesh_node.model import LbPolicy, Sink
from kmesh_node.sources import fastyaml
from kmesh_node.sources.gcpause import gc_paused
from kmesh_node.sources.store import ServiceStore, reject
from kmesh_node.translate import (
    Ignored,
    InvalidObject,
    ObjectId,
    ServiceSpec,
    SliceSpec,
    Spec,
    object_id,
    parse_object,
)

log = logging.getLogger(__name__)

SUFFIXES = (".yaml", ".yml")
# A line that starts a new YAML document. Splitting on it ourselves (instead of
# yaml.load_all) lets one broken document fail alone.
_DOC_SEPARATOR = re.compile(r"^---(?=[ \t]|$)", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class _Item:
    """One object found in a document: a spec, or why it was refused."""

    oid: ObjectId | None
    spec: Spec | None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class _Broken:
    """A document that is not YAML at all (cached by text, so the line is relative)."""

    problem: str
    line: int | None = None  # 0-based, within the document
    column: int | None = None

    def reason(self, first_line: int) -> str:
        where = ""
        if self.line is not None and self.column is not None:
            where = f" at line {first_line + self.line} column {self.column + 1}"
        return f"not valid YAML{where}: {self.problem}; fix the syntax"


_Outcome = tuple[_Item, ...] | _Broken


@dataclass(slots=True)
class _FileState:
    stamp: tuple[int, int, int] | None = None  # (mtime_ns, size, inode) when last read
    outcomes: dict[str, _Outcome] = field(default_factory=dict)  # document text -> result
    objects: dict[ObjectId, Spec] = field(default_factory=dict)  # last good, by identity


def split_documents(text: str) -> list[tuple[int, str]]:
    """The YAML documents of a file: (line of the file where each starts, its text).

    A leading empty part (a file that starts with "---") is dropped.
    """
    parts: list[tuple[int, str]] = []
    line, start = 1, 0
    for match in _DOC_SEPARATOR.finditer(text):
        chunk = text[start : match.start()]
        parts.append((line, chunk))
        line += chunk.count("\n")
        start = match.end()
    parts.append((line, text[start:]))
    if not parts[0][1].strip():
        del parts[0]
    return parts


def _items_of(doc: Any) -> list[Any]:
    """The objects of a document: itself, or the items of a `kind: *List`."""
    if (
        isinstance(doc, Mapping)
        and isinstance(doc.get("kind"), str)
        and doc["kind"].endswith("List")
        and isinstance(doc.get("items"), list)
    ):
        return doc["items"]
    return [doc]


def parse_document(text: str) -> _Outcome:
    try:
        doc = fastyaml.load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if mark is None:
            return _Broken(problem)
        return _Broken(problem, mark.line, mark.column)
    if doc is None:
        return ()
    items = []
    for obj in _items_of(doc):
        oid = object_id(obj)
        try:
            items.append(_Item(oid, parse_object(obj)))
        except InvalidObject as exc:
            items.append(_Item(oid, None, exc.reason))
    return tuple(items)


def _label(document: int, item: int, items: int) -> str:
    return f"document {document}" if items == 1 else f"document {document} item {item}"


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """(mtime, size, inode) of a regular file (symlinks followed); None otherwise."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class ManifestSource:
    """Follows one directory; `run` blocks until `stop` is set."""

    def __init__(
        self,
        directory: Path,
        sink: Sink,
        default_policy: LbPolicy,
        *,
        poll_interval: float = 1.0,
        use_inotify: bool = True,
    ) -> None:
        self.directory = directory
        self._sink = sink
        self._store = ServiceStore(sink, default_policy)
        self._poll_interval = poll_interval
        self._use_inotify = use_inotify
        self._files: dict[str, _FileState] = {}
        self._claims: dict[ObjectId, list[str]] = {}  # object -> files defining it, first wins
        self._dir_missing_logged = False

    # --- the loop --------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        inotify = self._open_inotify()
        try:
            self.rescan()
            self._sink.synced()
            while not stop.is_set():
                if inotify is None:
                    stop.wait(self._poll_interval)
                    if not stop.is_set():
                        self.rescan()
                    continue
                if not self._follow_events(inotify, stop):
                    inotify.close()
                    inotify = None
                    log.warning(
                        "lost the inotify watch on %s; polling every %.1fs until it is back",
                        self.directory,
                        self._poll_interval,
                    )
                    inotify = self._wait_for_directory(stop)
        finally:
            if inotify is not None:
                inotify.close()

    def _open_inotify(self) -> Any:
        if not self._use_inotify:
            return None
        try:
            from inotify_simple import INotify, flags
        except ImportError:
            log.warning("inotify_simple is not installed; polling %s", self.directory)
            return None
        try:
            inotify = INotify()
            mask = (
                flags.CLOSE_WRITE
                | flags.MOVED_TO
                | flags.MOVED_FROM
                | flags.DELETE
                | flags.DELETE_SELF
                | flags.MOVE_SELF
            )
            inotify.add_watch(str(self.directory), mask)
        except OSError as exc:
            log.warning(
                "cannot watch %s with inotify (%s); polling every %.1fs instead "
                "(raise fs.inotify.max_user_instances/max_user_watches to get inotify back)",
                self.directory,
                exc,
                self._poll_interval,
            )
            return None
        return inotify

    def _follow_events(self, inotify: Any, stop: threading.Event) -> bool:
        """Apply inotify events until `stop`; False when the watch is gone."""
        from inotify_simple import flags

        while not stop.is_set():
            events = inotify.read(timeout=100)
            if not events:
                continue
            names: set[str] = set()
            full_rescan = False
            for ev in events:
                if ev.mask & (flags.IGNORED | flags.DELETE_SELF | flags.MOVE_SELF):
                    return False
                if ev.mask & flags.Q_OVERFLOW or ev.name.startswith(".."):
                    # Overflow: events were lost. "..data": a ConfigMap volume swapped
                    # every file at once through a symlink.
                    full_rescan = True
                elif ev.name.endswith(SUFFIXES) and not ev.name.startswith("."):
                    names.add(ev.name)
            if full_rescan:
                self.rescan()
                continue
            with gc_paused():  # a burst may be thousands of files (a `cp` of a directory)
                for name in sorted(names):
                    self.load_file(self.directory / name)  # gone or not a file: removed
                self._store.flush()
        return True

    def _wait_for_directory(self, stop: threading.Event) -> Any:
        while not stop.wait(self._poll_interval):
            if self.directory.is_dir():
                inotify = self._open_inotify()
                self.rescan()
                if inotify is not None:
                    return inotify
        return None

    # --- scanning --------------------------------------------------------------------

    def _list_files(self) -> dict[str, tuple[int, int, int]] | None:
        try:
            entries = list(os.scandir(self.directory))
        except OSError as exc:
            if not self._dir_missing_logged:
                log.warning(
                    "cannot list %s (%s); keeping the services already loaded until it is "
                    "back (delete the files to delete services)",
                    self.directory,
                    exc,
                )
                self._dir_missing_logged = True
            return None
        self._dir_missing_logged = False
        found = {}
        for entry in entries:
            if entry.name.startswith(".") or not entry.name.endswith(SUFFIXES):
                continue
            try:
                if not entry.is_file():
                    continue
                st = entry.stat()  # follows symlinks: a ConfigMap swap changes the inode
            except OSError:
                continue
            found[entry.path] = (st.st_mtime_ns, st.st_size, st.st_ino)
        return found

    def rescan(self) -> None:
        """Compare the directory with what was loaded; load what changed; flush."""
        found = self._list_files()
        if found is None:
            return
        with gc_paused():
            for path in sorted(set(self._files) - set(found)):
                self.remove_file(Path(path))
            for path in sorted(found):
                state = self._files.get(path)
                if state is None or state.stamp != found[path]:
                    self.load_file(Path(path), found[path])
            self._store.flush()

    # --- one file --------------------------------------------------------------------

    def load_file(self, path: Path, stamp: tuple[int, int, int] | None = None) -> None:
        """Read one file and apply what changed in it (the caller flushes the store)."""
        where = str(path)
        if stamp is None:
            stamp = _stamp(path)
            if stamp is None:  # deleted, renamed away, or not a regular file
                self.remove_file(path)
                return
        state = self._files.setdefault(where, _FileState())
        state.stamp = stamp
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            self.remove_file(path)
            return
        except (OSError, UnicodeDecodeError) as exc:
            reject(
                self._sink,
                where,
                "file",
                f"cannot read it ({exc}); its last good objects stay in force until it is "
                "readable UTF-8 text",
            )
            return
        old_outcomes = state.outcomes
        outcomes: dict[str, _Outcome] = {}
        new_objects: dict[ObjectId, Spec] = {}
        complete = True
        for n, (first_line, doc_text) in enumerate(split_documents(text), 1):
            # Only documents whose text is new are parsed, and only they report problems
            # (an unchanged broken document was reported when it appeared).
            fresh = False
            outcome = outcomes.get(doc_text)
            if outcome is None:
                outcome = old_outcomes.get(doc_text)
                if outcome is None:
                    outcome = parse_document(doc_text)
                    fresh = True
                outcomes[doc_text] = outcome
            if isinstance(outcome, _Broken):
                complete = False
                if fresh:
                    reject(self._sink, where, f"document {n}", outcome.reason(first_line))
                continue
            for i, item in enumerate(outcome, 1):
                if item.oid is None:
                    complete = False
                    if fresh:
                        reject(self._sink, where, _label(n, i, len(outcome)), item.reason)
                    continue
                if item.spec is None:
                    if fresh:
                        kept = " (its previous version stays in force)" * (
                            item.oid in state.objects
                        )
                        reject(self._sink, where, str(item.oid), item.reason + kept)
                    if item.oid in state.objects:
                        new_objects[item.oid] = state.objects[item.oid]
                    continue
                if item.oid in new_objects:
                    if fresh:
                        reject(
                            self._sink,
                            where,
                            str(item.oid),
                            f"defined twice in this file ({_label(n, i, len(outcome))} is "
                            "the later one); the "
                            "first definition is used: remove one",
                        )
                    continue
                new_objects[item.oid] = item.spec
                if fresh:
                    for warning in getattr(item.spec, "warnings", ()):
                        reject(self._sink, where, str(item.oid), warning)
        if not complete:
            for oid, spec in state.objects.items():
                new_objects.setdefault(oid, spec)
        state.outcomes = outcomes
        self._apply_file(where, state, new_objects)

    def remove_file(self, path: Path) -> None:
        state = self._files.pop(str(path), None)
        if state is None:
            return
        for oid in state.objects:
            self._unclaim(oid, str(path))

    def _apply_file(self, where: str, state: _FileState, objects: dict[ObjectId, Spec]) -> None:
        old = state.objects
        state.objects = objects
        for oid in old:
            if oid not in objects:
                self._unclaim(oid, where)
        for oid, spec in objects.items():
            claimants = self._claims.setdefault(oid, [])
            if where not in claimants:
                claimants.append(where)
                if claimants[0] != where:
                    reject(
                        self._sink,
                        where,
                        str(oid),
                        f"also defined in {claimants[0]}, which keeps it; remove one of the two",
                    )
                    continue
            elif old.get(oid) is spec or old.get(oid) == spec:  # `is`: the cached parse
                continue
            if claimants[0] == where:
                self._apply(spec, where)

    def _unclaim(self, oid: ObjectId, where: str) -> None:
        claimants = self._claims.get(oid)
        if not claimants or where not in claimants:
            return
        was_first = claimants[0] == where
        claimants.remove(where)
        if not was_first:
            return
        if claimants:
            # The next file in line takes the object over.
            self._apply(self._files[claimants[0]].objects[oid], claimants[0])
        else:
            del self._claims[oid]
            if oid.kind == "Service":
                self._store.remove_service(oid.key)
            else:
                self._store.remove_slice(oid.key)

    def _apply(self, spec: Spec, where: str) -> None:
        if isinstance(spec, ServiceSpec):
            self._store.put_service(spec, where)
        elif isinstance(spec, SliceSpec):
            self._store.put_slice(spec)
        elif isinstance(spec, Ignored):
            log.info("ignoring %s in %s: %s", spec.oid, where, spec.reason)
            if spec.oid.kind == "Service":
                self._store.remove_service(spec.oid.key)
            else:
                self._store.remove_slice(spec.oid.key)
