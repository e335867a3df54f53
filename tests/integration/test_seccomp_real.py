"""linux.seccomp on real containers through the ocirun CLI: every kind of rule, Docker's default profile, the
noNewPrivileges=false path, `exec`, and a seccomp notify agent written here (SCM_RIGHTS + raw ioctls)."""
import json
import os
import select
import shutil
import socket
import struct
import tempfile
import threading

import pytest

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates real containers")]

SHOW = "grep -E '^(Seccomp|Seccomp_filters|NoNewPrivs):' /proc/self/status"


@pytest.fixture(autouse=True)
def seccomp_cache(monkeypatch):
    d = tempfile.mkdtemp(prefix="ocirun-scc-")
    monkeypatch.setenv("OCIRUN_SECCOMP_CACHE", d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _with(seccomp, nnp=True, caps=()):
    def edit(cfg):
        cfg["linux"]["seccomp"] = seccomp
        cfg["process"]["noNewPrivileges"] = nnp
        cfg["root"]["readonly"] = False  # so that only the filter can make mkdir fail
        for c in caps:
            for s in ("bounding", "effective", "permitted"):
                cfg["process"]["capabilities"][s].append(c)
    return edit


def _run(oci, bundle, cid, script, seccomp, **kw):
    b = bundle(["sh", "-c", script], edit=_with(seccomp, **kw))
    return oci("run", "--bundle", b, cid())


def _status(out):
    return dict(line.split(":\t", 1) for line in out.splitlines() if line.startswith(("Seccomp", "NoNewPrivs")))


ERRNO_MKDIR = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}


# ------------------------------------------------------------------------------------------ actions
@pytest.mark.parametrize("errno_ret,msg", [(None, "Operation not permitted"), (13, "Permission denied")])
def test_errno_rule(oci, bundle, cid, errno_ret, msg, seccomp_cache):
    prof = json.loads(json.dumps(ERRNO_MKDIR))
    if errno_ret is not None:
        prof["syscalls"][0]["errnoRet"] = errno_ret
    res = _run(oci, bundle, cid, f"{SHOW}; mkdir /tmp/x; echo rc=$?; touch /tmp/f && echo touched", prof)
    assert res.returncode == 0, str(res)
    assert msg in res.stderr, str(res)
    assert "rc=1" in res.stdout and "touched" in res.stdout, str(res)
    st = _status(res.stdout)
    assert st["Seccomp"] == "2" and st["Seccomp_filters"] == "1" and st["NoNewPrivs"] == "1", str(res)
    assert [f for f in os.listdir(seccomp_cache) if f.endswith(".bpf")], "the program was not cached"


