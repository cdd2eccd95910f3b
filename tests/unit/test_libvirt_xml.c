/*
 * libvirt XML: every combination of options the renderer takes, for each
 * kind of source (file of each driver type, block device, rbd network disk,
 * LUKS secret, the <filesystem> form), is wrapped in a minimal <domain> and
 * judged by libvirt's own schema (virt-xml-validate). Hostile values are
 * refused with an error, never escaped into the document. The disks of the
 * file backends are rendered through the public call and the CLI.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"
#include "libvirt_xml.h"
#include <vmdisk/vmdisk.h>

#define INST "6f1e0a8c-3b5d-4e2f-9a7b-1c2d3e4f5a6b"
#define SECRET_UUID "2a4f6c8e-1b3d-4f5a-8c7e-9d0b1a2c3e4f"

struct fixture {
	TH_FIXTURE_EMBED; /* dir, instances, cfg, ctx; &f->th */
	unsigned validated;
};

static int setup(void **state)
{
	*state = TH_FIXTURE_NEW(struct fixture, "xml");
	return 0;
}

/* Wrap `elem` in the smallest domain libvirt's schema accepts and validate. */
static void assert_valid_in_domain(struct fixture *f, const char *elem)
{
	char *doc, *path, *out = NULL, *errs = NULL;
	char name[32];
	int rc;

	snprintf(name, sizeof(name), "dom%u.xml", f->validated++);
	path = th_path(f->dir, name);
	assert_true(asprintf(&doc,
	                     "<domain type='kvm'>\n"
	                     "<name>vmdisk-test</name>\n"
	                     "<memory unit='KiB'>65536</memory>\n"
	                     "<os><type arch='x86_64'>hvm</type></os>\n"
	                     "<devices>\n%s</devices>\n"
	                     "</domain>\n",
	                     elem) > 0);
	th_write_text(path, doc);
	rc = th_run((const char *[]){"virt-xml-validate", path, "domain", NULL},
	            NULL, &out, &errs);
	if (rc != 0)
		fprintf(stderr, "virt-xml-validate refused:\n%s\n%s%s\n", doc,
		        out ? out : "", errs ? errs : "");
	assert_int_equal(rc, 0);
	free(out);
	free(errs);
	free(doc);
	free(path);
}

static void file_source(struct vmd_xml_source *s, const char *driver,
                        const char *path)
{
	memset(s, 0, sizeof(*s));
	s->type = VMD_XML_FILE;
	snprintf(s->driver_type, sizeof(s->driver_type), "%s", driver);
	snprintf(s->path, sizeof(s->path), "%s", path);
}

static void rbd_source(struct vmd_xml_source *s)
{
	memset(s, 0, sizeof(*s));
	s->type = VMD_XML_NETWORK;
	snprintf(s->driver_type, sizeof(s->driver_type), "raw");
	snprintf(s->protocol, sizeof(s->protocol), "rbd");
	snprintf(s->name, sizeof(s->name), "vms/%s_disk", INST);
	snprintf(s->hosts[0], sizeof(s->hosts[0]), "127.0.0.1:6789");
	snprintf(s->hosts[1], sizeof(s->hosts[1]), "[::1]:6789");
	snprintf(s->hosts[2], sizeof(s->hosts[2]), "mon3.example");
	snprintf(s->auth_user, sizeof(s->auth_user), "cinder");
	snprintf(s->auth_secret_uuid, sizeof(s->auth_secret_uuid), SECRET_UUID);
}

static char *render_ok(const struct vmd_xml_source *s,
                       const struct vmd_xml_opts *o)
{
	struct vmd_error err = VMD_ERROR_INIT;
	char *xml = NULL;

	assert_int_equal(vmd_xml_render_disk(s, o, &xml, &err), 0);
	assert_non_null(xml);
	return xml;
}

static void render_refused(const struct vmd_xml_source *s,
                           const struct vmd_xml_opts *o)
{
	struct vmd_error err = VMD_ERROR_INIT;
	char *xml = NULL;

	assert_int_equal(vmd_xml_render_disk(s, o, &xml, &err), VMD_E_INVAL);
	assert_null(xml);
	assert_true(strncmp(err.msg, "xml: ", 5) == 0);
}

