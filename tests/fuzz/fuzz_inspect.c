/*
 * Fuzz target of the image inspector (vmd_inspect_buffer) and the checks it
 * makes of every result, whatever the input bytes:
 *
 *  - the call returns 0, or a negative code with the error set;
 *  - n_reasons <= VMD_INSPECT_MAX_REASONS and safe == (n_reasons == 0);
 *  - every string of the result ends within its array; reason codes are not
 *    empty and reason texts are one printable line;
 *  - format < VMD_IMG_FORMAT_COUNT, is one of the matched formats (or raw),
 *    and matched has no bit past the last format;
 *  - file_size is the input's length; a raw-like format's virtual size is
 *    the file's length; a safe image is within the virtual size limit and,
 *    without VMD_INSPECT_ALLOW_BACKING, names no backing file;
 *  - the flags change neither the format nor the matched set, and allowing
 *    a backing file never makes a safe image unsafe (checked for qcow2
 *    candidates, the only parser that reads the flag).
 *
 * An input that starts with "VMDSPARS" describes a sparse file instead of
 * being one, so that small inputs reach headers and tables at large
 * offsets (VHDX at 64 and 128 KiB, footers at the end of a GiB image):
 *
 *   off 0   8 bytes   "VMDSPARS"
 *   off 8   u64 LE    the virtual file's size (at most INT64_MAX, as a
 *                     file's; larger is clamped)
 *   off 16  u8        chunk count N (at most SPARSE_MAX_CHUNKS; more are
 *                     ignored)
 *   off 17  N x 12    chunk table: u64 LE offset, u32 LE length
 *   then              the chunks' bytes, one after the other; a chunk
 *                     gets at most what is left of the input
 *
 * The virtual file reads as zeros except where a chunk puts bytes (a later
 * chunk over an earlier one); vmd_inspect_sparse() runs the real inspector
 * over it with no file I/O. Any other input is the file itself.
 *
 * vmd_fuzz_inspect_check() is compiled into the corpus replay test too
 * (replay_corpus.c); LLVMFuzzerTestOneInput only into the fuzzer, built with
 * -DVMD_FUZZER (see meson.build and README.md here).
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmdisk/error.h>
#include <vmdisk/inspect.h>
#include <vmdisk/log.h>

#include "fuzz_inspect.h"
#include "inspect.h" /* vmd_inspect_sparse (lib/inspect/) */

#define SPARSE_MAGIC "VMDSPARS"
#define SPARSE_HEAD 17
#define SPARSE_ENTRY 12
#define SPARSE_MAX_CHUNKS 32

struct input {
	bool sparse;
	const uint8_t *data; /* plain */
	size_t size;
	uint64_t vsize;      /* sparse */
	struct vmd_inspect_chunk chunks[SPARSE_MAX_CHUNKS];
	size_t n;
};

static uint64_t le(const uint8_t *b, int n)
{
	uint64_t v = 0;

	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | b[i];
	return v;
}

static void decode(const uint8_t *data, size_t size, struct input *in)
{
	size_t n, pos;

	in->sparse = false;
	in->data = data;
	in->size = size;
	if (size < SPARSE_HEAD || memcmp(data, SPARSE_MAGIC, 8) != 0)
		return;
	in->sparse = true;
	in->vsize = le(data + 8, 8);
	if (in->vsize > INT64_MAX)
		in->vsize = INT64_MAX;
	n = data[16] < SPARSE_MAX_CHUNKS ? data[16] : SPARSE_MAX_CHUNKS;
	if (n > (size - SPARSE_HEAD) / SPARSE_ENTRY)
		n = (size - SPARSE_HEAD) / SPARSE_ENTRY;
	pos = SPARSE_HEAD + n * SPARSE_ENTRY;
	in->n = n;
	for (size_t i = 0; i < n; i++) {
		const uint8_t *e = data + SPARSE_HEAD + i * SPARSE_ENTRY;
		uint64_t len = le(e + 8, 4);

		if (len > size - pos)
			len = size - pos;
		in->chunks[i].offset = le(e, 8);
		in->chunks[i].data = data + pos;
		in->chunks[i].len = (size_t)len;
		pos += (size_t)len;
	}
}

