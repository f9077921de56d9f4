/*
 * Usage records: their names, their JSON and CSV forms, and the packed form
 * a journal frame holds (strings included, so the caller's strings can go as
 * soon as mxu_meter_record() returns).
 */
#include "meter-internal.h"

#include <stdio.h>
#include <string.h>

static const char *const status_names[] = {
    [MXU_USAGE_OK] = "ok",
    [MXU_USAGE_ERROR] = "error",
    [MXU_USAGE_TIMEOUT] = "timeout",
    [MXU_USAGE_CRASHED] = "crashed",
    [MXU_USAGE_REJECTED] = "rejected",
};

const char *mxu_usage_status_name(enum mxu_usage_status s)
{
    return (size_t)s < MXU_ARRAY_LEN(status_names) ? status_names[s] : "unknown";
}

int mxu_usage_status_parse(const char *name)
{
    for (size_t i = 0; i < MXU_ARRAY_LEN(status_names); i++)
        if (name && strcmp(name, status_names[i]) == 0)
            return (int)i;
    return -1;
}

static const char *str_or_empty(const char *s)
{
    return s ? s : "";
}

void mxu_usage_id_hex(uint64_t id, char out[17])
{
    snprintf(out, 17, "%016llx", (unsigned long long)id);
}

json_t *mxu_usage_record_json(const mxu_usage_record *r)
{
    char id[17], caller[17], start[40];
    mxu_usage_id_hex(r->invocation, id);
    mxu_usage_id_hex(r->caller, caller);
    mxu_format_time_ms(r->start_ms, start, sizeof(start));
    json_t *j = json_object();
    json_object_set_new(j, "invocation", json_string(id));
    json_object_set_new(j, "tenant", json_string(str_or_empty(r->tenant)));
    json_object_set_new(j, "function", json_string(str_or_empty(r->function)));
    json_object_set_new(j, "version", json_integer(r->version));
    json_object_set_new(j, "executor", json_string(str_or_empty(r->executor)));
    json_object_set_new(j, "start", json_string(start));
    json_object_set_new(j, "start_ms", json_integer((json_int_t)r->start_ms));
    json_object_set_new(j, "wall_us", json_integer((json_int_t)r->wall_us));
    json_object_set_new(j, "billed_ms", json_integer((json_int_t)r->billed_ms));
    json_object_set_new(j, "memory", json_integer((json_int_t)r->memory_bytes));
    json_object_set_new(j, "cpu_us", json_integer((json_int_t)r->cpu_us));
    json_object_set_new(j, "peak_memory", json_integer((json_int_t)r->peak_bytes));
    json_object_set_new(j, "bytes_in", json_integer((json_int_t)r->bytes_in));
    json_object_set_new(j, "bytes_out", json_integer((json_int_t)r->bytes_out));
    json_object_set_new(j, "cold", json_boolean(r->cold));
    json_object_set_new(j, "status", json_string(mxu_usage_status_name(r->status)));
    json_object_set_new(j, "http_status", json_integer(r->http_status));
    json_object_set_new(j, "code", json_string(str_or_empty(r->code)));
    if (r->caller) {
        json_object_set_new(j, "caller", json_string(caller));
        json_object_set_new(j, "caller_function", json_string(str_or_empty(r->caller_function)));
    }
    return j;
}

static const char *const csv_columns =
    "invocation,tenant,function,version,executor,start,start_ms,wall_us,billed_ms,memory,cpu_us,"
    "peak_memory,bytes_in,bytes_out,cold,status,http_status,code,caller,caller_function\n";

void mxu_usage_csv_header(mxu_buf *out)
{
    mxu_buf_puts(out, csv_columns);
}

/* RFC 4180: quote a field holding a comma, quote or line break; double quotes. */
static void csv_str(mxu_buf *out, const char *s)
{
    s = str_or_empty(s);
    if (strpbrk(s, ",\"\r\n") == NULL) {
        mxu_buf_puts(out, s);
        return;
    }
    mxu_buf_puts(out, "\"");
    for (; *s; s++) {
        if (*s == '"')
            mxu_buf_puts(out, "\"");
        mxu_buf_append(out, s, 1);
    }
    mxu_buf_puts(out, "\"");
}

