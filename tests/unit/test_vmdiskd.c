/*
 * Tests of the privileged helper: the request parser and policy in-process,
 * then the real vmdiskd binary (started through the product runner in a
 * thread) on a temporary socket, with a policy granting the current uid
 * some ops and not others: what is allowed reaches its handler, what is not
 * is refused and audited, and malformed, over-long, unknown or mistyped
 * requests get an error reply while the daemon goes on serving.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <vmdisk/config.h>
#include <vmdisk/log.h>

#include <json-c/json.h>

#include "helpers.h"
#include "privhelper_server.h"
#include "config_text.h"
#include "runner.h"

#define KEY_ID "0d3b6f2e-1c1a-4d5e-9f00-123456789abc"
#define OTHER_KEY_ID "0d3b6f2e-1c1a-4d5e-9f00-123456789abd"
#define PLANTED_KEY "VMDISKD-PLANTED-KEY-5e1f0a9b8c7d"
#define TEST_VG_STDIO "vmdstdiovg"

/* ---- parser, in-process ---- */

static int parse(const char *line, struct vmd_priv_request *req,
                 struct vmd_error *err)
{
	vmd_error_clear(err);
	return vmd_priv_request_parse(line, strlen(line), req, err);
}

static void test_parse_good(void **state)
{
	struct vmd_priv_request req;
	struct vmd_error err;
	char *json = NULL;

	(void)state;
	assert_int_equal(parse("{\"op\":\"lvm_create\",\"vg\":\"vg0\","
	                       "\"lv\":\"inst_disk\",\"size\":1048576,"
	                       "\"sparse\":true}",
	                       &req, &err),
	                 0);
	assert_int_equal(req.op, VMD_PRIV_LVM_CREATE);
	assert_string_equal(req.vg, "vg0");
	assert_string_equal(req.lv, "inst_disk");
	assert_int_equal(req.size, 1048576);
	assert_true(req.sparse);
	assert_int_equal(vmd_priv_request_to_json(&req, &json, &err), 0);
	assert_contains(json, "\"op\":\"lvm_create\"");
	free(json);

	assert_int_equal(parse("  {\"op\":\"ping\"}  ", &req, &err), 0);
	assert_int_equal(parse("{\"op\":\"lvm_remove\",\"vg\":\"vg0\","
	                       "\"lv\":\"a\",\"volume_clear\":\"zero\","
	                       "\"volume_clear_size\":0}",
	                       &req, &err),
	                 0);
	assert_int_equal(req.volume_clear, VMD_PRIV_CLEAR_ZERO);
	assert_int_equal(parse("{\"op\":\"luks_open\",\"vg\":\"vg0\","
	                       "\"lv\":\"a\",\"key_id\":\"" KEY_ID "\"}",
	                       &req, &err),
	                 0);
	assert_string_equal(req.key_id, KEY_ID);
}

static void test_parse_refused(void **state)
{
	static const char *const bad[] = {
		"",
		"{",
		"[]",
		"\"ping\"",
		"{\"op\":\"ping\"} x",
		"{\"op\":\"ping\"}{}",
		"{}",
		"{\"op\":\"reboot\"}",
		"{\"op\":1}",
		"{\"op\":\"ping\",\"vg\":\"vg0\"}",            /* not taken */
		"{\"op\":\"ping\",\"extra\":1}",               /* unknown */
		"{\"op\":\"lvm_create\",\"vg\":\"vg0\",\"lv\":\"a\"}", /* no size */
		"{\"op\":\"lvm_create\",\"vg\":\"vg0\",\"lv\":\"a\",\"size\":\"1\"}",
		"{\"op\":\"lvm_create\",\"vg\":\"vg0\",\"lv\":\"a\",\"size\":0}",
		"{\"op\":\"lvm_create\",\"vg\":\"vg0\",\"lv\":\"a\",\"size\":-5}",
		"{\"op\":\"lvm_create\",\"vg\":\"vg0\",\"lv\":\"a\","
		"\"size\":99999999999999999999}",
		"{\"op\":\"lvm_create\",\"vg\":\"vg0\",\"lv\":\"a\",\"size\":1.5}",
		"{\"op\":\"lvm_create\",\"vg\":\"vg0\",\"lv\":\"../a\",\"size\":1}",
		"{\"op\":\"lvm_create\",\"vg\":\"-vg\",\"lv\":\"a\",\"size\":1}",
		"{\"op\":\"lvm_create\",\"vg\":\"vg0\",\"lv\":\"a_tmeta\",\"size\":1}",
		"{\"op\":\"lvm_create\",\"vg\":[\"vg0\"],\"lv\":\"a\",\"size\":1}",
		"{\"op\":\"lvm_create\",\"vg\":{\"a\":1},\"lv\":\"a\",\"size\":1}",
		"{\"op\":\"lvm_create\",\"vg\":\"vg0\",\"lv\":\"a\",\"size\":1,"
		"\"sparse\":\"yes\"}",
		"{\"op\":\"lvm_create\",\"vg\":\"vg0\\u0000x\",\"lv\":\"a\",\"size\":1}",
		"{\"op\":\"mkfs\",\"vg\":\"vg0\",\"lv\":\"a\",\"fs\":\"btrfs\"}",
		"{\"op\":\"luks_open\",\"vg\":\"vg0\",\"lv\":\"a\",\"key_id\":\"k\"}",
		"{\"op\":\"lvm_write_image\",\"vg\":\"vg0\",\"lv\":\"a\","
		"\"base\":\"/etc/shadow\",\"format\":\"raw\"}",
		/* A base is read as a named format, never probed. */
		"{\"op\":\"lvm_write_image\",\"vg\":\"vg0\",\"lv\":\"a\","
		"\"base\":\"0123abcd\"}",
		"{\"op\":\"lvm_write_image\",\"vg\":\"vg0\",\"lv\":\"a\","
		"\"format\":\"qcow2\"}",
		"{\"op\":\"lvm_info\",\"vg\":\"vg0\",\"lv\":\"a\",\"size\":1}",
		"{\"op\":\"lvm_remove\",\"vg\":\"vg0\",\"lv\":\"a\",\"key_id\":"
		"\"3c2e8f4a-9b1d-4e6f-a8c7-5d4b3a2f1e0d\"}",
		"{'op':'ping'}",
		/* Issue 14, defect 13's class: json-c cuts a name at "\u0000",
		 * so this second "op" replaced the first. */
		"{\"op\":\"lvm_remove\",\"vg\":\"vg0\",\"lv\":\"a\","
		"\"op\\u0000\":\"lvm_info\"}",
	};
	struct vmd_priv_request req;
	struct vmd_error err;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = parse(bad[i], &req, &err);

		/* An op nobody serves is unsupported; the rest invalid. */
		bool unknown_op = strstr(bad[i], "\"reboot\"");

		if (rc == 0)
			fail_msg("accepted: %s", bad[i]);
		assert_errc(rc, &err,
		            unknown_op ? VMD_E_UNSUPPORTED : VMD_E_INVAL);
		assert_contains(err.msg, "request: ");
	}
	/* NUL inside the line, and a line at the limit. */
	vmd_error_clear(&err);
	assert_errc(vmd_priv_request_parse("{\"op\":\"ping\"}\0", 14, &req,
	                                   &err),
	            &err, VMD_E_INVAL);
	{
		char *big = malloc(VMD_PRIV_LINE_MAX);

		memset(big, ' ', VMD_PRIV_LINE_MAX);
		memcpy(big, "{\"op\":\"ping\"}", 13);
		vmd_error_clear(&err);
		assert_errc(vmd_priv_request_parse(big, VMD_PRIV_LINE_MAX, &req,
		                                   &err),
		            &err, VMD_E_INVAL);
		assert_contains(err.msg, "too long");
		free(big);
	}
}

