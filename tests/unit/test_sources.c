/*
 * The parts of the http and glance sources that need no server: the strict
 * URL check, the Glance image record (records a real Glance would not give),
 * and their configuration keys. The sources against real servers are
 * tests/suite/http/run.sh (nginx) and tests/suite/glance/run.sh (Glance).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <vmdisk/config.h>
#include <vmdisk/log.h>

#include "curl_common.h"
#include "helpers.h"
#include "source.h"

#define ID "3c3e6d7a-2b0b-4f57-9a39-0e0f4c1d2a11"
#define SHA512 \
	"da9f1a2549d3a8d6dc11e8148e5f05a10326fe7fe16a93f5539cdfcddac397b9" \
	"aab8da6b303ac733ef41778517bc496c659357e3428421fa947fb29139a3ff16"
#define MD5 "3be4aee5230399e130e4690a40422188"

static int setup(void **state)
{
	(void)state;
	vmd_log_setup(VMD_LOG_TO_NONE, VMD_LOG_ERROR, "test");
	return 0;
}

static void url_check(void **state)
{
	static const char *const good[] = {
		"http://example.org/a.img",
		"https://127.0.0.1:8443/images/x.qcow2",
		"http://[::1]:80/x",
		"https://a-b.example.org/p%20q",
		"http://host",
	};
	static const char *const bad[] = {
		"", "ftp://example.org/x", "HTTP://example.org/x",
		"http://", "http:///x", "http://user@host/x",
		"http://user:pw@host/x", "http://host/a b", "http://host/a#frag",
		"http://host:0/x", "http://host:65536/x", "http://host:/x",
		"http://host/%zz", "http://-host/x", "http://ho_st/x",
		"http://host/\x7f", "http://host/<x>", "file:///etc/passwd",
		"http://[]/x", "http://[::1/x",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_true(vmd_url_valid(good[i], true));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (vmd_url_valid(bad[i], true))
			fail_msg("accepted: %s", bad[i]);
	}
	assert_true(vmd_url_valid("http://host/x?sig=abc", true));
	assert_false(vmd_url_valid("http://host/x?sig=abc", false));
	assert_false(vmd_url_valid(NULL, true));
}

static void url_too_long(void **state)
{
	char url[VMD_URL_MAX + 2];

	(void)state;
	memset(url, 'a', sizeof(url));
	memcpy(url, "http://h/", 9);
	url[VMD_URL_MAX] = '\0';
	assert_true(vmd_url_valid(url, true));
	url[VMD_URL_MAX] = 'a';
	url[VMD_URL_MAX + 1] = '\0';
	assert_false(vmd_url_valid(url, true));
}

/* What shown(in) writes into an out of outsz bytes is want. */
static void assert_shown(void (*shown)(const char *, char *, size_t),
                         const char *in, size_t outsz, const char *want)
{
	char out[64];

	assert_true(outsz <= sizeof(out));
	shown(in, out, outsz);
	assert_string_equal(out, want);
}

static void url_for_log_drops_query(void **state)
{
	(void)state;
	assert_shown(vmd_url_for_log, "https://h/x.img?X-Signature=secret", 64,
	             "https://h/x.img");
	assert_shown(vmd_url_for_log, "https://h/a-rather-long-path", 10,
	             "https://h");
	/* Issue 14, defect 12: userinfo goes too, and a source id is shown
	 * the same way wherever it is logged or stored. */
	assert_shown(vmd_url_for_log,
	             "https://user:pw@h:8443/x.img?X-Amz-Signature=s#f", 64,
	             "https://h:8443/x.img");
	assert_shown(vmd_url_for_log, "http://a@b@h/x", 64, "http://h/x");
	assert_shown(vmd_url_for_log, "https://u:p@h", 6, "https");
	assert_shown(vmd_source_id_for_log,
	             "https://h/x.img?X-Amz-Signature=s3cr3t", 64,
	             "https://h/x.img");
	/* A local path (a '?' in a file name is no query) and a Glance id
	 * are shown whole. */
	assert_shown(vmd_source_id_for_log, "/srv/images/a?b.img", 64,
	             "/srv/images/a?b.img");
	assert_shown(vmd_source_id_for_log, "glance:" ID, 64, "glance:" ID);
}

