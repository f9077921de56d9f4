/*
 * Unit tests for src/cli: the pure parts (invocation targets, -H headers,
 * option parsing, URL escaping, printable text, tables, log lines, platform
 * error detection), reading function folders (hidden files, symlinks, modes,
 * limits), and the verbs themselves against a fake node — a forked child
 * that answers canned HTTP responses and records the requests it got — so
 * that request shapes and output are checked without a real `mxu serve`.
 */
#include "cli/cli-internal.h"
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sodium.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

/* ---- helpers ----------------------------------------------------------------- */

static char *make_tmpdir(void)
{
    char tmpl[] = "/tmp/mxu-test-cli-XXXXXX";
    CHECK(mkdtemp(tmpl) != NULL);
    return mxu_strdup(tmpl);
}

static void write_file(const char *dir, const char *rel, const char *text, unsigned mode)
{
    _cleanup_free_ char *path = mxu_path_join(dir, rel);
    _cleanup_free_ char *parent = mxu_strdup(path);
    *strrchr(parent, '/') = '\0';
    mxu_err err;
    CHECK(mxu_mkdir_p(parent, 0755, &err) == 0);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    CHECK(fchmod(fd, mode) == 0);
    close(fd);
}

static void rm_tree(const char *dir)
{
    mxu_err err;
    mxu_rm_rf(dir, &err);
}

/* Run a verb with stdout and stderr captured into *out / *errout. */
static int run_verb(int (*fn)(int, char **), char **out, char **errout, const char *first, ...)
{
    char *argv[32];
    int argc = 0;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && argc < 31; a = va_arg(ap, const char *))
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;

    FILE *fo = tmpfile(), *fe = tmpfile();
    CHECK(fo && fe);
    fflush(stdout);
    fflush(stderr);
    int so = dup(1), se = dup(2);
    dup2(fileno(fo), 1);
    dup2(fileno(fe), 2);
    int rc = fn(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so);
    close(se);
    mxu_err err;
    mxu_buf b = {0};
    _cleanup_free_ char *po = mxu_asprintf("/proc/self/fd/%d", fileno(fo));
    _cleanup_free_ char *pe = mxu_asprintf("/proc/self/fd/%d", fileno(fe));
    CHECK(mxu_read_file(po, 1 << 24, &b, &err) == 0);
    mxu_buf_append(&b, "", 0);
    *out = mxu_buf_steal(&b, NULL);
    CHECK(mxu_read_file(pe, 1 << 24, &b, &err) == 0);
    mxu_buf_append(&b, "", 0);
    *errout = mxu_buf_steal(&b, NULL);
    fclose(fo);
    fclose(fe);
    return rc;
}

/* A fake node: answers `n` connections with the canned responses in order
 * (each sent as is, then the connection closed), appending every request
 * it read (head and body) to reqfile, separated by "\n=====\n". */
typedef struct fake_node {
    int port;
    pid_t pid;
    char reqfile[64];
    char url[64];
} fake_node;

static void fake_serve_one(int lfd, const char *response, size_t len, int rfd)
{
    int c = accept(lfd, NULL, NULL);
    if (c < 0)
        _exit(3);
    mxu_buf req = {0};
    size_t head_end = 0, want = 0;
    for (;;) {
        mxu_buf_reserve(&req, 65536);
        ssize_t n = read(c, req.data + req.len, req.cap - req.len - 1);
        if (n <= 0)
            break;
        req.len += (size_t)n;
        req.data[req.len] = '\0';
        if (head_end == 0) {
            char *e = strstr(req.data, "\r\n\r\n");
            if (e == NULL)
                continue;
            head_end = (size_t)(e - req.data) + 4;
            char *cl = strcasestr(req.data, "\r\nContent-Length:");
            want = cl && cl < e ? strtoul(cl + 17, NULL, 10) : 0;
        }
        if (req.len >= head_end + want)
            break;
    }
    if (write(rfd, req.data, req.len) < 0 || write(rfd, "\n=====\n", 7) < 0)
        _exit(4);
    if (write(c, response, len) != (ssize_t)len)
        _exit(5);
    shutdown(c, SHUT_WR);
    char drain[256];
    while (read(c, drain, sizeof(drain)) > 0)
        ;
    close(c);
}

