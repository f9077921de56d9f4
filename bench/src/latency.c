/*
 * latency — one round of request latencies at one keep-alive connection per
 * target, the targets interleaved in small blocks (bench/services.sh).
 *
 *   latency ROUND REQUESTS WARMUP BLOCK OUT.tsv HEADER NAME=PORT/PATH...
 *
 * Opens one keep-alive connection to 127.0.0.1:PORT per target and sends
 * WARMUP untimed requests on each. Then REQUESTS timed requests per target,
 * one at a time, in blocks of BLOCK: every target in turn gets a block (the
 * order rotated by ROUND and by block, so that no target is always first),
 * and so on, so that the machine's drift within the round (this VM's
 * latencies wander by tens of percent over seconds) hits every target alike.
 * A block starts with BLOCK_WARM untimed requests: the switch from another
 * server leaves the caches cold for the first few. Each timed request is
 * timed from just before send() to the last byte of the response
 * (CLOCK_MONOTONIC). Every request is the same bytes but for the path:
 * "GET PATH HTTP/1.1", Host, and HEADER if it is not empty (e.g. the node's
 * "Authorization: Bearer ..."; nginx ignores it). Appends one line
 * "name round ns" per timed request to OUT.tsv and prints per target
 *   LAT name=.. round=.. n=.. p50_us=.. p90_us=.. p99_us=.. mean_us=.. bad=..
 * where bad counts answers that were not 200 with the body "ok" (any bad
 * answer makes the exit status 2). Percentiles are nearest-rank over the raw
 * samples: no coordinated-omission correction (which wrk applies, adding
 * synthetic samples to every request slower than the mean at 1 connection).
 * Plain HTTP/1.1 with Content-Length answers, which nginx and mxu send.
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

#define BUFSZ       (64 * 1024)
#define MAX_TARGETS 16
#define BLOCK_WARM  10

typedef struct target {
    char name[64];
    int port;
    char req[4096];
    size_t reqlen;
    int fd;
    long long *lat; /* REQUESTS samples, ns */
    long n, bad;
} target;

static char buf[BUFSZ];

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what, const char *name)
{
    fprintf(stderr, "latency: %s%s%s: %s\n", name ? name : "", name ? ": " : "", what,
            errno ? strerror(errno) : "failed");
    exit(1);
}

static int dial(int port, const char *name)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket", name);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        die("connect", name);
    return fd;
}

/* One request and its whole answer; returns 1 if it was 200 "ok", 0 if
 * another answer; exits when the connection breaks. */
static int roundtrip(target *t)
{
    size_t off = 0;
    while (off < t->reqlen) {
        ssize_t n = write(t->fd, t->req + off, t->reqlen - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("write", t->name);
        off += (size_t)n;
    }
    size_t have = 0;
    const char *eoh = NULL;
    while (!eoh) {
        if (have == BUFSZ - 1) {
            errno = EMSGSIZE;
            die("headers too long", t->name);
        }
        ssize_t n = read(t->fd, buf + have, BUFSZ - 1 - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            errno = n == 0 ? ECONNRESET : errno;
            die("read", t->name);
        }
        have += (size_t)n;
        buf[have] = '\0';
        eoh = strstr(buf, "\r\n\r\n");
    }
    size_t hlen = (size_t)(eoh - buf) + 4;
    int status = atoi(buf + 9);
    long clen = -1;
    for (const char *p = strstr(buf, "\r\n"); p && p < eoh; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, "content-length:", 15) == 0)
            clen = atol(p + 17);
    }
    if (clen < 0 || (size_t)clen > BUFSZ - 1 - hlen) {
        errno = EPROTO;
        die("answer without a Content-Length (or too long)", t->name);
    }
    while (have < hlen + (size_t)clen) {
        ssize_t n = read(t->fd, buf + have, hlen + (size_t)clen - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            errno = n == 0 ? ECONNRESET : errno;
            die("read", t->name);
        }
        have += (size_t)n;
    }
    if (have > hlen + (size_t)clen) {
        errno = EPROTO;
        die("more bytes than the answer", t->name);
    }
    return status == 200 && clen == 2 && memcmp(buf + hlen, "ok", 2) == 0;
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

