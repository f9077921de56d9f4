/*
 * `mxu serve` — run a node: the state store, the scheduler with its
 * executors, and the HTTP server, on one libuv loop.
 *
 * Start-up order matters: the data directory is locked first (two nodes on
 * one directory would corrupt each other's view), then processes a crashed
 * predecessor left behind are killed, then state is loaded, and only then
 * does the node listen. Shutdown runs the other way: stop accepting, drain
 * invocations (bounded), stop instances, close connections, close the store.
 */
#include "api/api.h"
#include "compose/compose.h"
#include "cli/serve-config.h"
#include "exec/exec.h"
#include "http/http.h"
#include "meter/meter.h"
#include "policy/policy.h"
#include "registry/registry.h"
#include "resolve/resolve.h"
#include "sched/sched.h"
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

int mxu_cmd_serve(int argc, char **argv);

typedef struct node {
    uv_loop_t loop;
    mxu_serve_config cfg;
    mxu_registry *reg;
    mxu_policy *policy;
    mxu_resolver *resolver;
    mxu_sched *sched;
    mxu_compose *compose; /* runs services */
    mxu_meter *meter;     /* NULL with --metering off */
    mxu_api *api;
    mxu_http_server *http;
    uv_signal_t sigterm, sigint;
    int stopping; /* signals seen */
    int exit_code;
    int lock_fd;
    size_t deploys_pending;
    char url[128];
} node;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: mxu serve [options]\n"
            "\n"
            "Run an mxu node in the foreground: deploy functions to it with 'mxu deploy', invoke\n"
            "them at http://ADDRESS/fn/NAME. With no options it runs a complete single node on\n"
            "embedded defaults. Stop it with Ctrl-C or SIGTERM: it drains running invocations,\n"
            "stops every instance and exits 0.\n"
            "\n"
            "options (each is also a key of the config file, e.g. 'memory: 8Gi'):\n"
            "  --listen ADDR:PORT      where to serve HTTP (default 127.0.0.1:8080; port 0 = any)\n"
            "  --data DIR              state directory (default $MXU_DATA, else /var/lib/mxu for\n"
            "                          root, else ~/.local/share/mxu)\n"
            "  --config FILE           YAML file with any of these settings; flags win\n"
            "  --memory SIZE           memory budget for instances (default 80%% of RAM)\n"
            "  --max-body SIZE         largest invocation request body (default 6Mi; 413 above)\n"
            "  --max-deploy-body SIZE  largest deploy request (default 96Mi)\n"
            "  --max-header SIZE       largest request head (default 32Ki; 431 above)\n"
            "  --queue-max N           waiting invocations per version before 429 (default 1000)\n"
            "  --trace-runs N          service runs whose traces are kept per tenant (default\n"
            "                          10000; also at most 64 MiB of them; docs/services.md)\n"
            "  --queue-timeout DUR     longest wait for an instance (default 30s)\n"
            "  --drain-timeout DUR     how long SIGTERM waits for invocations (default 10s)\n"
            "  --idle-timeout DUR      close idle keep-alive connections after (default 60s)\n"
            "  --read-timeout DUR      a started request must arrive within (default 30s)\n"
            "  --executor NAME         for manifests that name none: process (default),\n"
            "                          sandbox (namespaces, cgroups, seccomp; docs/isolation.md)\n"
            "                          or vm (KVM guests; docs/vm.md)\n"
            "  --metering on|off       usage records in DATA/usage.db (default on; off is for\n"
            "                          benchmarks: no records, no bills; docs/metering.md)\n"
            "  --deploy DIR            deploy the function in DIR at start (repeatable)\n"
            "  --log-level LEVEL       debug, info, warn or error (default info)\n"
            "  --auth on|off           require API keys (default on; docs/policy.md). off: every\n"
            "                          request is the node admin, for benchmarks only\n"
            "  -h, --help              this help\n"
            "\n"
            "SIZE: 128Mi, 8Gi, 512M, or bytes. DUR: 500ms, 30s, 5m.\n"
            "\n"
            "The config file may also say where resources live (docs/resources.md):\n"
            "  resources:\n"
            "    kv:orders: redis://127.0.0.1:6379/0\n"
            "    blob:images: fs:///srv/images\n"
            "and the price table (decimal strings; docs/metering.md):\n"
            "  prices:\n"
            "    per_request: \"0.0000002\"\n"
            "    per_gb_second: \"0.0000166667\"\n"
            "    per_gb_out: \"0.09\"\n"
            "    tenants: {acme: {per_request: \"0.0000001\"}}\n"
            "\n"
            "example:\n"
            "  mxu serve --listen 127.0.0.1:9000 --data /tmp/mxu --deploy examples/hello\n");
}

