/*
 * Fuzz target of the native qcow2 writer (vmd_qcow2_write_new and
 * vmd_qcow2_grow, lib/qcow2.c), round-tripped through the one header
 * decoder and the inspector. The input picks the parameters:
 *
 *   byte 0       cluster bits: 9 + b % 13 (9..21) when bit 5 is set,
 *                else 9 + b % 4 (9..12); b itself when b's top bit is set
 *                (out of range: must be refused)
 *   bytes 1..8   virtual size, big-endian; when byte 0 bit 6 is set it is
 *                reduced to at most 1 GiB (most inputs must then succeed)
 *   bytes 9..16  the size to grow to, the same way
 *   byte 17      backing format: index into a list ("raw", "qcow2", "",
 *                a 31- and a 32-byte name, ...), or none (no backing)
 *   bytes 18..   the backing file name (up to the first NUL)
 *
 * What must hold:
 *  - the writer returns 0 or VMD_E_INVAL (the error contract as
 *    everywhere: err.code equals it, with a message); 0 whenever the
 *    parameters are plainly fine (cluster bits 9..21, a positive multiple
 *    of 512 up to 256 MiB, a name and format that fit cluster 0);
 *  - what it wrote decodes with no defect, as version 3 with the size,
 *    cluster bits, backing name and format asked for; the inspector calls
 *    it qcow2 and safe when the chain is allowed, and refuses it with
 *    qcow2-backing-file, and nothing else, when not (but for
 *    ambiguous-format: a name can carry another format's magic);
 *  - growing returns 0, or an error without changing the header; after 0
 *    the header decodes with the new size (and the rest unchanged).
 *
 * The image is written into one memfd per process, truncated before each
 * input: no file on disk, thousands of inputs a second.
 *
 * vmd_fuzz_qcow2_write_check() is compiled into the corpus replay test too
 * (replay_corpus.c); LLVMFuzzerTestOneInput only into the fuzzer, built with
 * -DVMD_FUZZER (see meson.build and README.md here).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <vmdisk/error.h>
#include <vmdisk/inspect.h>
#include <vmdisk/log.h>

#include "qcow2.h"

#include "fuzz_qcow2_write.h"

#define PLAIN_MAX_SIZE (256ull << 20)
#define REDUCED_MAX_SIZE (1ull << 30)
#define NAME_MAX_INPUT 1100u

static const char *const formats[] = {
	"raw", "qcow2", "", "vmdk", "0123456789012345678901234567890",
	"01234567890123456789012345678901", "raw\nx",
};

static uint64_t be64_at(const uint8_t *d, size_t n, size_t off)
{
	uint64_t v = 0;

	for (size_t i = 0; i < 8; i++)
		v = v << 8 | (off + i < n ? d[off + i] : 0);
	return v;
}

static bool contract(const char *call, int rc, const struct vmd_error *err,
                     char *why, size_t whysz)
{
	if ((int)err->code != rc || (rc < 0 && err->msg[0] == '\0'))
		return vmd_fuzz_broken(why, whysz, "%s: returned %d with code "
		                       "%d '%s'", call, rc, (int)err->code,
		                       err->msg);
	return true;
}

/* The image in fd decodes to what was asked for. */
static bool decodes_as(int fd, uint64_t size, uint32_t cb, const char *backing,
                       const char *fmt, struct vmd_qcow2_header *h,
                       char *why, size_t whysz)
{
	struct vmd_error err;
	int rc;

	vmd_error_clear(&err);
	rc = vmd_qcow2_read_header(fd, h, &err);
	if (rc != 0)
		return vmd_fuzz_broken(why, whysz, "our image does not decode: "
		                       "%s (%s)", err.msg, err.detail);
	if (h->version != 3 || h->size != size || h->cluster_bits != cb)
		return vmd_fuzz_broken(why, whysz, "decoded v%u, %llu bytes, "
		                       "cluster bits %u; wrote %llu, %u",
		                       h->version, (unsigned long long)h->size,
		                       h->cluster_bits,
		                       (unsigned long long)size, cb);
	if (strcmp(h->backing_file, backing ? backing : "") != 0 ||
	    strcmp(h->backing_format, backing ? fmt : "") != 0 ||
	    h->has_backing != (backing != NULL))
		return vmd_fuzz_broken(why, whysz, "backing '%s' (%s) decoded "
		                       "as '%s' (%s)", backing ? backing : "",
		                       backing ? fmt : "", h->backing_file,
		                       h->backing_format);
	return true;
}

/* A backing name may hold bytes another format's probe looks for (0x55aa
 * at 510 is an MBR): the inspector's ambiguity rule is not the writer's
 * business, so that one reason is set aside. */
static bool ambiguous(const struct vmd_inspect_result *r)
{
	for (unsigned i = 0; i < r->n_reasons; i++)
		if (strcmp(r->reasons[i].code, "ambiguous-format") == 0)
			return true;
	return false;
}

