/* Errors with messages: see the convention in core.h. */
#include "core.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int err_vset(mxu_err *err, int code, const char *fmt, va_list ap)
{
    if (err == NULL)
        return -1;
    err->code = code != 0 ? code : EIO;
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    return -1;
}

int mxu_err_set(mxu_err *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err_vset(err, code, fmt, ap);
    va_end(ap);
    return -1;
}

int mxu_err_sys(mxu_err *err, int errno_value, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL)
        return -1;
    va_start(ap, fmt);
    err_vset(err, errno_value, fmt, ap);
    va_end(ap);
    size_t n = strlen(err->msg);
    snprintf(err->msg + n, sizeof(err->msg) - n, ": %s", strerror(errno_value));
    return -1;
}

int mxu_err_prefix(mxu_err *err, const char *fmt, ...)
{
    char prefix[512], old[sizeof(err->msg)];
    va_list ap;
    if (err == NULL)
        return -1;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof(old));
    /* Truncating a long message is fine: it stays one readable line. */
    size_t n = strnlen(prefix, sizeof(prefix) - 1);
    memcpy(err->msg, prefix, n);
    memcpy(err->msg + n, ": ", 2);
    size_t room = sizeof(err->msg) - n - 3;
    size_t ol = strnlen(old, room);
    memcpy(err->msg + n + 2, old, ol);
    err->msg[n + 2 + ol] = '\0';
    if (err->code == 0)
        err->code = EIO;
    return -1;
}

void mxu_err_clear(mxu_err *err)
{
    if (err != NULL) {
        err->code = 0;
        err->msg[0] = '\0';
    }
}
