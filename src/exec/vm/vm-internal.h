/* Shared between the VMM's files (src/exec/vm/). */
#ifndef MXU_VM_INTERNAL_H
#define MXU_VM_INTERNAL_H

#include "exec/vm/vm.h"

#define VM_MAX_SEGMENTS 16

/* One PT_LOAD segment, checked: [vaddr, vaddr + memsz) lies inside the
 * image area of guest memory, [offset, offset + filesz) inside the file. */
typedef struct vm_segment {
    uint64_t vaddr, memsz, offset, filesz;
    bool write, exec;
} vm_segment;

typedef struct vm_image {
    uint64_t entry;
    uint64_t end; /* first byte after the last segment, 2 MiB aligned: the heap's start */
    vm_segment seg[VM_MAX_SEGMENTS];
    size_t nseg;
} vm_image;

/* Where the stack lives: the top 2 MiB page of guest memory, below it one
 * unmapped page as a guard between heap and stack. */
#define VM_STACK_PAGES 1u
#define VM_GUARD_PAGES 1u

/* Parse and check a guest ELF for a guest of `mem_bytes`: static x86-64
 * executable, at most VM_MAX_SEGMENTS PT_LOAD segments, each inside
 * [MXU_VM_IMAGE_BASE, heap area), no 2 MiB page both writable and
 * executable, entry inside an executable segment, and room for a heap. */
int vm_image_parse(const void *image, size_t len, uint64_t mem_bytes, vm_image *out, mxu_err *err);

/* The vCPU's general registers now (tests compare a reset guest's with
 * the pristine image's). Returns the ioctl's result. */
struct kvm_regs;
int mxu_vm_vcpu_regs(mxu_vm *vm, struct kvm_regs *r);

/* Host pages the last mxu_vm_reset() copied: under dirtylog, the pages
 * copied back from the image; under cow, the private copies it
 * repopulated. For tests and measurements. */
size_t mxu_vm_last_reset_pages(const mxu_vm *vm);
/* Bytes of guest memory the host holds now: under cow, the pages its
 * mapping has (pagemap; the image's own pages included, once); under
 * dirtylog, the pages of guest memory's memfd. Not the image's memfd,
 * the same in both. For measurements. */
uint64_t mxu_vm_memory_held(mxu_vm *vm);

/* Dirtylog resets use manual protection (KVM_CLEAR_DIRTY_LOG), and leave
 * the pages the last guest wrote writable, when KVM offers it and this is
 * true (the default) at mxu_vm_snapshot(); false: KVM_GET_DIRTY_LOG alone,
 * which reads, empties and protects again in one call, and every logged
 * page is copied back. Measurements set it to compare the two. */
extern bool mxu_vm_dirtylog_manual;

#endif
