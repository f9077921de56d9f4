/* Node logging: one line per event on stderr, with a UTC timestamp and level.
 * Function output never goes here; it is kept per invocation by sched. */
#include "core.h"

#include <stdio.h>
#include <time.h>

static enum mxu_log_level min_level = MXU_LOG_INFO;

void mxu_log_set_level(enum mxu_log_level level)
{
    min_level = level;
}

void mxu_log(enum mxu_log_level level, const char *fmt, ...)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    if (level < min_level)
        return;
    char ts[40], line[2048];
    mxu_format_time_ms(mxu_wall_ms(), ts, sizeof(ts));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    /* One fprintf per line so concurrent writers never interleave mid-line. */
    fprintf(stderr, "%s %-5s %s\n", ts, names[level], line);
}

uint64_t mxu_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t mxu_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void mxu_format_time_ms(uint64_t wall_ms, char *out, size_t outlen)
{
    time_t secs = (time_t)(wall_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, outlen, "%s.%03uZ", base, (unsigned)(wall_ms % 1000));
}
