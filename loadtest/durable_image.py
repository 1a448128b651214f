"""What a power loss would leave of a directory: only what was fsynced.

Run a process under `python -m hanzo.loadtest.durable_image --root DIR --shadow SHADOW --
<hanzo arguments>`: before the command runs, every os.fsync and os.fdatasync, os.rename,
os.replace, os.unlink and os.rmdir of the process goes through this layer (the server's code
calls them through the os module, and the libraries it writes with do not sync on their own).
At each sync of a file under DIR the layer copies the bytes the file then holds into SHADOW;
at each sync of a directory it records the directory's entries at that moment. After the
process is killed, `rebuild(SHADOW, TARGET)` makes the directory a machine would find after
losing its power at that instant, under the strict reading of POSIX:

- a name exists only if a sync of its directory saw it (or it existed when tracing began);
- a file holds what it held at its last sync (appended bytes since are gone); a file that was
  never synced is empty;
- a file is its inode: a rename carries its synced bytes along, and an inode number the
  kernel hands out again after an unlink is a new file, not the old one.

This is one outcome of a power loss, the one that keeps exactly what was synced. A real one
may also keep part of what was not (a torn or garbage tail, some unsynced renames): outcomes
this layer does not make yet, so recovering from it is necessary, not sufficient.
Each sync records the file's whole content, so bytes rewritten in place are caught too."""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import stat
import sys
import threading
from pathlib import Path

_REAL = {name: getattr(os, name) for name in ("fsync", "fdatasync", "rename", "replace", "unlink", "remove", "rmdir")}


