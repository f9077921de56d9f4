/*
 * Fuzz the usage journal's reader: arbitrary bytes as a run of frames, as
 * a journal segment or a batch row of usage.db read back from disk (torn,
 * corrupt or foreign). The scan must stop at the first bad frame, never
 * read past the input, and every record it accepts must survive being
 * packed again and read back unchanged.
 */
#include "meter/meter-internal.h"

#include <stdlib.h>
#include <string.h>

static int same(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

static int check_record(void *ud, const mxu_usage_record *r)
{
    (void)ud;
    /* Packing cuts strings at 1 KiB (documented): only shorter ones come
     * back unchanged. */
    const char *strs[] = {r->tenant, r->function, r->executor, r->code, r->caller_function};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        if (strs[i] && strlen(strs[i]) > 1024)
            return 0;
    mxu_buf b = {0};
    mxu_journal_append(&b, r, 0);
    mxu_usage_record d;
    /* the frame header is 8 bytes; the payload follows */
    if (mxu_journal_scan(b.data, b.len, 0, true, NULL, NULL) != b.len ||
        mxu_usage_record_decode(b.data + 8, b.len - 8, &d) < 0)
        abort();
    if (d.invocation != r->invocation || d.start_ms != r->start_ms || d.wall_us != r->wall_us ||
        d.billed_ms != r->billed_ms || d.memory_bytes != r->memory_bytes || d.cpu_us != r->cpu_us ||
        d.peak_bytes != r->peak_bytes || d.bytes_in != r->bytes_in || d.bytes_out != r->bytes_out ||
        d.caller != r->caller || d.version != r->version || d.http_status != r->http_status ||
        d.status != r->status || d.cold != r->cold || !same(d.tenant, r->tenant) ||
        !same(d.function, r->function) || !same(d.executor, r->executor) ||
        !same(d.code, r->code) || !same(d.caller_function, r->caller_function))
        abort();
    mxu_buf_free(&b);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly `size` bytes, so ASan sees any read past the end. */
    char *p = malloc(size ? size : 1);
    memcpy(p, data, size);
    size_t ok = mxu_journal_scan(p, size, 0, true, check_record, NULL);
    if (ok > size)
        abort();
    /* As the writer reads the loop's frames: checksums not verified, so
     * arbitrary payloads reach the record decoder. */
    ok = mxu_journal_scan(p, size, 0, false, check_record, NULL);
    if (ok > size)
        abort();
    /* And a payload alone, in either form. */
    mxu_usage_record r;
    if (mxu_usage_record_decode_form(p, size, true, &r) == 0)
        check_record(NULL, &r);
    if (mxu_usage_record_decode_form(p, size, false, &r) == 0)
        check_record(NULL, &r);
    free(p);
    return 0;
}
