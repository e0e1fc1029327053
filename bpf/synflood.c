//go:build ignore

// XDP SYN-flood filter for palisade.
//
// Only TCP SYNs (SYN set, ACK clear) whose destination port is in the
// `ports` map are judged; every other frame leaves with XDP_PASS untouched.
// A judged SYN goes through, in order:
//   1. deny LPM tries (v4/v6)          -> XDP_DROP, counted drop_deny
//   2. allow LPM tries                 -> XDP_PASS, counted pass_allow
//   3. per-source bucket (LRU hash)    -> XDP_DROP, counted drop_rate_source
//   4. per-port budget, skipped for trusted sources
//                                      -> XDP_DROP, counted drop_rate_port
//   5.                                 -> XDP_PASS, counted pass
//
// In syncookie mode step 4 is replaced: the SYN is answered from XDP with a
// SYN-ACK carrying a kernel SYN cookie (bpf_tcp_raw_gen_syncookie_*, XDP_TX,
// counted syncookie_sent), so no SYN reaches the stack. ACKs to protected
// ports that match only a listening socket are cookie candidates: valid ones
// pass (syncookie_ok) and the kernel, which shares the cookie secret, turns
// them into connections; invalid ones are dropped (drop_syncookie). The
// kernel accepts cookie ACKs only while the listener is "under SYN flood"
// (it answered a SYN with a cookie itself within the last two minutes), so
// this mode runs with net.ipv4.tcp_syncookies=2 and lets one SYN per local
// address and port through every STAMP_REFRESH_NS to keep that state fresh.
//
// Token buckets are kept as GCRA ("virtual scheduling") state: one u64, the
// theoretical arrival time (TAT) of the next conforming packet. That is
// exactly a token bucket of rate 1/interval and depth `burst`, and being a
// single word it is updated lock-free with a compare-and-swap, so concurrent
// CPUs hitting one port (random-source floods spread over RX queues) share a
// single exact budget without a spin lock.
//
// A source is "trusted" once a non-SYN segment from it matches a socket of
// this host that is past the handshake (ESTABLISHED and later states). A
// spoofer never receives our SYN-ACK, so it cannot get there; real clients
// that talked to us recently therefore keep connecting while a random-source
// flood exhausts the per-port budget.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char __license[] SEC("license") = "Dual BSD/GPL";

enum counter {
	CNT_PASS = 0,
	CNT_PASS_ALLOW,
	CNT_DROP_RATE_SOURCE,
	CNT_DROP_RATE_PORT,
	CNT_DROP_DENY,
	CNT_TRUST_MARKED,
	CNT_SYNCOOKIE_SENT,
	CNT_SYNCOOKIE_OK,
	CNT_DROP_SYNCOOKIE,
	CNT_MAX,
};

enum mode {
	MODE_RATELIMIT = 0,
	MODE_SYNCOOKIE = 1,
};

#define STAMP_REFRESH_NS (30ULL * 1000000000ULL)

struct config {
	__u64 src_interval_ns;   /* 0: no per-source limit */
	__u64 src_tolerance_ns;  /* (burst-1) * interval */
	__u64 port_interval_ns;  /* 0: no per-port budget */
	__u64 port_tolerance_ns;
	__u64 trust_ttl_ns;      /* 0: trusting disabled */
	__u32 mode;              /* enum mode */
	__u32 mtu;               /* of the attached device, for the SYN-ACK MSS */
};

struct stamp_key {
	__u32 addr[4];
	__u32 port;
};

struct port_state {
	__u64 tat;
};

/* IPv4 sources are stored as IPv4-mapped IPv6 (::ffff:a.b.c.d), IPv6
 * sources as their /64 with the interface identifier zeroed. */
struct src_key {
	__u32 addr[4];
};

struct bucket {
	__u64 tat;
};

struct lpm_v4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct lpm_v6 {
	__u32 prefixlen;
	__u8 addr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} config_map SEC(".maps");

