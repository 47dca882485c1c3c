"""Shared pytest set-up: offline hub, a private loopback-only DDS domain, the online fixture world, real data.

ROS isolation: several engineers run the suite on one machine at the same time, and ROS tests
publish on the same topic names. Each pytest session therefore gets a ROS_DOMAIN_ID of its own,
set here in os.environ before any test module is imported, so before any `rclpy.init` (which
reads it) and inherited by every node started as a subprocess. The domain is picked from
1..101 (0 is everyone's default; 101 is the highest id whose ports never collide on Linux),
starting at the process id, and claimed with an exclusive lock on a file in the temporary
directory, held until the session ends: concurrent sessions never share a domain. DDS traffic
stays on the loopback interface (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, the loopback Fast DDS
profile).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOMAIN_IDS = range(1, 102)
DOMAIN_LOCKS = Path(tempfile.gettempdir()) / "minivln-ros-domains"  # <id>.lock, locked by the session using <id>
_domain_lock = None  # the open, locked file of this session's domain (the lock ends with the process)


def claim_domain_id(lock_dir: Path, start: int) -> int:
    """The first domain id from `start` (cycling through DOMAIN_IDS) whose lock file this process can lock."""
    global _domain_lock
    ids = list(DOMAIN_IDS)
    first = ids.index(start) if start in ids else 0
    try:
        lock_dir.mkdir(exist_ok=True)
        if lock_dir.stat().st_uid == os.getuid():
            lock_dir.chmod(0o1777)  # other users' sessions lock their files here too
    except OSError:
        return ids[first]  # no lock directory: the pid's id, without a guarantee
    for domain in ids[first:] + ids[:first]:
        try:
            handle = open(lock_dir / f"{domain}.lock", "a")
        except OSError:  # another user's lock file: theirs
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by a running session
            handle.close()
            continue
        if _domain_lock is not None:
            _domain_lock.close()
        _domain_lock = handle
        return domain
    return ids[first]  # every id taken: share the pid's


os.environ["ROS_DOMAIN_ID"] = str(claim_domain_id(DOMAIN_LOCKS, DOMAIN_IDS[os.getpid() % len(DOMAIN_IDS)]))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # never send DDS traffic off the loopback
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_loopback.xml"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# The licensed research data lives beside the project and is never committed into it.
SHARED_DATA = Path(os.environ.get("MINIVLN_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-data folder (../shared/data); tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def online(tmp_path_factory) -> dict[str, Path]:
    """The online tests' tiny world (+ rendered ViT features) and random tiny-student checkpoint (read-only)."""
    from fixtures_online import build_online_fixture

    return build_online_fixture(tmp_path_factory.mktemp("online"))


@pytest.fixture(scope="session")
def embedded_world(tmp_path_factory) -> Path:
    """The embedded world (sim_robot's default, embedded-student's training world) with its ViT
    features, built once per session into a private cache (about a minute on 2 cores)."""
    from minivln_core.experiments.embedded_world import ensure_embedded_world

    return ensure_embedded_world(tmp_path_factory.mktemp("embedded_cache"))


@pytest.fixture
def ros_context():
    """An initialised rclpy context of its own (in the session's domain), shut down after the test."""
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    context.try_shutdown()
