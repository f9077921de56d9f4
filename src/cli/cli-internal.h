/*
 * What the verbs of src/cli share (implemented in cli-client.c): option
 * parsing, help text, the HTTP client (one reused libcurl handle per verb
 * run), the management-API call that turns node errors into messages, and
 * the small pure helpers (target and header parsing, URL escaping, aligned
 * tables, log lines) that tests/unit/cli exercises without a node.
 */
#ifndef MXU_CLI_INTERNAL_H
#define MXU_CLI_INTERNAL_H

#include "cli.h"

#include <curl/curl.h>
#include <jansson.h>
#include <signal.h>

#define CLI_DEFAULT_URL "http://127.0.0.1:8080"

/* Exit statuses: 1 the operation failed, 2 the command line was wrong. */
#define CLI_EXIT_FAIL  1
#define CLI_EXIT_USAGE 2

/* ---- help and usage -------------------------------------------------------- */

typedef struct cli_verb_help {
    const char *name;        /* "deploy" */
    const char *usage;       /* after "mxu ": "deploy DIR [--json]" */
    const char *summary;     /* one line for `mxu --help` */
    const char *description; /* paragraph(s) */
    const char *options;     /* preformatted lines, or NULL */
    const char *example;     /* preformatted lines */
} cli_verb_help;

extern const cli_verb_help cli_help_deploy, cli_help_invoke, cli_help_ls, cli_help_show,
    cli_help_alias, cli_help_rm, cli_help_logs, cli_help_version, cli_help_health,
    cli_help_resource, cli_help_usage, cli_help_bill, cli_help_key, cli_help_tenant,
    cli_help_policy, cli_help_catalog, cli_help_trace;

/* The lines every verb's --help ends its options with. */
#define CLI_COMMON_OPTIONS_HELP                                                            \
    "  --url URL      the node to talk to (default: $MXU_URL, else " CLI_DEFAULT_URL ")\n" \
    "  --key KEY      the API key (default: $MXU_KEY, else the node's line in\n"           \
    "                 ~/.config/mxu/credentials)\n"                                        \
    "  -h, --help     show this help\n"

void cli_print_help(const cli_verb_help *h, FILE *out);
/* Print "mxu: <message>", the usage line and a hint to stderr; returns
 * CLI_EXIT_USAGE so a verb can `return cli_usage_error(...)`. */
int cli_usage_error(const cli_verb_help *h, const char *fmt, ...) MXU_PRINTF(2, 3);

/* ---- option parsing -------------------------------------------------------- */

/* A small getopt_long without global state (so tests and a long-lived main
 * can parse many command lines): options may come before or after
 * positionals, "--name=value" and "--name value", "-xVALUE", "-x VALUE" and
 * bundled flags "-ij" work, "--" ends options. */
typedef struct cli_option {
    const char *long_name; /* without "--"; NULL if none */
    char short_name;       /* 0 if none */
    bool has_arg;
    int id; /* > 0 */
} cli_option;

enum { CLI_OPT_END = 0, CLI_OPT_POSITIONAL = -2, CLI_OPT_ERROR = -1 };
/* Ids every verb uses; verb-specific ids start at CLI_OPT_FIRST_VERB. */
enum { CLI_OPT_URL = 1, CLI_OPT_HELP, CLI_OPT_JSON, CLI_OPT_KEY, CLI_OPT_FIRST_VERB = 16 };
#define CLI_OPT_COMMON                                            \
    {"url", 0, true, CLI_OPT_URL}, {"key", 0, true, CLI_OPT_KEY}, \
    {                                                             \
        "help", 'h', false, CLI_OPT_HELP                          \
    }

typedef struct cli_parser {
    int argc;
    char **argv; /* argv[0] is the verb, not parsed */
    const cli_option *opts;
    size_t nopts;
    int i;            /* next argv index */
    const char *rest; /* remaining bundled short flags, or NULL */
    bool no_more_options;
} cli_parser;

void cli_parser_init(cli_parser *p, int argc, char **argv, const cli_option *opts, size_t nopts);
/* Next option: returns its id with *arg its value (or NULL); CLI_OPT_POSITIONAL
 * with *arg the positional; CLI_OPT_END when done; CLI_OPT_ERROR with a message
 * in err ("unknown option '--x'", "option '-d' needs a value"). */
int cli_parser_next(cli_parser *p, const char **arg, mxu_err *err);

/* The options every verb takes, for a verb with a parse loop of its own:
 * --url, --key, --json and --help, and the parser's errors. Returns
 * CLI_OPT_TAKEN when `id` was one of them (parsing goes on), CLI_OPT_VERB
 * when it is the verb's own (or a positional), else the exit status to
 * return at once (help printed: 0; a usage error). `json` may be NULL for a
 * verb without --json. */