/* Protected destination ports (host byte order) with their budget. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16);
	__type(value, struct port_state);
} ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct src_key);
	__type(value, struct bucket);
} src_buckets SEC(".maps");

/* Trusted sources: value is the last time (ns, CLOCK_MONOTONIC) one was
 * seen on a post-handshake socket. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct src_key);
	__type(value, __u64);
} trusted SEC(".maps");

/* Syncookie mode: when a SYN for (local address, port) was last passed to
 * the stack. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct stamp_key);
	__type(value, __u64);
} stamps SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v4);
	__type(value, __u8);
} allow_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v4);
	__type(value, __u8);
} deny_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v6);
	__type(value, __u8);
} allow_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v6);
	__type(value, __u8);
} deny_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

/* Everything the verdict needs, filled by the parser. */
struct pkt {
	struct tcphdr *th;
	void *l3;
	__u32 l2len;
	__u8 simple; /* no IPv4 options / IPv6 extension headers */
	struct src_key src;
	struct bpf_sock_tuple tuple;
	__u8 v6;
	__u8 v4addr[4];
	__u8 v6addr[16];
};

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	if (v)
		*v += 1; /* per-CPU slot: no atomics needed */
}

/* gcra admits one packet if the bucket behind *tat conforms at `now`. */
static __always_inline int gcra(__u64 *tat, __u64 now, __u64 interval,
				__u64 tolerance)
{
	for (int i = 0; i < 8; i++) {
		__u64 old = *(volatile __u64 *)tat;
		__u64 base = old > now ? old : now;

		if (base - now > tolerance)
			return 0;
		if (__sync_val_compare_and_swap(tat, old, base + interval) == old)
			return 1;
	}
	/* Lost eight races in a row: other CPUs are spending this budget
	 * right now, so refusing is the conservative answer. */
	return 0;
}

static __always_inline int parse_ipv6(void *l3, void *end, struct pkt *p)
{
	struct ipv6hdr *ip6 = l3;

	if ((void *)(ip6 + 1) > end || ip6->version != 6)
		return -1;
	__u8 nexthdr = ip6->nexthdr;
	void *cur = ip6 + 1;

	p->simple = nexthdr == IPPROTO_TCP;

	/* Walk a bounded number of extension headers so that prepending
	 * a Destination Options header does not smuggle SYNs past us. */
	for (int i = 0; i < 4; i++) {
		if (nexthdr == IPPROTO_TCP)
			break;
		if (nexthdr == IPPROTO_HOPOPTS || nexthdr == IPPROTO_ROUTING ||
		    nexthdr == IPPROTO_DSTOPTS) {
			__u8 *opt = cur;

			if ((void *)(opt + 2) > end)
				return -1;
			nexthdr = opt[0];
			cur = opt + ((__u32)opt[1] + 1) * 8;
		} else if (nexthdr == IPPROTO_FRAGMENT) {
			__u8 *frag = cur;

			if ((void *)(frag + 8) > end)
				return -1;
			/* Non-first fragments carry no TCP header. */
			if (((frag[2] << 8) | frag[3]) & 0xfff8)
				return -1;
			nexthdr = frag[0];
			cur = frag + 8;
		} else {
			return -1;
		}
	}
	if (nexthdr != IPPROTO_TCP)
		return -1;

	p->th = cur;
	p->v6 = 1;
	__builtin_memcpy(p->v6addr, &ip6->saddr, 16);
	__builtin_memcpy(p->src.addr, &ip6->saddr, 8);
	__builtin_memcpy(p->tuple.ipv6.saddr, &ip6->saddr, 16);
	__builtin_memcpy(p->tuple.ipv6.daddr, &ip6->daddr, 16);
	return 0;
}

