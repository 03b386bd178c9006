/* Map key/value structs shared by every kmesh_node program.
 *
 * Mirrored field by field in kmesh_node/structs.py (ctypes). Any change of layout MUST
 * bump KMN_LAYOUT_VERSION: a new agent then refuses to adopt older pinned maps and asks
 * for `kmesh-node uninstall` instead of misreading them.
 *
 * Addresses and ports are stored exactly as the sock_addr context holds them (network
 * byte order), so the hot path copies them without conversion.
 */
#ifndef KMESH_NODE_H
#define KMESH_NODE_H

#define KMN_MAGIC 0x4b4d4e31 /* "KMN1" */
#define KMN_LAYOUT_VERSION 5

/* Every elastic map is an ARRAY_OF_MAPS of S slots over N shards (N a power of two,
 * 1..S): slot s holds shard s & (N - 1). Growing N re-points slots one by one; each slot is
 * consistent on its own, so lookups never fail during the change.
 *
 * Frontend tables (fe4/fe6, kmesh_node/fetable.py): shards are ARRAYs of entries
 * {key, header, first endpoints}, open-addressed: h = kmn_hash(key), slot = top
 * KMN_FE_SLOTS_BITS bits of h, home = the next KMN_FE*_ENTRIES_BITS bits, then at most
 * KMN_PROBES entries, stopping at one never used. ~2 cache lines per connect.
 * Overflow endpoints (ep4/ep6, kmesh_node/shardmap.py): shards are NO_PREALLOC hashes,
 * slot = (h >> 16) & (KMN_EP_SLOTS - 1), at most 2048 buckets each (32 KiB, kmalloc'd). */
#define KMN_FE_SLOTS_BITS 7
#define KMN_FE_SLOTS 128
#define KMN_FE4_ENTRIES_BITS 11
#define KMN_FE4_ENTRIES 2048
#define KMN_FE6_ENTRIES_BITS 9
#define KMN_FE6_ENTRIES 512
#define KMN_PROBES 8
#define KMN_EP_SLOTS 1024
#define KMN_HASH_MUL 0x9E3779B1U
#define KMN_EPSET_MUL 65599U

/* Endpoints kept inline in a frontend entry: a service with at most this many endpoints
 * needs no second lookup. 5 (v4) and 3 (v6) fill a 64- / 96-byte entry. */
#define KMN_INLINE4 5
#define KMN_INLINE6 3

#define KMN_POLICY_RANDOM 0
#define KMN_POLICY_ROUND_ROBIN 1

/* Per-CPU counters (index into the counters array). */
#define KMN_CTR_NO_ENDPOINT 0
#define KMN_CTR_ACCEL_REDIRECT 1 /* sk_msg: message handed to the peer socket */
#define KMN_CTR_ACCEL_PASS 2     /* sk_msg: peer not in the sockhash, normal path */
#define KMN_CTR_MAX 4

/* Sockmap acceleration (`kmesh-node run --accelerate`): a SOCKHASH of every established
 * TCP socket of the cgroup, keyed by its own 4-tuple; sk_msg redirects a message to the
 * socket whose key is the sender's tuple swapped. Optional pins (sockhash, prog_/link_
 * sockops, sk_msg) that an agent without --accelerate removes: no layout change. */
#define KMN_SOCKHASH_ENTRIES 65536

struct kmn_fe4_key {
	__u32 addr;  /* ClusterIP, network order */
	__u16 port;  /* network order */
	__u8 proto;  /* IPPROTO_TCP / IPPROTO_UDP; 0 = dead entry */
	__u8 used;   /* entry position ever written: probes go on past it */
};

struct kmn_fe6_key {
	__u32 addr[4];
	__u16 port;
	__u8 proto;
	__u8 used;
};

struct kmn_ep4 {
	__u32 addr;
	__u16 port;
	__u16 pad;
};

struct kmn_ep6 {
	__u32 addr[4];
	__u16 port;
	__u16 pad;
};

/* Common head of a frontend value. */
struct kmn_fe_hdr {
	__u32 svc_id;  /* which Service owns the frontend (status counts services by it) */
	__u32 epset;   /* key prefix of the overflow endpoints (index >= inline count) */
	__u32 rr;      /* round-robin cursor, advanced atomically by the programs */
	__u16 count;   /* ready endpoints; 0 = leave the connection untouched, count it */
	__u8 policy;   /* KMN_POLICY_* */
	__u8 flags;
};

/* One frontend-table entry: 64 bytes (IPv4), 96 bytes (IPv6). */
struct kmn_fe4_ent {
	struct kmn_fe4_key key;
	struct kmn_fe_hdr hdr;
	struct kmn_ep4 ep[KMN_INLINE4];
};

struct kmn_fe6_ent {
	struct kmn_fe6_key key;
	struct kmn_fe_hdr hdr;
	struct kmn_ep6 ep[KMN_INLINE6];
};

/* Overflow endpoint i (i >= KMN_INLINE*) of endpoint set `epset`. */
struct kmn_epx_key {
	__u32 epset;
	__u32 idx;
};

/* Per-socket original destination of a rewritten UDP flow (sk_storage), so that
 * recvmsg4/recvmsg6 show the service address to the application. One pair per socket:
 * an unconnected socket talking to several services at once sees the last one restored. */
struct kmn_orig4 {
	__u32 vip_addr;
	__u32 vip_port;
	__u32 ep_addr;
	__u32 ep_port;
};

struct kmn_orig6 {
	__u32 vip_addr[4];
	__u32 vip_port;
	__u32 ep_addr[4];
	__u32 ep_port;
};

/* Key of the sockhash: one TCP socket seen from its own side. IPv4 (and IPv4-mapped
 * IPv6) addresses sit in word 0 with words 1-3 zero, so a dual-stack socket and its
 * IPv4 peer agree. Addresses in network order, ports in host order. */
struct kmn_sock_key {
	__u32 local_ip[4];
	__u32 remote_ip[4];
	__u32 local_port;
	__u32 remote_port;
};

/* Stamp of the pinned layout (one-element array). */
struct kmn_version {
	__u32 magic;
	__u32 layout;
	__u32 inline4;
	__u32 inline6;
};

#endif
