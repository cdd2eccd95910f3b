/*
 * libvirt <disk> / <filesystem> rendering (see libvirt_xml.h).
 *
 * Options are checked against allow-lists first; only then is anything
 * written, through a struct vmd_buf whose attribute writer escapes
 * every value. Free-form values (paths, the RBD name and user) must be
 * text XML can carry at all: valid UTF-8 without control characters. Names a user gives (target dev, bus, cache mode, QoS keys)
 * are never escaped into the XML: a value outside its list is refused.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "libvirt_xml.h"

/* Text for an attribute value or element content, escaped. */
static void xb_escaped(struct vmd_buf *b, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&': vmd_buf_puts(b, "&amp;"); break;
		case '<': vmd_buf_puts(b, "&lt;"); break;
		case '>': vmd_buf_puts(b, "&gt;"); break;
		case '\'': vmd_buf_puts(b, "&apos;"); break;
		case '"': vmd_buf_puts(b, "&quot;"); break;
		default: vmd_buf_append(b, s, 1); break;
		}
	}
}

/* name='value' with a leading space. */
static void xb_attr(struct vmd_buf *b, const char *name, const char *value)
{
	vmd_buf_puts(b, " ");
	vmd_buf_puts(b, name);
	vmd_buf_puts(b, "='");
	xb_escaped(b, value);
	vmd_buf_puts(b, "'");
}

static bool in_list(const char *s, const char *const *list)
{
	for (size_t i = 0; s && list[i]; i++)
		if (strcmp(s, list[i]) == 0)
			return true;
	return false;
}

static const char *const buses[] = {"virtio", "scsi", "sata", "ide", NULL};
static const char *const caches[] = {"none", "writeback", "writethrough",
                                     "directsync", "unsafe", NULL};
static const char *const discards[] = {"unmap", "ignore", NULL};
static const char *const qos_keys[] = {
	"total_bytes_sec", "read_bytes_sec", "write_bytes_sec",
	"total_iops_sec", "read_iops_sec", "write_iops_sec",
	"total_bytes_sec_max", "read_bytes_sec_max", "write_bytes_sec_max",
	"total_iops_sec_max", "read_iops_sec_max", "write_iops_sec_max",
	"size_iops_sec", NULL};

/* vd[a-z]+, sd[a-z]+, hd[a-z]+: the prefix names the bus by default. */
static bool valid_dev(const char *dev)
{
	size_t n = dev ? strlen(dev) : 0;

	if (n < 3 || n > 6 || (strncmp(dev, "vd", 2) != 0 &&
	                       strncmp(dev, "sd", 2) != 0 &&
	                       strncmp(dev, "hd", 2) != 0))
		return false;
	for (size_t i = 2; i < n; i++)
		if (dev[i] < 'a' || dev[i] > 'z')
			return false;
	return true;
}

static const char *default_bus(const char *dev)
{
	return dev[0] == 'v' ? "virtio" : dev[0] == 'h' ? "ide" : "scsi";
}

/* sdb -> 1: the unit of a SCSI disk on controller 0. */
static unsigned scsi_unit(const char *dev)
{
	unsigned u = 0;

	/* Letters count in bijective base 26: sdz = 25, sdaa = 26. */
	for (const char *p = dev + 2; *p; p++)
		u = u * 26 + (unsigned)(*p - 'a') + 1;
	return u - 1;
}

/*
 * Text XML 1.0 can carry: valid UTF-8 (shortest form, no surrogates) with
 * no control character but tab, LF and CR. Escaping cannot help with the
 * rest (&#1; is not allowed either), so such a value is refused.
 */
static bool xml_text_ok(const char *str)
{
	const unsigned char *s = (const unsigned char *)str;

	while (*s) {
		unsigned c = *s, need, cp;

		if (c < 0x80) {
			if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') ||
			    c == 0x7f)
				return false;
			s++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			need = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			need = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			need = 3, cp = c & 0x07;
		else
			return false;
		for (unsigned i = 1; i <= need; i++) {
			if ((s[i] & 0xc0) != 0x80) /* also stops at the NUL */
				return false;
			cp = cp << 6 | (s[i] & 0x3fu);
		}
		if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ||
		    (cp >= 0x80 && cp < 0xa0) || cp == 0xfffe || cp == 0xffff)
			return false;
		s += need + 1;
	}
	return true;
}

