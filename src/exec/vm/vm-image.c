/*
 * Guest images: the checks between a file on disk and guest memory. The
 * image comes from a build the function's author controls (sources, cflags,
 * libs), so it is treated as hostile: every header field is checked for
 * range and overflow before anything is copied, and the layout rules of
 * vm-abi.h (image above 4 MiB, W^X per 2 MiB page, room for heap and stack)
 * are enforced here rather than trusted to the linker script.
 */
#include "exec/vm/vm-internal.h"

#include <elf.h>
#include <errno.h>
#include <string.h>

#define PAGE_DOWN(x) ((x) & ~(uint64_t)(MXU_VM_PAGE - 1))
#define PAGE_UP(x)   PAGE_DOWN((x) + MXU_VM_PAGE - 1)

int vm_image_parse(const void *image, size_t len, uint64_t mem_bytes, vm_image *out, mxu_err *err)
{
    memset(out, 0, sizeof(*out));
    const uint8_t *img = image;
    Elf64_Ehdr eh;
    if (len < sizeof(eh))
        return mxu_err_set(err, ENOEXEC, "vm: image is %zu bytes, too short for an ELF header",
                           len);
    memcpy(&eh, img, sizeof(eh));
    if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
        eh.e_ident[EI_DATA] != ELFDATA2LSB)
        return mxu_err_set(err, ENOEXEC, "vm: image is not a 64-bit little-endian ELF file");
    if (eh.e_type != ET_EXEC || eh.e_machine != EM_X86_64)
        return mxu_err_set(err, ENOEXEC,
                           "vm: image is not a static x86-64 executable (e_type %u, machine %u); "
                           "build it with the guest SDK",
                           eh.e_type, eh.e_machine);
    if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phoff > len ||
        (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > len - eh.e_phoff)
        return mxu_err_set(err, ENOEXEC, "vm: image has a malformed program header table");

    /* The image may use [IMAGE_BASE, heap_limit): the heap needs at least a
     * page, then come the guard and the stack. */
    uint64_t top = mem_bytes - (uint64_t)(VM_STACK_PAGES + VM_GUARD_PAGES) * MXU_VM_PAGE;
    uint64_t limit = top - MXU_VM_PAGE;
    uint64_t end = MXU_VM_IMAGE_BASE;
    bool entry_ok = false;
    for (size_t i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, img + eh.e_phoff + i * sizeof(ph), sizeof(ph));
        if (ph.p_type == PT_INTERP || ph.p_type == PT_DYNAMIC)
            return mxu_err_set(err, ENOEXEC, "vm: image is dynamically linked");
        if (ph.p_type == PT_TLS)
            return mxu_err_set(err, ENOEXEC,
                               "vm: image uses thread-local storage, which guests do not have");
        if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
            continue;
        if (out->nseg == VM_MAX_SEGMENTS)
            return mxu_err_set(err, ENOEXEC, "vm: image has more than %d loadable segments",
                               VM_MAX_SEGMENTS);
        if (ph.p_filesz > ph.p_memsz || ph.p_offset > len || ph.p_filesz > len - ph.p_offset)
            return mxu_err_set(err, ENOEXEC, "vm: segment %zu lies outside the image file", i);
        if (ph.p_vaddr < MXU_VM_IMAGE_BASE || ph.p_vaddr > limit || ph.p_memsz > limit - ph.p_vaddr)
            return mxu_err_set(err, ENOEXEC,
                               "vm: segment %zu [0x%llx, +0x%llx) is outside the image area "
                               "[0x%llx, 0x%llx) of a %llu MiB guest",
                               i, (unsigned long long)ph.p_vaddr, (unsigned long long)ph.p_memsz,
                               (unsigned long long)MXU_VM_IMAGE_BASE, (unsigned long long)limit,
                               (unsigned long long)(mem_bytes >> 20));
        vm_segment *s = &out->seg[out->nseg++];
        s->vaddr = ph.p_vaddr;
        s->memsz = ph.p_memsz;
        s->offset = ph.p_offset;
        s->filesz = ph.p_filesz;
        s->write = (ph.p_flags & PF_W) != 0;
        s->exec = (ph.p_flags & PF_X) != 0;
        if (s->exec && eh.e_entry >= s->vaddr && eh.e_entry - s->vaddr < s->memsz)
            entry_ok = true;
        end = MXU_MAX(end, PAGE_UP(s->vaddr + s->memsz));
    }
    if (out->nseg == 0)
        return mxu_err_set(err, ENOEXEC, "vm: image has no loadable segment");
    if (!entry_ok)
        return mxu_err_set(err, ENOEXEC, "vm: entry point 0x%llx is in no executable segment",
                           (unsigned long long)eh.e_entry);
    /* W^X at the granularity the guest is mapped with: a writable segment
     * and an executable one must not share a 2 MiB page, or the guest could
     * rewrite its own code. */
    for (size_t i = 0; i < out->nseg; i++) {
        for (size_t j = 0; j < out->nseg; j++) {
            const vm_segment *w = &out->seg[i], *x = &out->seg[j];
            if (!w->write || !x->exec)
                continue;
            if (PAGE_DOWN(w->vaddr) < PAGE_UP(x->vaddr + x->memsz) &&
                PAGE_DOWN(x->vaddr) < PAGE_UP(w->vaddr + w->memsz))
                return mxu_err_set(err, ENOEXEC,
                                   "vm: a writable and an executable segment share a 2 MiB page "
                                   "(link with the guest SDK's guest.ld)");
        }
    }
    out->entry = eh.e_entry;
    out->end = end;
    if (end > limit)
        return mxu_err_set(err, ENOEXEC, "vm: image leaves no room for a heap in a %llu MiB guest",
                           (unsigned long long)(mem_bytes >> 20));
    return 0;
}
