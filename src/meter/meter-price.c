/*
 * Money: decimal strings to integer pico-units and back, the price table,
 * and the bill arithmetic. Everything is integer: a price is parsed digit by
 * digit (never through strtod, which would round 0.0000166667 to the nearest
 * double), quantities are summed as integers, and each bill line is one
 * exact 128-bit product divided once, rounding half-up.
 */
#include "meter-internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

typedef unsigned __int128 u128;

#define GIB              (1ull << 30)
#define PICO_DIGITS      12
#define U128_MAX         (~(u128)0)
#define DEFAULT_CURRENCY "USD"

int mxu_money_parse(const char *s, const char *field, uint64_t *pico, mxu_err *err)
{
    if (s == NULL || *s == '\0')
        return mxu_err_set(err, EINVAL, "%s: a price is a decimal string like \"0.0000166667\"",
                           field);
    uint64_t whole = 0, frac = 0;
    int nwhole = 0, nfrac = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++, nwhole++) {
        whole = whole * 10 + (uint64_t)(*p - '0');
        if (whole > MXU_PRICE_MAX_UNITS)
            return mxu_err_set(err, ERANGE, "%s: '%s' is above the largest price, %llu", field, s,
                               (unsigned long long)MXU_PRICE_MAX_UNITS);
    }
    if (*p == '.') {
        p++;
        for (; *p >= '0' && *p <= '9'; p++, nfrac++) {
            if (nfrac == PICO_DIGITS)
                return mxu_err_set(err, EINVAL,
                                   "%s: '%s' has more than %d decimal places (prices are kept in "
                                   "pico-units, 1e-12)",
                                   field, s, PICO_DIGITS);
            frac = frac * 10 + (uint64_t)(*p - '0');
        }
        if (nfrac == 0)
            nwhole = 0; /* "12." is refused below */
    }
    if (*p != '\0' || nwhole == 0)
        return mxu_err_set(err, EINVAL,
                           "%s: '%s' is not a plain decimal number (digits with at most one '.', "
                           "no sign or exponent, e.g. \"0.09\")",
                           field, s);
    for (int i = nfrac; i < PICO_DIGITS; i++)
        frac *= 10;
    uint64_t v = whole * MXU_PICO_PER_UNIT + frac;
    if (v > MXU_PRICE_MAX_UNITS * MXU_PICO_PER_UNIT)
        return mxu_err_set(err, ERANGE, "%s: '%s' is above the largest price, %llu", field, s,
                           (unsigned long long)MXU_PRICE_MAX_UNITS);
    *pico = v;
    return 0;
}

/* Decimal digits of a u128, no leading zeros ("0" for zero). */
static void u128_digits(u128 v, char *out, size_t outlen)
{
    char tmp[48];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + (int)(v % 10));
        v /= 10;
    } while (v && n < sizeof(tmp));
    size_t i = 0;
    for (; i < n && i + 1 < outlen; i++)
        out[i] = tmp[n - 1 - i];
    out[i] = '\0';
}

void mxu_money_format(u128 pico, char *out, size_t outlen)
{
    char whole[48];
    u128_digits(pico / MXU_PICO_PER_UNIT, whole, sizeof(whole));
    uint64_t frac = (uint64_t)(pico % MXU_PICO_PER_UNIT);
    char fd[PICO_DIGITS + 1];
    for (int i = PICO_DIGITS - 1; i >= 0; i--) {
        fd[i] = (char)('0' + (int)(frac % 10));
        frac /= 10;
    }
    int keep = PICO_DIGITS;
    while (keep > 2 && fd[keep - 1] == '0')
        keep--;
    fd[keep] = '\0';
    snprintf(out, outlen, "%s.%s", whole, fd);
}

/* ---- the price table ---- */

typedef struct tenant_price {
    char *tenant;
    /* Fields the override sets; the others come from the default. */
    bool has_request, has_gb_second, has_gb_out;
    mxu_price price;
} tenant_price;

struct mxu_prices {
    char currency[16];
    mxu_price dflt;
    tenant_price *tenants;
    size_t ntenants;
};