static __always_inline int parse_ipv4(void *l3, void *end, struct pkt *p)
{
	struct iphdr *ip = l3;

	if ((void *)(ip + 1) > end)
		return -1;
	if (ip->version != 4 || ip->protocol != IPPROTO_TCP || ip->ihl < 5)
		return -1;
	/* Non-first fragments carry no TCP header. */
	if (ip->frag_off & bpf_htons(0x1fff))
		return -1;

	p->th = l3 + ip->ihl * 4;
	p->simple = ip->ihl == 5;
	__builtin_memcpy(p->v4addr, &ip->saddr, 4);
	p->src.addr[2] = bpf_htonl(0x0000ffff);
	p->src.addr[3] = ip->saddr;
	p->tuple.ipv4.saddr = ip->saddr;
	p->tuple.ipv4.daddr = ip->daddr;
	return 0;
}

static __always_inline int lpm_match(void *map4, void *map6, struct pkt *p)
{
	if (p->v6) {
		struct lpm_v6 k = {.prefixlen = 128};

		__builtin_memcpy(k.addr, p->v6addr, 16);
		return bpf_map_lookup_elem(map6, &k) != NULL;
	}
	struct lpm_v4 k = {.prefixlen = 32};

	__builtin_memcpy(k.addr, p->v4addr, 4);
	return bpf_map_lookup_elem(map4, &k) != NULL;
}

static __always_inline int is_trusted(struct pkt *p, __u64 now,
				      struct config *cfg)
{
	if (!cfg->trust_ttl_ns)
		return 0;
	__u64 *seen = bpf_map_lookup_elem(&trusted, &p->src);

	return seen && now - *seen < cfg->trust_ttl_ns;
}

/* sock_state returns the state of the socket this segment belongs to
 * (request and time-wait sockets included), or -1 if there is none. */
static __always_inline int sock_state(struct xdp_md *ctx, struct pkt *p)
{
	struct tcphdr *th = p->th;
	struct bpf_sock *sk;

	/* The tuple size must be a verifier-known constant. */
	if (p->v6) {
		p->tuple.ipv6.sport = th->source;
		p->tuple.ipv6.dport = th->dest;
		sk = bpf_skc_lookup_tcp(ctx, &p->tuple, sizeof(p->tuple.ipv6),
					BPF_F_CURRENT_NETNS, 0);
	} else {
		p->tuple.ipv4.sport = th->source;
		p->tuple.ipv4.dport = th->dest;
		sk = bpf_skc_lookup_tcp(ctx, &p->tuple, sizeof(p->tuple.ipv4),
					BPF_F_CURRENT_NETNS, 0);
	}
	if (!sk)
		return -1;
	int state = sk->state;

	bpf_sk_release(sk);
	return state;
}

static __always_inline int past_handshake(int state)
{
	switch (state) {
	case BPF_TCP_ESTABLISHED:
	case BPF_TCP_FIN_WAIT1:
	case BPF_TCP_FIN_WAIT2:
	case BPF_TCP_CLOSE_WAIT:
	case BPF_TCP_LAST_ACK:
	case BPF_TCP_CLOSING:
		return 1;
	}
	return 0;
}

/* mark_trusted records that the source completed a handshake with us. */
static __always_inline void mark_trusted(struct pkt *p, __u64 *seen, __u64 now)
{
	if (seen)
		*seen = now;
	else
		bpf_map_update_elem(&trusted, &p->src, &now, BPF_ANY);
	count(CNT_TRUST_MARKED);
}

/* learn_trust marks the source trusted when this non-SYN segment belongs to
 * a connection of ours that got past the handshake. */
static __always_inline void learn_trust(struct xdp_md *ctx, struct pkt *p,
					__u64 now, struct config *cfg)
{
	if (!cfg->trust_ttl_ns)
		return;
	__u64 *seen = bpf_map_lookup_elem(&trusted, &p->src);

	/* Refresh at most once a second to keep the hot path read-only. */
	if (seen && now - *seen < 1000000000ULL)
		return;
	if (past_handshake(sock_state(ctx, p)))
		mark_trusted(p, seen, now);
}

