/*
 * The verbs that look at and change deployed functions through the
 * management API: `ls`, `show`, `alias` and `rm`.
 *
 * Tables keep one row per line and no blanks inside a cell (sizes are
 * written "64MiB", durations "1.5s") so that `awk '{print $1}'` works; every
 * verb also has --json, which prints the node's answer unchanged.
 */
#include "cli-internal.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

/* ---- cells ----------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* "prod=2,staging=3" from an aliases object, `latest` left out (it has its
 * own column), sorted so output does not depend on the node's order. */
static void aliases_cell(json_t *aliases, bool with_latest, const char *sep, mxu_buf *out)
{
    size_t n = json_object_size(aliases), k = 0;
    const char **keys = mxu_calloc(n ? n : 1, sizeof(char *));
    const char *key;
    json_t *v;
    json_object_foreach(aliases, key, v)
    {
        if (with_latest || strcmp(key, "latest") != 0)
            keys[k++] = key;
    }
    qsort(keys, k, sizeof(char *), cmp_str);
    for (size_t i = 0; i < k; i++)
        mxu_buf_printf(out, "%s%s=%lld", i ? sep : "", keys[i],
                       (long long)json_integer_value(json_object_get(aliases, keys[i])));
    free(keys);
    if (out->data == NULL)
        mxu_buf_append(out, "", 0);
}

/* A size or duration without its blank, for table cells. */
static void squeeze(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++)
        if (*r != ' ')
            *w++ = *r;
    *w = '\0';
}

static void size_cell(json_t *obj, const char *key, char *out, size_t len)
{
    long long v = cli_json_int(obj, key, -1);
    if (v < 0) {
        snprintf(out, len, "-");
        return;
    }
    mxu_format_size((uint64_t)v, out, len);
    squeeze(out);
}

static void duration_cell(json_t *obj, const char *key, char *out, size_t len)
{
    long long v = cli_json_int(obj, key, -1);
    if (v < 0) {
        snprintf(out, len, "-");
        return;
    }
    mxu_format_duration_ms((uint64_t)v, out, len);
    squeeze(out);
}

static void int_cell(json_t *obj, const char *key, char *out, size_t len)
{
    long long v = cli_json_int(obj, key, LLONG_MIN);
    if (v == LLONG_MIN)
        snprintf(out, len, "-");
    else
        snprintf(out, len, "%lld", v);
}

/* A time the node sent as ISO text (or, defensively, epoch milliseconds). */
static void time_cell(json_t *v, mxu_buf *out)
{
    if (json_is_string(v)) {
        cli_append_time_short(out, json_string_value(v));
    } else if (json_is_integer(v) && json_integer_value(v) > 0) {
        char iso[40];
        mxu_format_time_ms((uint64_t)json_integer_value(v), iso, sizeof(iso));
        cli_append_time_short(out, iso);
    } else {
        mxu_buf_puts(out, "-");
    }
}

/* ---- ls -------------------------------------------------------------------- */

const cli_verb_help cli_help_ls = {
    .name = "ls",
    .usage = "ls [--json] [--url URL]",
    .summary = "list deployed functions",
    .description = "List the functions on the node, one per line, sorted by name: the latest\n"
                   "version, how many versions exist, the aliases other than `latest`, and\n"
                   "when the function was first deployed.",
    .options = "  --json         print the node's JSON answer\n",
    .example = "  mxu ls\n"
               "  NAME   KIND      LATEST  VERSIONS  ALIASES  CREATED\n"
               "  hello  function  3       3         prod=2   2026-11-30T05:18:01Z\n",
};

