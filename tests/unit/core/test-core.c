/* Unit tests for src/core: parsing of sizes, durations, names, UTF-8, buffers. */
#include "core/core.h"
#include "test.h"

#include <errno.h>

static void test_sizes(void)
{
    uint64_t v;
    mxu_err err;
    CHECK_EQ_INT(mxu_parse_size("128Mi", &v, &err), 0);
    CHECK_EQ_U64(v, 128ull << 20);
    CHECK_EQ_INT(mxu_parse_size("1Gi", &v, &err), 0);
    CHECK_EQ_U64(v, 1ull << 30);
    CHECK_EQ_INT(mxu_parse_size("512M", &v, &err), 0);
    CHECK_EQ_U64(v, 512000000);
    CHECK_EQ_INT(mxu_parse_size("1.5Ki", &v, &err), 0);
    CHECK_EQ_U64(v, 1536);
    CHECK_EQ_INT(mxu_parse_size("4096", &v, &err), 0);
    CHECK_EQ_U64(v, 4096);
    CHECK_EQ_INT(mxu_parse_size("12X", &v, &err), -1);
    CHECK_EQ_INT(err.code, EINVAL);
    CHECK_CONTAINS(err.msg, "'12X' is not a size");
    CHECK_EQ_INT(mxu_parse_size("", &v, &err), -1);
    CHECK_EQ_INT(mxu_parse_size("-1", &v, &err), -1);
    CHECK_EQ_INT(mxu_parse_size("99999999999999999999", &v, &err), -1);
    CHECK_EQ_INT(mxu_parse_size("99999999999Ti", &v, &err), -1);
}

static void test_durations(void)
{
    uint64_t v;
    mxu_err err;
    CHECK_EQ_INT(mxu_parse_duration_ms("30s", &v, &err), 0);
    CHECK_EQ_U64(v, 30000);
    CHECK_EQ_INT(mxu_parse_duration_ms("500ms", &v, &err), 0);
    CHECK_EQ_U64(v, 500);
    CHECK_EQ_INT(mxu_parse_duration_ms("5m", &v, &err), 0);
    CHECK_EQ_U64(v, 300000);
    CHECK_EQ_INT(mxu_parse_duration_ms("1.5s", &v, &err), 0);
    CHECK_EQ_U64(v, 1500);
    CHECK_EQ_INT(mxu_parse_duration_ms("250us", &v, &err), 0);
    CHECK_EQ_U64(v, 1);
    CHECK_EQ_INT(mxu_parse_duration_ms("2", &v, &err), 0);
    CHECK_EQ_U64(v, 2000);
    CHECK_EQ_INT(mxu_parse_duration_ms("soon", &v, &err), -1);
    CHECK_CONTAINS(err.msg, "not a duration");
    CHECK_EQ_INT(mxu_parse_duration_ms("1.s", &v, &err), -1);
}

static void test_names(void)
{
    CHECK(mxu_name_valid("hello"));
    CHECK(mxu_name_valid("json-transform_2"));
    CHECK(!mxu_name_valid("Hello"));
    CHECK(!mxu_name_valid("1abc"));
    CHECK(!mxu_name_valid("abc-"));
    CHECK(!mxu_name_valid(""));
    CHECK(!mxu_name_valid("a/b"));
    CHECK(!mxu_name_valid("caf\xc3\xa9"));
    CHECK(mxu_name_valid("a23456789012345678901234567890123456789012345678901234567890123"));
    CHECK(!mxu_name_valid("a234567890123456789012345678901234567890123456789012345678901234"));
}

static void test_utf8(void)
{
    CHECK(mxu_utf8_valid("plain", 5));
    CHECK(mxu_utf8_valid("caf\xc3\xa9", 5));
    CHECK(mxu_utf8_valid("\xf0\x9f\x98\x80", 4));
    CHECK(!mxu_utf8_valid("\xff", 1));
    CHECK(!mxu_utf8_valid("\xc3", 1));             /* truncated */
    CHECK(!mxu_utf8_valid("\xc0\xaf", 2));         /* overlong '/' */
    CHECK(!mxu_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    CHECK(!mxu_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
}

static void test_buf(void)
{
    _cleanup_buf_ mxu_buf b = {0};
    mxu_buf_puts(&b, "abc");
    mxu_buf_printf(&b, "-%d-", 42);
    for (int i = 0; i < 100; i++)
        mxu_buf_printf(&b, "%s", "0123456789");
    CHECK_EQ_U64(b.len, 3 + 4 + 1000);
    CHECK(strncmp(b.data, "abc-42-0123", 11) == 0);
    mxu_buf_consume(&b, 7);
    CHECK_EQ_U64(b.len, 1000);
    CHECK_EQ_INT(b.data[b.len], '\0');
    size_t n;
    char *s = mxu_buf_steal(&b, &n);
    CHECK_EQ_U64(n, 1000);
    CHECK(b.data == NULL && b.len == 0);
    free(s);
}

static void test_err(void)
{
    mxu_err err;
    CHECK_EQ_INT(mxu_err_set(&err, ENOENT, "no function '%s'", "x"), -1);
    mxu_err_prefix(&err, "invoke %s", "x@2");
    CHECK_STR(err.msg, "invoke x@2: no function 'x'");
    CHECK_EQ_INT(err.code, ENOENT);
}

static void test_read_file(void)
{
    char path[] = "/tmp/mxu-test-core-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    mxu_err err;
    mxu_buf b = {0};
    /* An empty file reads as an empty, terminated string. */
    CHECK_EQ_INT(mxu_read_file(path, 100, &b, &err), 0);
    CHECK_EQ_U64(b.len, 0);
    CHECK(b.data != NULL && b.data[0] == '\0');
    mxu_buf_free(&b);
    CHECK_EQ_INT(mxu_write_file_atomic(path, "hello", 5, 0600, &err), 0);
    CHECK_EQ_INT(mxu_read_file(path, 100, &b, &err), 0);
    CHECK_STR(b.data, "hello");
    mxu_buf_free(&b);
    CHECK_EQ_INT(mxu_read_file(path, 3, &b, &err), -1);
    CHECK_CONTAINS(err.msg, "larger than");
    mxu_buf_free(&b);
    unlink(path);
}

MXU_TESTS(TEST(test_read_file), TEST(test_sizes), TEST(test_durations), TEST(test_names),
          TEST(test_utf8), TEST(test_buf), TEST(test_err))
