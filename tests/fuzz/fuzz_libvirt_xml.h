/*
 * The check the fuzz target fuzz_libvirt_xml.c runs on every input, shared with the
 * corpus replay (replay_corpus.c built for it, see meson.build here) so that
 * each input of corpus/libvirt_xml/ is a regression test of the ordinary build.
 * True when every rule (listed at the top of fuzz_libvirt_xml.c) holds; false with
 * the broken one in why.
 */
#ifndef VMDISK_FUZZ_LIBVIRT_XML_H
#define VMDISK_FUZZ_LIBVIRT_XML_H

#include "fuzz_util.h"

VMD_FUZZ_DECLARE_CHECK(libvirt_xml);

#endif
