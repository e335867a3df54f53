"""ocirun.syscalls.CTypes: the slice of ctypes the syscall layer builds on _ctypes must behave as ctypes does."""
import ctypes
import os
import subprocess
import sys

from ocirun import syscalls as S


def test_types_match_ctypes():
    ct = S.ct()
    for name in ("c_int", "c_uint", "c_uint32", "c_long", "c_ulong", "c_uint64", "c_ushort", "c_void_p",
                 "c_char_p", "c_char"):
        ours, real = getattr(ct, name), getattr(ctypes, name)
        assert ct.sizeof(ours) == ctypes.sizeof(real), name
        assert (ours._type_ == real._type_ or  # ctypes aliases c_uint64 to c_ulong ('L') on LP64
                ctypes.sizeof(real) == ct.sizeof(ours) and name == "c_uint64"), name
    assert ct.c_ulong(2**64 - 1).value == 2**64 - 1
    assert ct.c_int(-5).value == -5


def test_create_string_buffer_like_ctypes():
    ct = S.ct()
    for args in ((b"ab\0cd",), (b"ab\0cd", 5), (b"xyz", 10), (16,)):
        ours, real = ct.create_string_buffer(*args), ctypes.create_string_buffer(*args)
        assert ours.raw == real.raw and len(ours) == len(real), args


def test_calls_go_to_libc_with_errno():
    lib = S._lib()
    assert lib.getpid() == os.getpid()
    assert lib.syscall.restype is S.ct().c_long
    assert lib.close(-1) == -1 and S.ct().get_errno() == 9  # EBADF, kept with use_errno
    with open("/proc/self/mountinfo", "rb") as f:
        assert S.SYS.fstatfs_type(f.fileno()) == 0x9FA0  # PROC_SUPER_MAGIC


def test_openat2_structure_is_passed_by_reference(tmp_path):
    (tmp_path / "d").mkdir()
    os.symlink("/etc", tmp_path / "d" / "esc")
    dfd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        fd = S.SYS.openat2(dfd, "d", os.O_PATH, 0, S.RESOLVE_IN_ROOT)
        os.close(fd)
        try:
            S.SYS.openat2(dfd, "d/esc/passwd", os.O_RDONLY, 0, S.RESOLVE_IN_ROOT)
            raise AssertionError("openat2(RESOLVE_IN_ROOT) followed a symlink out of the root")
        except OSError as e:
            assert e.errno == 2  # /etc resolved inside tmp_path: no such file
    finally:
        os.close(dfd)


def test_the_syscall_layer_does_not_import_ctypes():
    out = subprocess.run([sys.executable, "-c", "import sys; from ocirun import syscalls as S; S._lib(); "
                          "S.SYS.fstatfs_type(0); print('ctypes' in sys.modules)"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