/* check_ack (syncookie mode) drops ACKs that claim to complete a handshake
 * we never answered: those that match only a listener and carry no valid
 * cookie. Everything else goes on to the stack. */
static __always_inline int check_ack(struct xdp_md *ctx, struct pkt *p,
				     __u64 now, struct config *cfg)
{
	__u64 *seen = NULL;

	if (cfg->trust_ttl_ns) {
		seen = bpf_map_lookup_elem(&trusted, &p->src);
		if (seen && now - *seen < 1000000000ULL)
			return XDP_PASS;
	}
	int state = sock_state(ctx, p);

	if (past_handshake(state)) {
		if (cfg->trust_ttl_ns)
			mark_trusted(p, seen, now);
		return XDP_PASS;
	}
	if (state != BPF_TCP_LISTEN || !p->simple)
		return XDP_PASS;

	void *end = (void *)(long)ctx->data_end;
	struct tcphdr *th = p->th;
	long err;

	if ((void *)(th + 1) > end)
		return XDP_PASS;
	if (p->v6) {
		struct ipv6hdr *ip6 = p->l3;

		if ((void *)(ip6 + 1) > end)
			return XDP_PASS;
		err = bpf_tcp_raw_check_syncookie_ipv6(ip6, th);
	} else {
		struct iphdr *ip = p->l3;

		if ((void *)(ip + 1) > end)
			return XDP_PASS;
		err = bpf_tcp_raw_check_syncookie_ipv4(ip, th);
	}
	if (err == 0) {
		count(CNT_SYNCOOKIE_OK);
		return XDP_PASS;
	}
	count(CNT_DROP_SYNCOOKIE);
	return XDP_DROP;
}

static __always_inline void *pkt_end(struct xdp_md *ctx)
{
	return (void *)(long)ctx->data_end;
}

