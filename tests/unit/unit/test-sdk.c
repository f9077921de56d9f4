/*
 * Unit tests for the C SDK (sdk/, libmxufn.a), from the outside: each case
 * starts a real instance program (sdk-test-instance, or a function compiled
 * with the node's own deploy-time command line) on a socketpair and plays the
 * host, frame by frame: HELLO, INIT, pipelined INVOKEs, RESULT and LOG frames,
 * BYE, EOF, and the garbage a broken host could send.
 *
 * The host side here reads while it writes (like the node's libuv loop), so
 * a 5 MiB body can go both ways without either side blocking the other.
 */
#include "registry/registry.h"
#include "test.h"
#include "unit/frame.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#ifndef MXU_TEST_INSTANCE
#error "build with -DMXU_TEST_INSTANCE=path (tests/unit/unit/meson.build)"
#endif

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

#define IO_TIMEOUT_MS 10000

/* ---- a host, in miniature ----------------------------------------------------- */

typedef struct host {
    pid_t pid;
    int fd;
    uint8_t *out; /* bytes not yet written to the instance */
    size_t out_len, out_cap;
    uint8_t *in; /* bytes read, not yet returned as frames */
    size_t in_len, in_cap;
    int eof;
} host;

typedef struct frame {
    mxu_frame_hdr h;
    uint8_t *payload;
} frame;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void spawn_with(host *h, const char *binary, int sock_type, rlim_t as_limit)
{
    int sv[2];
    signal(SIGPIPE, SIG_IGN); /* an instance that dies early is reported, not fatal */
    CHECK(socketpair(AF_UNIX, sock_type | SOCK_CLOEXEC, 0, sv) == 0);
    memset(h, 0, sizeof(*h));
    h->pid = fork();
    CHECK(h->pid >= 0);
    if (h->pid == 0) {
        /* The node hands the channel over as descriptor 3 (dup2 clears CLOEXEC;
         * when it already is 3, clear it by hand). */
        if (sv[1] == 3)
            fcntl(3, F_SETFD, 0);
        else if (dup2(sv[1], 3) < 0)
            _exit(126);
        setenv("MXU_CHANNEL_FD", "3", 1);
        if (as_limit) {
            struct rlimit rl = {as_limit, as_limit};
            setrlimit(RLIMIT_AS, &rl);
        }
        execl(binary, binary, (char *)NULL);
        _exit(127);
    }
    close(sv[1]);
    h->fd = sv[0];
    fcntl(h->fd, F_SETFL, fcntl(h->fd, F_GETFL) | O_NONBLOCK);
}

static void spawn(host *h)
{
    spawn_with(h, MXU_TEST_INSTANCE, SOCK_STREAM, 0);
}

static void queue(host *h, const void *p, size_t n)
{
    if (n == 0)
        return;
    if (h->out_cap - h->out_len < n) {
        h->out_cap = (h->out_len + n) * 2;
        h->out = realloc(h->out, h->out_cap);
    }
    memcpy(h->out + h->out_len, p, n);
    h->out_len += n;
}

static void queue_frame(host *h, uint8_t type, uint64_t id, const void *payload, size_t len)
{
    mxu_frame_hdr fh = {.len = (uint32_t)len, .type = type, .id = id};
    uint8_t b[MXU_FRAME_HEADER_SIZE];
    mxu_frame_hdr_encode(&fh, b);
    queue(h, b, sizeof(b));
    queue(h, payload, len);
}

/* Write and read until a whole frame is buffered (returns 1) or the instance
 * closed the channel with none (0). Fails the test after IO_TIMEOUT_MS. */
static int pump(host *h, frame *f)
{
    uint64_t give_up = now_ms() + IO_TIMEOUT_MS;
    for (;;) {
        if (h->in_len >= MXU_FRAME_HEADER_SIZE) {
            CHECK_EQ_INT(mxu_frame_hdr_decode(h->in, &f->h), 0);
            size_t need = MXU_FRAME_HEADER_SIZE + f->h.len;
            if (h->in_len >= need) {
                f->payload = malloc(f->h.len + 1);
                memcpy(f->payload, h->in + MXU_FRAME_HEADER_SIZE, f->h.len);
                memmove(h->in, h->in + need, h->in_len - need);
                h->in_len -= need;
                return 1;
            }
        }
        if (h->eof)
            return 0;
        struct pollfd pfd = {.fd = h->fd, .events = POLLIN | (h->out_len ? POLLOUT : 0)};
        int left = (int)(give_up - now_ms());
        if (left <= 0)
            MXU_TEST_FAIL_("no frame from the instance within %d ms", IO_TIMEOUT_MS);
        poll(&pfd, 1, left);
        if (pfd.revents & POLLOUT) {
            ssize_t n = write(h->fd, h->out, h->out_len);
            if (n > 0) {
                memmove(h->out, h->out + n, h->out_len - (size_t)n);
                h->out_len -= (size_t)n;
            } else if (n < 0 && errno != EAGAIN) {
                h->out_len = 0; /* the instance is gone; reading tells the rest */
            }
        }
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            if (h->in_cap - h->in_len < 65536) {
                h->in_cap = h->in_cap * 2 + 65536;
                h->in = realloc(h->in, h->in_cap);
            }
            ssize_t n = read(h->fd, h->in + h->in_len, h->in_cap - h->in_len);
            if (n > 0)
                h->in_len += (size_t)n;
            else if (n == 0 || (errno != EAGAIN && errno != EINTR))
                h->eof = 1;
        }
    }
}

static frame expect(host *h, uint8_t type, uint64_t id)
{
    frame f;
    if (!pump(h, &f))
        MXU_TEST_FAIL_("channel closed while expecting frame type %u id %llu", type,
                       (unsigned long long)id);
    if (f.h.type != type || f.h.id != id) {
        mxu_log_msg m; /* a FATAL says why: show it */
        if (f.h.type == MXU_FRAME_FATAL && mxu_log_decode(f.payload, f.h.len, &m) == 0)
            fprintf(stderr, "  FATAL: %.*s\n", (int)m.text.len, m.text.ptr);
        MXU_TEST_FAIL_("expected frame type %u id %llu, got type %u id %llu", type,
                       (unsigned long long)id, f.h.type, (unsigned long long)f.h.id);
    }
    return f;
}

