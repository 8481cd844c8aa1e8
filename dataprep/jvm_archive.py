"""A class-data-sharing archive of the Spark driver JVM's classes, reused by every later session.

Loading and verifying Spark's classes is most of a local session's start: 4.7 s on 2 cores without
the archive, 2.9 s with it, and the first job takes 1.3 s instead of 2.2 s. The first session Clover
starts writes the archive as its JVM exits (Java's `-XX:ArchiveClassesAtExit`); later sessions map it
(`-XX:SharedArchiveFile`). It changes nothing the JVM computes, only how its classes are loaded.

A truncated archive crashes the JVM, so an archive is written under a temporary name by one session
at a time and renamed into place only after that JVM exited cleanly; a session that fails to start
with an archive is started again without it, and the archive is removed. The archive's name holds a
hash of what it depends on (the java binary, Spark's jars, the driver's Java options and memory), so
an upgrade writes a new one instead of tripping on the old.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import hashlib
import os
import shutil
import sys

# The JVM's own notes about the archive (classes it cannot archive, an archive it will not use) are
# not the user's business: a session without the archive only starts slower.
QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"
KEEP = 4  # archives kept in the cache directory


def cache_dir() -> str:
    """Where archives live: $CLOVER_CACHE/jvm, else ~/.cache/clover/jvm."""
    root = os.environ.get("CLOVER_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "clover")
    return os.path.join(root, "jvm")


def archive_path(settings: dict[str, str]) -> str | None:
    """The archive for a driver JVM started with `settings`, named by what its contents depend on;
    None when no java or no Spark jars are found (then no archive is used)."""
    import pyspark

    java = shutil.which("java", path=os.path.join(os.environ["JAVA_HOME"], "bin")) if os.environ.get("JAVA_HOME") \
        else shutil.which("java")
    jars = sorted(glob.glob(os.path.join(os.path.dirname(pyspark.__file__), "jars", "*.jar")))
    if not java or not jars:
        return None
    java = os.path.realpath(java)
    identity = hashlib.sha256()
    for path in [java, *jars]:
        stat = os.stat(path)
        identity.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    for key in ("spark.driver.memory", "spark.driver.extraJavaOptions", "spark.driver.extraClassPath"):
        identity.update(f"{key}={settings.get(key, '')}\n".encode())
    return os.path.join(cache_dir(), f"spark-driver-{identity.hexdigest()[:20]}.jsa")


def java_options(archive: str) -> str:
    """Options that use the archive if it is there, else have this JVM write it (if no other is)."""
    if os.path.exists(archive):
        return f"-XX:SharedArchiveFile={archive} {QUIET}"
    os.makedirs(os.path.dirname(archive), exist_ok=True)
    lock = archive + ".lock"
    if os.path.exists(lock) and not _alive(_read_pid(lock)):  # its writer died: its lock and half-written archive go
        _remove(lock, *glob.glob(glob.escape(archive) + ".*.part"))
    try:
        with open(lock, "x") as handle:
            handle.write(str(os.getpid()))
    except FileExistsError:
        return ""  # another session is writing it
    return f"-XX:ArchiveClassesAtExit={archive}.{os.getpid()}.part {QUIET}"


def finish_when_done(spark, archive: str) -> None:
    """At exit, stop the session, let its JVM write the archive, and move the archive into place."""
    process = spark.sparkContext._gateway.proc
    part, lock = f"{archive}.{os.getpid()}.part", archive + ".lock"

    def finish() -> None:
        try:
            print(f"clover: saving the Spark driver's classes to {archive} (once; later sessions start faster)",
                  file=sys.stderr, flush=True)
            spark.stop()
            process.stdin.close()  # the JVM exits when its stdin closes, writing the archive on the way
            if process.wait(timeout=300) == 0 and os.path.getsize(part) > 0:
                os.replace(part, archive)
                _keep_newest(os.path.dirname(archive), KEEP)
        except Exception:  # noqa: BLE001 - no archive only means a slower start next time
            pass
        finally:
            _remove(part, lock)

    atexit.register(finish)


def discard(archive: str) -> None:
    """Remove an archive the JVM could not start with."""
    _remove(archive)


def _keep_newest(directory: str, keep: int) -> None:
    """Each archive is ~170 MB: keep the newest few (another pyspark, java or driver memory makes another)."""
    archives = sorted(glob.glob(os.path.join(glob.escape(directory), "spark-driver-*.jsa")), key=os.path.getmtime)
    _remove(*archives[:-keep])


def _remove(*paths: str) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def _read_pid(path: str) -> int:
    with contextlib.suppress(OSError, ValueError), open(path) as handle:
        return int(handle.read())
    return 0


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