static void test_reply_parse(void **state)
{
	struct vmd_priv_reply rep;
	struct vmd_error err = VMD_ERROR_INIT;
	const char *ok = "{\"ok\":true,\"path\":\"/dev/vg0/a\",\"size\":4194304,"
	                 "\"lv_size\":20971520,\"sparse\":true}";
	const char *no = "{\"ok\":false,\"code\":\"refused\",\"error\":\"x\"}";

	(void)state;
	assert_int_equal(vmd_priv_reply_parse(ok, strlen(ok), &rep, &err), 0);
	assert_string_equal(rep.path, "/dev/vg0/a");
	assert_int_equal(rep.size, 4194304);
	assert_int_equal(rep.lv_size, 20971520);
	assert_true(rep.sparse);
	assert_int_equal(vmd_priv_reply_parse(no, strlen(no), &rep, &err),
	                 VMD_E_REFUSED);
	vmd_error_clear(&err);
	assert_int_equal(vmd_priv_reply_parse("nope", 4, &rep, &err),
	                 VMD_E_EXTERNAL);
}

/* As root the library runs the ops in-process, through the same schema. */
static void test_run_in_process(void **state)
{
	struct vmd_config cfg;
	struct vmd_priv_request ping = {.op = VMD_PRIV_PING};
	struct vmd_priv_request bad_lv = {.op = VMD_PRIV_LVM_RESIZE,
	                                  .fields = VMD_PF_VG | VMD_PF_LV |
	                                            VMD_PF_SIZE,
	                                  .vg = "vg0",
	                                  .lv = "../etc",
	                                  .size = 1};
	struct vmd_priv_reply rep;
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	if (geteuid() != 0)
		skip();
	vmd_config_defaults(&cfg);
	/* No daemon at the default socket is needed. */
	snprintf(cfg.vmdiskd_socket, sizeof(cfg.vmdiskd_socket),
	         "/nonexistent/vmdiskd.sock");
	assert_int_equal(vmd_priv_run(&cfg, &ping, &rep, &err), 0);
	assert_int_equal(vmd_priv_run(&cfg, &bad_lv, &rep, &err),
	                 VMD_E_INVAL);
	assert_string_equal(err.msg, "request: value not allowed for 'lv'");
	vmd_error_clear(&err);
	bad_lv.fields &= ~(unsigned)VMD_PF_SIZE;
	snprintf(bad_lv.lv, sizeof(bad_lv.lv), "inst_disk");
	assert_int_equal(vmd_priv_run(&cfg, &bad_lv, &rep, &err),
	                 VMD_E_INVAL);
	assert_string_equal(err.msg, "request: missing field 'size'");
	/* Every op that touches a volume, the luks ones too, reaches only
	 * the configured VG: not /dev/mapper/<lv>, /dev/md/<lv> or another
	 * VG. Refused before any tool runs or any key is fetched. */
	snprintf(cfg.images_volume_group, sizeof(cfg.images_volume_group),
	         "vmdtestvg");
	for (int op = 0; op < VMD_PRIV_OP_COUNT; op++) {
		static const char *const vgs[] = {"mapper", "md", "othervg"};
		struct vmd_priv_request req = {.op = (enum vmd_priv_op)op};

		if (!(vmd_priv_fields_required(req.op) & VMD_PF_LV))
			continue;
		req.fields = vmd_priv_fields_required(req.op);
		snprintf(req.lv, sizeof(req.lv), "inst_disk");
		snprintf(req.key_id, sizeof(req.key_id), "%s", KEY_ID);
		snprintf(req.fs, sizeof(req.fs), "ext4");
		snprintf(req.base, sizeof(req.base), "base");
		snprintf(req.format, sizeof(req.format), "raw");
		req.size = 1 << 20;
		for (size_t v = 0; v < sizeof(vgs) / sizeof(vgs[0]); v++) {
			snprintf(req.vg, sizeof(req.vg), "%s", vgs[v]);
			vmd_error_clear(&err);
			if (vmd_priv_run(&cfg, &req, &rep, &err) != VMD_E_REFUSED ||
			    strcmp(err.msg, "lvm: volume group not served here"))
				fail_msg("%s on %s/inst_disk: '%s'",
				         vmd_priv_op_name(req.op), vgs[v], err.msg);
		}
	}
}

/* ---- root's one-shot helper (vmdiskd --stdio) ---- */

struct sink_lines {
	char text[16384];
	size_t len;
};

static void sink_collect(enum vmd_log_level level, const char *line,
                         void *opaque)
{
	struct sink_lines *s = opaque;
	int n = snprintf(s->text + s->len, sizeof(s->text) - s->len, "%d %s\n",
	                 (int)level, line);

	if (n > 0 && (size_t)n < sizeof(s->text) - s->len)
		s->len += (size_t)n;
}

/* The configuration handed to the helper reads back the same through the
 * file parser, or is refused: never handed on changed. */
static void test_config_text(void **state)
{
	struct vmd_config cfg, back;
	struct vmd_error err = VMD_ERROR_INIT;
	char *text = NULL, *again = NULL;

	(void)state;
	vmd_config_defaults(&cfg);
	cfg.images_type = VMD_BACKEND_LVM;
	cfg.sparse_logical_volumes = true;
	cfg.volume_clear_size = 7;
	cfg.max_image_virtual_size = 12345ull << 20;
	cfg.log_level = VMD_LOG_DEBUG;
	snprintf(cfg.images_volume_group, sizeof(cfg.images_volume_group),
	         "vg0");
	assert_int_equal(vmd_config_to_text(&cfg, &text, &err), 0);
	assert_contains(text, "images_volume_group = vg0\n");
	vmd_config_defaults(&back);
	assert_int_equal(vmd_config_load_string(&back, text, &err), 0);
	assert_int_equal(vmd_config_to_text(&back, &again, &err), 0);
	assert_string_equal(text, again);
	assert_int_equal(back.images_type, VMD_BACKEND_LVM);
	assert_true(back.sparse_logical_volumes);
	assert_int_equal(back.volume_clear_size, 7);
	assert_int_equal(back.max_image_virtual_size, 12345ull << 20);
	assert_int_equal(back.log_level, VMD_LOG_DEBUG);
	free(text);
	free(again);
	/* Set in code, refused by the parser: not handed on. */
	snprintf(cfg.images_volume_group, sizeof(cfg.images_volume_group),
	         "vg0\nkey_file_dir = /tmp");
	assert_int_equal(vmd_config_to_text(&cfg, &text, &err), VMD_E_CONFIG);
	assert_null(text);
}

static int reset_log(void **state)
{
	(void)state;
	vmd_log_set_sink(NULL, NULL);
	vmd_log_setup(VMD_LOG_TO_NONE, VMD_LOG_ERROR, "test");
	return 0;
}

/* As root, vmd_priv_run hands the request and the caller's in-memory
 * configuration to a one-shot vmdiskd, which audits root's call and
 * answers; its log lines come back into ours at their level. */