mxu_prices *mxu_prices_new(void)
{
    mxu_prices *p = mxu_calloc(1, sizeof(*p));
    snprintf(p->currency, sizeof(p->currency), "%s", DEFAULT_CURRENCY);
    /* An example table in the manner of public list prices; set your own. */
    p->dflt.per_request = 200000ull;     /* 0.0000002 */
    p->dflt.per_gb_second = 16666700ull; /* 0.0000166667 */
    p->dflt.per_gb_out = 90000000000ull; /* 0.09 */
    return p;
}

void mxu_prices_free(mxu_prices *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->ntenants; i++)
        free(p->tenants[i].tenant);
    free(p->tenants);
    free(p);
}

const char *mxu_prices_currency(const mxu_prices *p)
{
    return p->currency;
}

mxu_price mxu_prices_for(const mxu_prices *p, const char *tenant)
{
    mxu_price r = p->dflt;
    for (size_t i = 0; tenant && i < p->ntenants; i++) {
        const tenant_price *t = &p->tenants[i];
        if (strcmp(t->tenant, tenant) != 0)
            continue;
        if (t->has_request)
            r.per_request = t->price.per_request;
        if (t->has_gb_second)
            r.per_gb_second = t->price.per_gb_second;
        if (t->has_gb_out)
            r.per_gb_out = t->price.per_gb_out;
    }
    return r;
}

static const struct {
    const char *key;
    size_t off;
} price_fields[] = {
    {"per_request", offsetof(mxu_price, per_request)},
    {"per_gb_second", offsetof(mxu_price, per_gb_second)},
    {"per_gb_out", offsetof(mxu_price, per_gb_out)},
};

/* Parse the three price fields of `obj` into `out`; `has[i]` says which were
 * there. Unknown keys are refused so that a typo is not silently the default. */
static int parse_price_obj(json_t *obj, const char *prefix, mxu_price *out, bool has[3],
                           bool allow_extra, mxu_err *err)
{
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val)
    {
        size_t i;
        for (i = 0; i < MXU_ARRAY_LEN(price_fields); i++)
            if (strcmp(key, price_fields[i].key) == 0)
                break;
        if (i == MXU_ARRAY_LEN(price_fields)) {
            if (allow_extra && (strcmp(key, "currency") == 0 || strcmp(key, "tenants") == 0))
                continue;
            return mxu_err_set(err, EINVAL,
                               "%s%s: unknown price (use per_request, per_gb_second, per_gb_out%s)",
                               prefix, key, allow_extra ? ", currency, tenants" : "");
        }
        char field[160];
        snprintf(field, sizeof(field), "%s%s", prefix, key);
        if (!json_is_string(val))
            return mxu_err_set(err, EINVAL,
                               "%s: write prices as decimal strings (\"0.09\"), not JSON numbers, "
                               "so that no digit is lost",
                               field);
        uint64_t v;
        if (mxu_money_parse(json_string_value(val), field, &v, err) < 0)
            return -1;
        *(uint64_t *)((char *)out + price_fields[i].off) = v;
        has[i] = true;
    }
    return 0;
}