static __always_inline __u16 csum_fold(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* stamp_due reports whether this SYN should go to the stack so the
 * listener's "recent SYN flood" state, which makes the kernel accept cookie
 * ACKs, stays fresh. */
static __always_inline int stamp_due(struct pkt *p, __u64 now)
{
	struct stamp_key k = {.port = p->th->dest};

	if (p->v6) {
		__builtin_memcpy(k.addr, p->tuple.ipv6.daddr, 16);
	} else {
		k.addr[2] = bpf_htonl(0x0000ffff);
		k.addr[3] = p->tuple.ipv4.daddr;
	}
	__u64 *last = bpf_map_lookup_elem(&stamps, &k);

	if (last && now - *last < STAMP_REFRESH_NS)
		return 0;
	bpf_map_update_elem(&stamps, &k, &now, BPF_ANY);
	return 1;
}

#define SYNACK_TCP_LEN 24 /* header + MSS option */

/* answer_syn turns the SYN into a SYN-ACK carrying a SYN cookie and returns
 * XDP_TX, or returns -1 (frame untouched) when it cannot. */
static __always_inline int answer_syn(struct xdp_md *ctx, struct pkt *p,
				      struct config *cfg)
{
	/* Packet pointers are re-read from ctx after every helper call:
	 * clang would otherwise spill them as 32-bit values, which the
	 * verifier refuses. */
	struct tcphdr *th = p->th;
	__u8 opts[60] = {};
	__s64 gen;

	if (!p->simple || p->l2len > 22 || (void *)(th + 1) > pkt_end(ctx))
		return -1;
	__u32 th_len = th->doff * 4;

	if (th_len < sizeof(*th) || th_len > sizeof(opts))
		return -1;
	__u32 l3len = p->v6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr);
	__u32 l4off = p->l2len + l3len;

	/* The helper reads the client's MSS option; hand it a copy of the
	 * whole TCP header so its length need not be proven in the packet. */
	if (bpf_xdp_load_bytes(ctx, l4off, opts, th_len))
		return -1;
	if (p->v6) {
		struct ipv6hdr *ip6 = p->l3;

		if ((void *)(ip6 + 1) > pkt_end(ctx))
			return -1;
		gen = bpf_tcp_raw_gen_syncookie_ipv6(ip6, (struct tcphdr *)opts, th_len);
	} else {
		struct iphdr *ip = p->l3;

		if ((void *)(ip + 1) > pkt_end(ctx))
			return -1;
		gen = bpf_tcp_raw_gen_syncookie_ipv4(ip, (struct tcphdr *)opts, th_len);
	}
	if (gen < 0)
		return -1;

	__u32 cookie = (__u32)gen;
	__be32 client_seq = th->seq;
	__be16 sport = th->source, dport = th->dest;
	__u16 mss = cfg->mtu > l3len + 20 + 64 ? cfg->mtu - l3len - 20 : 536;
	int delta = (int)(l4off + SYNACK_TCP_LEN) - (int)bpf_xdp_get_buff_len(ctx);

	if (delta && bpf_xdp_adjust_tail(ctx, delta))
		return -1;
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;

	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end)
		return -1; /* cannot happen: the frame only shrank past L4 */
	__u8 mac[ETH_ALEN];

	__builtin_memcpy(mac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, mac, ETH_ALEN);

	__u32 l2len = p->l2len;

	if (l2len > 22)
		return -1;
	struct tcphdr *out = data + l4off;
	__u64 sum;

	if ((void *)out + SYNACK_TCP_LEN > end)
		return -1;
	__builtin_memset(out, 0, SYNACK_TCP_LEN);
	out->source = dport;
	out->dest = sport;
	out->seq = bpf_htonl(cookie);
	out->ack_seq = bpf_htonl(bpf_ntohl(client_seq) + 1);
	out->doff = SYNACK_TCP_LEN / 4;
	out->syn = 1;
	out->ack = 1;
	out->window = bpf_htons(65535);
	__u8 *o = (__u8 *)(out + 1);

	o[0] = 2; /* MSS */
	o[1] = 4;
	o[2] = mss >> 8;
	o[3] = mss & 0xff;

	if (p->v6) {
		struct ipv6hdr *ip6 = data + l2len;

		if ((void *)(ip6 + 1) > end)
			return -1;
		ip6->priority = 0;
		ip6->flow_lbl[0] = 0;
		ip6->flow_lbl[1] = 0;
		ip6->flow_lbl[2] = 0;
		ip6->payload_len = bpf_htons(SYNACK_TCP_LEN);
		ip6->nexthdr = IPPROTO_TCP;
		ip6->hop_limit = 64;
		ip6->saddr = *(struct in6_addr *)p->tuple.ipv6.daddr;
		ip6->daddr = *(struct in6_addr *)p->tuple.ipv6.saddr;
		sum = bpf_csum_diff(0, 0, (__be32 *)&ip6->saddr, 32, 0);
		sum += bpf_htonl(SYNACK_TCP_LEN) + bpf_htonl(IPPROTO_TCP);
	} else {
		struct iphdr *ip = data + l2len;

		if ((void *)(ip + 1) > end)
			return -1;
		ip->tos = 0;
		ip->tot_len = bpf_htons(sizeof(*ip) + SYNACK_TCP_LEN);
		ip->id = 0;
		ip->frag_off = bpf_htons(0x4000); /* DF */
		ip->ttl = 64;
		ip->saddr = p->tuple.ipv4.daddr;
		ip->daddr = p->tuple.ipv4.saddr;
		ip->check = 0;
		ip->check = ~csum_fold(bpf_csum_diff(0, 0, (__be32 *)ip, sizeof(*ip), 0));
		sum = (__u64)ip->saddr + ip->daddr +
		      bpf_htonl((IPPROTO_TCP << 16) | SYNACK_TCP_LEN);
	}
	sum += bpf_csum_diff(0, 0, (__be32 *)out, SYNACK_TCP_LEN, 0);
	out->check = ~csum_fold(sum);
	count(CNT_SYNCOOKIE_SENT);
	return XDP_TX;
}

