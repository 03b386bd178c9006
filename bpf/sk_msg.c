/* sk_msg hook of the sockmap acceleration, attached to the sockhash that sockops.c fills.
 *
 * Runs on every sendmsg() of a socket in the sockhash. The peer of a local socket is the
 * socket whose own tuple is this one swapped (local <-> remote): after connect4 rewrote a
 * ClusterIP to a pod IP, the client's remote tuple is exactly the server's local tuple.
 * If the peer is in the map, the message is queued on the peer's ingress (BPF_F_INGRESS)
 * as if TCP had delivered it; if not (a peer on another node, or outside the cgroup), the
 * helper finds nothing and the message goes the normal way: the verdict is always SK_PASS
 * (the helper's SK_DROP on a miss must not become the verdict).
 */
#include <uapi/linux/bpf.h>
#include "kmesh_node.h"
#include "sock_key.h"

#define KMN_MAP(fd) ((void *)bpf_pseudo_fd(1, fd))

static __always_inline void kmn_count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(KMN_MAP(KMN_FD_COUNTERS), &idx);
	if (c)
		*c += 1;
}

int kmn_sk_msg(struct sk_msg_md *msg)
{
	__u32 family = msg->family;
	if (family != KMN_AF_INET && family != KMN_AF_INET6)
		return SK_PASS;
	struct kmn_sock_key peer = {};
	KMN_SOCK_ADDR(peer.local_ip, msg, remote);
	KMN_SOCK_ADDR(peer.remote_ip, msg, local);
	peer.local_port = KMN_REMOTE_PORT(msg);
	peer.remote_port = msg->local_port;
	if (bpf_msg_redirect_hash(msg, KMN_MAP(KMN_FD_SOCKHASH), &peer, BPF_F_INGRESS) == SK_PASS)
		kmn_count(KMN_CTR_ACCEL_REDIRECT);
	else
		kmn_count(KMN_CTR_ACCEL_PASS);
	return SK_PASS;
}
