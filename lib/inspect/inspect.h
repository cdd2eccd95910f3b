/*
 * Inspector internals: the source abstraction and one table per format.
 *
 * A format is one file, lib/inspect/inspect_<name>.c, ending with its
 * `struct vmd_format_ops`. `probe` is pure (bytes in, yes/no out) and cheap;
 * `inspect` fills the result and records every failed check with
 * vmd_inspect_refuse(). A format with nothing to parse has no `inspect`:
 * the core has already set the format and the file's length as virtual
 * size, and refuses it with `unsupported` when that is set. Parsers read only through vmd_src_read(), which
 * enforces the read budget, so a hostile image cannot make us read (or
 * allocate) more than the limits allow.
 */
#ifndef VMDISK_INSPECT_INTERNAL_H
#define VMDISK_INSPECT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vmdisk/inspect.h>

/*
 * For loops over bulk bytes (checksums, copies) whose every iteration
 * would otherwise feed the fuzzer's coverage hooks for nothing.
 */
#if defined(__clang__) && __clang_major__ >= 13
#define VMD_NO_COVERAGE __attribute__((no_sanitize("coverage"), noinline))
#else
#define VMD_NO_COVERAGE
#endif

/*
 * The inspector over a sparse file in memory: `size` bytes that read as
 * zeros except where a chunk puts bytes (a later chunk wins over an earlier
 * one; bytes past `size` are never read). It lets a small input describe a
 * virtual file of GiBs with headers far apart (VHDX at 64 and 128 KiB, a
 * VMDK footer at the end), for the fuzz target and the unit tests, with no
 * file I/O; no ABI, so not in <vmdisk/inspect.h>.
 */
struct vmd_inspect_chunk {
	uint64_t offset;
	const void *data;
	size_t len;
};

int vmd_inspect_sparse(const struct vmd_inspect_chunk *chunks, size_t n,
                       uint64_t size, const struct vmd_inspect_limits *limits,
                       unsigned flags, struct vmd_inspect_result *out,
                       struct vmd_error *err);

/* Bytes given to every probe. */
#define VMD_PROBE_HEAD 65536
#define VMD_PROBE_TAIL 512

struct vmd_image_source {
	int fd;                    /* -1 when reading from mem or chunks */
	const unsigned char *mem;
	uint64_t size;             /* file length */
	uint64_t budget;           /* bytes still allowed to be read */
	/* A sparse file in memory (vmd_inspect_sparse): zeros but these. */
	bool sparse;
	const struct vmd_inspect_chunk *chunks;
	size_t n_chunks;
};

struct vmd_probe_data {
	const unsigned char *head; /* the first head_len bytes of the file */
	size_t head_len;
	const unsigned char *tail; /* the last tail_len bytes */
	size_t tail_len;
	uint64_t file_size;
};

/*
 * Read up to len bytes at off. Returns the count read (short only at end
 * of file) or -1 when the read failed or would exceed the budget.
 */
long vmd_src_read(struct vmd_image_source *src, void *buf, size_t len,
                  uint64_t off);

/* Like vmd_src_read, but served from the probe buffers when they hold
 * the range. */
long vmd_probe_read(struct vmd_image_source *src,
                    const struct vmd_probe_data *p, void *buf, size_t len,
                    uint64_t off);

struct vmd_format_ops {
	enum vmd_image_format format;
	const char *name;
	bool (*probe)(const struct vmd_probe_data *p);
	/* Fill r (format, sizes, features) and refuse what is unsafe.
	 * Return 0, or -1 only for an I/O failure of the source. */
	int (*inspect)(struct vmd_image_source *src,
	               const struct vmd_probe_data *p,
	               const struct vmd_inspect_limits *lim, unsigned flags,
	               struct vmd_inspect_result *r);
	/* A format recognised only to be refused (inspect is NULL): the
	 * reason's code, and what its text calls the format ("<what> images
	 * are not supported"). NULL: a raw-like format, nothing refused. */
	const char *unsupported_code;
	const char *unsupported_what;
};

/* Record a failed check; r->safe becomes false. */
void vmd_inspect_refuse(struct vmd_inspect_result *r, const char *code,
                        const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Refuse a table of `bytes` above lim->max_table_size with the reason
 * "table-size-limit" ("<what> of N bytes is above the limit L"); true
 * when it was refused. */
bool vmd_inspect_table_limit(struct vmd_inspect_result *r,
                             const struct vmd_inspect_limits *lim,
                             const char *what, uint64_t bytes);

/* Little/big-endian loads with the bounds check built in: 0 past the end. */
uint16_t vmd_le16_at(const unsigned char *b, size_t len, size_t off);
uint32_t vmd_le32_at(const unsigned char *b, size_t len, size_t off);
uint64_t vmd_le64_at(const unsigned char *b, size_t len, size_t off);
uint32_t vmd_be32_at(const unsigned char *b, size_t len, size_t off);
uint64_t vmd_be64_at(const unsigned char *b, size_t len, size_t off);
bool vmd_bytes_at(const unsigned char *b, size_t len, size_t off,
                  const void *want, size_t wlen);

/* a + b with overflow reported as UINT64_MAX. */
uint64_t vmd_add_sat(uint64_t a, uint64_t b);
uint64_t vmd_mul_sat(uint64_t a, uint64_t b);

extern const struct vmd_format_ops vmd_format_qcow2;
extern const struct vmd_format_ops vmd_format_vmdk;
extern const struct vmd_format_ops vmd_format_vhd;
extern const struct vmd_format_ops vmd_format_vhdx;
extern const struct vmd_format_ops vmd_format_vdi;
extern const struct vmd_format_ops vmd_format_iso;
extern const struct vmd_format_ops vmd_format_luks;
extern const struct vmd_format_ops vmd_format_gpt;
extern const struct vmd_format_ops vmd_format_mbr;
extern const struct vmd_format_ops vmd_format_parallels;
extern const struct vmd_format_ops vmd_format_qed;
extern const struct vmd_format_ops vmd_format_bochs;
extern const struct vmd_format_ops vmd_format_cloop;
extern const struct vmd_format_ops vmd_format_dmg;

#endif