static void test_stdio_helper(void **state)
{
	struct vmd_config cfg;
	struct vmd_priv_request ping = {.op = VMD_PRIV_PING};
	struct vmd_priv_request req = {.op = VMD_PRIV_LVM_INFO,
	                               .fields = VMD_PF_VG | VMD_PF_LV};
	struct vmd_priv_reply rep;
	struct vmd_error err = VMD_ERROR_INIT;
	/* Static: a failed assertion leaves the test before it removes the
	 * sink (reset_log does, as teardown). */
	static struct sink_lines lines;
	char *dir, *audit, *text;
	char want[160];

	(void)state;
	if (geteuid() != 0)
		skip();
	dir = th_mkdtemp("vmdiskd-stdio");
	audit = th_path(dir, "audit.log");
	vmd_config_defaults(&cfg);
	snprintf(cfg.vmdiskd_socket, sizeof(cfg.vmdiskd_socket),
	         "/nonexistent/vmdiskd.sock");
	snprintf(cfg.vmdiskd_audit_log, sizeof(cfg.vmdiskd_audit_log), "%s",
	         audit);
	/* Set in code, not in any file: only the helper's copy of our
	 * configuration knows it. */
	snprintf(cfg.images_volume_group, sizeof(cfg.images_volume_group),
	         TEST_VG_STDIO);
	vmd_log_setup(VMD_LOG_TO_NONE, VMD_LOG_DEBUG, "test");
	vmd_log_set_sink(sink_collect, &lines);
	assert_int_equal(vmd_priv_run(&cfg, &ping, &rep, &err), 0);
	assert_int_equal(rep.fd, -1);
	snprintf(req.vg, sizeof(req.vg), TEST_VG_STDIO);
	snprintf(req.lv, sizeof(req.lv), "hostdata");
	assert_int_equal(vmd_priv_run(&cfg, &req, &rep, &err), VMD_E_REFUSED);
	assert_string_equal(err.msg, "lvm: volume not served here");
	vmd_error_clear(&err);
	snprintf(req.vg, sizeof(req.vg), "othervg");
	assert_int_equal(vmd_priv_run(&cfg, &req, &rep, &err), VMD_E_REFUSED);
	assert_string_equal(err.msg, "lvm: volume group not served here");
	vmd_error_clear(&err);
	vmd_log_set_sink(NULL, NULL);
	vmd_log_setup(VMD_LOG_TO_NONE, VMD_LOG_ERROR, "test");

	text = th_read_text(audit);
	snprintf(want, sizeof(want),
	         " uid=0 pid=%d op=ping target=- allowed reason=\"root's own "
	         "call (--stdio)\"",
	         (int)getpid());
	assert_contains(text, want);
	snprintf(want, sizeof(want), " uid=0 pid=%d op=ping target=- done",
	         (int)getpid());
	assert_contains(text, want);
	assert_contains(text, "op=lvm_info target=" TEST_VG_STDIO
	                      "/hostdata failed reason=\"lvm: volume not "
	                      "served here\"");
	assert_contains(text, "op=lvm_info target=othervg/hostdata failed");
	free(text);
	/* The helper's audit line, at debug, reached our sink as ours. */
	lines.text[lines.len] = '\0';
	snprintf(want, sizeof(want), "%d vmdiskd: ", (int)VMD_LOG_DEBUG);
	assert_contains(lines.text, want);
	assert_contains(lines.text, "op=ping target=- done");

	/* No helper binary: the step fails and says so; nothing hangs. */
	{
		char *saved = strdup(getenv("VMDISK_VMDISKD")
		                             ? getenv("VMDISK_VMDISKD")
		                             : "");
		char *missing = th_path(dir, "no-vmdiskd");

		setenv("VMDISK_VMDISKD", missing, 1);
		assert_int_equal(vmd_priv_run(&cfg, &ping, &rep, &err),
		                 VMD_E_NOTFOUND);
		assert_string_equal(err.msg, "vmdiskd: no-vmdiskd not found");
		vmd_error_clear(&err);
		if (saved[0])
			setenv("VMDISK_VMDISKD", saved, 1);
		else
			unsetenv("VMDISK_VMDISKD");
		free(saved);
		free(missing);
	}
	th_rmtree(dir);
	free(audit);
	free(dir);
}

/* Receive the two descriptors a child sent over `sock`. */
static void recv_two_fds(int sock, int fds[2])
{
	union {
		struct cmsghdr align;
		char bytes[CMSG_SPACE(2 * sizeof(int))];
	} ctl;
	char byte;
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1,
	                    .msg_control = ctl.bytes,
	                    .msg_controllen = sizeof(ctl.bytes)};
	struct cmsghdr *c;

	assert_int_equal(recvmsg(sock, &mh, 0), 1);
	c = CMSG_FIRSTHDR(&mh);
	if (!c || c->cmsg_type != SCM_RIGHTS)
		fail_msg("no descriptors from the child");
	memcpy(fds, CMSG_DATA(c), 2 * sizeof(int));
}

/* `vmdiskd --stdio` serves root only: a socket made by another uid (its
 * SO_PEERCRED), or no socket at all, is refused before anything is read,
 * and the command line takes no daemon options with it. */
static void test_stdio_refusals(void **state)
{
	const char *exe = getenv("VMDISK_VMDISKD");
	struct vmd_run_opts opts = {.timeout_ms = 20000};
	struct vmd_run_result res = {0};
	struct vmd_error err = VMD_ERROR_INIT;
	const char *argv[] = {exe, "--stdio", NULL};
	const char *with_config[] = {exe, "--stdio", "--config", "/dev/null",
	                             NULL};
	char *out = NULL, *errs = NULL;
	int pass[2], fds[2], status;
	char reply[256];
	pid_t pid;

	(void)state;
	if (geteuid() != 0 || !exe)
		skip();
	assert_int_equal(th_run(with_config, NULL, &out, &errs), 2);
	free(out);
	free(errs);
	/* stdin /dev/null */
	assert_int_equal(th_run(argv, NULL, &out, &errs), 1);
	assert_contains(errs, "--stdio needs a Unix socket");
	free(out);
	free(errs);
	/* A socketpair made by uid 65534, handed to us (root). */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, pass), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		union {
			struct cmsghdr align;
			char bytes[CMSG_SPACE(2 * sizeof(int))];
		} ctl;
		char byte = 'x';
		struct iovec iov = {.iov_base = &byte, .iov_len = 1};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1,
		                    .msg_control = ctl.bytes,
		                    .msg_controllen = sizeof(ctl.bytes)};
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		int sv[2];

		memset(ctl.bytes, 0, sizeof(ctl.bytes));
		if (setresgid(65534, 65534, 65534) != 0 ||
		    setresuid(65534, 65534, 65534) != 0 ||
		    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
			_exit(1);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(2 * sizeof(int));
		memcpy(CMSG_DATA(c), sv, 2 * sizeof(int));
		_exit(sendmsg(pass[1], &mh, 0) == 1 ? 0 : 1);
	}
	recv_two_fds(pass[0], fds);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(status, 0);
	close(pass[0]);
	close(pass[1]);
	{
		static const char frame[] = "vmdiskd-stdio 10\n[vmdisk]\n\n\n"
		                            "{\"op\":\"ping\"}\n";

		assert_int_equal(send(fds[0], frame, sizeof(frame) - 1, 0),
		                 (ssize_t)sizeof(frame) - 1);
	}
	opts.stdio_fd = fds[1];
	assert_true(vmd_run("test", argv, &opts, &res, &err) < 0);
	assert_int_equal(res.exit_status, 1);
	assert_contains(res.err, "not allowed");
	vmd_run_result_free(&res);
	close(fds[1]);
	/* No reply: the helper answered nothing (EOF, or ECONNRESET as the
	 * frame it never read was dropped with its socket). */
	assert_true(recv(fds[0], reply, sizeof(reply), MSG_DONTWAIT) <= 0);
	close(fds[0]);
}

/* ---- which LVs are vmdisk's (issue 14 item 8) ---- */

#define LV_INST "6f1e0a8c-3b5d-4e2f-9a7b-1c2d3e4f5a6b"
#define TEST_VG "vmdtestvg"

/* LV names no disk of vmdisk has: a host's volumes, and near misses of
 * <instance>_<disk> with '_' in the disk name doubled. */