/* A record as Glance gives it, with fields replaced by the arguments
 * (NULL leaves the field out). */
static int parse(const char *status, const char *format, const char *size,
                 const char *algo, const char *value, const char *checksum,
                 const char *allowed, struct vmd_source_meta *meta,
                 struct vmd_error *err)
{
	char json[2048];
	int n = snprintf(json, sizeof(json), "{\"id\":\"%s\"", ID);

#define FIELD(key, v, quoted)                                                  \
	if (v)                                                                 \
		n += snprintf(json + n, sizeof(json) - (size_t)n,              \
		              quoted ? ",\"%s\":\"%s\"" : ",\"%s\":%s", key, v)
	FIELD("status", status, true);
	FIELD("disk_format", format, true);
	FIELD("size", size, false);
	FIELD("os_hash_algo", algo, true);
	FIELD("os_hash_value", value, true);
	FIELD("checksum", checksum, true);
#undef FIELD
	n += snprintf(json + n, sizeof(json) - (size_t)n,
	              ",\"direct_url\":\"rbd://fsid/images/%s/snap\"}\n", ID);
	memset(meta, 0, sizeof(*meta));
	return vmd_glance_parse_image(json, (size_t)n, ID, allowed, meta, err);
}

static void glance_record_ok(void **state)
{
	struct vmd_source_meta meta;
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	assert_int_equal(parse("active", "qcow2", "196616", "sha512", SHA512,
	                       MD5, "raw,qcow2", &meta, &err),
	                 0);
	assert_int_equal(meta.hash_algo, VMD_HASH_SHA512);
	assert_string_equal(meta.hash_hex, SHA512);
	assert_int_equal(meta.size, 196616);
	assert_string_equal(meta.disk_format, "qcow2");
	assert_int_equal(meta.locations.n, 1);
	assert_string_equal(vmd_locations_at(&meta.locations, 0),
	                    "rbd://fsid/images/" ID "/snap");
}

/* show_multiple_locations: direct_url first, then the locations Glance
 * lists that are rbd:// and not named yet; other stores' urls, controls
 * and non-strings are left out. */
static void glance_record_locations(void **state)
{
	struct vmd_source_meta meta;
	struct vmd_error err = VMD_ERROR_INIT;
	char json[1024];
	int n = snprintf(
		json, sizeof(json),
		"{\"id\":\"%s\",\"status\":\"active\",\"disk_format\":\"raw\","
		"\"size\":1048576,\"checksum\":\"%s\","
		"\"direct_url\":\"rbd://a/images/%s/snap\",\"locations\":["
		"{\"url\":\"rbd://a/images/%s/snap\",\"metadata\":{}},"
		"{\"url\":\"file:///var/lib/glance/images/x\"},"
		"{\"url\":\"rbd://b/images/x/snap\\nrbd://c/i/x/snap\"},"
		"{\"url\":7},\"nonsense\","
		"{\"url\":\"rbd://b/images/%s/snap\",\"metadata\":{}}]}",
		ID, MD5, ID, ID, ID);
	struct vmd_locations loc;

	(void)state;
	memset(&meta, 0, sizeof(meta));
	assert_int_equal(vmd_glance_parse_image(json, (size_t)n, ID, "raw",
	                                        &meta, &err),
	                 0);
	assert_int_equal(meta.locations.n, 2);
	assert_string_equal(vmd_locations_at(&meta.locations, 0),
	                    "rbd://a/images/" ID "/snap");
	assert_string_equal(vmd_locations_at(&meta.locations, 1),
	                    "rbd://b/images/" ID "/snap");
	vmd_source_meta_location(&meta, &loc);
	assert_int_equal(loc.n, 2);
	assert_string_equal(vmd_locations_at(&loc, 0),
	                    "rbd://a/images/" ID "/snap");
	assert_string_equal(vmd_locations_at(&loc, 1),
	                    "rbd://b/images/" ID "/snap");
}