def test_cache_hit_behaves_the_same(oci, bundle, cid, seccomp_cache):
    prof = {"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 30}]}
    outs = []
    for _ in range(2):  # first run compiles and stores, the second loads the stored program
        res = _run(oci, bundle, cid, "mkdir /tmp/x", prof)
        outs.append((res.returncode, res.stderr.replace("ocirun", "")))
        assert "Read-only file system" in res.stderr, str(res)
    assert outs[0] == outs[1]
    assert len([f for f in os.listdir(seccomp_cache) if f.endswith(".bpf")]) == 1


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD"])
def test_kill_rule(oci, bundle, cid, action):
    prof = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": action}]}
    b = bundle(["mkdir", "/tmp/x"], edit=_with(prof))
    res = oci("run", "--bundle", b, cid())
    assert res.returncode == 128 + 31, str(res)  # SIGSYS


def test_trap_rule(oci, bundle, cid):
    prof = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_TRAP"}]}
    res = _run(oci, bundle, cid, "mkdir /tmp/x; echo rc=$?", prof)
    assert "rc=159" in res.stdout, str(res)  # the shell sees its child killed by SIGSYS


def test_args_rule(oci, bundle, cid):
    # personality(PER_LINUX32) refused, personality(PER_LINUX) allowed; socket(AF_INET) refused, AF_UNIX allowed
    prof = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
         "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
        {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
         "args": [{"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]},
    ]}
    res = _run(oci, bundle, cid, "busybox linux64 echo l64; busybox linux32 echo l32; echo rc32=$?; "
               "nc 127.0.0.1 9 </dev/null; echo nc=$?", prof)
    assert res.returncode == 0, str(res)
    assert "l64" in res.stdout and "l32" not in res.stdout and "rc32=1" in res.stdout, str(res)
    assert "Permission denied" in res.stderr, str(res)
    assert "Address family not supported" in res.stderr, str(res)


def test_args_anded_and_same_index_ored(oci, bundle, cid):
    # Conditions on different arguments in one rule are ANDed: [mode == 0700, path == NULL] never matches,
    # [mode == 0600, path != NULL] does. Two conditions on the same argument become separate rules (ORed, as
    # runc does): [arg1 == 0] or [arg1 != 0] always matches.
    def chmod_rules(mode, path_op):
        return [{"names": [name], "action": "SCMP_ACT_ERRNO", "errnoRet": 16,
                 "args": [{"index": mi, "value": mode, "op": "SCMP_CMP_EQ"},
                          {"index": pi, "value": 0, "op": path_op}]}
                for name, pi, mi in (("chmod", 0, 1), ("fchmodat", 1, 2))]

    prof = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": chmod_rules(0o700, "SCMP_CMP_EQ")
            + chmod_rules(0o600, "SCMP_CMP_NE") + [
        {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
         "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 0, "op": "SCMP_CMP_NE"}]},
    ]}
    res = _run(oci, bundle, cid, "touch /tmp/f; chmod 700 /tmp/f; echo a=$?; chmod 600 /tmp/f; echo b=$?; "
               "mkdir /tmp/d; rmdir /tmp/d; echo r=$?", prof)
    assert "a=0" in res.stdout and "b=1" in res.stdout and "r=1" in res.stdout, str(res)
    assert "Device or resource busy" in res.stderr and "Permission denied" in res.stderr, str(res)


def test_log_action(oci, bundle, cid):
    prof = {"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_TSYNC",
                                                         "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
            "syscalls": [{"names": ["getcwd", "mkdir", "mkdirat"], "action": "SCMP_ACT_LOG"}]}
    res = _run(oci, bundle, cid, f"{SHOW}; mkdir /tmp/x && echo made", prof)
    assert res.returncode == 0 and "made" in res.stdout, str(res)
    assert _status(res.stdout)["Seccomp"] == "2", str(res)


def test_no_new_privileges_false(oci, bundle, cid):
    res = _run(oci, bundle, cid, f"{SHOW}; mkdir /tmp/x", ERRNO_MKDIR, nnp=False)
    assert "Operation not permitted" in res.stderr, str(res)
    st = _status(res.stdout)
    assert st["Seccomp"] == "2" and st["NoNewPrivs"] == "0", str(res)


def test_errors_are_reported(oci, bundle, cid):
    prof = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_KILL",
                                                             "errnoRet": 3}]}
    res = _run(oci, bundle, cid, "true", prof)
    assert res.returncode != 0
    assert "linux.seccomp.syscalls[0].errnoRet" in res.stderr, str(res)


def test_exec_gets_the_filter(oci, bundle, cid):
    b = bundle(["sleep", "30"], edit=_with(ERRNO_MKDIR))
    c = cid()
    res = oci("run", "-d", "--bundle", b, c)
    assert res.returncode == 0, str(res)
    try:
        res = oci("exec", c, "sh", "-c", f"{SHOW}; mkdir /tmp/x")
        assert res.returncode == 1 and "Operation not permitted" in res.stderr, str(res)
        assert _status(res.stdout)["Seccomp"] == "2", str(res)
    finally:
        oci("delete", "-f", c)


