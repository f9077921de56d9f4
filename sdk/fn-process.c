/*
 * fn-process — main() of every `runtime: c` instance under the process and
 * sandbox executors: the channel is a stream socket inherited from the node,
 * on the descriptor named by MXU_CHANNEL_FD (3 when unset).
 *
 * Throughput is the point of this file. The node may pipeline several INVOKE
 * frames, so the loop is:
 *
 *   1. one read() of whatever is available, into a buffer reused for the
 *      instance's life (grown only to hold a frame larger than it);
 *   2. handle every complete frame in it, in order, each RESULT appended to
 *      one output buffer;
 *   3. when no complete frame is left, send the whole output in one write.
 *
 * So a burst of N requests costs one read and one write, not N of each. The
 * exceptions: mxu_log() sends at once (see fn.h), and output beyond
 * FLUSH_AT is sent early so that it does not pile up.
 *
 * Writes never wait blindly: when the socket is full, the loop polls for
 * both directions and keeps reading input meanwhile, so a host that writes
 * without reading cannot deadlock against us. The only write that does not
 * read meanwhile is the one made while a handler runs (mxu_log()), because
 * the request being handled points into the input buffer, which must not move.
 */
#include "fn-internal.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define IN_INITIAL (64u << 10)
#define FLUSH_AT   (256u << 10)

typedef struct proc {
    int fd;
    int eof;
    uint8_t *in; /* [start, len) is unconsumed input; one byte past len is always writable */
    size_t start;
    size_t len;
    size_t cap;
    uint64_t recv_ms; /* when the last read() returned */
} proc;

static uint64_t proc_now_ms(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Make room for `need` bytes of unconsumed input plus the spare byte. */
static int in_make_room(proc *p, size_t need)
{
    size_t have = p->len - p->start;
    if (p->start > 0 && (have == 0 || p->cap - p->start < need + 1 || p->cap - p->len < 4096)) {
        memmove(p->in, p->in + p->start, have);
        p->start = 0;
        p->len = have;
    }
    if (p->cap - p->start >= need + 1)
        return 0;
    /* Double for small frames; a big one gets exactly its size, so an 80 MiB
     * frame costs 80 MiB, not 128. */
    size_t cap = p->cap ? p->cap * 2 : IN_INITIAL;
    if (cap < need + 1)
        cap = need + 1;
    uint8_t *n = realloc(p->in, cap);
    if (!n)
        return -1;
    p->in = n;
    p->cap = cap;
    return 0;
}

/* One read of whatever is available. 1 when bytes arrived, 0 at EOF or when
 * nothing is available on a non-blocking descriptor, -1 on error. */
static int in_read(proc *p, size_t need)
{
    /* Always leave room to read something: while flushing, complete frames
     * may still be waiting in the buffer, and a zero-length read would look
     * like EOF. */
    size_t have = p->len - p->start;
    size_t want = need > have ? need : have + 4096;
    if (in_make_room(p, want) < 0) {
        mxu_fn_rt_fatal("out of memory buffering a %zu-byte frame", need);
        return -1;
    }
    for (;;) {
        ssize_t n = read(p->fd, p->in + p->len, p->cap - p->len - 1);
        if (n > 0) {
            p->len += (size_t)n;
            p->recv_ms = proc_now_ms(p);
            return 1;
        }
        if (n == 0) {
            p->eof = 1;
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        fprintf(stderr, "mxu: channel read failed: %s\n", strerror(errno));
        return -1;
    }
}

/* Bytes the frame at `start` needs in total: the header size while its
 * header is not complete, header + payload after; SIZE_MAX when the header is
 * invalid. */
static size_t pending_need(proc *p, mxu_frame_hdr *h)
{
    if (p->len - p->start < MXU_FRAME_HEADER_SIZE)
        return MXU_FRAME_HEADER_SIZE;
    if (mxu_frame_hdr_decode(p->in + p->start, h) < 0)
        return SIZE_MAX;
    return MXU_FRAME_HEADER_SIZE + (size_t)h->len;
}

/* Send the runtime's whole output. `may_read`: also read input while the
 * socket is full (only between frames, when nothing points into `in`). */
static int flush_out(proc *p, int may_read)
{
    mxu_fn_buf *out = mxu_fn_rt_out();
    size_t off = 0;
    while (off < out->len) {
        ssize_t n = send(p->fd, out->data + off, out->len - off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK) /* not a socket (a test's pipe, say): plain write */
            n = write(p->fd, out->data + off, out->len - off);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = {.fd = p->fd, .events = POLLOUT};
            if (may_read && !p->eof)
                pfd.events |= POLLIN;
            if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
                return -1;
            if ((pfd.revents & POLLIN) && may_read) {
                mxu_frame_hdr h;
                size_t need = pending_need(p, &h);
                if (need == SIZE_MAX)
                    need = MXU_FRAME_HEADER_SIZE; /* reported by the main loop */
                if (in_read(p, need) < 0)
                    return -1;
            }
            continue;
        }
        return -1; /* EPIPE, ECONNRESET: the node is gone */
    }
    out->len = 0;
    return 0;
}

static int runtime_flush(void *ctx)
{
    return flush_out(ctx, 0);
}

static const mxu_fn_transport process_transport = {
    .name = "process",
    .flush = runtime_flush,
    .now_ms = proc_now_ms,
};

static int channel_fd(void)
{
    const char *s = getenv("MXU_CHANNEL_FD");
    if (!s || !*s)
        return 3;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0 || v > 65535)
        return -1;
    return (int)v;
}

