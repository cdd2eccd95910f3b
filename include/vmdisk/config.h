/*
 * Configuration: one INI file, read with inih.
 *
 * Option names follow Nova's where Nova has one. Keys may appear in the
 * sections [DEFAULT], [libvirt] or [vmdisk] (Nova splits them across the
 * first two); an unknown section, an unknown key or a bad value is an error
 * that names the key and the line. The file to read is, in order: --config,
 * $VMDISK_CONFIG, /etc/vmdisk/vmdisk.conf (a missing default file means the
 * built-in defaults).
 *
 * Threads and state: no state; the calls fill or read the caller's
 * struct vmd_config and are thread-safe (vmd_config_load reads
 * $VMDISK_CONFIG: do not change the environment meanwhile).
 */
#ifndef VMDISK_CONFIG_H
#define VMDISK_CONFIG_H

/* The library is built with hidden visibility; what this header declares
 * is its ABI (lib/libvmdisk.sym). */
#pragma GCC visibility push(default)

#include <limits.h>
/* PATH_MAX sizes the structs (the ABI): in strict ISO C (-std=c11)
 * <limits.h> leaves it out, so it comes from the kernel's header. */
#ifndef PATH_MAX
#include <linux/limits.h>
#endif
#include <stdbool.h>
#include <stdint.h>

#include <vmdisk/error.h>
#include <vmdisk/log.h>
#include <vmdisk/types.h>
#include <vmdisk/validate.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VMD_DEFAULT_CONFIG_PATH "/etc/vmdisk/vmdisk.conf"
#define VMD_NAME_MAX 128

enum vmd_preallocate {
	VMD_PREALLOCATE_NONE = 0,
	VMD_PREALLOCATE_SPACE,
};

struct vmd_config {
	char instances_path[PATH_MAX];         /* default /var/lib/vmdisk/instances */
	enum vmd_backend_kind images_type;     /* default: "default" */
	bool use_cow_images;                   /* default true */
	bool force_raw_images;                 /* default true (Nova's default) */
	enum vmd_preallocate preallocate_images; /* default none */
	char image_cache_subdirectory_name[VMD_NAME_MAX]; /* default "_base" */
	char image_cache_group[33];            /* group cached bases are shared
	                                   with (mode 0640); "" (default): the
	                                   group that owns instances_path */
	char images_volume_group[VMD_NAME_MAX];
	bool sparse_logical_volumes;           /* thin LVs in lvm_thin_pool */
	char volume_clear[8];                  /* none|zero|shred, default zero */
	uint32_t volume_clear_size;            /* MiB cleared, 0 = all */
	char lvm_thin_pool[VMD_NAME_MAX];      /* default "vmdisk-thinpool" */
	char images_rbd_pool[VMD_NAME_MAX];    /* default "rbd" */
	char images_rbd_ceph_conf[PATH_MAX];   /* default "" (librados default) */
	char rbd_user[VMD_NAME_MAX];
	char rbd_secret_uuid[VMD_UUID_LEN + 1];
	/* vmdisk's own */
	uint32_t lock_timeout_seconds;         /* default 600; 0 = wait forever */
	uint64_t max_image_virtual_size;       /* default 1 TiB; larger refused */
	/* cache manager (Nova's names) */
	bool remove_unused_base_images;        /* default true */
	uint32_t remove_unused_original_minimum_age_seconds; /* 86400 */
	uint32_t remove_unused_resized_minimum_age_seconds;  /* 3600 */
	enum vmd_log_target log_target;        /* default syslog */
	enum vmd_log_level log_level;          /* default info */
	/* image downloads (http, https, glance) */
	char ca_file[PATH_MAX];                /* CA bundle for https; "" = system */
	uint32_t http_connect_timeout;         /* seconds, default 30 */
	uint32_t http_low_speed_time;          /* seconds, default 60 ... */
	uint32_t http_low_speed_limit;         /* ... below bytes/s, default 1024 */
	uint32_t http_max_redirects;           /* default 5 */
	uint32_t http_retries;                 /* resumes of a dropped download, default 3 */
	uint64_t max_image_download_size;      /* bytes, 0 = no limit (default) */
	char glance_api_servers[1024];         /* "http(s)://host:port[/path],..." */
	char glance_token_file[PATH_MAX];      /* "" = $VMDISK_GLANCE_TOKEN */
	char allowed_disk_formats[256];        /* default "raw,qcow2" */
	/* rbd backend (vmdisk's own names) */
	char images_rbd_glance_store_pool[VMD_NAME_MAX]; /* default "images":
	                                   where direct snapshots go */
	uint32_t rbd_connect_timeout;          /* seconds, default 5 */
	bool rbd_clone_fallback_import;        /* default true: a location that
	                                   cannot be cloned falls back to import
	                                   when an image source is given too */
	/* vmdiskd, the privileged helper (lib/privhelper.h) */
	char vmdiskd_socket[108];              /* default /run/vmdisk/vmdiskd.sock */
	char vmdiskd_policy_file[PATH_MAX];    /* default /etc/vmdisk/vmdiskd-policy.conf */
	char vmdiskd_audit_log[PATH_MAX];      /* default /var/log/vmdisk/vmdiskd-audit.log */
	/* ephemeral storage encryption and its keys (lib/keys.h) */
	bool ephemeral_storage_encryption_enabled;      /* default false */
	char ephemeral_storage_encryption_cipher[64];   /* default aes-xts-plain64 */
	uint32_t ephemeral_storage_encryption_key_size; /* bits, default 512 */
	char key_manager[16];                  /* "file" (default) or "barbican" */
	char key_file_dir[PATH_MAX];           /* default /etc/vmdisk/keys */
	char barbican_endpoint[VMD_NAME_MAX * 2]; /* http(s)://host:port[/path] */
	char barbican_token_file[PATH_MAX];    /* 0600 file holding the token */
	char barbican_project_id[VMD_NAME_MAX]; /* X-Project-Id; "" = none */
};

void vmd_config_defaults(struct vmd_config *cfg);

/* Read `path` over the defaults. A missing file is VMD_E_NOTFOUND. */
int vmd_config_load_file(struct vmd_config *cfg, const char *path,
                         struct vmd_error *err);

/* Parse INI text (no I/O); used by load_file and by the tests. */
int vmd_config_load_string(struct vmd_config *cfg, const char *text,
                           struct vmd_error *err);

/* explicit (may be NULL) > $VMDISK_CONFIG > default path (may be absent). */
int vmd_config_load(struct vmd_config *cfg, const char *explicit_path,
                    struct vmd_error *err);

/* Resolve images_type=default with use_cow_images. */
enum vmd_backend_kind vmd_config_backend(const struct vmd_config *cfg);

#ifdef __cplusplus
}
#endif
#pragma GCC visibility pop
#endif
