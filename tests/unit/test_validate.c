/*
 * Tests of lib/validate.c: the allow-lists and strict parsers that every
 * outside value passes before it reaches a path, an argv or a size.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <vmdisk/log.h>
#include <vmdisk/validate.h>

#include "cleanup.h"
#include "helpers.h"


static int quiet_log(void **state)
{
	(void)state;
	vmd_log_setup(VMD_LOG_TO_NONE, VMD_LOG_ERROR, "test");
	return 0;
}

/* A text and whether an allow-list takes it. */
struct valid_case {
	const char *s;
	bool ok;
};

/* Every case answered as listed by valid(); `what` names the list. */
static void check_valid(const char *what, bool (*valid)(const char *),
                        const struct valid_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (valid(cases[i].s) != cases[i].ok)
			fail_msg("%s '%s': expected %s", what, cases[i].s,
			         cases[i].ok ? "valid" : "invalid");
	}
	assert_false(valid(NULL));
}

static void test_uuid(void **state)
{
	static const struct valid_case cases[] = {
	        {"123e4567-e89b-12d3-a456-426614174000", true},
	        {"123E4567-E89B-12D3-A456-426614174000", true},
	        {"00000000-0000-0000-0000-000000000000", true},
	        {"", false},
	        {"123e4567e89b12d3a456426614174000", false},
	        {"123e4567-e89b-12d3-a456-42661417400", false},
	        {"123e4567-e89b-12d3-a456-4266141740000", false},
	        {"123e4567-e89b-12d3-a456-42661417400g", false},
	        {"123e4567-e89b-12d3-a456_426614174000", false},
	        {"123e456-7e89b-12d3-a456-426614174000", false},
	        {"{23e4567-e89b-12d3-a456-426614174000", false},
	        {"123e4567-e89b-12d3-a456-426614174000\n", false},
	        {"../../../../../../../../../../etc/pas", false},
	        {" 23e4567-e89b-12d3-a456-426614174000", false},
	};

	(void)state;
	check_valid("uuid", vmd_valid_uuid, cases, ELEMENTSOF(cases));
}

static void test_disk_name(void **state)
{
	char max[VMD_DISK_NAME_MAX + 2];
	static const struct valid_case cases[] = {
	        {"disk", true},     {"disk.local", true}, {"disk.eph0", true},
	        {"Disk_1-a", true}, {"0", true},          {"a..b", true},
	        {"", false},        {"..", false},        {".", false},
	        {".hidden", false}, {"a/b", false},       {"/abs", false},
	        {"-rf", false},     {"_x", false},        {"a b", false},
	        {"a\nb", false},    {"disk;rm", false},   {"d\xc3\xa9", false},
	};

	(void)state;
	check_valid("disk name", vmd_valid_disk_name, cases, ELEMENTSOF(cases));

	memset(max, 'a', sizeof(max));
	max[VMD_DISK_NAME_MAX] = '\0'; /* 64 chars */
	assert_true(vmd_valid_disk_name(max));
	max[VMD_DISK_NAME_MAX] = 'a';
	max[VMD_DISK_NAME_MAX + 1] = '\0'; /* 65 chars */
	assert_false(vmd_valid_disk_name(max));
}

static void test_file_token(void **state)
{
	char s[130];

	(void)state;
	/* Same first-character rule as disk names. */
	assert_false(vmd_valid_file_token("_base"));
	assert_true(vmd_valid_file_token("base"));
	assert_true(vmd_valid_file_token("0123abcd.part"));
	assert_false(vmd_valid_file_token(""));
	assert_false(vmd_valid_file_token(".."));
	assert_false(vmd_valid_file_token("a/b"));
	assert_false(vmd_valid_file_token(NULL));

	memset(s, 'x', sizeof(s));
	s[128] = '\0';
	assert_true(vmd_valid_file_token(s));
	s[128] = 'x';
	s[129] = '\0';
	assert_false(vmd_valid_file_token(s));
	/* Longer than a disk name is fine for a token. */
	s[100] = '\0';
	assert_true(vmd_valid_file_token(s));
	assert_false(vmd_valid_disk_name(s));
}

static void test_size_good(void **state)
{
	static const struct {
		const char *s;
		uint64_t v;
	} cases[] = {
		{"0", 0},
		{"4096", 4096},
		{"4096B", 4096},
		{"4096b", 4096},
		{"1K", 1024},
		{"4KB", 4096},
		{"4k", 4096},
		{"1Ki", 1024},
		{"1KiB", 1024},
		{"512M", 512ULL << 20},
		{"512m", 512ULL << 20},
		{"10G", 10737418240ULL},
		{"1GiB", 1ULL << 30},
		{"1gib", 1ULL << 30},
		{"1GIB", 1ULL << 30},
		{"3T", 3ULL << 40},
		{"2P", 2ULL << 50},
		{"007", 7},
		{"18446744073709551615", UINT64_MAX},
		{"16777215T", 16777215ULL << 40},
		{"15P", 15ULL << 50},
	};

	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		struct vmd_error err = VMD_ERROR_INIT;
		uint64_t v = 12345;

		if (vmd_parse_size(cases[i].s, &v, &err) != 0)
			fail_msg("size '%s' refused: %s", cases[i].s, err.msg);
		if (v != cases[i].v)
			fail_msg("size '%s' = %llu, expected %llu", cases[i].s,
			         (unsigned long long)v,
			         (unsigned long long)cases[i].v);
		assert_false(vmd_error_is_set(&err));
	}
}