/* Send what is queued and leave with `code`. If the node is gone there is
 * nobody to report to, and the code stands. */
static void finish(proc *p, int code)
{
    flush_out(p, 0);
    exit(code);
}

int main(void)
{
    /* A vanished node must show up as EPIPE, not kill us mid-write; and lines a
     * function prints to stdout should reach the node's log in time. */
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);

    proc p = {.fd = channel_fd()};
    if (p.fd < 0) {
        fprintf(stderr, "mxu: MXU_CHANNEL_FD is not a descriptor number\n");
        return 2;
    }
    p.recv_ms = proc_now_ms(&p);
    mxu_fn_rt_start(&process_transport, &p);

    for (;;) {
        mxu_frame_hdr h;
        size_t need;
        /* Handle every complete frame in the buffer, in order. */
        for (;;) {
            need = pending_need(&p, &h);
            if (need == SIZE_MAX) {
                mxu_fn_rt_fatal("malformed frame header");
                finish(&p, 1);
            }
            if (p.len - p.start < need)
                break;
            enum mxu_fn_step step =
                mxu_fn_rt_frame(&h, p.in + p.start + MXU_FRAME_HEADER_SIZE, p.recv_ms);
            p.start += need;
            if (step == MXU_FN_EXIT_OK)
                finish(&p, 0);
            if (step == MXU_FN_EXIT_FAIL)
                finish(&p, 1);
            if (mxu_fn_rt_out()->len >= FLUSH_AT && flush_out(&p, 1) < 0)
                exit(0);
        }
        /* No complete frame left: send the batch in one write. */
        if (mxu_fn_rt_out()->len > 0 && flush_out(&p, 1) < 0)
            exit(0);
        need = pending_need(&p, &h);
        if (need == SIZE_MAX || p.len - p.start >= need)
            continue; /* the flush read a complete frame (or a bad header) */
        mxu_fn_rt_idle();
        if (p.start == p.len && p.cap > MXU_FN_KEEP_BUF) {
            free(p.in);
            p.in = NULL;
            p.start = p.len = p.cap = 0;
        }
        if (p.eof)
            exit(0); /* the node closed the channel: no more work will come */
        int r = in_read(&p, need);
        if (r < 0)
            finish(&p, 1);
        if (r == 0 && !p.eof) {
            /* A non-blocking descriptor with nothing to read: wait for input. */
            struct pollfd pfd = {.fd = p.fd, .events = POLLIN};
            poll(&pfd, 1, -1);
        }
    }
}