enum { CLI_OPT_TAKEN = -10, CLI_OPT_VERB = -11 };
int cli_common_option(const cli_verb_help *h, int id, const char *arg, const mxu_err *err,
                      const char **url, const char **key, bool *json);

/* Most verbs take only positionals, the common options, --json and maybe a
 * flag or two: this parses those. `flags` lists the verb's options, whose
 * ids must be CLI_OPT_FIRST_VERB + k; each sets bit k of out->flags, and one
 * that takes a value (--to X, --to=X) leaves it in out->values[k]. Returns
 * -1 to go on, else the exit status (help printed or usage error). */
typedef struct cli_simple_args {
    const char *url;
    const char *key;
    bool json;
    const char *pos[4];
    int npos;
    unsigned flags;
    const char *values[16]; /* the value of the verb's option k, if it takes one */
} cli_simple_args;

int cli_parse_simple(const cli_verb_help *h, int argc, char **argv, const cli_option *flags,
                     size_t nflags, int minpos, int maxpos, cli_simple_args *out);

/* ---- pure helpers ---------------------------------------------------------- */

/* An invocation target `NAME[@REF][/sub/path][?query]`. */
typedef struct cli_target {
    char *name;
    char *ref;  /* NULL = latest */
    char *path; /* "/sub/path?query" as typed, or "" */
} cli_target;

int cli_target_parse(const char *s, cli_target *out, mxu_err *err);
void cli_target_free(cli_target *t);

/* `-H 'Name: value'` → name and value (surrounding blanks trimmed). Refuses
 * a name that is not an HTTP token, CR/LF in the value, and the
 * framing headers curl must own (Content-Length, Transfer-Encoding). */
int cli_header_parse(const char *s, char **name, char **value, mxu_err *err);

/* Append `s` percent-encoding every byte that may not appear literally in a
 * URL path; `keep` lists extra characters left as they are (e.g. "/?&=%"). */
void cli_url_escape(mxu_buf *out, const char *s, const char *keep);

/* Text as one line a terminal shows harmlessly: control bytes become \n, \r,
 * \t is kept, others \xNN; so a function's output cannot move the cursor or
 * break the one-record-per-line form. A single trailing newline is dropped. */
void cli_append_printable(mxu_buf *out, const char *s);

/* "2026-11-30T05:18:01.123Z" → "2026-11-30T05:18:01Z" (tables need no ms). */
void cli_append_time_short(mxu_buf *out, const char *iso);

/* ---- aligned tables -------------------------------------------------------- */

/* Rows of text cells printed with columns padded to their widest cell, two
 * spaces apart, the last column unpadded: readable by people, and by scripts
 * with `awk` (cells never contain whitespace unless a caller puts it there). */
typedef struct cli_table {
    size_t ncols;
    char **cells; /* row-major, header row first */
    size_t nrows;
    size_t cap;
} cli_table;

void cli_table_init(cli_table *t, size_t ncols, const char *const *headers);
/* Add a row of ncols cells (NULL = "-"). */
void cli_table_add(cli_table *t, const char *const *cells);
void cli_table_render(const cli_table *t, mxu_buf *out);
void cli_table_print(const cli_table *t, FILE *out);
void cli_table_free(cli_table *t);

/* ---- the HTTP client ------------------------------------------------------- */

typedef struct cli_header {
    char *name;
    char *value;
} cli_header;

typedef struct cli_response {
    long status;       /* 0 if no response */
    char *status_line; /* "HTTP/1.1 200 OK" */
    cli_header *headers;
    size_t nheaders;
    mxu_buf body;
} cli_response;

typedef struct cli_client {
    CURL *curl;        /* reused: keeps the connection alive across calls */
    char *base_url;    /* without a trailing '/' */
    bool url_from_env; /* for messages */
    char *key;         /* API key sent as Authorization: Bearer, or NULL */
    char *key_source;  /* where it came from, for messages: "--key", "MXU_KEY", a file */
    /* Set (by a signal handler) to abort the request in progress; applies to
     * every request that has no cancel flag of its own. */
    volatile sig_atomic_t *cancel;
    long connect_timeout_ms; /* for requests that set none; 0 = 10 s */
    char errbuf[CURL_ERROR_SIZE];
} cli_client;

typedef struct cli_request {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* appended to base_url: "/v1/functions" */
    const void *body;   /* NULL = no body */
    size_t body_len;
    struct curl_slist *headers;
    long connect_timeout_ms; /* 0 = 10 s */
    /* Set (by a signal handler) to abort the transfer. */
    volatile sig_atomic_t *cancel;
} cli_request;

