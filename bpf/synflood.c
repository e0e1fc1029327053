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
	CNT_MAX,
};

struct config {
	__u64 src_interval_ns;   /* 0: no per-source limit */
	__u64 src_tolerance_ns;  /* (burst-1) * interval */
	__u64 port_interval_ns;  /* 0: no per-port budget */
	__u64 port_tolerance_ns;
	__u64 trust_ttl_ns;      /* 0: trusting disabled */
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

	if ((void *)(ip6 + 1) > end)
		return -1;
	__u8 nexthdr = ip6->nexthdr;
	void *cur = ip6 + 1;

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
	if (ip->protocol != IPPROTO_TCP || ip->ihl < 5)
		return -1;
	/* Non-first fragments carry no TCP header. */
	if (ip->frag_off & bpf_htons(0x1fff))
		return -1;

	p->th = l3 + ip->ihl * 4;
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

	struct tcphdr *th = p->th;

	if (p->v6) {
		p->tuple.ipv6.sport = th->source;
		p->tuple.ipv6.dport = th->dest;
	} else {
		p->tuple.ipv4.sport = th->source;
		p->tuple.ipv4.dport = th->dest;
	}
	struct bpf_sock *sk;

	/* The tuple size must be a verifier-known constant. */
	if (p->v6)
		sk = bpf_sk_lookup_tcp(ctx, &p->tuple, sizeof(p->tuple.ipv6),
				       BPF_F_CURRENT_NETNS, 0);
	else
		sk = bpf_sk_lookup_tcp(ctx, &p->tuple, sizeof(p->tuple.ipv4),
				       BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return;
	__u32 state = sk->state;

	bpf_sk_release(sk);
	switch (state) {
	case BPF_TCP_ESTABLISHED:
	case BPF_TCP_FIN_WAIT1:
	case BPF_TCP_FIN_WAIT2:
	case BPF_TCP_CLOSE_WAIT:
	case BPF_TCP_LAST_ACK:
	case BPF_TCP_CLOSING:
		break;
	default:
		return;
	}
	if (seen)
		*seen = now;
	else
		bpf_map_update_elem(&trusted, &p->src, &now, BPF_ANY);
	count(CNT_TRUST_MARKED);
}

static __always_inline int judge_syn(struct pkt *p, struct port_state *port,
				     __u64 now, struct config *cfg)
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
	}

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
		return judge_syn(&p, port, now, cfg);
	if (th->ack && !th->syn && !th->rst)
		learn_trust(ctx, &p, now, cfg);
	return XDP_PASS;
}