/* lens: the responses' lengths, or NULL if they are C strings. */
static void fake_start(fake_node *f, const char *const *responses, const size_t *lens, size_t n)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(lfd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    CHECK(listen(lfd, 16) == 0);
    socklen_t sl = sizeof(sa);
    CHECK(getsockname(lfd, (struct sockaddr *)&sa, &sl) == 0);
    f->port = ntohs(sa.sin_port);
    snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d", f->port);
    snprintf(f->reqfile, sizeof(f->reqfile), "/tmp/mxu-test-cli-req-%d", (int)getpid());
    int rfd = open(f->reqfile, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
    CHECK(rfd >= 0);
    fflush(NULL);
    f->pid = fork();
    CHECK(f->pid >= 0);
    if (f->pid == 0) {
        /* Never outlive the test (a failed CHECK exits without fake_stop),
         * and never hold the test's output pipes open. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() == 1)
            _exit(0);
        alarm(30);
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0), dup2(null, 1), dup2(null, 2);
        for (size_t i = 0; i < n; i++)
            fake_serve_one(lfd, responses[i], lens ? lens[i] : strlen(responses[i]), rfd);
        _exit(0); /* not exit: the parent's state is not ours to clean up */
    }
    close(lfd);
    close(rfd);
    setenv("MXU_URL", f->url, 1);
}

/* Stop the node; returns what it recorded (caller frees). */
static char *fake_stop(fake_node *f)
{
    kill(f->pid, SIGKILL);
    waitpid(f->pid, NULL, 0);
    mxu_buf b = {0};
    mxu_err err;
    CHECK(mxu_read_file(f->reqfile, 1 << 28, &b, &err) == 0);
    unlink(f->reqfile);
    mxu_buf_append(&b, "", 0);
    return mxu_buf_steal(&b, NULL);
}

/* A canned response with a JSON body. */
static char *json_response(int status, const char *reason, const char *body)
{
    return mxu_asprintf("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                        "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                        status, reason, strlen(body), body);
}

/* The body of the first recorded request. */
static json_t *request_json(const char *recorded)
{
    const char *b = strstr(recorded, "\r\n\r\n");
    CHECK(b != NULL);
    const char *end = strstr(b, "\n=====\n");
    json_error_t je;
    json_t *j = json_loadb(b + 4, (size_t)(end - b - 4), 0, &je);
    if (j == NULL)
        MXU_TEST_FAIL_("request body is not JSON: %s", je.text);
    return j;
}

/* ---- targets, headers, options ---------------------------------------------- */

static void test_target_parse(void)
{
    cli_target t;
    mxu_err err;
    CHECK_EQ_INT(cli_target_parse("hello", &t, &err), 0);
    CHECK_STR(t.name, "hello");
    CHECK(t.ref == NULL);
    CHECK_STR(t.path, "");
    cli_target_free(&t);

    CHECK_EQ_INT(cli_target_parse("hello@3/users/7?full=1", &t, &err), 0);
    CHECK_STR(t.name, "hello");
    CHECK_STR(t.ref, "3");
    CHECK_STR(t.path, "/users/7?full=1");
    cli_target_free(&t);

    CHECK_EQ_INT(cli_target_parse("json-tr_2@prod", &t, &err), 0);
    CHECK_STR(t.ref, "prod");
    CHECK_STR(t.path, "");
    cli_target_free(&t);

    CHECK_EQ_INT(cli_target_parse("hello?x=1", &t, &err), 0);
    CHECK(t.ref == NULL);
    CHECK_STR(t.path, "?x=1");
    cli_target_free(&t);

    CHECK_EQ_INT(cli_target_parse("hello/", &t, &err), 0);
    CHECK_STR(t.path, "/");
    cli_target_free(&t);

    CHECK_EQ_INT(cli_target_parse("", &t, &err), -1);
    CHECK_EQ_INT(cli_target_parse("@3", &t, &err), -1);
    CHECK_EQ_INT(cli_target_parse("Hello", &t, &err), -1);
    CHECK_CONTAINS(err.msg, "'Hello' is not a function name");
    CHECK_EQ_INT(cli_target_parse("hello@", &t, &err), -1);
    CHECK_CONTAINS(err.msg, "nothing after '@'");
    CHECK_EQ_INT(cli_target_parse("hello@/x", &t, &err), -1);
    CHECK_EQ_INT(cli_target_parse("hello@Bad!", &t, &err), -1);
    CHECK_CONTAINS(err.msg, "neither a version number nor an alias");
}

static void test_invoke_path(void)
{
    cli_target t;
    mxu_err err;
    CHECK_EQ_INT(cli_target_parse("hello@prod/a b/\xc3\xbc/x%2Fy?q=1&r=a b#frag", &t, &err), 0);
    _cleanup_buf_ mxu_buf p = {0};
    cli_invoke_path(&t, &p);
    CHECK_STR(p.data, "/fn/hello@prod/a%20b/%C3%BC/x%2Fy?q=1&r=a%20b%23frag");
    cli_target_free(&t);

    CHECK_EQ_INT(cli_target_parse("hello", &t, &err), 0);
    mxu_buf_reset(&p);
    cli_invoke_path(&t, &p);
    CHECK_STR(p.data, "/fn/hello");
    cli_target_free(&t);

    mxu_buf_reset(&p);
    cli_path_segment(&p, "a/b?c");
    CHECK_STR(p.data, "a%2Fb%3Fc");
}

static void test_header_parse(void)
{
    char *name, *value;
    mxu_err err;
    CHECK_EQ_INT(cli_header_parse("Content-Type: application/json", &name, &value, &err), 0);
    CHECK_STR(name, "Content-Type");
    CHECK_STR(value, "application/json");
    free(name), free(value);

    CHECK_EQ_INT(cli_header_parse("X-A:v  \t", &name, &value, &err), 0);
    CHECK_STR(name, "X-A");
    CHECK_STR(value, "v");
    free(name), free(value);

    CHECK_EQ_INT(cli_header_parse("X-Empty:", &name, &value, &err), 0);
    CHECK_STR(value, "");
    free(name), free(value);

    CHECK_EQ_INT(cli_header_parse("X-Colon: a:b", &name, &value, &err), 0);
    CHECK_STR(value, "a:b");
    free(name), free(value);

    CHECK_EQ_INT(cli_header_parse("NoColon", &name, &value, &err), -1);
    CHECK_CONTAINS(err.msg, "has no ':'");
    CHECK_EQ_INT(cli_header_parse(": v", &name, &value, &err), -1);
    CHECK_CONTAINS(err.msg, "no name");
    CHECK_EQ_INT(cli_header_parse("Bad Name: v", &name, &value, &err), -1);
    CHECK_EQ_INT(cli_header_parse("X: a\r\nInjected: 1", &name, &value, &err), -1);
    CHECK_CONTAINS(err.msg, "line break");
    CHECK_EQ_INT(cli_header_parse("content-length: 5", &name, &value, &err), -1);
    CHECK_EQ_INT(cli_header_parse("Transfer-Encoding: chunked", &name, &value, &err), -1);
}

static void test_options(void)
{
    enum { D = CLI_OPT_FIRST_VERB, I, X };
    static const cli_option opts[] = {
        CLI_OPT_COMMON, {"data", 'd', true, D}, {"include", 'i', false, I}, {"x", 'X', true, X}};
    char *argv[] = {"invoke", "-d",         "one",   "-dtwo",  "--data=three",
                    "--data", "four",       "hello", "-iXPUT", "-",
                    "--url",  "http://h:1", "--",    "--data", NULL};
    int argc = (int)MXU_ARRAY_LEN(argv) - 1;
    cli_parser p;
    cli_parser_init(&p, argc, argv, opts, MXU_ARRAY_LEN(opts));
    const char *arg;
    mxu_err err;
    struct {
        int id;
        const char *arg;
    } want[] = {{D, "one"},
                {D, "two"},
                {D, "three"},
                {D, "four"},
                {CLI_OPT_POSITIONAL, "hello"},
                {I, NULL},
                {X, "PUT"},
                {CLI_OPT_POSITIONAL, "-"},
                {CLI_OPT_URL, "http://h:1"},
                {CLI_OPT_POSITIONAL, "--data"},
                {CLI_OPT_END, NULL}};
    for (size_t i = 0; i < MXU_ARRAY_LEN(want); i++) {
        int id = cli_parser_next(&p, &arg, &err);
        CHECK_EQ_INT(id, want[i].id);
        if (want[i].arg)
            CHECK_STR(arg, want[i].arg);
        else
            CHECK(arg == NULL);
    }

    char *bad1[] = {"x", "--nope", NULL};
    cli_parser_init(&p, 2, bad1, opts, MXU_ARRAY_LEN(opts));
    CHECK_EQ_INT(cli_parser_next(&p, &arg, &err), CLI_OPT_ERROR);
    CHECK_CONTAINS(err.msg, "unknown option '--nope'");
    char *bad2[] = {"x", "-d", NULL};
    cli_parser_init(&p, 2, bad2, opts, MXU_ARRAY_LEN(opts));
    CHECK_EQ_INT(cli_parser_next(&p, &arg, &err), CLI_OPT_ERROR);
    CHECK_CONTAINS(err.msg, "'-d' needs a value");
    char *bad3[] = {"x", "--include=1", NULL};
    cli_parser_init(&p, 2, bad3, opts, MXU_ARRAY_LEN(opts));
    CHECK_EQ_INT(cli_parser_next(&p, &arg, &err), CLI_OPT_ERROR);
    CHECK_CONTAINS(err.msg, "takes no value");
    char *bad4[] = {"x", "-iz", NULL};
    cli_parser_init(&p, 2, bad4, opts, MXU_ARRAY_LEN(opts));
    CHECK_EQ_INT(cli_parser_next(&p, &arg, &err), I);
    CHECK_EQ_INT(cli_parser_next(&p, &arg, &err), CLI_OPT_ERROR);
    CHECK_CONTAINS(err.msg, "unknown option '-z'");
}

/* ---- text helpers and tables ------------------------------------------------ */

static void test_printable(void)
{
    _cleanup_buf_ mxu_buf b = {0};
    cli_append_printable(&b, "plain text\n");
    CHECK_STR(b.data, "plain text");
    mxu_buf_reset(&b);
    cli_append_printable(&b, "a\nb\r\tc\x1b[31mred\x7f");
    CHECK_STR(b.data, "a\\nb\\r\tc\\x1b[31mred\\x7f");
    mxu_buf_reset(&b);
    cli_append_printable(&b, "caf\xc3\xa9 \xe2\x9c\x93 \xff \xc2\x9b"
                             "1m");
    CHECK_STR(b.data, "caf\xc3\xa9 \xe2\x9c\x93 \\xff \\xc2\\x9b1m");
    mxu_buf_reset(&b);
    cli_append_printable(&b, "");
    CHECK_STR(b.data, "");

    mxu_buf_reset(&b);
    cli_append_time_short(&b, "2026-11-30T05:18:01.123Z");
    CHECK_STR(b.data, "2026-11-30T05:18:01Z");
    mxu_buf_reset(&b);
    cli_append_time_short(&b, "2026-11-30T05:18:01Z");
    CHECK_STR(b.data, "2026-11-30T05:18:01Z");
}

static void test_table(void)
{
    static const char *const head[] = {"NAME", "LATEST", "ALIASES"};
    cli_table t;
    cli_table_init(&t, 3, head);
    const char *r1[] = {"hello", "3", "prod=2"};
    const char *r2[] = {"json-transform", "12", NULL};
    const char *r3[] = {"caf\xc3\xa9", "", "x"};
    cli_table_add(&t, r1);
    cli_table_add(&t, r2);
    cli_table_add(&t, r3);
    _cleanup_buf_ mxu_buf b = {0};
    cli_table_render(&t, &b);
    CHECK_STR(b.data, "NAME            LATEST  ALIASES\n"
                      "hello           3       prod=2\n"
                      "json-transform  12      -\n"
                      "caf\xc3\xa9            -       x\n");
    cli_table_free(&t);
}

static void test_ls_table(void)
{
    json_t *fns =
        json_loads("[{\"name\":\"hello\",\"created\":\"2026-11-30T05:18:01.123Z\",\"latest\":3,"
                   "\"versions\":3,\"aliases\":{\"latest\":3,\"staging\":3,\"prod\":2}},"
                   "{\"name\":\"b\",\"kind\":\"service\",\"created\":\"2026-12-01T00:00:00.000Z\","
                   "\"latest\":1,"
                   "\"versions\":1,\"aliases\":{\"latest\":1}}]",
                   0, NULL);
    CHECK(fns != NULL);
    cli_table t;
    cli_ls_table(fns, &t);
    _cleanup_buf_ mxu_buf b = {0};
    cli_table_render(&t, &b);
    CHECK_STR(b.data,
              "NAME   KIND      LATEST  VERSIONS  ALIASES           CREATED\n"
              "hello  function  3       3         prod=2,staging=3  2026-11-30T05:18:01Z\n"
              "b      service   1       1         -                 2026-12-01T00:00:00Z\n");
    cli_table_free(&t);
    json_decref(fns);
}

static void test_log_line(void)
{
    json_t *r = json_loads("{\"time\":\"2026-11-30T05:18:01.123Z\",\"version\":3,"
                           "\"invocation\":\"0000018c2f3e0001\",\"stream\":\"stderr\","
                           "\"text\":\"hello \\u001b[2J world\\n\"}",
                           0, NULL);
    _cleanup_buf_ mxu_buf b = {0};
    cli_log_line(r, &b);
    CHECK_STR(b.data, "2026-11-30T05:18:01.123Z  v3  0000018c2f3e0001  hello \\x1b[2J world\n");
    json_decref(r);
    r = json_loads("{\"time\":\"T\",\"version\":2,\"invocation\":null,\"stream\":\"mxu\","
                   "\"text\":\"timed out\"}",
                   0, NULL);
    mxu_buf_reset(&b);
    cli_log_line(r, &b);
    CHECK_STR(b.data, "T  v2  -  [mxu] timed out\n");
    json_decref(r);
}

static void test_manifest_scalar(void)
{
    const char *m = "# a function\nname: hello   # the name\nruntime: 'c'\n"
                    "description: \"a # b\"\nsources:\n  - name: x\nempty:\n";
    char *v = cli_manifest_scalar(m, "name");
    CHECK_STR(v, "hello");
    free(v);
    v = cli_manifest_scalar(m, "runtime");
    CHECK_STR(v, "c");
    free(v);
    v = cli_manifest_scalar(m, "description");
    CHECK_STR(v, "a # b");
    free(v);
    CHECK(cli_manifest_scalar(m, "empty") == NULL);
    CHECK(cli_manifest_scalar(m, "memory") == NULL);
    CHECK(cli_manifest_scalar("names: x\n", "name") == NULL);
}

static void add_header(cli_response *r, const char *name, const char *value)
{
    r->headers = mxu_realloc(r->headers, (r->nheaders + 1) * sizeof(*r->headers));
    r->headers[r->nheaders].name = mxu_strdup(name);
    r->headers[r->nheaders].value = mxu_strdup(value);
    r->nheaders++;
}

static void test_platform_error(void)
{
    cli_response r = {.status = 503};
    add_header(&r, "content-type", "application/json");
    mxu_buf_puts(&r.body, "{\"error\":{\"code\":\"no_capacity\",\"message\":\"no room\"}}");
    json_t *j;
    const char *code, *msg;
    CHECK(cli_platform_error(&r, &j, &code, &msg));
    CHECK_STR(code, "no_capacity");
    CHECK_STR(msg, "no room");
    json_decref(j);

    /* A function's own REST-style error is its answer, not the node's. */
    mxu_buf_reset(&r.body);
    r.status = 404;
    mxu_buf_puts(&r.body, "{\"error\":{\"code\":\"no_such_user\",\"message\":\"no user 7\"}}");
    CHECK(!cli_platform_error(&r, &j, &code, &msg));
    CHECK(j == NULL);

    r.status = 200;
    CHECK(!cli_platform_error(&r, &j, &code, &msg));
    cli_response_free(&r);
}

static void test_invoke_json(void)
{
    cli_response r = {.status = 201};
    add_header(&r, "Set-Cookie", "a=1");
    add_header(&r, "set-cookie", "b=2");
    add_header(&r, "X-Mxu-Invocation-Id", "0000018c2f3e0001");
    mxu_buf_puts(&r.body, "caf\xc3\xa9");
    json_t *o = cli_invoke_json(&r);
    CHECK_EQ_INT(json_integer_value(json_object_get(o, "status")), 201);
    CHECK_STR(json_string_value(json_object_get(json_object_get(o, "headers"), "set-cookie")),
              "a=1, b=2");
    CHECK_STR(json_string_value(json_object_get(o, "body")), "caf\xc3\xa9");
    CHECK_STR(json_string_value(json_object_get(o, "invocation")), "0000018c2f3e0001");
    json_decref(o);

    mxu_buf_reset(&r.body);
    mxu_buf_append(&r.body, "\x00\xff\x01", 3);
    o = cli_invoke_json(&r);
    CHECK(json_object_get(o, "body") == NULL);
    CHECK_STR(json_string_value(json_object_get(o, "body_base64")), "AP8B");
    json_decref(o);
    cli_response_free(&r);
}

/* ---- bundles ---------------------------------------------------------------- */

static void test_bundle_read(void)
{
    _cleanup_free_ char *dir = make_tmpdir();
    write_file(dir, "mxu.yaml", "name: hello\nruntime: c\n", 0644);
    write_file(dir, "hello.c", "int x;\n", 0644);
    write_file(dir, "run.sh", "#!/bin/sh\n", 0755);
    write_file(dir, "lib/util/u.h", "", 0600);
    write_file(dir, "lib/mxu.yaml", "not the manifest", 0644);
    write_file(dir, ".hidden", "secret", 0644);
    write_file(dir, ".git/config", "x", 0644);
    write_file(dir, "lib/.swp", "x", 0644);
    _cleanup_free_ char *link = mxu_path_join(dir, "link.c");
    CHECK(symlink("/etc/passwd", link) == 0);
    _cleanup_free_ char *fifo = mxu_path_join(dir, "pipe");
    CHECK(mkfifo(fifo, 0644) == 0);

    mxu_bundle b;
    mxu_err err;
    if (mxu_bundle_read(dir, &b, &err) < 0)
        MXU_TEST_FAIL_("%s", err.msg);
    CHECK_STR(b.manifest, "name: hello\nruntime: c\n");
    CHECK_EQ_U64(b.manifest_len, strlen(b.manifest));
    _cleanup_free_ char *mpath = mxu_asprintf("%s/mxu.yaml", dir);
    CHECK_STR(b.manifest_path, mpath);
    CHECK_EQ_U64(b.nfiles, 4);
    CHECK_STR(b.files[0].path, "hello.c");
    CHECK_EQ_INT(b.files[0].mode, 0644);
    CHECK_EQ_U64(b.files[0].len, 7);
    CHECK(memcmp(b.files[0].data, "int x;\n", 7) == 0);
    CHECK_STR(b.files[1].path, "lib/mxu.yaml");
    CHECK_STR(b.files[2].path, "lib/util/u.h");
    CHECK_EQ_INT(b.files[2].mode, 0600);
    CHECK_EQ_U64(b.files[2].len, 0);
    CHECK(b.files[2].data != NULL);
    CHECK_STR(b.files[3].path, "run.sh");
    CHECK_EQ_INT(b.files[3].mode, 0755);
    CHECK_EQ_U64(b.total_bytes, 7 + 16 + 0 + 10);
    CHECK_EQ_U64(b.nwarnings, 2);
    CHECK_CONTAINS(b.warnings[0], "link.c: it is a symlink");
    CHECK_CONTAINS(b.warnings[1], "pipe: not a regular file");

    /* The request body carries all of it, base64 and all. */
    _cleanup_buf_ mxu_buf body = {0};
    cli_deploy_body(&b, &body);
    json_error_t je;
    json_t *j = json_loadb(body.data, body.len, 0, &je);
    if (j == NULL)
        MXU_TEST_FAIL_("deploy body is not JSON: %s", je.text);
    CHECK_STR(json_string_value(json_object_get(j, "manifest")), b.manifest);
    CHECK_STR(json_string_value(json_object_get(j, "manifest_path")), mpath);
    json_t *files = json_object_get(j, "files");
    CHECK_EQ_U64(json_array_size(files), 4);
    json_t *f3 = json_array_get(files, 3);
    CHECK_STR(json_string_value(json_object_get(f3, "path")), "run.sh");
    CHECK_EQ_INT(json_integer_value(json_object_get(f3, "mode")), 493);
    CHECK_STR(json_string_value(json_object_get(f3, "data")), "IyEvYmluL3NoCg==");
    CHECK_STR(json_string_value(json_object_get(json_array_get(files, 2), "data")), "");
    json_decref(j);
    mxu_bundle_free(&b);
    rm_tree(dir);
}

static void test_bundle_errors(void)
{
    _cleanup_free_ char *dir = make_tmpdir();
    mxu_bundle b;
    mxu_err err;
    /* No manifest. */
    write_file(dir, "hello.c", "x", 0644);
    CHECK_EQ_INT(mxu_bundle_read(dir, &b, &err), -1);
    CHECK_CONTAINS(err.msg, "mxu.yaml not found");
    /* Not a folder. */
    _cleanup_free_ char *file = mxu_path_join(dir, "hello.c");
    CHECK_EQ_INT(mxu_bundle_read(file, &b, &err), -1);
    CHECK_CONTAINS(err.msg, "is not a folder");
    /* Missing folder. */
    CHECK_EQ_INT(mxu_bundle_read("/nonexistent/mxu-test", &b, &err), -1);
    CHECK_CONTAINS(err.msg, "cannot open the folder /nonexistent/mxu-test");
    /* A manifest that is not text. */
    write_file(dir, "mxu.yaml", "name: \xff\n", 0644);
    CHECK_EQ_INT(mxu_bundle_read(dir, &b, &err), -1);
    CHECK_CONTAINS(err.msg, "is not UTF-8");
    /* A file name that is not UTF-8. */
    write_file(dir, "mxu.yaml", "name: hello\n", 0644);
    write_file(dir, "bad\xff.c", "x", 0644);
    CHECK_EQ_INT(mxu_bundle_read(dir, &b, &err), -1);
    CHECK_CONTAINS(err.msg, "not UTF-8");
    rm_tree(dir);
}

static void test_bundle_limits(void)
{
    _cleanup_free_ char *dir = make_tmpdir();
    mxu_bundle b;
    mxu_err err;
    write_file(dir, "mxu.yaml", "name: many\n", 0644);
    /* Exactly the limit is fine (the manifest is not one of the files). */
    for (int i = 0; i < MXU_BUNDLE_READ_MAX_FILES; i++) {
        char name[32];
        snprintf(name, sizeof(name), "f/%04d", i);
        write_file(dir, name, "x", 0644);
    }
    if (mxu_bundle_read(dir, &b, &err) < 0)
        MXU_TEST_FAIL_("%s", err.msg);
    CHECK_EQ_U64(b.nfiles, MXU_BUNDLE_READ_MAX_FILES);
    mxu_bundle_free(&b);
    /* Hidden files do not count. */
    write_file(dir, ".extra", "x", 0644);
    CHECK_EQ_INT(mxu_bundle_read(dir, &b, &err), 0);
    mxu_bundle_free(&b);
    write_file(dir, "one-more", "x", 0644);
    CHECK_EQ_INT(mxu_bundle_read(dir, &b, &err), -1);
    CHECK_EQ_INT(err.code, EFBIG);
    CHECK_CONTAINS(err.msg, "more than 1000 files");
    rm_tree(dir);

    /* Size: checked from the sizes before reading, so a sparse file is enough. */
    _cleanup_free_ char *dir2 = make_tmpdir();
    write_file(dir2, "mxu.yaml", "name: big\n", 0644);
    write_file(dir2, "a.bin", "12345", 0644);
    _cleanup_free_ char *big = mxu_path_join(dir2, "big.bin");
    int fd = open(big, O_WRONLY | O_CREAT, 0644);
    CHECK(fd >= 0);
    CHECK(ftruncate(fd, MXU_BUNDLE_READ_MAX_BYTES - 4) == 0);
    close(fd);
    CHECK_EQ_INT(mxu_bundle_read(dir2, &b, &err), -1);
    CHECK_EQ_INT(err.code, EFBIG);
    CHECK_CONTAINS(err.msg, "total more than 64 MiB");
    CHECK_CONTAINS(err.msg, "big.bin");
    rm_tree(dir2);
}

/* ---- verbs: usage ------------------------------------------------------------ */

static void test_usage(void)
{
    char *out, *err;
    CHECK_EQ_INT(run_verb(mxu_cmd_invoke, &out, &err, "invoke", NULL), 2);
    CHECK_CONTAINS(err, "mxu: which function?");
    CHECK_CONTAINS(err, "usage: mxu invoke NAME");
    free(out), free(err);

    CHECK_EQ_INT(run_verb(mxu_cmd_invoke, &out, &err, "invoke", "--help", NULL), 0);
    CHECK_CONTAINS(out, "usage: mxu invoke");
    CHECK_CONTAINS(out, "example:");
    CHECK_CONTAINS(out, "--url URL");
    free(out), free(err);

    CHECK_EQ_INT(
        run_verb(mxu_cmd_invoke, &out, &err, "invoke", "hello", "-d", "a", "-f", "b", NULL), 2);
    CHECK_CONTAINS(err, "give the body once");
    free(out), free(err);

    CHECK_EQ_INT(run_verb(mxu_cmd_invoke, &out, &err, "invoke", "hello", "-H", "bad", NULL), 2);
    CHECK_CONTAINS(err, "has no ':'");
    free(out), free(err);

    CHECK_EQ_INT(run_verb(mxu_cmd_deploy, &out, &err, "deploy", "--bogus", NULL), 2);
    CHECK_CONTAINS(err, "unknown option '--bogus'");
    free(out), free(err);

    CHECK_EQ_INT(run_verb(mxu_cmd_alias, &out, &err, "alias", "hello", "prod", "two", NULL), 2);
    CHECK_CONTAINS(err, "'two' is not a version number");
    free(out), free(err);

    CHECK_EQ_INT(run_verb(mxu_cmd_alias, &out, &err, "alias", "hello", "prod", NULL), 2);
    free(out), free(err);

    CHECK_EQ_INT(run_verb(mxu_cmd_rm, &out, &err, "rm", "hello@prod", NULL), 2);
    CHECK_CONTAINS(err, "mxu alias hello prod --delete");
    free(out), free(err);

    CHECK_EQ_INT(run_verb(mxu_cmd_logs, &out, &err, "logs", "hello", "-n", "x", NULL), 2);
    free(out), free(err);

    CHECK_EQ_INT(run_verb(mxu_cmd_ls, &out, &err, "ls", "extra", NULL), 2);
    CHECK_CONTAINS(err, "unexpected argument 'extra'");
    free(out), free(err);

    CHECK_EQ_INT(run_verb(mxu_cmd_ls, &out, &err, "ls", "--url", "ftp://x", NULL), 2);
    CHECK_CONTAINS(err, "is not a node URL");
    free(out), free(err);

    /* Every verb has a help page. */
    int (*verbs[])(int, char **) = {mxu_cmd_deploy, mxu_cmd_invoke,  mxu_cmd_ls,
                                    mxu_cmd_show,   mxu_cmd_alias,   mxu_cmd_rm,
                                    mxu_cmd_logs,   mxu_cmd_version, mxu_cmd_health};
    for (size_t i = 0; i < MXU_ARRAY_LEN(verbs); i++) {
        CHECK_EQ_INT(run_verb(verbs[i], &out, &err, "verb", "-h", NULL), 0);
        CHECK_CONTAINS(out, "usage: mxu ");
        CHECK_CONTAINS(out, "example:");
        free(out), free(err);
    }

    FILE *f = tmpfile();
    mxu_cli_usage_all(f);
    fflush(f);
    rewind(f);
    char all[4096] = {0};
    CHECK(fread(all, 1, sizeof(all) - 1, f) > 0);
    fclose(f);
    CHECK_CONTAINS(all, "serve     run a node");
    CHECK_CONTAINS(all, "deploy ");
    CHECK_CONTAINS(all, "version ");
}

/* ---- verbs against a node ----------------------------------------------------- */

static void test_connection_refused(void)
{
    /* A port nobody listens on: bind, learn it, close. */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(s, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    socklen_t sl = sizeof(sa);
    getsockname(s, (struct sockaddr *)&sa, &sl);
    close(s);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", ntohs(sa.sin_port));
    setenv("MXU_URL", url, 1);
    char *out, *err;
    CHECK_EQ_INT(run_verb(mxu_cmd_ls, &out, &err, "ls", NULL), 1);
    _cleanup_free_ char *want =
        mxu_asprintf("mxu: cannot reach the node at %s (connection refused) — is 'mxu serve' "
                     "running? Set MXU_URL to use another node.\n",
                     url);
    CHECK_STR(err, want);
    CHECK_STR(out, "");
    free(out), free(err);

    /* version still answers for the client. */
    CHECK_EQ_INT(run_verb(mxu_cmd_version, &out, &err, "version", NULL), 0);
    CHECK_STR(out, "mxu " MXU_VERSION_STRING "\n");
    free(out), free(err);
}

static void test_deploy_verb(void)
{
    _cleanup_free_ char *dir = make_tmpdir();
    write_file(dir, "mxu.yaml", "name: hello\nruntime: c\n", 0644);
    write_file(dir, "hello.c", "int main;\n", 0644);

    _cleanup_free_ char *r1 = json_response(201, "Created",
                                            "{\"function\":\"hello\",\"version\":4,\"unchanged\":"
                                            "false,\"digest\":\"ab\",\"build_log\":\"\"}");
    fake_node f;
    const char *resp[] = {r1};
    fake_start(&f, resp, NULL, 1);
    char *out, *err;
    CHECK_EQ_INT(run_verb(mxu_cmd_deploy, &out, &err, "deploy", dir, NULL), 0);
    CHECK_CONTAINS(out, "deployed hello@4 (built in ");
    _cleanup_free_ char *inv = mxu_asprintf("\ninvoke: curl %s/fn/hello\n", f.url);
    CHECK_CONTAINS(out, inv);
    free(out), free(err);
    _cleanup_free_ char *req = fake_stop(&f);
    CHECK(strncmp(req, "POST /v1/functions HTTP/1.1\r\n", 29) == 0);
    CHECK(strcasestr(req, "\r\nContent-Type: application/json\r\n") != NULL);
    CHECK(strcasestr(req, "\r\nExpect:") == NULL);
    json_t *j = request_json(req);
    CHECK_STR(json_string_value(json_object_get(j, "manifest")), "name: hello\nruntime: c\n");
    json_t *file = json_array_get(json_object_get(j, "files"), 0);
    CHECK_STR(json_string_value(json_object_get(file, "path")), "hello.c");
    CHECK_EQ_INT(json_integer_value(json_object_get(file, "mode")), 420);
    json_decref(j);

    /* Unchanged, and --json. */
    _cleanup_free_ char *r2 = json_response(
        200, "OK", "{\"function\":\"hello\",\"version\":3,\"unchanged\":true,\"build_log\":\"\"}");
    const char *resp2[] = {r2, r2};
    fake_start(&f, resp2, NULL, 2);
    CHECK_EQ_INT(run_verb(mxu_cmd_deploy, &out, &err, "deploy", dir, NULL), 0);
    CHECK_CONTAINS(out, "hello is unchanged (still version 3)\n");
    free(out), free(err);
    CHECK_EQ_INT(run_verb(mxu_cmd_deploy, &out, &err, "deploy", "--json", dir, NULL), 0);
    CHECK_STR(out,
              "{\"function\":\"hello\",\"version\":3,\"unchanged\":true,\"build_log\":\"\"}\n");
    free(out), free(err);
    free(fake_stop(&f));

    /* Refusals: the manifest message as is; the build log after a failed build. */
    _cleanup_free_ char *r3 = json_response(
        400, "Bad Request",
        "{\"error\":{\"code\":\"invalid_manifest\",\"message\":\"x/mxu.yaml:4: memory: '12X' "
        "is not a size\"}}");
    _cleanup_free_ char *r4 =
        json_response(422, "Unprocessable Entity",
                      "{\"error\":{\"code\":\"build_failed\",\"message\":\"the build of hello "
                      "failed\",\"build_log\":\"hello.c:1: error: expected ';'\"}}");
    const char *resp3[] = {r3, r4};
    fake_start(&f, resp3, NULL, 2);
    CHECK_EQ_INT(run_verb(mxu_cmd_deploy, &out, &err, "deploy", dir, NULL), 1);
    CHECK_STR(err, "x/mxu.yaml:4: memory: '12X' is not a size\n");
    CHECK_STR(out, "");
    free(out), free(err);
    CHECK_EQ_INT(run_verb(mxu_cmd_deploy, &out, &err, "deploy", dir, NULL), 1);
    CHECK_STR(err, "mxu: the build of hello failed\nhello.c:1: error: expected ';'\n");
    free(out), free(err);
    free(fake_stop(&f));
    rm_tree(dir);
}

static void test_invoke_verb(void)
{
    static const char binary[] = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                                 "X-Mxu-Invocation-Id: 0000018c2f3e0001\r\n"
                                 "Content-Length: 4\r\nConnection: close\r\n\r\n\x00\xff\n\x01";
    _cleanup_free_ char *busy = mxu_asprintf(
        "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: 2\r\n"
        "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
        strlen("{\"error\":{\"code\":\"queue_full\",\"message\":\"hello is busy\"}}"),
        "{\"error\":{\"code\":\"queue_full\",\"message\":\"hello is busy\"}}");
    static const char notfound[] = "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
                                   "Content-Length: 7\r\nConnection: close\r\n\r\nno user";
    const char *resp[] = {binary, binary, busy, notfound};
    const size_t lens[] = {sizeof(binary) - 1, sizeof(binary) - 1, strlen(busy), strlen(notfound)};
    fake_node f;
    fake_start(&f, resp, lens, MXU_ARRAY_LEN(resp));
    char *out, *err;
    CHECK_EQ_INT(run_verb(mxu_cmd_invoke, &out, &err, "invoke", "hello@2/a b?x=1", "-H",
                          "X-Test: yes", NULL),
                 0);
    CHECK(memcmp(out, "\x00\xff\n\x01", 4) == 0);
    free(out), free(err);
    CHECK_EQ_INT(
        run_verb(mxu_cmd_invoke, &out, &err, "invoke", "hello", "-d", "payload", "-i", NULL), 0);
    CHECK_CONTAINS(err, "HTTP/1.1 200 OK\n");
    CHECK_CONTAINS(err, "X-Mxu-Invocation-Id: 0000018c2f3e0001\n");
    free(out), free(err);
    CHECK_EQ_INT(run_verb(mxu_cmd_invoke, &out, &err, "invoke", "hello", NULL), 1);
    CHECK_STR(out, "");
    CHECK_STR(err, "mxu: queue_full: hello is busy (retry after 2 s)\n");
    free(out), free(err);
    CHECK_EQ_INT(run_verb(mxu_cmd_invoke, &out, &err, "invoke", "hello", "-X", "DELETE", NULL), 1);
    CHECK_STR(out, "no user");
    CHECK_STR(err, "mxu: hello answered 404 Not Found\n");
    free(out), free(err);

    _cleanup_free_ char *req = fake_stop(&f);
    CHECK(strncmp(req, "GET /fn/hello@2/a%20b?x=1 HTTP/1.1\r\n", 36) == 0);
    CHECK(strstr(req, "\r\nX-Test: yes\r\n") != NULL);
    const char *second = strstr(req, "=====\nPOST /fn/hello HTTP/1.1\r\n");
    CHECK(second != NULL);
    /* The body goes as typed, with no invented form type. */
    CHECK(strstr(second, "\r\n\r\npayload\n=====") != NULL);
    CHECK(strcasestr(second, "x-www-form-urlencoded") == NULL);
    CHECK(strstr(req, "=====\nDELETE /fn/hello HTTP/1.1\r\n") != NULL);
}

static void test_management_verbs(void)
{
    _cleanup_free_ char *ls = json_response(
        200, "OK",
        "{\"functions\":[{\"name\":\"hello\",\"created\":\"2026-11-30T05:18:01.123Z\","
        "\"latest\":3,\"versions\":3,\"aliases\":{\"latest\":3,\"prod\":2}}]}");
    _cleanup_free_ char *show = json_response(
        200, "OK",
        "{\"name\":\"hello\",\"created\":\"2026-11-30T05:18:01.123Z\",\"latest\":3,"
        "\"aliases\":{\"latest\":3,\"prod\":2},"
        "\"versions\":[{\"version\":2,\"created\":\"2026-11-30T05:18:01.123Z\",\"runtime\":\"c\","
        "\"manifest\":{\"description\":\"old\"}},"
        "{\"version\":3,\"created\":\"2026-11-30T06:00:00.000Z\",\"runtime\":\"c\","
        "\"manifest\":{\"description\":\"says hello\"}}],"
        "\"instances\":[{\"id\":7,\"function\":\"hello\",\"version\":3,\"pid\":12345,"
        "\"state\":\"ready\",\"in_flight\":0,\"invocations\":120,\"age_ms\":5000,"
        "\"idle_ms\":1200,\"memory_reserved\":67108864,\"cpu_ms\":12,\"peak_memory\":1830912}],"
        "\"stats\":{\"3\":{\"invocations\":120,\"errors\":1,\"timeouts\":0,\"crashes\":0,"
        "\"cold_starts\":1,\"rejected\":0,\"last_invoked\":\"2026-11-30T06:01:00.000Z\"}},"
        "\"capacity\":{\"memory_budget\":1073741824,\"memory_reserved\":67108864,"
        "\"memory_free\":1006632960,\"instances\":1,\"queued\":0}}");
    _cleanup_free_ char *missing =
        json_response(404, "Not Found",
                      "{\"error\":{\"code\":\"function_not_found\",\"message\":\"no function "
                      "named 'helo'\"}}");
    _cleanup_free_ char *alias =
        json_response(200, "OK", "{\"function\":\"hello\",\"alias\":\"prod\",\"version\":3}");
    _cleanup_free_ char *rm = json_response(200, "OK", "{\"deleted\":\"hello@2\"}");
    _cleanup_free_ char *logs = json_response(
        200, "OK",
        "{\"records\":[{\"time\":\"2026-11-30T06:01:00.000Z\",\"version\":3,\"invocation\":"
        "\"0000018c2f3e0001\",\"stream\":\"stderr\",\"text\":\"hi\\n\"}],\"next\":77}");
    _cleanup_free_ char *health = json_response(
        200, "OK",
        "{\"status\":\"ok\",\"version\":\"0.1.0\",\"uptime_s\":12,\"data_dir\":\"/d\","
        "\"listen\":\"127.0.0.1:8080\",\"executors\":[\"process\"],\"capacity\":"
        "{\"memory_budget\":1073741824,\"memory_reserved\":0,\"memory_standby\":2097152,"
        "\"memory_free\":1071644672,\"instances\":0,\"queued\":0}}");
    const char *resp[] = {ls, show, missing, alias, alias, rm, logs, health};
    fake_node f;
    fake_start(&f, resp, NULL, MXU_ARRAY_LEN(resp));
    char *out, *err;

    CHECK_EQ_INT(run_verb(mxu_cmd_ls, &out, &err, "ls", NULL), 0);
    CHECK_STR(out, "NAME   KIND      LATEST  VERSIONS  ALIASES  CREATED\n"
                   "hello  function  3       3         prod=2   2026-11-30T05:18:01Z\n");
    free(out), free(err);

    CHECK_EQ_INT(run_verb(mxu_cmd_show, &out, &err, "show", "hello", NULL), 0);
    CHECK_CONTAINS(out, "hello: latest version 3, 2 versions, created 2026-11-30T05:18:01Z\n");
    CHECK_CONTAINS(out, "description: says hello\n");
    CHECK_CONTAINS(out, "aliases: latest=3 prod=2\n");
    CHECK_CONTAINS(out, "VERSION  RUNTIME  CREATED");
    CHECK_CONTAINS(out, "\n3        c        2026-11-30T06:00:00Z  120 ");
    CHECK_CONTAINS(out, "\n2        c        2026-11-30T05:18:01Z  -  ");
    CHECK_CONTAINS(out, "INSTANCE  VERSION  STATE  PID");
    CHECK_CONTAINS(out, "64MiB");
    CHECK_CONTAINS(out, "5.0s");
    CHECK_CONTAINS(out,
                   "node memory: 64 MiB reserved, 0 B in spares, 960 MiB free of 1 GiB budget; 1 "
                   "instance, 0 queued\n");
    free(out), free(err);

    CHECK_EQ_INT(run_verb(mxu_cmd_show, &out, &err, "show", "helo", NULL), 1);
    CHECK_STR(err, "mxu: no function named 'helo'\n");
    free(out), free(err);

    CHECK_EQ_INT(run_verb(mxu_cmd_alias, &out, &err, "alias", "hello", "prod", "3", NULL), 0);
    CHECK_STR(out, "hello@prod now points at version 3\n");
    free(out), free(err);
    CHECK_EQ_INT(run_verb(mxu_cmd_alias, &out, &err, "alias", "hello", "prod", "--delete", NULL),
                 0);
    CHECK_STR(out, "deleted alias hello@prod\n");
    free(out), free(err);

    CHECK_EQ_INT(run_verb(mxu_cmd_rm, &out, &err, "rm", "hello@2", NULL), 0);
    CHECK_STR(out, "deleted hello@2\n");
    free(out), free(err);

    CHECK_EQ_INT(run_verb(mxu_cmd_logs, &out, &err, "logs", "hello", "-n", "5", NULL), 0);
    CHECK_STR(out, "2026-11-30T06:01:00.000Z  v3  0000018c2f3e0001  hi\n");
    free(out), free(err);

    CHECK_EQ_INT(run_verb(mxu_cmd_health, &out, &err, "health", NULL), 0);
    CHECK_CONTAINS(out, "status:    ok\n");
    CHECK_CONTAINS(out, "uptime:    12.0 s\n");
    CHECK_CONTAINS(out,
                   "memory:    0 B reserved, 2 MiB in spares, 1022 MiB free of 1 GiB budget; 0 "
                   "instances");
    free(out), free(err);

    _cleanup_free_ char *req = fake_stop(&f);
    CHECK(strncmp(req, "GET /v1/functions HTTP/1.1\r\n", 28) == 0);
    CHECK(strstr(req, "=====\nGET /v1/functions/hello HTTP/1.1\r\n") != NULL);
    CHECK(strstr(req, "=====\nPUT /v1/functions/hello/aliases/prod HTTP/1.1\r\n") != NULL);
    CHECK(strstr(req, "\r\n\r\n{\"version\":3}\n=====") != NULL);
    CHECK(strstr(req, "=====\nDELETE /v1/functions/hello/aliases/prod HTTP/1.1\r\n") != NULL);
    CHECK(strstr(req, "=====\nDELETE /v1/functions/hello/versions/2 HTTP/1.1\r\n") != NULL);
    CHECK(strstr(req, "=====\nGET /v1/functions/hello/logs?limit=1000 HTTP/1.1\r\n") != NULL);
    CHECK(strstr(req, "=====\nGET /v1/health HTTP/1.1\r\n") != NULL);
}

/* `logs -n N` shows the newest N even when the node's first page holds the
 * oldest records of its window: it pages on with `after` to the end. */
static void test_logs_last(void)
{
    _cleanup_buf_ mxu_buf page1 = {0};
    mxu_buf_puts(&page1, "{\"records\":[");
    for (int i = 0; i < 1000; i++)
        mxu_buf_printf(&page1,
                       "%s{\"time\":\"T%d\",\"version\":1,\"invocation\":\"i%d\","
                       "\"stream\":\"stderr\",\"text\":\"line %d\"}",
                       i ? "," : "", i, i, i);
    mxu_buf_puts(&page1, "],\"next\":1000}");
    _cleanup_free_ char *r1 = json_response(200, "OK", page1.data);
    _cleanup_free_ char *r2 =
        json_response(200, "OK",
                      "{\"records\":[{\"time\":\"T1000\",\"version\":2,\"invocation\":\"i1000\","
                      "\"stream\":\"log\",\"text\":\"last\"}],\"next\":1001}");
    const char *resp[] = {r1, r2};
    fake_node f;
    fake_start(&f, resp, NULL, 2);
    char *out, *err;
    CHECK_EQ_INT(run_verb(mxu_cmd_logs, &out, &err, "logs", "hello", "-n", "2", NULL), 0);
    CHECK_STR(out, "T999  v1  i999  line 999\nT1000  v2  i1000  [log] last\n");
    free(out), free(err);
    _cleanup_free_ char *req = fake_stop(&f);
    CHECK(strstr(req, "GET /v1/functions/hello/logs?limit=1000 HTTP/1.1\r\n") != NULL);
    CHECK(strstr(req, "GET /v1/functions/hello/logs?after=1000&limit=1000 HTTP/1.1\r\n") != NULL);
}

MXU_TESTS(TEST(test_target_parse), TEST(test_invoke_path), TEST(test_header_parse),
          TEST(test_options), TEST(test_printable), TEST(test_table), TEST(test_ls_table),
          TEST(test_log_line), TEST(test_manifest_scalar), TEST(test_platform_error),
          TEST(test_invoke_json), TEST(test_bundle_read), TEST(test_bundle_errors),
          TEST(test_bundle_limits), TEST(test_usage), TEST(test_connection_refused),
          TEST(test_deploy_verb), TEST(test_invoke_verb), TEST(test_management_verbs),
          TEST(test_logs_last))
