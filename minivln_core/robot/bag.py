"""rosbag2 folders (mcap or sqlite3 + metadata.yaml) read and written with `rosbags`, with clear errors.

`BagRecorder` is what `sim_robot` records with (CDR bytes from its own callbacks, connections
added on first use with definitions from `messages.typestore`). `BagReader` checks a bag before
anything is replayed — it exists and was closed (metadata.yaml), every needed topic is there
with the expected type (and, for NavigatorStatus, our definition) — then streams the messages of
the needed topics in recording order, decoded. Every problem is a `BagError` naming the bag, and
the topic and message when there is one; a bag cut short says after which message it breaks.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from minivln_core.errors import DataError
from minivln_core.robot import messages as M
from minivln_core.robot.messages import STORAGES, BagTopics

# role (a BagTopics field) -> the message type it must carry
ROLE_TYPES = {"instruction": M.STRING, "panorama": M.IMAGE, "compressed_panorama": M.COMPRESSED_IMAGE,
              "waypoints": M.POSE_ARRAY, "odom": M.ODOMETRY, "goal": M.POSE_STAMPED, "status": M.NAVIGATOR_STATUS}


class BagError(DataError):
    """A bag that cannot be replayed: names the bag, and the topic and message when known."""

    def __init__(self, bag: str | Path, problem: str, topic: str | None = None, index: int | None = None):
        super().__init__(bag, problem, record=index, field=topic)
        self.topic, self.index = topic, index
        where = str(bag) + ("" if topic is None else f", topic {topic}")
        where += "" if index is None else f", message {index}"
        self.args = (f"{where}: {problem}",)  # "<bag>, topic <t>, message <i>: <problem>"


def topic_key(name: str) -> str:
    """Topic name without leading '/' (`ros2 bag record` stores fully qualified names)."""
    return name.strip().lstrip("/")


@dataclass
class BagMessage:
    """One decoded message: its role, topic, index within the topic and log time."""

    role: str
    topic: str
    index: int       # 0-based, counted per topic
    time_ns: int     # log (receive) time
    msg: Any         # rosbags message object

    @property
    def seconds(self) -> float:
        return self.time_ns * 1e-9


# -- reading --------------------------------------------------------------------------------------
class BagReader:
    """Open a bag for the given roles; `need` lists groups of roles of which at least one must be present.

    Use as a context manager; `messages()` streams the roles' messages in log-time order.
    """

    def __init__(self, path: str | Path, topics: BagTopics, roles: Sequence[str],
                 need: Sequence[Sequence[str]] = ()):
        self.path = Path(path)
        self.topics = topics
        self.roles = list(roles)
        self.need = [tuple(group) for group in need]
        self._reader: Any = None
        self.connections: dict[str, Any] = {}  # role -> rosbags Connection

    def error(self, problem: str, role: str | None = None, index: int | None = None) -> BagError:
        return BagError(self.path, problem, None if role is None else self.topic(role), index)

    def topic(self, role: str) -> str:
        return topic_key(getattr(self.topics, role))

    def __enter__(self) -> "BagReader":
        from rosbags.rosbag2 import Reader

        if not self.path.is_dir():
            raise self.error("does not exist or is not a rosbag2 folder")
        if not (self.path / "metadata.yaml").is_file():
            raise self.error("has no metadata.yaml: the recording was not closed cleanly (recorder killed?) "
                             "or this is not a rosbag2 folder")
        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except Exception as exc:  # rosbags raises ReaderError, FileNotFoundError, sqlite3/mcap errors
            self._reader = None
            raise self.error(f"cannot be opened (truncated or corrupt?): {type(exc).__name__}: {exc}") from None
        try:
            self._check_topics()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._reader is not None:
            reader, self._reader = self._reader, None
            try:
                reader.close()
            except Exception:  # closing a broken storage must not hide the first error
                pass

    def _check_topics(self) -> None:
        by_topic: dict[str, list[Any]] = {}
        for conn in self._reader.connections:
            by_topic.setdefault(topic_key(conn.topic), []).append(conn)
        store = M.typestore()
        for role in self.roles:
            conns = by_topic.get(self.topic(role), [])
            if not conns:
                continue
            expected = ROLE_TYPES[role]
            types = sorted({c.msgtype for c in conns})
            if types != [expected]:
                raise self.error(f"carries {', '.join(types)}, expected {expected} (an unknown or unexpected "
                                 "message type for this topic; set topics.<name> if it is recorded elsewhere)", role)
            conn = conns[0]
            if expected == M.NAVIGATOR_STATUS and conn.digest and conn.digest != store.hash_rihs01(expected):
                raise self.error(f"its {expected} definition (hash {conn.digest}) differs from msg/NavigatorStatus.msg "
                                 f"({store.hash_rihs01(expected)}): recorded with another version of the message", role)
            if sum(c.msgcount for c in conns) == 0:
                continue
            self.connections[role] = conns
        present = ", ".join(sorted(by_topic)) or "none"
        for group in self.need:
            if not any(role in self.connections for role in group):
                names = " or ".join(f"'{self.topic(r)}' ({ROLE_TYPES[r]})" for r in group)
                raise BagError(self.path, f"missing topic {names} with messages; the bag's topics: {present}",
                               self.topic(group[0]))

    def has(self, role: str) -> bool:
        """True if the bag holds messages of `role`."""
        return role in self.connections

    def messages(self) -> Iterator[BagMessage]:
        """Decoded messages of every present role, in log-time order; BagError names a broken message."""
        store = M.typestore()
        role_of = {id(c): role for role, conns in self.connections.items() for c in conns}
        counts: Counter[str] = Counter()
        last = "before the first message"
        stream = self._reader.messages(connections=[c for conns in self.connections.values() for c in conns])
        while True:
            try:
                conn, time_ns, raw = next(stream)
            except StopIteration:
                return
            except Exception as exc:  # storage errors mid-way: the bag is cut short or corrupt
                raise self.error(f"is truncated or corrupt {last}: {type(exc).__name__}: {exc}") from None
            role = role_of.get(id(conn)) or next(r for r, cs in self.connections.items()
                                                 if any(c.topic == conn.topic for c in cs))
            index = counts[role]
            counts[role] += 1
            try:
                msg = store.deserialize_cdr(raw, conn.msgtype)
            except Exception as exc:
                raise self.error(f"cannot be decoded as {conn.msgtype} (truncated or corrupt): "
                                 f"{type(exc).__name__}: {exc}", role, index) from None
            last = f"after message {index} of topic {self.topic(role)}"
            yield BagMessage(role, self.topic(role), index, int(time_ns), msg)


# -- writing --------------------------------------------------------------------------------------
class BagRecorder:
    """A new rosbag2 folder; `write(topic, msgtype, time_ns, cdr)` per message, `close()` writes metadata.yaml."""

    def __init__(self, path: str | Path, storage: str = "mcap"):
        from rosbags.rosbag2 import StoragePlugin, Writer

        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
        self.path = Path(path)
        if self.path.exists():
            raise DataError(self.path, "exists already: a bag is recorded into a new folder")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self.path, version=9, storage_plugin=plugin)
        self._writer.open()
        self._connections: dict[str, Any] = {}
        self.counts: Counter[str] = Counter()

    @property
    def closed(self) -> bool:
        return self._writer is None

    def write(self, topic: str, msgtype: str, time_ns: int, cdr: bytes | memoryview) -> None:
        """Append one serialized (CDR) message; the topic's connection is added on first use."""
        if self._writer is None:
            raise RuntimeError(f"bag {self.path} is closed")
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=M.typestore())
        elif conn.msgtype != msgtype:
            raise ValueError(f"topic {topic} is recorded as {conn.msgtype}, not {msgtype}")
        self._writer.write(conn, int(time_ns), bytes(cdr))
        self.counts[topic] += 1

    def write_message(self, topic: str, msgtype: str, time_ns: int, msg: Any) -> None:
        """Serialize a rosbags message object with the type store and append it."""
        self.write(topic, msgtype, time_ns, M.typestore().serialize_cdr(msg, msgtype))

    def close(self) -> None:
        """Finish the storage file and write metadata.yaml (idempotent)."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()


def topic_summary(path: str | Path) -> Mapping[str, tuple[str, int]]:
    """{topic: (type, message count)} of a closed bag (for messages and tests)."""
    from rosbags.rosbag2 import Reader

    with Reader(Path(path)) as reader:
        return {topic_key(c.topic): (c.msgtype, c.msgcount) for c in reader.connections}