mxu_prices *mxu_prices_from_json(json_t *j, mxu_err *err)
{
    if (!json_is_object(j)) {
        mxu_err_set(err, EINVAL, "prices: expected an object of prices");
        return NULL;
    }
    mxu_prices *p = mxu_prices_new();
    bool has[3] = {false, false, false};
    if (parse_price_obj(j, "", &p->dflt, has, true, err) < 0)
        goto fail;
    json_t *cur = json_object_get(j, "currency");
    if (cur) {
        const char *c = json_string_value(cur);
        size_t n = c ? strlen(c) : 0;
        bool ok = n >= 1 && n < sizeof(p->currency);
        for (size_t i = 0; ok && i < n; i++)
            ok = (c[i] >= 'A' && c[i] <= 'Z') || (c[i] >= 'a' && c[i] <= 'z');
        if (!ok) {
            mxu_err_set(err, EINVAL, "currency: a code of 1 to 15 letters, e.g. \"USD\"");
            goto fail;
        }
        snprintf(p->currency, sizeof(p->currency), "%s", c);
    }
    json_t *tenants = json_object_get(j, "tenants");
    if (tenants && !json_is_object(tenants)) {
        mxu_err_set(err, EINVAL, "tenants: expected an object {\"TENANT\": {prices}}");
        goto fail;
    }
    const char *name;
    json_t *tv;
    json_object_foreach(tenants, name, tv)
    {
        char prefix[128];
        snprintf(prefix, sizeof(prefix), "tenants.%.64s.", name);
        if (!mxu_name_valid(name)) {
            mxu_err_set(err, EINVAL, "tenants: '%.64s' is not a valid tenant name", name);
            goto fail;
        }
        if (!json_is_object(tv)) {
            mxu_err_set(err, EINVAL, "%s: expected an object of prices", name);
            goto fail;
        }
        tenant_price t = {.tenant = NULL};
        bool th[3] = {false, false, false};
        if (parse_price_obj(tv, prefix, &t.price, th, false, err) < 0)
            goto fail;
        t.has_request = th[0];
        t.has_gb_second = th[1];
        t.has_gb_out = th[2];
        t.tenant = mxu_strdup(name);
        p->tenants = mxu_realloc(p->tenants, (p->ntenants + 1) * sizeof(*p->tenants));
        p->tenants[p->ntenants++] = t;
    }
    return p;
fail:
    mxu_prices_free(p);
    return NULL;
}

static json_t *money_json(uint64_t pico)
{
    char s[48];
    mxu_money_format(pico, s, sizeof(s));
    return json_string(s);
}

json_t *mxu_prices_to_json(const mxu_prices *p)
{
    json_t *j =
        json_pack("{s:s, s:o, s:o, s:o}", "currency", p->currency, "per_request",
                  money_json(p->dflt.per_request), "per_gb_second",
                  money_json(p->dflt.per_gb_second), "per_gb_out", money_json(p->dflt.per_gb_out));
    json_t *tenants = json_object();
    for (size_t i = 0; i < p->ntenants; i++) {
        const tenant_price *t = &p->tenants[i];
        json_t *o = json_object();
        if (t->has_request)
            json_object_set_new(o, "per_request", money_json(t->price.per_request));
        if (t->has_gb_second)
            json_object_set_new(o, "per_gb_second", money_json(t->price.per_gb_second));
        if (t->has_gb_out)
            json_object_set_new(o, "per_gb_out", money_json(t->price.per_gb_out));
        json_object_set_new(tenants, t->tenant, o);
    }
    json_object_set_new(j, "tenants", tenants);
    return j;
}

/* ---- bills ---- */

/* q * p / d rounded half-up, exactly, without overflowing 128 bits when the
 * final result fits: split q = a*d + b, so q*p/d = a*p + b*p/d, where b < d
 * keeps b*p small (d < 2^40 and p < 2^60 here). -1 if the result overflows. */
static int mul_div_half_up(u128 q, uint64_t p, u128 d, u128 *out)
{
    u128 a = q / d, b = q % d;
    if (p != 0 && a > U128_MAX / p)
        return -1;
    u128 hi = a * p;
    /* b*p < d*p < 2^100: 2*b*p + d fits. */
    u128 lo = (2 * b * (u128)p + d) / (2 * d);
    if (hi > U128_MAX - lo)
        return -1;
    *out = hi + lo;
    return 0;
}

int mxu_bill_compute(const mxu_bill_usage *u, const mxu_price *price, mxu_bill *out, mxu_err *err)
{
    memset(out, 0, sizeof(*out));
    out->usage = *u;
    out->price = *price;
    out->requests_pico = (u128)u->requests * price->per_request; /* < 2^124 */
    if (mul_div_half_up(u->mem_byte_ms, price->per_gb_second, (u128)GIB * 1000,
                        &out->compute_pico) < 0 ||
        mul_div_half_up(u->bytes_out, price->per_gb_out, (u128)GIB, &out->data_out_pico) < 0)
        return mxu_err_set(err, ERANGE, "the bill's amounts do not fit 128 bits");
    u128 t = out->requests_pico + out->compute_pico;
    if (t < out->requests_pico || t + out->data_out_pico < t)
        return mxu_err_set(err, ERANGE, "the bill's total does not fit 128 bits");
    out->total_pico = t + out->data_out_pico;
    return 0;
}

