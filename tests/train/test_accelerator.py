"""The CPU allocator setting of `hfgen.train.accelerator`."""

import subprocess
import sys

import pytest

PROBE = """
import ctypes, ctypes.util, sys, torch
from hfgen.train.accelerator import keep_freed_cpu_memory

class MallInfo2(ctypes.Structure):  # glibc >= 2.33
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "keep":
    assert keep_freed_cpu_memory()
x = torch.empty(64 * 2**20 // 4)  # 64 MB: above glibc's largest mmap threshold
mapped = libc.mallinfo2().hblkhd  # bytes in mmap-ed blocks
del x
in_heap_after_free = libc.mallinfo2().fordblks  # free bytes kept in the heap
print(mapped >= 64 * 2**20, in_heap_after_free >= 64 * 2**20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_keep_freed_cpu_memory_serves_big_tensors_from_the_heap_and_keeps_them():
    def probe(mode):
        try:
            done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120, check=True)
        except subprocess.CalledProcessError as err:
            if "mallinfo2" in err.stderr:
                pytest.skip("glibc without mallinfo2")
            raise
        return done.stdout.split()

    assert probe("default") == ["True", "False"]  # mmap-ed, and given back to the OS when freed
    assert probe("keep") == ["False", "True"]  # from the heap, and kept for the next step