static const char *const not_disk_names[] = {
	"home", "root", "swap", "hostdata", "inst_disk", "vmdisk-thinpool",
	LV_INST, LV_INST "_", LV_INST "-disk", LV_INST "disk",
	"6f1e0a8c-3b5d-4e2f-9a7b-1c2d3e4f5a6_disk", /* 35 hex digits */
	"6f1e0a8c+3b5d-4e2f-9a7b-1c2d3e4f5a6b_disk", /* not a UUID */
	LV_INST "_a_b",     /* a lone '_' is no escaped name's */
	LV_INST "_disk_",   /* nor a trailing one */
	LV_INST "___x",     /* "_x": a disk name starts alnum */
	LV_INST "_.disk",   /* so does this */
	/* 65 characters: one more than a disk name */
	LV_INST "_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
};

static void test_lvm_disk_names(void **state)
{
	static const char *const good[] = {
		LV_INST "_disk", LV_INST "_disk.local", LV_INST "_disk__eph0",
		LV_INST "_a__b__c", LV_INST "_0", LV_INST "_x-y.z",
		"6F1E0A8C-3B5D-4E2F-9A7B-1C2D3E4F5A6B_disk",
		/* 64 characters: the longest disk name */
		LV_INST "_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (!vmd_lvm_name_is_disk(good[i]))
			fail_msg("'%s' refused as a disk's LV", good[i]);
	for (size_t i = 0; i < sizeof(not_disk_names) / sizeof(not_disk_names[0]);
	     i++)
		if (vmd_lvm_name_is_disk(not_disk_names[i]))
			fail_msg("'%s' taken as a disk's LV", not_disk_names[i]);
}

/* The tag check on lv_tags as lvs's JSON report gives it (parsed with
 * json-c, the length json-c reports). */
static void test_lvm_tags(void **state)
{
	static const struct {
		const char *json;
		bool ours;
	} cases[] = {
		{"\"vmdisk\"", true},
		{"\"backup,vmdisk\"", true},
		{"\"vmdisk,backup\"", true},
		{"\"a,vmdisk,b\"", true},
		{"\"\"", false},
		{"\"backup\"", false},
		{"\"vmdisk2\"", false},
		{"\"xvmdisk\"", false},
		{"\"vmdis\"", false},
		{"\"VMDISK\"", false},
		{"\"vmdisk\\u0000\"", false},
		{"\"vmdisk\\u0000x,backup\"", false},
		{"\"backup,vmdisk\\u0000\"", false},
		{"\"vmdisk-old,myvmdisk\"", false},
		{"\" vmdisk\"", false},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_object *o = json_tokener_parse(cases[i].json);

		assert_non_null(o);
		if (vmd_lvm_tags_have_ours(json_object_get_string(o),
		                           (size_t)json_object_get_string_len(o)) !=
		    cases[i].ours)
			fail_msg("lv_tags %s: want %s", cases[i].json,
			         cases[i].ours ? "ours" : "not ours");
		json_object_put(o);
	}
	assert_false(vmd_lvm_tags_have_ours(NULL, 0));
}

/* A request for an LV of the served VG whose name is not a disk's is
 * refused by every op that names a volume, before any tool runs or any
 * key is fetched (in-process: the handlers the daemon and the root
 * library run). */
static void test_lvm_not_a_disk_refused(void **state)
{
	struct vmd_config cfg;
	struct vmd_priv_reply rep;
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	vmd_config_defaults(&cfg);
	snprintf(cfg.images_volume_group, sizeof(cfg.images_volume_group),
	         TEST_VG);
	for (int op = 0; op < VMD_PRIV_OP_COUNT; op++) {
		struct vmd_priv_request req = {.op = (enum vmd_priv_op)op};

		if (!(vmd_priv_fields_required(req.op) & VMD_PF_LV))
			continue;
		req.fields = vmd_priv_fields_required(req.op);
		snprintf(req.vg, sizeof(req.vg), TEST_VG);
		snprintf(req.key_id, sizeof(req.key_id), "%s", KEY_ID);
		snprintf(req.fs, sizeof(req.fs), "ext4");
		snprintf(req.base, sizeof(req.base), "base");
		snprintf(req.format, sizeof(req.format), "raw");
		req.size = 1 << 20;
		for (size_t i = 0;
		     i < sizeof(not_disk_names) / sizeof(not_disk_names[0]);
		     i++) {
			snprintf(req.lv, sizeof(req.lv), "%s",
			         not_disk_names[i]);
			vmd_error_clear(&err);
			/* Names the request schema refuses never get here. */
			if (vmd_priv_request_check(&req, &err) < 0)
				continue;
			if (vmd_priv_dispatch(&vmd_priv_ops_default, &cfg, &req,
			                      &rep, &err) != VMD_E_REFUSED ||
			    strcmp(err.msg, "lvm: volume not served here"))
				fail_msg("%s on %s: '%s' (%s)",
				         vmd_priv_op_name(req.op), req.lv,
				         err.msg, err.detail);
		}
	}
}

/* ---- policy ---- */

static void write_mode(const char *path, const char *text, mode_t mode)
{
	th_write_text(path, text);
	assert_int_equal(chmod(path, mode), 0);
}

static void test_policy(void **state)
{
	char *dir = th_mkdtemp("policy");
	char *p = th_path(dir, "policy");
	char text[256], why[160];
	struct vmd_priv_policy *pol = NULL;
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	snprintf(text, sizeof(text), "[allow]\nuid.%u = all\ngid.%u = luks_open\n",
	         (unsigned)getuid(), (unsigned)getgid());
	write_mode(p, text, 0600);
	assert_int_equal(vmd_priv_policy_load(p, &pol, &err), 0);
	assert_true(vmd_priv_policy_allows(pol, getuid(), getgid(),
	                                   VMD_PRIV_LVM_CREATE, why,
	                                   sizeof(why)));
	/* "all" never grants encryption ops; the gid grant names one. */
	assert_false(vmd_priv_policy_allows(pol, getuid(), getgid(),
	                                    VMD_PRIV_LUKS_FORMAT, why,
	                                    sizeof(why)));
	assert_string_equal(why, "no grant for luks_format");
	assert_true(vmd_priv_policy_allows(pol, getuid(), getgid(),
	                                   VMD_PRIV_LUKS_OPEN, why,
	                                   sizeof(why)));
	assert_contains(why, "gid.");
	/* Another uid with another gid gets nothing. */
	assert_false(vmd_priv_policy_allows(pol, 54321, 54321, VMD_PRIV_PING,
	                                    why, sizeof(why)));
	vmd_priv_policy_free(pol);

	/* Group- or world-writable: refused. */
	write_mode(p, text, 0620);
	assert_int_equal(vmd_priv_policy_load(p, &pol, &err), VMD_E_REFUSED);
	assert_null(pol);
	/* Unknown op, unknown section, unknown key form: refused. */
	vmd_error_clear(&err);
	write_mode(p, "[allow]\nuid.0 = ping, reboot\n", 0600);
	assert_int_equal(vmd_priv_policy_load(p, &pol, &err), VMD_E_CONFIG);
	vmd_error_clear(&err);
	write_mode(p, "[deny]\nuid.0 = ping\n", 0600);
	assert_int_equal(vmd_priv_policy_load(p, &pol, &err), VMD_E_CONFIG);
	vmd_error_clear(&err);
	write_mode(p, "[allow]\nuser.0 = ping\n", 0600);
	assert_int_equal(vmd_priv_policy_load(p, &pol, &err), VMD_E_CONFIG);
	/* Issue 14, defect 9: a second rule for the same user or group (the
	 * same key, or the same id by name and number, or a continuation
	 * line) is refused naming the key and both lines, not merged. */
	vmd_error_clear(&err);
	write_mode(p, "[allow]\nuid.0 = ping\ngid.0 = ping\nuid.0 = all\n",
	           0600);
	assert_int_equal(vmd_priv_policy_load(p, &pol, &err), VMD_E_CONFIG);
	assert_null(pol);
	assert_string_equal(err.msg, "policy: second rule for 'uid.0' "
	                             "(lines 2 and 4)");
	vmd_error_clear(&err);
	write_mode(p, "[allow]\nuid.root = ping\nuid.0 = lvm_create\n", 0600);
	assert_int_equal(vmd_priv_policy_load(p, &pol, &err), VMD_E_CONFIG);
	assert_string_equal(err.msg, "policy: second rule for 'uid.0' "
	                             "(lines 2 and 3)");
	vmd_error_clear(&err);
	write_mode(p, "[allow]\nuid.0 = ping\n  lvm_remove\n", 0600);
	assert_int_equal(vmd_priv_policy_load(p, &pol, &err), VMD_E_CONFIG);
	assert_string_equal(err.msg, "policy: continuation line for 'uid.0' "
	                             "(lines 2 and 3)");
	/* The same id as a user and as a group are two rules. */
	vmd_error_clear(&err);
	write_mode(p, "[allow]\nuid.0 = ping\ngid.0 = ping\n", 0600);
	assert_int_equal(vmd_priv_policy_load(p, &pol, &err), 0);
	vmd_priv_policy_free(pol);
	th_rmtree(dir);
	free(p);
	free(dir);
}

/* ---- the real daemon ---- */

struct daemon {
	char *dir;
	char *conf;
	char *sock;
	char *policy;
	char *audit;
	struct vmd_config cfg;
	pthread_t th;
	int status;
	char *out, *errout;
};

static struct daemon D;

static void *daemon_thread(void *arg)
{
	struct daemon *d = arg;
	char exe[4096];
	const char *bd = getenv("VMDISK_BUILD_DIR");
	const char *argv[] = {exe, "--config", d->conf, "--exit-after", "200",
	                      "--read-timeout-ms", "1000", "-v", NULL};

	snprintf(exe, sizeof(exe), "%s/tools/vmdiskd", bd ? bd : "build");
	d->status = th_run(argv, NULL, &d->out, &d->errout);
	return NULL;
}

static int connect_sock(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int start_daemon(void **state)
{
	char text[1024];

	(void)state;
	vmd_log_setup(VMD_LOG_TO_NONE, VMD_LOG_ERROR, "test");
	D.dir = th_mkdtemp("vmdiskd");
	D.conf = th_path(D.dir, "vmdisk.conf");
	D.sock = th_path(D.dir, "vmdiskd.sock");
	D.policy = th_path(D.dir, "policy");
	D.audit = th_path(D.dir, "audit.log");
	snprintf(text, sizeof(text),
	         "[vmdisk]\nvmdiskd_socket = %s\nvmdiskd_policy_file = %s\n"
	         "vmdiskd_audit_log = %s\nlog_target = stderr\n"
	         "key_file_dir = %s/keys\nimages_volume_group = " TEST_VG "\n",
	         D.sock, D.policy, D.audit, D.dir);
	th_write_text(D.conf, text);
	snprintf(text, sizeof(text),
	         "[allow]\nuid.%u = ping, lvm_create, lvm_resize, lvm_info, "
	         "lvm_open_read, lvm_write_image, luks_format, luks_close\n"
	         "gid.%u = mkfs\n",
	         (unsigned)getuid(), (unsigned)getgid());
	th_write_text(D.policy, text);
	{
		char *keys = th_path(D.dir, "keys");
		char *key = th_path(keys, KEY_ID);

		mkdir(keys, 0700);
		th_write_text(key, PLANTED_KEY);
		chmod(key, 0600);
		free(key);
		free(keys);
	}
	chmod(D.policy, 0600);
	vmd_config_defaults(&D.cfg);
	snprintf(D.cfg.vmdiskd_socket, sizeof(D.cfg.vmdiskd_socket), "%s",
	         D.sock);
	if (pthread_create(&D.th, NULL, daemon_thread, &D) != 0)
		return -1;
	for (int i = 0; i < 500; i++) {
		int fd;
		struct stat st;

		if (stat(D.sock, &st) == 0) {
			/* Listening once the mode is set (bind comes first). */
			if ((st.st_mode & 0777) == 0660) {
				fd = connect_sock(D.sock);
				if (fd >= 0) {
					/* Counted as one connection. */
					send(fd, "{\"op\":\"ping\"}\n", 14,
					     MSG_NOSIGNAL);
					char b[256];
					(void)!recv(fd, b, sizeof(b), 0);
					close(fd);
					return 0;
				}
			}
		}
		usleep(10000);
	}
	return -1;
}

static int stop_daemon(void **state)
{
	(void)state;
	/* Use up its connections so that it exits on its own. */
	for (;;) {
		char b[256];
		int fd = connect_sock(D.sock);

		if (fd < 0)
			break;
		send(fd, "{\"op\":\"ping\"}\n", 14, MSG_NOSIGNAL);
		(void)!recv(fd, b, sizeof(b), 0);
		close(fd);
	}
	pthread_join(D.th, NULL);
	if (D.status != 0)
		fprintf(stderr, "vmdiskd exited %d: %s\n", D.status, D.errout);
	assert_false(th_exists(D.sock));
	/* Its whole log (debug level): no key, no key id. */
	assert_non_null(D.errout);
	assert_contains(D.errout, "volume group not served here");
	assert_not_contains(D.errout, PLANTED_KEY);
	assert_not_contains(D.errout, KEY_ID);
	assert_not_contains(D.errout, OTHER_KEY_ID);
	th_rmtree(D.dir);
	free(D.out);
	free(D.errout);
	return D.status == 0 ? 0 : -1;
}

/* ---- socket activation (data/vmdiskd.socket) ---- */

/* Run the real vmdiskd as systemd's socket unit starts it: `fd` as
 * descriptor 3, LISTEN_PID its own pid, LISTEN_FDS `nfds`; its stderr
 * into `errpath`. Returns its exit status once it stops. When `sock` is
 * set, first talk to it there: one ping, whose reply goes to `reply`. */
static int run_activated(const char *exe, const char *conf, int fd,
                         const char *nfds, const char *errpath,
                         const char *sock, char *reply, size_t replysz)
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		char pidbuf[32];
		int errfd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		if (errfd < 0 || dup2(errfd, 2) < 0 ||
		    (fd != 3 && dup2(fd, 3) < 0) ||
		    fcntl(3, F_SETFD, 0) < 0)
			_exit(126);
		snprintf(pidbuf, sizeof(pidbuf), "%d", (int)getpid());
		setenv("LISTEN_PID", pidbuf, 1);
		setenv("LISTEN_FDS", nfds, 1);
		execl(exe, exe, "--config", conf, "--exit-after", "1",
		      (char *)NULL);
		_exit(127);
	}
	if (sock) {
		int c = connect_sock(sock);
		ssize_t n;

		struct timeval tv = {.tv_sec = 20};

		assert_true(c >= 0);
		setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		assert_int_equal(send(c, "{\"op\":\"ping\"}\n", 14,
		                      MSG_NOSIGNAL), 14);
		n = recv(c, reply, replysz - 1, MSG_WAITALL);
		reply[n > 0 ? n : 0] = '\0';
		close(c);
		/* No answer: it is not serving this socket (and will not
		 * stop on its own). */
		if (n <= 0)
			kill(pid, SIGTERM);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static int listening_unix_socket(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 8), 0);
	return fd;
}