static json_t *u128_json(u128 v)
{
    char s[48];
    u128_digits(v, s, sizeof(s));
    return json_string(s);
}

static json_t *amount_json(u128 pico)
{
    char s[64];
    mxu_money_format(pico, s, sizeof(s));
    return json_string(s);
}

json_t *mxu_bill_json(const mxu_bill *b, const char *tenant, const char *month,
                      const char *currency)
{
    json_t *lines = json_array();
    /* Quantities are exact integers in the units of the price; the GB-s and
     * GB figures are those integers' exact decimal forms where they divide,
     * and are also given as the raw integers they come from. */
    json_array_append_new(lines,
                          json_pack("{s:s, s:o, s:s, s:o, s:o}", "item", "requests", "quantity",
                                    u128_json(b->usage.requests), "unit", "request", "unit_price",
                                    amount_json(b->price.per_request), "amount",
                                    amount_json(b->requests_pico)));
    json_array_append_new(lines,
                          json_pack("{s:s, s:o, s:s, s:o, s:o}", "item", "compute", "quantity",
                                    u128_json(b->usage.mem_byte_ms), "unit", "byte-ms",
                                    "unit_price", amount_json(b->price.per_gb_second), "amount",
                                    amount_json(b->compute_pico)));
    json_object_set_new(json_array_get(lines, 1), "price_unit", json_string("GB-s"));
    json_array_append_new(lines, json_pack("{s:s, s:o, s:s, s:o, s:o}", "item", "data_out",
                                           "quantity", u128_json(b->usage.bytes_out), "unit",
                                           "byte", "unit_price", amount_json(b->price.per_gb_out),
                                           "amount", amount_json(b->data_out_pico)));
    json_object_set_new(json_array_get(lines, 2), "price_unit", json_string("GB"));
    return json_pack("{s:s, s:s, s:s, s:o, s:o}", "tenant", tenant, "month", month, "currency",
                     currency, "lines", lines, "total", amount_json(b->total_pico));
}

int mxu_month_range(const char *month, uint64_t *start_ms, uint64_t *end_ms, mxu_err *err)
{
    unsigned y = 0, mo = 0;
    char extra;
    if (month == NULL || strlen(month) != 7 || month[4] != '-' ||
        sscanf(month, "%4u-%2u%c", &y, &mo, &extra) != 2 || y < 1970 || y > 9999 || mo < 1 ||
        mo > 12)
        return mxu_err_set(err, EINVAL, "month: '%s' is not YYYY-MM (e.g. 2026-11)",
                           month ? month : "");
    struct tm a = {.tm_year = (int)y - 1900, .tm_mon = (int)mo - 1, .tm_mday = 1};
    struct tm b = {
        .tm_year = (int)y - 1900 + (mo == 12), .tm_mon = mo == 12 ? 0 : (int)mo, .tm_mday = 1};
    *start_ms = (uint64_t)timegm(&a) * 1000;
    *end_ms = (uint64_t)timegm(&b) * 1000;
    return 0;
}

int mxu_month_of(uint64_t ms, uint64_t *start_ms, uint64_t *end_ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (ms > (uint64_t)INT64_MAX || gmtime_r(&t, &tm) == NULL || tm.tm_year > 9999 - 1900)
        return -1;
    struct tm a = {.tm_year = tm.tm_year, .tm_mon = tm.tm_mon, .tm_mday = 1};
    struct tm b = {.tm_year = tm.tm_year + (tm.tm_mon == 11),
                   .tm_mon = tm.tm_mon == 11 ? 0 : tm.tm_mon + 1,
                   .tm_mday = 1};
    *start_ms = (uint64_t)timegm(&a) * 1000;
    *end_ms = (uint64_t)timegm(&b) * 1000;
    return 0;
}
