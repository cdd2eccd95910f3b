/*
 * Allow-lists and strict parsers (see include/vmdisk/validate.h).
 *
 * These are the gate between outside text (command line, config file, disk
 * records) and anything that becomes a path, a program argument or a size.
 * Character classes are spelled out by hand rather than with <ctype.h> so
 * that the answer never depends on the process locale.
 *
 * Error texts may quote the rejected value, but only a short, printable
 * ASCII one: the value came from outside and must not be able to flood or
 * forge a log line. With a NULL `err` a parser is a plain predicate and logs
 * nothing, so that callers probing a value (record.c, config.c) report the
 * failure once, in their own words.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <vmdisk/validate.h>

#include "cleanup.h"

#define ECHO_MAX 40

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alnum(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_hex(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static char to_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static bool ascii_case_equal(const char *a, const char *b)
{
	for (; *a && *b; a++, b++)
		if (to_lower(*a) != to_lower(*b))
			return false;
	return *a == *b;
}

/*
 * " 'value'" for an error text, "'first 40 chars...'" when longer, and ""
 * when the value holds anything but printable ASCII.
 */
static void echo_value(const char *s, char *buf, size_t bufsz)
{
	size_t len = 0;

	buf[0] = '\0';
	if (!s)
		return;
	for (const char *p = s; *p; p++, len++)
		if (*p < 0x20 || *p > 0x7e)
			return;
	if (len > ECHO_MAX)
		snprintf(buf, bufsz, " '%.*s...'", ECHO_MAX, s);
	else
		snprintf(buf, bufsz, " '%s'", s);
}

static int invalid(struct vmd_error *err, const char *what, const char *s,
                   const char *expected)
{
	char echo[ECHO_MAX + 8];
	char msg[VMD_ERROR_MSG_MAX];

	if (!err)
		return VMD_E_INVAL;
	echo_value(s, echo, sizeof(echo));
	snprintf(msg, sizeof(msg), "invalid %s%s", what, echo);
	return vmd_error_set(err, VMD_E_INVAL, msg, "%s%s: expected %s", what,
	                     echo, expected);
}

/* [A-Za-z0-9][A-Za-z0-9._-]{0,max-1} */
static bool valid_token(const char *s, size_t max)
{
	size_t i;

	if (!s || !is_alnum(s[0]))
		return false;
	for (i = 1; s[i]; i++) {
		if (i >= max)
			return false;
		if (!is_alnum(s[i]) && s[i] != '.' && s[i] != '_' &&
		    s[i] != '-')
			return false;
	}
	return true;
}

bool vmd_valid_uuid(const char *s)
{
	if (!s)
		return false;
	for (size_t i = 0; i < VMD_UUID_LEN; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash ? s[i] != '-' : !is_hex(s[i]))
			return false;
	}
	return s[VMD_UUID_LEN] == '\0';
}

bool vmd_valid_disk_name(const char *s)
{
	return valid_token(s, VMD_DISK_NAME_MAX);
}

bool vmd_valid_file_token(const char *s)
{
	return valid_token(s, 128);
}

/* Names are matched exactly: "RBD" is a typo to report, not an alias. */
struct name_entry {
	const char *name;
	int value;
};

static const struct name_entry backend_names[] = {
	{"default", VMD_BACKEND_DEFAULT}, {"flat", VMD_BACKEND_FLAT},
	{"raw", VMD_BACKEND_FLAT},        {"qcow2", VMD_BACKEND_QCOW2},
	{"lvm", VMD_BACKEND_LVM},         {"rbd", VMD_BACKEND_RBD},
	{"ploop", VMD_BACKEND_PLOOP},
};

static const struct name_entry format_names[] = {
	{"raw", VMD_FORMAT_RAW},
	{"qcow2", VMD_FORMAT_QCOW2},
	{"ploop", VMD_FORMAT_PLOOP},
};

static const struct name_entry variant_names[] = {
	{"expanded", VMD_PLOOP_EXPANDED},
	{"raw", VMD_PLOOP_RAW},
};