void cli_ls_table(json_t *functions, cli_table *t)
{
    static const char *const head[] = {"NAME", "KIND", "LATEST", "VERSIONS", "ALIASES", "CREATED"};
    cli_table_init(t, MXU_ARRAY_LEN(head), head);
    size_t i;
    json_t *fn;
    json_array_foreach(functions, i, fn)
    {
        char latest[24], versions[24];
        int_cell(fn, "latest", latest, sizeof(latest));
        json_t *vs = json_object_get(fn, "versions");
        if (json_is_array(vs))
            snprintf(versions, sizeof(versions), "%zu", json_array_size(vs));
        else
            int_cell(fn, "versions", versions, sizeof(versions));
        _cleanup_buf_ mxu_buf aliases = {0}, created = {0};
        aliases_cell(json_object_get(fn, "aliases"), false, ",", &aliases);
        time_cell(json_object_get(fn, "created"), &created);
        /* kind: function or service (a node from before services sends none) */
        const char *row[] = {cli_json_str(fn, "name", "?"),
                             cli_json_str(fn, "kind", "function"),
                             latest,
                             versions,
                             aliases.data,
                             created.data};
        cli_table_add(t, row);
    }
}

int mxu_cmd_ls(int argc, char **argv)
{
    cli_simple_args a;
    int rc = cli_parse_simple(&cli_help_ls, argc, argv, NULL, 0, 0, 0, &a);
    if (rc >= 0)
        return rc;
    cli_client c;
    if (cli_client_open(&c, a.url, a.key) < 0)
        return CLI_EXIT_USAGE;
    cli_reply r;
    mxu_err err;
    int status = 0;
    if (cli_api(&c, "GET", "/v1/functions", NULL, &r, &err) < 0) {
        status = cli_fail(&r, &err, a.json);
    } else if (a.json) {
        cli_print_json_text(&r.raw);
    } else {
        json_t *fns = json_object_get(r.json, "functions");
        cli_table t;
        cli_ls_table(fns, &t);
        cli_table_print(&t, stdout);
        cli_table_free(&t);
        if (json_array_size(fns) == 0 && isatty(STDERR_FILENO))
            fprintf(stderr, "no functions yet: deploy one with 'mxu deploy DIR'\n");
    }
    cli_reply_free(&r);
    cli_client_close(&c);
    return status;
}

/* ---- show ------------------------------------------------------------------ */

const cli_verb_help cli_help_show = {
    .name = "show",
    .usage = "show NAME [--json] [--url URL]",
    .summary = "show a function's versions, aliases, instances and stats",
    .description = "Show function NAME: its versions (runtime, creation time, and the counters of\n"
                   "each: invocations, errors, timeouts, crashes, cold starts, rejections), its\n"
                   "aliases, the instances running it (state, pid, requests in flight, memory),\n"
                   "and the memory the node has left for new instances.",
    .options = "  --json         print the node's JSON answer\n",
    .example = "  mxu show hello\n",
};

static void show_versions(json_t *fn)
{
    static const char *const head[] = {"VERSION",  "RUNTIME",     "CREATED", "INVOCATIONS",
                                       "ERRORS",   "TIMEOUTS",    "CRASHES", "COLD",
                                       "REJECTED", "LAST-INVOKED"};
    cli_table t;
    cli_table_init(&t, MXU_ARRAY_LEN(head), head);
    json_t *stats = json_object_get(fn, "stats");
    size_t i;
    json_t *v;
    /* Newest first: the version that matters is usually the latest. */
    json_t *versions = json_object_get(fn, "versions");
    for (i = json_array_size(versions); i-- > 0;) {
        v = json_array_get(versions, i);
        char num[24], inv[24], errs[24], tmo[24], crash[24], cold[24], rej[24];
        int_cell(v, "version", num, sizeof(num));
        json_t *s = json_object_get(stats, num);
        int_cell(s, "invocations", inv, sizeof(inv));
        int_cell(s, "errors", errs, sizeof(errs));
        int_cell(s, "timeouts", tmo, sizeof(tmo));
        int_cell(s, "crashes", crash, sizeof(crash));
        int_cell(s, "cold_starts", cold, sizeof(cold));
        int_cell(s, "rejected", rej, sizeof(rej));
        const char *runtime = cli_json_str(v, "runtime", NULL);
        json_t *man = json_object_get(v, "manifest");
        if (runtime == NULL)
            runtime = cli_json_str(man, "kind", "")[0] == 's' ? "service"
                                                              : cli_json_str(man, "runtime", "-");
        _cleanup_buf_ mxu_buf created = {0}, last = {0};
        time_cell(json_object_get(v, "created"), &created);
        time_cell(json_object_get(s, "last_invoked"), &last);
        const char *row[] = {num, runtime, created.data, inv, errs,
                             tmo, crash,   cold,         rej, last.data};
        cli_table_add(&t, row);
    }
    cli_table_print(&t, stdout);
    cli_table_free(&t);
}

