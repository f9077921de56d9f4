/*
 * sched-test-fn — a well-behaved function for test-sched.c, built against the
 * SDK like a deployed one. One program plays every role the scheduler tests
 * need; what an invocation does is chosen by its query string:
 *
 *   pid          answer "pid=<pid> n=<invocations this instance served>"
 *   sleep=MS     the same, after sleeping MS milliseconds
 *   crash=SIG    die by signal SIG while handling
 *   exit=CODE    exit(CODE) while handling
 *   big=N        answer with N bytes of 'x'
 *
 * Every process appends "<pid>\n" to starts.log in its working directory (the
 * bundle) as it starts, before the handshake, so a test can count exactly how
 * many instances the scheduler started. The manifest's env (which reaches
 * both the process environment and mxu_config()) adjusts the start:
 * FAIL_INIT=1 makes mxu_init() fail; RESTART_DELAY_MS=N delays the handshake
 * of every instance but the first of a version by N ms.
 *
 * Built without sanitizers (see meson.build): the scheduler runs it under
 * RLIMIT_DATA, which ASan's shadow memory cannot live with.
 */
#include <mxu/fn.h>

#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static unsigned served;

__attribute__((constructor)) static void record_start(void)
{
    struct stat st;
    bool first = stat("starts.log", &st) < 0 || st.st_size == 0;
    int fd = open("starts.log", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    char line[32];
    int n = snprintf(line, sizeof(line), "%d\n", (int)getpid());
    if (write(fd, line, (size_t)n) < 0)
        perror("starts.log");
    close(fd);
    /* A replacement instance that is slow to start, for deadline tests. */
    const char *delay = getenv("RESTART_DELAY_MS");
    if (!first && delay) {
        long ms = atol(delay);
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0)
            ;
    }
}

int mxu_init(void)
{
    const char *fail = mxu_config("FAIL_INIT");
    if (fail && strcmp(fail, "1") == 0) {
        fprintf(stderr, "sched-test-fn: refusing to initialise\n");
        return 7;
    }
    return 0;
}

int mxu_handle(mxu_req *req, mxu_res *res)
{
    served++;
    const char *v;
    if ((v = mxu_req_query_param(req, "crash")) != NULL) {
        fprintf(stderr, "sched-test-fn: crashing with signal %s\n", v);
        signal(atoi(v), SIG_DFL);
        raise(atoi(v));
        _exit(99); /* the signal was not fatal: still not an answer */
    }
    if ((v = mxu_req_query_param(req, "exit")) != NULL)
        exit(atoi(v));
    if ((v = mxu_req_query_param(req, "big")) != NULL) {
        size_t n = (size_t)strtoull(v, NULL, 10);
        char *b = malloc(n ? n : 1);
        if (b == NULL)
            return 1;
        memset(b, 'x', n);
        mxu_res_set_body(res, b, n);
        free(b);
        return 0;
    }
    if ((v = mxu_req_query_param(req, "sleep")) != NULL) {
        long ms = atol(v);
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0)
            ;
    }
    mxu_res_printf(res, "pid=%d n=%u", (int)getpid(), served);
    return 0;
}