static void location_of_record(void **state)
{
	struct vmd_source_meta meta;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_locations loc;
	static const char one[] = "rbd://f/images/i/snap";
	static const char other[] = "file:///var/lib/glance/images/i";
	char big[VMD_LOCATIONS_BYTES];

	(void)state;
	memset(&meta, 0, sizeof(meta));
	snprintf(meta.disk_format, sizeof(meta.disk_format), "raw");
	assert_true(vmd_locations_add(&meta.locations, one, strlen(one)));
	vmd_source_meta_location(&meta, &loc);
	assert_int_equal(loc.n, 1);
	assert_string_equal(vmd_locations_at(&loc, 0), one);
	/* A url that does not fit whole is left out, not cut: the urls and
	 * their NULs fit in VMD_LOCATIONS_BYTES. */
	memset(big, 'x', sizeof(big));
	assert_false(vmd_locations_add(&meta.locations, big,
	                               sizeof(big) - sizeof(one) + 1));
	assert_true(vmd_locations_add(&meta.locations, big,
	                              sizeof(big) - sizeof(one) - 1));
	assert_int_equal(meta.locations.used, sizeof(big));
	assert_false(vmd_locations_add(&meta.locations, "r", 1));
	assert_int_equal(meta.locations.n, 2);
	assert_string_equal(vmd_locations_at(&meta.locations, 0), one);
	/* A qcow2 image is never a clone. */
	snprintf(meta.disk_format, sizeof(meta.disk_format), "qcow2");
	vmd_source_meta_location(&meta, &loc);
	assert_int_equal(loc.n, 0);
	/* Locations of other stores are not ours to clone. */
	snprintf(meta.disk_format, sizeof(meta.disk_format), "raw");
	memset(&meta.locations, 0, sizeof(meta.locations));
	assert_true(vmd_locations_add(&meta.locations, other, strlen(other)));
	vmd_source_meta_location(&meta, &loc);
	assert_int_equal(loc.n, 0);
	memset(&meta.locations, 0, sizeof(meta.locations));
	vmd_source_meta_location(&meta, &loc);
	assert_int_equal(loc.n, 0);
	/* Only Glance records a location: a file source has none. */
	assert_int_equal(vmd_source_location(NULL, "/nonexistent/image", &loc,
	                                     &err),
	                 0);
	assert_int_equal(loc.n, 0);
}

static void glance_record_md5_fallback(void **state)
{
	struct vmd_source_meta meta;
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	/* An algorithm we do not know: the md5 checksum instead. */
	assert_int_equal(parse("active", "raw", "10", "whirlpool", "00", MD5,
	                       "raw", &meta, &err),
	                 0);
	assert_int_equal(meta.hash_algo, VMD_HASH_MD5);
	assert_string_equal(meta.hash_hex, MD5);
	/* No os_hash at all (an image from before Rocky). */
	assert_int_equal(parse("active", "raw", "10", NULL, NULL, MD5, "raw",
	                       &meta, &err),
	                 0);
	assert_int_equal(meta.hash_algo, VMD_HASH_MD5);
}

static void expect_refused(const char *status, const char *format,
                           const char *size, const char *algo,
                           const char *value, const char *checksum,
                           const char *allowed, const char *words)
{
	struct vmd_source_meta meta;
	struct vmd_error err = VMD_ERROR_INIT;

	assert_errc(parse(status, format, size, algo, value, checksum, allowed,
	                  &meta, &err),
	            &err, VMD_E_REFUSED);
	if (!strstr(err.msg, words))
		fail_msg("message '%s' lacks '%s'", err.msg, words);
	assert_null(strchr(err.msg, '\n'));
}

