/* cgroup sock_addr hooks: in-kernel service load balancing at connect()/sendmsg() time.
 *
 * connect4/connect6 (TCP and connected UDP) and sendmsg4/sendmsg6 (unconnected UDP)
 * rewrite a Service ClusterIP:port to one ready endpoint; recvmsg4/recvmsg6 rewrite the
 * source of UDP replies back to the service address. Compiled by bcc; every map is created and pinned
 * by kmesh_node/datapath.py and referenced here by fd (-DKMN_FD_*), so a new agent run can
 * load fresh programs against the maps the previous run pinned.
 *
 * Map shape (memory follows the load): each KMN_FD_* map is an ARRAY_OF_MAPS of
 * KMN_*_SLOTS slots over shards (see kmesh_node.h): open-addressed ARRAY tables for
 * frontends, NO_PREALLOC hashes for overflow endpoints. To resize, the agent builds new
 * shards, fills them, and re-points slots: a program sees, per slot, either the old or the
 * new shard, both complete.
 */
#include <uapi/linux/bpf.h>
#include <linux/in.h>
#include "kmesh_node.h"

#ifndef KMN_STRESS_LOOPS
#define KMN_STRESS_LOOPS 0
#endif

#define KMN_MAP(fd) ((void *)bpf_pseudo_fd(1, fd))

#if KMN_STRESS_LOOPS > 0
/* Experiment knob (CPU suites): a bounded busy loop of KMN_STRESS_LOOPS iterations. */
static __always_inline void kmn_stress(void)
{
	volatile __u32 sink = 0;
	for (__u32 i = 0; i < KMN_STRESS_LOOPS; i++)
		sink += i;
}
#else
static __always_inline void kmn_stress(void) {}
#endif

static __always_inline void kmn_count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(KMN_MAP(KMN_FD_COUNTERS), &idx);
	if (c)
		*c += 1;
}

static __always_inline __u32 kmn_pick(struct kmn_fe_hdr *h, __u32 count)
{
	if (h->policy == KMN_POLICY_ROUND_ROBIN) {
		/* bcc's LLVM target cannot use the value of an atomic fetch-add (BPF_FETCH
		 * needs -mcpu=v3), so read the cursor, then advance it atomically: concurrent
		 * connects on several CPUs may share a slot, the sequence never stalls. */
		__u32 cur = h->rr;
		__sync_fetch_and_add(&h->rr, 1);
		return cur % count;
	}
	return bpf_get_prandom_u32() % count;
}

/* 32-bit multiplicative hash (mirrored in structs.hash32()); fold first: ClusterIPs
 * differ in their last octets, the high bits of x. */
static __always_inline __u32 kmn_hash(__u32 x)
{
	x ^= x >> 16;
	return x * KMN_HASH_MUL;
}

/* The overflow shard holding keys whose hash input is `x`. */
static __always_inline void *kmn_shard(void *outer, __u32 x, __u32 slots)
{
	__u32 slot = (kmn_hash(x) >> 16) & (slots - 1);
	return bpf_map_lookup_elem(outer, &slot);
}

/* Overflow endpoint `idx` of endpoint set `epset`. */
static __always_inline void *kmn_overflow(void *outer, __u32 epset, __u32 idx)
{
	struct kmn_epx_key ek = {.epset = epset, .idx = idx};
	void *inner = kmn_shard(outer, epset * KMN_EPSET_MUL + idx, KMN_EP_SLOTS);
	if (!inner)
		return 0;
	return bpf_map_lookup_elem(inner, &ek);
}