static __always_inline int judge_syn(struct xdp_md *ctx, struct pkt *p,
				     struct port_state *port, __u64 now,
				     struct config *cfg)
{
	if (lpm_match(&deny_v4, &deny_v6, p)) {
		count(CNT_DROP_DENY);
		return XDP_DROP;
	}
	if (lpm_match(&allow_v4, &allow_v6, p)) {
		count(CNT_PASS_ALLOW);
		return XDP_PASS;
	}

	if (cfg->src_interval_ns) {
		struct bucket *b = bpf_map_lookup_elem(&src_buckets, &p->src);

		if (!b) {
			struct bucket nb = {.tat = now + cfg->src_interval_ns};

			if (bpf_map_update_elem(&src_buckets, &p->src, &nb,
						BPF_NOEXIST) == 0)
				goto port;
			/* Another CPU inserted it first: use theirs. */
			b = bpf_map_lookup_elem(&src_buckets, &p->src);
		}
		if (b && !gcra(&b->tat, now, cfg->src_interval_ns,
			       cfg->src_tolerance_ns)) {
			count(CNT_DROP_RATE_SOURCE);
			return XDP_DROP;
		}
	}
port:
	if (cfg->mode == MODE_SYNCOOKIE) {
		if (stamp_due(p, now)) {
			count(CNT_PASS);
			return XDP_PASS;
		}
		int act = answer_syn(ctx, p, cfg);

		if (act >= 0)
			return act;
		/* Could not answer (IP options, odd header): budget it. */
	}
	if (cfg->port_interval_ns && !is_trusted(p, now, cfg) &&
	    !gcra(&port->tat, now, cfg->port_interval_ns,
		  cfg->port_tolerance_ns)) {
		count(CNT_DROP_RATE_PORT);
		return XDP_DROP;
	}
	count(CNT_PASS);
	return XDP_PASS;
}

SEC("xdp")
int synflood(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct pkt p = {};

	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	__be16 proto = eth->h_proto;
	void *l3 = eth + 1;
	/* Counted, not computed as l3 - data: subtracting packet pointers
	 * needs CAP_PERFMON. */
	__u32 l2len = sizeof(*eth);

	/* Up to two VLAN tags (802.1Q, or 802.1ad outer + 802.1Q inner). */
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) &&
		    proto != bpf_htons(ETH_P_8021AD))
			break;
		struct vlan_hdr *vh = l3;

		if ((void *)(vh + 1) > end)
			return XDP_PASS;
		proto = vh->proto;
		l3 = vh + 1;
		l2len += sizeof(*vh);
	}

	p.l3 = l3;
	p.l2len = l2len;
	if (proto == bpf_htons(ETH_P_IP)) {
		if (parse_ipv4(l3, end, &p))
			return XDP_PASS;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		if (parse_ipv6(l3, end, &p))
			return XDP_PASS;
	} else {
		return XDP_PASS;
	}

	struct tcphdr *th = p.th;

	if ((void *)(th + 1) > end)
		return XDP_PASS;
	__u16 dport = bpf_ntohs(th->dest);
	struct port_state *port = bpf_map_lookup_elem(&ports, &dport);

	if (!port)
		return XDP_PASS;

	__u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&config_map, &zero);

	if (!cfg)
		return XDP_PASS;
	__u64 now = bpf_ktime_get_ns();

	if (th->syn && !th->ack)
		return judge_syn(ctx, &p, port, now, cfg);
	if (th->ack && !th->syn && !th->rst) {
		if (cfg->mode == MODE_SYNCOOKIE)
			return check_ack(ctx, &p, now, cfg);
		learn_trust(ctx, &p, now, cfg);
	}
	return XDP_PASS;
}
