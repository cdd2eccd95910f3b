/*
 * The strict http(s) URL check (see url.h). It lives in util, not with the
 * curl plumbing of lib/source/, because the configuration (lib/core/config.c)
 * checks its URLs with it and core may not include a source header.
 */
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "url.h"

static bool is_hex_digit(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
	       (c >= 'A' && c <= 'F');
}

static bool is_alnum_ascii(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	       (c >= 'A' && c <= 'Z');
}

static bool valid_port(const char *p, const char *end)
{
	unsigned long port = 0;

	if (p == end || end - p > 5)
		return false;
	for (; p < end; p++) {
		if (*p < '0' || *p > '9')
			return false;
		port = port * 10 + (unsigned long)(*p - '0');
	}
	return port >= 1 && port <= 65535;
}

bool vmd_url_valid(const char *url, bool allow_query)
{
	const char *p, *auth_end, *host_end;
	size_t len;

	if (!url)
		return false;
	len = strnlen(url, VMD_URL_MAX + 1);
	if (len == 0 || len > VMD_URL_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)url[i];

		if (c <= 0x20 || c >= 0x7f || strchr("\"<>\\^`{|}#", c))
			return false;
		if (c == '%' && !(is_hex_digit(url[i + 1]) &&
		                  is_hex_digit(url[i + 2])))
			return false;
	}
	if (strncmp(url, "http://", 7) == 0)
		p = url + 7;
	else if (strncmp(url, "https://", 8) == 0)
		p = url + 8;
	else
		return false;
	auth_end = p + strcspn(p, "/?");
	if (auth_end == p || memchr(p, '@', (size_t)(auth_end - p)))
		return false;
	if (p[0] == '[') {
		host_end = memchr(p, ']', (size_t)(auth_end - p));
		if (!host_end || host_end == p + 1)
			return false;
		for (const char *q = p + 1; q < host_end; q++)
			if (!is_hex_digit(*q) && *q != ':' && *q != '.')
				return false;
		host_end++;
	} else {
		host_end = p;
		while (host_end < auth_end && *host_end != ':')
			host_end++;
		if (host_end == p || !is_alnum_ascii(p[0]))
			return false;
		for (const char *q = p; q < host_end; q++)
			if (!is_alnum_ascii(*q) && *q != '-' && *q != '.')
				return false;
	}
	if (host_end < auth_end &&
	    (*host_end != ':' || !valid_port(host_end + 1, auth_end)))
		return false;
	if (!allow_query && strchr(auth_end, '?'))
		return false;
	return true;
}