void mxu_usage_record_csv(const mxu_usage_record *r, mxu_buf *out)
{
    char id[17], caller[17], start[40];
    mxu_usage_id_hex(r->invocation, id);
    mxu_usage_id_hex(r->caller, caller);
    mxu_format_time_ms(r->start_ms, start, sizeof(start));
    mxu_buf_printf(out, "%s,", id);
    csv_str(out, r->tenant);
    mxu_buf_puts(out, ",");
    csv_str(out, r->function);
    mxu_buf_printf(out, ",%u,", r->version);
    csv_str(out, r->executor);
    mxu_buf_printf(out, ",%s,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%s,%s,%d,", start,
                   (unsigned long long)r->start_ms, (unsigned long long)r->wall_us,
                   (unsigned long long)r->billed_ms, (unsigned long long)r->memory_bytes,
                   (unsigned long long)r->cpu_us, (unsigned long long)r->peak_bytes,
                   (unsigned long long)r->bytes_in, (unsigned long long)r->bytes_out,
                   r->cold ? "cold" : "warm", mxu_usage_status_name(r->status), r->http_status);
    csv_str(out, r->code);
    mxu_buf_printf(out, ",%s,", r->caller ? caller : "");
    csv_str(out, r->caller_function);
    mxu_buf_puts(out, "\n");
}

/* ---- packed form ----
 * What a journal frame holds. Two forms; the frame says which (a flag in
 * its length word, meter-journal.c).
 *
 * Compact (what is written now): the numbers as LEB128 varints, in the
 * order of `packed_fixed` below, then one byte of status (bits 0-2) and
 * cold (bit 3), then five strings, each a varint length, its bytes and a
 * NUL. A warm no-op's record is ~60 bytes instead of 129: every byte of it
 * is stored into the journal, faulted in, handed to the writer, copied into
 * usage.db and written to disk twice (WAL, then the database), so bytes are
 * CPU here (docs/metering.md, "Cost, measured").
 *
 * Fixed (before): the numbers in the host's byte order and struct layout,
 * then the five strings with u16 lengths. Still read: batch rows of
 * usage.db and journals written by older nodes hold it. */

#define NSTR 5

typedef struct packed_fixed {
    uint64_t invocation, start_ms, wall_us, billed_ms, memory_bytes, cpu_us, peak_bytes, bytes_in,
        bytes_out, caller;
    uint32_t version;
    int32_t http_status;
    uint8_t status, cold;
} packed_fixed;

#define NNUM 12
/* A varint of a u64 takes at most 10 bytes. */
#define VARINT_MAX 10

/* Most numbers of a record take one or two bytes: those without a loop. */
static inline char *put_varint(char *w, uint64_t v)
{
    if (v < 0x80) {
        *w = (char)v;
        return w + 1;
    }
    if (v < 0x4000) {
        w[0] = (char)(v | 0x80);
        w[1] = (char)(v >> 7);
        return w + 2;
    }
    while (v >= 0x80) {
        *w++ = (char)(v | 0x80);
        v >>= 7;
    }
    *w++ = (char)v;
    return w;
}

/* NULL if the varint runs past end or past 64 bits. */
static inline const char *get_varint(const char *p, const char *end, uint64_t *v)
{
    if (p < end && !(*p & 0x80)) {
        *v = (uint8_t)*p;
        return p + 1;
    }
    uint64_t x = 0;
    for (unsigned shift = 0; p < end && shift < 64; shift += 7) {
        uint8_t b = (uint8_t)*p++;
        if (shift == 63 && b > 1)
            return NULL; /* more than 64 bits */
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return p;
        }
    }
    return NULL;
}