static bool valid_uuid_or_empty(const char *s)
{
	return !s[0] || vmd_valid_uuid(s);
}

/* An absolute path no longer than a path can be (PATH_MAX, with its NUL):
 * the guest's mount point, only ever written XML-escaped. */
static bool valid_abs_path(const char *p)
{
	if (!p || p[0] != '/' || strlen(p) >= PATH_MAX || strstr(p, "/../") ||
	    strstr(p, "/./"))
		return false;
	for (; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

/* "k=v,k=v": keys from the list, values decimal, each key at most once. */
/* QEMU's THROTTLE_VALUE_MAX: the largest limit a guest starts with. */
#define QOS_VALUE_MAX 1000000000000000ull

static int render_qos(struct vmd_buf *b, const char *qos, struct vmd_error *err)
{
	char buf[512];
	char *save = NULL;
	const char *seen[32];
	size_t nseen = 0;

	if (!qos || !*qos)
		return 0;
	if (strlen(qos) >= sizeof(buf))
		return vmd_error_set(err, VMD_E_INVAL, "xml: --qos too long",
		                     "qos length");
	memcpy(buf, qos, strlen(qos) + 1);
	vmd_buf_puts(b, "  <iotune>\n");
	for (char *kv = strtok_r(buf, ",", &save); kv;
	     kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');
		size_t vlen;

		if (!eq)
			return vmd_error_set(err, VMD_E_INVAL,
			                     "xml: --qos takes key=value pairs",
			                     "no '='");
		*eq = '\0';
		vlen = strlen(eq + 1);
		if (!in_list(kv, qos_keys))
			return vmd_error_set(err, VMD_E_INVAL,
			                     "xml: unknown --qos key", "key");
		if (vlen == 0 || vlen > 19 ||
		    strspn(eq + 1, "0123456789") != vlen)
			return vmd_error_set(err, VMD_E_INVAL,
			                     "xml: --qos values are whole numbers",
			                     "value of %s", kv);
		/* QEMU refuses a throttle limit above 1e15 when the guest
		 * starts; refused here, where the caller sees which. */
		if (strtoull(eq + 1, NULL, 10) > QOS_VALUE_MAX)
			return vmd_error_set(err, VMD_E_INVAL,
			                     "xml: --qos value too large",
			                     "value of %s", kv);
		for (size_t i = 0; i < nseen; i++)
			if (strcmp(seen[i], kv) == 0)
				return vmd_error_set(err, VMD_E_INVAL,
				                     "xml: --qos key given twice",
				                     "%s", kv);
		if (nseen < 32)
			seen[nseen++] = kv;
		vmd_buf_puts(b, "    <");
		vmd_buf_puts(b, kv);
		vmd_buf_puts(b, ">");
		vmd_buf_puts(b, eq + 1);
		vmd_buf_puts(b, "</");
		vmd_buf_puts(b, kv);
		vmd_buf_puts(b, ">\n");
	}
	vmd_buf_puts(b, "  </iotune>\n");
	return 0;
}

/*
 * "name", "name:port", "[v6]" or "[v6]:port" into name and port (Ceph's
 * monitor port when none is given: libvirt's schema wants one for a DNS
 * name). False for anything else, so nothing odd reaches the XML.
 */
static bool split_host(const char *in, char host[64], char port[8])
{
	const char *end, *p;
	size_t n;

	if (in[0] == '[') {
		end = strchr(in, ']');
		if (!end || end == in + 1)
			return false;
		n = (size_t)(end - in - 1);
		if (strspn(in + 1, "0123456789abcdefABCDEF:.") != n)
			return false;
		memcpy(host, in + 1, n);
		p = end + 1;
	} else {
		n = strspn(in, "abcdefghijklmnopqrstuvwxyz"
		               "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-");
		if (n == 0 || in[0] == '-' || in[0] == '.')
			return false;
		memcpy(host, in, n);
		p = in + n;
	}
	if (n >= 64)
		return false;
	host[n] = '\0';
	if (*p == '\0') {
		snprintf(port, 8, "6789");
		return true;
	}
	if (*p != ':' || p[1] < '1' || p[1] > '9' || strlen(p + 1) > 5 ||
	    strspn(p + 1, "0123456789") != strlen(p + 1) ||
	    strtoul(p + 1, NULL, 10) > 65535)
		return false;
	snprintf(port, 8, "%s", p + 1);
	return true;
}

static int check_source(const struct vmd_xml_source *src,
                        struct vmd_error *err)
{
	static const char *const drivers[] = {"raw", "qcow2", "ploop", NULL};

	if (!in_list(src->driver_type, drivers))
		return vmd_error_set(err, VMD_E_INVAL, "xml: unknown disk format",
		                     "driver type %.16s", src->driver_type);
	if (!xml_text_ok(src->path) || !xml_text_ok(src->name) ||
	    !xml_text_ok(src->auth_user))
		return vmd_error_set(err, VMD_E_INVAL,
		                     "xml: a name of the disk cannot be written "
		                     "in XML", "control byte or not UTF-8");
	if (src->type != VMD_XML_NETWORK)
		return 0;
	if (strcmp(src->protocol, "rbd") != 0 || !src->name[0])
		return vmd_error_set(err, VMD_E_INVAL,
		                     "xml: unknown network disk", "protocol");
	for (size_t i = 0; i < VMD_XML_MAX_HOSTS && src->hosts[i][0]; i++) {
		char host[64], port[8];

		if (!split_host(src->hosts[i], host, port))
			return vmd_error_set(err, VMD_E_INVAL,
			                     "xml: bad monitor address",
			                     "host %zu", i);
	}
	return 0;
}

static int check_opts(const struct vmd_xml_source *src,
                      const struct vmd_xml_opts *o, struct vmd_error *err)
{
	if (!o->filesystem_target && !valid_dev(o->dev))
		return vmd_error_set(err, VMD_E_INVAL,
		                     "xml: target must be vd*, sd* or hd*",
		                     "bad target dev");
	if (o->bus && !in_list(o->bus, buses))
		return vmd_error_set(err, VMD_E_INVAL,
		                     "xml: bus must be virtio, scsi, sata or ide",
		                     "bad bus");
	if (o->cache && !in_list(o->cache, caches))
		return vmd_error_set(err, VMD_E_INVAL, "xml: unknown cache mode",
		                     "bad cache");
	if (o->discard && !in_list(o->discard, discards))
		return vmd_error_set(err, VMD_E_INVAL,
		                     "xml: discard must be unmap or ignore",
		                     "bad discard");
	if (o->filesystem_target && (!valid_abs_path(o->filesystem_target) ||
	                             !xml_text_ok(o->filesystem_target)))
		return vmd_error_set(err, VMD_E_INVAL,
		                     "xml: filesystem target must be an absolute "
		                     "path", "bad target dir");
	if (!valid_uuid_or_empty(src->auth_secret_uuid) ||
	    !valid_uuid_or_empty(src->encryption_secret_uuid))
		return vmd_error_set(err, VMD_E_INVAL,
		                     "xml: secret must be a UUID", "bad uuid");
	return 0;
}

/* Nova's libvirt_fs_info: the <filesystem> form of a disk image. */
static void render_filesystem(struct vmd_buf *b, const struct vmd_xml_source *src,
                              const struct vmd_xml_opts *o)
{
	const char *driver = strcmp(src->driver_type, "qcow2") == 0 ? "nbd"
	                     : strcmp(src->driver_type, "ploop") == 0
	                             ? "ploop"
	                             : "loop";

	vmd_buf_puts(b, "<filesystem type='file'>\n  <driver");
	xb_attr(b, "type", driver);
	xb_attr(b, "format", strcmp(driver, "ploop") == 0 ? "ploop"
	                                                  : src->driver_type);
	vmd_buf_puts(b, "/>\n  <source");
	xb_attr(b, "file", src->path);
	vmd_buf_puts(b, "/>\n  <target");
	xb_attr(b, "dir", o->filesystem_target);
	vmd_buf_puts(b, "/>\n</filesystem>\n");
}

static int finish(struct vmd_buf *b, char **xml_out, struct vmd_error *err)
{
	if (b->failed)
		return vmd_error_set(err, VMD_E_NOMEM, "xml: out of memory",
		                     "xml buffer");
	*xml_out = TAKE_PTR(b->data);
	return 0;
}

int vmd_xml_render_disk(const struct vmd_xml_source *src,
                        const struct vmd_xml_opts *o, char **xml_out,
                        struct vmd_error *err)
{
	_cleanup_(vmd_buf_free) struct vmd_buf b = VMD_BUF_INIT;
	const char *bus, *cache;
	char num[32];
	int rc = check_opts(src, o, err);

	*xml_out = NULL;
	if (rc == 0)
		rc = check_source(src, err);
	if (rc < 0)
		return rc;
	if (o->filesystem_target) {
		render_filesystem(&b, src, o);
		return finish(&b, xml_out, err);
	}
	bus = o->bus ? o->bus : default_bus(o->dev);
	cache = o->cache ? o->cache : "none";
	vmd_buf_puts(&b, "<disk");
	xb_attr(&b, "type", src->type == VMD_XML_FILE    ? "file"
	                    : src->type == VMD_XML_BLOCK ? "block"
	                                                 : "network");
	xb_attr(&b, "device", "disk");
	vmd_buf_puts(&b, ">\n  <driver");
	xb_attr(&b, "name", "qemu");
	xb_attr(&b, "type", src->driver_type);
	xb_attr(&b, "cache", cache);
	if (o->discard)
		xb_attr(&b, "discard", o->discard);
	/* Native AIO needs the page cache out of the way. */
	if (src->preallocated && (strcmp(cache, "none") == 0 ||
	                          strcmp(cache, "directsync") == 0))
		xb_attr(&b, "io", "native");
	vmd_buf_puts(&b, "/>\n  <source");
	if (src->type == VMD_XML_FILE) {
		xb_attr(&b, "file", src->path);
		vmd_buf_puts(&b, "/>\n");
	} else if (src->type == VMD_XML_BLOCK) {
		xb_attr(&b, "dev", src->path);
		vmd_buf_puts(&b, "/>\n");
	} else {
		xb_attr(&b, "protocol", src->protocol);
		xb_attr(&b, "name", src->name);
		vmd_buf_puts(&b, ">\n");
		for (size_t i = 0; i < VMD_XML_MAX_HOSTS && src->hosts[i][0]; i++) {
			char host[64], port[8];

			split_host(src->hosts[i], host, port);
			vmd_buf_puts(&b, "    <host");
			xb_attr(&b, "name", host);
			xb_attr(&b, "port", port);
			vmd_buf_puts(&b, "/>\n");
		}
		vmd_buf_puts(&b, "  </source>\n");
		if (src->auth_user[0]) {
			vmd_buf_puts(&b, "  <auth");
			xb_attr(&b, "username", src->auth_user);
			vmd_buf_puts(&b, ">\n    <secret");
			xb_attr(&b, "type", "ceph");
			if (src->auth_secret_uuid[0])
				xb_attr(&b, "uuid", src->auth_secret_uuid);
			vmd_buf_puts(&b, "/>\n  </auth>\n");
		}
	}
	vmd_buf_puts(&b, "  <target");
	xb_attr(&b, "dev", o->dev);
	xb_attr(&b, "bus", bus);
	vmd_buf_puts(&b, "/>\n");
	rc = render_qos(&b, o->qos, err);
	if (rc < 0)
		return rc;
	if (o->boot_order) {
		snprintf(num, sizeof(num), "%u", o->boot_order);
		vmd_buf_puts(&b, "  <boot");
		xb_attr(&b, "order", num);
		vmd_buf_puts(&b, "/>\n");
	}
	if (src->encryption_secret_uuid[0]) {
		vmd_buf_puts(&b, "  <encryption format='luks'>\n    <secret");
		xb_attr(&b, "type", "passphrase");
		xb_attr(&b, "uuid", src->encryption_secret_uuid);
		vmd_buf_puts(&b, "/>\n  </encryption>\n");
	}
	if (strcmp(bus, "scsi") == 0) {
		snprintf(num, sizeof(num), "%u", scsi_unit(o->dev));
		vmd_buf_puts(&b, "  <address type='drive' controller='0' bus='0' "
		            "target='0'");
		xb_attr(&b, "unit", num);
		vmd_buf_puts(&b, "/>\n");
	}
	vmd_buf_puts(&b, "</disk>\n");
	return finish(&b, xml_out, err);
}