# ------------------------------------------------------------------------------------------ Docker's profile
# moby/profiles/seccomp/default.json (the rules for a container without CAP_SYS_ADMIN etc.), rebuilt here.
DOCKER_ALLOW = """
accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown chown32 clock_adjtime
clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64 clock_nanosleep
clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2 dup3 epoll_create epoll_create1
epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit
exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchmodat2
fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat
fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex futex_requeue futex_time64 futex_wait
futex_waitv futex_wake futimesat getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 getgid
getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom
getresgid getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid getsockname getsockopt
get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch inotify_init inotify_init1
inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents io_pgetevents_time64 ioprio_get
ioprio_set io_setup io_submit ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown
lchown32 lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64
madvise map_shadow_stack membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2
mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64
mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock munlockall munmap
name_to_handle_at nanosleep newfstatat _newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe
pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64
process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv
recv recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr rename renameat renameat2
restart_syscall rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn
rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr
sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler sched_rr_get_interval
sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam sched_setscheduler sched_yield
seccomp select semctl semget semop semtimedop semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg
sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid
setpriority setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit
set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32 setxattr shmat shmctl shmdt
shmget shutdown sigaltstack signalfd signalfd4 sigprocmask sigreturn socketcall socketpair splice stat stat64
statfs statfs64 statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create
timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create
timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill truncate truncate64 ugetrlimit
umask uname unlink unlinkat utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write
writev process_vm_readv process_vm_writev ptrace arch_prctl modify_ldt chroot
""".split()