/* Every bus x cache x discard x boot/qos, for each kind of source. */
static void test_every_combination_validates(void **state)
{
	struct fixture *f = *state;
	static const char *const devs[] = {"vda", "sdb", "sdaa", "hdc", "vdz"};
	static const char *const buses[] = {NULL, "virtio", "scsi", "sata",
	                                    "ide"};
	static const char *const caches[] = {NULL, "none", "writeback",
	                                     "writethrough", "directsync",
	                                     "unsafe"};
	static const char *const discards[] = {NULL, "unmap", "ignore"};
	struct vmd_xml_source srcs[6];
	char *all = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&all, &len);
	unsigned n = 0;

	file_source(&srcs[0], "raw", "/var/lib/vmdisk/i/disk");
	srcs[0].preallocated = true;
	file_source(&srcs[1], "qcow2", "/var/lib/vmdisk/i/disk.local");
	file_source(&srcs[2], "ploop", "/var/lib/vmdisk/i/disk/root.hds");
	file_source(&srcs[3], "raw", "/var/lib/vmdisk/it's <&> \"odd\"");
	memset(&srcs[4], 0, sizeof(srcs[4]));
	srcs[4].type = VMD_XML_BLOCK;
	snprintf(srcs[4].driver_type, sizeof(srcs[4].driver_type), "raw");
	snprintf(srcs[4].path, sizeof(srcs[4].path),
	         "/dev/mapper/vg-inst_disk-dmcrypt");
	rbd_source(&srcs[5]);
	snprintf(srcs[1].encryption_secret_uuid,
	         sizeof(srcs[1].encryption_secret_uuid), SECRET_UUID);

	/* One domain per (source, bus) holding its 18 option combinations
	 * keeps virt-xml-validate runs few. */
	for (size_t s = 0; s < 6; s++) {
		for (size_t b = 0; b < 5; b++) {
			for (size_t c = 0; c < 6; c++) {
				for (size_t d = 0; d < 3; d++) {
					struct vmd_xml_opts o = {
						.dev = devs[(c + d) % 5],
						.bus = buses[b],
						.cache = caches[c],
						.discard = discards[d],
						.boot_order = (unsigned)(c == 0 && d == 0 ? 1 + b : 0),
						.qos = d == 1 ? "total_bytes_sec=10485760,read_iops_sec=500"
						       : d == 2 ? "write_bytes_sec_max=1,size_iops_sec=4096"
						                : NULL,
					};
					char *xml = render_ok(&srcs[s], &o);

					fputs(xml, mem);
					free(xml);
					n++;
				}
			}
			fclose(mem);
			assert_valid_in_domain(f, all);
			free(all);
			all = NULL;
			mem = open_memstream(&all, &len);
		}
	}
	fclose(mem);
	free(all);
	assert_int_equal(n, 6 * 5 * 6 * 3);
}

static void test_shapes(void **state)
{
	struct fixture *f = *state;
	struct vmd_xml_source s;
	char *xml;

	/* SCSI: a controller address whose unit follows the letters. */
	file_source(&s, "raw", "/x/disk");
	xml = render_ok(&s, &(struct vmd_xml_opts){.dev = "sdc"});
	assert_contains(xml, "<target dev='sdc' bus='scsi'/>");
	assert_contains(xml, "unit='2'");
	free(xml);
	xml = render_ok(&s, &(struct vmd_xml_opts){.dev = "sdaa"});
	assert_contains(xml, "unit='26'");
	free(xml);

	/* io='native' only for a preallocated disk without the page cache. */
	s.preallocated = true;
	xml = render_ok(&s, &(struct vmd_xml_opts){.dev = "vda"});
	assert_contains(xml, "cache='none' io='native'");
	free(xml);
	xml = render_ok(&s, &(struct vmd_xml_opts){.dev = "vda",
	                                           .cache = "writeback"});
	assert_not_contains(xml, "io=");
	free(xml);

	/* The path is escaped, never cut. */
	file_source(&s, "raw", "/x/a'b&c");
	xml = render_ok(&s, &(struct vmd_xml_opts){.dev = "vda"});
	assert_contains(xml, "file='/x/a&apos;b&amp;c'");
	free(xml);

	/* rbd: hosts with ports, auth with the ceph secret. */
	rbd_source(&s);
	xml = render_ok(&s, &(struct vmd_xml_opts){.dev = "vdb"});
	assert_contains(xml, "<disk type='network' device='disk'>");
	assert_contains(xml, "protocol='rbd' name='vms/" INST "_disk'");
	assert_contains(xml, "<host name='127.0.0.1' port='6789'/>");
	/* No port: Ceph's monitor port (libvirt's schema wants one). */
	assert_contains(xml, "<host name='mon3.example' port='6789'/>");
	assert_contains(xml, "<host name='::1' port='6789'/>");
	assert_contains(xml, "<auth username='cinder'>");
	assert_contains(xml, "<secret type='ceph' uuid='" SECRET_UUID
	                "'/>");
	free(xml);

	/* LUKS opened by QEMU. */
	file_source(&s, "qcow2", "/x/disk");
	snprintf(s.encryption_secret_uuid, sizeof(s.encryption_secret_uuid),
	         SECRET_UUID);
	xml = render_ok(&s, &(struct vmd_xml_opts){.dev = "vda"});
	assert_contains(xml, "<encryption format='luks'>");
	assert_contains(xml, "<secret type='passphrase' uuid='"
	                SECRET_UUID "'/>");
	free(xml);

	/* QoS becomes <iotune>, boot order <boot>. */
	file_source(&s, "raw", "/x/disk");
	xml = render_ok(&s, &(struct vmd_xml_opts){
		.dev = "vda", .boot_order = 3,
		.qos = "total_bytes_sec=100,read_iops_sec=7"});
	assert_contains(xml, "<total_bytes_sec>100</total_bytes_sec>");
	assert_contains(xml, "<read_iops_sec>7</read_iops_sec>");
	assert_contains(xml, "<boot order='3'/>");
	free(xml);

	/* The <filesystem> form: loop for raw, nbd for qcow2, ploop. */
	static const struct {
		const char *driver, *type, *format;
	} fs[] = {{"raw", "loop", "raw"}, {"qcow2", "nbd", "qcow2"},
	          {"ploop", "ploop", "ploop"}};
	for (size_t i = 0; i < 3; i++) {
		char want[128];

		file_source(&s, fs[i].driver, "/x/disk");
		xml = render_ok(&s, &(struct vmd_xml_opts){
			.filesystem_target = "/mnt/guest root"});
		snprintf(want, sizeof(want), "<driver type='%s' format='%s'/>",
		         fs[i].type, fs[i].format);
		assert_contains(xml, want);
		assert_contains(xml, "<target dir='/mnt/guest root'/>");
		assert_valid_in_domain(f, xml);
		free(xml);
	}
}