/* Wait for the instance to exit; its exit status, or -1 when killed. */
static int wait_exit(host *h)
{
    uint64_t give_up = now_ms() + IO_TIMEOUT_MS;
    int st;
    while (waitpid(h->pid, &st, WNOHANG) == 0) {
        if (now_ms() > give_up) {
            kill(h->pid, SIGKILL);
            MXU_TEST_FAIL_("instance did not exit within %d ms", IO_TIMEOUT_MS);
        }
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    close(h->fd);
    free(h->in);
    free(h->out);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void hello_and_init(host *h, const char *const *cfg_names, const char *const *cfg_values,
                           uint32_t ncfg)
{
    frame f = expect(h, MXU_FRAME_HELLO, 0);
    mxu_hello_msg hello;
    CHECK_EQ_INT(mxu_hello_decode(f.payload, f.h.len, &hello), 0);
    CHECK_EQ_U64(hello.proto_version, MXU_PROTO_VERSION);
    CHECK(hello.sdk.len > 6 && memcmp(hello.sdk.ptr, "mxu-c/", 6) == 0);
    free(f.payload);
    uint8_t buf[4096];
    size_t len = mxu_init_encode(buf, sizeof(buf), "t", 3, 4, cfg_names, cfg_values, ncfg);
    CHECK(len <= sizeof(buf));
    queue_frame(h, MXU_FRAME_INIT, 0, buf, len);
}

static void start(host *h)
{
    static const char *const names[] = {"GREETING", "EMPTY"};
    static const char *const values[] = {"hi", ""};
    spawn(h);
    hello_and_init(h, names, values, 2);
    frame f = expect(h, MXU_FRAME_LOG, 0); /* from the test's mxu_init() */
    free(f.payload);
}

static mxu_slice S(const char *s)
{
    return (mxu_slice){s, (uint32_t)strlen(s)};
}

static int slice_is_(mxu_slice s, const char *want)
{
    return s.len == strlen(want) && (s.len == 0 || memcmp(s.ptr, want, s.len) == 0);
}

static void invoke_full(host *h, uint64_t id, uint64_t deadline, const char *method,
                        const char *path, const char *query, const char *const *names,
                        const char *const *values, uint32_t nhdr, const void *body, size_t body_len)
{
    mxu_slice hn[16], hv[16];
    CHECK(nhdr <= 16);
    for (uint32_t i = 0; i < nhdr; i++) {
        hn[i] = S(names[i]);
        hv[i] = S(values[i]);
    }
    mxu_slice b = {body_len ? body : "", (uint32_t)body_len};
    size_t len =
        mxu_invoke_encode(NULL, 0, deadline, S(method), S(path), S(query), hn, hv, nhdr, b);
    uint8_t *buf = malloc(len);
    mxu_invoke_encode(buf, len, deadline, S(method), S(path), S(query), hn, hv, nhdr, b);
    queue_frame(h, MXU_FRAME_INVOKE, id, buf, len);
    free(buf);
}

static void invoke(host *h, uint64_t id, const char *path, const char *query)
{
    invoke_full(h, id, 5000, "GET", path, query, NULL, NULL, 0, NULL, 0);
}

typedef struct result {
    uint32_t status;
    char *body;
    size_t body_len;
    char headers[4096]; /* "name: value\n" ... */
} result;

static result *expect_result(host *h, uint64_t id)
{
    frame f = expect(h, MXU_FRAME_RESULT, id);
    mxu_result_msg m;
    CHECK_EQ_INT(mxu_result_decode(f.payload, f.h.len, &m), 0);
    result *r = calloc(1, sizeof(*r));
    r->status = m.status;
    r->body = malloc(m.body.len + 1);
    memcpy(r->body, m.body.ptr, m.body.len);
    r->body[m.body.len] = '\0';
    r->body_len = m.body.len;
    mxu_slice n, v;
    size_t at = 0;
    while (mxu_wire_next_header(&m.headers, &n, &v))
        at += (size_t)snprintf(r->headers + at, sizeof(r->headers) - at, "%.*s: %.*s\n", (int)n.len,
                               n.ptr, (int)v.len, v.ptr);
    free(f.payload);
    return r;
}

static void free_result(result *r)
{
    free(r->body);
    free(r);
}

static void bye(host *h)
{
    queue_frame(h, MXU_FRAME_BYE, 0, NULL, 0);
    frame f;
    CHECK_EQ_INT(pump(h, &f), 0); /* nothing more, then EOF */
    CHECK_EQ_INT(wait_exit(h), 0);
}

/* ---- cases ---------------------------------------------------------------------- */

static void test_handshake_and_bye(void)
{
    host h;
    start(&h);
    bye(&h);
}

static void test_pipelined_invokes(void)
{
    host h;
    start(&h);
    static const char *const names[] = {"Host", "User-Agent", "X-Two", "X-Two"};
    static const char *const values[] = {"example", "curl/8", "1", "2"};
    for (uint64_t id = 10; id < 20; id++) {
        char body[64], query[64];
        snprintf(body, sizeof(body), "body of %llu", (unsigned long long)id);
        snprintf(query, sizeof(query), "name=n%llu&x=1", (unsigned long long)id);
        invoke_full(&h, id, 5000, "POST", "/echo", query, names, values, 4, body, strlen(body));
    }
    invoke(&h, 20, "/headers", "");
    for (uint64_t id = 10; id < 20; id++) {
        result *r = expect_result(&h, id);
        CHECK_EQ_INT(r->status, 201);
        char want[64];
        snprintf(want, sizeof(want), "body of %llu", (unsigned long long)id);
        CHECK_STR(r->body, want);
        CHECK_CONTAINS(r->headers, "X-Method: POST\n");
        snprintf(want, sizeof(want), "X-Query: name=n%llu&x=1\n", (unsigned long long)id);
        CHECK_CONTAINS(r->headers, want);
        snprintf(want, sizeof(want), "X-Name: n%llu\n", (unsigned long long)id);
        CHECK_CONTAINS(r->headers, want);
        CHECK_CONTAINS(r->headers, "X-UA: curl/8\n"); /* looked up as "user-agent" */
        CHECK_CONTAINS(r->headers, "X-Header-Count: 4\n");
        free_result(r);
    }
    result *r = expect_result(&h, 20);
    CHECK_EQ_INT(r->status, 200);
    CHECK_STR(r->body, ""); /* no headers in that request */
    free_result(r);
    bye(&h);
}

/* Over SOCK_SEQPACKET every write is one record, so counting records counts
 * the instance's writes: a burst of INVOKEs in one write must come back as
 * one write of RESULTs. */
static void test_results_are_batched(void)
{
    host h;
    spawn_with(&h, MXU_TEST_INSTANCE, SOCK_SEQPACKET, 0);
    uint8_t rec[65536];
    struct pollfd pfd = {.fd = h.fd, .events = POLLIN};
    CHECK(poll(&pfd, 1, IO_TIMEOUT_MS) == 1);
    ssize_t n = read(h.fd, rec, sizeof(rec)); /* HELLO */
    CHECK(n > (ssize_t)MXU_FRAME_HEADER_SIZE);
    static const char *const cn[] = {"GREETING"};
    static const char *const cv[] = {"hi"};
    size_t len = mxu_init_encode(NULL, 0, "t", 3, 64, cn, cv, 1);
    uint8_t *init = malloc(len);
    mxu_init_encode(init, len, "t", 3, 64, cn, cv, 1);
    queue_frame(&h, MXU_FRAME_INIT, 0, init, len);
    free(init);
    CHECK(write(h.fd, h.out, h.out_len) == (ssize_t)h.out_len);
    h.out_len = 0;
    CHECK(poll(&pfd, 1, IO_TIMEOUT_MS) == 1);
    n = read(h.fd, rec, sizeof(rec)); /* the LOG of mxu_init(), sent at once */
    CHECK(n > 0);

    for (uint64_t id = 1; id <= 40; id++)
        invoke(&h, id, "/echo", "name=x");
    CHECK(write(h.fd, h.out, h.out_len) == (ssize_t)h.out_len); /* one record */
    h.out_len = 0;
    CHECK(poll(&pfd, 1, IO_TIMEOUT_MS) == 1);
    n = read(h.fd, rec, sizeof(rec));
    CHECK(n > 0);
    /* The single record holds all 40 RESULTs, in order. */
    size_t at = 0;
    uint64_t want = 1;
    while (at < (size_t)n) {
        mxu_frame_hdr fh;
        CHECK_EQ_INT(mxu_frame_hdr_decode(rec + at, &fh), 0);
        CHECK_EQ_INT(fh.type, MXU_FRAME_RESULT);
        CHECK_EQ_U64(fh.id, want);
        want++;
        at += MXU_FRAME_HEADER_SIZE + fh.len;
    }
    CHECK_EQ_U64(at, (size_t)n);
    CHECK_EQ_U64(want, 41);
    kill(h.pid, SIGKILL);
    wait_exit(&h);
}

static void test_handler_errors(void)
{
    host h;
    start(&h);
    invoke(&h, 1, "/fail", "");
    invoke(&h, 2, "/fail-status", "");
    invoke(&h, 3, "/nowhere", "");
    result *r = expect_result(&h, 1);
    CHECK_EQ_INT(r->status, 500); /* non-zero return, no status set */
    CHECK_STR(r->body, "oops");   /* the body written so far is kept */
    free_result(r);
    r = expect_result(&h, 2);
    CHECK_EQ_INT(r->status, 418); /* a status set before failing stands */
    free_result(r);
    r = expect_result(&h, 3);
    CHECK_EQ_INT(r->status, 404);
    free_result(r);
    /* mxu_res_error: the node's error shape, whatever bytes the message
     * quotes: quotes, backslashes, controls escaped, bad UTF-8 as U+FFFD */
    const char quoted[] = "a\"b\\c\n\x01\xff\xc3\xa9";
    invoke_full(&h, 4, 5000, "POST", "/error", "", NULL, NULL, 0, quoted, sizeof(quoted) - 1);
    r = expect_result(&h, 4);
    CHECK_EQ_INT(r->status, 422);
    CHECK_STR(r->body, "{\"error\":{\"code\":\"bad \\\"input\\\"\",\"message\":\"got "
                       "a\\\"b\\\\c\\u000a\\u0001\\ufffd\xc3\xa9 at 7\"}}\n");
    json_error_t je;
    json_t *j = json_loads(r->body, 0, &je);
    CHECK(j != NULL);
    CHECK_STR(json_string_value(json_object_get(json_object_get(j, "error"), "message")),
              "got a\"b\\c\n\x01\xef\xbf\xbd\xc3\xa9 at 7");
    json_decref(j);
    CHECK_CONTAINS(r->headers, "Content-Type: application/json\n");
    CHECK(strstr(r->headers, "text/plain") == NULL);
    CHECK_CONTAINS(r->headers, "X-Kept: 1\n");
    free_result(r);
    bye(&h);
}

static void test_log_frames(void)
{
    host h;
    start(&h);
    invoke(&h, 7, "/log", "q=1");
    invoke(&h, 8, "/echo", "");
    frame f = expect(&h, MXU_FRAME_LOG, 7); /* before its RESULT, tied to its id */
    mxu_log_msg m;
    CHECK_EQ_INT(mxu_log_decode(f.payload, f.h.len, &m), 0);
    CHECK_EQ_U64(m.level, 2);                                               /* MXU_WARN */
    CHECK(m.text.len == 12 && memcmp(m.text.ptr, "handling q=1", 12) == 0); /* newline dropped */
    free(f.payload);
    result *r = expect_result(&h, 7);
    CHECK_STR(r->body, "logged");
    free_result(r);
    r = expect_result(&h, 8); /* nothing else for id 7 came in between */
    free_result(r);
    bye(&h);
}

/* A log line is sent when it is written, not when the invocation ends: the
 * line must arrive while the handler is still busy. */
static void test_log_is_not_delayed(void)
{
    host h;
    start(&h);
    invoke(&h, 1, "/slow-log", "");
    uint64_t t0 = now_ms();
    frame f = expect(&h, MXU_FRAME_LOG, 1);
    uint64_t t_log = now_ms();
    free(f.payload);
    result *r = expect_result(&h, 1);
    uint64_t t_result = now_ms();
    free_result(r);
    CHECK(t_log - t0 < 250);
    CHECK(t_result - t_log >= 150);
    bye(&h);
}

static void test_config_and_identity(void)
{
    host h;
    start(&h);
    invoke(&h, 1, "/config", "");
    result *r = expect_result(&h, 1);
    CHECK_STR(r->body, "GREETING=hi MISSING=(null) fn=t v=3 init=1");
    free_result(r);
    bye(&h);
}

static void test_query_params(void)
{
    host h;
    start(&h);
    invoke(&h, 1, "/params", "a=1+2&b=%41%42%zz%4&a=second&flag&sp%20ace=yes&%C3%A9=accent");
    invoke(&h, 2, "/params", "");
    invoke(&h, 3, "/params", "&&a&b=");
    result *r = expect_result(&h, 1);
    CHECK_STR(r->body,
              "a=[1 2];b=[AB%zz%4];flag=[];sp ace=[yes];bad=NULL;missing=NULL;\xc3\xa9=[accent];");
    free_result(r);
    r = expect_result(&h, 2);
    CHECK_STR(r->body, "a=NULL;b=NULL;flag=NULL;sp ace=NULL;bad=NULL;missing=NULL;\xc3\xa9=NULL;");
    free_result(r);
    r = expect_result(&h, 3);
    CHECK_STR(r->body, "a=[];b=[];flag=NULL;sp ace=NULL;bad=NULL;missing=NULL;\xc3\xa9=NULL;");
    free_result(r);
    bye(&h);
}

static void test_deadline(void)
{
    host h;
    start(&h);
    invoke_full(&h, 1, 5000, "GET", "/deadline", "", NULL, NULL, 0, NULL, 0);
    invoke_full(&h, 2, 0, "GET", "/deadline", "", NULL, NULL, 0, NULL, 0);
    result *r = expect_result(&h, 1);
    long left = atol(r->body);
    CHECK(left > 4000 && left <= 5000);
    free_result(r);
    r = expect_result(&h, 2);
    CHECK_STR(r->body, "0");
    free_result(r);
    bye(&h);
}

static void test_arena_and_validation(void)
{
    host h;
    start(&h);
    for (uint64_t id = 1; id <= 5; id++) /* the arena is reset and reused each time */
        invoke(&h, id, "/alloc", "");
    invoke(&h, 6, "/validation", "");
    for (uint64_t id = 1; id <= 5; id++) {
        result *r = expect_result(&h, id);
        CHECK_STR(r->body, "ok");
        CHECK_EQ_INT(r->status, 200);
        free_result(r);
    }
    result *r = expect_result(&h, 6);
    CHECK_STR(r->body, "ok");
    CHECK_EQ_INT(r->status, 202);
    CHECK_STR(r->headers, "X-Ok: tab\tand spaces\n");
    free_result(r);
    bye(&h);
}

static void test_big_bodies(void)
{
    host h;
    start(&h);
    size_t n = 5u << 20;
    char *body = malloc(n);
    for (size_t i = 0; i < n; i++)
        body[i] = (char)(i * 7 + (i >> 12));
    invoke_full(&h, 1, 5000, "PUT", "/echo", "", NULL, NULL, 0, body, n);
    invoke_full(&h, 2, 5000, "PUT", "/echo", "", NULL, NULL, 0, body, n); /* pipelined */
    invoke(&h, 3, "/big", "n=5242880");
    invoke_full(&h, 4, 5000, "POST", "/nul", "", NULL, NULL, 0, "text", 4);
    for (uint64_t id = 1; id <= 2; id++) {
        result *r = expect_result(&h, id);
        CHECK_EQ_INT(r->status, 201);
        CHECK_EQ_U64(r->body_len, n);
        CHECK(memcmp(r->body, body, n) == 0);
        free_result(r);
    }
    result *r = expect_result(&h, 3);
    CHECK_EQ_U64(r->body_len, n);
    for (size_t i = 0; i < n; i++)
        if (r->body[i] != (char)('a' + (i % 65536) % 26))
            MXU_TEST_FAIL_("byte %zu of the generated body is wrong", i);
    free_result(r);
    r = expect_result(&h, 4);
    CHECK_STR(r->body, "terminated");
    free_result(r);
    free(body);
    bye(&h);
}

/* Hundreds of pipelined requests with bodies from 0 to ~200 KiB: the instance
 * flushes early (output past its threshold) while input keeps arriving, so
 * its buffers compact, grow and shrink under load; every answer must still
 * come back whole and in order. */
static void test_pipelined_stream(void)
{
    host h;
    start(&h);
    enum { N = 300 };
    size_t max = 200000;
    char *body = malloc(max);
    for (size_t i = 0; i < max; i++)
        body[i] = (char)(i * 13 + 5);
    uint32_t seed = 12345;
    size_t sizes[N];
    for (int i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        sizes[i] = i % 10 == 0 ? 0 : (seed >> 8) % max;
        invoke_full(&h, (uint64_t)i + 1, 5000, "POST", "/echo", "", NULL, NULL, 0, body, sizes[i]);
    }
    for (int i = 0; i < N; i++) {
        result *r = expect_result(&h, (uint64_t)i + 1);
        CHECK_EQ_INT(r->status, 201);
        CHECK_EQ_U64(r->body_len, sizes[i]);
        CHECK(memcmp(r->body, body, sizes[i]) == 0);
        free_result(r);
    }
    free(body);
    bye(&h);
}

/* A response the SDK cannot allocate becomes a 500, not a crash. Needs an
 * address-space limit, which ASan's shadow memory does not survive. */
static void test_out_of_memory_is_500(void)
{
    if (UNDER_ASAN)
        return;
    host h;
    spawn_with(&h, MXU_TEST_INSTANCE, SOCK_STREAM, 96u << 20);
    hello_and_init(&h, NULL, NULL, 0);
    free(expect(&h, MXU_FRAME_LOG, 0).payload);
    invoke(&h, 1, "/big", "n=62914560"); /* 60 MiB: under the SDK's limit, over memory */
    invoke(&h, 2, "/echo", "");
    frame f = expect(&h, MXU_FRAME_LOG, 1);
    free(f.payload);
    result *r = expect_result(&h, 1);
    CHECK_EQ_INT(r->status, 500);
    CHECK_EQ_U64(r->body_len, 0);
    free_result(r);
    r = expect_result(&h, 2); /* and the instance carries on */
    CHECK_EQ_INT(r->status, 201);
    free_result(r);
    bye(&h);
}

static void test_bye_after_pipelined_work(void)
{
    host h;
    start(&h);
    invoke(&h, 1, "/echo", "");
    invoke(&h, 2, "/echo", "");
    queue_frame(&h, MXU_FRAME_BYE, 0, NULL, 0);
    invoke(&h, 3, "/echo", ""); /* after BYE: never answered */
    free_result(expect_result(&h, 1));
    free_result(expect_result(&h, 2));
    frame f;
    CHECK_EQ_INT(pump(&h, &f), 0);
    CHECK_EQ_INT(wait_exit(&h), 0);
}

static void test_eof_exits_zero(void)
{
    host h;
    start(&h);
    invoke(&h, 1, "/echo", "");
    free_result(expect_result(&h, 1));
    shutdown(h.fd, SHUT_WR);
    CHECK_EQ_INT(wait_exit(&h), 0);
}

/* The instance must answer garbage with FATAL and exit non-zero, promptly. */
static void expect_fatal(host *h, const char *needle)
{
    frame f;
    for (;;) {
        if (!pump(h, &f))
            MXU_TEST_FAIL_("channel closed without a FATAL frame");
        if (f.h.type == MXU_FRAME_FATAL)
            break;
        free(f.payload);
    }
    mxu_log_msg m;
    CHECK_EQ_INT(mxu_log_decode(f.payload, f.h.len, &m), 0); /* FATAL is laid out like LOG */
    CHECK_EQ_U64(m.level, 3);                                /* MXU_ERROR */
    CHECK_EQ_U64(f.h.id, 0);
    f.payload[f.h.len] = '\0';
    CHECK_CONTAINS((const char *)m.text.ptr, needle);
    free(f.payload);
    CHECK_EQ_INT(wait_exit(h), 1);
}

static void test_garbage_header(void)
{
    host h;
    start(&h);
    static const uint8_t junk[16] = {1, 0, 0, 0, 99, 0, 0, 0, 1};
    queue(&h, junk, sizeof(junk));
    expect_fatal(&h, "malformed frame header");
}

static void test_garbage_payload(void)
{
    host h;
    start(&h);
    queue_frame(&h, MXU_FRAME_INVOKE, 5, "\x01\x02\x03", 3);
    expect_fatal(&h, "malformed INVOKE");
}

static void test_invoke_before_init(void)
{
    host h;
    spawn(&h);
    free(expect(&h, MXU_FRAME_HELLO, 0).payload);
    invoke(&h, 1, "/echo", "");
    expect_fatal(&h, "expected INIT");
}

static void test_unexpected_frames(void)
{
    host h;
    start(&h);
    queue_frame(&h, MXU_FRAME_RESULT, 1, "", 0); /* a type only instances send */
    expect_fatal(&h, "unexpected RESULT");

    start(&h);
    uint8_t buf[256];
    size_t len = mxu_init_encode(buf, sizeof(buf), "t", 1, 1, NULL, NULL, 0);
    queue_frame(&h, MXU_FRAME_INIT, 0, buf, len);
    expect_fatal(&h, "unexpected INIT");

    start(&h);
    invoke(&h, 0, "/echo", ""); /* id 0 belongs to no invocation */
    expect_fatal(&h, "malformed INVOKE");
}

static void test_wrong_protocol_version(void)
{
    host h;
    spawn(&h);
    free(expect(&h, MXU_FRAME_HELLO, 0).payload);
    uint8_t buf[256];
    size_t len = mxu_init_encode(buf, sizeof(buf), "t", 1, 1, NULL, NULL, 0);
    buf[0] = 2; /* the host "chose" version 2 */
    queue_frame(&h, MXU_FRAME_INIT, 0, buf, len);
    expect_fatal(&h, "protocol version 2");
}

static void test_failing_init(void)
{
    static const char *const names[] = {"FAIL_INIT"};
    static const char *const values[] = {"1"};
    host h;
    spawn(&h);
    hello_and_init(&h, names, values, 1);
    expect_fatal(&h, "mxu_init() failed (returned 7)");
}

/* ---- descriptor operations ---------------------------------------------------------
 * The host's half of RES_OP / RES_REPLY: read the op the instance sent, check
 * every field, answer, and check from the RESULT how the SDK read the answer
 * (the instance's routes print what the calls returned). */

typedef struct op {
    frame f;
    mxu_res_op_msg m;
} op;

static op *expect_op(host *h, uint64_t id, uint32_t code, const char *desc, uint32_t nargs)
{
    op *o = calloc(1, sizeof(*o));
    o->f = expect(h, MXU_FRAME_RES_OP, id);
    CHECK_EQ_INT(mxu_res_op_decode(o->f.payload, o->f.h.len, &o->m), 0);
    CHECK_EQ_U64(o->m.op, code);
    CHECK(slice_is_(o->m.name, desc));
    CHECK_EQ_U64(o->m.nargs, nargs);
    return o;
}

static void free_op(op *o)
{
    free(o->f.payload);
    free(o);
}

static int arg_is(const op *o, uint32_t i, const char *want)
{
    return i < o->m.nargs && slice_is_(o->m.args[i], want);
}

static void reply_with(host *h, uint64_t id, uint32_t call_id, uint32_t status, const char *msg,
                       uint64_t n1, uint64_t n2, const mxu_slice *vals, uint32_t nvals)
{
    size_t len = mxu_res_reply_encode(NULL, 0, call_id, status, S(msg), n1, n2, vals, nvals);
    uint8_t *buf = malloc(len);
    mxu_res_reply_encode(buf, len, call_id, status, S(msg), n1, n2, vals, nvals);
    queue_frame(h, MXU_FRAME_RES_REPLY, id, buf, len);
    free(buf);
}

/* Answer `o` (same invocation, same call id). */
static void reply(host *h, const op *o, uint32_t status, const char *msg, uint64_t n1, uint64_t n2,
                  const mxu_slice *vals, uint32_t nvals)
{
    reply_with(h, o->f.h.id, o->m.call_id, status, msg, n1, n2, vals, nvals);
}

/* The body of the RESULT for `id`, which must be a 200 (caller frees). */
static char *result_body(host *h, uint64_t id)
{
    result *r = expect_result(h, id);
    CHECK_EQ_INT(r->status, 200);
    char *b = r->body;
    r->body = NULL;
    free_result(r);
    return b;
}

static void check_body(host *h, uint64_t id, const char *want)
{
    char *b = result_body(h, id);
    CHECK_STR(b, want);
    free(b);
}

/* The byte at offset i of the blob pattern (sdk-test-instance.c has the same). */
static unsigned char pattern(uint64_t i)
{
    return (unsigned char)(i * 31 + (i >> 16));
}

static void test_res_kv(void)
{
    host h;
    start(&h);

    /* get: the value has a NUL inside; the SDK must trust the length. */
    invoke(&h, 1, "/kv-get", "d=orders&k=o-17");
    op *o = expect_op(&h, 1, MXU_RES_KV_GET, "orders", 1);
    CHECK(arg_is(o, 0, "o-17"));
    CHECK_EQ_U64(o->m.n1, 0);
    CHECK_EQ_U64(o->m.n2, 0);
    mxu_slice val = {"ab\0cd", 5};
    reply(&h, o, MXU_RES_OK, "", 41, 0, &val, 1);
    free_op(o);
    result *r = expect_result(&h, 1);
    CHECK_EQ_U64(r->body_len, strlen("rc=0 len=5 rev=41 val=[") + 5 + strlen("] nul=1"));
    CHECK(memcmp(r->body, "rc=0 len=5 rev=41 val=[ab\0cd] nul=1", r->body_len) == 0);
    free_result(r);

    /* get with len and rev NULL; an empty value. */
    invoke(&h, 2, "/kv-get", "k=e&bare=1");
    o = expect_op(&h, 2, MXU_RES_KV_GET, "orders", 1);
    mxu_slice empty = {"", 0};
    reply(&h, o, MXU_RES_OK, "", 3, 0, &empty, 1);
    free_op(o);
    check_body(&h, 2, "rc=0 len=0 rev=0 val=[] nul=1");

    /* not found, with the host's message. */
    invoke(&h, 3, "/kv-get", "k=nope");
    o = expect_op(&h, 3, MXU_RES_KV_GET, "orders", 1);
    reply(&h, o, MXU_RES_NOT_FOUND, "no key 'nope' in kv:orders", 0, 0, NULL, 0);
    free_op(o);
    check_body(&h, 3, "rc=-2 err=[no key 'nope' in kv:orders] str=[not found]");

    /* put and cas: key and value args, expected revision in n1. */
    invoke(&h, 4, "/kv-put", "d=counters&k=c1&v=hello");
    o = expect_op(&h, 4, MXU_RES_KV_PUT, "counters", 2);
    CHECK(arg_is(o, 0, "c1") && arg_is(o, 1, "hello"));
    CHECK_EQ_U64(o->m.n1, 0);
    reply(&h, o, MXU_RES_OK, "", 7, 0, NULL, 0);
    free_op(o);
    check_body(&h, 4, "rc=0 rev=7");

    invoke(&h, 5, "/kv-cas", "k=c1&v=2&exp=7");
    o = expect_op(&h, 5, MXU_RES_KV_CAS, "orders", 2);
    CHECK(arg_is(o, 0, "c1") && arg_is(o, 1, "2"));
    CHECK_EQ_U64(o->m.n1, 7);
    reply(&h, o, MXU_RES_OK, "", 8, 0, NULL, 0);
    free_op(o);
    check_body(&h, 5, "rc=0 rev=8");

    invoke(&h, 6, "/kv-cas", "k=c1&v=3&exp=0");
    o = expect_op(&h, 6, MXU_RES_KV_CAS, "orders", 2);
    CHECK_EQ_U64(o->m.n1, 0);
    reply(&h, o, MXU_RES_CONFLICT, "", 0, 0, NULL, 0);
    free_op(o);
    /* No message from the host: the code's own text stands in. */
    check_body(
        &h, 6,
        "rc=-3 err=[conflict: changed concurrently] str=[conflict: changed concurrently] rev=0");

    invoke(&h, 7, "/kv-delete", "k=c1");
    o = expect_op(&h, 7, MXU_RES_KV_DELETE, "orders", 1);
    CHECK(arg_is(o, 0, "c1"));
    reply(&h, o, MXU_RES_OK, "", 0, 0, NULL, 0);
    free_op(o);
    check_body(&h, 7, "rc=0");

    /* list: prefix and cursor args, limit in n1 (0 and too many mean 63). */
    invoke(&h, 8, "/kv-list", "prefix=o-&cur=o-2&limit=3");
    o = expect_op(&h, 8, MXU_RES_KV_LIST, "orders", 2);
    CHECK(arg_is(o, 0, "o-") && arg_is(o, 1, "o-2"));
    CHECK_EQ_U64(o->m.n1, 3);
    mxu_slice page[4] = {S("o-3"), S("o-4"), S("o-5"), S("o-5")};
    reply(&h, o, MXU_RES_OK, "", 3, 0, page, 4);
    free_op(o);
    check_body(&h, 8, "rc=0 count=3 keys=[o-3,o-4,o-5] next=[o-5] term=1");

    invoke(&h, 9, "/kv-list", "");
    o = expect_op(&h, 9, MXU_RES_KV_LIST, "orders", 2);
    CHECK(arg_is(o, 0, "") && arg_is(o, 1, ""));
    CHECK_EQ_U64(o->m.n1, 63);
    mxu_slice last[1] = {S("")};
    reply(&h, o, MXU_RES_OK, "", 0, 0, last, 1);
    free_op(o);
    check_body(&h, 9, "rc=0 count=0 keys=[] next=[] term=1");

    invoke(&h, 10, "/kv-list", "limit=1000");
    o = expect_op(&h, 10, MXU_RES_KV_LIST, "orders", 2);
    CHECK_EQ_U64(o->m.n1, 63);
    reply(&h, o, MXU_RES_DENIED, "kv:orders is declared read-only", 0, 0, NULL, 0);
    free_op(o);
    check_body(&h, 10,
               "rc=-1 err=[kv:orders is declared read-only] str=[denied by the "
               "descriptor's declaration or access, or by a policy rule]");
    bye(&h);
}

/* Every outcome maps to its code, and unknown ones to UNAVAILABLE; the last
 * error survives a later successful call and is reset per invocation. */
static void test_res_statuses(void)
{
    host h;
    start(&h);
    static const struct {
        uint32_t status;
        int code;
    } map[] = {{1, -1}, {2, -2}, {3, -3}, {4, -4}, {5, -5},
               {6, -6}, {7, -7}, {8, -8}, {9, -9}, {42, -5}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        uint64_t id = 100 + i;
        invoke(&h, id, "/kv-delete", "k=x");
        op *o = expect_op(&h, id, MXU_RES_KV_DELETE, "orders", 1);
        char msg[32];
        snprintf(msg, sizeof(msg), "status %u", map[i].status);
        reply(&h, o, map[i].status, msg, 0, 0, NULL, 0);
        free_op(o);
        char *b = result_body(&h, id);
        char want[64];
        snprintf(want, sizeof(want), "rc=%d err=[status %u]", map[i].code, map[i].status);
        CHECK(strncmp(b, want, strlen(want)) == 0);
        free(b);
    }

    invoke(&h, 200, "/fail-then-ok", "");
    op *o = expect_op(&h, 200, MXU_RES_KV_GET, "orders", 1);
    reply(&h, o, MXU_RES_UNAVAILABLE, "redis at 127.0.0.1:6379 is down", 0, 0, NULL, 0);
    free_op(o);
    o = expect_op(&h, 200, MXU_RES_KV_PUT, "orders", 2);
    reply(&h, o, MXU_RES_OK, "", 1, 0, NULL, 0);
    free_op(o);
    check_body(&h, 200, "a=-5 b=0 last=[redis at 127.0.0.1:6379 is down]");

    invoke(&h, 201, "/local-checks", ""); /* starts with the last error reset */
    check_body(&h, 201, "ok");
    bye(&h);
}

/* Bad arguments are refused by the SDK itself: nothing is sent (the next
 * frame is the RESULT), and mxu_init() cannot make calls. */
static void test_res_local_validation(void)
{
    host h;
    spawn(&h);
    hello_and_init(&h, NULL, NULL, 0);
    frame f = expect(&h, MXU_FRAME_LOG, 0);
    f.payload[f.h.len] = '\0';
    CHECK_CONTAINS((char *)f.payload + 8, "call=-7");
    free(f.payload);
    invoke(&h, 1, "/local-checks", "");
    check_body(&h, 1, "ok");
    bye(&h);
}

static void test_res_blob(void)
{
    host h;
    start(&h);

    invoke(&h, 1, "/blob-stat", "d=thumbs&k=img/a.png");
    op *o = expect_op(&h, 1, MXU_RES_BLOB_STAT, "thumbs", 1);
    CHECK(arg_is(o, 0, "img/a.png"));
    reply(&h, o, MXU_RES_OK, "", 1234, 1700000000123ull, NULL, 0);
    free_op(o);
    check_body(&h, 1, "rc=0 size=1234 mtime=1700000000123");

    invoke(&h, 2, "/blob-delete", "d=thumbs&k=a");
    o = expect_op(&h, 2, MXU_RES_BLOB_DELETE, "thumbs", 1);
    reply(&h, o, MXU_RES_NOT_FOUND, "no object", 0, 0, NULL, 0);
    free_op(o);
    check_body(&h, 2, "rc=-2 err=[no object] str=[not found]");

    invoke(&h, 3, "/blob-list", "d=thumbs&prefix=img/&limit=2");
    o = expect_op(&h, 3, MXU_RES_BLOB_LIST, "thumbs", 2);
    CHECK(arg_is(o, 0, "img/") && arg_is(o, 1, ""));
    CHECK_EQ_U64(o->m.n1, 2);
    mxu_slice keys[3] = {S("img/a"), S("img/b"), S("img/b")};
    reply(&h, o, MXU_RES_OK, "", 2, 0, keys, 3);
    free_op(o);
    check_body(&h, 3, "rc=0 count=2 keys=[img/a,img/b] next=[img/b] term=1");

    /* A small read: one op, offset and length in n1/n2. */
    size_t big = 3u << 20;
    uint8_t *obj = malloc(big);
    for (size_t i = 0; i < big; i++)
        obj[i] = pattern(i);
    invoke(&h, 4, "/blob-read", "k=f&off=10&len=100");
    o = expect_op(&h, 4, MXU_RES_BLOB_READ, "orders", 1);
    CHECK(arg_is(o, 0, "f"));
    CHECK_EQ_U64(o->m.n1, 10);
    CHECK_EQ_U64(o->m.n2, 100);
    mxu_slice d = {(const char *)obj + 10, 100};
    reply(&h, o, MXU_RES_OK, "", big, 0, &d, 1);
    free_op(o);
    check_body(&h, 4, "rc=0 got=100 size=3145728 bad=0 nul=1");

    /* A whole-object read of 3 MiB + from offset 5: chunks of at most 1 MiB,
     * contiguous, until the end of the object. */
    invoke(&h, 5, "/blob-read", "k=f&off=5");
    uint64_t at = 5;
    int chunks = 0;
    while (at < big) {
        o = expect_op(&h, 5, MXU_RES_BLOB_READ, "orders", 1);
        CHECK_EQ_U64(o->m.n1, at);
        CHECK(o->m.n2 <= (1u << 20) && o->m.n2 > 0);
        size_t n = big - at < o->m.n2 ? big - at : o->m.n2;
        d = (mxu_slice){(const char *)obj + at, (uint32_t)n};
        reply(&h, o, MXU_RES_OK, "", big, 0, &d, 1);
        free_op(o);
        at += n;
        chunks++;
    }
    CHECK_EQ_INT(chunks, 3);
    check_body(&h, 5, "rc=0 got=3145723 size=3145728 bad=0 nul=1");

    /* At the end: no data, not an error. */
    invoke(&h, 6, "/blob-read", "k=f&off=3145728&len=10");
    o = expect_op(&h, 6, MXU_RES_BLOB_READ, "orders", 1);
    mxu_slice none = {"", 0};
    reply(&h, o, MXU_RES_OK, "", big, 0, &none, 1);
    free_op(o);
    check_body(&h, 6, "rc=0 got=0 size=3145728 bad=0 nul=1");

    /* The object is replaced between chunks: CONFLICT, not a mix. */
    invoke(&h, 7, "/blob-read", "k=f");
    o = expect_op(&h, 7, MXU_RES_BLOB_READ, "orders", 1);
    d = (mxu_slice){(const char *)obj, 1u << 20};
    reply(&h, o, MXU_RES_OK, "", big, 0, &d, 1);
    free_op(o);
    o = expect_op(&h, 7, MXU_RES_BLOB_READ, "orders", 1);
    CHECK_EQ_U64(o->m.n1, 1u << 20);
    reply(&h, o, MXU_RES_OK, "", big + 1, 0, &d, 1);
    free_op(o);
    char *b = result_body(&h, 7);
    CHECK_CONTAINS(b, "rc=-3 err=[object 'f' changed while being read");
    free(b);

    /* A failing later chunk fails the read. */
    invoke(&h, 8, "/blob-read", "k=f&len=2000000");
    o = expect_op(&h, 8, MXU_RES_BLOB_READ, "orders", 1);
    reply(&h, o, MXU_RES_OK, "", big, 0, &d, 1);
    free_op(o);
    o = expect_op(&h, 8, MXU_RES_BLOB_READ, "orders", 1);
    CHECK_EQ_U64(o->m.n2, 2000000 - (1u << 20));
    reply(&h, o, MXU_RES_UNAVAILABLE, "disk gone", 0, 0, NULL, 0);
    free_op(o);
    check_body(&h, 8, "rc=-5 err=[disk gone] str=[backend unavailable]");
    free(obj);
    bye(&h);
}

/* Receive one upload: chunks of at most 1 MiB, FIRST on the first, LAST on
 * the last only, offsets contiguous, bytes as the pattern says. Returns how
 * many chunks came. `fail_at` (1-based) answers that chunk with DENIED. */
static int receive_upload(host *h, uint64_t id, const char *desc, const char *key, size_t total,
                          int fail_at)
{
    uint64_t at = 0;
    for (int n = 1;; n++) {
        op *o = expect_op(h, id, MXU_RES_BLOB_WRITE, desc, 2);
        CHECK(arg_is(o, 0, key));
        mxu_slice data = o->m.args[1];
        CHECK(data.len <= 1u << 20);
        CHECK_EQ_U64(o->m.n1, at);
        uint64_t flags = o->m.n2;
        CHECK_EQ_U64(flags & MXU_RES_BLOB_FIRST, n == 1 ? MXU_RES_BLOB_FIRST : 0);
        CHECK_EQ_U64(flags & ~(uint64_t)(MXU_RES_BLOB_FIRST | MXU_RES_BLOB_LAST), 0);
        for (uint32_t i = 0; i < data.len; i++)
            if ((unsigned char)data.ptr[i] != pattern(at + i))
                MXU_TEST_FAIL_("chunk %d byte %u is wrong", n, i);
        at += data.len;
        if (n == fail_at) {
            reply(h, o, MXU_RES_DENIED, "blob:thumbnails is read-only here", 0, 0, NULL, 0);
            free_op(o);
            return n;
        }
        reply(h, o, MXU_RES_OK, "", at, 0, NULL, 0);
        free_op(o);
        if (flags & MXU_RES_BLOB_LAST) {
            CHECK_EQ_U64(at, total);
            return n;
        }
        CHECK(data.len == 1u << 20); /* only the last chunk may be short */
    }
}

static void test_res_blob_write_chunks(void)
{
    host h;
    start(&h);
    size_t n = 5u << 20;
    invoke(&h, 1, "/blob-write", "d=thumbs&k=big.bin&n=5242880");
    CHECK_EQ_INT(receive_upload(&h, 1, "thumbs", "big.bin", n, 0), 5);
    check_body(&h, 1, "rc=0");

    invoke(&h, 2, "/blob-write", "d=thumbs&k=odd&n=3000001");
    CHECK_EQ_INT(receive_upload(&h, 2, "thumbs", "odd", 3000001, 0), 3);
    check_body(&h, 2, "rc=0");

    /* An empty object is one empty FIRST|LAST chunk. */
    invoke(&h, 3, "/blob-write", "d=thumbs&k=empty&n=0");
    op *o = expect_op(&h, 3, MXU_RES_BLOB_WRITE, "thumbs", 2);
    CHECK_EQ_U64(o->m.n2, MXU_RES_BLOB_FIRST | MXU_RES_BLOB_LAST);
    CHECK_EQ_U64(o->m.args[1].len, 0);
    reply(&h, o, MXU_RES_OK, "", 0, 0, NULL, 0);
    free_op(o);
    check_body(&h, 3, "rc=0");

    /* A refused second chunk stops the upload there. */
    invoke(&h, 4, "/blob-write", "d=thumbs&k=x&n=2500000");
    CHECK_EQ_INT(receive_upload(&h, 4, "thumbs", "x", 2500000, 2), 2);
    check_body(&h, 4,
               "rc=-1 err=[blob:thumbnails is read-only here] str=[denied by the "
               "descriptor's declaration or access, or by a policy rule]");
    bye(&h);
}

static void test_res_blob_writer(void)
{
    host h;
    start(&h);
    /* 3.5 MB in pieces of 700 KB: full 1 MiB chunks as data follows, the
     * rest on close. */
    invoke(&h, 1, "/blob-writer", "d=thumbs&k=s&n=3500000&piece=700000");
    CHECK_EQ_INT(receive_upload(&h, 1, "thumbs", "s", 3500000, 0), 4);
    check_body(&h, 1, "write=0 after=5 close=0 reuse=-7");

    /* Exactly 2 MiB in one write: the second chunk waits for close. */
    invoke(&h, 2, "/blob-writer", "d=thumbs&k=t&n=2097152&piece=2097152");
    CHECK_EQ_INT(receive_upload(&h, 2, "thumbs", "t", 2097152, 0), 2);
    check_body(&h, 2, "write=0 after=1 close=0 reuse=-7");

    /* Small pieces, small object: one FIRST|LAST chunk at close. */
    invoke(&h, 3, "/blob-writer", "d=thumbs&k=u&n=5000&piece=7");
    CHECK_EQ_INT(receive_upload(&h, 3, "thumbs", "u", 5000, 0), 1);
    check_body(&h, 3, "write=0 after=715 close=0 reuse=-7");

    /* A refused chunk kills the writer: later writes and close repeat it. */
    invoke(&h, 4, "/blob-writer", "d=thumbs&k=v&n=3000000&piece=500000");
    CHECK_EQ_INT(receive_upload(&h, 4, "thumbs", "v", 3000000, 1), 1);
    check_body(&h, 4, "write=-1 after=3 again=-1 close=-1 reuse=-7");

    /* Aborted or left open before any chunk was full: nothing is sent. */
    invoke(&h, 5, "/blob-writer", "d=thumbs&k=w&n=1000&end=abort");
    check_body(&h, 5, "write=0 after=1 aborted reuse=-7");
    invoke(&h, 6, "/blob-writer", "d=thumbs&k=w&n=1000&end=leave");
    check_body(&h, 6, "write=0 after=1");
    invoke(&h, 7, "/blob-writer", "d=thumbs&k=&n=1");
    check_body(&h, 7, "open=NULL err=[the key is empty]");
    bye(&h);
}

static void test_res_queue(void)
{
    host h;
    start(&h);
    invoke_full(&h, 1, 5000, "POST", "/q-publish", "d=jobs", NULL, NULL, 0, "job\0one", 7);
    op *o = expect_op(&h, 1, MXU_RES_QUEUE_PUBLISH, "jobs", 1);
    CHECK(o->m.args[0].len == 7 && memcmp(o->m.args[0].ptr, "job\0one", 7) == 0);
    reply(&h, o, MXU_RES_OK, "", 99, 0, NULL, 0);
    free_op(o);
    check_body(&h, 1, "rc=0 id=99");

    invoke(&h, 2, "/q-consume", "d=jobs&lease=1500");
    o = expect_op(&h, 2, MXU_RES_QUEUE_CONSUME, "jobs", 0);
    CHECK_EQ_U64(o->m.n1, 1500);
    mxu_slice vals[2] = {S("payload"), S("r-123")};
    reply(&h, o, MXU_RES_OK, "", 2, 99, vals, 2);
    free_op(o);
    check_body(&h, 2, "rc=0 len=7 data=[payload] receipt=[r-123] attempts=2 id=99");

    invoke(&h, 3, "/q-consume", "d=jobs");
    o = expect_op(&h, 3, MXU_RES_QUEUE_CONSUME, "jobs", 0);
    CHECK_EQ_U64(o->m.n1, 30000);
    reply(&h, o, MXU_RES_NOT_FOUND, "queue:jobs is empty", 0, 0, NULL, 0);
    free_op(o);
    check_body(&h, 3, "rc=-2 err=[queue:jobs is empty] str=[not found]");

    invoke(&h, 4, "/q-ack", "d=jobs&r=r-123");
    o = expect_op(&h, 4, MXU_RES_QUEUE_ACK, "jobs", 1);
    CHECK(arg_is(o, 0, "r-123"));
    reply(&h, o, MXU_RES_OK, "", 0, 0, NULL, 0);
    free_op(o);
    check_body(&h, 4, "rc=0");
    bye(&h);
}

static void test_res_svc(void)
{
    host h;
    start(&h);
    static const char *const names[] = {"X-Fwd-Trace", "Other", "X-Fwd-Lang"};
    static const char *const values[] = {"t-1", "not forwarded", "en"};
    invoke_full(&h, 1, 5000, "POST", "/svc", "d=resize&m=PUT&p=%2Fthumb%3Fw%3D100%26h%3D5", names,
                values, 3, "image", 5);
    op *o = expect_op(&h, 1, MXU_RES_SVC_CALL, "resize", 8);
    CHECK(arg_is(o, 0, "PUT") && arg_is(o, 1, "/thumb") && arg_is(o, 2, "w=100&h=5") &&
          arg_is(o, 3, "image"));
    CHECK(arg_is(o, 4, "X-Fwd-Trace") && arg_is(o, 5, "t-1") && arg_is(o, 6, "X-Fwd-Lang") &&
          arg_is(o, 7, "en"));
    /* The callee's own 500 is an answer, not an error. */
    mxu_slice vals[5] = {S("callee broke"), S("Content-Type"), S("text/plain"), S("X-N"), S("")};
    reply(&h, o, MXU_RES_OK, "", 500, 0, vals, 5);
    free_op(o);
    check_body(&h, 1,
               "rc=0 status=500 len=12 body=[callee broke] hdrs=[Content-Type: "
               "text/plain;X-N: ;]");

    /* No path: "/" and an empty query; no body. */
    invoke(&h, 2, "/svc", "d=resize");
    o = expect_op(&h, 2, MXU_RES_SVC_CALL, "resize", 4);
    CHECK(arg_is(o, 0, "GET") && arg_is(o, 1, "/") && arg_is(o, 2, "") && arg_is(o, 3, ""));
    mxu_slice body = S("{}");
    reply(&h, o, MXU_RES_OK, "", 200, 0, &body, 1);
    free_op(o);
    check_body(&h, 2, "rc=0 status=200 len=2 body=[{}] hdrs=[]");

    /* Platform failures of the callee come back as codes with a message. */
    invoke(&h, 3, "/svc", "d=resize&p=/x");
    o = expect_op(&h, 3, MXU_RES_SVC_CALL, "resize", 4);
    reply(&h, o, MXU_RES_CALL_FAILED, "resize@prod crashed (signal 11)", 0, 0, NULL, 0);
    free_op(o);
    check_body(&h, 3,
               "rc=-9 err=[resize@prod crashed (signal 11)] str=[the called function "
               "failed]");
    invoke(&h, 4, "/svc", "d=resize&p=/x?");
    o = expect_op(&h, 4, MXU_RES_SVC_CALL, "resize", 4);
    CHECK(arg_is(o, 1, "/x") && arg_is(o, 2, ""));
    reply(&h, o, MXU_RES_DEADLINE, "resize@prod: no answer within 1200 ms", 0, 0, NULL, 0);
    free_op(o);
    check_body(&h, 4,
               "rc=-6 err=[resize@prod: no answer within 1200 ms] str=[deadline "
               "exceeded]");
    bye(&h);
}

/* Call ids grow across calls and invocations; each RES_OP carries its
 * invocation's id. */
static void test_res_call_ids(void)
{
    host h;
    start(&h);
    invoke(&h, 5, "/calls", "n=3");
    uint32_t last = 0;
    for (int i = 0; i < 3; i++) {
        op *o = expect_op(&h, 5, MXU_RES_KV_GET, "orders", 1);
        CHECK(o->m.call_id > last);
        last = o->m.call_id;
        mxu_slice v = S("v");
        reply(&h, o, MXU_RES_OK, "", 1, 0, &v, 1);
        free_op(o);
    }
    check_body(&h, 5, "failed=0");
    invoke(&h, 6, "/calls", "n=1");
    op *o = expect_op(&h, 6, MXU_RES_KV_GET, "orders", 1);
    CHECK(o->m.call_id > last);
    reply(&h, o, MXU_RES_NOT_FOUND, "", 0, 0, NULL, 0);
    free_op(o);
    check_body(&h, 6, "failed=1");
    bye(&h);
}

/* While a handler waits for its reply: RESULTs batched before the call are
 * sent with the RES_OP; INVOKEs that arrive meanwhile (a partial one already
 * buffered, a whole one, a 5 MiB one, one right behind the reply) are served
 * afterwards, in order. */
static void test_res_pipelined_during_call(void)
{
    host h;
    start(&h);
    invoke(&h, 1, "/echo", "name=a");
    invoke(&h, 2, "/kv-get", "k=x");
    invoke(&h, 3, "/echo", "name=c");
    /* Half of INVOKE 4 goes in the same write: the instance holds a whole
     * frame (3) and a partial one (4) behind the one it handles when the
     * call starts. */
    size_t before = h.out_len;
    invoke(&h, 4, "/echo", "name=d");
    size_t inv4 = h.out_len - before, half = inv4 / 2;
    uint8_t *rest = malloc(inv4 - half);
    memcpy(rest, h.out + before + half, inv4 - half);
    h.out_len = before + half;

    free_result(expect_result(&h, 1)); /* not held back behind the call */
    op *o = expect_op(&h, 2, MXU_RES_KV_GET, "orders", 1);
    queue(&h, rest, inv4 - half);
    free(rest);
    size_t n = 5u << 20;
    char *big = malloc(n);
    memset(big, 'z', n);
    invoke_full(&h, 5, 5000, "PUT", "/echo", "", NULL, NULL, 0, big, n);
    invoke(&h, 6, "/echo", "name=f");
    mxu_slice v = S("value");
    reply(&h, o, MXU_RES_OK, "", 1, 0, &v, 1);
    invoke(&h, 7, "/echo", "name=g"); /* right behind the reply */
    free_op(o);

    check_body(&h, 2, "rc=0 len=5 rev=1 val=[value] nul=1");
    static const char *const names[] = {"", "", "", "X-Name: c\n", "X-Name: d\n"};
    for (uint64_t id = 3; id <= 4; id++) {
        result *r = expect_result(&h, id);
        CHECK_EQ_INT(r->status, 201);
        CHECK_CONTAINS(r->headers, names[id]);
        free_result(r);
    }
    result *r = expect_result(&h, 5);
    CHECK_EQ_U64(r->body_len, n);
    CHECK(memcmp(r->body, big, n) == 0);
    free_result(r);
    free(big);
    r = expect_result(&h, 6);
    CHECK_CONTAINS(r->headers, "X-Name: f\n");
    free_result(r);
    r = expect_result(&h, 7);
    CHECK_CONTAINS(r->headers, "X-Name: g\n");
    free_result(r);

    /* Two calls in a later invocation, with INVOKEs arriving during each. */
    invoke(&h, 8, "/calls", "n=2");
    o = expect_op(&h, 8, MXU_RES_KV_GET, "orders", 1);
    invoke(&h, 9, "/echo", "name=i");
    reply(&h, o, MXU_RES_OK, "", 1, 0, &v, 1);
    free_op(o);
    o = expect_op(&h, 8, MXU_RES_KV_GET, "orders", 1);
    invoke(&h, 10, "/echo", "name=j");
    reply(&h, o, MXU_RES_OK, "", 1, 0, &v, 1);
    free_op(o);
    check_body(&h, 8, "failed=0");
    free_result(expect_result(&h, 9));
    free_result(expect_result(&h, 10));

    /* A partial frame right behind the handled one: its first byte is where
     * the SDK keeps the body's NUL while the handler runs. */
    invoke(&h, 11, "/kv-get", "k=y");
    before = h.out_len;
    invoke(&h, 12, "/echo", "name=l");
    size_t inv12 = h.out_len - before;
    rest = malloc(inv12 - 5);
    memcpy(rest, h.out + before + 5, inv12 - 5);
    h.out_len = before + 5;
    o = expect_op(&h, 11, MXU_RES_KV_GET, "orders", 1);
    queue(&h, rest, inv12 - 5);
    free(rest);
    reply(&h, o, MXU_RES_OK, "", 1, 0, &v, 1);
    free_op(o);
    check_body(&h, 11, "rc=0 len=5 rev=1 val=[value] nul=1");
    r = expect_result(&h, 12);
    CHECK_CONTAINS(r->headers, "X-Name: l\n");
    free_result(r);
    bye(&h);
}

/* BYE during a call: the handler finishes, INVOKEs before the BYE are
 * served, those after it are not, and the instance exits 0. */
static void test_res_bye_during_call(void)
{
    host h;
    start(&h);
    invoke(&h, 1, "/kv-get", "k=x");
    op *o = expect_op(&h, 1, MXU_RES_KV_GET, "orders", 1);
    invoke(&h, 2, "/echo", "");
    queue_frame(&h, MXU_FRAME_BYE, 0, NULL, 0);
    invoke(&h, 3, "/echo", "");
    mxu_slice v = S("v");
    reply(&h, o, MXU_RES_OK, "", 1, 0, &v, 1);
    free_op(o);
    check_body(&h, 1, "rc=0 len=1 rev=1 val=[v] nul=1");
    free_result(expect_result(&h, 2));
    frame f;
    CHECK_EQ_INT(pump(&h, &f), 0);
    CHECK_EQ_INT(wait_exit(&h), 0);
}

/* A reply that is not for the waiting call, or of the wrong shape, or any
 * other frame type during a call, is a protocol error: FATAL, exit 1. */
static void test_res_protocol_errors(void)
{
    host h;
    mxu_slice v = S("v");

    start(&h);
    invoke(&h, 1, "/kv-get", "");
    op *o = expect_op(&h, 1, MXU_RES_KV_GET, "orders", 1);
    reply_with(&h, 1, o->m.call_id + 1, MXU_RES_OK, "", 0, 0, &v, 1);
    free_op(o);
    expect_fatal(&h, "RES_REPLY for call");

    start(&h);
    invoke(&h, 1, "/kv-get", "");
    o = expect_op(&h, 1, MXU_RES_KV_GET, "orders", 1);
    reply_with(&h, 2, o->m.call_id, MXU_RES_OK, "", 0, 0, &v, 1); /* another invocation */
    free_op(o);
    expect_fatal(&h, "malformed RES_REPLY");

    start(&h);
    invoke(&h, 1, "/kv-get", "");
    o = expect_op(&h, 1, MXU_RES_KV_GET, "orders", 1);
    reply(&h, o, MXU_RES_OK, "", 0, 0, NULL, 0); /* a get with no value */
    free_op(o);
    expect_fatal(&h, "RES_REPLY to KV_GET carries 0 values");

    start(&h);
    invoke(&h, 1, "/kv-get", "");
    o = expect_op(&h, 1, MXU_RES_KV_GET, "orders", 1);
    queue_frame(&h, MXU_FRAME_RES_REPLY, 1, "\x01\x02", 2);
    free_op(o);
    expect_fatal(&h, "malformed RES_REPLY");

    start(&h);
    invoke(&h, 1, "/kv-get", "");
    free_op(expect_op(&h, 1, MXU_RES_KV_GET, "orders", 1));
    queue_frame(&h, MXU_FRAME_RESULT, 1, "", 0);
    expect_fatal(&h, "unexpected RESULT frame (type 4) while waiting for RES_REPLY");

    start(&h);
    invoke(&h, 1, "/kv-list", "limit=2");
    o = expect_op(&h, 1, MXU_RES_KV_LIST, "orders", 2);
    mxu_slice keys[4] = {S("a"), S("b"), S("c"), S("")};
    reply(&h, o, MXU_RES_OK, "", 3, 0, keys, 4); /* more keys than the limit */
    free_op(o);
    expect_fatal(&h, "KV_LIST");

    start(&h);
    invoke(&h, 1, "/blob-read", "len=10");
    o = expect_op(&h, 1, MXU_RES_BLOB_READ, "orders", 1);
    mxu_slice d = S("more than ten bytes");
    reply(&h, o, MXU_RES_OK, "", 100, 0, &d, 1);
    free_op(o);
    expect_fatal(&h, "BLOB_READ carries 19 bytes");

    start(&h);
    invoke(&h, 1, "/svc", "d=s");
    o = expect_op(&h, 1, MXU_RES_SVC_CALL, "s", 4);
    mxu_slice bad[3] = {S(""), S("Bad Name"), S("v")};
    reply(&h, o, MXU_RES_OK, "", 200, 0, bad, 3);
    free_op(o);
    expect_fatal(&h, "response header 0 is malformed");

    /* A reply when no call is waiting. */
    start(&h);
    reply_with(&h, 1, 1, MXU_RES_OK, "", 0, 0, NULL, 0);
    expect_fatal(&h, "unexpected RES_REPLY");
}

/* The host goes away while a handler waits: the instance exits 0. */
static void test_res_eof_during_call(void)
{
    host h;
    start(&h);
    invoke(&h, 1, "/kv-get", "");
    free_op(expect_op(&h, 1, MXU_RES_KV_GET, "orders", 1));
    shutdown(h.fd, SHUT_WR);
    CHECK_EQ_INT(wait_exit(&h), 0);
}

/* What one RES_OP → RES_REPLY round trip costs through the SDK and a
 * socketpair, against a host that answers as fast as it can: printed, and
 * loosely bounded so that a pathological regression (a sleep, a poll
 * timeout) fails. */
static void test_res_round_trip_cost(void)
{
    host h;
    start(&h);
    /* MXU_RES_BENCH_CALLS changes the count, e.g. to compare allocation
     * counts of two runs (the steady state should not allocate). */
    const char *env = getenv("MXU_RES_BENCH_CALLS");
    int N = env && atoi(env) > 1000 ? atoi(env) : 20000;
    char q[32];
    snprintf(q, sizeof(q), "n=%d", N);
    invoke(&h, 1, "/calls", q);
    uint8_t buf[256];
    mxu_slice v = S("value");
    struct timespec t0, t1;
    for (int i = 0; i < N; i++) {
        frame f;
        CHECK(pump(&h, &f));
        CHECK_EQ_INT(f.h.type, MXU_FRAME_RES_OP);
        mxu_res_op_msg m;
        CHECK_EQ_INT(mxu_res_op_decode(f.payload, f.h.len, &m), 0);
        if (i == 1000)
            clock_gettime(CLOCK_MONOTONIC, &t0); /* after warming up */
        size_t len = mxu_res_reply_encode(buf, sizeof(buf), m.call_id, 0, S(""), 1, 0, &v, 1);
        queue_frame(&h, MXU_FRAME_RES_REPLY, 1, buf, len);
        free(f.payload);
    }
    check_body(&h, 1, "failed=0");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double us = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / 1e3 /
                (N - 1000);
    fprintf(stderr, "  round trip: %.2f us per RES_OP/RES_REPLY (%d calls)\n", us, N - 1000);
    CHECK(us < 1000);
    bye(&h);
}

/* ---- built like the node builds a deployed function ------------------------------- */

/* `cc -std=gnu11 -O2 -I<repo>/include -o instance <src> <build>/sdk/libmxufn.a -lpthread`,
 * exactly the node's command line (libmxufn.a is never instrumented, so this
 * links in sanitizer builds too). Returns the binary's path. */
static char *deploy_build(const char *src)
{
    static char out[256];
    snprintf(out, sizeof(out), "/tmp/mxu-sdk-deploy-%d", (int)getpid());
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "%s -std=gnu11 -O2 -I%s/include -o %s %s %s -lpthread 2>/tmp/mxu-sdk-deploy-cc-%d",
             MXU_TEST_CC, MXU_TEST_SOURCE_ROOT, out, src, MXU_TEST_SDK_LIB, (int)getpid());
    if (system(cmd) != 0) {
        char log[64];
        snprintf(log, sizeof(log), "cat /tmp/mxu-sdk-deploy-cc-%d >&2", (int)getpid());
        if (system(log) != 0)
            fprintf(stderr, "(no compiler output)\n");
        MXU_TEST_FAIL_("deploy-time build failed: %s", cmd);
    }
    char log[64];
    snprintf(log, sizeof(log), "/tmp/mxu-sdk-deploy-cc-%d", (int)getpid());
    unlink(log);
    return out;
}

static void test_deploy_time_build(void)
{
    /* The test instance defines mxu_init(): the strong one must win over the
     * SDK's weak default. */
    char *bin = deploy_build(MXU_TEST_SOURCE_ROOT "/tests/unit/unit/sdk-test-instance.c");
    host h;
    static const char *const names[] = {"GREETING"};
    static const char *const values[] = {"yo"};
    spawn_with(&h, bin, SOCK_STREAM, 0);
    hello_and_init(&h, names, values, 1);
    free(expect(&h, MXU_FRAME_LOG, 0).payload);
    invoke(&h, 1, "/config", "");
    result *r = expect_result(&h, 1);
    CHECK_STR(r->body, "GREETING=yo MISSING=(null) fn=t v=3 init=1");
    free_result(r);
    bye(&h);
    unlink(bin);
}

static void test_example_hello(void)
{
    /* No mxu_init() here: the SDK's default runs. */
    char *bin = deploy_build(MXU_TEST_SOURCE_ROOT "/examples/hello/hello.c");
    host h;
    spawn_with(&h, bin, SOCK_STREAM, 0);
    hello_and_init(&h, NULL, NULL, 0);
    invoke(&h, 1, "/", "");
    invoke(&h, 2, "/", "name=Ada%20L");
    result *r = expect_result(&h, 1);
    CHECK_EQ_INT(r->status, 200);
    CHECK_STR(r->body, "hello, world\n");
    free_result(r);
    r = expect_result(&h, 2);
    CHECK_STR(r->body, "hello, Ada L\n");
    free_result(r);
    bye(&h);
    unlink(bin);
}

static void test_example_json_transform(void)
{
    char *bin = deploy_build(MXU_TEST_SOURCE_ROOT "/examples/json-transform/transform.c");
    host h;
    spawn_with(&h, bin, SOCK_STREAM, 0);
    hello_and_init(&h, NULL, NULL, 0);
    const char *good = "{\"name\": \"ada\", \"n\": 3, \"tags\": [\"x\", true, null],"
                       " \"esc\": \"a\\\"b\\u00e9\", \"o\": {\"k\": \"v\"}}";
    invoke_full(&h, 1, 5000, "POST", "/", "", NULL, NULL, 0, good, strlen(good));
    invoke_full(&h, 2, 5000, "POST", "/", "", NULL, NULL, 0, "{\"a\": }", 7);
    invoke_full(&h, 3, 5000, "POST", "/", "", NULL, NULL, 0, "[1]", 3);
    result *r = expect_result(&h, 1);
    CHECK_EQ_INT(r->status, 200);
    CHECK_STR(r->body, "{\"name\":\"ADA\",\"n\":3,\"tags\":[\"X\",true,null],"
                       "\"esc\":\"A\\\"B\\u00e9\",\"o\":{\"k\":\"V\"},\"count\":5}\n");
    CHECK_CONTAINS(r->headers, "Content-Type: application/json\n");
    free_result(r);
    r = expect_result(&h, 2);
    CHECK_EQ_INT(r->status, 400);
    CHECK_CONTAINS(r->body, "\"error\"");
    free_result(r);
    r = expect_result(&h, 3);
    CHECK_EQ_INT(r->status, 400);
    free_result(r);
    bye(&h);
    unlink(bin);
}

/* The kv counter of examples/counter: its manifest is valid and declares
 * the descriptor it uses, and one increment that loses a race retries with
 * the revision it read again. Built with the node's deploy command line. */
static void test_example_counter(void)
{
    FILE *mf = fopen(MXU_TEST_SOURCE_ROOT "/examples/counter/mxu.yaml", "r");
    CHECK(mf != NULL);
    char text[4096];
    size_t tlen = fread(text, 1, sizeof(text), mf);
    fclose(mf);
    mxu_manifest *man = NULL;
    mxu_err err = {0};
    if (mxu_manifest_parse(text, tlen, "examples/counter/mxu.yaml", &man, &err) < 0)
        MXU_TEST_FAIL_("manifest: %s", err.msg);
    CHECK_EQ_U64(man->nresources, 1);
    CHECK_STR(man->resources[0].name, "counter");
    CHECK_STR(man->resources[0].uri, "kv:counters");
    CHECK_STR(man->resources[0].access, "read-write");
    mxu_manifest_free(man);

    char *bin = deploy_build(MXU_TEST_SOURCE_ROOT "/examples/counter/counter.c");
    host h;
    spawn_with(&h, bin, SOCK_STREAM, 0);
    hello_and_init(&h, NULL, NULL, 0);

    /* A new counter: get says not found, create (expected 0) loses to a
     * concurrent creator, get again, CAS on that revision wins. */
    invoke(&h, 1, "/", "name=visits");
    op *o = expect_op(&h, 1, MXU_RES_KV_GET, "counter", 1);
    CHECK(arg_is(o, 0, "visits"));
    reply(&h, o, MXU_RES_NOT_FOUND, "", 0, 0, NULL, 0);
    free_op(o);
    o = expect_op(&h, 1, MXU_RES_KV_CAS, "counter", 2);
    CHECK(arg_is(o, 0, "visits") && arg_is(o, 1, "1"));
    CHECK_EQ_U64(o->m.n1, 0);
    reply(&h, o, MXU_RES_CONFLICT, "revision is 1", 0, 0, NULL, 0);
    free_op(o);
    o = expect_op(&h, 1, MXU_RES_KV_GET, "counter", 1);
    mxu_slice v = S("1");
    reply(&h, o, MXU_RES_OK, "", 1, 0, &v, 1);
    free_op(o);
    o = expect_op(&h, 1, MXU_RES_KV_CAS, "counter", 2);
    CHECK(arg_is(o, 1, "2"));
    CHECK_EQ_U64(o->m.n1, 1);
    reply(&h, o, MXU_RES_OK, "", 2, 0, NULL, 0);
    free_op(o);
    result *r = expect_result(&h, 1);
    CHECK_EQ_INT(r->status, 200);
    CHECK_STR(r->body, "{\"name\":\"visits\",\"value\":2}\n");
    free_result(r);

    /* A bad name costs no call; a backend outage is a 503 with a log line. */
    invoke(&h, 2, "/", "name=a%22b");
    r = expect_result(&h, 2);
    CHECK_EQ_INT(r->status, 400);
    free_result(r);
    invoke(&h, 3, "/", "name=x");
    o = expect_op(&h, 3, MXU_RES_KV_GET, "counter", 1);
    reply(&h, o, MXU_RES_UNAVAILABLE, "redis is down", 0, 0, NULL, 0);
    free_op(o);
    frame f = expect(&h, MXU_FRAME_LOG, 3);
    f.payload[f.h.len] = '\0';
    CHECK_CONTAINS((char *)f.payload + 8, "counter store: redis is down");
    free(f.payload);
    r = expect_result(&h, 3);
    CHECK_EQ_INT(r->status, 503);
    CHECK_STR(r->body, "{\"error\":\"backend unavailable\"}\n");
    free_result(r);
    bye(&h);
    unlink(bin);
}

MXU_TESTS(TEST(test_handshake_and_bye), TEST(test_pipelined_invokes),
          TEST(test_results_are_batched), TEST(test_handler_errors), TEST(test_log_frames),
          TEST(test_log_is_not_delayed), TEST(test_config_and_identity), TEST(test_query_params),
          TEST(test_deadline), TEST(test_arena_and_validation), TEST(test_big_bodies),
          TEST(test_pipelined_stream), TEST(test_out_of_memory_is_500),
          TEST(test_bye_after_pipelined_work), TEST(test_eof_exits_zero), TEST(test_garbage_header),
          TEST(test_garbage_payload), TEST(test_invoke_before_init), TEST(test_unexpected_frames),
          TEST(test_wrong_protocol_version), TEST(test_failing_init), TEST(test_deploy_time_build),
          TEST(test_example_hello), TEST(test_example_json_transform), TEST(test_res_kv),
          TEST(test_res_statuses), TEST(test_res_local_validation), TEST(test_res_blob),
          TEST(test_res_blob_write_chunks), TEST(test_res_blob_writer), TEST(test_res_queue),
          TEST(test_res_svc), TEST(test_res_call_ids), TEST(test_res_pipelined_during_call),
          TEST(test_res_bye_during_call), TEST(test_res_protocol_errors),
          TEST(test_res_eof_during_call), TEST(test_res_round_trip_cost),
          TEST(test_example_counter))
