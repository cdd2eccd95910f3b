/*
 * libvirt <disk> and <filesystem> elements, rendered in one place for every
 * backend. Backends say what the guest's disk is (a file, a block device or
 * a network volume, and its driver type); the caller's options (target,
 * bus, cache, discard, boot order, I/O limits, encryption secret) are
 * validated against allow-lists here, and every value that reaches the XML
 * is escaped. Values that are not what they should be (a bus we do not
 * know, a QoS value with letters) are refused, not escaped into the XML.
 */
#ifndef VMDISK_LIBVIRT_XML_H
#define VMDISK_LIBVIRT_XML_H

#include <stdbool.h>
#include <stdint.h>

#include <vmdisk/vmdisk.h>

int vmd_xml_render_disk(const struct vmd_xml_source *src,
                        const struct vmd_xml_opts *o, char **xml_out,
                        struct vmd_error *err);

#endif