static void show_instances(json_t *instances)
{
    if (json_array_size(instances) == 0) {
        printf("no instances running\n");
        return;
    }
    static const char *const head[] = {"INSTANCE",  "VERSION",     "STATE",  "PID",
                                       "IN-FLIGHT", "INVOCATIONS", "MEMORY", "PEAK",
                                       "CPU",       "AGE",         "IDLE"};
    cli_table t;
    cli_table_init(&t, MXU_ARRAY_LEN(head), head);
    size_t i;
    json_t *in;
    json_array_foreach(instances, i, in)
    {
        char id[24], ver[24], pid[24], fl[24], inv[24], mem[32], peak[32], cpu[32], age[32],
            idle[32];
        int_cell(in, "id", id, sizeof(id));
        int_cell(in, "version", ver, sizeof(ver));
        int_cell(in, "pid", pid, sizeof(pid));
        int_cell(in, "in_flight", fl, sizeof(fl));
        int_cell(in, "invocations", inv, sizeof(inv));
        size_cell(in, "memory_reserved", mem, sizeof(mem));
        size_cell(in, "peak_memory", peak, sizeof(peak));
        duration_cell(in, "cpu_ms", cpu, sizeof(cpu));
        duration_cell(in, "age_ms", age, sizeof(age));
        duration_cell(in, "idle_ms", idle, sizeof(idle));
        const char *row[] = {id,  ver, cli_json_str(in, "state", "-"), pid, fl, inv, mem, peak, cpu,
                             age, idle};
        cli_table_add(&t, row);
    }
    cli_table_print(&t, stdout);
    cli_table_free(&t);
}

/* "memory: 128 MiB reserved, 2.3 MiB in spares, 18.6 GiB free of 18.7 GiB
 * budget; 1 instance, 0 queued" — shared with `mxu health`. Spares (booted
 * sandboxes and VMs waiting for a cold start) count against the budget too. */
void cli_capacity_line(json_t *cap, mxu_buf *out)
{
    char res[32], sb[32], fr[32], bud[32];
    mxu_format_size((uint64_t)cli_json_int(cap, "memory_reserved", 0), res, sizeof(res));
    mxu_format_size((uint64_t)cli_json_int(cap, "memory_standby", 0), sb, sizeof(sb));
    mxu_format_size((uint64_t)cli_json_int(cap, "memory_free", 0), fr, sizeof(fr));
    mxu_format_size((uint64_t)cli_json_int(cap, "memory_budget", 0), bud, sizeof(bud));
    long long inst = cli_json_int(cap, "instances", 0), q = cli_json_int(cap, "queued", 0);
    mxu_buf_printf(out,
                   "%s reserved, %s in spares, %s free of %s budget; %lld instance%s, %lld queued",
                   res, sb, fr, bud, inst, inst == 1 ? "" : "s", q);
}

/* A service's steps on one line: "validate → price[pricing@beta if x-beta=1 |
 * pricing@1 ×90 | pricing@2 ×10] → parallel(stock | ship(carrier → json-pick))". */
static void steps_outline(json_t *steps, const char *sep, mxu_buf *out);