/* The live frontend-table entry for {addr, port, proto}, or 0. */
static __always_inline struct kmn_fe4_ent *kmn_find4(__u32 addr, __u16 port, __u8 proto)
{
	__u32 h = kmn_hash(addr ^ ((__u32)port << 16) ^ proto);
	__u32 slot = h >> (32 - KMN_FE_SLOTS_BITS);
	void *shard = bpf_map_lookup_elem(KMN_MAP(KMN_FD_FE4), &slot);
	if (!shard)
		return 0;
	__u32 home = h >> (32 - KMN_FE_SLOTS_BITS - KMN_FE4_ENTRIES_BITS);
#pragma unroll
	for (int p = 0; p < KMN_PROBES; p++) {
		__u32 i = (home + p) & (KMN_FE4_ENTRIES - 1);
		struct kmn_fe4_ent *e = bpf_map_lookup_elem(shard, &i);
		if (!e || !e->key.used)
			return 0;
		if (e->key.addr == addr && e->key.port == port && e->key.proto == proto)
			return e;
	}
	return 0;
}

static __always_inline struct kmn_fe6_ent *kmn_find6(struct kmn_fe6_key *key)
{
	__u32 h = kmn_hash(key->addr[0] ^ key->addr[1] ^ key->addr[2] ^ key->addr[3] ^
			   ((__u32)key->port << 16) ^ key->proto);
	__u32 slot = h >> (32 - KMN_FE_SLOTS_BITS);
	void *shard = bpf_map_lookup_elem(KMN_MAP(KMN_FD_FE6), &slot);
	if (!shard)
		return 0;
	__u32 home = h >> (32 - KMN_FE_SLOTS_BITS - KMN_FE6_ENTRIES_BITS);
#pragma unroll
	for (int p = 0; p < KMN_PROBES; p++) {
		__u32 i = (home + p) & (KMN_FE6_ENTRIES - 1);
		struct kmn_fe6_ent *e = bpf_map_lookup_elem(shard, &i);
		if (!e || !e->key.used)
			return 0;
		if (e->key.addr[0] == key->addr[0] && e->key.addr[1] == key->addr[1] &&
		    e->key.addr[2] == key->addr[2] && e->key.addr[3] == key->addr[3] &&
		    e->key.port == key->port && e->key.proto == key->proto)
			return e;
	}
	return 0;
}

/* Pick an endpoint for ctx's IPv4 destination; 0 when the destination is no frontend
 * or the frontend has no ready endpoint (counted). */
static __always_inline int kmn_lb4(struct bpf_sock_addr *ctx, struct kmn_ep4 *out)
{
	struct kmn_fe4_ent *v =
		kmn_find4(ctx->user_ip4, (__u16)ctx->user_port, (__u8)ctx->protocol);
	if (!v)
		return 0;
	__u32 count = v->hdr.count;
	if (count == 0) {
		kmn_count(KMN_CTR_NO_ENDPOINT);
		return 0;
	}
	__u32 i = kmn_pick(&v->hdr, count);
	if (i < KMN_INLINE4) {
		*out = v->ep[i];
		return 1;
	}
	struct kmn_ep4 *e = kmn_overflow(KMN_MAP(KMN_FD_EP4), v->hdr.epset, i);
	if (!e)
		return 0;
	*out = *e;
	return 1;
}

static __always_inline void kmn_remember4(struct bpf_sock_addr *ctx, __u32 vip, __u32 vport,
					  struct kmn_ep4 *ep)
{
	struct kmn_orig4 *o = bpf_sk_storage_get(KMN_MAP(KMN_FD_ORIG4), ctx->sk, 0,
						 BPF_SK_STORAGE_GET_F_CREATE);
	if (!o)
		return;
	o->vip_addr = vip;
	o->vip_port = vport;
	o->ep_addr = ep->addr;
	o->ep_port = ep->port;
}

static __always_inline void kmn_rewrite4(struct bpf_sock_addr *ctx)
{
	struct kmn_ep4 ep;
	__u32 vip = ctx->user_ip4;
	__u32 vport = ctx->user_port;

	if (!kmn_lb4(ctx, &ep))
		return;
	ctx->user_ip4 = ep.addr;
	ctx->user_port = ep.port;
	if (ctx->protocol == IPPROTO_UDP)
		kmn_remember4(ctx, vip, vport, &ep);
}

int kmn_connect4(struct bpf_sock_addr *ctx)
{
	kmn_stress();
	kmn_rewrite4(ctx);
	return 1;
}

