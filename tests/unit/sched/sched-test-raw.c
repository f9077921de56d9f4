/*
 * sched-test-raw — an instance that speaks the channel protocol by hand
 * (src/unit/frame.h), for test-sched.c to check how the scheduler copes with
 * instances that fail to start or break the protocol. The manifest's env
 * MODE chooses the behaviour:
 *
 *   exit-early   print a line on stderr and exit 3 before any HELLO
 *   garbage      print a line on stderr, then write text (not a frame) on
 *                the channel instead of HELLO
 *   silent       never say anything; wait for the channel to close
 *   bad-version  say HELLO with protocol version 99
 *   hostile      a proper HELLO, then answer each INVOKE by its query:
 *                  ok          RESULT 200 "pid=<pid>"
 *                  malformed   a RESULT frame whose payload does not decode
 *                  unknown-id  a RESULT for an id it was never given
 *                  huge        a frame header claiming 4 GiB of payload
 *                  oversize    a header claiming 70 MiB (valid for the
 *                              codec, more than the channel takes)
 *                  badtype     a frame of a type instances never send
 *
 * Every process appends "<pid>\n" to starts.log in its working directory, so
 * a test can count the starts. Built without sanitizers (see meson.build).
 */
#include "unit/frame.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The channel: read from fd 3, written to MXU_CHANNEL_OUT_FD (fd 3 too when
 * the executor gives a socket). */
#define CH 3
static int ch_out = CH;

static void record_start(void)
{
    int fd = open("starts.log", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    char line[32];
    int n = snprintf(line, sizeof(line), "%d\n", (int)getpid());
    if (write(fd, line, (size_t)n) < 0)
        perror("starts.log");
    close(fd);
}

static void write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            exit(0); /* the node is gone */
        c += w;
        n -= (size_t)w;
    }
}

/* 0, or -1 at end of file. */
static int read_full(int fd, void *p, size_t n)
{
    char *c = p;
    while (n > 0) {
        ssize_t r = read(fd, c, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

static void send_frame(uint8_t type, uint64_t id, const void *payload, uint32_t len)
{
    mxu_frame_hdr h = {.len = len, .type = type, .id = id};
    uint8_t hb[MXU_FRAME_HEADER_SIZE];
    mxu_frame_hdr_encode(&h, hb);
    write_all(ch_out, hb, sizeof(hb));
    if (len)
        write_all(ch_out, payload, len);
}

/* Read one frame; the payload is malloc'ed (caller frees). -1 at EOF. */
static int recv_frame(mxu_frame_hdr *h, uint8_t **payload)
{
    uint8_t hb[MXU_FRAME_HEADER_SIZE];
    if (read_full(CH, hb, sizeof(hb)) < 0 || mxu_frame_hdr_decode(hb, h) < 0)
        return -1;
    *payload = malloc((size_t)h->len + 1);
    if (*payload == NULL || read_full(CH, *payload, h->len) < 0) {
        free(*payload);
        return -1;
    }
    return 0;
}

static void __attribute__((noreturn)) wait_for_eof(void)
{
    char b[4096];
    for (;;) {
        ssize_t r = read(CH, b, sizeof(b));
        if (r == 0 || (r < 0 && errno != EINTR))
            exit(0);
    }
}

static void hello(uint32_t proto)
{
    uint8_t p[256];
    size_t len = mxu_hello_encode(p, sizeof(p), "sched-test-raw");
    p[0] = (uint8_t)proto; /* proto_version is the first u32, little-endian */
    p[1] = (uint8_t)(proto >> 8);
    p[2] = (uint8_t)(proto >> 16);
    p[3] = (uint8_t)(proto >> 24);
    send_frame(MXU_FRAME_HELLO, 0, p, (uint32_t)len);
}

static void answer(uint64_t id, const mxu_slice *q)
{
    char what[64] = "";
    snprintf(what, sizeof(what), "%.*s", (int)q->len, q->ptr);
    if (strcmp(what, "malformed") == 0) {
        send_frame(MXU_FRAME_RESULT, id, "\x01\x02\x03", 3);
    } else if (strcmp(what, "unknown-id") == 0) {
        uint8_t p[64];
        size_t len = mxu_result_encode(p, sizeof(p), 200, NULL, NULL, 0, (mxu_slice){"stray", 5});
        send_frame(MXU_FRAME_RESULT, id + 1000000007u, p, (uint32_t)len);
    } else if (strcmp(what, "huge") == 0 || strcmp(what, "oversize") == 0) {
        mxu_frame_hdr h = {
            .len = what[0] == 'h' ? 0xFFFFFFFFu : 70u << 20, .type = MXU_FRAME_RESULT, .id = id};
        uint8_t hb[MXU_FRAME_HEADER_SIZE];
        mxu_frame_hdr_encode(&h, hb);
        write_all(ch_out, hb, sizeof(hb));
        char junk[256];
        memset(junk, 'j', sizeof(junk));
        write_all(ch_out, junk, sizeof(junk)); /* and then some bytes of "payload" */
    } else if (strcmp(what, "badtype") == 0) {
        send_frame(MXU_FRAME_INVOKE, id, "", 0);
    } else {
        char body[64];
        int n = snprintf(body, sizeof(body), "pid=%d", (int)getpid());
        uint8_t p[128];
        size_t len =
            mxu_result_encode(p, sizeof(p), 200, NULL, NULL, 0, (mxu_slice){body, (uint32_t)n});
        send_frame(MXU_FRAME_RESULT, id, p, (uint32_t)len);
    }
}

int main(void)
{
    record_start();
    const char *out = getenv("MXU_CHANNEL_OUT_FD");
    if (out && *out)
        ch_out = atoi(out);
    const char *mode = getenv("MODE");
    if (mode == NULL)
        mode = "hostile";

    if (strcmp(mode, "exit-early") == 0) {
        fprintf(stderr, "sched-test-raw: cannot open config.yaml\n");
        return 3;
    }
    if (strcmp(mode, "garbage") == 0) {
        fprintf(stderr, "sched-test-raw: about to misbehave\n");
        static const char text[] = "this is not a frame header, it is just text\n";
        write_all(ch_out, text, sizeof(text) - 1);
        wait_for_eof();
    }
    if (strcmp(mode, "silent") == 0)
        wait_for_eof();
    if (strcmp(mode, "bad-version") == 0) {
        hello(99);
        wait_for_eof();
    }

    hello(MXU_PROTO_VERSION);
    for (;;) {
        mxu_frame_hdr h;
        uint8_t *payload;
        if (recv_frame(&h, &payload) < 0)
            return 0;
        if (h.type == MXU_FRAME_BYE) {
            free(payload);
            return 0;
        }
        if (h.type == MXU_FRAME_INVOKE) {
            mxu_invoke_msg m;
            if (mxu_invoke_decode(payload, h.len, &m) == 0)
                answer(h.id, &m.query);
        }
        free(payload);
    }
}
