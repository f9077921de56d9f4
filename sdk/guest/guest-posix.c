/*
 * The guest's system interface, POSIX-shaped so that the SDK's transport
 * (sdk/fn-process.c) and ordinary function code build unchanged: the
 * channel is descriptors 3 (in) and 4 (out), as under the process executor,
 * and each read or write of them is a hypercall (mxu-guest.h); stdout and
 * stderr go to the function's log through the STDERR hypercall. There are
 * no files, no processes, no signals and no sockets: those calls fail with
 * ENOSYS or EBADF, and docs/vm.md lists what a guest has.
 */
/* The build's -D_FILE_OFFSET_BITS=64 would rename open, fstat, mmap and
 * lseek to their *64 forms; the libraries linked into guests call the
 * plain names (and lseek64), which are the same calls on x86-64. */
#undef _FILE_OFFSET_BITS
#include "mxu-guest.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define FD_IN  3
#define FD_OUT 4

static int errno_value;

int *__errno_location(void)
{
    return &errno_value;
}

ssize_t read(int fd, void *buf, size_t n)
{
    if (fd != FD_IN) {
        errno = EBADF;
        return -1;
    }
    return (ssize_t)mxu_guest_recv(buf, n);
}

ssize_t write(int fd, const void *buf, size_t n)
{
    if (fd == FD_OUT || fd == FD_IN) {
        mxu_guest_send(MXU_VM_HC_WRITE, buf, n);
    } else if (fd == 1 || fd == 2) {
        mxu_guest_send(MXU_VM_HC_STDERR, buf, n);
    } else {
        errno = EBADF;
        return -1;
    }
    return (ssize_t)n;
}

ssize_t send(int fd, const void *buf, size_t n, int flags)
{
    (void)flags;
    return write(fd, buf, n);
}

/* Reads block in the host until bytes come and writes never wait, so every
 * channel descriptor is always ready. (glibc declares poll's array
 * write-only, which makes GCC call reading `events` uninitialized.) */
#pragma GCC diagnostic push
#ifndef __clang__ /* a GCC-only warning (clang builds the fuzz targets) */
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
int poll(struct pollfd *fds, nfds_t n, int timeout)
{
    (void)timeout;
    int ready = 0;
    for (nfds_t i = 0; i < n; i++) {
        short want = fds[i].events;
        short got = (short)(want & (POLLIN | POLLOUT));
        fds[i].revents = got;
        ready += got != 0;
    }
    return ready;
}
#pragma GCC diagnostic pop

int fcntl(int fd, int cmd, ...)
{
    (void)cmd;
    return fd >= 0 && fd <= FD_OUT ? 0 : (errno = EBADF, -1);
}

/* What fcntl is called under -D_FILE_OFFSET_BITS=64 (the SDK's build). */
int fcntl64(int fd, int cmd, ...)
{
    return fcntl(fd, cmd);
}

int close(int fd)
{
    (void)fd;
    return 0;
}

/* The environment: the channel's descriptor numbers, as the process
 * executor sets them. Function configuration comes from mxu_config(). */
char *getenv(const char *name)
{
    if (strcmp(name, "MXU_CHANNEL_OUT_FD") == 0)
        return (char *)"4";
    return NULL;
}

__sighandler_t signal(int sig, __sighandler_t h)
{
    (void)sig;
    (void)h;
    return SIG_DFL;
}

/* Clocks: the host writes both at start and after every hypercall, so they
 * are as fresh as the last exit (the SDK reads them when frames arrive). */
int clock_gettime(clockid_t clk, struct timespec *ts)
{
    uint64_t ms = clk == CLOCK_REALTIME ? MXU_GUEST_CTL->wall_ms : MXU_GUEST_CTL->now_ms;
    ts->tv_sec = (time_t)(ms / 1000);
    ts->tv_nsec = (long)(ms % 1000) * 1000000L;
    return 0;
}

