/*
 * coldstart — times mxu cold starts end to end over HTTP (bench/run.sh).
 *
 *   coldstart HOST PORT FUNCTION RUNS OUT.tsv [PAUSE_MS]
 *
 * For each of RUNS runs: poll GET /v1/functions/FUNCTION/instances on one
 * keep-alive connection until the list is empty (the function scaled to
 * zero), wait PAUSE_MS (default 20) so the stopped instance's teardown is
 * over, then send GET /fn/FUNCTION on a second keep-alive connection and time
 * it from just before send() to the last byte of the response
 * (CLOCK_MONOTONIC). Each run is a line "run us cold status" in OUT.tsv,
 * where cold is 1 if the response carried X-Mxu-Cold: 1. Prints one line
 *   COLD runs=.. cold=.. ok=.. p50_us=.. p90_us=.. p99_us=.. min_us=.. max_us=.. mean_us=..
 * Percentiles are nearest-rank over the raw samples (no correction).
 * Plain HTTP/1.1 with Content-Length responses, which is what mxu sends.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUFSZ (1 << 20)

static char buf[BUFSZ];

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void die(const char *what)
{
    fprintf(stderr, "coldstart: %s: %s\n", what, errno ? strerror(errno) : "failed");
    exit(1);
}

static int dial(const char *host, int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        errno = EINVAL;
        die("HOST must be an IPv4 address");
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        die("connect");
    return fd;
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            die("send");
        p += w;
        n -= (size_t)w;
    }
}

/* Reads one response into buf; returns its status. *body points into buf
 * (NUL-terminated), *cold says whether X-Mxu-Cold: 1 was among the headers. */
static int read_response(int fd, const char **body, int *cold)
{
    size_t have = 0, head = 0;
    long clen = -1;
    for (;;) {
        if (head == 0) {
            char *end = memmem(buf, have, "\r\n\r\n", 4);
            if (end != NULL) {
                head = (size_t)(end - buf) + 4;
                buf[head - 2] = '\0'; /* headers as one C string (body copied below) */
                *cold = 0;
                for (char *line = strstr(buf, "\r\n"); line != NULL && line[2] != '\0';
                     line = strstr(line + 2, "\r\n")) {
                    char *h = line + 2;
                    if (strncasecmp(h, "content-length:", 15) == 0)
                        clen = strtol(h + 15, NULL, 10);
                    else if (strncasecmp(h, "x-mxu-cold:", 11) == 0)
                        *cold = atoi(h + 11) == 1;
                }
                if (clen < 0) {
                    errno = EPROTO;
                    die("response without Content-Length");
                }
                buf[head - 2] = '\r';
            }
        }
        if (head != 0 && have >= head + (size_t)clen)
            break;
        if (have >= BUFSZ - 1) {
            errno = EMSGSIZE;
            die("response too large");
        }
        ssize_t r = recv(fd, buf + have, BUFSZ - 1 - have, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                errno = ECONNRESET;
            die("recv");
        }
        have += (size_t)r;
    }
    if (have != head + (size_t)clen) {
        errno = EPROTO;
        die("unexpected bytes after a response");
    }
    buf[have] = '\0';
    *body = buf + head;
    return atoi(buf + 9); /* "HTTP/1.1 200" */
}

/* True if a JSON body {"instances": [...]} holds an empty list. */
static int no_instances(const char *body)
{
    const char *p = strstr(body, "\"instances\"");
    if (p == NULL) {
        errno = EPROTO;
        die("no \"instances\" in the instance list");
    }
    p += 11;
    while (*p == ' ' || *p == ':' || *p == '\n' || *p == '\t' || *p == '\r')
        p++;
    if (*p != '[') {
        errno = EPROTO;
        die("\"instances\" is not a list");
    }
    p++;
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
        p++;
    return *p == ']';
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(const double *sorted, int n, double p)
{
    int i = (int)((p / 100.0) * n + 0.999999) - 1; /* nearest rank */
    if (i < 0)
        i = 0;
    if (i >= n)
        i = n - 1;
    return sorted[i];
}

int main(int argc, char **argv)
{
    if (argc < 6 || argc > 7) {
        fprintf(stderr, "usage: coldstart HOST PORT FUNCTION RUNS OUT.tsv [PAUSE_MS]\n");
        return 2;
    }
    const char *host = argv[1], *fn = argv[3];
    int port = atoi(argv[2]), runs = atoi(argv[4]);
    long pause_ms = argc == 7 ? atol(argv[6]) : 20;
    if (runs < 1 || port < 1 || pause_ms < 0) {
        fprintf(stderr, "coldstart: bad arguments\n");
        return 2;
    }
    FILE *out = fopen(argv[5], "w");
    if (out == NULL)
        die(argv[5]);
    fprintf(out, "run\tus\tcold\tstatus\n");

    /* The node asks for an API key (docs/policy.md): $MXU_KEY, if set. */
    const char *key = getenv("MXU_KEY");
    char auth[256] = "";
    if (key && *key)
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", key);
    char poll_req[768], inv_req[768];
    snprintf(poll_req, sizeof(poll_req),
             "GET /v1/functions/%s/instances HTTP/1.1\r\nHost: %s:%d\r\n%s\r\n", fn, host, port,
             auth);
    snprintf(inv_req, sizeof(inv_req), "GET /fn/%s HTTP/1.1\r\nHost: %s:%d\r\n%s\r\n", fn, host,
             port, auth);
    int pfd = dial(host, port), ifd = dial(host, port);
    double *us = calloc((size_t)runs, sizeof(double));
    if (us == NULL)
        die("calloc");
    int ncold = 0, nok = 0;
    double sum = 0;
    struct timespec pause = {.tv_sec = pause_ms / 1000, .tv_nsec = (pause_ms % 1000) * 1000000L};
    struct timespec poll_gap = {.tv_sec = 0, .tv_nsec = 1000000L};

    for (int i = 0; i < runs; i++) {
        /* 1. wait for scale to zero (at most 30 s) */
        double give_up = now_us() + 30e6;
        for (;;) {
            const char *body;
            int cold;
            send_all(pfd, poll_req, strlen(poll_req));
            int st = read_response(pfd, &body, &cold);
            if (st != 200) {
                fprintf(stderr, "coldstart: instance list answered %d: %s\n", st, body);
                return 1;
            }
            if (no_instances(body))
                break;
            if (now_us() > give_up) {
                fprintf(stderr, "coldstart: %s still has instances after 30 s: %s\n", fn, body);
                return 1;
            }
            nanosleep(&poll_gap, NULL);
        }
        if (pause_ms > 0)
            nanosleep(&pause, NULL);
        /* 2. one timed invocation */
        const char *body;
        int cold;
        double t0 = now_us();
        send_all(ifd, inv_req, strlen(inv_req));
        int st = read_response(ifd, &body, &cold);
        double t1 = now_us();
        us[i] = t1 - t0;
        sum += us[i];
        ncold += cold;
        nok += st == 200;
        fprintf(out, "%d\t%.1f\t%d\t%d\n", i + 1, us[i], cold, st);
    }
    fclose(out);
    qsort(us, (size_t)runs, sizeof(double), cmp_double);
    printf("COLD runs=%d cold=%d ok=%d p50_us=%.0f p90_us=%.0f p99_us=%.0f min_us=%.0f "
           "max_us=%.0f mean_us=%.0f\n",
           runs, ncold, nok, pct(us, runs, 50), pct(us, runs, 90), pct(us, runs, 99), us[0],
           us[runs - 1], sum / runs);
    free(us);
    close(pfd);
    close(ifd);
    return 0;
}