int kmn_sendmsg4(struct bpf_sock_addr *ctx)
{
	kmn_rewrite4(ctx);
	return 1;
}

int kmn_recvmsg4(struct bpf_sock_addr *ctx)
{
	struct kmn_orig4 *o = bpf_sk_storage_get(KMN_MAP(KMN_FD_ORIG4), ctx->sk, 0, 0);
	if (o && o->ep_addr == ctx->user_ip4 && o->ep_port == ctx->user_port) {
		ctx->user_ip4 = o->vip_addr;
		ctx->user_port = o->vip_port;
	}
	return 1;
}

/* IPv6 twin of kmn_lb4. */
static __always_inline int kmn_lb6(struct kmn_fe6_key *key, struct kmn_ep6 *out)
{
	struct kmn_fe6_ent *v = kmn_find6(key);
	if (!v)
		return 0;
	__u32 count = v->hdr.count;
	if (count == 0) {
		kmn_count(KMN_CTR_NO_ENDPOINT);
		return 0;
	}
	__u32 i = kmn_pick(&v->hdr, count);
	if (i < KMN_INLINE6) {
		*out = v->ep[i];
		return 1;
	}
	struct kmn_ep6 *e = kmn_overflow(KMN_MAP(KMN_FD_EP6), v->hdr.epset, i);
	if (!e)
		return 0;
	*out = *e;
	return 1;
}

static __always_inline void kmn_rewrite6(struct bpf_sock_addr *ctx)
{
	struct kmn_fe6_key key = {};
	struct kmn_ep6 ep;

	key.addr[0] = ctx->user_ip6[0];
	key.addr[1] = ctx->user_ip6[1];
	key.addr[2] = ctx->user_ip6[2];
	key.addr[3] = ctx->user_ip6[3];
	key.port = (__u16)ctx->user_port;
	key.proto = (__u8)ctx->protocol;
	if (!kmn_lb6(&key, &ep))
		return;
	ctx->user_ip6[0] = ep.addr[0];
	ctx->user_ip6[1] = ep.addr[1];
	ctx->user_ip6[2] = ep.addr[2];
	ctx->user_ip6[3] = ep.addr[3];
	ctx->user_port = ep.port;
	if (ctx->protocol != IPPROTO_UDP)
		return;
	struct kmn_orig6 *o = bpf_sk_storage_get(KMN_MAP(KMN_FD_ORIG6), ctx->sk, 0,
						 BPF_SK_STORAGE_GET_F_CREATE);
	if (!o)
		return;
	__builtin_memcpy(o->vip_addr, key.addr, sizeof(o->vip_addr));
	o->vip_port = key.port;
	__builtin_memcpy(o->ep_addr, ep.addr, sizeof(o->ep_addr));
	o->ep_port = ep.port;
}

int kmn_connect6(struct bpf_sock_addr *ctx)
{
	kmn_rewrite6(ctx);
	return 1;
}

int kmn_sendmsg6(struct bpf_sock_addr *ctx)
{
	kmn_rewrite6(ctx);
	return 1;
}

int kmn_recvmsg6(struct bpf_sock_addr *ctx)
{
	struct kmn_orig6 *o = bpf_sk_storage_get(KMN_MAP(KMN_FD_ORIG6), ctx->sk, 0, 0);
	if (!o || o->ep_port != ctx->user_port || o->ep_addr[0] != ctx->user_ip6[0] ||
	    o->ep_addr[1] != ctx->user_ip6[1] || o->ep_addr[2] != ctx->user_ip6[2] ||
	    o->ep_addr[3] != ctx->user_ip6[3])
		return 1;
	ctx->user_ip6[0] = o->vip_addr[0];
	ctx->user_ip6[1] = o->vip_addr[1];
	ctx->user_ip6[2] = o->vip_addr[2];
	ctx->user_ip6[3] = o->vip_addr[3];
	ctx->user_port = o->vip_port;
	return 1;
}