static void step_outline(json_t *st, mxu_buf *out)
{
    const char *kind = cli_json_str(st, "kind", "");
    const char *id = cli_json_str(st, "id", "?");
    if (strcmp(kind, "call") == 0) {
        json_t *routes = json_object_get(st, "routes");
        json_t *r0 = json_array_get(routes, 0);
        const char *call = cli_json_str(r0, "call", "?");
        if (json_array_size(routes) == 1) {
            /* "price=pricing@2" only where the id says something the call does not */
            size_t n = strcspn(call, "@");
            if (strlen(id) != n || strncmp(id, call, n) != 0)
                mxu_buf_printf(out, "%s=", id);
            mxu_buf_puts(out, call);
            return;
        }
        mxu_buf_printf(out, "%s[", id);
        size_t i;
        json_t *r;
        json_array_foreach(routes, i, r)
        {
            mxu_buf_printf(out, "%s%s", i ? " | " : "", cli_json_str(r, "call", "?"));
            if (json_object_get(r, "header"))
                mxu_buf_printf(out, " if %s=%s", cli_json_str(r, "header", ""),
                               cli_json_str(r, "equals", ""));
            else
                mxu_buf_printf(out, " x%lld", cli_json_int(r, "weight", 0));
        }
        mxu_buf_puts(out, "]");
    } else if (strcmp(kind, "parallel") == 0) {
        mxu_buf_printf(out, "%s(", id);
        steps_outline(json_object_get(st, "branches"), " | ", out);
        mxu_buf_printf(out, ")%s",
                       strcmp(cli_json_str(st, "join", ""), "object") == 0 ? "{}" : "[]");
    } else if (strcmp(kind, "switch") == 0) {
        mxu_buf_printf(out, "%s<%s%s%s: ", id, cli_json_str(st, "on", ""),
                       json_object_get(st, "on_arg") ? " " : "", cli_json_str(st, "on_arg", ""));
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(st, "cases"), i, c)
        {
            json_t *when = json_object_get(c, "when");
            mxu_buf_puts(out, i ? "; " : "");
            size_t k;
            json_t *w;
            json_array_foreach(when, k, w) mxu_buf_printf(
                out, "%s%s", k ? "," : "", json_string_value(w) ? json_string_value(w) : "?");
            mxu_buf_puts(out, " → ");
            if (json_array_size(json_object_get(c, "steps")) == 0)
                mxu_buf_puts(out, "(pass)");
            steps_outline(json_object_get(c, "steps"), " → ", out);
        }
        json_t *def = json_object_get(st, "default");
        if (json_is_array(def)) {
            mxu_buf_puts(out, "; else → ");
            if (json_array_size(def) == 0)
                mxu_buf_puts(out, "(pass)");
            steps_outline(def, " → ", out);
        }
        mxu_buf_puts(out, ">");
    } else {
        mxu_buf_printf(out, "%s(", id);
        steps_outline(json_object_get(st, "steps"), " → ", out);
        mxu_buf_puts(out, ")");
    }
}

static void steps_outline(json_t *steps, const char *sep, mxu_buf *out)
{
    size_t i;
    json_t *st;
    json_array_foreach(steps, i, st)
    {
        mxu_buf_puts(out, i ? sep : "");
        step_outline(st, out);
    }
}

