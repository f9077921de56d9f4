/*
 * fn-process — main() of every `runtime: c` instance under the process and
 * sandbox executors. The channel is inherited from the node: either two
 * pipes, read from MXU_CHANNEL_FD (3 when unset) and written to
 * MXU_CHANNEL_OUT_FD (the process executor), or one stream socket on
 * MXU_CHANNEL_FD, both ways (MXU_CHANNEL_OUT_FD unset).
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
 * exceptions: mxu_log() sends at once (see fn.h), a descriptor operation
 * sends its RES_OP (and everything queued before it) at once, and output
 * beyond FLUSH_AT is sent early so that it does not pile up.
 *
 * While a frame is being handled, the request points into the input buffer,
 * so that buffer must not move or change. Input read during that time — the
 * RES_REPLY a handler waits for, and the INVOKEs and BYE the host pipelines
 * meanwhile — goes to a second buffer, `aside`, which begins with the partial
 * frame that was at the end of the input buffer (moved there once). The
 * runtime consumes replies out of `aside`; when the frame is done, whatever
 * is left goes back behind the input buffer's data, so the stream is whole
 * again, in order, minus the replies. The common case (only the reply came)
 * leaves `aside` empty and copies nothing.
 *
 * Writes never wait blindly: when the channel is full, the loop polls for
 * both directions and keeps reading input meanwhile (into `aside` while a
 * frame is handled), so a host that writes without reading cannot deadlock
 * against us.
 */
#include "fn-internal.h"

#include <errno.h>
#include <fcntl.h>
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
    int fd;  /* read from the node */
    int wfd; /* written to the node: fd itself for a socket */
    int eof;
    uint8_t *in; /* [start, len) is unconsumed input; one byte past len is always writable */
    size_t start;
    size_t len;
    size_t cap;
    uint64_t recv_ms; /* when the last read() returned */

    /* While a frame is handled (see the top of the file). */
    int busy;          /* inside mxu_fn_rt_frame(): `in` must not move */
    size_t busy_end;   /* where the frame being handled ends in `in` */
    uint8_t busy_byte; /* in[busy_end] before the runtime put a NUL there */
    int split;         /* the partial tail of `in` has moved to `aside` */
    uint8_t *aside;    /* [0, aside_len) is input read while busy */
    size_t aside_len, aside_cap;
    size_t aside_seen;         /* bytes of `aside` handed out as whole frames */
    size_t last_at, last_size; /* the frame handed out last, for drop_frame */
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

/* ---- input while a frame is handled ------------------------------------------------- */

static int aside_reserve(proc *p, size_t n)
{
    if (p->aside_cap - p->aside_len >= n)
        return 0;
    if (n > SIZE_MAX / 2 - p->aside_len)
        return -1;
    size_t cap = p->aside_cap ? p->aside_cap : IN_INITIAL;
    while (cap < p->aside_len + n)
        cap *= 2;
    uint8_t *a = realloc(p->aside, cap);
    if (!a)
        return -1;
    p->aside = a;
    p->aside_cap = cap;
    return 0;
}

/* Before the first read while busy: move the partial frame at the end of
 * `in` (after the whole frames already buffered behind the one being
 * handled) to `aside`, so that reads continue it there. Truncating `in`
 * moves nothing the request points to. */
