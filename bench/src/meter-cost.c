/*
 * bench/src/meter-cost.c — what metering costs per record, without HTTP
 * (bench/metering.sh, part 1; issue 5).
 *
 * The warm-invoke comparison of metering on and off is a ratio of two noisy
 * throughputs; this one reads thread CPU clocks, so it can tell a 20 ns
 * change. It records N realistic usage records (a warm no-op's) through a
 * real meter in DIR, COUNT at a time followed by one loop turn, as the node
 * does under load, and as the API does (an answer leaves at once when its
 * record was stored into the mapped journal, else it waits for the turn's
 * write), then waits until usage.db holds them all:
 *
 *   loop    the loop thread's CPU per record: packing, storing into the
 *           journal, handing the bytes to the writer once per turn;
 *   writer  the writer thread's CPU per record: ingest_cpu_ns_per_record
 *           (the batch rows, the month sums, the commits) and, all of its
 *           CPU, writer_cpu_ns_per_record (also faulting the journal's ring
 *           in, once per start);
 *   bytes   journal bytes per record.
 *
 * Usage: meter-cost DIR [N (300000)] [PER_TURN (20)]
 */
#include "meter/meter.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t released;
static void on_written(void *ud, bool written)
{
    (void)ud;
    released += written;
}

static bool flushed;
static void on_flushed(void *ud)
{
    (void)ud;
    flushed = true;
}

static uint64_t stat_u64(json_t *stats, const char *name)
{
    return (uint64_t)json_integer_value(json_object_get(stats, name));
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: meter-cost DIR [N] [PER_TURN]\n");
        return 2;
    }
    uint64_t n = argc > 2 ? strtoull(argv[2], NULL, 10) : 300000;
    uint64_t per_turn = argc > 3 ? strtoull(argv[3], NULL, 10) : 20;
    if (n == 0 || per_turn == 0) {
        fprintf(stderr, "meter-cost: N and PER_TURN must be positive\n");
        return 2;
    }
    char *path = mxu_path_join(argv[1], "usage.db");
    uv_loop_t loop;
    uv_loop_init(&loop);
    mxu_meter *m;
    mxu_err err;
    if (mxu_meter_open(&loop, path, NULL, &m, &err) < 0) {
        fprintf(stderr, "meter-cost: %s\n", err.msg);
        return 1;
    }
    uint64_t start_ms = (uint64_t)time(NULL) * 1000;
    uint64_t c0 = thread_cpu_ns();
    for (uint64_t i = 1; i <= n; i++) {
        /* A warm no-op's record, as the node writes it. */
        mxu_usage_record r = {.invocation = (start_ms << 16) + i,
                              .tenant = "default",
                              .function = "noop",
                              .version = 1,
                              .executor = "process",
                              .start_ms = start_ms + i / 100,
                              .wall_us = 60 + i % 40,
                              .billed_ms = 1,
                              .memory_bytes = 16u << 20,
                              .cpu_us = i % 3,
                              .peak_bytes = 3u << 20,
                              .bytes_in = 70,
                              .bytes_out = 60,
                              .status = MXU_USAGE_OK,
                              .http_status = 200,
                              .code = ""};
        if (mxu_meter_record(m, &r, NULL, NULL))
            released++;
        else
            mxu_meter_when_written(m, on_written, NULL);
        if (i % per_turn == 0 || i == n)
            uv_run(&loop, UV_RUN_NOWAIT);
    }
    uint64_t loop_ns = thread_cpu_ns() - c0;
    mxu_meter_flush(m, on_flushed, NULL);
    while (!flushed)
        uv_run(&loop, UV_RUN_ONCE);
    json_t *stats = mxu_meter_stats_json(m);
    printf("records %llu (released %llu), %llu per loop turn\n", (unsigned long long)n,
           (unsigned long long)released, (unsigned long long)per_turn);
    printf("loop    %6.0f ns per record (pack, store into the journal, hand-over per turn)\n",
           (double)loop_ns / (double)n);
    printf("writer  %6llu ns per record (ingest_cpu_ns_per_record: batch rows, sums, commits; "
           "%llu commits)\n",
           (unsigned long long)stat_u64(stats, "ingest_cpu_ns_per_record"),
           (unsigned long long)stat_u64(stats, "batches"));
    printf("writer  %6llu ns per record, all of its CPU (writer_cpu_ns_per_record: also the "
           "ring faulted in once)\n",
           (unsigned long long)stat_u64(stats, "writer_cpu_ns_per_record"));
    printf("bytes   %6.1f journal bytes per record\n",
           (double)stat_u64(stats, "journal_bytes") / (double)n);
    json_decref(stats);
    mxu_meter_close(m);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    free(path);
    return released == n ? 0 : 1;
}
