"""The engine behind :func:`minidl.data.extract.extract_archive` (read that module's docstring first).

* :class:`_Plan` (pass 1) keeps a virtual view of the target folder: the entries the archive created so far laid
  over what is on disk, resolves every member's path in it as the kernel would, and adds up the sizes.
* :class:`_Writer` (passes 2 and 3) streams the files into hidden temporary files next to their destinations,
  counting the bytes, then renames them into place; :meth:`_Writer.undo` removes what pass 2 made.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import IO, NamedTuple

RATIO_FLOOR = 1 << 20
ENTRY_SIZE = 4096  # what every entry counts toward the size limits, on top of its bytes (see extract.py)
_CHUNK = 1 << 20
_MAX_HOPS = 40  # symlinks followed while resolving one path (Linux's MAXSYMLINKS)


class UnsafeArchiveError(ValueError):
    """An archive member would be written outside the target folder, is a device file or a dangling or escaping
    link, or the archive expands past the size limits. Nothing was extracted."""


class _Node(NamedTuple):
    kind: str  # "dir", "file" or "link"
    link: str = ""  # a link's target, as stored
    size: int = 0  # a file's size


class _Member(NamedTuple):
    name: str  # the path as stored in the archive
    kind: str  # "dir", "file", "symlink", "hardlink" or "special"
    size: int
    link: str  # a link's target, as stored
    mode: int | None  # permission bits of a file (None: the default)
    open: Callable[[], IO[bytes]]  # the member's bytes


def _describe(m: _Member) -> str:
    word = {"dir": "folder", "file": "file", "symlink": "symlink", "hardlink": "hard link"}[m.kind]
    return f"{word} to {m.link!r}" if m.kind in ("symlink", "hardlink") else word


def _fold(comps: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(c.casefold() for c in comps)


class _Refused(Exception):
    """Internal: why a path cannot be resolved (turned into an UnsafeArchiveError naming the member)."""


_DIR = _Node("dir")


class _Plan:
    """Pass 1: the virtual view of the target, the actions to take, and the running size."""

    def __init__(
        self,
        archive: Path,
        target: str,
        max_total_size: int | None,
        max_ratio: float | None,
        max_members: int | None = None,
    ) -> None:
        self.archive, self.target = archive, target
        self.max_total_size, self.max_ratio, self.max_members = max_total_size, max_ratio, max_members
        self.members = 0  # entries planned so far, folders and links included
        self.archive_size = max(1, archive.stat().st_size)
        self.nodes: dict[tuple[str, ...], _Node] = {}
        self.folded: dict[tuple[str, ...], tuple[str, ...]] = {}  # case-folded path -> the archive's entry
        self.actions: list[tuple[str, tuple[str, ...], _Member, object]] = []
        self.last_writer: dict[tuple[str, ...], int] = {}  # path -> index of the action whose bytes are there
        self.links: list[tuple[tuple[str, ...], _Member]] = []
        self.total = 0
        existing = target
        while not os.path.isdir(existing):
            existing = os.path.dirname(existing)
        try:
            self.name_max = os.pathconf(existing, "PC_NAME_MAX")
        except (OSError, ValueError, AttributeError):  # pragma: no cover - no pathconf (Windows)
            self.name_max = 255

    # ------------------------------------------------------------------------------------------ the virtual view
    def disk(self, comps: tuple[str, ...]) -> str:
        return os.path.join(self.target, *comps)

    def lookup(self, comps: tuple[str, ...]) -> _Node | None:
        """What is at ``comps`` (a path free of symlinks): an entry of the archive, else what is on disk."""
        if not comps:
            return _DIR
        if comps in self.nodes:
            return self.nodes[comps]
        twin = self.folded.get(_fold(comps))
        if twin is not None and self.nodes[twin].kind == "link":  # one entry on a case-insensitive file system
            raise _Refused(
                f"names {'/'.join(comps)!r}, which differs only in case from the symlink {'/'.join(twin)!r} (expected "
                "distinct names: the two are one entry on a case-insensitive file system)"
            )
        try:
            st = os.lstat(self.disk(comps))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:  # a name too long for the file system, ...
            raise _Refused(f"cannot be checked on disk ({exc.strerror}: {'/'.join(comps)!r})") from None
        if stat.S_ISLNK(st.st_mode):
            return _Node("link", os.readlink(self.disk(comps)))
        return _DIR if stat.S_ISDIR(st.st_mode) else _Node("file", size=st.st_size)

    def resolve(self, parts: list[str], follow_last: bool, base: tuple[str, ...] = ()) -> tuple[tuple[str, ...], bool]:
        """Resolve ``base/parts`` as the kernel would; returns the symlink-free path and whether every component
        along the way exists. Raises _Refused when the path leaves the target or loops."""
        todo, comps, hops, exists, via = list(reversed(parts)), list(base), 0, True, ""
        while todo:
            part = todo.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if not comps:
                    raise _Refused(f"resolves outside {self.target}{via}")
                comps.pop()
                continue
            node = self.lookup((*comps, part))
            if node is not None and node.kind == "link" and (todo or follow_last):
                hops += 1
                if hops > _MAX_HOPS:
                    raise _Refused(f"runs into a loop of symlinks (more than {_MAX_HOPS} followed){via}")
                where = "/".join((*comps, part))
                on_disk = (*comps, part) not in self.nodes
                via = f" (through the symlink {where!r} -> {node.link!r}{' already in the target' if on_disk else ''})"
                link = node.link
                if os.path.isabs(link):  # only links already on disk get here; the archive's are refused earlier
                    if not (link + os.sep).startswith(self.target + os.sep):
                        raise _Refused(f"resolves outside {self.target}{via}")
                    comps, link = [], link[len(self.target) :]  # no normpath: '..' after a link is physical
                todo.extend(reversed(link.split("/")))
                continue
            if node is None:
                exists = False
            elif node.kind == "file" and todo:
                raise _Refused(f"passes through the file {'/'.join((*comps, part))!r} (expected a folder there)")
            comps.append(part)
        return tuple(comps), exists

    # ----------------------------------------------------------------------------------------------- the members
    def refuse(self, member: _Member, why: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(
            f"extract_archive: {self.archive}: member {member.name!r} {why}; refusing the whole archive, nothing was "
            "extracted"
        )

    def add(self, m: _Member) -> None:
        self.members += 1
        if self.max_members is not None and self.members > self.max_members:
            raise self.refuse(
                m,
                f"is entry number {self.members:,}, over max_members={self.max_members:,} (every entry, even an empty "
                "file, takes an inode: an inode bomb?): pass a larger max_members (or None) if you trust this archive",
            )
        name = m.name
        if name.startswith(("/", "\\")) or os.path.isabs(name):
            raise self.refuse(m, f"has an absolute path (expected a path relative to {self.target})")
        drive = os.path.splitdrive(name)[0]  # always '' on POSIX, where 'a:notes.txt' is a plain name
        if drive:
            raise self.refuse(m, f"starts with the Windows drive {drive!r} (expected a path relative to {self.target})")
        if m.kind == "special":
            raise self.refuse(m, "is a device file or FIFO (expected a file, folder or link)")
        parts = name.rstrip("/").split("/")
        longest = max(len(part.encode("utf-8", "surrogateescape")) for part in parts)
        if longest > self.name_max:
            raise self.refuse(m, f"has a name of {longest} bytes (expected at most {self.name_max})")
        try:
            if m.kind == "dir":
                comps, _ = self.resolve(parts, follow_last=True)
                node = self.lookup(comps)
                if node is not None and node.kind != "dir":
                    raise _Refused(f"would replace the file {'/'.join(comps)!r} (expected a folder or nothing there)")
                self.make_dirs(comps)
                self.actions.append(("dir", comps, m, None))
                self.count(m, 0, self.total)  # a folder has no bytes, but it is an entry
                return
            if parts[-1] in ("", ".", ".."):
                raise _Refused("ends in '.' or '..' (expected a name)")
            parent, _ = self.resolve(parts[:-1], follow_last=True)
            if (self.lookup(parent) or _DIR).kind == "file":
                raise _Refused(f"passes through the file {'/'.join(parent)!r} (expected a folder there)")
            comps = (*parent, parts[-1])
            node = self.lookup(comps)
            if node is not None and node.kind == "dir":
                raise _Refused(
                    f"would replace the folder {'/'.join(comps)!r} (expected a file, a link or nothing there)"
                )
            if m.kind == "symlink":
                if not m.link:
                    raise _Refused("has an empty target (expected a path relative to the link's folder)")
                if os.path.isabs(m.link) or m.link.startswith("\\"):
                    raise _Refused("points to an absolute path (expected a path relative to the link's folder)")
                self.resolve(m.link.split("/"), follow_last=True, base=parent)  # leaves the target now?
                self.set(comps, _Node("link", m.link))
                self.last_writer.pop(comps, None)
                self.links.append((comps, m))
                source: object = None
                size = 0
            elif m.kind == "hardlink":
                src, exists = self.resolve(m.link.split("/"), follow_last=True)
                src_node = self.lookup(src)
                if not exists or src_node is None or src_node.kind != "file":
                    raise _Refused("does not point to a file of the archive or the target")
                source = self.last_writer.get(src, self.disk(src))  # an action's bytes, or a file already on disk
                size = src_node.size
                self.set(comps, _Node("file", size=size))
            else:
                source, size = None, m.size
                self.set(comps, _Node("file", size=size))
            self.make_dirs(parent)
        except _Refused as why:
            raise self.refuse(m, f"({_describe(m)}) {why}") from None
        if m.kind != "symlink":
            self.last_writer[comps] = len(self.actions)
        self.actions.append((m.kind, comps, m, source))
        self.count(m, size, self.total + size)
        self.total += size

    def wrote(self, path: str) -> bool:
        """Whether the archive put an entry at ``path`` (a real path), replacing what was there."""
        if not path.startswith(self.target + os.sep):
            return False
        return tuple(path[len(self.target) + 1 :].split(os.sep)) in self.nodes

    def make_dirs(self, comps: tuple[str, ...]) -> None:
        """Record the folders ``comps`` and its parents that do not exist yet (the writer will make them)."""
        for i in range(1, len(comps) + 1):
            if self.lookup(comps[:i]) is None:
                self.set(comps[:i], _DIR)

    def set(self, comps: tuple[str, ...], node: _Node) -> None:
        """Record the archive's entry at ``comps``; a symlink may not share its name, up to case, with another."""
        twin = self.folded.setdefault(_fold(comps), comps)
        if twin != comps and "link" in (node.kind, self.nodes[twin].kind):
            raise _Refused(
                f"differs only in case from {'/'.join(twin)!r} (expected distinct names: the two would be one entry, "
                "a symlink, on a case-insensitive file system)"
            )
        self.nodes[comps] = node

    def count(self, m: _Member, size: int, data: int, entries: int | None = None) -> None:
        """Refuse when the archive would expand past a limit once ``m`` is written: ``data`` bytes in all, and
        ``entries`` entries (default: those planned so far) at :data:`ENTRY_SIZE` bytes each."""
        entries = self.members if entries is None else entries
        total = data + entries * ENTRY_SIZE
        what = (
            f"({size:,} bytes) brings the extracted size to {total:,} bytes ({data:,} of data and {entries:,} "
            f"{'entry' if entries == 1 else 'entries'} at {ENTRY_SIZE:,} each)"
        )
        if self.max_total_size is not None and total > self.max_total_size:
            raise self.refuse(
                m,
                f"{what}, over max_total_size={self.max_total_size:,}: pass a larger max_total_size (or None) if you "
                "trust this archive",
            )
        if self.max_ratio is not None and total > RATIO_FLOOR and total > self.max_ratio * self.archive_size:
            raise self.refuse(
                m,
                f"{what}, {total / self.archive_size:,.0f} times the archive's {self.archive_size:,} bytes, over "
                f"max_ratio={self.max_ratio:g} (a decompression or inode bomb?): pass a larger max_ratio (or None) "
                "if you trust this archive",
            )

    def check_links(self) -> None:
        """Every symlink the archive leaves behind resolves, in the final state, to an entry inside the target; and
        no symlink already in the target that resolved inside it (or nowhere) resolves outside it once the archive's
        entries are in place (``a -> x/..`` on disk, then an archive adding ``x -> .``)."""
        before = _Plan(self.archive, self.target, None, None)  # the disk alone
        for dirpath, dirnames, filenames in os.walk(self.target):  # links are listed, never followed
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                comps = tuple(os.path.relpath(path, self.target).split(os.sep))
                if comps in self.nodes or not os.path.islink(path):
                    continue
                try:
                    before.resolve(list(comps), follow_last=True)
                except _Refused:
                    continue  # it pointed outside already: the user's link, which no member is written through
                try:
                    self.resolve(list(comps), follow_last=True)
                except _Refused as why:
                    raise UnsafeArchiveError(
                        f"extract_archive: {self.archive}: the symlink {'/'.join(comps)!r} -> {os.readlink(path)!r} "
                        f"already in the target {why} once the archive is extracted; refusing the whole archive, "
                        "nothing was extracted"
                    ) from None
        for comps, m in self.links:
            if self.nodes.get(comps) != _Node("link", m.link):
                continue  # replaced by a later member
            try:
                resolved, exists = self.resolve(list(comps), follow_last=True)
            except _Refused as why:
                raise self.refuse(m, f"({_describe(m)}) {why} once the archive is extracted") from None
            if not exists or self.lookup(resolved) is None:
                raise self.refuse(
                    m,
                    f"({_describe(m)}) points to nothing: {m.link!r} exists neither in the archive "
                    f"nor in {self.target} (expected an existing entry inside the target)",
                )