static bool lookup(const struct name_entry *tab, size_t n, const char *s,
                   int *out)
{
	if (!s)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(tab[i].name, s) == 0) {
			*out = tab[i].value;
			return true;
		}
	}
	return false;
}

/* The first entry with the value is its canonical name (so FLAT is "flat"). */
static const char *reverse_lookup(const struct name_entry *tab, size_t n,
                                  int value)
{
	for (size_t i = 0; i < n; i++)
		if (tab[i].value == value)
			return tab[i].name;
	return "unknown";
}


int vmd_parse_backend(const char *s, enum vmd_backend_kind *out,
                      struct vmd_error *err)
{
	int v;

	if (!out || !lookup(backend_names, ELEMENTSOF(backend_names), s, &v))
		return invalid(err, "backend", s,
		               "default, flat, raw, qcow2, lvm, rbd or ploop");
	*out = (enum vmd_backend_kind)v;
	return 0;
}

const char *vmd_backend_kind_name(enum vmd_backend_kind k)
{
	return reverse_lookup(backend_names, ELEMENTSOF(backend_names), (int)k);
}

int vmd_parse_format(const char *s, enum vmd_format *out, struct vmd_error *err)
{
	int v;

	if (!out || !lookup(format_names, ELEMENTSOF(format_names), s, &v))
		return invalid(err, "format", s, "raw, qcow2 or ploop");
	*out = (enum vmd_format)v;
	return 0;
}

const char *vmd_format_name(enum vmd_format f)
{
	return reverse_lookup(format_names, ELEMENTSOF(format_names), (int)f);
}

int vmd_parse_ploop_variant(const char *s, enum vmd_ploop_variant *out,
                            struct vmd_error *err)
{
	int v;

	if (!out || !lookup(variant_names, ELEMENTSOF(variant_names), s, &v))
		return invalid(err, "ploop variant", s, "expanded or raw");
	*out = (enum vmd_ploop_variant)v;
	return 0;
}

const char *vmd_ploop_variant_name(enum vmd_ploop_variant v)
{
	return reverse_lookup(variant_names, ELEMENTSOF(variant_names), (int)v);
}

static unsigned unit_shift(char c)
{
	switch (to_lower(c)) {
	case 'k': return 10;
	case 'm': return 20;
	case 'g': return 30;
	case 't': return 40;
	case 'p': return 50;
	}
	return 0;
}

int vmd_parse_size(const char *s, uint64_t *out, struct vmd_error *err)
{
	static const char expected[] =
		"digits with an optional unit K, M, G, T or P (powers of 1024)";
	const char *p = s;
	uint64_t v = 0;
	unsigned shift;

	/* Digits first: this alone rules out signs, blanks, "" and "G". */
	if (!out || !s || !is_digit(*p))
		return invalid(err, "size", s, expected);
	for (; is_digit(*p); p++) {
		unsigned d = (unsigned)(*p - '0');

		if (v > (UINT64_MAX - d) / 10)
			return invalid(err, "size", s, "at most 2^64-1 bytes");
		v = v * 10 + d;
	}
	shift = unit_shift(*p);
	if (shift) {
		p++;
		if (*p == 'i' || *p == 'I')
			p++;
	}
	if (*p == 'b' || *p == 'B')
		p++;
	if (*p != '\0')
		return invalid(err, "size", s, expected);
	if (shift && v > (UINT64_MAX >> shift))
		return invalid(err, "size", s, "at most 2^64-1 bytes");
	*out = v << shift;
	return 0;
}

int vmd_parse_bool(const char *s, bool *out, struct vmd_error *err)
{
	static const char expected[] = "true/false, yes/no, on/off or 1/0";
	static const char *const yes[] = {"true", "yes", "on", "1"};
	static const char *const no[] = {"false", "no", "off", "0"};

	if (!out || !s)
		return invalid(err, "boolean", s, expected);
	for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
		if (ascii_case_equal(s, yes[i])) {
			*out = true;
			return 0;
		}
		if (ascii_case_equal(s, no[i])) {
			*out = false;
			return 0;
		}
	}
	return invalid(err, "boolean", s, expected);
}
