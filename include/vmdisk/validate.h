/*
 * Allow-lists for every value that reaches a path or an argv.
 *
 * Nothing from a user, a config file or an image becomes part of a file name
 * or a program argument without passing one of these. Parsers are pure: a
 * string in, a typed value out, no I/O.
 *
 * Threads and state: no state; every call is thread-safe (errors go to
 * the process-wide logger, log.h).
 */
#ifndef VMDISK_VALIDATE_H
#define VMDISK_VALIDATE_H

/* The library is built with hidden visibility; what this header declares
 * is its ABI (lib/libvmdisk.sym). */
#pragma GCC visibility push(default)

#include <stdbool.h>
#include <stdint.h>

#include <vmdisk/error.h>
#include <vmdisk/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VMD_UUID_LEN 36
#define VMD_DISK_NAME_MAX 64

/* 8-4-4-4-12 hex digits; upper case is accepted. */
bool vmd_valid_uuid(const char *s);
/* [A-Za-z0-9][A-Za-z0-9._-]{0,63}; so never "..", "/" or a leading dot. */
bool vmd_valid_disk_name(const char *s);
/* [A-Za-z0-9][A-Za-z0-9._-]{0,127}: names of lock and cache files we make. */
bool vmd_valid_file_token(const char *s);

int vmd_parse_backend(const char *s, enum vmd_backend_kind *out,
                      struct vmd_error *err);
const char *vmd_backend_kind_name(enum vmd_backend_kind k);

int vmd_parse_format(const char *s, enum vmd_format *out, struct vmd_error *err);
const char *vmd_format_name(enum vmd_format f);

int vmd_parse_ploop_variant(const char *s, enum vmd_ploop_variant *out,
                            struct vmd_error *err);
const char *vmd_ploop_variant_name(enum vmd_ploop_variant v);

/*
 * Sizes: decimal digits with an optional binary unit: K, M, G, T, P (also
 * written Ki/KiB/KB... all meaning powers of 1024) or B. "0" is allowed by
 * the parser; callers that need a positive size check that. Overflow of
 * uint64_t is an error.
 */
int vmd_parse_size(const char *s, uint64_t *out, struct vmd_error *err);

/* Strict booleans: true/false, yes/no, on/off, 1/0 (case-insensitive). */
int vmd_parse_bool(const char *s, bool *out, struct vmd_error *err);

#ifdef __cplusplus
}
#endif
#pragma GCC visibility pop
#endif