# ----------------------------------------------------------------------------------------------- passes 2 and 3
class _Writer:
    def __init__(self, plan: _Plan) -> None:
        self.plan = plan
        self.temps: list[tuple[str, str]] = []  # (temporary, destination), in archive order
        self.made_dirs: list[str] = []
        self.by_action: dict[int, str] = {}  # action index -> its temporary file
        self.written = 0

    def mkdirs(self, comps: tuple[str, ...]) -> str:
        for i in range(1, len(comps) + 1):
            path = self.plan.disk(comps[:i])
            if not os.path.isdir(path):
                os.mkdir(path)
                self.made_dirs.append(path)
        path = self.plan.disk(comps)
        if os.path.realpath(path) != path:  # second line of defence: the disk changed since the plan
            raise UnsafeArchiveError(f"extract_archive: {path} became a symlink during the extraction; stopped")
        return path

    def temp(self, comps: tuple[str, ...]) -> str:
        """A fresh hidden name in the destination's folder (made if needed), renamed onto it at the commit."""
        name = os.path.join(self.mkdirs(comps[:-1]), f".minidl-extract-{secrets.token_hex(8)}")
        self.temps.append((name, self.plan.disk(comps)))
        return name

    def copy(self, m: _Member, src: IO[bytes], dst: IO[bytes]) -> None:
        size = 0
        for chunk in iter(lambda: src.read(_CHUNK), b""):
            size += len(chunk)
            self.written += len(chunk)
            self.plan.count(m, size, self.written)  # the true sizes, as streamed: declared sizes can lie
            dst.write(chunk)

    def write(self) -> None:
        missing, path = [], self.plan.target  # the target folder itself, and its missing parents
        while not os.path.isdir(path):
            missing.append(path)
            path = os.path.dirname(path)
        for path in reversed(missing):
            os.mkdir(path)
            self.made_dirs.append(path)
        for index, (kind, comps, m, source) in enumerate(self.plan.actions):
            if kind == "dir":
                self.mkdirs(comps)
            elif kind == "file":
                name = self.temp(comps)
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
                with m.open() as src, open(fd, "wb") as dst:
                    self.copy(m, src, dst)
                if m.mode is not None:
                    os.chmod(name, m.mode)
                self.by_action[index] = name
            elif kind == "hardlink":
                name = self.temp(comps)
                origin = self.by_action[source] if isinstance(source, int) else str(source)
                try:
                    os.link(origin, name, follow_symlinks=False)
                except OSError:  # a file system without hard links: a copy
                    shutil.copy2(origin, name)
                self.by_action[index] = name
            else:  # symlink
                name = self.temp(comps)
                os.symlink(m.link, name)

    def commit(self) -> None:
        """Rename every temporary entry onto its destination. Nothing here depends on the archive any more; should
        the disk fail now, the entries not yet renamed are removed and the error says so."""
        for done, (name, destination) in enumerate(self.temps):
            try:
                os.replace(name, destination)
            except OSError as exc:
                self.temps, self.made_dirs = self.temps[done:], []
                self.undo()
                raise OSError(
                    exc.errno,
                    f"extract_archive: renaming into {destination} failed ({exc.strerror}) after {done} of "
                    f"{done + len(self.temps)} entries were in place; the rest were removed",
                ) from exc
        self.temps = []

    def undo(self) -> None:
        for name, _ in self.temps:
            if os.path.lexists(name):
                os.remove(name)
        for path in reversed(self.made_dirs):
            try:
                os.rmdir(path)
            except OSError:
                pass


def _run(plan: _Plan, members: list[_Member], second_line: Callable[[], None] | None = None) -> None:
    """Plan every member (pass 1), then write (pass 2) and commit (pass 3); undo pass 2 on any failure."""
    for m in members:
        plan.add(m)
    plan.check_links()
    if second_line is not None:
        second_line()
    writer = _Writer(plan)
    try:
        writer.write()
    except BaseException:
        writer.undo()
        raise
    writer.commit()