static int aside_split(proc *p)
{
    if (p->split)
        return 0;
    size_t at = p->busy_end;
    for (;;) {
        /* The runtime NUL-terminates the body in place, on the byte after
         * the frame, until the handler returns: read the header of the frame
         * that starts there with its real first byte. */
        uint8_t hb[MXU_FRAME_HEADER_SIZE];
        mxu_frame_hdr h;
        if (p->len - at < MXU_FRAME_HEADER_SIZE)
            break;
        memcpy(hb, p->in + at, sizeof(hb));
        if (at == p->busy_end)
            hb[0] = p->busy_byte;
        if (mxu_frame_hdr_decode(hb, &h) < 0 || p->len - at < MXU_FRAME_HEADER_SIZE + (size_t)h.len)
            break; /* partial, or a bad header that wait_frame will report */
        at += MXU_FRAME_HEADER_SIZE + (size_t)h.len;
    }
    size_t tail = p->len - at;
    if (aside_reserve(p, tail) < 0) {
        mxu_fn_rt_fatal("out of memory buffering input during a call");
        return -1;
    }
    if (tail > 0)
        memcpy(p->aside, p->in + at, tail);
    /* That byte now lives here; the runtime's restore lands past p->len. */
    if (tail > 0 && at == p->busy_end)
        p->aside[0] = p->busy_byte;
    p->aside_len = tail;
    p->aside_seen = 0;
    p->len = at;
    p->split = 1;
    return 0;
}

/* One read of whatever is available, into `aside`. 1 when bytes arrived, 0
 * at EOF or when nothing is available, -1 on error (reported). */
