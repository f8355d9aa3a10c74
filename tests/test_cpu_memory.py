"""The Makefile's GLIBC_TUNABLES: glibc keeps freed memory, so a large tensor allocated again faults no new pages.

A misspelt tunable is ignored by glibc without a word; this test catches it by counting the minor page faults
of a child process that repeats a "step" allocating and freeing the same large tensors, with and without the
Makefile's value.
Where the C library is not glibc, or maps no fresh pages for such a block anyway, there is nothing to check.
"""

import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import resource, torch
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def step():  # the same large tensors every step, as in a training loop
    a = torch.ones(16 * 2**20)  # 64 MB
    b = a * 2
    c = torch.ones(16 * 2**20 // 3)
    return float(b[0] + c[0])
for _ in range(8):  # warm-up: the heap settles within the first steps
    step()
start = faults()
for _ in range(5):
    step()
print(faults() - start)
"""
PAGES_PER_ALLOCATION = 64 * 2**20 // 4096


def makefile_tunables() -> str:
    match = re.search(r"^export GLIBC_TUNABLES \?= (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, "the Makefile exports no GLIBC_TUNABLES default"
    return match.group(1)


def child_faults(tunables: str | None) -> int:
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    if tunables is not None:
        env["GLIBC_TUNABLES"] = tunables
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_the_makefile_tunables_stop_large_allocations_from_faulting_fresh_pages():
    tunables = makefile_tunables()
    assert "glibc.malloc.mmap_max=0" in tunables and "glibc.malloc.trim_threshold=" in tunables
    default = child_faults(None)
    if default < PAGES_PER_ALLOCATION:  # this system hands the freed block back without unmapping it
        pytest.skip(f"without tunables only {default} page faults in 5 steps of 150 MB: nothing to remove")
    # about 10 allocations' worth of fresh pages in 5 steps by default; with the tunables at most a quarter
    assert child_faults(tunables) <= default / 4