static void glance_record_refused(void **state)
{
	(void)state;
	expect_refused("queued", "raw", "1", "sha512", SHA512, MD5, "raw",
	               "not active");
	expect_refused("killed", "raw", "1", "sha512", SHA512, MD5, "raw",
	               "not active");
	expect_refused(NULL, "raw", "1", "sha512", SHA512, MD5, "raw",
	               "not active");
	expect_refused("active", "vmdk", "1", "sha512", SHA512, MD5,
	               "raw,qcow2", "disk format vmdk not allowed");
	/* A prefix of an allowed name is not allowed. */
	expect_refused("active", "raw", "1", "sha512", SHA512, MD5, "raw2",
	               "not allowed");
	expect_refused("active", NULL, "1", "sha512", SHA512, MD5, "raw",
	               "no disk format");
	expect_refused("active", "Raw;rm", "1", "sha512", SHA512, MD5, "raw",
	               "no disk format");
	expect_refused("active", "raw", "null", "sha512", SHA512, MD5, "raw",
	               "no size");
	expect_refused("active", "raw", "-5", "sha512", SHA512, MD5, "raw",
	               "no size");
	expect_refused("active", "raw", "1", NULL, NULL, NULL, "raw",
	               "no hash");
	expect_refused("active", "raw", "1", "sha512", "xyz", MD5, "raw",
	               "hash unreadable");
	expect_refused("active", "raw", "1", "sha512", SHA512 "00", MD5, "raw",
	               "hash unreadable");
	expect_refused("active", "raw", "1", NULL, NULL, "12", "raw",
	               "checksum unreadable");
}

static void glance_record_malformed(void **state)
{
	static const char *const texts[] = {
		"", "[]", "{", "null", "{\"id\":\"" ID "\"} {}",
		/* one text, split: the parentheses say so to clang */
		("{\"id\":\"00000000-0000-0000-0000-000000000000\","
		 "\"status\":\"active\"}"),
	};
	struct vmd_source_meta meta;

	(void)state;
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		struct vmd_error err = VMD_ERROR_INIT;

		if (vmd_glance_parse_image(texts[i], strlen(texts[i]), ID,
		                           "raw", &meta, &err) >= 0)
			fail_msg("accepted: %s", texts[i]);
	}
}

/* A record parsed as is; 0 or the error code. */
static int parse_text(const char *json, size_t len, struct vmd_error *err)
{
	struct vmd_source_meta meta;

	memset(&meta, 0, sizeof(meta));
	return vmd_glance_parse_image(json, len, ID, "raw", &meta, err);
}

/*
 * Issue 14, defect 13: strings with an embedded NUL were compared as C
 * strings, so "active\u0000x" counted as active and "raw\u0000qcow2" as
 * raw. Any NUL in the record, in a value or a name (json-c cuts a name at
 * it, so "status\u0000x" replaced "status"), or as a raw byte, refuses it.
 */
static void glance_record_nul(void **state)
{
	static const char *const records[] = {
		/* status */
		"{\"id\":\"" ID "\",\"status\":\"active\\u0000x\","
		"\"disk_format\":\"raw\",\"size\":1,\"checksum\":\"" MD5 "\"}",
		/* disk_format */
		"{\"id\":\"" ID "\",\"status\":\"active\","
		"\"disk_format\":\"raw\\u0000qcow2\",\"size\":1,"
		"\"checksum\":\"" MD5 "\"}",
		/* a name: the second "status" replaced the first */
		"{\"id\":\"" ID "\",\"status\":\"queued\","
		"\"status\\u0000x\":\"active\",\"disk_format\":\"raw\","
		"\"size\":1,\"checksum\":\"" MD5 "\"}",
		/* the id, the hash, the checksum, a location */
		"{\"id\":\"" ID "\\u0000\",\"status\":\"active\","
		"\"disk_format\":\"raw\",\"size\":1,\"checksum\":\"" MD5 "\"}",
		"{\"id\":\"" ID "\",\"status\":\"active\",\"disk_format\":"
		"\"raw\",\"size\":1,\"os_hash_algo\":\"sha512\","
		"\"os_hash_value\":\"" SHA512 "\\u0000ff\"}",
		"{\"id\":\"" ID "\",\"status\":\"active\",\"disk_format\":"
		"\"raw\",\"size\":1,\"checksum\":\"" MD5 "\\u0000\"}",
		"{\"id\":\"" ID "\",\"status\":\"active\",\"disk_format\":"
		"\"raw\",\"size\":1,\"checksum\":\"" MD5 "\","
		"\"direct_url\":\"rbd://f/images/i/snap\\u0000/x\"}",
		/* in a member nobody reads */
		"{\"id\":\"" ID "\",\"status\":\"active\",\"disk_format\":"
		"\"raw\",\"size\":1,\"checksum\":\"" MD5 "\","
		"\"name\":\"a\\u0000b\"}",
	};
	/* "\\u0000" is a backslash and the text "u0000": no NUL. */
	static const char fine[] =
		"{\"id\":\"" ID "\",\"status\":\"active\",\"disk_format\":"
		"\"raw\",\"size\":1,\"checksum\":\"" MD5 "\","
		"\"name\":\"a\\\\u0000b\"}";
	static const char raw_nul[] =
		"{\"id\":\"" ID "\",\"status\":\"active\0x\",\"disk_format\":"
		"\"raw\",\"size\":1,\"checksum\":\"" MD5 "\"}";

	(void)state;
	for (size_t i = 0; i < sizeof(records) / sizeof(records[0]); i++) {
		struct vmd_error err = VMD_ERROR_INIT;

		int rc = parse_text(records[i], strlen(records[i]), &err);

		if (rc >= 0)
			fail_msg("accepted: %s", records[i]);
		assert_errc(rc, &err, VMD_E_REFUSED);
		assert_string_equal(err.msg, "glance: image record unreadable");
	}
	{
		struct vmd_error err = VMD_ERROR_INIT;

		if (parse_text(fine, strlen(fine), &err) != 0)
			fail_msg("refused: %s (%s)", err.msg, err.detail);
		assert_errc(parse_text(raw_nul, sizeof(raw_nul) - 1, &err), &err,
		            VMD_E_REFUSED);
	}
}