def docker_default_profile():
    allow = "SCMP_ACT_ALLOW"
    rules = [{"names": DOCKER_ALLOW, "action": allow},
             {"names": ["socket"], "action": allow, "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]}]
    for v in (0, 8, 131072, 131080, 4294967295):
        rules.append({"names": ["personality"], "action": allow,
                      "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}]})
    rules.append({"names": ["clone"], "action": allow,
                  "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]})
    rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38})
    return {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"], "syscalls": rules}


def test_docker_default_profile(oci, bundle, cid):
    # CAP_SYS_ADMIN granted: only the filter can refuse unshare and mount
    script = (f"{SHOW}; echo ok; busybox unshare -m true; echo unshare=$?; "
              "mount -t tmpfs none /mnt; echo mount=$?; mkdir /tmp/d && echo mkdir-ok")
    res = _run(oci, bundle, cid, script, docker_default_profile(), caps=["CAP_SYS_ADMIN"])
    assert res.returncode == 0, str(res)
    out = res.stdout
    assert "ok" in out and "mkdir-ok" in out, str(res)
    assert "unshare=1" in out and "mount=1" in out, str(res)
    assert "unshare(0x20000): Operation not permitted" in res.stderr, str(res)
    assert "mount: permission denied" in res.stderr, str(res)  # busybox's words for EPERM
    assert _status(out)["Seccomp"] == "2", str(res)


def test_default_errno_allowlist_minimal(oci, bundle, cid):
    # defaultAction ERRNO and just what busybox sh + echo need (the runtime's own post-load calls included)
    names = ("execve brk arch_prctl set_tid_address getpid getppid geteuid getuid getgid getegid rt_sigaction "
             "rt_sigprocmask rt_sigreturn write writev exit_group read close fcntl dup2 uname getcwd stat "
             "newfstatat fstat ioctl lseek mmap munmap prlimit64 mprotect set_robust_list rseq openat "
             "access faccessat").split()
    prof = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
            "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]}
    res = _run(oci, bundle, cid, "echo hello; mkdir /tmp/x", prof)
    assert res.returncode == 1 and "hello" in res.stdout, str(res)
    assert "Function not implemented" in res.stderr, str(res)  # ENOSYS from the default action


# ------------------------------------------------------------------------------------------ notify
NOTIF_RECV = 0xC0502100   # _IOWR('!', 0, struct seccomp_notif)      (80 bytes)
NOTIF_SEND = 0xC0182101   # _IOWR('!', 1, struct seccomp_notif_resp) (24 bytes)


class Agent(threading.Thread):
    """A seccomp agent: accepts one connection on `path`, takes the fd + containerProcessState, then answers
    every notification with `reply(nr) -> (val, error)` until the container is gone."""

    def __init__(self, path, reply):
        super().__init__(daemon=True)
        self.path = path
        self.reply = reply
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(1)
        self.srv.settimeout(20)
        self.state = None
        self.fds_received = 0
        self.seen = []
        self.error = None

    def run(self):
        import fcntl

        try:
            conn, _ = self.srv.accept()
            conn.settimeout(20)
            fds = []
            data = b""
            while self.state is None:  # one JSON document (agents read it, they need not wait for EOF)
                msg, anc, _, _ = conn.recvmsg(65536, socket.CMSG_SPACE(4 * 4))
                for level, typ, cdata in anc:
                    if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                        fds += list(struct.unpack(f"{len(cdata) // 4}i", cdata[:len(cdata) // 4 * 4]))
                if not msg:
                    raise EOFError(f"connection closed after {data!r}")
                data += msg
                try:
                    self.state = json.loads(data)
                except ValueError:
                    continue
            conn.close()
            self.fds_received = len(fds)
            fd = fds[0]
            p = select.poll()
            p.register(fd, select.POLLIN)
            while True:
                ev = p.poll(20000)
                if not ev or ev[0][1] & (select.POLLHUP | select.POLLERR) and not ev[0][1] & select.POLLIN:
                    break
                req = bytearray(80)
                try:
                    fcntl.ioctl(fd, NOTIF_RECV, req, True)
                except OSError:
                    continue  # ENOENT: the task died while we were looking
                nid, pid, _flags, nr = struct.unpack_from("=QIIi", req)
                self.seen.append(nr)
                val, err = self.reply(nr)
                try:
                    fcntl.ioctl(fd, NOTIF_SEND, struct.pack("=QqiI", nid, val, -err, 0), True)
                except OSError:
                    pass
            os.close(fd)
        except Exception as e:  # reported by the test
            self.error = e
        finally:
            self.srv.close()


@pytest.mark.parametrize("nnp", [True, False])
@pytest.mark.parametrize("errno_reply", [0, 30])
def test_notify_listener(oci, bundle, cid, nnp, errno_reply):
    d = tempfile.mkdtemp(prefix="ocirun-agent-")
    try:
        path = os.path.join(d, "agent.sock")
        agent = Agent(path, lambda nr: (0, errno_reply))
        agent.start()
        prof = {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": path, "listenerMetadata": "hello-agent",
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]}
        c = cid()
        b = bundle(["sh", "-c", f"{SHOW}; mkdir /tmp/x && echo mkdir-says-ok; test -d /tmp/x || echo absent"],
                   edit=_with(prof, nnp=nnp), annotations={"org.test": "notify"})
        out = os.path.join(d, "out")
        res = oci("create", "--bundle", b, c, stdout=out, stderr=out + ".err")
        assert res.returncode == 0, str(res)
        init_pid = oci.state(c)["pid"]
        res = oci("start", c)
        assert res.returncode == 0, str(res)
        agent.join(25)
        assert oci.wait_status(c, "stopped")["status"] == "stopped"
        oci("delete", c)
        res = res.__class__(res.args, 0, open(out).read(), open(out + ".err").read(), out, out + ".err")
        assert agent.error is None, repr(agent.error)
        assert "absent" in res.stdout, str(res)  # the agent answered; nothing was created
        if errno_reply:
            assert "Read-only file system" in res.stderr and "mkdir-says-ok" not in res.stdout, str(res)
        else:
            assert "mkdir-says-ok" in res.stdout, str(res)
        assert agent.seen, "no notification reached the agent"
        st = agent.state
        assert agent.fds_received == 1
        assert st["fds"] == ["seccompFd"] and st["metadata"] == "hello-agent", st
        assert st["pid"] == init_pid, st  # the host's view of the process that loaded the filter
        s = st["state"]
        assert s["id"] == c and s["status"] == "creating" and s["bundle"] == os.path.realpath(b), st
        assert s["annotations"] == {"org.test": "notify"} and s["ociVersion"] == "1.3.0", st
        assert _status(res.stdout)["NoNewPrivs"] == ("1" if nnp else "0"), str(res)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_notify_listener_missing(oci, bundle, cid):
    prof = {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/nonexistent/agent.sock",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}
    res = _run(oci, bundle, cid, "true", prof)
    assert res.returncode != 0
    assert "linux.seccomp.listenerPath: cannot connect to /nonexistent/agent.sock" in res.stderr, str(res)
