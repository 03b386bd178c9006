/* Proof that cgroup-BPF works on the booted test kernel: load a trivial cgroup_skb
 * program (r0 = 1: allow), attach it to a cgroup2 directory, query it back.
 * Static, no libbpf: it runs in a busybox initramfs. Prints one KMLAB-CGROUP-BPF line. */
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static long sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

static int fail(const char *what)
{
	printf("KMLAB-CGROUP-BPF: FAIL %s: %s\n", what, strerror(errno));
	return 1;
}

int main(int argc, char **argv)
{
	struct bpf_insn insns[] = {
		{.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 1},
		{.code = BPF_JMP | BPF_EXIT},
	};
	static char log[4096];
	union bpf_attr attr;
	uint32_t ids[4] = {0};
	int prog, cg;

	if (argc != 2) {
		fprintf(stderr, "usage: %s CGROUP2_DIR\n", argv[0]);
		return 2;
	}
	memset(&attr, 0, sizeof(attr));
	attr.prog_type = BPF_PROG_TYPE_CGROUP_SKB;
	attr.expected_attach_type = BPF_CGROUP_INET_EGRESS;
	attr.insns = (uintptr_t)insns;
	attr.insn_cnt = 2;
	attr.license = (uintptr_t)"GPL";
	attr.log_buf = (uintptr_t)log;
	attr.log_size = sizeof(log);
	attr.log_level = 1;
	prog = sys_bpf(BPF_PROG_LOAD, &attr);
	if (prog < 0)
		return fail("BPF_PROG_LOAD cgroup_skb");

	cg = open(argv[1], O_RDONLY | O_DIRECTORY);
	if (cg < 0)
		return fail("open cgroup2 directory");
	memset(&attr, 0, sizeof(attr));
	attr.target_fd = cg;
	attr.attach_bpf_fd = prog;
	attr.attach_type = BPF_CGROUP_INET_EGRESS;
	if (sys_bpf(BPF_PROG_ATTACH, &attr) < 0)
		return fail("BPF_PROG_ATTACH");

	memset(&attr, 0, sizeof(attr));
	attr.query.target_fd = cg;
	attr.query.attach_type = BPF_CGROUP_INET_EGRESS;
	attr.query.prog_ids = (uintptr_t)ids;
	attr.query.prog_cnt = 4;
	if (sys_bpf(BPF_PROG_QUERY, &attr) < 0)
		return fail("BPF_PROG_QUERY");
	printf("KMLAB-CGROUP-BPF: ok attached=%u prog_id=%u cgroup=%s\n",
	       attr.query.prog_cnt, ids[0], argv[1]);
	return attr.query.prog_cnt == 1 ? 0 : 1;
}
