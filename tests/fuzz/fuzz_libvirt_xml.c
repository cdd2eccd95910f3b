/*
 * Fuzz target of the libvirt XML renderer (vmd_xml_render_disk,
 * lib/libvirt_xml.c). The input describes a source and the caller's
 * options: a first field of control bytes, then NUL-separated strings:
 *
 *   ctl  byte 0: source type (mod 3); byte 1: bit 0 preallocated, bits
 *        1..6 leave bus, cache, discard, qos, filesystem target, dev NULL;
 *        bytes 2..3: boot order (little-endian)
 *   then driver_type, path, protocol, name, hosts[0..7], auth_user,
 *        auth_secret_uuid, encryption_secret_uuid, dev, bus, cache,
 *        discard, qos, filesystem_target (missing ones are "")
 *
 * Rules checked on every input:
 *
 *   - the error contract (fuzz_util.h); a refusal returns no XML;
 *   - accepted options render one well-formed XML element: tags nest and
 *     close, every attribute value is quoted and holds no '<', no bare '&'
 *     and not its own quote, text holds no '<' or bare '&', every byte is
 *     valid UTF-8 and no control character other than tab, CR and LF
 *     appears anywhere (XML 1.0 cannot carry them, even escaped).
 *
 * Built as the libFuzzer target with -DVMD_FUZZER (meson.build here).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmdisk/backend.h>

#include "libvirt_xml.h"

#include "fuzz_libvirt_xml.h"

#define NFIELDS (4 + VMD_XML_MAX_HOSTS + 3 + 6)
#define DEPTH_MAX 16

static bool is_name(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '-' || c == ':';
}

/* At s: one of the five entities XML predefines (or a character one). */
static size_t entity(const char *s)
{
	static const char *const ents[] = {"&amp;", "&lt;", "&gt;", "&apos;",
	                                   "&quot;"};

	for (size_t i = 0; i < 5; i++)
		if (strncmp(s, ents[i], strlen(ents[i])) == 0)
			return strlen(ents[i]);
	return 0;
}

/* Valid UTF-8 with no control character but tab, LF, CR. */
static bool chars_ok(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned char c = s[i];
		size_t k;
		unsigned cp;

		if (c < 0x80) {
			if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') ||
			    c == 0x7f)
				return false;
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			k = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			k = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			k = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		for (size_t j = 1; j <= k; j++) {
			if (i + j >= n || (s[i + j] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + j] & 0x3f);
		}
		if ((k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ||
		    (cp >= 0x80 && cp < 0xa0) || cp == 0xfffe || cp == 0xffff)
			return false;
		i += k + 1;
	}
	return true;
}

/* A small checker of the XML subset the renderer writes. */
static bool well_formed(const char *x, char *why, size_t whysz)
{
	const char *stack[DEPTH_MAX];
	size_t stack_len[DEPTH_MAX];
	size_t depth = 0, roots = 0;
	const char *p = x;

	if (!chars_ok((const unsigned char *)x, strlen(x)))
		return vmd_fuzz_broken(why, whysz, "bad character in the XML");
	while (*p) {
		if (*p == '&') {
			size_t e = entity(p);

			if (!e)
				return vmd_fuzz_broken(why, whysz, "bare & in text");
			p += e;
			continue;
		}
		if (*p != '<') {
			if (*p == '>')
				return vmd_fuzz_broken(why, whysz, "> in text");
			if (depth == 0 && *p != '\n')
				return vmd_fuzz_broken(why, whysz,
				                       "text outside the element");
			p++;
			continue;
		}
		p++;
		if (*p == '/') {
			const char *name = ++p;

			while (is_name(*p))
				p++;
			if (depth == 0 || (size_t)(p - name) != stack_len[depth - 1] ||
			    memcmp(name, stack[depth - 1], (size_t)(p - name)) != 0 ||
			    *p != '>')
				return vmd_fuzz_broken(why, whysz, "bad end tag");
			depth--;
			p++;
			continue;
		}
		const char *name = p;

		while (is_name(*p))
			p++;
		if (p == name)
			return vmd_fuzz_broken(why, whysz, "bad tag name");
		if (depth == 0 && roots++ > 0)
			return vmd_fuzz_broken(why, whysz, "two root elements");
		for (;;) {
			char q;

			if (*p == '/' && p[1] == '>') {
				p += 2;
				break;
			}
			if (*p == '>') {
				if (depth == DEPTH_MAX)
					return vmd_fuzz_broken(why, whysz, "too deep");
				stack[depth] = name;
				stack_len[depth++] = 0;
				for (const char *n = name; is_name(*n); n++)
					stack_len[depth - 1]++;
				p++;
				break;
			}
			if (*p != ' ')
				return vmd_fuzz_broken(why, whysz, "junk in a tag");
			p++;
			if (!is_name(*p))
				return vmd_fuzz_broken(why, whysz, "bad attribute");
			while (is_name(*p))
				p++;
			if (*p++ != '=' || (*p != '\'' && *p != '"'))
				return vmd_fuzz_broken(why, whysz, "unquoted value");
			q = *p++;
			while (*p && *p != q) {
				if (*p == '<')
					return vmd_fuzz_broken(why, whysz,
					                       "< in a value");
				if (*p == '&' && !entity(p))
					return vmd_fuzz_broken(why, whysz,
					                       "bare & in a value");
				p++;
			}
			if (*p++ != q)
				return vmd_fuzz_broken(why, whysz,
				                       "unterminated value");
		}
	}
	if (depth != 0 || roots != 1)
		return vmd_fuzz_broken(why, whysz, "unbalanced XML");
	return true;
}