struct run {
	unsigned flags;
	int ret;
	struct vmd_error err;
	struct vmd_inspect_result r;
};

static bool ends_within(const char *s, size_t size)
{
	return memchr(s, '\0', size) != NULL;
}

static bool printable_line(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
			return false;
	return true;
}

static bool check_strings(const struct run *run, char *why, size_t whysz)
{
	const struct vmd_inspect_result *r = &run->r;
	unsigned n = r->n_reasons < VMD_INSPECT_MAX_REASONS
	                     ? r->n_reasons
	                     : VMD_INSPECT_MAX_REASONS;

	if (!ends_within(r->backing_file, sizeof(r->backing_file)))
		return vmd_fuzz_broken(why, whysz, "flags %u: backing_file not "
		              "NUL-terminated", run->flags);
	if (!ends_within(r->backing_format, sizeof(r->backing_format)))
		return vmd_fuzz_broken(why, whysz, "flags %u: backing_format not "
		              "NUL-terminated", run->flags);
	for (unsigned i = 0; i < n; i++) {
		const struct vmd_inspect_reason *reason = &r->reasons[i];

		if (!ends_within(reason->code, sizeof(reason->code)))
			return vmd_fuzz_broken(why, whysz, "flags %u: reason %u: code "
			              "not NUL-terminated", run->flags, i);
		if (!ends_within(reason->text, sizeof(reason->text)))
			return vmd_fuzz_broken(why, whysz, "flags %u: reason %u: text "
			              "not NUL-terminated", run->flags, i);
		if (reason->code[0] == '\0')
			return vmd_fuzz_broken(why, whysz, "flags %u: reason %u: empty "
			              "code", run->flags, i);
		if (!printable_line(reason->text))
			return vmd_fuzz_broken(why, whysz, "flags %u: reason %u (%s): "
			              "text has a control character",
			              run->flags, i, reason->code);
	}
	return true;
}

/* What must hold of one result. */
static bool check_run(const struct run *run, uint64_t size,
                      const struct vmd_inspect_limits *lim, char *why,
                      size_t whysz)
{
	const struct vmd_inspect_result *r = &run->r;
	const unsigned all = (1u << VMD_IMG_FORMAT_COUNT) - 1;

	if (run->ret > 0)
		return vmd_fuzz_broken(why, whysz, "flags %u: returned %d", run->flags,
		              run->ret);
	if (run->ret < 0 && (int)run->err.code != run->ret)
		return vmd_fuzz_broken(why, whysz, "flags %u: returned %d with err.code "
		              "%d", run->flags, run->ret, (int)run->err.code);
	if (run->ret == 0 && run->err.code != VMD_OK)
		return vmd_fuzz_broken(why, whysz, "flags %u: returned 0 with err.code "
		              "%d", run->flags, (int)run->err.code);
	if (!ends_within(run->err.msg, sizeof(run->err.msg)) ||
	    !ends_within(run->err.detail, sizeof(run->err.detail)))
		return vmd_fuzz_broken(why, whysz, "flags %u: error text not "
		              "NUL-terminated", run->flags);
	if (run->ret < 0 && run->err.msg[0] == '\0')
		return vmd_fuzz_broken(why, whysz, "flags %u: returned %d without an "
		              "error message", run->flags, run->ret);
	if (r->n_reasons > VMD_INSPECT_MAX_REASONS)
		return vmd_fuzz_broken(why, whysz, "flags %u: n_reasons %u > %d",
		              run->flags, r->n_reasons,
		              VMD_INSPECT_MAX_REASONS);
	if (r->safe != (r->n_reasons == 0))
		return vmd_fuzz_broken(why, whysz, "flags %u: safe is %d with %u "
		              "reasons", run->flags, (int)r->safe,
		              r->n_reasons);
	if ((unsigned)r->format >= VMD_IMG_FORMAT_COUNT)
		return vmd_fuzz_broken(why, whysz, "flags %u: format %u out of range",
		              run->flags, (unsigned)r->format);
	if (r->matched & ~all)
		return vmd_fuzz_broken(why, whysz, "flags %u: matched 0x%x has bits "
		              "past the last format", run->flags, r->matched);
	if (!check_strings(run, why, whysz))
		return false;
	if (run->ret < 0)
		return true;

	if (r->file_size != size)
		return vmd_fuzz_broken(why, whysz, "flags %u: file_size %llu for %llu "
		              "bytes", run->flags,
		              (unsigned long long)r->file_size,
		              (unsigned long long)size);
	if (r->format != VMD_IMG_RAW && !(r->matched & (1u << r->format)))
		return vmd_fuzz_broken(why, whysz, "flags %u: format %s is not among "
		              "the matched (0x%x)", run->flags,
		              vmd_image_format_name(r->format), r->matched);
	if (vmd_image_format_is_raw(r->format) &&
	    r->virtual_size != r->file_size)
		return vmd_fuzz_broken(why, whysz, "flags %u: %s image with virtual size "
		              "%llu != file size %llu", run->flags,
		              vmd_image_format_name(r->format),
		              (unsigned long long)r->virtual_size,
		              (unsigned long long)r->file_size);
	if (r->safe && r->virtual_size > lim->max_virtual_size)
		return vmd_fuzz_broken(why, whysz, "flags %u: safe with virtual size "
		              "%llu above the limit", run->flags,
		              (unsigned long long)r->virtual_size);
	if (r->safe && !(run->flags & VMD_INSPECT_ALLOW_BACKING) &&
	    r->backing_file[0] != '\0')
		return vmd_fuzz_broken(why, whysz, "flags %u: safe with a backing file "
		              "while backing files are not allowed",
		              run->flags);
	return true;
}

