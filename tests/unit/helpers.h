/*
 * Shared helpers for the cmocka tests: scratch directories, files, running
 * programs (through the product's runner, so tests spawn processes the same
 * way the product does) and qemu-img checks.
 */
#ifndef VMDISK_TEST_HELPERS_H
#define VMDISK_TEST_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <vmdisk/inspect.h>
#include <vmdisk/log.h>
#include <vmdisk/vmdisk.h>

#include <cmocka.h>

/* A fresh directory under $TMPDIR (or /var/tmp); removed by th_rmtree. */
char *th_mkdtemp(const char *tag);
void th_rmtree(const char *path);

/* path = dir + "/" + name, malloc'ed. */
char *th_path(const char *dir, const char *name);

/* instances/inst/disk (instances: a configuration's instances_path),
 * malloc'ed. */
char *th_disk_path(const char *instances, const char *inst, const char *disk);

/* Write `len` bytes of a deterministic pattern derived from `seed`. */
void th_write_pattern(const char *path, uint64_t len, uint32_t seed);
/* Write data at an offset (creating the file if needed, never truncating). */
void th_pwrite_at(const char *path, const void *buf, size_t len, uint64_t off);
void th_write_text(const char *path, const char *text);
char *th_read_text(const char *path);
int th_files_equal(const char *a, const char *b);
uint64_t th_file_size(const char *path);
int th_exists(const char *path);

/* Entries of a directory but "." and ".."; fails the test when it
 * cannot be opened. */
int th_count_entries(const char *dir);
/* Entries of a cache directory whose names do not start with '.' (the
 * cache's locks and temporaries do); 0 when the directory does not exist. */
int th_count_cache_entries(const char *dir);

/* Replace *ctx (freed, may be NULL) by a new context of cfg: what a test
 * does after changing its configuration. */
void th_ctx_renew(struct vmd_ctx **ctx, const struct vmd_config *cfg);

/*
 * The fixture the suites share: a fresh scratch directory, an instances
 * directory in it, a configuration of the defaults naming it, and a slot
 * for that configuration's context. A suite with more state embeds it in
 * its own fixture with TH_FIXTURE_EMBED.
 */
#define TH_FIXTURE_OWNED_MAX 16
#define TH_FIXTURE_MEMBERS                                                     \
	char *dir;             /* th_mkdtemp(tag) */                           \
	char *instances;       /* dir/instances, not created */                \
	struct vmd_config cfg; /* defaults; instances_path = instances */      \
	struct vmd_ctx *ctx;   /* NULL until th_ctx_renew(&ctx, &cfg) */       \
	/* what th_fixture_own took, freed by th_fixture_fini */               \
	char *owned_[TH_FIXTURE_OWNED_MAX];                                    \
	size_t n_owned_;
struct th_fixture {
	TH_FIXTURE_MEMBERS
};
/* The members of a suite's fixture that embeds the shared one: f->dir,
 * f->cfg... as before, and &f->th for th_fixture_init/fini (the same
 * members twice in a union, as the kernel's struct_group does). */
#define TH_FIXTURE_EMBED                                                       \
	union {                                                                \
		struct th_fixture th;                                          \
		struct {                                                       \
			TH_FIXTURE_MEMBERS                                     \
		};                                                             \
	}
void th_fixture_init(struct th_fixture *f, const char *tag);
/* Free the context, remove the directory; for a zeroed fixture too. */
void th_fixture_fini(struct th_fixture *f);
/* cmocka setup and teardown of a bare struct th_fixture in *state;
 * th_teardown also ends a suite's fixture made by TH_FIXTURE_NEW whose
 * other members are owned by the fixture (th_fixture_own/_path). */
int th_setup(void **state);
int th_teardown(void **state);

/* A suite's fixture (a struct that starts with TH_FIXTURE_EMBED),
 * zeroed, with th_fixture_init(tag) done. */
void *th_fixture_new(size_t size, const char *tag);
#define TH_FIXTURE_NEW(type, tag)                                              \
	((type *)th_fixture_new(                                               \
	        sizeof(type) +                                                 \
	                0 * sizeof(char[offsetof(type, th) == 0 ? 1 : -1]),    \
	        (tag)))
/* Hand p (malloc'ed) to the fixture, which frees it in th_fixture_fini;
 * returns p. */
char *th_fixture_own(struct th_fixture *f, char *p);
/* dir/name, owned by the fixture. */
char *th_fixture_path(struct th_fixture *f, const char *name);
/* A vmdisk.conf in dir naming instances_path, logging nowhere, then the
 * lines of `extra` ("" for none); its path, owned by the fixture. */
char *th_fixture_write_config(struct th_fixture *f, const char *extra);

/* Capture every log line (already redacted) at debug level from now on;
 * th_log_text() is what came so far ("" when nothing), stop ends the
 * capture and frees it. */
void th_log_capture_start(void);
const char *th_log_text(void);
void th_log_capture_stop(void);

