/*
 * cli — the client side of the `mxu` binary: one function per verb that talks
 * to a node over its HTTP API (docs/api.md), and the reading of a function
 * folder into a deployable bundle, which `mxu serve --deploy DIR` reuses.
 *
 * Every verb has the same shape, `int mxu_cmd_NAME(int argc, char **argv)`:
 * argv[0] is the verb's name, the rest its arguments as the user typed them;
 * the return value is the process exit status (0 success, 1 the operation
 * failed, 2 bad usage). Verbs print what a person needs on stdout, problems on
 * stderr, and take `--url URL` (default: $MXU_URL, else
 * http://127.0.0.1:8080) and `--help`.
 */
#ifndef MXU_CLI_H
#define MXU_CLI_H

#include "core/core.h"

#include <stdio.h>

/* ---- verbs (the main's command table calls these by name) ---------------- */

int mxu_cmd_deploy(int argc, char **argv);
int mxu_cmd_catalog(int argc, char **argv);
int mxu_cmd_invoke(int argc, char **argv);
int mxu_cmd_ls(int argc, char **argv);
int mxu_cmd_show(int argc, char **argv);
int mxu_cmd_alias(int argc, char **argv);
int mxu_cmd_rm(int argc, char **argv);
int mxu_cmd_logs(int argc, char **argv);
int mxu_cmd_trace(int argc, char **argv);
int mxu_cmd_version(int argc, char **argv);
int mxu_cmd_health(int argc, char **argv);
int mxu_cmd_resource(int argc, char **argv);
int mxu_cmd_usage(int argc, char **argv);
int mxu_cmd_bill(int argc, char **argv);
int mxu_cmd_key(int argc, char **argv);
int mxu_cmd_tenant(int argc, char **argv);
int mxu_cmd_policy(int argc, char **argv);

/* Every verb (serve included) with a one-line description, for `mxu --help`. */
void mxu_cli_usage_all(FILE *out);

/* ---- function folders ------------------------------------------------------ */

/* The limits a node puts on one function's files (docs/api.md, deploy);
 * checked while reading so that a too-big folder fails before any upload. */
#define MXU_BUNDLE_READ_MAX_FILES    1000
#define MXU_BUNDLE_READ_MAX_BYTES    (64u * 1024 * 1024)
#define MXU_BUNDLE_READ_MAX_MANIFEST (1024u * 1024)

typedef struct mxu_bundle_file {
    char *path;    /* relative to the folder, '/'-separated, e.g. "lib/util.c" */
    uint32_t mode; /* permission bits only (st_mode & 0777) */
    void *data;    /* never NULL, even for an empty file */
    size_t len;
} mxu_bundle_file;

typedef struct mxu_bundle {
    char *manifest; /* text of DIR/mxu.yaml, NUL-terminated */
    size_t manifest_len;
    char *manifest_path;    /* DIR joined with "mxu.yaml", as typed: "examples/hello/mxu.yaml" */
    mxu_bundle_file *files; /* sorted by path; mxu.yaml itself is not among them */
    size_t nfiles;
    size_t total_bytes; /* sum of the files' lengths */
    /* Things skipped that the user may not expect to be (symlinks, sockets,
     * ...), one sentence each; the caller decides how to show them. */
    char **warnings;
    size_t nwarnings;
} mxu_bundle;

/* Read a function folder: DIR/mxu.yaml is the manifest, every other regular
 * file under DIR (recursively) a file of the bundle. Names starting with '.'
 * (files and folders, at any depth) are skipped silently — they are editor,
 * VCS and build leftovers; symlinks and special files are skipped with a
 * warning. Fails (out untouched, err filled) when DIR or its manifest cannot be
 * read, a name is not UTF-8 or too long, or the folder exceeds the node's
 * limits of MXU_BUNDLE_READ_MAX_FILES files or MXU_BUNDLE_READ_MAX_BYTES in
 * total. On success free `out` with mxu_bundle_free. */
int mxu_bundle_read(const char *dir, mxu_bundle *out, mxu_err *err);
void mxu_bundle_free(mxu_bundle *b);

#endif
