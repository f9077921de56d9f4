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
    if (f.h.type != type || f.h.id != id)
        MXU_TEST_FAIL_("expected frame type %u id %llu, got type %u id %llu", type,
                       (unsigned long long)id, f.h.type, (unsigned long long)f.h.id);
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

MXU_TESTS(TEST(test_handshake_and_bye), TEST(test_pipelined_invokes),
          TEST(test_results_are_batched), TEST(test_handler_errors), TEST(test_log_frames),
          TEST(test_log_is_not_delayed), TEST(test_config_and_identity), TEST(test_query_params),
          TEST(test_deadline), TEST(test_arena_and_validation), TEST(test_big_bodies),
          TEST(test_pipelined_stream), TEST(test_out_of_memory_is_500),
          TEST(test_bye_after_pipelined_work), TEST(test_eof_exits_zero), TEST(test_garbage_header),
          TEST(test_garbage_payload), TEST(test_invoke_before_init), TEST(test_unexpected_frames),
          TEST(test_wrong_protocol_version), TEST(test_failing_init), TEST(test_deploy_time_build),
          TEST(test_example_hello), TEST(test_example_json_transform))