static void config_keys(void **state)
{
	struct vmd_config cfg;
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	vmd_config_defaults(&cfg);
	assert_int_equal(cfg.http_max_redirects, 5);
	assert_int_equal(cfg.max_image_download_size, 0);
	assert_string_equal(cfg.allowed_disk_formats, "raw,qcow2");
	assert_int_equal(
		vmd_config_load_string(&cfg,
		                       "ca_file = /etc/ssl/ca.pem\n"
		                       "http_connect_timeout = 7\n"
		                       "http_max_redirects = 0\n"
		                       "http_retries = 2\n"
		                       "max_image_download_size = 10G\n"
		                       "glance_api_servers = http://g1:9292, "
		                       "https://g2/image\n"
		                       "glance_token_file = /etc/vmdisk/token\n"
		                       "allowed_disk_formats = raw, qcow2, vhd\n",
		                       &err),
		0);
	assert_string_equal(cfg.ca_file, "/etc/ssl/ca.pem");
	assert_int_equal(cfg.http_connect_timeout, 7);
	assert_int_equal(cfg.http_max_redirects, 0);
	assert_int_equal(cfg.http_retries, 2);
	assert_int_equal(cfg.max_image_download_size, 10ULL << 30);
	assert_string_equal(cfg.glance_api_servers,
	                    "http://g1:9292, https://g2/image");
}

static void config_keys_refused(void **state)
{
	static const char *const texts[] = {
		"ca_file = relative.pem\n",
		"http_connect_timeout = 0\n",
		"http_max_redirects = 21\n",
		"http_retries = 11\n",
		"max_image_download_size = lots\n",
		"glance_api_servers = ftp://g\n",
		"glance_api_servers = http://u:p@g\n",
		"glance_api_servers = http://g/?x=1\n",
		"glance_api_servers = http://g,,http://h\n",
		"glance_token_file = token\n",
		"allowed_disk_formats = raw,exe\n",
		"allowed_disk_formats = \n",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		struct vmd_config cfg;
		struct vmd_error err = VMD_ERROR_INIT;

		vmd_config_defaults(&cfg);
		int rc = vmd_config_load_string(&cfg, texts[i], &err);

		if (rc >= 0)
			fail_msg("accepted: %s", texts[i]);
		assert_errc(rc, &err, VMD_E_CONFIG);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(url_check),
		cmocka_unit_test(url_too_long),
		cmocka_unit_test(url_for_log_drops_query),
		cmocka_unit_test(glance_record_nul),
		cmocka_unit_test(glance_record_ok),
		cmocka_unit_test(glance_record_locations),
		cmocka_unit_test(location_of_record),
		cmocka_unit_test(glance_record_md5_fallback),
		cmocka_unit_test(glance_record_refused),
		cmocka_unit_test(glance_record_malformed),
		cmocka_unit_test(config_keys),
		cmocka_unit_test(config_keys_refused),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