/* The next NUL-terminated field of [*p, end), "" once none is left. */
static const char *next(const char **p, const char *end)
{
	const char *s = *p;
	const char *nul;

	if (s >= end)
		return "";
	nul = memchr(s, '\0', (size_t)(end - s));
	*p = nul ? nul + 1 : end;
	return s;
}

static void put(char *dst, size_t dstsz, const char *s)
{
	snprintf(dst, dstsz, "%s", s);
}

VMD_FUZZ_DECLARE_CHECK(libvirt_xml)
{
	static struct vmd_xml_source src;
	struct vmd_xml_opts o = {0};
	struct vmd_error err = VMD_ERROR_INIT;
	const char *f[NFIELDS + 1];
	const char *ctl, *p, *end;
	char *copy, *xml = (char *)&xml;
	unsigned char flags;
	size_t ctl_len;
	bool ok = true;
	int rc;

	vmd_fuzz_start("fuzz_libvirt_xml", why, whysz);
	/* A NUL after the last byte: every field is a C string. */
	copy = malloc(size + 1);
	if (!copy)
		return true;
	if (size)
		memcpy(copy, data, size);
	copy[size] = '\0';
	p = copy;
	end = copy + size;
	ctl = next(&p, end);
	ctl_len = strlen(ctl);
	for (size_t i = 0; i < NFIELDS; i++)
		f[i] = next(&p, end);

	memset(&src, 0, sizeof(src));
	src.type = (enum vmd_xml_source_type)(ctl_len > 0 ? (unsigned char)ctl[0] % 3
	                                                  : 0);
	flags = ctl_len > 1 ? (unsigned char)ctl[1] : 0;
	src.preallocated = flags & 1;
	put(src.driver_type, sizeof(src.driver_type), f[0]);
	put(src.path, sizeof(src.path), f[1]);
	put(src.protocol, sizeof(src.protocol), f[2]);
	put(src.name, sizeof(src.name), f[3]);
	for (size_t i = 0; i < VMD_XML_MAX_HOSTS; i++)
		put(src.hosts[i], sizeof(src.hosts[i]), f[4 + i]);
	put(src.auth_user, sizeof(src.auth_user), f[4 + VMD_XML_MAX_HOSTS]);
	put(src.auth_secret_uuid, sizeof(src.auth_secret_uuid),
	    f[5 + VMD_XML_MAX_HOSTS]);
	put(src.encryption_secret_uuid, sizeof(src.encryption_secret_uuid),
	    f[6 + VMD_XML_MAX_HOSTS]);
	o.dev = flags & 0x40 ? NULL : f[7 + VMD_XML_MAX_HOSTS];
	o.bus = flags & 0x02 ? NULL : f[8 + VMD_XML_MAX_HOSTS];
	o.cache = flags & 0x04 ? NULL : f[9 + VMD_XML_MAX_HOSTS];
	o.discard = flags & 0x08 ? NULL : f[10 + VMD_XML_MAX_HOSTS];
	o.qos = flags & 0x10 ? NULL : f[11 + VMD_XML_MAX_HOSTS];
	o.filesystem_target = flags & 0x20 ? NULL : f[12 + VMD_XML_MAX_HOSTS];
	/* "" means "not given" for these, as the CLI passes them. */
	if (o.bus && !*o.bus)
		o.bus = NULL;
	if (o.cache && !*o.cache)
		o.cache = NULL;
	if (o.discard && !*o.discard)
		o.discard = NULL;
	if (o.filesystem_target && !*o.filesystem_target)
		o.filesystem_target = NULL;
	if (ctl_len > 3)
		o.boot_order = (unsigned char)ctl[2] | (unsigned)(unsigned char)ctl[3] << 8;

	rc = vmd_xml_render_disk(&src, &o, &xml, &err);
	if (!vmd_fuzz_error_contract(rc, &err, why, whysz))
		ok = false;
	else if (rc < 0 && xml)
		ok = vmd_fuzz_broken(why, whysz, "refused, but returned XML");
	else if (rc == 0 && !xml)
		ok = vmd_fuzz_broken(why, whysz, "accepted, but no XML");
	else if (rc == 0)
		ok = well_formed(xml, why, whysz);
	if (rc == 0)
		free(xml);
	free(copy);
	return ok;
}

#ifdef VMD_FUZZER
VMD_FUZZ_ENTRY(libvirt_xml)
#endif
