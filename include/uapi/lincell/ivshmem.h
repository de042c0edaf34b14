/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * lincell ivshmem character device ABI: /dev/ivshmemN.
 *
 * Documented in Documentation/ivshmem-abi.md. The Rust twin of this file is
 * rust/ivshmem/uapi.rs; a host test checks that both agree byte for byte.
 */
#ifndef _UAPI_LINCELL_IVSHMEM_H
#define _UAPI_LINCELL_IVSHMEM_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define IVSHMEM_IOC_MAGIC	0xbe
#define IVSHMEM_MAX_VECTORS	64

/* struct ivshmem_info.flags */
#define IVSHMEM_INFO_DOORBELL	(1U << 0)	/* interrupt vectors exist */
#define IVSHMEM_INFO_ONESHOT	(1U << 1)	/* one-shot mode on (v2); read re-enables */
#define IVSHMEM_INFO_SECTIONS	(1U << 2)	/* state table/R/W/output sections */

/*
 * Sizes are rounded up to the page size (v2) or the v1 header's granule;
 * offsets are also mmap offsets and include the v1 header on v1.
 */
struct ivshmem_info {
	__u32 revision;		/* 1: QEMU ivshmem, 2: ivshmem 2.0 */
	__u32 own_id;		/* own peer id */
	__u32 max_peers;	/* peers including this one (v1 without layout: 65536) */
	__u32 vectors;		/* interrupt vectors, 0 if none */
	__u32 protocol;		/* v2 class-code protocol; always 0 on v1, even if
				 * the v1 layout header carries one (read it at
				 * offset 0x28 of the read-only first page) */
	__u32 flags;		/* IVSHMEM_INFO_* */
	__u64 shmem_size;	/* whole shared-memory region */
	__u64 state_table_offset;	/* offsets are also mmap offsets */
	__u64 state_table_size;
	__u64 rw_offset;
	__u64 rw_size;
	__u64 output_offset;	/* peer n: output_offset + n * output_size */
	__u64 output_size;
};

struct ivshmem_ring {
	__u32 peer;
	__u32 vector;
};

/*
 * A user buffer of `count` elements; `count` comes back as the number
 * available. Only min(count, available) elements are written, so count 0
 * with ptr 0 succeeds and just reports the number available.
 */
struct ivshmem_array {
	__u64 ptr;
	__u32 count;
	__u32 reserved;		/* must be 0 */
};

/*
 * Once the device is unbound or removed, every ioctl (even an unknown
 * command) fails with ENODEV. Otherwise, per command:
 *   INFO         EFAULT
 *   RING         EFAULT, EOPNOTSUPP (no vectors), EINVAL (peer >= max_peers
 *                or vector >= vectors)
 *   SET_STATE    EFAULT. Publishes the state: v2 State register; v1 own
 *                state-table entry + vector 0 rung on every other peer id.
 *   GET_STATE    EFAULT. The value last set on this device, shared by all
 *                open files; back to 0 when the last open file is released
 *                (last close or last munmap, whichever is later) and on unbind.
 *   PEER_STATES  EOPNOTSUPP (no sections), EFAULT, EINVAL (reserved != 0),
 *                ENOMEM
 *   COUNTERS     EFAULT, EINVAL (reserved != 0)
 *   other        ENOTTY
 */
#define IVSHMEM_IOCTL_INFO	  _IOR(IVSHMEM_IOC_MAGIC, 0x00, struct ivshmem_info)
#define IVSHMEM_IOCTL_RING	  _IOW(IVSHMEM_IOC_MAGIC, 0x01, struct ivshmem_ring)
#define IVSHMEM_IOCTL_SET_STATE	  _IOW(IVSHMEM_IOC_MAGIC, 0x02, __u32)
#define IVSHMEM_IOCTL_GET_STATE	  _IOR(IVSHMEM_IOC_MAGIC, 0x03, __u32)
#define IVSHMEM_IOCTL_PEER_STATES _IOWR(IVSHMEM_IOC_MAGIC, 0x04, struct ivshmem_array)	/* __u32 each */
#define IVSHMEM_IOCTL_COUNTERS	  _IOWR(IVSHMEM_IOC_MAGIC, 0x05, struct ivshmem_array)	/* __u64 each */

/*
 * read(2) with a count >= 8 returns one __u64: the mask of vectors that
 * fired since the last read on this open file. It blocks (O_NONBLOCK:
 * EAGAIN); a signal handler without SA_RESTART gives EINTR, with SA_RESTART
 * the read restarts. count < 8: EINVAL; device gone: ENODEV.
 * write(2) is not supported: EINVAL.
 *
 * mmap(2): MAP_SHARED only, inside one region (the v1 header, the state
 * table, the R/W section, one output section; the memory after the last
 * output section is no region). EINVAL otherwise; a writable mapping of a
 * read-only region, or a later mprotect(PROT_WRITE) of one: EACCES.
 */

#endif /* _UAPI_LINCELL_IVSHMEM_H */