time_t time(time_t *t)
{
    time_t v = (time_t)(MXU_GUEST_CTL->wall_ms / 1000);
    if (t)
        *t = v;
    return v;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
    (void)tz;
    uint64_t ms = MXU_GUEST_CTL->wall_ms;
    tv->tv_sec = (time_t)(ms / 1000);
    tv->tv_usec = (suseconds_t)(ms % 1000) * 1000;
    return 0;
}

/* One guest, one thread, one "process": its id is 1. */
pid_t getpid(void)
{
    return 1;
}

int sched_yield(void)
{
    return 0;
}

/* Locks: a guest runs one thread (libsodium guards its one-time setup). */
int pthread_mutex_lock(pthread_mutex_t *m)
{
    (void)m;
    return 0;
}

int pthread_mutex_unlock(pthread_mutex_t *m)
{
    (void)m;
    return 0;
}

/* Entropy: the host's getrandom(), through the RANDOM hypercall; never
 * blocks and never fails (flags are accepted and mean nothing here). */
ssize_t getrandom(void *buf, size_t n, unsigned flags)
{
    (void)flags;
    if (n > (size_t)INT32_MAX) /* as Linux: at most this much per call */
        n = INT32_MAX;
    mxu_guest_random(buf, n);
    return (ssize_t)n;
}

int getentropy(void *buf, size_t n)
{
    if (n > 256) {
        errno = EIO;
        return -1;
    }
    mxu_guest_random(buf, n);
    return 0;
}

long sysconf(int name)
{
    if (name == _SC_PAGESIZE)
        return 4096;
    if (name == _SC_NPROCESSORS_ONLN || name == _SC_NPROCESSORS_CONF)
        return 1;
    errno = EINVAL;
    return -1;
}

/* ---- what a guest does not have: files, mappings, signals -------------------------
 * Library code reaches these only on paths a function should not take in a
 * guest (jansson's json_load_file, zlib's gz* files, libsodium's guarded
 * sodium_malloc); they fail the way the callers handle. */

int open(const char *path, int flags, ...)
{
    (void)path;
    (void)flags;
    errno = ENOSYS;
    return -1;
}

off_t lseek(int fd, off_t off, int whence)
{
    (void)fd;
    (void)off;
    (void)whence;
    errno = ESPIPE;
    return -1;
}

off64_t lseek64(int fd, off64_t off, int whence)
{
    return lseek(fd, off, whence);
}

int fstat(int fd, struct stat *st)
{
    (void)st;
    errno = fd >= 0 && fd <= FD_OUT ? ENOSYS : EBADF;
    return -1;
}

FILE *fopen(const char *path, const char *mode)
{
    (void)path;
    (void)mode;
    errno = ENOSYS;
    return NULL;
}

int fclose(FILE *f)
{
    (void)f;
    return 0;
}

/* stdin is not the channel: it is empty. */
int fgetc(FILE *f)
{
    (void)f;
    return EOF;
}

int getc(FILE *f)
{
    return fgetc(f);
}

void *mmap(void *addr, size_t n, int prot, int flags, int fd, off_t off)
{
    (void)addr;
    (void)n;
    (void)prot;
    (void)flags;
    (void)fd;
    (void)off;
    errno = ENOMEM;
    return MAP_FAILED;
}

int munmap(void *addr, size_t n)
{
    (void)addr;
    (void)n;
    errno = EINVAL;
    return -1;
}

int mprotect(void *addr, size_t n, int prot)
{
    (void)addr;
    (void)n;
    (void)prot;
    errno = ENOSYS;
    return -1;
}

/* Nothing is swapped out of a guest: locking memory is a no-op that works. */
int mlock(const void *addr, size_t n)
{
    (void)addr;
    (void)n;
    return 0;
}

int munlock(const void *addr, size_t n)
{
    (void)addr;
    (void)n;
    return 0;
}

int madvise(void *addr, size_t n, int advice)
{
    (void)addr;
    (void)n;
    (void)advice;
    return 0;
}

