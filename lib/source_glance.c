/*
 * The glance image source: placeholder until its implementation lands; it
 * refuses clearly rather than pretending.
 */
#include "source.h"

static int glance_resolve(struct vmd_ctx *ctx, const char *url,
                        struct vmd_source_meta *meta, struct vmd_error *err)
{
	(void)ctx;
	(void)url;
	(void)meta;
	return vmd_error_set(err, VMD_E_UNSUPPORTED,
	                     "glance image sources are not supported yet",
	                     "no glance source in this build");
}

static int glance_download(struct vmd_ctx *ctx, const char *url,
                         const struct vmd_source_meta *meta,
                         struct vmd_sink *sink, struct vmd_error *err)
{
	(void)ctx;
	(void)url;
	(void)meta;
	(void)sink;
	return vmd_error_set(err, VMD_E_UNSUPPORTED,
	                     "glance image sources are not supported yet",
	                     "no glance source in this build");
}

const struct vmd_source_ops vmd_source_glance = {
	.scheme = "glance",
	.resolve = glance_resolve,
	.download = glance_download,
};
