"""Input folders and archive members, listed without surprises: nothing outside the input root is
ever opened, and every entry that is skipped has a quarantine reason.

    for e in tree.children(folder, root_real, ignore):  # sorted by name
        e.kind  # "file" | "dir" | a reason: symlink_outside_root, symlink_loop, dangling_symlink,
                # special_file (named pipe, socket, device), unreadable

A link is resolved with os.path.realpath (no open) and kept only when its target lies inside the
input root (root_real = os.path.realpath of the input as given); a named pipe is never opened
(opening one blocks). Names matching ingest.ignore (".*", "README*", ...) are skipped without a
row only where the caller passes `ignore`: radgpt.ingest.run expanding a folder of mixed inputs; a
reader's own tree (a MIMIC-CXR tree, an OpenI or HL7 folder) accounts for every entry.
`member_problem` does the same for a zip/tar member name: absolute or ".." paths are
`unsafe_path`, link members are never followed.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import posixpath
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

FILE, DIR = "file", "dir"
_SPECIAL = ((stat.S_ISFIFO, "named pipe (FIFO)"), (stat.S_ISSOCK, "socket"),
            (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"))  # fmt: skip
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class Entry:
    name: str
    path: str  # as listed (under the folder given)
    kind: str  # FILE | DIR | a quarantine reason
    detail: str = ""
    real: str = ""  # FILE/DIR: the link's resolved target, else the path itself
    size: int = 0  # bytes of a FILE
    link: bool = False  # a link (inside the root) to a FILE/DIR


def inside(real: str, root_real: str) -> bool:
    return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)


def check(path: str, root_real: str) -> Entry:
    """What `path` is, following a link only when it resolves inside root_real (lstat + realpath,
    no open)."""
    name = os.path.basename(path)
    try:
        st = os.lstat(path)
        real = path
        link = stat.S_ISLNK(st.st_mode)
        if link:
            try:
                real = os.path.realpath(path, strict=True)
            except OSError as e:
                if e.errno == errno.ELOOP:
                    return Entry(name, path, "symlink_loop", "symbolic link loop")
                if e.errno == errno.ENOENT:
                    return Entry(name, path, "dangling_symlink", "link target does not exist")
                raise
            if not inside(real, root_real):
                return Entry(name, path, "symlink_outside_root",
                             f"links outside the input root (to {real}); not opened")  # fmt: skip
            st = os.stat(real)
    except OSError as e:
        return Entry(name, path, "unreadable", f"{type(e).__name__}: {e}"[:300])
    if stat.S_ISREG(st.st_mode):
        return Entry(name, path, FILE, real=real, size=st.st_size, link=link)
    if stat.S_ISDIR(st.st_mode):
        return Entry(name, path, DIR, real=real, link=link)
    return Entry(name, path, "special_file", f"{special(st.st_mode)}; not opened")


def special(mode: int) -> str | None:
    """What a stat mode is when it is neither a regular file nor a folder (e.g. "named pipe")."""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return next((w for test, w in _SPECIAL if test(mode)), "not a regular file")


def ignored(name: str, ignore: Iterable[str]) -> bool:
    return any(fnmatch.fnmatch(name, pat) for pat in ignore)


def children(folder: str, root_real: str, ignore: Iterable[str] = ()) -> list[Entry]:
    """The entries of `folder`, sorted by name, each checked; ignored names left out."""
    with os.scandir(folder) as it:
        names = sorted(e.name for e in it if not ignored(e.name, ignore))
    return [check(os.path.join(folder, n), root_real) for n in names]


def into(e: Entry, ancestors: tuple[str, ...]) -> tuple[str, ...] | Entry:
    """The real paths of the folders down to folder entry `e` (ancestors: those down to its
    parent), or a `symlink_loop` entry when e links back to one of them (walking it never ends)."""
    real = e.real if e.link else os.path.join(ancestors[-1], e.name)
    if real in ancestors:
        return Entry(e.name, e.path, "symlink_loop", "links to a folder that contains it")
    return (*ancestors, real)


def files(top: str) -> Iterator[tuple[str, Entry]]:
    """(path relative to top, entry) for every non-folder entry under `top`, in os.walk's order
    (a folder's entries, then its subfolders, each sorted), following links to folders inside top
    unless they lead back up (`symlink_loop`)."""
    root_real = os.path.realpath(top)

    def walk(folder: str, rel: str, ancestors: tuple[str, ...]) -> Iterator[tuple[str, Entry]]:
        subs = []
        for e in children(folder, root_real):
            down = into(e, ancestors) if e.kind == DIR else e
            if isinstance(down, Entry):
                yield rel + e.name, down
            else:
                subs.append((e, down))
        for e, down in subs:
            yield from walk(e.path, f"{rel}{e.name}/", down)

    yield from walk(top, "", (root_real,))


def member_problem(name: str, link: str | None = None, kind: str = "") -> tuple[str, str] | None:
    """(reason, detail) for an archive member that must not be read as a report, else None.
    link: the target of a link member; kind: a non-regular member's kind (e.g. "FIFO")."""
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or _DRIVE.match(name) or ".." in parts:
        return "unsafe_path", "absolute or '..' member path; not read"
    if link is not None:
        target = posixpath.normpath(posixpath.join(posixpath.dirname(name), link))
        if link.startswith("/") or target == ".." or target.startswith("../"):
            return "symlink_outside_root", "link member pointing outside the archive; not followed"
        return "special_file", "link member; archive links are not followed"
    if kind:
        return "special_file", f"{kind} member; not read"
    return None