static bool inspected_as(int fd, bool has_backing, char *why, size_t whysz)
{
	struct vmd_inspect_limits lim;
	struct vmd_inspect_result r;
	struct vmd_error err;

	vmd_inspect_limits_default(&lim);
	lim.max_virtual_size = UINT64_MAX;
	lim.max_table_size = UINT64_MAX;
	for (int allow = 0; allow < 2; allow++) {
		unsigned others = 0;
		bool backing_reason = false, amb;

		vmd_error_clear(&err);
		if (vmd_inspect_fd(fd, &lim,
		                   allow ? VMD_INSPECT_ALLOW_BACKING : 0, &r,
		                   &err) != 0)
			return vmd_fuzz_broken(why, whysz, "inspect failed: %s",
			                       err.msg);
		amb = ambiguous(&r);
		if (!amb && r.format != VMD_IMG_QCOW2)
			return vmd_fuzz_broken(why, whysz, "inspected as %s",
			                       vmd_image_format_name(r.format));
		for (unsigned i = 0; i < r.n_reasons; i++) {
			if (strcmp(r.reasons[i].code, "qcow2-backing-file") == 0)
				backing_reason = true;
			else if (strcmp(r.reasons[i].code,
			                "ambiguous-format") != 0)
				others++;
		}
		if (others || backing_reason != (has_backing && !allow) ||
		    (r.safe && (amb || backing_reason)))
			return vmd_fuzz_broken(why, whysz, "inspected (allow %d) "
			                       "as safe %d with %u reasons, first "
			                       "%s: %s", allow, r.safe, r.n_reasons,
			                       r.n_reasons ? r.reasons[0].code : "",
			                       r.n_reasons ? r.reasons[0].text
			                                   : "");
	}
	return true;
}

static int image_fd(void)
{
	static int fd = -1;

	if (fd < 0)
		fd = memfd_create("vmdisk-fuzz-qcow2-write", MFD_CLOEXEC);
	if (fd >= 0 && ftruncate(fd, 0) < 0)
		return -1;
	return fd;
}

bool vmd_fuzz_qcow2_write_check(const uint8_t *data, size_t size, char *why,
                                size_t whysz)
{
	uint8_t b0 = size > 0 ? data[0] : 0;
	/* Mostly small clusters: a 2 MiB one costs far more to write and
	 * exercises nothing a 512-byte one does not. */
	uint32_t cb = (b0 & 0x80) ? b0 : 9u + b0 % ((b0 & 0x20) ? 13u : 4u);
	uint64_t vsize = be64_at(data, size, 1);
	uint64_t grow_to = be64_at(data, size, 9);
	size_t fi = size > 17 ? data[17] : 0xff;
	const char *fmt = fi < sizeof(formats) / sizeof(formats[0])
	                          ? formats[fi]
	                          : NULL;
	char backing[NAME_MAX_INPUT + 1];
	size_t blen = 0;
	struct vmd_qcow2_header h, h2;
	struct vmd_error err;
	bool plain;
	int fd, rc;

	vmd_fuzz_start("fuzz_qcow2_write", why, whysz);
	if (b0 & 0x40) {
		vsize %= REDUCED_MAX_SIZE + 1;
		grow_to %= REDUCED_MAX_SIZE + 1;
		vsize &= ~511ull;
		grow_to &= ~511ull;
	}
	while (size > 18 && 18 + blen < size && blen < NAME_MAX_INPUT &&
	       data[18 + blen] != 0) {
		backing[blen] = (char)data[18 + blen];
		blen++;
	}
	backing[blen] = '\0';
	if (!fmt)
		blen = 0;

	fd = image_fd();
	if (fd < 0)
		return vmd_fuzz_broken(why, whysz, "memfd: %s", strerror(errno));
	vmd_error_clear(&err);
	rc = vmd_qcow2_write_new(fd, vsize, cb, fmt ? backing : NULL, fmt,
	                         &err);
	if (!contract("vmd_qcow2_write_new", rc, &err, why, whysz))
		return false;
	if (rc != 0 && rc != VMD_E_INVAL)
		return vmd_fuzz_broken(why, whysz, "write_new returned %d (%s)",
		                       rc, err.msg);
	/* Plainly fine parameters must be taken. */
	plain = cb >= 9 && cb <= 21 && vsize > 0 && vsize % 512 == 0 &&
	        vsize <= PLAIN_MAX_SIZE &&
	        (!fmt || (blen > 0 && blen <= 1023 && fmt[0] &&
	                  strlen(fmt) <= 31 &&
	                  112 + 8 + 32 + 8 + blen <= (1ull << cb)));
	if (rc != 0 && plain)
		return vmd_fuzz_broken(why, whysz, "refused plain parameters: "
		                       "%s (%s)", err.msg, err.detail);
	if (rc != 0)
		return true;
	if (!decodes_as(fd, vsize, cb, fmt ? backing : NULL, fmt, &h, why,
	                whysz) ||
	    !inspected_as(fd, fmt != NULL, why, whysz))
		return false;

	vmd_error_clear(&err);
	rc = vmd_qcow2_grow(fd, grow_to, &err);
	if (!contract("vmd_qcow2_grow", rc, &err, why, whysz))
		return false;
	if (!decodes_as(fd, rc == 0 && grow_to > vsize ? grow_to : vsize, cb,
	                fmt ? backing : NULL, fmt, &h2, why, whysz))
		return false;
	if (h2.l1_table_offset != h.l1_table_offset ||
	    h2.refcount_table_offset != h.refcount_table_offset ||
	    h2.l1_size < h.l1_size)
		return vmd_fuzz_broken(why, whysz, "grow moved the tables");
	return inspected_as(fd, fmt != NULL, why, whysz);
}

#ifdef VMD_FUZZER
VMD_FUZZ_ENTRY(qcow2_write)
#endif
