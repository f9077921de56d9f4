/*
 * mxu — the command-line entry. One table of verbs; each verb is a thin
 * function in src/cli/ (serve runs a node, the others are HTTP clients of one).
 */
#include "cli/cli.h"
#include "core/core.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>

int mxu_cmd_serve(int argc, char **argv);

static const struct command {
    const char *name;
    int (*run)(int argc, char **argv);
} commands[] = {
    {"serve", mxu_cmd_serve},       {"deploy", mxu_cmd_deploy}, {"catalog", mxu_cmd_catalog},
    {"invoke", mxu_cmd_invoke},     {"ls", mxu_cmd_ls},         {"show", mxu_cmd_show},
    {"alias", mxu_cmd_alias},       {"rm", mxu_cmd_rm},         {"logs", mxu_cmd_logs},
    {"version", mxu_cmd_version},   {"health", mxu_cmd_health}, {"resource", mxu_cmd_resource},
    {"usage", mxu_cmd_usage},       {"bill", mxu_cmd_bill},     {"health", mxu_cmd_health},
    {"resource", mxu_cmd_resource}, {"key", mxu_cmd_key},       {"tenant", mxu_cmd_tenant},
    {"policy", mxu_cmd_policy},     {"trace", mxu_cmd_trace},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: mxu COMMAND [options]   (mxu COMMAND --help for details)\n\n");
    mxu_cli_usage_all(out);
    fprintf(out, "\nThe node is found at $MXU_URL (default http://127.0.0.1:8080); the API key\n"
                 "is --key, else $MXU_KEY, else the node's line in ~/.config/mxu/credentials.\n");
}

int main(int argc, char **argv)
{
    /* Make sure 0, 1 and 2 are open, so no descriptor the node opens later
     * can land on them and be mistaken for stdio by a child. */
    for (int fd = 0; fd < 3; fd++) {
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) < 0)
            return 1;
    }
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0)
        return mxu_cmd_version(1, argv + 1);
    for (size_t i = 0; i < MXU_ARRAY_LEN(commands); i++) {
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "mxu: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