/* Started by vmdiskd.socket, vmdiskd serves the listening socket it was
 * handed (not its configured path, which it leaves alone), answers a
 * granted caller through it and leaves it for systemd to remove; handed
 * anything but one listening Unix stream socket it refuses to start. */
static void test_socket_activation(void **state)
{
	const char *exe = getenv("VMDISK_VMDISKD");
	char *dir, *conf, *cfgsock, *actsock, *policy, *audit, *errpath, *errs;
	char text[1024], reply[256];
	int fd;

	(void)state;
	if (!exe)
		skip();
	dir = th_mkdtemp("vmdiskd-act");
	conf = th_path(dir, "vmdisk.conf");
	cfgsock = th_path(dir, "configured.sock");
	actsock = th_path(dir, "activated.sock");
	policy = th_path(dir, "policy");
	audit = th_path(dir, "audit.log");
	errpath = th_path(dir, "stderr");
	snprintf(text, sizeof(text),
	         "[vmdisk]\nvmdiskd_socket = %s\nvmdiskd_policy_file = %s\n"
	         "vmdiskd_audit_log = %s\nlog_target = stderr\n",
	         cfgsock, policy, audit);
	th_write_text(conf, text);
	snprintf(text, sizeof(text), "[allow]\nuid.%u = ping\n",
	         (unsigned)getuid());
	th_write_text(policy, text);
	chmod(policy, 0600);

	fd = listening_unix_socket(actsock);
	assert_int_equal(run_activated(exe, conf, fd, "1", errpath, actsock,
	                               reply, sizeof(reply)), 0);
	close(fd);
	assert_string_equal(reply, "{\"ok\":true}\n");
	assert_false(th_exists(cfgsock));
	assert_true(th_exists(actsock));
	unlink(actsock);
	errs = th_read_text(audit);
	assert_contains(errs, "op=ping target=- done");
	free(errs);

	/* Bound but not listening. */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	{
		struct sockaddr_un sa = {.sun_family = AF_UNIX};

		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", actsock);
		assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)),
		                 0);
	}
	assert_int_equal(run_activated(exe, conf, fd, "1", errpath, NULL,
	                               NULL, 0), 1);
	close(fd);
	unlink(actsock);
	errs = th_read_text(errpath);
	assert_contains(errs, "the inherited socket is not listening");
	/* One name, not "vmdiskd: vmdiskd: ...". */
	assert_not_contains(errs, "vmdiskd: vmdiskd:");
	free(errs);
	/* A datagram socket. */
	fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	assert_int_equal(run_activated(exe, conf, fd, "1", errpath, NULL,
	                               NULL, 0), 1);
	close(fd);
	errs = th_read_text(errpath);
	assert_contains(errs, "not a stream socket");
	free(errs);
	/* Not a socket at all. */
	fd = open("/dev/null", O_RDWR);
	assert_int_equal(run_activated(exe, conf, fd, "1", errpath, NULL,
	                               NULL, 0), 1);
	close(fd);
	errs = th_read_text(errpath);
	assert_contains(errs, "the inherited socket is not a socket");
	free(errs);
	/* A TCP socket, listening on loopback. */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	{
		struct sockaddr_in sin = {.sin_family = AF_INET,
		                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

		assert_int_equal(bind(fd, (struct sockaddr *)&sin,
		                      sizeof(sin)), 0);
		assert_int_equal(listen(fd, 1), 0);
	}
	assert_int_equal(run_activated(exe, conf, fd, "1", errpath, NULL,
	                               NULL, 0), 1);
	close(fd);
	errs = th_read_text(errpath);
	assert_contains(errs, "not a Unix socket");
	free(errs);
	/* Two sockets where vmdiskd serves one. */
	fd = listening_unix_socket(actsock);
	assert_int_equal(run_activated(exe, conf, fd, "2", errpath, NULL,
	                               NULL, 0), 1);
	close(fd);
	unlink(actsock);
	errs = th_read_text(errpath);
	assert_contains(errs, "must pass one socket");
	free(errs);
	assert_false(th_exists(cfgsock));

	th_rmtree(dir);
	free(dir);
	free(conf);
	free(cfgsock);
	free(actsock);
	free(policy);
	free(audit);
	free(errpath);
}

