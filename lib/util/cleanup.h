/*
 * The one cleanup idiom (systemd's src/basic style), used by every file:
 *
 *   _cleanup_(freep) char *text = NULL;      freed on every path out
 *   _cleanup_(closep) int fd = -1;           closed on every path out
 *   return TAKE_FD(fd);                      hand it over: not closed here
 *
 * A cleanup function takes a pointer to the variable. DEFINE_CLEANUP_FUNC
 * makes one (named func##p) from a plain destructor of a pointer type. The
 * attribute itself is written only in this header (tests/suite/source/run.sh
 * checks that), so there is one spelling to read and to grep for.
 *
 * Also here: ELEMENTSOF, and struct vmd_buf, the one growable byte buffer.
 */
#ifndef VMDISK_CLEANUP_H
#define VMDISK_CLEANUP_H

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(fn) __attribute__((cleanup(fn)))

/* func##p(type *p): func(*p) when *p is not NULL, then *p = NULL. For
 * pointer types only (descriptors have closep). */
#define DEFINE_CLEANUP_FUNC(type, func)                                        \
	static inline void func##p(type *p)                                    \
	{                                                                      \
		if (*p) {                                                      \
			func(*p);                                              \
			*p = NULL;                                             \
		}                                                              \
	}

/* The value of p; p itself becomes NULL, so its cleanup does nothing. */
#define TAKE_PTR(p)                                                            \
	({                                                                     \
		__typeof__(p) taken_ = (p);                                    \
		(p) = NULL;                                                    \
		taken_;                                                        \
	})

/* The same for a descriptor: fd becomes -1. */
#define TAKE_FD(fd)                                                            \
	({                                                                     \
		int taken_fd_ = (fd);                                          \
		(fd) = -1;                                                     \
		taken_fd_;                                                     \
	})

/* Number of elements of an array; a pointer does not compile. */
#define VMD_IS_ARRAY_(a)                                                       \
	(!__builtin_types_compatible_p(__typeof__(a), __typeof__(&(a)[0])))
#define ELEMENTSOF(a)                                                          \
	(sizeof(a) / sizeof((a)[0]) +                                          \
	 0 * sizeof(struct {                                                   \
		 _Static_assert(VMD_IS_ARRAY_(a), "ELEMENTSOF of a pointer"); \
		 char c_;                                                      \
	 }))

/* free(*p), *p = NULL. p points to any pointer variable. */
static inline void freep(void *p)
{
	void **pp = p;

	free(*pp);
	*pp = NULL;
}

/* close(*fd) when it is a descriptor, keeping errno (the error being
 * reported is the one that made us leave), then *fd = -1. */
static inline void closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;

		close(*fd);
		errno = saved;
		*fd = -1;
	}
}

DEFINE_CLEANUP_FUNC(FILE *, fclose)
DEFINE_CLEANUP_FUNC(DIR *, closedir)

/* json-c, declared here so that this header does not need its include
 * path; a file that never uses them never references them. json-c is
 * loaded on first use (jsonc_lazy.h): the helpers free through its table. */
struct json_object;
struct json_tokener;
void vmd_jsonc_put(struct json_object *obj);
void vmd_jsonc_tokener_free(struct json_tokener *tok);
DEFINE_CLEANUP_FUNC(struct json_object *, vmd_jsonc_put)
DEFINE_CLEANUP_FUNC(struct json_tokener *, vmd_jsonc_tokener_free)
#define json_object_putp vmd_jsonc_putp
#define json_tokener_freep vmd_jsonc_tokener_freep

/*
 * A growable byte buffer. data is NUL-terminated after every successful
 * append (len does not count the NUL). max, when not 0, bounds len: an
 * append past it fails (EMSGSIZE) and nothing is allocated beyond
 * max + 1 bytes. A failed append sets the sticky `failed` so a writer of
 * many pieces checks once at the end. Start from VMD_BUF_INIT (or with
 * .max set); vmd_buf_free on every path out (_cleanup_(vmd_buf_free)).
 */
struct vmd_buf {
	char *data;
	size_t len;
	size_t cap;
	size_t max;
	bool failed;
};

#define VMD_BUF_INIT {NULL, 0, 0, 0, false}

/* 0, or -1 with errno ENOMEM/EMSGSIZE (buffer unchanged, failed set). */
int vmd_buf_append(struct vmd_buf *b, const void *p, size_t n);
int vmd_buf_puts(struct vmd_buf *b, const char *s);
int vmd_buf_printf(struct vmd_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Empty again (len 0, failed cleared), keeping the allocation. */
void vmd_buf_clear(struct vmd_buf *b);
/* The text, now the caller's to free (an empty string when nothing was
 * appended; NULL only when that allocation fails); b is reset. */
char *vmd_buf_steal(struct vmd_buf *b);
/* Frees the data; b is empty again (max kept). */
void vmd_buf_free(struct vmd_buf *b);

#endif