static void test_hostile_values_refused(void **state)
{
	struct vmd_xml_source s;
	static const struct vmd_xml_opts bad[] = {
		{.dev = "vd'a"},
		{.dev = "vda", .bus = "virtio' foo='bar"},
		{.dev = "vda", .bus = "usb"},
		{.dev = "xda"},
		{.dev = "vd1"},
		{.dev = "vdabcdefg"},
		{.dev = "vda", .cache = "none'/><x y='"},
		{.dev = "vda", .cache = "default"},
		{.dev = "vda", .discard = "yes"},
		{.dev = "vda", .qos = "total_bytes_sec=10M"},
		{.dev = "vda", .qos = "total_bytes_sec=-1"},
		{.dev = "vda", .qos = "total_bytes_sec="},
		{.dev = "vda", .qos = "total_bytes_sec"},
		{.dev = "vda", .qos = "evil_key=1"},
		{.dev = "vda", .qos = "read_iops_sec=1,read_iops_sec=2"},
		{.dev = "vda", .qos = "read_iops_sec=99999999999999999999"},
		{.dev = "vda", .qos = "read_iops_sec=1</read_iops_sec><x>"},
		{.filesystem_target = "relative/dir"},
		{.filesystem_target = "/mnt/../etc"},
		{.filesystem_target = "/mnt/a\nb"},
	};

	(void)state;
	file_source(&s, "raw", "/x/disk");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		render_refused(&s, &bad[i]);

	/* A secret that is not a UUID never reaches the XML. */
	rbd_source(&s);
	snprintf(s.auth_secret_uuid, sizeof(s.auth_secret_uuid),
	         "x' uuid='y");
	render_refused(&s, &(struct vmd_xml_opts){.dev = "vda"});
	file_source(&s, "qcow2", "/x/disk");
	snprintf(s.encryption_secret_uuid, sizeof(s.encryption_secret_uuid),
	         "not-a-uuid");
	render_refused(&s, &(struct vmd_xml_opts){.dev = "vda"});

	/* Monitor addresses are host[:port] or [v6][:port], nothing else. */
	static const char *const hosts[] = {"h'x", "h:0", "h:65536", "h:12ab",
	                                    "[::1", "[]", "-h", "h:", "a b",
	                                    "[::1]x"};
	for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
		rbd_source(&s);
		snprintf(s.hosts[1], sizeof(s.hosts[1]), "%s", hosts[i]);
		render_refused(&s, &(struct vmd_xml_opts){.dev = "vda"});
	}
	/* Only the driver types libvirt knows for our disks. */
	file_source(&s, "vmdk", "/x/disk");
	render_refused(&s, &(struct vmd_xml_opts){.dev = "vda"});

	/* Bytes XML 1.0 cannot carry, even escaped (found by
	 * fuzz_libvirt_xml): control characters and invalid UTF-8. */
	static const char *const paths[] = {"/x/\001disk", "/x/\xfe\xff",
	                                    "/x/\xc3", "/x/\xed\xa0\x80",
	                                    "/x/\x7f"};
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		file_source(&s, "raw", paths[i]);
		render_refused(&s, &(struct vmd_xml_opts){.dev = "vda"});
		render_refused(&s, &(struct vmd_xml_opts){
		                           .filesystem_target = "/mnt"});
	}
	rbd_source(&s);
	snprintf(s.auth_user, sizeof(s.auth_user), "cin\033der");
	render_refused(&s, &(struct vmd_xml_opts){.dev = "vda"});
	file_source(&s, "raw", "/x/\xc3\xa9t\xc3\xa9");
	free(render_ok(&s, &(struct vmd_xml_opts){.dev = "vda"}));
	render_refused(&s, &(struct vmd_xml_opts){.filesystem_target =
	                                                  "/mnt/\x80"});
}