static void test_size_bad(void **state)
{
	static const char *const cases[] = {
		"",
		"G",
		"B",
		"iB",
		"-1",
		"+1",
		" 1",
		"1 ",
		"1 G",
		"1.5G",
		"1,5G",
		"1X",
		"1GG",
		"1GiBB",
		"1BB",
		"1iB",
		"1Gi B",
		"0x10",
		"0x",
		"1e9",
		"18446744073709551616",
		"99999999999999999999999",
		"16777216T",
		"16384P",
		"16384PiB",
		"18446744073709551615K",
		"10G\n",
	};

	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		struct vmd_error err = VMD_ERROR_INIT;
		uint64_t v = 12345;

		if (vmd_parse_size(cases[i], &v, &err) != VMD_E_INVAL)
			fail_msg("size '%s' accepted as %llu", cases[i],
			         (unsigned long long)v);
		assert_int_equal(err.code, VMD_E_INVAL);
		assert_contains(err.msg, "size");
		/* The output is untouched on failure. */
		assert_true(v == 12345);
	}
	assert_int_equal(vmd_parse_size(NULL, NULL, NULL), VMD_E_INVAL);
}

static void test_size_error_echo(void **state)
{
	struct vmd_error err = VMD_ERROR_INIT;
	char longv[200];
	uint64_t v;

	(void)state;
	assert_int_equal(vmd_parse_size("1X", &v, &err), VMD_E_INVAL);
	assert_contains(err.msg, "'1X'");

	/* Long input is cut in the message. */
	vmd_error_clear(&err);
	memset(longv, '7', sizeof(longv));
	longv[150] = 'Z';
	longv[sizeof(longv) - 1] = '\0';
	assert_int_equal(vmd_parse_size(longv, &v, &err), VMD_E_INVAL);
	assert_not_contains(err.msg, "Z");
	assert_not_contains(err.detail, "Z");
	assert_true(strlen(err.msg) < 80);

	/* Unprintable input is not echoed at all. */
	vmd_error_clear(&err);
	assert_int_equal(vmd_parse_size("1\n\x1b[31mG", &v, &err), VMD_E_INVAL);
	assert_null(strchr(err.msg, '\n'));
	assert_null(strchr(err.msg, '\x1b'));
	assert_null(strchr(err.detail, '\x1b'));
	assert_null(strchr(err.msg, '\''));
}

static void test_backend(void **state)
{
	static const struct {
		const char *s;
		enum vmd_backend_kind k;
	} good[] = {
		{"default", VMD_BACKEND_DEFAULT}, {"flat", VMD_BACKEND_FLAT},
		{"raw", VMD_BACKEND_FLAT},        {"qcow2", VMD_BACKEND_QCOW2},
		{"lvm", VMD_BACKEND_LVM},         {"rbd", VMD_BACKEND_RBD},
		{"ploop", VMD_BACKEND_PLOOP},
	};
	static const char *const bad[] = {
		"", "RBD", "Qcow2", "raw ", " raw", "qcow", "qcow22", "file",
		"lvm\n",
	};

	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(good); i++) {
		struct vmd_error err = VMD_ERROR_INIT;
		enum vmd_backend_kind k = (enum vmd_backend_kind)99;

		assert_int_equal(vmd_parse_backend(good[i].s, &k, &err), 0);
		assert_int_equal(k, good[i].k);
	}
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		struct vmd_error err = VMD_ERROR_INIT;
		enum vmd_backend_kind k = VMD_BACKEND_LVM;

		if (vmd_parse_backend(bad[i], &k, &err) != VMD_E_INVAL)
			fail_msg("backend '%s' accepted", bad[i]);
		assert_int_equal(k, VMD_BACKEND_LVM);
		assert_int_equal(err.code, VMD_E_INVAL);
	}
	assert_int_equal(vmd_parse_backend(NULL, &(enum vmd_backend_kind){0},
	                                   NULL),
	                 VMD_E_INVAL);

	assert_string_equal(vmd_backend_kind_name(VMD_BACKEND_DEFAULT),
	                    "default");
	assert_string_equal(vmd_backend_kind_name(VMD_BACKEND_FLAT), "flat");
	assert_string_equal(vmd_backend_kind_name(VMD_BACKEND_QCOW2), "qcow2");
	assert_string_equal(vmd_backend_kind_name(VMD_BACKEND_LVM), "lvm");
	assert_string_equal(vmd_backend_kind_name(VMD_BACKEND_RBD), "rbd");
	assert_string_equal(vmd_backend_kind_name(VMD_BACKEND_PLOOP), "ploop");
	assert_non_null(vmd_backend_kind_name((enum vmd_backend_kind)42));
}

