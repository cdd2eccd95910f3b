/*
 * The configuration as text, for handing it to another process of ours:
 * vmd_priv_run (lib/priv/privhelper.h) sends the caller's configuration
 * to the one-shot `vmdiskd --stdio`, which reads it back with
 * vmd_config_load_string, the config file's own parser.
 */
#ifndef VMDISK_CONFIG_TEXT_H
#define VMDISK_CONFIG_TEXT_H

#include <vmdisk/config.h>
#include <vmdisk/error.h>

/*
 * Every key of `cfg` as one "[vmdisk]" section (malloc'ed, NUL-ended) in
 * *out. Refused (VMD_E_INVAL, *out NULL) when the text would not read
 * back as the same configuration: a value set in code that the file
 * parser refuses or would change. Holds no secret (the configuration
 * names key and token files, never their bytes).
 */
int vmd_config_to_text(const struct vmd_config *cfg, char **out,
                       struct vmd_error *err);

#endif