/* The last line of the audit log. */
static char *last_audit(void)
{
	char *text = th_read_text(D.audit), *last, *nl;
	size_t len = strlen(text);

	assert_true(len > 0 && text[len - 1] == '\n');
	text[len - 1] = '\0';
	nl = strrchr(text, '\n');
	last = strdup(nl ? nl + 1 : text);
	free(text);
	return last;
}

static void assert_audit(const char *op, const char *target,
                         const char *decision, const char *reason)
{
	char *line = last_audit();
	char want[256];

	snprintf(want, sizeof(want), " uid=%u pid=%d op=%s target=%s %s",
	         (unsigned)getuid(), (int)getpid(), op, target, decision);
	if (!strstr(line, want) || (reason && !strstr(line, reason)))
		fail_msg("audit line '%s' lacks '%s' / '%s'", line, want,
		         reason ? reason : "");
	free(line);
}

static void test_ping_allowed(void **state)
{
	struct vmd_priv_request req = {.op = VMD_PRIV_PING};
	struct vmd_priv_reply rep;
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	assert_int_equal(vmd_priv_call(&D.cfg, &req, &rep, &err), 0);
	assert_audit("ping", "-", "done", "ok");
}

/* The daemon works on its configured volume group only (this one has
 * none): an allowed request for another VG fails without touching it. */
static void test_volume_group_not_served(void **state)
{
	struct vmd_priv_request req = {.op = VMD_PRIV_LVM_CREATE,
	                               .fields = VMD_PF_VG | VMD_PF_LV |
	                                         VMD_PF_SIZE,
	                               .vg = "vg0",
	                               .lv = "inst_disk",
	                               .size = 1 << 20};
	struct vmd_priv_reply rep;
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	assert_int_equal(vmd_priv_call(&D.cfg, &req, &rep, &err),
	                 VMD_E_REFUSED);
	assert_string_equal(err.msg, "lvm: volume group not served here");
	assert_audit("lvm_create", "vg0/inst_disk", "failed",
	             "volume group not served here");
}

/* The daemon serves its VG's disks only: an allowed request for an LV
 * there whose name is not <instance>_<disk> (a host volume sharing the
 * VG) is refused before any tool runs, and audited as failed. */
static void test_volume_not_a_disk(void **state)
{
	static const enum vmd_priv_op ops[] = {
		VMD_PRIV_LVM_CREATE, VMD_PRIV_LVM_INFO,
		VMD_PRIV_LVM_OPEN_READ, VMD_PRIV_LVM_WRITE_IMAGE,
		VMD_PRIV_LVM_RESIZE, VMD_PRIV_MKFS,
		VMD_PRIV_LUKS_FORMAT, VMD_PRIV_LUKS_CLOSE,
	};
	struct vmd_priv_reply rep;
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		struct vmd_priv_request req = {.op = ops[i]};

		req.fields = vmd_priv_fields_required(req.op);
		snprintf(req.vg, sizeof(req.vg), TEST_VG);
		snprintf(req.lv, sizeof(req.lv), "hostdata");
		snprintf(req.key_id, sizeof(req.key_id), "%s", KEY_ID);
		snprintf(req.fs, sizeof(req.fs), "ext4");
		req.size = 1 << 20;
		vmd_error_clear(&err);
		if (vmd_priv_call(&D.cfg, &req, &rep, &err) != VMD_E_REFUSED ||
		    strcmp(err.msg, "lvm: volume not served here"))
			fail_msg("%s on " TEST_VG "/hostdata: '%s'",
			         vmd_priv_op_name(req.op), err.msg);
		assert_audit(vmd_priv_op_name(req.op), TEST_VG "/hostdata",
		             "failed", "volume not served here");
	}
}

/* A key_id makes an lvm op an encryption op too: lvm_resize is granted,
 * luks_open is not, so a resize with a key is refused and one without
 * goes through to the handler. */