/* ---- data directory ------------------------------------------------------------ */

static int lock_data_dir(node *n, mxu_err *err)
{
    if (mxu_mkdir_p(n->cfg.data_dir, 0700, err) < 0)
        return -1;
    _cleanup_free_ char *path = mxu_path_join(n->cfg.data_dir, "lock");
    n->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (n->lock_fd < 0)
        return mxu_err_sys(err, errno, "cannot open %s", path);
    if (flock(n->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        char pid[32] = "";
        ssize_t r = pread(n->lock_fd, pid, sizeof(pid) - 1, 0);
        pid[r > 0 ? r : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        return mxu_err_set(err, EBUSY,
                           "another mxu node (pid %s) is using %s; stop it or pass --data",
                           pid[0] ? pid : "?", n->cfg.data_dir);
    }
    char pid[32];
    int len = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    if (ftruncate(n->lock_fd, 0) < 0 || pwrite(n->lock_fd, pid, (size_t)len, 0) < 0)
        return mxu_err_sys(err, errno, "cannot write %s", path);
    return 0;
}

/* A random id per data directory, so this node recognises processes that a
 * crashed predecessor on the same directory left behind. */
static int node_id(node *n, char *out, size_t outlen, mxu_err *err)
{
    _cleanup_free_ char *path = mxu_path_join(n->cfg.data_dir, "node-id");
    _cleanup_buf_ mxu_buf b = {0};
    if (mxu_read_file(path, 256, &b, NULL) == 0 && b.len >= 16) {
        snprintf(out, outlen, "%.32s", b.data);
        out[strcspn(out, "\n")] = '\0';
        return 0;
    }
    unsigned char raw[8];
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(out, outlen, raw, sizeof(raw));
    char line[40];
    int len = snprintf(line, sizeof(line), "%s\n", out);
    return mxu_write_file_atomic(path, line, (size_t)len, 0600, err);
}

/* ---- shutdown ------------------------------------------------------------------- */

static void on_handle_close_noop(uv_handle_t *h)
{
    MXU_UNUSED(h);
}

static void on_http_closed(void *ud)
{
    node *n = ud;
    n->http = NULL;
    uv_close((uv_handle_t *)&n->sigterm, on_handle_close_noop);
    uv_close((uv_handle_t *)&n->sigint, on_handle_close_noop);
    /* Backend connections (Redis) are still open: they close with the
     * resolver below, so the loop will not run dry by itself. */
    uv_stop(&n->loop);
    mxu_info("stopped");
}

static void on_records_durable(void *ud)
{
    node *n = ud;
    if (n->http)
        mxu_http_server_close(n->http, on_http_closed, n);
    else
        on_http_closed(n);
}

static void on_sched_stopped(void *ud)
{
    node *n = ud;
    /* Answers held for their usage records go out before connections close. */
    if (n->meter) {
        mxu_meter_flush(n->meter, on_records_durable, n);
        return;
    }
    if (n->http)
        mxu_http_server_close(n->http, on_http_closed, n);
    else
        on_http_closed(n);
}

static void begin_shutdown(node *n, const char *why)
{
    if (n->stopping++)
        return;
    char drain[32];
    mxu_format_duration_ms(n->cfg.drain_timeout_ms, drain, sizeof(drain));
    mxu_info("%s: stopping (draining invocations for up to %s)", why, drain);
    if (n->http)
        mxu_http_server_stop_accepting(n->http);
    mxu_sched_shutdown(n->sched, n->cfg.drain_timeout_ms, on_sched_stopped, n);
}

static void on_signal(uv_signal_t *h, int signum)
{
    node *n = h->data;
    if (n->stopping) {
        /* A second signal: the user does not want to wait. Instances die with
         * the node through PDEATHSIG. */
        mxu_warn("%s again: exiting now", strsignal(signum));
        _exit(1);
    }
    begin_shutdown(n, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* ---- deploys at start ---------------------------------------------------------------- */

typedef struct start_deploy {
    node *n;
    const char *dir;
    mxu_bundle bundle;
    mxu_deploy_file *files;
} start_deploy;

static void on_start_deployed(void *ud, const mxu_deploy_result *res)
{
    start_deploy *d = ud;
    node *n = d->n;
    if (res->rc < 0) {
        fprintf(stderr, "mxu: deploy %s failed: %s\n", d->dir, res->err.msg);
        if (res->build_log && *res->build_log)
            fprintf(stderr, "%s\n", res->build_log);
    } else if (res->unchanged) {
        printf("%s is deployed (version %u, unchanged)\n", res->version->function,
               res->version->version);
    } else {
        printf("deployed %s@%u\n", res->version->function, res->version->version);
    }
    if (res->rc == 0 && (res->version->manifest->is_public || n->cfg.auth_off))
        printf("  try: curl %s/fn/%s\n", n->url, res->version->function);
    else if (res->rc == 0)
        printf("  try: mxu invoke %s   (not public: curl needs -H 'Authorization: Bearer KEY')\n",
               res->version->function);
    fflush(stdout);
    mxu_bundle_free(&d->bundle);
    free(d->files);
    free(d);
    n->deploys_pending--;
}

static void deploy_at_start(node *n, const char *dir)
{
    mxu_err err;
    start_deploy *d = mxu_calloc(1, sizeof(*d));
    d->n = n;
    d->dir = dir;
    if (mxu_bundle_read(dir, &d->bundle, &err) < 0) {
        fprintf(stderr, "mxu: cannot deploy %s: %s\n", dir, err.msg);
        n->exit_code = 1;
        free(d);
        return;
    }
    for (size_t i = 0; i < d->bundle.nwarnings; i++)
        fprintf(stderr, "mxu: warning: %s: %s\n", dir, d->bundle.warnings[i]);
    d->files = mxu_calloc(d->bundle.nfiles + 1, sizeof(*d->files));
    for (size_t i = 0; i < d->bundle.nfiles; i++)
        d->files[i] = (mxu_deploy_file){.path = d->bundle.files[i].path,
                                        .mode = d->bundle.files[i].mode,
                                        .data = d->bundle.files[i].data,
                                        .len = d->bundle.files[i].len};
    n->deploys_pending++;
    if (mxu_api_deploy_local(n->api, d->bundle.manifest_path, d->bundle.manifest,
                             d->bundle.manifest_len, d->files, d->bundle.nfiles, on_start_deployed,
                             d, &err) < 0) {
        fprintf(stderr, "mxu: cannot deploy %s: %s\n", dir, err.msg);
        n->exit_code = 1;
        n->deploys_pending--;
        mxu_bundle_free(&d->bundle);
        free(d->files);
        free(d);
    }
}

/* ---- main ----------------------------------------------------------------------------- */

static int parse_args(node *n, int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, 0, 0},
        {"data", required_argument, 0, 0},
        {"config", required_argument, 0, 0},
        {"memory", required_argument, 0, 0},
        {"max-body", required_argument, 0, 0},
        {"max-deploy-body", required_argument, 0, 0},
        {"max-header", required_argument, 0, 0},
        {"queue-max", required_argument, 0, 0},
        {"trace-runs", required_argument, 0, 0},
        {"queue-timeout", required_argument, 0, 0},
        {"drain-timeout", required_argument, 0, 0},
        {"idle-timeout", required_argument, 0, 0},
        {"read-timeout", required_argument, 0, 0},
        {"deploy", required_argument, 0, 0},
        {"executor", required_argument, 0, 0},
        {"metering", required_argument, 0, 0},
        {"log-level", required_argument, 0, 0},
        {"auth", required_argument, 0, 0},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    mxu_err err;
    /* The config file goes first, whatever its position: flags override it. */
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 &&
            mxu_serve_config_load(&n->cfg, argv[i + 1], &err) < 0) {
            fprintf(stderr, "mxu serve: %s\n", err.msg);
            return 2;
        }
    }
    optind = 1;
    int idx, c;
    while ((c = getopt_long(argc, argv, "h", opts, &idx)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return 0;
        }
        if (c != 0) {
            fprintf(stderr, "mxu serve: see 'mxu serve --help'\n");
            return 2;
        }
        if (strcmp(opts[idx].name, "config") == 0)
            continue;
        char key[32];
        snprintf(key, sizeof(key), "%s", opts[idx].name);
        for (char *p = key; *p; p++)
            if (*p == '-')
                *p = '_';
        if (mxu_serve_config_set(&n->cfg, key, optarg, &err) < 0) {
            fprintf(stderr, "mxu serve: --%s: %s\n", opts[idx].name, err.msg);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "mxu serve: unexpected argument '%s' (see 'mxu serve --help')\n",
                argv[optind]);
        return 2;
    }
    return -1;
}

static int split_listen(const char *listen, char *addr, size_t addrlen, int *port)
{
    const char *colon = strrchr(listen, ':');
    size_t alen = (size_t)(colon - listen);
    if (alen >= addrlen)
        return -1;
    memcpy(addr, listen, alen);
    addr[alen] = '\0';
    /* [::1]:8080 */
    if (addr[0] == '[' && alen >= 2 && addr[alen - 1] == ']') {
        memmove(addr, addr + 1, alen - 2);
        addr[alen - 2] = '\0';
    }
    *port = atoi(colon + 1);
    return 0;
}

int mxu_cmd_serve(int argc, char **argv)
{
    node n;
    memset(&n, 0, sizeof(n));
    n.lock_fd = -1;
    mxu_serve_config_defaults(&n.cfg);
    int rc = parse_args(&n, argc, argv);
    if (rc >= 0) {
        mxu_serve_config_free(&n.cfg);
        return rc;
    }
    static const struct {
        const char *name;
        enum mxu_log_level level;
    } levels[] = {{"debug", MXU_LOG_DEBUG},
                  {"info", MXU_LOG_INFO},
                  {"warn", MXU_LOG_WARN},
                  {"error", MXU_LOG_ERROR}};
    for (size_t i = 0; i < MXU_ARRAY_LEN(levels); i++)
        if (strcmp(n.cfg.log_level, levels[i].name) == 0)
            mxu_log_set_level(levels[i].level);

    /* A write to a client that went away must be an error, not a signal. */
    signal(SIGPIPE, SIG_IGN);
    if (sodium_init() < 0) {
        fprintf(stderr, "mxu serve: libsodium failed to initialise\n");
        return 1;
    }

    mxu_err err;
    char id[40], addr[64];
    int port;
    _cleanup_free_ char *log_dir = NULL;
    _cleanup_free_ char *node_env = NULL;
    rc = 1;
    uv_loop_init(&n.loop);
    if (lock_data_dir(&n, &err) < 0 || node_id(&n, id, sizeof(id), &err) < 0) {
        fprintf(stderr, "mxu serve: %s\n", err.msg);
        goto out;
    }
    int leftovers = mxu_exec_reap_leftovers(id);
    if (leftovers > 0)
        mxu_warn("killed %d instance process(es) left behind by a previous node", leftovers);

    log_dir = mxu_path_join(n.cfg.data_dir, "logs");
    node_env = mxu_asprintf("MXU_NODE=%s", id);
    mxu_registry_config rcfg = {
        .data_dir = n.cfg.data_dir,
        .default_executor = n.cfg.executor,
        .vm_unavailable = mxu_executor_unavailable("vm"),
    };
    mxu_resolver_config rscfg = {.loop = &n.loop, .data_dir = n.cfg.data_dir};
    if (mxu_resolver_open(&rscfg, &n.resolver, &err) < 0) {
        fprintf(stderr, "mxu serve: %s\n", err.msg);
        goto out;
    }
    /* The config file's resource map wins over what was stored before. */
    for (size_t i = 0; i < n.cfg.nres; i++) {
        if (mxu_resolver_set(n.resolver, "default", n.cfg.res_uris[i], n.cfg.res_locations[i],
                             &err) < 0) {
            fprintf(stderr, "mxu serve: resources: %s: %s\n", n.cfg.res_uris[i], err.msg);
            goto out;
        }
    }
    if (mxu_registry_open(&n.loop, &rcfg, &n.reg, &err) < 0) {
        fprintf(stderr, "mxu serve: %s\n", err.msg);
        goto out;
    }
    /* After the registry: it made state.db and switched it to WAL. */
    mxu_policy_config pcfg = {.data_dir = n.cfg.data_dir, .auth = !n.cfg.auth_off};
    if (mxu_policy_open(&pcfg, &n.policy, &err) < 0) {
        fprintf(stderr, "mxu serve: %s\n", err.msg);
        goto out;
    }
    if (!n.cfg.metering_off) {
        mxu_prices *prices = NULL;
        if (n.cfg.prices_json) {
            json_t *pj = json_loads(n.cfg.prices_json, 0, NULL);
            prices = mxu_prices_from_json(pj, &err);
            json_decref(pj);
            if (prices == NULL) {
                fprintf(stderr, "mxu serve: prices: %s\n", err.msg);
                goto out;
            }
        }
        _cleanup_free_ char *usage_db = mxu_path_join(n.cfg.data_dir, "usage.db");
        if (mxu_meter_open(&n.loop, usage_db, prices, &n.meter, &err) < 0) {
            fprintf(stderr, "mxu serve: %s\n", err.msg);
            goto out;
        }
        /* Quotas count the meter's records: this month's so far, then each
         * one as it is written. */
        if (mxu_policy_quota_attach(n.policy, n.meter, &err) < 0) {
            fprintf(stderr, "mxu serve: quotas: %s\n", err.msg);
            goto out;
        }
    }
    mxu_sched_config scfg = {
        .memory_budget = n.cfg.memory_budget,
        .queue_max = n.cfg.queue_max,
        .queue_timeout_ms = n.cfg.queue_timeout_ms,
        .max_response_bytes = 6u << 20,
        .node_env = node_env,
        .resolver = n.resolver,
        .log_dir = log_dir,
        .default_executor = n.cfg.executor,
        .meter = n.meter,
        .policy = n.policy,
    };
    if (mxu_sched_create(&n.loop, n.reg, &scfg, &n.sched, &err) < 0) {
        fprintf(stderr, "mxu serve: %s\n", err.msg);
        goto out;
    }
    mxu_compose_config ccfg = {
        .reg = n.reg,
        .sched = n.sched,
        .policy = n.policy,
        .meter = n.meter,
        .trace_max_runs = n.cfg.trace_runs,
        .max_response_bytes = scfg.max_response_bytes,
    };
    if (mxu_compose_create(&n.loop, &ccfg, &n.compose, &err) < 0) {
        fprintf(stderr, "mxu serve: %s\n", err.msg);
        goto out;
    }
    mxu_compose_attach(n.compose); /* svc: calls to services */
    mxu_http_limits limits;
    mxu_http_limits_default(&limits);
    limits.max_body_bytes = n.cfg.max_body;
    limits.large_body_prefix = "/v1/";
    limits.max_large_body_bytes = n.cfg.max_deploy_body;
    limits.max_header_bytes = n.cfg.max_header;
    limits.idle_timeout_ms = n.cfg.idle_timeout_ms;
    limits.read_timeout_ms = n.cfg.read_timeout_ms;
    if (split_listen(n.cfg.listen, addr, sizeof(addr), &port) < 0) {
        fprintf(stderr, "mxu serve: listen: bad address '%s'\n", n.cfg.listen);
        goto out;
    }
    mxu_api_config acfg = {.reg = n.reg,
                           .sched = n.sched,
                           .resolver = n.resolver,
                           .policy = n.policy,
                           .data_dir = n.cfg.data_dir,
                           .listen = n.cfg.listen,
                           .max_invoke_body = n.cfg.max_body,
                           .meter = n.meter,
                           .compose = n.compose};
    n.api = mxu_api_create(&acfg);
    if (mxu_http_server_start(&n.loop, addr, port, &limits, mxu_api_handle, n.api, &n.http, &err) <
        0) {
        fprintf(stderr, "mxu serve: cannot listen on %s: %s\n", n.cfg.listen, err.msg);
        goto out;
    }
    snprintf(n.url, sizeof(n.url), "http://%s%s%s:%d", strchr(addr, ':') ? "[" : "", addr,
             strchr(addr, ':') ? "]" : "", mxu_http_server_port(n.http));

    /* The first admin key, and the CLI's credentials for this URL. The URL
     * the CLI will use for a wildcard listener is loopback. */
    {
        char cred_url[128];
        bool any = strcmp(addr, "0.0.0.0") == 0 || strcmp(addr, "::") == 0;
        snprintf(cred_url, sizeof(cred_url), "%s", n.url);
        if (any)
            snprintf(cred_url, sizeof(cred_url), "http://%s:%d",
                     strcmp(addr, "::") == 0 ? "[::1]" : "127.0.0.1", mxu_http_server_port(n.http));
        if (mxu_policy_bootstrap(n.policy, cred_url, &err) < 0) {
            fprintf(stderr, "mxu serve: %s\n", err.msg);
            goto out;
        }
    }

    uv_signal_init(&n.loop, &n.sigterm);
    uv_signal_init(&n.loop, &n.sigint);
    n.sigterm.data = n.sigint.data = &n;
    uv_signal_start(&n.sigterm, on_signal, SIGTERM);
    uv_signal_start(&n.sigint, on_signal, SIGINT);

    json_t *cap = mxu_sched_capacity_json(n.sched);
    char budget[32];
    mxu_format_size((uint64_t)json_integer_value(json_object_get(cap, "memory_budget")), budget,
                    sizeof(budget));
    json_decref(cap);
    printf("mxu %s node listening on %s\n", MXU_VERSION_STRING, n.url);
    printf("  data:      %s\n", n.cfg.data_dir);
    printf("  memory:    %s budget for instances\n", budget);
    printf("  executors: %s\n", mxu_executor_names());
    printf("  metering:  %s\n", n.meter ? "on (usage.db)" : "off");
    if (n.cfg.auth_off) {
        printf("  auth:      OFF\n");
        mxu_warn("AUTHENTICATION IS OFF (--auth off): anyone who can reach %s is the node's "
                 "admin; use this for benchmarks only",
                 n.url);
    } else {
        _cleanup_free_ char *keyfile = mxu_path_join(n.cfg.data_dir, "admin.key");
        printf("  auth:      API keys required (admin key: %s)\n", keyfile);
    }
    const char *no_sandbox = mxu_executor_unavailable("sandbox");
    if (no_sandbox)
        printf("  sandbox:   unavailable: %s\n", no_sandbox);
    const char *no_vm = mxu_executor_unavailable("vm");
    if (no_vm)
        printf("  vm:        unavailable: %s\n", no_vm);
    if (n.cfg.executor && mxu_executor_unavailable(n.cfg.executor))
        mxu_warn("the default executor '%s' cannot run units here: %s", n.cfg.executor,
                 mxu_executor_unavailable(n.cfg.executor));
    fflush(stdout);

    mxu_sched_warm_all(n.sched);
    for (size_t i = 0; i < n.cfg.ndeploy; i++)
        deploy_at_start(&n, n.cfg.deploy[i]);

    rc = 0;
    uv_run(&n.loop, UV_RUN_DEFAULT);
    rc = n.exit_code;

out:
    if (n.http) {
        mxu_http_server_close(n.http, NULL, NULL);
        n.http = NULL;
    }
    /* Before the scheduler: a run still going cancels its calls there. */
    mxu_compose_destroy(n.compose);
    mxu_sched_destroy(n.sched);
    /* After the scheduler: its last records are written before this returns. */
    mxu_meter_close(n.meter);
    /* Anything an exec function started that left its process group. */
    if (node_env != NULL)
        mxu_exec_reap_leftovers(id);
    mxu_registry_close(n.reg);
    mxu_policy_close(n.policy);
    mxu_resolver_close(n.resolver);
    mxu_api_destroy(n.api);
    /* Let every handle finish closing before the loop goes. */
    uv_run(&n.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&n.loop) != 0)
        mxu_warn("some handles were still open at exit");
    if (n.lock_fd >= 0)
        close(n.lock_fd);
    mxu_serve_config_free(&n.cfg);
    return rc;
}