static void show_function(json_t *fn)
{
    const char *name = cli_json_str(fn, "name", "?");
    json_t *versions = json_object_get(fn, "versions");
    long long nversions = json_is_array(versions) ? (long long)json_array_size(versions)
                                                  : cli_json_int(fn, "versions", 0);
    _cleanup_buf_ mxu_buf created = {0}, aliases = {0};
    time_cell(json_object_get(fn, "created"), &created);
    aliases_cell(json_object_get(fn, "aliases"), true, " ", &aliases);
    printf("%s: latest version %lld, %lld version%s, created %s\n", name,
           cli_json_int(fn, "latest", 0), nversions, nversions == 1 ? "" : "s", created.data);
    /* The description of the latest version's manifest, if it has one. */
    json_t *last = json_array_get(versions, json_array_size(versions) - 1);
    const char *desc = cli_json_str(json_object_get(last, "manifest"), "description", "");
    if (desc[0]) {
        _cleanup_buf_ mxu_buf d = {0};
        cli_append_printable(&d, desc);
        printf("description: %s\n", d.data);
    }
    printf("aliases: %s\n", aliases.len ? aliases.data : "-");
    json_t *man = json_object_get(last, "manifest");
    if (json_object_get(man, "steps")) {
        _cleanup_buf_ mxu_buf o = {0}, p = {0};
        steps_outline(json_object_get(man, "steps"), " → ", &o);
        cli_append_printable(&p, o.data ? o.data : "");
        printf("steps: %s\n", p.data);
    }
    printf("\n");
    show_versions(fn);
    printf("\n");
    show_instances(json_object_get(fn, "instances"));
    json_t *cap = json_object_get(fn, "capacity");
    if (cap) {
        _cleanup_buf_ mxu_buf line = {0};
        cli_capacity_line(cap, &line);
        printf("\nnode memory: %s\n", line.data);
    }
}

int mxu_cmd_show(int argc, char **argv)
{
    cli_simple_args a;
    int rc = cli_parse_simple(&cli_help_show, argc, argv, NULL, 0, 0, 1, &a);
    if (rc >= 0)
        return rc;
    if (a.npos == 0)
        return cli_usage_error(&cli_help_show, "which function?");
    cli_client c;
    if (cli_client_open(&c, a.url, a.key) < 0)
        return CLI_EXIT_USAGE;
    _cleanup_buf_ mxu_buf path = {0};
    mxu_buf_puts(&path, "/v1/functions/");
    cli_path_segment(&path, a.pos[0]);
    cli_reply r;
    mxu_err err;
    int status = 0;
    if (cli_api(&c, "GET", path.data, NULL, &r, &err) < 0)
        status = cli_fail(&r, &err, a.json);
    else if (a.json)
        cli_print_json_text(&r.raw);
    else
        show_function(r.json);
    cli_reply_free(&r);
    cli_client_close(&c);
    return status;
}

/* ---- alias ----------------------------------------------------------------- */

enum { ALIAS_DELETE = 1u << 0 };
static const cli_option alias_flags[] = {{"delete", 0, false, CLI_OPT_FIRST_VERB}};

const cli_verb_help cli_help_alias = {
    .name = "alias",
    .usage = "alias NAME ALIAS VERSION | alias NAME ALIAS --delete  [--json] [--url URL]",
    .summary = "point an alias at a version, or delete it",
    .description = "Point alias ALIAS of function NAME at version VERSION (creating the alias\n"
                   "or moving it), so that `mxu invoke NAME@ALIAS` and /fn/NAME@ALIAS run that\n"
                   "version. With --delete, remove the alias. `latest` is managed by deploys\n"
                   "and cannot be set.",
    .options = "  --delete       remove the alias instead\n"
               "  --json         print the node's JSON answer\n",
    .example = "  mxu alias hello prod 3\n"
               "  mxu alias hello prod --delete\n",
};

