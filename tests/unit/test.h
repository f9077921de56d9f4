/*
 * A tiny unit-test runner in the manner of libuv's: each test case runs in its
 * own forked process with a timeout, so a crash or hang fails one case and the
 * others still run. Unit tests may #include the .c file they test (h2o's
 * t/00unit style) to reach static functions.
 *
 *   static void test_sizes(void) { CHECK_EQ_U64(parse("1Ki"), 1024); }
 *   MXU_TESTS(TEST(test_sizes), TEST(test_other))
 *
 * Output: one line per case, "PASS <binary>/<case>" or "FAIL <binary>/<case>:
 * reason"; scripts/check.sh counts those lines. Exit status is non-zero if any
 * case failed. Run one case with `./test-x <case>`; MXU_TEST_NOFORK=1 runs
 * cases in-process (for gdb).
 */
#ifndef MXU_TEST_H
#define MXU_TEST_H

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct mxu_test_case {
    const char *name;
    void (*fn)(void);
} mxu_test_case;

#define TEST(f) \
    {           \
#f, f   \
    }

#define MXU_TEST_FAIL_(...)                               \
    do {                                                  \
        fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__); \
        fprintf(stderr, __VA_ARGS__);                     \
        fprintf(stderr, "\n");                            \
        exit(1);                                          \
    } while (0)

#define CHECK(cond)                                    \
    do {                                               \
        if (!(cond))                                   \
            MXU_TEST_FAIL_("CHECK(%s) failed", #cond); \
    } while (0)
#define CHECK_EQ_INT(a, b)                                                   \
    do {                                                                     \
        long long a_ = (long long)(a), b_ = (long long)(b);                  \
        if (a_ != b_)                                                        \
            MXU_TEST_FAIL_("%s == %s failed: %lld != %lld", #a, #b, a_, b_); \
    } while (0)
#define CHECK_EQ_U64(a, b)                                                              \
    do {                                                                                \
        uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);                                \
        if (a_ != b_)                                                                   \
            MXU_TEST_FAIL_("%s == %s failed: %" PRIu64 " != %" PRIu64, #a, #b, a_, b_); \
    } while (0)
#define CHECK_STR(a, b)                                                                     \
    do {                                                                                    \
        const char *a_ = (a), *b_ = (b);                                                    \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0)                                \
            MXU_TEST_FAIL_("%s == %s failed: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)", \
                           b_ ? b_ : "(null)");                                             \
    } while (0)
/* A case that cannot run here (no /dev/kvm, say) says why and is reported as
 * SKIP, never as PASS: exit status 77, as automake's test drivers use it. */
#define MXU_TEST_SKIP_STATUS 77
#define SKIP(...)                       \
    do {                                \
        fprintf(stderr, "  skipped: "); \
        fprintf(stderr, __VA_ARGS__);   \
        fprintf(stderr, "\n");          \
        exit(MXU_TEST_SKIP_STATUS);     \
    } while (0)
/* Substring check, for error messages. */
#define CHECK_CONTAINS(hay, needle)                                                   \
    do {                                                                              \
        const char *h_ = (hay), *n_ = (needle);                                       \
        if (h_ == NULL || strstr(h_, n_) == NULL)                                     \
            MXU_TEST_FAIL_("\"%s\" does not contain \"%s\"", h_ ? h_ : "(null)", n_); \
    } while (0)

static inline int mxu_test_run_(const char *prog, const mxu_test_case *cases, size_t n, int argc,
                                char **argv)
{
    const char *base = strrchr(prog, '/') ? strrchr(prog, '/') + 1 : prog;
    unsigned timeout = getenv("MXU_TEST_TIMEOUT") ? (unsigned)atoi(getenv("MXU_TEST_TIMEOUT")) : 60;
    int failed = 0;
    for (size_t i = 0; i < n; i++) {
        if (argc > 1 && strcmp(argv[1], cases[i].name) != 0)
            continue;
        if (getenv("MXU_TEST_NOFORK")) {
            cases[i].fn();
            printf("PASS %s/%s\n", base, cases[i].name);
            continue;
        }
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            alarm(timeout);
            cases[i].fn();
            fflush(NULL);
            exit(0);
        }
        int st = 0;
        while (waitpid(pid, &st, 0) < 0)
            ;
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            printf("PASS %s/%s\n", base, cases[i].name);
        } else if (WIFEXITED(st) && WEXITSTATUS(st) == MXU_TEST_SKIP_STATUS) {
            printf("SKIP %s/%s (the reason is above)\n", base, cases[i].name);
        } else {
            failed++;
            if (WIFSIGNALED(st))
                printf("FAIL %s/%s: killed by signal %d%s\n", base, cases[i].name, WTERMSIG(st),
                       WTERMSIG(st) == SIGALRM ? " (timeout)" : "");
            else
                printf("FAIL %s/%s: exit %d\n", base, cases[i].name, WEXITSTATUS(st));
        }
    }
    fflush(stdout);
    return failed ? 1 : 0;
}

#define MXU_TESTS(...)                                                                         \
    int main(int argc, char **argv)                                                            \
    {                                                                                          \
        static const mxu_test_case cases_[] = {__VA_ARGS__};                                   \
        return mxu_test_run_(argv[0], cases_, sizeof(cases_) / sizeof(cases_[0]), argc, argv); \
    }

/* A small deterministic generator (xorshift64) for tests that draw random
 * cases: the same seed gives the same cases on every run. */
static inline uint64_t mxu_test_xorshift(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

#endif
