/*
 * The vm executor: each instance is a KVM guest with no guest kernel, run by
 * its own helper process, mxu-vmm (vmm-main.c; why a process and not a
 * thread is said there). The helper is started exactly like a process
 * instance (exec-process.c: own group, death signal, rlimits, the channel
 * pipes on fds 3 and 4), so everything the scheduler does with instances —
 * frames, kill, CPU and memory use, exit reasons — works unchanged; only
 * what runs is different: `mxu-vmm MEMORY IMAGE` instead of the program.
 *
 * The guest image is the `runtime: c` build made for vm at deploy (the
 * function's sources linked with the guest SDK, sdk/guest/); prepare()
 * checks it once per unit, so a unit built for another executor fails with
 * a message instead of a crash loop.
 */
#include "exec/exec-internal.h"
#include "exec/vm/vm-internal.h"
#include "mxu-config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* RLIMIT_DATA of the helper: guest memory is a private mapping of the
 * helper's, so the limit is the guest's memory plus the helper's own needs. */
#define HELPER_OVERHEAD (64ull << 20)

const char *mxu_vm_unavailable(void)
{
    return mxu_vm_probe();
}

static const char *helper_path(void)
{
    const char *p = getenv("MXU_VMM");
    return p && p[0] ? p : MXU_VMM_PATH;
}

static uint64_t guest_memory(const mxu_exec_spec *spec)
{
    uint64_t m = spec->memory_bytes ? spec->memory_bytes : (128ull << 20);
    return m & ~(uint64_t)(MXU_VM_PAGE - 1);
}

static int vm_prepare(mxu_exec *ex, const mxu_exec_spec *spec, mxu_err *err)
{
    MXU_UNUSED(ex);
    const char *why = mxu_vm_probe();
    if (why)
        return mxu_err_set(err, ENODEV, "%s: the vm executor cannot run here: %s", spec->label,
                           why);
    uint64_t mem = guest_memory(spec);
    if (mem < MXU_VM_MEM_MIN || mem > MXU_VM_MEM_MAX)
        return mxu_err_set(err, EINVAL, "%s: a vm guest's memory must be %llu MiB .. %llu GiB",
                           spec->label, (unsigned long long)(MXU_VM_MEM_MIN >> 20),
                           (unsigned long long)(MXU_VM_MEM_MAX >> 30));
    if (access(helper_path(), X_OK) < 0)
        return mxu_err_sys(err, errno, "%s: cannot run the VMM helper %s", spec->label,
                           helper_path());
    if (spec->argv == NULL || spec->argv[0] == NULL)
        return mxu_err_set(err, EINVAL, "%s: no guest image", spec->label);
    _cleanup_buf_ mxu_buf img = {0};
    if (mxu_read_file(spec->argv[0], (size_t)mem, &img, err) < 0)
        return mxu_err_prefix(err, "%s: guest image", spec->label);
    vm_image im;
    if (vm_image_parse(img.data, img.len, mem, &im, err) < 0)
        return mxu_err_prefix(err, "%s: %s is not a guest image (deploy it with executor: vm)",
                              spec->label, spec->argv[0]);
    return 0;
}

static int vm_spawn(mxu_exec *ex, const mxu_exec_spec *spec, mxu_proc_exit_cb exit_cb, void *ud,
                    mxu_proc **out, mxu_err *err)
{
    char mem[32];
    snprintf(mem, sizeof(mem), "%" PRIu64, guest_memory(spec));
    const char *argv[] = {helper_path(), mem, spec->argv[0], NULL};
    mxu_exec_spec hs = *spec;
    hs.argv = argv;
    hs.memory_bytes = guest_memory(spec) + HELPER_OVERHEAD;
    if (mxu_exec_process_ops.spawn(ex, &hs, exit_cb, ud, out, err) < 0)
        return -1;
    (*out)->ops = &mxu_exec_vm_ops;
    return 0;
}

/* The helper is a process like any instance: these are the process
 * executor's (its CPU time includes the guest's, which runs on its thread). */
static void vm_kill(mxu_proc *p)
{
    mxu_exec_process_ops.kill(p);
}

static int vm_usage(mxu_proc *p, mxu_usage *u)
{
    return mxu_exec_process_ops.usage(p, u);
}

static int vm_cpu(mxu_proc *p, uint64_t *cpu_us)
{
    return mxu_exec_process_ops.cpu(p, cpu_us);
}

static void vm_release(mxu_exec *ex, const mxu_exec_spec *spec)
{
    MXU_UNUSED(ex);
    MXU_UNUSED(spec);
}

const mxu_executor_ops mxu_exec_vm_ops = {
    .name = "vm",
    .prepare = vm_prepare,
    .spawn = vm_spawn,
    .kill = vm_kill,
    .usage = vm_usage,
    .cpu = vm_cpu,
    .release = vm_release,
};
