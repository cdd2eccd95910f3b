/*
 * The per-instance record: <instance_dir>/.vmdisk.json.
 *
 * For each disk it keeps the backend and format the disk was created with
 * and the cache entry of its base. Later calls read the backend from here
 * instead of trusting the configuration (which may have changed) or probing
 * the disk (which the guest can write): the start of format pinning. The
 * cache manager reads it, and only it, to know which bases are in use.
 *
 * The leading dot keeps it apart from disk names, which cannot start with
 * one. instance_fd: the instance directory, opened by lib/beneath.c.
 * Callers hold the instance lock for put/drop; readers need none since
 * the file is only ever replaced atomically.
 */
#ifndef VMDISK_RECORD_H
#define VMDISK_RECORD_H

#include <vmdisk/vmdisk.h>

#define VMD_RECORD_NAME ".vmdisk.json"

struct vmd_disk_record {
	enum vmd_backend_kind backend;
	enum vmd_format format;
	char base_id[VMD_CACHE_ID_MAX]; /* "" for an unformatted blank disk */
	char key_id[VMD_UUID_LEN + 1];  /* an encrypted disk's key, else "" */
	/* Recorded before the backend makes the disk, cleared once it is
	 * made: an entry still pending under the instance lock is what a
	 * killed create left (the disk may or may not exist), which the next
	 * create of that disk removes. Other calls do not see it. */
	bool pending;
};

/* VMD_E_NOTFOUND (without touching err) when there is no such disk. */
int vmd_record_get(int instance_fd, const char *disk,
                   struct vmd_disk_record *rec, struct vmd_error *err);
/* Add the disk's entry; an existing entry is never replaced (VMD_E_EXISTS):
 * that is what pins a disk's format. */
int vmd_record_put(int instance_fd, const char *disk,
                   const struct vmd_disk_record *rec, struct vmd_error *err);
/* Clear the disk's pending mark: the disk is complete. */
int vmd_record_commit(int instance_fd, const char *disk,
                      struct vmd_error *err);
/* Remove the disk's entry; the file goes when it has no entry left. */
int vmd_record_drop(int instance_fd, const char *disk,
                    struct vmd_error *err);

/* fn for each disk of the record (none when there is no record); a
 * damaged record is an error (VMD_E_CORRUPT), never "no disks". */
int vmd_record_foreach(int instance_fd,
                       void (*fn)(const char *disk,
                                  const struct vmd_disk_record *rec,
                                  void *opaque),
                       void *opaque, struct vmd_error *err);

#endif