int mxu_cmd_alias(int argc, char **argv)
{
    const cli_verb_help *h = &cli_help_alias;
    cli_simple_args a;
    int rc = cli_parse_simple(h, argc, argv, alias_flags, MXU_ARRAY_LEN(alias_flags), 0, 3, &a);
    if (rc >= 0)
        return rc;
    bool del = a.flags & ALIAS_DELETE;
    if (a.npos < 2)
        return cli_usage_error(h, "give the function and the alias");
    if (del && a.npos == 3)
        return cli_usage_error(h, "--delete takes no version");
    if (!del && a.npos == 2)
        return cli_usage_error(h, "which version should %s point at? (or --delete)", a.pos[1]);
    uint64_t version = 0;
    if (!del && (mxu_parse_u64(a.pos[2], &version) < 0 || version == 0 || version > UINT32_MAX))
        return cli_usage_error(h, "'%s' is not a version number", a.pos[2]);

    cli_client c;
    if (cli_client_open(&c, a.url, a.key) < 0)
        return CLI_EXIT_USAGE;
    _cleanup_buf_ mxu_buf path = {0};
    mxu_buf_puts(&path, "/v1/functions/");
    cli_path_segment(&path, a.pos[0]);
    mxu_buf_puts(&path, "/aliases/");
    cli_path_segment(&path, a.pos[1]);
    json_t *body = del ? NULL : json_pack("{sI}", "version", (json_int_t)version);
    cli_reply r;
    mxu_err err;
    int status = 0;
    if (cli_api(&c, del ? "DELETE" : "PUT", path.data, body, &r, &err) < 0)
        status = cli_fail(&r, &err, a.json);
    else if (a.json)
        cli_print_json_text(&r.raw);
    else if (del)
        printf("deleted alias %s@%s\n", a.pos[0], a.pos[1]);
    else
        printf("%s@%s now points at version %lld\n", a.pos[0], a.pos[1],
               cli_json_int(r.json, "version", (long long)version));
    json_decref(body);
    cli_reply_free(&r);
    cli_client_close(&c);
    return status;
}

/* ---- rm -------------------------------------------------------------------- */

const cli_verb_help cli_help_rm = {
    .name = "rm",
    .usage = "rm NAME[@VERSION] [--json] [--url URL]",
    .summary = "delete a function, or one of its versions",
    .description =
        "Delete function NAME with all its versions and aliases (its instances stop), or\n"
        "with @VERSION only that version. A version an alias other than `latest` points\n"
        "at cannot be deleted: move or delete the alias first. Deleting the latest\n"
        "version makes the newest remaining one `latest`.",
    .options = "  --json         print the node's JSON answer\n",
    .example = "  mxu rm hello@2\n"
               "  mxu rm hello\n",
};

int mxu_cmd_rm(int argc, char **argv)
{
    const cli_verb_help *h = &cli_help_rm;
    cli_simple_args a;
    int rc = cli_parse_simple(h, argc, argv, NULL, 0, 0, 1, &a);
    if (rc >= 0)
        return rc;
    if (a.npos == 0)
        return cli_usage_error(h, "which function?");
    const char *at = strchr(a.pos[0], '@');
    _cleanup_free_ char *name =
        at ? mxu_strndup(a.pos[0], (size_t)(at - a.pos[0])) : mxu_strdup(a.pos[0]);
    uint64_t version = 0;
    if (at && (mxu_parse_u64(at + 1, &version) < 0 || version == 0 || version > UINT32_MAX))
        return cli_usage_error(h,
                               "'%s' is not a version number (to remove an alias: mxu alias "
                               "%s %s --delete)",
                               at + 1, name, at + 1);

    cli_client c;
    if (cli_client_open(&c, a.url, a.key) < 0)
        return CLI_EXIT_USAGE;
    _cleanup_buf_ mxu_buf path = {0};
    mxu_buf_puts(&path, "/v1/functions/");
    cli_path_segment(&path, name);
    if (at)
        mxu_buf_printf(&path, "/versions/%llu", (unsigned long long)version);
    cli_reply r;
    mxu_err err;
    int status = 0;
    if (cli_api(&c, "DELETE", path.data, NULL, &r, &err) < 0) {
        status = cli_fail(&r, &err, a.json);
    } else if (a.json) {
        cli_print_json_text(&r.raw);
    } else {
        const char *what = cli_json_str(r.json, "deleted", NULL);
        if (what)
            printf("deleted %s\n", what);
        else if (at)
            printf("deleted %s@%llu\n", name, (unsigned long long)version);
        else
            printf("deleted %s\n", name);
    }
    cli_reply_free(&r);
    cli_client_close(&c);
    return status;
}
