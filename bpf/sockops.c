/* sockops hook of the sockmap acceleration (`kmesh-node run --accelerate`).
 *
 * When a TCP socket of the attached cgroup becomes established (either side), it enters
 * the sockhash under its own 4-tuple (struct kmn_sock_key). sk_msg.c then redirects what
 * one socket sends straight into its peer's receive queue when the peer is in the map too,
 * i.e. when both ends live on this node: the bytes skip TCP/IP and the veths entirely.
 * Sockets leave the sockhash by themselves when they close (the kernel unlinks them).
 *
 * Only the established callbacks are handled: they are delivered without setting any
 * BPF_SOCK_OPS_*_CB_FLAG, so sockets pay nothing further for this program.
 */
#include <uapi/linux/bpf.h>
#include "kmesh_node.h"
#include "sock_key.h"

#define KMN_MAP(fd) ((void *)bpf_pseudo_fd(1, fd))

int kmn_sockops(struct bpf_sock_ops *skops)
{
	__u32 op = skops->op;
	if (op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	__u32 family = skops->family;
	if (family != KMN_AF_INET && family != KMN_AF_INET6)
		return 1;
	struct kmn_sock_key key = {};
	KMN_SOCK_ADDR(key.local_ip, skops, local);
	KMN_SOCK_ADDR(key.remote_ip, skops, remote);
	key.local_port = skops->local_port;
	key.remote_port = KMN_REMOTE_PORT(skops);
	/* A full map (KMN_SOCKHASH_ENTRIES) only means this connection takes the normal
	 * path: the result is deliberately ignored. */
	bpf_sock_hash_update(skops, KMN_MAP(KMN_FD_SOCKHASH), &key, BPF_NOEXIST);
	return 1;
}