static void test_key_id_needs_encryption_grant(void **state)
{
	struct vmd_priv_request req = {.op = VMD_PRIV_LVM_RESIZE,
	                               .fields = VMD_PF_VG | VMD_PF_LV |
	                                         VMD_PF_SIZE | VMD_PF_KEY_ID,
	                               .vg = "vg0",
	                               .lv = "inst_disk",
	                               .size = 1 << 20,
	                               .key_id = KEY_ID};
	struct vmd_priv_reply rep;
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	assert_int_equal(vmd_priv_call(&D.cfg, &req, &rep, &err),
	                 VMD_E_REFUSED);
	assert_string_equal(err.msg, "vmdiskd: not allowed");
	assert_audit("lvm_resize", "vg0/inst_disk", "refused",
	             "no grant for luks_open");
	req.fields &= ~(unsigned)VMD_PF_KEY_ID;
	vmd_error_clear(&err);
	assert_int_equal(vmd_priv_call(&D.cfg, &req, &rep, &err),
	                 VMD_E_REFUSED);
	assert_string_equal(err.msg, "lvm: volume group not served here");
	assert_audit("lvm_resize", "vg0/inst_disk", "failed",
	             "volume group not served here");
	/* lvm_create's extra grant is luks_format, which this uid has. */
	req.op = VMD_PRIV_LVM_CREATE;
	req.fields |= VMD_PF_KEY_ID;
	vmd_error_clear(&err);
	assert_int_equal(vmd_priv_call(&D.cfg, &req, &rep, &err),
	                 VMD_E_REFUSED);
	assert_audit("lvm_create", "vg0/inst_disk", "failed",
	             "volume group not served here");
}

static void test_gid_grant(void **state)
{
	struct vmd_priv_request req = {.op = VMD_PRIV_MKFS,
	                               .fields = VMD_PF_VG | VMD_PF_LV |
	                                         VMD_PF_FS,
	                               .vg = "vg0",
	                               .lv = "inst_eph0",
	                               .fs = "ext4"};
	struct vmd_priv_reply rep;
	struct vmd_error err = VMD_ERROR_INIT;
	char *text, want[64];

	(void)state;
	assert_int_equal(vmd_priv_call(&D.cfg, &req, &rep, &err),
	                 VMD_E_REFUSED);
	text = th_read_text(D.audit);
	snprintf(want, sizeof(want), "allowed reason=\"granted by gid.%u\"",
	         (unsigned)getgid());
	assert_contains(text, want);
	free(text);
}

static void test_unauthorised_refused_and_audited(void **state)
{
	struct vmd_priv_request req = {.op = VMD_PRIV_LUKS_OPEN,
	                               .fields = VMD_PF_VG | VMD_PF_LV |
	                                         VMD_PF_KEY_ID,
	                               .vg = "vg0",
	                               .lv = "inst_disk",
	                               .key_id = KEY_ID};
	struct vmd_priv_reply rep;
	struct vmd_error err = VMD_ERROR_INIT;
	char *text;

	(void)state;
	assert_int_equal(vmd_priv_call(&D.cfg, &req, &rep, &err),
	                 VMD_E_REFUSED);
	assert_string_equal(err.msg, "vmdiskd: not allowed");
	assert_audit("luks_open", "vg0/inst_disk", "refused",
	             "reason=\"no grant for luks_open\"");
	/* The key id is not the daemon's to write down. */
	text = th_read_text(D.audit);
	assert_not_contains(text, KEY_ID);
	free(text);

	/* lvm_remove is not granted either. */
	req = (struct vmd_priv_request){.op = VMD_PRIV_LVM_REMOVE,
	                                .fields = VMD_PF_VG | VMD_PF_LV,
	                                .vg = "vg0",
	                                .lv = "inst_disk"};
	vmd_error_clear(&err);
	assert_int_equal(vmd_priv_call(&D.cfg, &req, &rep, &err),
	                 VMD_E_REFUSED);
	assert_audit("lvm_remove", "vg0/inst_disk", "refused",
	             "no grant for lvm_remove");
}

/* luks_format reaches only volumes of the daemon's VG (this daemon has
 * none): a request for a device-mapper device (/dev/mapper/x) or another
 * VG is refused before the key is fetched, whether the key exists or
 * not, and neither key nor key id reaches the audit log. */
static void test_luks_format_in_daemon(void **state)
{
	static const char *const vgs[] = {"mapper", "md", "vmdisk-test-no-vg"};
	static const char *const keys[] = {KEY_ID, OTHER_KEY_ID};
	struct vmd_priv_request req = {.op = VMD_PRIV_LUKS_FORMAT,
	                               .fields = VMD_PF_VG | VMD_PF_LV |
	                                         VMD_PF_KEY_ID,
	                               .lv = "inst_disk"};
	struct vmd_priv_reply rep;
	struct vmd_error err = VMD_ERROR_INIT;
	char *text, target[128];

	(void)state;
	for (size_t v = 0; v < sizeof(vgs) / sizeof(vgs[0]); v++) {
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
			snprintf(req.vg, sizeof(req.vg), "%s", vgs[v]);
			snprintf(req.key_id, sizeof(req.key_id), "%s", keys[k]);
			vmd_error_clear(&err);
			assert_int_equal(vmd_priv_call(&D.cfg, &req, &rep, &err),
			                 VMD_E_REFUSED);
			assert_string_equal(err.msg,
			                    "lvm: volume group not served here");
			snprintf(target, sizeof(target), "%s/inst_disk", vgs[v]);
			assert_audit("luks_format", target, "failed",
			             "volume group not served here");
		}
	}
	text = th_read_text(D.audit);
	assert_not_contains(text, KEY_ID);
	assert_not_contains(text, OTHER_KEY_ID);
	assert_not_contains(text, PLANTED_KEY);
	free(text);
}

/* Send raw bytes, return the reply line (malloc'ed). */
static char *raw_call(const void *buf, size_t len)
{
	char reply[VMD_PRIV_LINE_MAX + 1];
	size_t got = 0;
	int fd = connect_sock(D.sock);

	assert_true(fd >= 0);
	/* An over-long line may be cut off by the daemon mid-send. */
	(void)send(fd, buf, len, MSG_NOSIGNAL);
	for (;;) {
		ssize_t n = recv(fd, reply + got, sizeof(reply) - 1 - got, 0);

		if (n <= 0)
			break;
		got += (size_t)n;
		if (memchr(reply, '\n', got))
			break;
	}
	close(fd);
	reply[got] = '\0';
	return strdup(reply);
}

static void expect_refused(const char *line, const char *why)
{
	char *r = raw_call(line, strlen(line));

	if (!strstr(r, "{\"ok\":false,") || !strstr(r, why))
		fail_msg("request '%.60s' got '%s', wanted '%s'", line, r, why);
	free(r);
	assert_audit("?", "-", "refused", why);
}

static void assert_still_serving(void)
{
	char *r = raw_call("{\"op\":\"ping\"}\n", 14);

	assert_string_equal(r, "{\"ok\":true}\n");
	free(r);
}

static void test_bad_requests_refused(void **state)
{
	char *big;

	(void)state;
	expect_refused("{\"op\":\"ping\"\n", "not valid JSON");
	assert_still_serving();
	expect_refused("not json at all\n", "not valid JSON");
	expect_refused("{\"op\":\"ping\",\"x\":1}\n", "unknown field");
	assert_still_serving();
	expect_refused("{\"op\":\"format_disk\"}\n", "unknown op");
	expect_refused("{\"op\":\"lvm_create\",\"vg\":\"vg0\",\"lv\":\"a\","
	               "\"size\":\"big\"}\n",
	               "wrong type for 'size'");
	expect_refused("{\"op\":\"lvm_create\",\"vg\":\"vg0\",\"lv\":\"a/../b\","
	               "\"size\":1}\n",
	               "value not allowed for 'lv'");
	assert_still_serving();

	big = malloc(3 * VMD_PRIV_LINE_MAX);
	memset(big, 'a', 3 * VMD_PRIV_LINE_MAX);
	memcpy(big, "{\"op\":\"", 7);
	big[3 * VMD_PRIV_LINE_MAX - 1] = '\n';
	{
		char *r = raw_call(big, 3 * VMD_PRIV_LINE_MAX);

		assert_contains(r, "line too long");
		free(r);
	}
	free(big);
	assert_audit("?", "-", "refused", "line too long");
	assert_still_serving();
}