/* What must hold between the results with and without a flag. */
static bool check_pair(const struct run *plain, const struct run *backing,
                       char *why, size_t whysz)
{
	if (plain->ret != 0 || backing->ret != 0)
		return true;
	if (plain->r.format != backing->r.format)
		return vmd_fuzz_broken(why, whysz, "format %s without flags, %s with "
		              "ALLOW_BACKING",
		              vmd_image_format_name(plain->r.format),
		              vmd_image_format_name(backing->r.format));
	if (plain->r.matched != backing->r.matched)
		return vmd_fuzz_broken(why, whysz, "matched 0x%x without flags, 0x%x "
		              "with ALLOW_BACKING", plain->r.matched,
		              backing->r.matched);
	if (plain->r.safe && !backing->r.safe)
		return vmd_fuzz_broken(why, whysz, "safe without flags but refused with "
		              "ALLOW_BACKING (%s)", backing->r.reasons[0].code);
	return true;
}

bool vmd_fuzz_inspect_check(const uint8_t *data, size_t size, char *why,
                            size_t whysz)
{
	struct vmd_inspect_limits lim;
	struct run runs[2];
	struct input in;

	vmd_fuzz_start("fuzz_inspect", why, whysz);
	vmd_inspect_limits_default(&lim);
	decode(data, size, &in);
	runs[0].flags = 0;
	runs[1].flags = VMD_INSPECT_ALLOW_BACKING;
	for (size_t i = 0; i < 2; i++) {
		/* Only the qcow2 parser reads VMD_INSPECT_ALLOW_BACKING (the
		 * flags never change `matched`, which check_pair asserts): for
		 * an input that is no qcow2 candidate the second run would
		 * repeat the first, at half the fuzzer's speed. */
		if (i == 1 && runs[0].ret == 0 &&
		    !(runs[0].r.matched & (1u << VMD_IMG_QCOW2)))
			return true;
		vmd_error_clear(&runs[i].err);
		if (in.sparse)
			runs[i].ret = vmd_inspect_sparse(
			        in.chunks, in.n, in.vsize, &lim, runs[i].flags,
			        &runs[i].r, &runs[i].err);
		else
			runs[i].ret = vmd_inspect_buffer(
			        data, size, &lim, runs[i].flags, &runs[i].r,
			        &runs[i].err);
		if (!check_run(&runs[i], in.sparse ? in.vsize : size, &lim,
		               why, whysz))
			return false;
	}
	return check_pair(&runs[0], &runs[1], why, whysz);
}

#ifdef VMD_FUZZER
VMD_FUZZ_ENTRY(inspect)
#endif
