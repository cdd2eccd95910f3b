/*
 * struct vmd_buf (cleanup.h): the one growable byte buffer, shared by the
 * XML writer, the HTTP body reader and the runner's output capture so that
 * growth, the size bound and the overflow checks are written once.
 */
#include <stdarg.h>
#include <string.h>

#include "cleanup.h"

/* Room for n more bytes and the NUL. */
static int buf_reserve(struct vmd_buf *b, size_t n)
{
	size_t need, cap;
	char *p;

	if (b->failed) {
		errno = ENOMEM;
		return -1;
	}
	if (__builtin_add_overflow(b->len, n, &need) ||
	    (b->max && need > b->max)) {
		b->failed = true;
		errno = EMSGSIZE;
		return -1;
	}
	if (__builtin_add_overflow(need, 1, &need)) {
		b->failed = true;
		errno = EMSGSIZE;
		return -1;
	}
	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 1024;
	while (cap < need) {
		if (__builtin_mul_overflow(cap, 2, &cap)) {
			cap = need;
			break;
		}
	}
	if (b->max && cap - 1 > b->max) /* so max + 1 does not overflow */
		cap = b->max + 1;
	p = realloc(b->data, cap);
	if (!p) {
		b->failed = true;
		errno = ENOMEM;
		return -1;
	}
	b->data = p;
	b->cap = cap;
	return 0;
}

int vmd_buf_append(struct vmd_buf *b, const void *p, size_t n)
{
	if (buf_reserve(b, n) < 0)
		return -1;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int vmd_buf_puts(struct vmd_buf *b, const char *s)
{
	return vmd_buf_append(b, s, strlen(s));
}

int vmd_buf_printf(struct vmd_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->failed = true;
		errno = EINVAL;
		return -1;
	}
	if (buf_reserve(b, (size_t)n) < 0)
		return -1;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

void vmd_buf_clear(struct vmd_buf *b)
{
	b->len = 0;
	b->failed = false;
	if (b->data)
		b->data[0] = '\0';
}

char *vmd_buf_steal(struct vmd_buf *b)
{
	char *s = b->data ? b->data : strdup("");

	b->data = NULL;
	b->len = b->cap = 0;
	b->failed = false;
	return s;
}

void vmd_buf_free(struct vmd_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
	b->failed = false;
}