static void test_format(void **state)
{
	struct vmd_error err = VMD_ERROR_INIT;
	enum vmd_format f = VMD_FORMAT_PLOOP;

	(void)state;
	assert_int_equal(vmd_parse_format("raw", &f, &err), 0);
	assert_int_equal(f, VMD_FORMAT_RAW);
	assert_int_equal(vmd_parse_format("qcow2", &f, &err), 0);
	assert_int_equal(f, VMD_FORMAT_QCOW2);
	assert_int_equal(vmd_parse_format("ploop", &f, &err), 0);
	assert_int_equal(f, VMD_FORMAT_PLOOP);
	assert_false(vmd_error_is_set(&err));

	assert_int_equal(vmd_parse_format("vmdk", &f, &err), VMD_E_INVAL);
	assert_int_equal(vmd_parse_format("QCOW2", &f, NULL), VMD_E_INVAL);
	assert_int_equal(vmd_parse_format("flat", &f, NULL), VMD_E_INVAL);
	assert_int_equal(vmd_parse_format("", &f, NULL), VMD_E_INVAL);
	assert_int_equal(f, VMD_FORMAT_PLOOP);
	assert_contains(err.msg, "format");

	assert_string_equal(vmd_format_name(VMD_FORMAT_RAW), "raw");
	assert_string_equal(vmd_format_name(VMD_FORMAT_QCOW2), "qcow2");
	assert_string_equal(vmd_format_name(VMD_FORMAT_PLOOP), "ploop");
}

static void test_ploop_variant(void **state)
{
	enum vmd_ploop_variant v = VMD_PLOOP_RAW;

	(void)state;
	assert_int_equal(vmd_parse_ploop_variant("expanded", &v, NULL), 0);
	assert_int_equal(v, VMD_PLOOP_EXPANDED);
	assert_int_equal(vmd_parse_ploop_variant("raw", &v, NULL), 0);
	assert_int_equal(v, VMD_PLOOP_RAW);
	assert_int_equal(vmd_parse_ploop_variant("plain", &v, NULL),
	                 VMD_E_INVAL);
	assert_int_equal(vmd_parse_ploop_variant("Expanded", &v, NULL),
	                 VMD_E_INVAL);
	assert_int_equal(v, VMD_PLOOP_RAW);
	assert_string_equal(vmd_ploop_variant_name(VMD_PLOOP_EXPANDED),
	                    "expanded");
	assert_string_equal(vmd_ploop_variant_name(VMD_PLOOP_RAW), "raw");
}

static void test_bool(void **state)
{
	static const char *const yes[] = {"true", "TRUE", "True", "yes",
	                                  "YES",  "on",   "On",   "1"};
	static const char *const no[] = {"false", "FALSE", "no", "No",
	                                 "off",   "OFF",   "0"};
	static const char *const bad[] = {"",  "2", "tru", "yess", " true",
	                                  "true ", "y", "n", "enable", "00"};

	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
		bool b = false;

		assert_int_equal(vmd_parse_bool(yes[i], &b, NULL), 0);
		assert_true(b);
	}
	for (size_t i = 0; i < ELEMENTSOF(no); i++) {
		bool b = true;

		assert_int_equal(vmd_parse_bool(no[i], &b, NULL), 0);
		assert_false(b);
	}
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		struct vmd_error err = VMD_ERROR_INIT;
		bool b = true;

		if (vmd_parse_bool(bad[i], &b, &err) != VMD_E_INVAL)
			fail_msg("bool '%s' accepted", bad[i]);
		assert_true(b);
		assert_int_equal(err.code, VMD_E_INVAL);
	}
}

/* A NULL err makes a parser a silent predicate: nothing reaches the log. */
static void count_lines(enum vmd_log_level level, const char *line,
                        void *opaque)
{
	(void)level;
	(void)line;
	(*(int *)opaque)++;
}

static void test_null_err_is_silent(void **state)
{
	struct vmd_error err = VMD_ERROR_INIT;
	int lines = 0;
	uint64_t v;
	bool b;

	(void)state;
	vmd_log_set_sink(count_lines, &lines);
	assert_int_equal(vmd_parse_size("junk", &v, NULL), VMD_E_INVAL);
	assert_int_equal(vmd_parse_bool("junk", &b, NULL), VMD_E_INVAL);
	assert_int_equal(lines, 0);
	/* With an err the failure is logged, once. */
	assert_int_equal(vmd_parse_size("junk", &v, &err), VMD_E_INVAL);
	assert_int_equal(lines, 1);
	vmd_log_set_sink(NULL, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uuid),
		cmocka_unit_test(test_disk_name),
		cmocka_unit_test(test_file_token),
		cmocka_unit_test(test_size_good),
		cmocka_unit_test(test_size_bad),
		cmocka_unit_test(test_size_error_echo),
		cmocka_unit_test(test_backend),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_ploop_variant),
		cmocka_unit_test(test_bool),
		cmocka_unit_test(test_null_err_is_silent),
	};

	return cmocka_run_group_tests_name("validate", tests, quiet_log, NULL);
}