/* The file backends' disks through the public call and the CLI. */
static void test_backend_disks(void **state)
{
	struct fixture *f = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_config cfg;
	struct vmd_ctx *ctx;
	char *base = th_path(f->dir, "base.raw");
	char *instances = th_path(f->dir, "instances");
	char *conf = th_path(f->dir, "vmdisk.conf");
	char *text, *out = NULL, *errs = NULL;
	static const enum vmd_backend_kind kinds[] = {VMD_BACKEND_FLAT,
	                                              VMD_BACKEND_QCOW2};
	static const char *const names[] = {"flat", "qcow2"};

	th_write_pattern(base, 1u << 20, 7);
	vmd_config_defaults(&cfg);
	snprintf(cfg.instances_path, sizeof(cfg.instances_path), "%s",
	         instances);
	ctx = vmd_ctx_new(&cfg, &err);
	assert_non_null(ctx);
	for (size_t i = 0; i < 2; i++) {
		struct vmd_create_opts co = {.image = base, .backend = kinds[i]};
		char *xml = NULL;

		assert_int_equal(vmd_disk_create(ctx, INST, names[i], &co, NULL,
		                                 &err),
		                 0);
		assert_int_equal(
			vmd_disk_libvirt_xml(ctx, INST, names[i],
			                     &(struct vmd_xml_opts){
						     .dev = i ? "vdb" : "vda",
						     .discard = "unmap",
						     .boot_order = (unsigned)i + 1},
			                     &xml, &err),
			0);
		assert_contains(xml, i ? "type='qcow2'" : "type='raw'");
		assert_valid_in_domain(f, xml);
		free(xml);
		assert_int_equal(
			vmd_disk_libvirt_xml(ctx, INST, names[i],
			                     &(struct vmd_xml_opts){.dev = "vda",
			                                            .bus = "floppy"},
			                     &xml, &err),
			VMD_E_INVAL);
		assert_null(xml);
	}
	vmd_ctx_free(ctx);

	assert_true(asprintf(&text, "[DEFAULT]\ninstances_path = %s\n",
	                     instances) > 0);
	th_write_text(conf, text);
	free(text);
	assert_int_equal(
	        th_cli_run(conf, NULL, &out, &errs,
	                   (const char *[]){"libvirt-xml", INST, "qcow2",
	                                    "--dev", "sda", "--cache",
	                                    "writeback", "--qos",
	                                    "read_iops_sec=100", "--boot-order",
	                                    "2", NULL}),
	        0);
	assert_contains(out, "<target dev='sda' bus='scsi'/>");
	assert_contains(out, "<read_iops_sec>100</read_iops_sec>");
	assert_valid_in_domain(f, out);
	free(out);
	free(errs);
	assert_int_equal(
	        th_cli_run(conf, NULL, &out, &errs,
	                   (const char *[]){"libvirt-xml", INST, "qcow2",
	                                    "--qos", "read_iops_sec=1e3",
	                                    NULL}),
	        1);
	assert_string_equal(errs,
	                    "vmdisk: xml: --qos values are whole numbers\n");
	assert_string_equal(out, "");
	free(out);
	free(errs);
	assert_int_equal(
	        th_cli_run(conf, NULL, &out, &errs,
	                   (const char *[]){"libvirt-xml", INST, "flat",
	                                    "--filesystem", "/srv/root", NULL}),
	        0);
	assert_contains(out, "<driver type='loop' format='raw'/>");
	assert_valid_in_domain(f, out);
	free(out);
	free(errs);
	free(conf);
	free(base);
	free(instances);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(
	                test_every_combination_validates, setup, th_teardown),
	        cmocka_unit_test_setup_teardown(test_shapes, setup,
	                                        th_teardown),
	        cmocka_unit_test_setup_teardown(test_hostile_values_refused,
	                                        setup, th_teardown),
	        cmocka_unit_test_setup_teardown(test_backend_disks, setup,
	                                        th_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
