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


def test_the_threshold_is_set_on_glibc():
    assert memory.release_large_blocks() is True
