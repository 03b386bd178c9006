/* Filling a struct kmn_sock_key from a sock_ops or sk_msg context (both name the fields
 * family, local_ip4/remote_ip4, local_ip6/remote_ip6, local_port/remote_port alike).
 * Shared by sockops.c and sk_msg.c so that both sides build the same key bytes. */
#ifndef KMN_SOCK_KEY_H
#define KMN_SOCK_KEY_H

#include "kmesh_node.h"

#define KMN_AF_INET 2
#define KMN_AF_INET6 10

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define KMN_V4MAPPED_WORD2 0xffff0000U /* ::ffff:0:0/96, word 2 in network order */
#define KMN_NTOHL(x) __builtin_bswap32(x)
#else
#define KMN_V4MAPPED_WORD2 0x0000ffffU
#define KMN_NTOHL(x) (x)
#endif

/* dst[0..3] <- the context's `side` address (local or remote). IPv4 and IPv4-mapped IPv6
 * land in word 0 with words 1-3 zero. Every field is read with a full 32-bit load (the
 * verifier refuses narrower reads of some of these fields). */
#define KMN_SOCK_ADDR(dst, ctx, side)                                                     \
	do {                                                                              \
		if ((ctx)->family == KMN_AF_INET) {                                       \
			(dst)[0] = (ctx)->side##_ip4;                                     \
		} else {                                                                  \
			__u32 w0 = (ctx)->side##_ip6[0], w1 = (ctx)->side##_ip6[1];       \
			__u32 w2 = (ctx)->side##_ip6[2], w3 = (ctx)->side##_ip6[3];       \
			if (w0 == 0 && w1 == 0 && w2 == KMN_V4MAPPED_WORD2) {             \
				(dst)[0] = w3;                                            \
			} else {                                                          \
				(dst)[0] = w0;                                            \
				(dst)[1] = w1;                                            \
				(dst)[2] = w2;                                            \
				(dst)[3] = w3;                                            \
			}                                                                 \
		}                                                                         \
	} while (0)

/* remote_port holds the port in network order in its upper 16 bits (little endian);
 * a 32-bit byte swap gives the port in host order on either endianness. */
#define KMN_REMOTE_PORT(ctx) KMN_NTOHL((ctx)->remote_port)

#endif