void mxu_usage_record_encode(const mxu_usage_record *r, mxu_buf *out)
{
    const uint64_t nums[NNUM] = {r->invocation, r->start_ms,     r->wall_us,
                                 r->billed_ms,  r->memory_bytes, r->cpu_us,
                                 r->peak_bytes, r->bytes_in,     r->bytes_out,
                                 r->caller,     r->version,      (uint32_t)r->http_status};
    const char *strs[NSTR] = {r->tenant, r->function, r->executor, r->code, r->caller_function};
    size_t lens[NSTR];
    size_t max = NNUM * VARINT_MAX + 1;
    for (int i = 0; i < NSTR; i++) {
        strs[i] = str_or_empty(strs[i]);
        /* Names are short; a longer string is cut rather than mis-framed. */
        lens[i] = strnlen(strs[i], 1024);
        max += 2 + lens[i] + 1;
    }
    /* One reservation and plain copies: this runs for every invocation. */
    mxu_buf_reserve(out, max);
    char *w0 = out->data + out->len, *w = w0;
    /* Unrolled: each field's varint has a length of its own (an id takes
     * nine bytes, a status one), which a branch per field learns and one
     * shared by all fields mispredicts. */
#pragma GCC unroll 12
    for (int i = 0; i < NNUM; i++)
        w = put_varint(w, nums[i]);
    *w++ = (char)((r->status & 7) | (r->cold ? 8 : 0));
    for (int i = 0; i < NSTR; i++) {
        w = put_varint(w, lens[i]);
        memcpy(w, strs[i], lens[i]);
        w += lens[i];
        *w++ = '\0'; /* NUL, so decoded strings are C strings */
    }
    out->len += (size_t)(w - w0);
    out->data[out->len] = '\0';
}

/* The five strings, each `length | bytes | NUL`, up to exactly end. */
static int decode_strings(const char *p, const char *end, bool u16_lengths, const char *strs[NSTR])
{
    for (int i = 0; i < NSTR; i++) {
        uint64_t n;
        if (u16_lengths) {
            uint16_t n16;
            if ((size_t)(end - p) < sizeof(n16))
                return -1;
            memcpy(&n16, p, sizeof(n16));
            p += sizeof(n16);
            n = n16;
        } else if ((p = get_varint(p, end, &n)) == NULL) {
            return -1;
        }
        if ((uint64_t)(end - p) < n + 1 || p[n] != '\0' || memchr(p, '\0', n))
            return -1;
        strs[i] = p;
        p += n + 1;
    }
    return p == end ? 0 : -1;
}

static int decode_fixed(const char *p, size_t len, packed_fixed *f, const char *strs[NSTR])
{
    if (len < sizeof(*f))
        return -1;
    memcpy(f, p, sizeof(*f));
    return decode_strings(p + sizeof(*f), p + len, true, strs);
}

static int decode_compact(const char *p, size_t len, packed_fixed *f, const char *strs[NSTR])
{
    const char *end = p + len;
    uint64_t nums[NNUM];
#pragma GCC unroll 12
    for (int i = 0; i < NNUM; i++)
        if ((p = get_varint(p, end, &nums[i])) == NULL)
            return -1;
    if (p == end || nums[10] > UINT32_MAX || nums[11] > UINT32_MAX || (uint8_t)*p > 15)
        return -1;
    *f = (packed_fixed){
        .invocation = nums[0],
        .start_ms = nums[1],
        .wall_us = nums[2],
        .billed_ms = nums[3],
        .memory_bytes = nums[4],
        .cpu_us = nums[5],
        .peak_bytes = nums[6],
        .bytes_in = nums[7],
        .bytes_out = nums[8],
        .caller = nums[9],
        .version = (uint32_t)nums[10],
        .http_status = (int32_t)(uint32_t)nums[11],
        .status = (uint8_t)(*p & 7),
        .cold = (uint8_t)((*p >> 3) & 1),
    };
    return decode_strings(p + 1, end, false, strs);
}

int mxu_usage_record_decode_form(const void *data, size_t len, bool compact, mxu_usage_record *r)
{
    packed_fixed f;
    const char *strs[NSTR];
    if ((compact ? decode_compact : decode_fixed)(data, len, &f, strs) < 0 ||
        f.status > MXU_USAGE_REJECTED || f.cold > 1)
        return -1;
    *r = (mxu_usage_record){
        .invocation = f.invocation,
        .tenant = strs[0],
        .function = strs[1],
        .version = f.version,
        .executor = strs[2],
        .start_ms = f.start_ms,
        .wall_us = f.wall_us,
        .billed_ms = f.billed_ms,
        .memory_bytes = f.memory_bytes,
        .cpu_us = f.cpu_us,
        .peak_bytes = f.peak_bytes,
        .bytes_in = f.bytes_in,
        .bytes_out = f.bytes_out,
        .cold = f.cold,
        .status = (enum mxu_usage_status)f.status,
        .http_status = f.http_status,
        .code = strs[3],
        .caller = f.caller,
        .caller_function = strs[4],
    };
    return 0;
}

int mxu_usage_record_decode(const void *data, size_t len, mxu_usage_record *r)
{
    return mxu_usage_record_decode_form(data, len, true, r);
}