/* url: the --url value or NULL for $MXU_URL / the default. key: the --key
 * value or NULL for $MXU_KEY, else the credentials file's line for the URL
 * (docs/policy.md), else none. */
int cli_client_init(cli_client *c, const char *url, const char *key, mxu_err *err);
void cli_client_close(cli_client *c);
/* cli_client_init, printing the message on failure; returns 0 or -1. */
int cli_client_open(cli_client *c, const char *url, const char *key);
/* Send one request and collect the whole response. Fails (err filled with a
 * sentence naming the node and what to do) only when no HTTP response came;
 * any status, 500 included, is a success here. */
int cli_http(cli_client *c, const cli_request *rq, cli_response *resp, mxu_err *err);
void cli_response_free(cli_response *r);
/* First header of that name (case-insensitive), or NULL. */
const char *cli_response_header(const cli_response *r, const char *name);

/* ---- the management API ---------------------------------------------------- */

typedef struct cli_reply {
    long status;         /* 0: the node did not answer */
    json_t *json;        /* parsed body (success or error), or NULL */
    const char *code;    /* the node's error code ("function_not_found"), or NULL */
    const char *message; /* the node's error message, or NULL */
    mxu_buf raw;         /* the body as received */
} cli_reply;

/* Call the management API: `body` (may be NULL) is sent as JSON. Returns 0
 * on a 2xx with a JSON body (reply->json set). Otherwise -1 with err filled:
 * when the node answered an error, reply->code / message / json say what it
 * said and err->msg is its message. */
int cli_api(cli_client *c, const char *method, const char *path, json_t *body, cli_reply *reply,
            mxu_err *err);
void cli_reply_free(cli_reply *r);
/* Report a failed cli_api: with json, the node's JSON goes to stdout as is;
 * the message ("mxu: ...") always to stderr. Returns CLI_EXIT_FAIL. */
int cli_fail(const cli_reply *r, const mxu_err *err, bool json);
/* Print a JSON value (or raw text) on stdout followed by a newline. */
void cli_print_json_text(const mxu_buf *raw);

/* Path "/v1/functions/<escaped name>" etc.: each segment percent-encoded so
 * a name with '/' or '?' reaches the node as a name (which rejects it). */
void cli_path_segment(mxu_buf *out, const char *segment);

/* JSON accessors that tolerate absent or mistyped fields (a newer node may
 * add or change things; the CLI shows what it can). */
const char *cli_json_str(json_t *obj, const char *key, const char *dflt);
long long cli_json_int(json_t *obj, const char *key, long long dflt);

/* ---- verb internals exposed for tests -------------------------------------- */

/* The deploy request body: {"manifest", "manifest_path", "files": [{"path",
 * "mode", "data" (base64)}]} (cli-deploy.c). */
void cli_deploy_body(const mxu_bundle *b, mxu_buf *out);
/* Send a read bundle as a new version and report the outcome like `mxu deploy`
 * (`label` names it in the progress line when the manifest has no name);
 * frees the bundle. Returns the exit status. (cli-deploy.c) */
int cli_deploy_bundle(cli_client *c, mxu_bundle *b, const char *label, bool json);
/* The value of a top-level `key: value` line of a manifest, quotes and
 * comment removed, or NULL (caller frees). Only for messages: the node is
 * the one that parses manifests. */
char *cli_manifest_scalar(const char *text, const char *key);

/* Is this response an error of the platform (docs/api.md, Errors) rather than
 * the function's own answer? Then *code and *message point into *json (a new
 * reference the caller releases). (cli-invoke.c) */
bool cli_platform_error(const cli_response *r, json_t **json, const char **code,
                        const char **message);
/* The path of an invocation: "/fn/NAME[@REF]" plus the escaped sub-path. */
void cli_invoke_path(const cli_target *t, mxu_buf *out);
/* The --json form of an invocation's response (new reference). */
json_t *cli_invoke_json(const cli_response *r);

/* The `mxu ls` table of a "functions" array (cli-functions.c). */
void cli_ls_table(json_t *functions, cli_table *t);
/* "128 MiB reserved, 18.6 GiB free of 18.7 GiB budget; 1 instance, 0 queued"
 * from a capacity object (cli-functions.c). */
void cli_capacity_line(json_t *capacity, mxu_buf *out);

/* One log record as a line "TIME  vVERSION  INVOCATION  text" (cli-logs.c). */
void cli_log_line(json_t *record, mxu_buf *out);

#endif