static int aside_read(proc *p)
{
    if (aside_split(p) < 0)
        return -1;
    /* Room for the rest of the frame being received, and at least a page. */
    size_t want = 4096, avail = p->aside_len - p->aside_seen;
    mxu_frame_hdr h;
    if (avail >= MXU_FRAME_HEADER_SIZE && mxu_frame_hdr_decode(p->aside + p->aside_seen, &h) == 0 &&
        MXU_FRAME_HEADER_SIZE + (size_t)h.len > avail + want)
        want = MXU_FRAME_HEADER_SIZE + (size_t)h.len - avail;
    if (aside_reserve(p, want) < 0) {
        mxu_fn_rt_fatal("out of memory buffering a %zu-byte frame during a call", want);
        return -1;
    }
    for (;;) {
        ssize_t n = read(p->fd, p->aside + p->aside_len, p->aside_cap - p->aside_len);
        if (n > 0) {
            p->aside_len += (size_t)n;
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

/* After the frame: put what is left of `aside` back behind the data in `in`
 * (which may move now), so the main loop sees the rest of the stream in
 * order. */
static int aside_rejoin(proc *p)
{
    if (!p->split)
        return 0;
    size_t n = p->aside_len;
    p->split = 0;
    p->aside_len = p->aside_seen = p->last_size = 0;
    if (n == 0)
        return 0;
    if (in_make_room(p, p->len - p->start + n) < 0) {
        mxu_fn_rt_fatal("out of memory buffering %zu bytes of input", n);
        return -1;
    }
    memcpy(p->in + p->len, p->aside, n);
    p->len += n;
    return 0;
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
        ssize_t n;
        if (p->wfd != p->fd) /* a pipe, made non-blocking at start */
            n = write(p->wfd, out->data + off, out->len - off);
        else
            n = send(p->fd, out->data + off, out->len - off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK) /* not a socket (a test's pipe, say): plain write */
            n = write(p->fd, out->data + off, out->len - off);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            /* pfd[0] is the read side (only polled when it may be read),
             * pfd[1] the write side; the same descriptor for a socket. */
            struct pollfd pfd[2] = {{.fd = -1}, {.fd = p->wfd, .events = POLLOUT}};
            if (may_read && !p->eof) {
                pfd[0].fd = p->fd;
                pfd[0].events = POLLIN;
            }
            if (poll(pfd, 2, -1) < 0 && errno != EINTR)
                return -1;
            /* A pipe whose writer closed reports POLLHUP, not POLLIN: the read
             * then sees the EOF. */
            short in_ev = pfd[0].revents & (POLLIN | POLLHUP | POLLERR) ? POLLIN : 0;
            if ((in_ev & POLLIN) && may_read && p->busy) {
                if (aside_read(p) < 0)
                    return -1;
            } else if ((in_ev & POLLIN) && may_read) {
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
    return flush_out(ctx, 1); /* reads go to `aside`: called only while busy */
}

/* See mxu_fn_transport.wait_frame. */
static int runtime_wait_frame(void *ctx, mxu_frame_hdr *h, uint8_t **payload)
{
    proc *p = ctx;
    if (flush_out(p, 1) < 0)
        return 0; /* the host is gone */
    if (aside_split(p) < 0)
        return -1;
    for (;;) {
        size_t avail = p->aside_len - p->aside_seen;
        if (avail >= MXU_FRAME_HEADER_SIZE) {
            if (mxu_frame_hdr_decode(p->aside + p->aside_seen, h) < 0) {
                mxu_fn_rt_fatal("malformed frame header");
                return -1;
            }
            size_t need = MXU_FRAME_HEADER_SIZE + (size_t)h->len;
            if (avail >= need) {
                p->last_at = p->aside_seen;
                p->last_size = need;
                *payload = p->aside + p->aside_seen + MXU_FRAME_HEADER_SIZE;
                p->aside_seen += need;
                return 1;
            }
        }
        if (p->eof)
            return 0;
        int r = aside_read(p);
        if (r < 0)
            return -1;
        if (r == 0 && !p->eof) {
            struct pollfd pfd = {.fd = p->fd, .events = POLLIN};
            poll(&pfd, 1, -1);
        }
    }
}

static void runtime_drop_frame(void *ctx)
{
    proc *p = ctx;
    if (p->last_size == 0)
        return;
    size_t after = p->last_at + p->last_size;
    memmove(p->aside + p->last_at, p->aside + after, p->aside_len - after);
    p->aside_len -= p->last_size;
    p->aside_seen -= p->last_size;
    p->last_size = 0;
}

static void finish(proc *p, int code) __attribute__((noreturn));

static __attribute__((noreturn)) void runtime_exit(void *ctx, int code)
{
    finish(ctx, code);
}

/* The vm guest runtime builds this same file over its hypercall-backed
 * read/write (sdk/guest/guest-posix.c) and names itself in HELLO. */
#ifndef MXU_FN_TRANSPORT_NAME
#define MXU_FN_TRANSPORT_NAME "process"
#endif

static const mxu_fn_transport process_transport = {
    .name = MXU_FN_TRANSPORT_NAME,
    .flush = runtime_flush,
    .now_ms = proc_now_ms,
    .wait_frame = runtime_wait_frame,
    .drop_frame = runtime_drop_frame,
    .exit = runtime_exit,
};

/* The descriptor named by environment variable `var`; `dflt` when unset, -1
 * when it is not a number. */
static int channel_fd(const char *var, int dflt)
{
    const char *s = getenv(var);
    if (!s || !*s)
        return dflt;
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

    proc p = {.fd = channel_fd("MXU_CHANNEL_FD", 3)};
    p.wfd = channel_fd("MXU_CHANNEL_OUT_FD", p.fd);
    if (p.fd < 0 || p.wfd < 0) {
        fprintf(stderr, "mxu: MXU_CHANNEL_FD or MXU_CHANNEL_OUT_FD is not a descriptor number\n");
        return 2;
    }
    /* Our end of the outgoing pipe is ours alone: non-blocking, so that a
     * full pipe never stops us reading (see flush_out). */
    if (p.wfd != p.fd) {
        int fl = fcntl(p.wfd, F_GETFL);
        if (fl < 0 || fcntl(p.wfd, F_SETFL, fl | O_NONBLOCK) < 0) {
            fprintf(stderr, "mxu: MXU_CHANNEL_OUT_FD %d: %s\n", p.wfd, strerror(errno));
            return 2;
        }
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
            p.busy = 1;
            p.busy_end = p.start + need;
            p.busy_byte = p.in[p.busy_end]; /* the spare byte when nothing follows */
            enum mxu_fn_step step =
                mxu_fn_rt_frame(&h, p.in + p.start + MXU_FRAME_HEADER_SIZE, p.recv_ms);
            p.busy = 0;
            p.start += need;
            if (aside_rejoin(&p) < 0)
                finish(&p, 1);
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
        if (p.aside_cap > MXU_FN_KEEP_BUF) { /* empty between frames */
            free(p.aside);
            p.aside = NULL;
            p.aside_cap = 0;
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
