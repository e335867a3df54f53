/*
 * conformance probe: a static program run as (or inside) the container process.
 * It prints ONE JSON object on stdout describing what the process sees, then
 * optionally sleeps and exits with a chosen code.
 *
 * Options (any order, repeatable where it makes sense):
 *   --sysctl NAME      read /proc/sys/NAME (dots -> slashes) into "sysctl"
 *   --dev PATH         lstat PATH into "devices" (type, major, minor, mode, uid, gid, link)
 *   --path PATH        probe PATH into "paths" (exists, type, readable, read_len, writable, errors)
 *   --touch PATH       try to create/open PATH for writing into "touch" (ok / errno)
 *   --file PATH        read up to 4 KiB of PATH as a string into "files"
 *   --sleep SECS       sleep this long after printing
 *   --exit CODE        exit with this status (default 0)
 *   --out PATH         write the JSON to PATH instead of stdout (stdout still gets a short line)
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static FILE *out;
static int first_field;

static void jstr(const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", out);
        else if (*p == '\t')
            fputs("\\t", out);
        else if (*p < 0x20 || *p >= 0x7f)
            fprintf(out, "\\u%04x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

static void key(const char *k)
{
    if (!first_field)
        fputc(',', out);
    first_field = 0;
    jstr(k);
    fputc(':', out);
}

static int read_file(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t n = 0;
    while (n + 1 < size) {
        ssize_t r = read(fd, buf + n, size - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    return (int)n;
}

static void chomp(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = 0;
}

/* value of "Name:\t..." in /proc/self/status */
static int status_field(const char *status, const char *name, char *dst, size_t size)
{
    size_t len = strlen(name);
    const char *p = status;
    while (p && *p) {
        if (!strncmp(p, name, len) && p[len] == ':') {
            p += len + 1;
            while (*p == ' ' || *p == '\t')
                p++;
            size_t i = 0;
            while (p[i] && p[i] != '\n' && i + 1 < size) {
                dst[i] = p[i];
                i++;
            }
            dst[i] = 0;
            return 0;
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    dst[0] = 0;
    return -1;
}

static void emit_status(void)
{
    static char status[16384];
    char v[512];
    static const char *caps[] = {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"};
    static const char *names[] = {"inheritable", "permitted", "effective", "bounding", "ambient"};
    read_file("/proc/self/status", status, sizeof status);
    key("capabilities");
    fputc('{', out);
    for (int i = 0; i < 5; i++) {
        status_field(status, caps[i], v, sizeof v);
        if (i)
            fputc(',', out);
        jstr(names[i]);
        fputc(':', out);
        jstr(v);
    }
    fputc('}', out);
    key("seccomp");
    status_field(status, "Seccomp", v, sizeof v);
    fputs(v[0] ? v : "null", out);
    key("seccomp_filters");
    status_field(status, "Seccomp_filters", v, sizeof v);
    fputs(v[0] ? v : "null", out);
    key("no_new_privs");
    status_field(status, "NoNewPrivs", v, sizeof v);
    fputs(v[0] ? v : "null", out);
    key("status_umask");
    status_field(status, "Umask", v, sizeof v);
    jstr(v);
}

static const struct {
    const char *name;
    int res;
} rlimits[] = {
    {"RLIMIT_CPU", RLIMIT_CPU},         {"RLIMIT_FSIZE", RLIMIT_FSIZE},   {"RLIMIT_DATA", RLIMIT_DATA},
    {"RLIMIT_STACK", RLIMIT_STACK},     {"RLIMIT_CORE", RLIMIT_CORE},     {"RLIMIT_RSS", RLIMIT_RSS},
    {"RLIMIT_NPROC", RLIMIT_NPROC},     {"RLIMIT_NOFILE", RLIMIT_NOFILE}, {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK},
    {"RLIMIT_AS", RLIMIT_AS},           {"RLIMIT_LOCKS", RLIMIT_LOCKS},   {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING},
    {"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE}, {"RLIMIT_NICE", RLIMIT_NICE},   {"RLIMIT_RTPRIO", RLIMIT_RTPRIO},
    {"RLIMIT_RTTIME", RLIMIT_RTTIME},
};

static void emit_rlimits(void)
{
    key("rlimits");
    fputc('{', out);
    for (size_t i = 0; i < sizeof rlimits / sizeof rlimits[0]; i++) {
        struct rlimit rl;
        if (i)
            fputc(',', out);
        jstr(rlimits[i].name);
        if (getrlimit(rlimits[i].res, &rl) < 0)
            fputs(":null", out);
        else
            fprintf(out, ":{\"soft\":%llu,\"hard\":%llu}", (unsigned long long)rl.rlim_cur,
                    (unsigned long long)rl.rlim_max);
    }
    fputc('}', out);
}

/* mountinfo: id parent maj:min root mountpoint options [optional...] - fstype source superoptions */
static void emit_mounts(void)
{
    static char buf[262144];
    key("mounts");
    fputc('[', out);
    if (read_file("/proc/self/mountinfo", buf, sizeof buf) >= 0) {
        int n = 0;
        char *save = NULL;
        for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            char *f[64];
            int nf = 0;
            char *s2 = NULL;
            for (char *t = strtok_r(line, " ", &s2); t && nf < 64; t = strtok_r(NULL, " ", &s2))
                f[nf++] = t;
            int dash = -1;
            for (int i = 6; i < nf; i++)
                if (!strcmp(f[i], "-")) {
                    dash = i;
                    break;
                }
            if (nf < 6 || dash < 0 || dash + 3 > nf)
                continue;
            if (n++)
                fputc(',', out);
            fprintf(out, "{\"id\":%s,\"parent\":%s,\"dev\":", f[0], f[1]);
            jstr(f[2]);
            fputs(",\"root\":", out);
            jstr(f[3]);
            fputs(",\"mountpoint\":", out);
            jstr(f[4]);
            fputs(",\"options\":", out);
            jstr(f[5]);
            fputs(",\"optional\":[", out);
            for (int i = 6; i < dash; i++) {
                if (i > 6)
                    fputc(',', out);
                jstr(f[i]);
            }
            fputs("],\"fstype\":", out);
            jstr(f[dash + 1]);
            fputs(",\"source\":", out);
            jstr(f[dash + 2]);
            fputs(",\"super\":", out);
            jstr(dash + 3 < nf ? f[dash + 3] : "");
            fputc('}', out);
        }
    }
    fputc(']', out);
}

static void emit_ns(void)
{
    static const char *ns[] = {"cgroup", "ipc", "mnt", "net", "pid", "pid_for_children", "time",
                               "time_for_children", "user", "uts"};
    key("namespaces");
    fputc('{', out);
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        char p[64], l[256];
        snprintf(p, sizeof p, "/proc/self/ns/%s", ns[i]);
        ssize_t r = readlink(p, l, sizeof l - 1);
        if (i)
            fputc(',', out);
        jstr(ns[i]);
        fputc(':', out);
        if (r < 0)
            fputs("null", out);
        else {
            l[r] = 0;
            jstr(l);
        }
    }
    fputc('}', out);
}

static void emit_file_key(const char *k, const char *path)
{
    static char buf[65536];
    key(k);
    if (read_file(path, buf, sizeof buf) < 0)
        fputs("null", out);
    else
        jstr(buf);
}

static void emit_fds(void)
{
    key("fds");
    fputc('[', out);
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (d) {
        int self = dirfd(d);
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            int fd = atoi(e->d_name);
            if (fd == self)
                continue;
            char p[64], l[512];
            snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
            ssize_t r = readlink(p, l, sizeof l - 1);
            l[r < 0 ? 0 : r] = 0;
            if (n++)
                fputc(',', out);
            fprintf(out, "{\"fd\":%d,\"target\":", fd);
            jstr(l);
            fputc('}', out);
        }
        closedir(d);
    }
    fputc(']', out);
}

static char type_char(mode_t m)
{
    if (S_ISCHR(m)) return 'c';
    if (S_ISBLK(m)) return 'b';
    if (S_ISFIFO(m)) return 'p';
    if (S_ISDIR(m)) return 'd';
    if (S_ISLNK(m)) return 'l';
    if (S_ISSOCK(m)) return 's';
    return 'f';
}

struct list {
    const char *v[128];
    int n;
};

static void add(struct list *l, const char *v)
{
    if (l->n < 128)
        l->v[l->n++] = v;
}

static void emit_devices(struct list *devs)
{
    key("devices");
    fputc('{', out);
    for (int i = 0; i < devs->n; i++) {
        struct stat st;
        if (i)
            fputc(',', out);
        jstr(devs->v[i]);
        fputc(':', out);
        if (lstat(devs->v[i], &st) < 0) {
            fputs("null", out);
            continue;
        }
        fprintf(out, "{\"type\":\"%c\",\"major\":%u,\"minor\":%u,\"mode\":%u,\"uid\":%u,\"gid\":%u", type_char(st.st_mode),
                major(st.st_rdev), minor(st.st_rdev), (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid,
                (unsigned)st.st_gid);
        if (S_ISLNK(st.st_mode)) {
            char l[512];
            ssize_t r = readlink(devs->v[i], l, sizeof l - 1);
            l[r < 0 ? 0 : r] = 0;
            fputs(",\"link\":", out);
            jstr(l);
        }
        fputc('}', out);
    }
    fputc('}', out);
}

static void emit_paths(struct list *paths)
{
    key("paths");
    fputc('{', out);
    for (int i = 0; i < paths->n; i++) {
        const char *p = paths->v[i];
        struct stat st;
        if (i)
            fputc(',', out);
        jstr(p);
        fputc(':', out);
        if (lstat(p, &st) < 0) {
            fprintf(out, "{\"exists\":false,\"errno\":\"%s\"}", strerrorname_np(errno) ? strerrorname_np(errno) : "?");
            continue;
        }
        fprintf(out, "{\"exists\":true,\"type\":\"%c\"", type_char(st.st_mode));
        int fd = open(p, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0) {
            fprintf(out, ",\"readable\":false,\"read_errno\":\"%s\"", strerrorname_np(errno));
        } else if (S_ISDIR(st.st_mode)) {
            fputs(",\"readable\":true", out);
            close(fd);
        } else {
            char b[64];
            ssize_t r = read(fd, b, sizeof b);
            if (r < 0)
                fprintf(out, ",\"readable\":false,\"read_errno\":\"%s\"", strerrorname_np(errno));
            else
                fprintf(out, ",\"readable\":true,\"read_len\":%zd", r);
            close(fd);
        }
        if (access(p, W_OK) == 0)
            fputs(",\"writable\":true", out);
        else
            fprintf(out, ",\"writable\":false,\"write_errno\":\"%s\"", strerrorname_np(errno));
        fputc('}', out);
    }
    fputc('}', out);
}

static void emit_touch(struct list *t)
{
    key("touch");
    fputc('{', out);
    for (int i = 0; i < t->n; i++) {
        if (i)
            fputc(',', out);
        jstr(t->v[i]);
        fputc(':', out);
        int fd = open(t->v[i], O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
            jstr(strerrorname_np(errno));
        else {
            close(fd);
            jstr("ok");
        }
    }
    fputc('}', out);
}

static void emit_sysctls(struct list *s)
{
    key("sysctl");
    fputc('{', out);
    for (int i = 0; i < s->n; i++) {
        char path[PATH_MAX], buf[4096];
        snprintf(path, sizeof path, "/proc/sys/%s", s->v[i]);
        for (char *c = path + 10; *c; c++)
            if (*c == '.')
                *c = '/';
        if (i)
            fputc(',', out);
        jstr(s->v[i]);
        fputc(':', out);
        if (read_file(path, buf, sizeof buf) < 0)
            fputs("null", out);
        else {
            chomp(buf);
            jstr(buf);
        }
    }
    fputc('}', out);
}

static void emit_files(struct list *s)
{
    key("files");
    fputc('{', out);
    for (int i = 0; i < s->n; i++) {
        static char buf[4096];
        if (i)
            fputc(',', out);
        jstr(s->v[i]);
        fputc(':', out);
        if (read_file(s->v[i], buf, sizeof buf) < 0)
            fputs("null", out);
        else
            jstr(buf);
    }
    fputc('}', out);
}

int main(int argc, char **argv)
{
    struct list devs = {0}, paths = {0}, sysctls = {0}, touches = {0}, files = {0};
    double sleep_s = 0;
    int exit_code = 0;
    const char *out_path = NULL;
    char buf[PATH_MAX];

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            break;
        if (!strcmp(a, "--dev")) add(&devs, v);
        else if (!strcmp(a, "--path")) add(&paths, v);
        else if (!strcmp(a, "--sysctl")) add(&sysctls, v);
        else if (!strcmp(a, "--touch")) add(&touches, v);
        else if (!strcmp(a, "--file")) add(&files, v);
        else if (!strcmp(a, "--sleep")) sleep_s = atof(v);
        else if (!strcmp(a, "--exit")) exit_code = atoi(v);
        else if (!strcmp(a, "--out")) out_path = v;
        else continue;
        i++;
    }
    out = stdout;
    if (out_path) {
        out = fopen(out_path, "w");
        if (!out) {
            perror(out_path);
            return 125;
        }
    }

    first_field = 1;
    fputc('{', out);
    key("probe");
    fputs("1", out);
    key("pid");
    fprintf(out, "%d", (int)getpid());
    key("ppid");
    fprintf(out, "%d", (int)getppid());
    key("uid");
    fprintf(out, "%u", (unsigned)getuid());
    key("gid");
    fprintf(out, "%u", (unsigned)getgid());
    key("euid");
    fprintf(out, "%u", (unsigned)geteuid());
    key("egid");
    fprintf(out, "%u", (unsigned)getegid());
    {
        gid_t g[256];
        int n = getgroups(256, g);
        key("groups");
        fputc('[', out);
        for (int i = 0; i < n; i++)
            fprintf(out, "%s%u", i ? "," : "", (unsigned)g[i]);
        fputc(']', out);
    }
    {
        mode_t m = umask(0);
        umask(m);
        key("umask");
        fprintf(out, "%u", (unsigned)m);
    }
    key("cwd");
    if (getcwd(buf, sizeof buf))
        jstr(buf);
    else
        fputs("null", out);
    key("argv");
    fputc('[', out);
    for (int i = 0; i < argc; i++) {
        if (i)
            fputc(',', out);
        jstr(argv[i]);
    }
    fputc(']', out);
    key("env");
    fputc('[', out);
    for (char **e = environ; e && *e; e++) {
        if (e != environ)
            fputc(',', out);
        jstr(*e);
    }
    fputc(']', out);
    {
        struct utsname u;
        uname(&u);
        key("hostname");
        jstr(u.nodename);
        key("domainname");
        jstr(u.domainname);
        key("machine");
        jstr(u.machine);
    }
    emit_status();
    emit_rlimits();
    emit_mounts();
    emit_ns();
    emit_file_key("cgroup", "/proc/self/cgroup");
    emit_file_key("timens_offsets", "/proc/self/timens_offsets");
    key("oom_score_adj");
    if (read_file("/proc/self/oom_score_adj", buf, sizeof buf) < 0)
        fputs("null", out);
    else {
        chomp(buf);
        fputs(buf, out);
    }
    key("personality");
    fprintf(out, "%d", personality(0xffffffff));
    {
        struct sched_param sp = {0};
        int pol = sched_getscheduler(0);
        sched_getparam(0, &sp);
        errno = 0;
        int nice = getpriority(PRIO_PROCESS, 0);
        key("sched_policy");
        fprintf(out, "%d", pol & ~SCHED_RESET_ON_FORK);
        key("sched_reset_on_fork");
        fputs(pol & SCHED_RESET_ON_FORK ? "true" : "false", out);
        key("sched_priority");
        fprintf(out, "%d", sp.sched_priority);
        key("nice");
        fprintf(out, "%d", nice);
    }
    {
        long io = syscall(SYS_ioprio_get, 1 /* IOPRIO_WHO_PROCESS */, 0);
        key("ioprio");
        if (io < 0)
            fputs("null", out);
        else
            fprintf(out, "{\"class\":%ld,\"priority\":%ld}", io >> 13, io & 0xff);
    }
    {
        cpu_set_t set;
        key("cpus_allowed");
        fputc('[', out);
        if (sched_getaffinity(0, sizeof set, &set) == 0) {
            int n = 0;
            for (int c = 0; c < CPU_SETSIZE; c++)
                if (CPU_ISSET(c, &set))
                    fprintf(out, "%s%d", n++ ? "," : "", c);
        }
        fputc(']', out);
    }
    {
        int mode = -1;
        unsigned long mask[16] = {0};
        key("mempolicy");
        if (syscall(SYS_get_mempolicy, &mode, mask, sizeof mask * 8, NULL, 0) == 0)
            fprintf(out, "{\"mode\":%d,\"nodemask\":%lu}", mode & 0xffff, mask[0]);
        else
            fputs("null", out);
    }
    {
        struct timespec ts;
        key("clock");
        clock_gettime(CLOCK_MONOTONIC, &ts);
        fprintf(out, "{\"monotonic\":%lld", (long long)ts.tv_sec);
        clock_gettime(CLOCK_BOOTTIME, &ts);
        fprintf(out, ",\"boottime\":%lld}", (long long)ts.tv_sec);
    }
    {
        key("tty");
        fputc('{', out);
        for (int fd = 0; fd < 3; fd++) {
            fprintf(out, "%s\"%d\":", fd ? "," : "", fd);
            if (!isatty(fd)) {
                fputs("null", out);
                continue;
            }
            struct winsize ws = {0};
            ioctl(fd, TIOCGWINSZ, &ws);
            char *name = ttyname(fd);
            fputs("{\"name\":", out);
            if (name)
                jstr(name);
            else
                fputs("null", out);
            fprintf(out, ",\"rows\":%u,\"cols\":%u}", ws.ws_row, ws.ws_col);
        }
        fputc('}', out);
    }
    emit_fds();
    emit_devices(&devs);
    emit_paths(&paths);
    emit_touch(&touches);
    emit_sysctls(&sysctls);
    emit_files(&files);
    fputs("}\n", out);
    fflush(out);
    if (out != stdout) {
        fclose(out);
        puts("{\"probe\":1,\"written\":true}");
        fflush(stdout);
    }
    if (sleep_s > 0) {
        struct timespec ts = {(time_t)sleep_s, (long)((sleep_s - (time_t)sleep_s) * 1e9)};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
    }
    return exit_code;
}
