/*
 * redis-get — synchronous hiredis reads against one redis-server, timed one
 * by one: the direct baseline of the Redis-backed kv get (bench/resources.sh).
 *
 *   redis-get HOST PORT MODE KEY SIZE N WARM
 *
 * MODE get:   SET KEY to SIZE bytes ('a' + i % 26, the value res-bench puts),
 *             then WARM untimed and N timed `GET KEY`;
 * MODE hmget: N timed `HMGET KEY v r` of a hash mxu's Redis kv driver wrote
 *             (the command it sends for a get), after WARM untimed.
 * Each reply must carry SIZE bytes. Each command is bracketed by
 * clock_gettime(CLOCK_MONOTONIC), like the function's calls, and prints one
 * JSON object: percentiles in ns (nearest rank), the mean over the loop, the
 * median cost of one clock pair, the errors.
 *
 * Build: cc -O2 -o redis-get redis-get.c -lhiredis
 */
#include <hiredis/hiredis.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static uint32_t pct(const uint32_t *s, size_t n, double p)
{
    size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    return s[(rank > n ? n : rank) - 1];
}

static uint32_t clock_cost(void)
{
    uint32_t s[1001];
    for (int i = 0; i < 1001; i++) {
        uint64_t a = now_ns();
        s[i] = (uint32_t)(now_ns() - a);
    }
    qsort(s, 1001, sizeof(s[0]), cmp_u32);
    return s[500];
}

/* One read; 0 when the reply carries `size` bytes. */
static int one(redisContext *c, int hmget, const char *key, size_t size)
{
    redisReply *r = hmget ? redisCommand(c, "HMGET %s v r", key) : redisCommand(c, "GET %s", key);
    if (r == NULL) {
        fprintf(stderr, "redis-get: %s\n", c->errstr);
        exit(1);
    }
    const redisReply *v = r;
    if (hmget)
        v = r->type == REDIS_REPLY_ARRAY && r->elements == 2 ? r->element[0] : NULL;
    int ok = v && v->type == REDIS_REPLY_STRING && v->len == size;
    freeReplyObject(r);
    return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc != 8) {
        fprintf(stderr, "usage: redis-get HOST PORT get|hmget KEY SIZE N WARM\n");
        return 2;
    }
    const char *host = argv[1], *mode = argv[3], *key = argv[4];
    int port = atoi(argv[2]);
    size_t size = (size_t)strtoul(argv[5], NULL, 10);
    long n = strtol(argv[6], NULL, 10), warm = strtol(argv[7], NULL, 10);
    int hmget = strcmp(mode, "hmget") == 0;
    if (n < 1 || warm < 0 || (!hmget && strcmp(mode, "get") != 0)) {
        fprintf(stderr, "redis-get: bad arguments\n");
        return 2;
    }
    redisContext *c = redisConnect(host, port);
    if (c == NULL || c->err) {
        fprintf(stderr, "redis-get: connect %s:%d: %s\n", host, port, c ? c->errstr : "no memory");
        return 1;
    }
    if (!hmget) {
        char *v = malloc(size + 1);
        if (!v)
            return 1;
        for (size_t i = 0; i < size; i++)
            v[i] = (char)('a' + i % 26);
        redisReply *r = redisCommand(c, "SET %s %b", key, v, size);
        if (r == NULL || r->type != REDIS_REPLY_STATUS) {
            fprintf(stderr, "redis-get: SET failed\n");
            return 1;
        }
        freeReplyObject(r);
        free(v);
    }
    uint32_t *s = malloc((size_t)n * sizeof(*s));
    if (!s)
        return 1;
    long errors = 0;
    for (long i = 0; i < warm; i++)
        errors += one(c, hmget, key, size) != 0;
    uint32_t clk = clock_cost();
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        uint64_t a = now_ns();
        int rc = one(c, hmget, key, size);
        uint64_t b = now_ns();
        s[i] = (uint32_t)(b - a > UINT32_MAX ? UINT32_MAX : b - a);
        errors += rc != 0;
    }
    uint64_t total = now_ns() - t0;
    qsort(s, (size_t)n, sizeof(s[0]), cmp_u32);
    size_t cnt = (size_t)n;
    printf("{\"what\":\"direct_%s\",\"desc\":\"%s\",\"n\":%ld,\"warm\":%ld,\"size\":%zu,"
           "\"p50_ns\":%u,\"p90_ns\":%u,\"p99_ns\":%u,\"min_ns\":%u,\"max_ns\":%u,"
           "\"mean_ns\":%.0f,\"clock_pair_ns\":%u,\"errors\":%ld}\n",
           mode, key, n, warm, size, pct(s, cnt, 50), pct(s, cnt, 90), pct(s, cnt, 99), s[0],
           s[cnt - 1], (double)total / (double)n, clk, errors);
    free(s);
    redisFree(c);
    return errors ? 1 : 0;
}