class DurableImage:
    """The tracer's state: durable bytes per inode generation, durable entries per directory."""

    def __init__(self, root: Path, shadow: Path) -> None:
        self.root = Path(root).resolve()
        self.shadow = Path(shadow)
        for part in ("files", "dirs", "generations"):
            (self.shadow / part).mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        # a forked child (the server's snapshot writer) traces too; a thread that held the lock
        # at the fork does not exist there, so the child starts with a fresh one
        os.register_at_fork(after_in_child=self._fresh_lock)
        self._baseline()

    def _fresh_lock(self) -> None:
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ identity
    # Generations live in the shadow, not in memory: the server and its forked child both
    # remove files, and each must see an inode number the other freed as a new file.

    def key(self, st: os.stat_result) -> str:
        return f"{st.st_dev}-{st.st_ino}-{self._generation_of(st)}"

    def _generation_of(self, st: os.stat_result) -> int:
        try:
            return int((self.shadow / "generations" / f"{st.st_dev}-{st.st_ino}").read_text())
        except FileNotFoundError:
            return 0

    def _retire(self, st: os.stat_result, step: int = 1) -> None:
        """The inode leaves the namespace (step 1, before the removal, so no other process can
        meet its number reused under the old generation), or stays after all (step -1)."""
        # a POSIX record lock, not flock: a fork would copy a held flock into the child for good
        with open(self.shadow / "generations.lock", "a") as guard:
            fcntl.lockf(guard, fcntl.LOCK_EX)
            record = self.shadow / "generations" / f"{st.st_dev}-{st.st_ino}"
            self._write_record(record, str(self._generation_of(st) + step))

    @staticmethod
    def _write_record(path: Path, text: str) -> None:
        """Whole or not at all: the server and its forked child may record at once."""
        staging = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        staging.write_text(text)
        _REAL["replace"](staging, path)

    def _inside(self, path: str) -> bool:
        return path == str(self.root) or path.startswith(str(self.root) + os.sep)

    # ------------------------------------------------------------------ recording

    def _baseline(self) -> None:
        """What exists when tracing begins is taken as durable (the caller synced it)."""
        self.root.mkdir(parents=True, exist_ok=True)
        for directory, _, files in os.walk(self.root):
            self._record_dir(directory)
            for name in files:
                path = os.path.join(directory, name)
                if os.path.isfile(path) and not os.path.islink(path):
                    with open(path, "rb") as f:
                        self._record_file(f.fileno(), os.fstat(f.fileno()))
        with open(self.shadow / "root.json", "w") as f:
            json.dump({"root": str(self.root), "key": self.key(os.stat(self.root))}, f)

    def _record_file(self, fd: int, st: os.stat_result) -> None:
        """The file's whole content as of this sync (a writer may rewrite synced bytes in place:
        zipfile patches each member's header after its data)."""
        target = self.shadow / "files" / self.key(st)
        staging = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        # the descriptor may be write-only: the file is read through /proc, opened afresh
        with open(staging, "wb") as out, open(f"/proc/self/fd/{fd}", "rb") as source:
            remaining = st.st_size
            while remaining > 0:
                chunk = source.read(min(1 << 20, remaining))
                if not chunk:
                    break
                out.write(chunk)
                remaining -= len(chunk)
        _REAL["replace"](staging, target)

    def _record_dir(self, path: str) -> None:
        entries = {}
        for entry in os.scandir(path):
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
                entries[entry.name] = {"key": self.key(st), "dir": stat.S_ISDIR(st.st_mode)}
        self._write_record(self.shadow / "dirs" / f"{self.key(os.stat(path))}.json", json.dumps(entries))

    def synced(self, fd: int) -> None:
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return
        if not self._inside(path):
            return
        with self._lock:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                self._record_dir(path)
            elif stat.S_ISREG(st.st_mode):
                self._record_file(fd, st)

    def removing(self, path, dir_fd: int | None) -> os.stat_result | None:
        """The inode a name refers to, if this removal (or rename over it) may free it."""
        try:
            st = os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
        except (OSError, TypeError, ValueError):
            return None
        if stat.S_ISDIR(st.st_mode) or st.st_nlink <= 1:
            return st
        return None

    def retiring(self, gone: os.stat_result | None, operation) -> None:
        """Run a removal or a rename over `gone`, the inode it frees, retired around it."""
        if gone is None:
            operation()
            return
        self._retire(gone)
        try:
            operation()
        except BaseException:
            self._retire(gone, -1)
            raise

    # ------------------------------------------------------------------ the layer

    def install(self) -> None:
        image = self

        def fsync(fd):
            _REAL["fsync"](fd)
            image.synced(fd if isinstance(fd, int) else fd.fileno())

        def fdatasync(fd):
            _REAL["fdatasync"](fd)
            image.synced(fd if isinstance(fd, int) else fd.fileno())

        def removal(name):
            def remove(path, *, dir_fd=None):
                with image._lock:
                    gone = image.removing(path, dir_fd)
                    image.retiring(gone, lambda: _REAL[name](path, dir_fd=dir_fd))
            return remove

        def moving(name):
            def move(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
                with image._lock:
                    gone = image.removing(dst, dst_dir_fd)
                    image.retiring(gone, lambda: _REAL[name](src, dst, src_dir_fd=src_dir_fd,
                                                             dst_dir_fd=dst_dir_fd))
            return move

        os.fsync, os.fdatasync = fsync, fdatasync
        os.unlink, os.remove, os.rmdir = removal("unlink"), removal("remove"), removal("rmdir")
        os.rename, os.replace = moving("rename"), moving("replace")


def rebuild(shadow: Path, target: Path) -> Path:
    """The directory a power loss would have left (see the module's words), at `target`."""
    shadow = Path(shadow)
    root = json.loads((shadow / "root.json").read_text())
    target = Path(target)
    if target.exists():
        shutil.rmtree(target)
    _rebuild_dir(shadow, root["key"], target)
    return target


def _rebuild_dir(shadow: Path, key: str, target: Path) -> None:
    target.mkdir(parents=True)
    record = shadow / "dirs" / f"{key}.json"
    if not record.exists():  # created, never synced: its entries are not durable
        return
    for name, entry in json.loads(record.read_text()).items():
        if entry["dir"]:
            _rebuild_dir(shadow, entry["key"], target / name)
            continue
        content = shadow / "files" / entry["key"]
        if content.exists():
            shutil.copyfile(content, target / name)
        else:
            (target / name).write_bytes(b"")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv or argv[:1] != ["--root"] or argv[2:3] != ["--shadow"]:
        print("usage: python -m hanzo.loadtest.durable_image --root DIR --shadow SHADOW -- <hanzo arguments>",
              file=sys.stderr)
        return 2
    root, shadow, command = argv[1], argv[3], argv[argv.index("--") + 1:]
    DurableImage(Path(root), Path(shadow)).install()
    from hanzo.server.commands import main as hanzo

    return hanzo(command)


if __name__ == "__main__":
    sys.exit(main())