static double pct_us(const long long *v, size_t n, double p)
{
    size_t k = (size_t)(p * (double)n + 0.999999); /* nearest rank */
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return (double)v[k - 1] / 1000.0;
}

int main(int argc, char **argv)
{
    if (argc < 8) {
        fprintf(stderr,
                "usage: latency ROUND REQUESTS WARMUP BLOCK OUT.tsv HEADER NAME=PORT/PATH...\n");
        return 1;
    }
    int round = atoi(argv[1]);
    long nreq = atol(argv[2]), warm = atol(argv[3]), block = atol(argv[4]);
    const char *hdr = argv[6];
    int nt = argc - 7;
    if (nreq < 1 || warm < 0 || block < 1 || nt > MAX_TARGETS) {
        fprintf(stderr, "latency: REQUESTS >= 1, WARMUP >= 0, BLOCK >= 1, at most %d targets\n",
                MAX_TARGETS);
        return 1;
    }
    static target ts[MAX_TARGETS];
    for (int i = 0; i < nt; i++) {
        target *t = &ts[i];
        const char *spec = argv[7 + i];
        const char *eq = strchr(spec, '='), *slash = eq ? strchr(eq, '/') : NULL;
        if (!eq || !slash || (size_t)(eq - spec) >= sizeof(t->name)) {
            fprintf(stderr, "latency: bad target '%s' (NAME=PORT/PATH)\n", spec);
            return 1;
        }
        memcpy(t->name, spec, (size_t)(eq - spec));
        t->port = atoi(eq + 1);
        int n =
            snprintf(t->req, sizeof(t->req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s%s\r\n",
                     slash, t->port, hdr, *hdr ? "\r\n" : "");
        if (n < 0 || (size_t)n >= sizeof(t->req)) {
            fprintf(stderr, "latency: request of '%s' too long\n", spec);
            return 1;
        }
        t->reqlen = (size_t)n;
        t->fd = dial(t->port, t->name);
        t->lat = malloc((size_t)nreq * sizeof(*t->lat));
        if (!t->lat)
            die("malloc", NULL);
    }
    FILE *out = fopen(argv[5], "a");
    if (!out)
        die("open OUT.tsv", argv[5]);
    for (int i = 0; i < nt; i++) {
        for (long k = 0; k < warm; k++)
            roundtrip(&ts[i]);
    }
    for (long b = 0; b * block < nreq; b++) {
        for (int j = 0; j < nt; j++) {
            target *t = &ts[(round + b + j) % nt];
            for (long k = 0; k < BLOCK_WARM; k++)
                roundtrip(t);
            for (long k = 0; k < block && t->n < nreq; k++) {
                long long t0 = now_ns();
                int ok = roundtrip(t);
                t->lat[t->n++] = now_ns() - t0;
                t->bad += !ok;
            }
        }
    }
    int anybad = 0;
    for (int i = 0; i < nt; i++) {
        target *t = &ts[i];
        double sum = 0;
        for (long k = 0; k < t->n; k++) {
            fprintf(out, "%s\t%d\t%lld\n", t->name, round, t->lat[k]);
            sum += (double)t->lat[k];
        }
        qsort(t->lat, (size_t)t->n, sizeof(*t->lat), cmp_ll);
        printf("LAT name=%s round=%d n=%ld p50_us=%.1f p90_us=%.1f p99_us=%.1f mean_us=%.1f "
               "bad=%ld\n",
               t->name, round, t->n, pct_us(t->lat, (size_t)t->n, 0.50),
               pct_us(t->lat, (size_t)t->n, 0.90), pct_us(t->lat, (size_t)t->n, 0.99),
               sum / (double)t->n / 1000.0, t->bad);
        anybad |= t->bad != 0;
        close(t->fd);
        free(t->lat);
    }
    fclose(out);
    return anybad ? 2 : 0;
}
