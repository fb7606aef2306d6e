"""A password hash's memory goes back to the OS once the hash is done (app/memory.py)."""

import subprocess
import sys

from app import memory

# Hash in a pool thread, as the worker does, three times, then report how much
# anonymous memory the process kept.
PROBE = """
import sys, threading
from app import memory, passwords
if sys.argv[1] == "pinned":
    assert memory.release_large_blocks()
def anon_kib():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
before = anon_kib()
for _ in range(3):
    t = threading.Thread(target=passwords.hash_now, args=("correct horse",))
    t.start(); t.join()
print(anon_kib() - before)
"""


def kept_kib(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                          check=True)
    return int(done.stdout.strip())


def test_a_hash_in_a_pool_thread_does_not_stay_resident():
    hash_kib = 19456  # argon2's memory_cost in app/passwords.py
    assert kept_kib("default") > hash_kib // 2, "glibc no longer keeps the block: probe is moot"
    assert kept_kib("pinned") < hash_kib // 4


def test_the_thresholds_are_set_on_glibc(monkeypatch):
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    assert memory.release_large_blocks() is True


def test_the_app_factory_pins_it(monkeypatch):
    from app.config import Config
    from app.factory import create_app
    from tests.unit.fakes import FakeCache, RecordingMetrics, UnusablePool
    from tests.unit.test_app import ENV

    calls = []
    monkeypatch.setattr(memory, "release_large_blocks", lambda: calls.append(1) or True)
    app = create_app(Config.from_env(ENV), pool=UnusablePool(), cache=FakeCache(),
                     metrics=RecordingMetrics(), configure_logging=False)
    app.deps.close()
    assert calls == [1]


def test_an_operators_own_glibc_setting_is_left_alone(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert memory.release_large_blocks() is False