static void test_silent_client_times_out(void **state)
{
	int quiet = connect_sock(D.sock);
	char b[256];
	ssize_t n;

	(void)state;
	assert_true(quiet >= 0);
	(void)!send(quiet, "{\"op\":", 6, MSG_NOSIGNAL);
	/* Another client is served while that one says nothing. */
	assert_still_serving();
	n = recv(quiet, b, sizeof(b) - 1, 0);
	assert_true(n > 0);
	b[n] = '\0';
	assert_contains(b, "read timed out");
	close(quiet);
}

/* Pings from uid/gid 65534 through setpriv (util-linux): `n` connections
 * opened at once and left idle until the daemon has accepted them all,
 * then a ping sent on each; their replies, a line each, or "EACCES" when
 * it cannot connect. */
static char *ping_as_nobody(int n)
{
	static const char script[] =
		"import socket, sys, time\n"
		"conns = []\n"
		"for i in range(int(sys.argv[2])):\n"
		"    s = socket.socket(socket.AF_UNIX)\n"
		"    try:\n"
		"        s.connect(sys.argv[1])\n"
		"    except PermissionError:\n"
		"        print('EACCES'); sys.exit(0)\n"
		"    conns.append(s)\n"
		"time.sleep(0.3)\n" /* all accepted; less than the 1 s timeout */
		"for s in conns:\n"
		"    try:\n"
		"        s.sendall(b'{\"op\":\"ping\"}\\n')\n"
		"    except OSError:\n"
		"        pass\n"
		"    print(s.recv(4096).decode().strip())\n";
	char count[16];
	const char *argv[] = {"setpriv", "--reuid=65534", "--regid=65534",
	                      "--clear-groups", "python3", "-c", script,
	                      D.sock, count, NULL};
	char *out = NULL, *errout = NULL;

	snprintf(count, sizeof(count), "%d", n);
	if (th_run(argv, NULL, &out, &errout) != 0)
		fail_msg("setpriv python3: %s", errout);
	free(errout);
	return out;
}

static void test_other_uid(void **state)
{
	char *out, *text, want[96];

	(void)state;
	if (geteuid() != 0)
		skip();
	/* The socket is 0660: another user cannot even connect. */
	assert_int_equal(chmod(D.dir, 0711), 0);
	out = ping_as_nobody(1);
	assert_string_equal(out, "EACCES\n");
	free(out);
	/* Opened up (as if nobody were in the socket's group): the policy,
	 * which grants uid 65534 nothing, refuses and audits it. 24 idle
	 * connections at once, more than the 16 client slots: each is
	 * refused on accept, none takes a slot (busy) or waits for its line
	 * (read timed out). */
	assert_int_equal(chmod(D.sock, 0666), 0);
	out = ping_as_nobody(24);
	{
		const char *p = out;
		int refused = 0;

		while ((p = strstr(p, "{\"ok\":false,\"code\":\"refused\"")))
			refused++, p++;
		if (refused != 24 || strstr(out, "busy") ||
		    strstr(out, "timed out"))
			fail_msg("24 connections of uid 65534: %s", out);
	}
	free(out);
	text = last_audit();
	snprintf(want, sizeof(want), " uid=65534 pid=");
	assert_contains(text, want);
	assert_contains(text, "op=? target=- refused "
	                "reason=\"no grant for any operation\"");
	free(text);
	assert_still_serving();
	assert_int_equal(chmod(D.sock, 0660), 0);
}

/* The pid of the test daemon: the vmdiskd whose command line names
 * D.conf. */
static pid_t daemon_pid(void)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	pid_t pid = -1;

	assert_non_null(d);
	while (pid < 0 && (e = readdir(d))) {
		char path[300], cmd[4096];
		FILE *f;
		size_t n;

		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		n = fread(cmd, 1, sizeof(cmd) - 1, f);
		fclose(f);
		for (size_t i = 0; i < n; i++)
			if (cmd[i] == '\0')
				cmd[i] = ' ';
		cmd[n] = '\0';
		if (strstr(cmd, "vmdiskd --config ") && strstr(cmd, D.conf))
			pid = (pid_t)atoi(e->d_name);
	}
	closedir(d);
	return pid;
}

/* A request the audit log cannot record does not run: with the log at
 * the daemon's file size limit, an allowed ping is refused (and the
 * daemon lives on); with the limit lifted, it is served again. */
static void test_unaudited_request_refused(void **state)
{
	pid_t pid = daemon_pid();
	struct stat st;
	struct rlimit full, none;
	struct vmd_priv_request req = {.op = VMD_PRIV_PING};
	struct vmd_priv_reply rep;
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	assert_true(pid > 0);
	assert_int_equal(stat(D.audit, &st), 0);
	/* The soft limit only: it can be lifted again without
	 * CAP_SYS_RESOURCE. */
	assert_int_equal(prlimit(pid, RLIMIT_FSIZE, NULL, &none), 0);
	full = none;
	full.rlim_cur = (rlim_t)st.st_size;
	assert_int_equal(prlimit(pid, RLIMIT_FSIZE, &full, NULL), 0);
	assert_int_equal(vmd_priv_call(&D.cfg, &req, &rep, &err),
	                 VMD_E_REFUSED);
	assert_string_equal(err.msg, "vmdiskd: not allowed");
	assert_int_equal(prlimit(pid, RLIMIT_FSIZE, &none, NULL), 0);
	vmd_error_clear(&err);
	assert_int_equal(vmd_priv_call(&D.cfg, &req, &rep, &err), 0);
	assert_audit("ping", "-", "done", "ok");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_good),
		cmocka_unit_test(test_parse_refused),
		cmocka_unit_test(test_reply_parse),
		cmocka_unit_test(test_policy),
		cmocka_unit_test(test_run_in_process),
		cmocka_unit_test(test_config_text),
		cmocka_unit_test_teardown(test_stdio_helper, reset_log),
		cmocka_unit_test(test_stdio_refusals),
		cmocka_unit_test(test_lvm_disk_names),
		cmocka_unit_test(test_lvm_tags),
		cmocka_unit_test(test_lvm_not_a_disk_refused),
		cmocka_unit_test(test_socket_activation),
		/* One group, so the TAP output has one plan: the daemon
		 * starts before its first test and stops after its last. */
		cmocka_unit_test_setup(test_ping_allowed, start_daemon),
		cmocka_unit_test(test_volume_group_not_served),
		cmocka_unit_test(test_volume_not_a_disk),
		cmocka_unit_test(test_key_id_needs_encryption_grant),
		cmocka_unit_test(test_gid_grant),
		cmocka_unit_test(test_unauthorised_refused_and_audited),
		cmocka_unit_test(test_luks_format_in_daemon),
		cmocka_unit_test(test_unaudited_request_refused),
		cmocka_unit_test(test_bad_requests_refused),
		cmocka_unit_test(test_silent_client_times_out),
		cmocka_unit_test_teardown(test_other_uid, stop_daemon),
	};

	vmd_log_setup(VMD_LOG_TO_NONE, VMD_LOG_ERROR, "test");
	return cmocka_run_group_tests_name("vmdiskd", tests, NULL, NULL);
}