/* A signal to itself ends the guest, as the default action would for the
 * signals libraries raise (libsodium: SIGSEGV on a guard-page misuse). */
int raise(int sig)
{
    fprintf(stderr, "mxu guest: raise(%d)\n", sig);
    mxu_guest_exit(128 + (sig & 0x7f));
}

void exit(int code)
{
    mxu_guest_exit(code);
}

void _exit(int code)
{
    mxu_guest_exit(code);
}

void abort(void)
{
    static const char msg[] = "mxu guest: abort()\n";
    mxu_guest_send(MXU_VM_HC_STDERR, msg, sizeof(msg) - 1);
    mxu_guest_exit(134);
}

void __assert_fail(const char *expr, const char *file, unsigned line, const char *fn);
void __assert_fail(const char *expr, const char *file, unsigned line, const char *fn)
{
    fprintf(stderr, "%s:%u: %s: assertion '%s' failed\n", file, line, fn, expr);
    abort();
}

void __stack_chk_fail(void);
void __stack_chk_fail(void)
{
    static const char msg[] = "mxu guest: stack smashing detected\n";
    mxu_guest_send(MXU_VM_HC_STDERR, msg, sizeof(msg) - 1);
    mxu_guest_exit(134);
}

char *strerror(int e)
{
    switch (e) {
    case 0:
        return (char *)"Success";
    case EBADF:
        return (char *)"Bad file descriptor";
    case ENOMEM:
        return (char *)"Cannot allocate memory";
    case EINVAL:
        return (char *)"Invalid argument";
    case ERANGE:
        return (char *)"Numerical result out of range";
    case ENOSYS:
        return (char *)"Function not implemented (not in a vm guest)";
    case EPIPE:
        return (char *)"Broken pipe";
    default:
        return (char *)"Unknown error";
    }
}

/* ---- stdio: unbuffered streams to the function's log ----------------------------- */

static FILE streams[3];
FILE *stdin = &streams[0];
FILE *stdout = &streams[1];
FILE *stderr = &streams[2];

int setvbuf(FILE *f, char *buf, int mode, size_t size)
{
    (void)f;
    (void)buf;
    (void)mode;
    (void)size;
    return 0;
}

int fflush(FILE *f)
{
    (void)f;
    return 0;
}

size_t fwrite(const void *p, size_t size, size_t n, FILE *f)
{
    if (f != stdout && f != stderr) {
        errno = EBADF;
        return 0;
    }
    if (size && n)
        mxu_guest_send(MXU_VM_HC_STDERR, p, size * n);
    return n;
}

int fputs(const char *s, FILE *f)
{
    return fwrite(s, 1, strlen(s), f) ? 0 : EOF;
}

int puts(const char *s)
{
    size_t n = strlen(s);
    char *line = malloc(n + 1);
    if (line == NULL)
        return EOF;
    memcpy(line, s, n);
    line[n] = '\n';
    fwrite(line, 1, n + 1, stdout);
    free(line);
    return 0;
}

int fputc(int c, FILE *f)
{
    char ch = (char)c;
    return fwrite(&ch, 1, 1, f) ? c : EOF;
}

int putc(int c, FILE *f)
{
    return fputc(c, f);
}

int putchar(int c)
{
    return fputc(c, stdout);
}

int vfprintf(FILE *f, const char *fmt, va_list ap)
{
    char small[1024];
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    if (n < 0) {
        va_end(ap2);
        return n;
    }
    if ((size_t)n < sizeof(small)) {
        fwrite(small, 1, (size_t)n, f);
    } else {
        char *big = malloc((size_t)n + 1);
        if (big) {
            vsnprintf(big, (size_t)n + 1, fmt, ap2);
            fwrite(big, 1, (size_t)n, f);
            free(big);
        }
    }
    va_end(ap2);
    return n;
}

int fprintf(FILE *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vfprintf(f, fmt, ap);
    va_end(ap);
    return n;
}

int printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vfprintf(stdout, fmt, ap);
    va_end(ap);
    return n;
}
