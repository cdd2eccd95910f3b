/*
 * The strict http(s) URL check shared by the configuration and the network
 * sources (lib/source/curl_common.h includes this header).
 */
#ifndef VMDISK_URL_H
#define VMDISK_URL_H

#include <stdbool.h>

#define VMD_URL_MAX 2048

/*
 * Strict http(s) URL check: lower-case "http://" or "https://", a host
 * (name, IPv4 or [IPv6]) with an optional port 1-65535, no userinfo, no
 * fragment, no blanks, control or non-ASCII characters, no characters RFC
 * 3986 leaves out ("<>\\^`{|} and '"'), every '%' followed by two hex
 * digits, at most VMD_URL_MAX bytes. A query ("?...") only if allow_query.
 */
bool vmd_url_valid(const char *url, bool allow_query);

#endif