/*
 * Run argv through the product runner. Returns the exit status; stdout and
 * stderr (malloc'ed, NUL-terminated) are returned when out/errp are given.
 * env: NULL-ended "NAME=value" extras.
 */
int th_run(const char *const *argv, const char *const *env, char **out,
           char **errp);

/* th_run that fails the test, printing both outputs, unless argv exits
 * 0 (and, with no_failed, says "failed" on neither output: qemu-io
 * reports a failed command so but exits 0). */
void th_run_ok(const char *const *argv, bool no_failed);

/* vmd_disk_create(ctx, inst, disk, o, info) succeeds; else fail the test,
 * printing the disk and the error's message and detail. */
void th_create_ok(struct vmd_ctx *ctx, const char *inst, const char *disk,
                  const struct vmd_create_opts *o, struct vmd_disk_info *info);

/* Path of the built CLI ($VMDISK_CLI). */
const char *th_cli(void);
/* Run `vmdisk --config config args...` (NULL-ended); as th_run. */
int th_cli_run(const char *config, const char *const *env, char **out,
               char **errs, const char *const *args);
/* Newlines in s; lines of s that start with prefix. */
int th_count_lines(const char *s);
int th_count_lines_starting(const char *s, const char *prefix);

/* vmd_inspect_fd on path (lim NULL: the defaults); its return. */
int th_inspect_path(const char *path, const struct vmd_inspect_limits *lim,
                    unsigned flags, struct vmd_inspect_result *r);
/* Whether the result lists the refusal `code`. */
bool th_has_reason(const struct vmd_inspect_result *r, const char *code);
/* path inspects (defaults, no flags) as unsafe for `code`; else fail,
 * printing the format and the reasons given. */
void th_assert_refused_with(const char *path, const char *code);

/* Whether qemu-img is on PATH (tests that need it fail when it is not:
 * scripts/test.sh installs it). */
void th_require_qemu_img(void);
/* Run a `qemu-img create` of an encrypted image; fail the test when it
 * fails. qemu times its PBKDF on the thread's CPU clock and gives up
 * ("Unable to get accurate CPU usage") when a busy machine's clock did not
 * tick in the first round: that one cause is tried again, up to 5 times. */
void th_qemu_img_create_encrypted(const char *const *argv);
/* The virtual size `qemu-img info -f fmt` reports for path. */
int64_t th_qemu_img_virtual_size(const char *path, const char *fmt);
/* `qemu-img check -f qcow2 path` exits 0 with no leaks and no errors. */
void th_assert_qcow2_check_clean(const char *path);
/* `qemu-img compare -f FMT1 -F FMT2 a b` says identical (exit 0). With
 * strict=1 a difference in virtual size is a failure too. */
void th_assert_images_identical(const char *a, const char *fa, const char *b,
                                const char *fb, int strict);

/* Fail unless `needle` occurs in `haystack` (a NULL haystack does not hold
 * it), printing both, so a failure shows the text that was searched. */
#define assert_contains(haystack, needle)                                      \
	do {                                                                   \
		const char *th_h_ = (haystack), *th_n_ = (needle);             \
		if (th_h_ == NULL || strstr(th_h_, th_n_) == NULL) {           \
			print_error("\"%s\" not found in %s:\n%s\n", th_n_,    \
			            #haystack, th_h_ ? th_h_ : "(null)");      \
			_fail(__FILE__, __LINE__);                             \
		}                                                              \
	} while (0)
/* Fail when `needle` occurs in `haystack` (or there is no haystack),
 * printing both. */
#define assert_not_contains(haystack, needle)                                  \
	do {                                                                   \
		const char *th_h_ = (haystack), *th_n_ = (needle);             \
		if (th_h_ == NULL || strstr(th_h_, th_n_) != NULL) {           \
			print_error("\"%s\" found in %s:\n%s\n", th_n_,        \
			            #haystack, th_h_ ? th_h_ : "(null)");      \
			_fail(__FILE__, __LINE__);                             \
		}                                                              \
	} while (0)

/* Fail unless a call returned exactly `want` and left it in `errp` (a
 * struct vmd_error *; NULL when the test does not hold one), printing
 * what came instead: "failed" is not enough, a test names the failure. */
#define assert_errc(call, errp, want)                                          \
	do {                                                                   \
		int th_rc_ = (call);                                           \
		const struct vmd_error *th_e_ = (errp);                        \
		enum vmd_errc th_c_ = (want);                                  \
		if (th_rc_ != (int)th_c_ ||                                    \
		    (th_e_ && th_e_->code != th_c_)) {                         \
			print_error("%s: expected %s, got %s (%d), err %s: "   \
			            "%s (%s)\n", #call, vmd_errc_name(th_c_),  \
			            vmd_errc_name((enum vmd_errc)th_rc_),      \
			            th_rc_,                                    \
			            th_e_ ? vmd_errc_name(th_e_->code) : "-",  \
			            th_e_ ? th_e_->msg : "",                   \
			            th_e_ ? th_e_->detail : "");               \
			_fail(__FILE__, __LINE__);                             \
		}                                                              \
	} while (0)

#endif
