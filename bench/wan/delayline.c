/*
 * delayline: constant-delay line for forwarded packets, built on NFQUEUE.
 *
 * The kernel this project benchmarks on has no sch_netem (and no sch_fq, so no
 * EDT delay either). Instead, an iptables rule in the router namespace sends
 * every forwarded packet to NFQUEUE queue N; this program receives only the
 * packet metadata (NFQNL_COPY_META: no payload is copied to user space), stamps
 * the arrival time, and issues the ACCEPT verdict once arrival + delay has
 * passed. The delay is the same for every packet, so release order == arrival
 * order == packet id order, and one NFQNL_MSG_VERDICT_BATCH message ("accept
 * every queued packet with id <= X") releases everything that is due at once.
 * Nothing sleeps per packet: the loop waits in ppoll() until either a new
 * packet arrives or the oldest held packet is due.
 *
 * Raw netlink only (linux/netfilter/nfnetlink_queue.h): no libnetfilter_queue,
 * no libmnl. Build: gcc -O2 -Wall -o delayline delayline.c
 *
 *   delayline -q QUEUE -d DELAY_US [-m MAXLEN] [-s] [-v]
 *     -q  queue number (the NFQUEUE --queue-num)
 *     -d  one-way delay in microseconds, applied to every queued packet
 *     -m  kernel queue max length in packets (default 65536)
 *     -s  print statistics to stderr every second
 *     -N  do not switch to SCHED_FIFO (default: SCHED_FIFO priority 10)
 *     -E  exact wake-ups: no compensation for timer overshoot (by default the
 *         program learns how late its timer wake-ups are and wakes that much
 *         earlier, at most delay/4; see the loop)
 *
 * On SIGTERM/SIGINT it accepts everything it holds and unbinds. Without
 * --queue-bypass on the rule, packets are dropped while no program is bound.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <linux/netlink.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef NFQA_CFG_F_GSO
#define NFQA_CFG_F_GSO (1 << 2)
#endif

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static int fd;
static uint16_t qnum;
static uint32_t seq;

/* Ring of held packets: (id, due time). Power-of-two size >= queue max len. */
struct held { uint32_t id; uint64_t due; };
static struct held *ring;
static size_t ring_mask, head, tail; /* head: oldest; tail: next free */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "delayline: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* ---- netlink message building ---------------------------------------- */

struct msgbuf { char buf[256]; size_t len; };

static void msg_init(struct msgbuf *m, uint16_t type, uint16_t flags)
{
	struct nlmsghdr *nlh = (struct nlmsghdr *)m->buf;
	struct nfgenmsg *nfg;
	memset(m->buf, 0, sizeof m->buf);
	nlh->nlmsg_type = (NFNL_SUBSYS_QUEUE << 8) | type;
	nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	nlh->nlmsg_seq = ++seq;
	nfg = (struct nfgenmsg *)NLMSG_DATA(nlh);
	nfg->nfgen_family = AF_UNSPEC;
	nfg->version = NFNETLINK_V0;
	nfg->res_id = htons(qnum);
	m->len = NLMSG_LENGTH(sizeof(struct nfgenmsg));
}

static void msg_attr(struct msgbuf *m, uint16_t type, const void *data, size_t len)
{
	struct nlattr *a = (struct nlattr *)(m->buf + NLMSG_ALIGN(m->len));
	a->nla_type = type;
	a->nla_len = NLA_HDRLEN + len;
	memcpy((char *)a + NLA_HDRLEN, data, len);
	m->len = NLMSG_ALIGN(m->len) + NLA_ALIGN(a->nla_len);
}

static void msg_send(struct msgbuf *m)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	((struct nlmsghdr *)m->buf)->nlmsg_len = m->len;
	for (;;) {
		if (sendto(fd, m->buf, m->len, 0, (struct sockaddr *)&sa, sizeof sa) >= 0)
			return;
		if (errno == EINTR)
			continue;
		if (errno == ENOBUFS || errno == EAGAIN) { /* transient: retry */
			usleep(50);
			continue;
		}
		die("sendto");
	}
}

/* Send a config message with NLM_F_ACK and wait for the ack (errors are fatal). */
static void config_acked(struct msgbuf *m, const char *what)
{
	char buf[8192];
	uint32_t want = ((struct nlmsghdr *)m->buf)->nlmsg_seq;
	msg_send(m);
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof buf, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("recv ack");
		}
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
		     h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_type == NLMSG_ERROR && h->nlmsg_seq == want) {
				struct nlmsgerr *e = NLMSG_DATA(h);
				if (e->error) {
					errno = -e->error;
					die(what);
				}
				return;
			}
		}
	}
}

static void verdict_batch(uint32_t id)
{
	struct msgbuf m;
	struct nfqnl_msg_verdict_hdr vh = { .verdict = htonl(NF_ACCEPT), .id = htonl(id) };
	msg_init(&m, NFQNL_MSG_VERDICT_BATCH, 0);
	msg_attr(&m, NFQA_VERDICT_HDR, &vh, sizeof vh);
	msg_send(&m);
}

/* ---- main loop ---------------------------------------------------------- */

int main(int argc, char **argv)
{
	long delay_us = -1;
	uint32_t maxlen = 65536;
	int stats = 0, no_rt = 0, compensate = 1, opt;
	while ((opt = getopt(argc, argv, "q:d:m:svNE")) != -1) {
		switch (opt) {
		case 'q': qnum = (uint16_t)atoi(optarg); break;
		case 'd': delay_us = atol(optarg); break;
		case 'm': maxlen = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 's': case 'v': stats = 1; break;
		case 'N': no_rt = 1; break;
		case 'E': compensate = 0; break;
		default:
			fprintf(stderr, "usage: %s -q QUEUE -d DELAY_US [-m MAXLEN] [-s] [-N] [-E]\n", argv[0]);
			return 2;
		}
	}
	if (delay_us < 0) {
		fprintf(stderr, "delayline: -d DELAY_US is required\n");
		return 2;
	}
	const uint64_t delay_ns = (uint64_t)delay_us * 1000ull;

	size_t ring_size = 1;
	while (ring_size < (size_t)maxlen * 2) ring_size <<= 1;
	ring = calloc(ring_size, sizeof *ring);
	if (!ring) die("calloc");
	ring_mask = ring_size - 1;

	/* Timer precision: default timer slack is 50 us; make wakeups exact. */
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
	/* Wake-up latency is the delay line's jitter: run SCHED_FIFO (it blocks in
	 * ppoll between batches, and the kernel's RT throttling still applies);
	 * fall back to a high nice value if that is not allowed. */
	if (!no_rt) {
		struct sched_param sp = { .sched_priority = 10 };
		if (sched_setscheduler(0, SCHED_FIFO, &sp) < 0)
			setpriority(PRIO_PROCESS, 0, -10);
	} else {
		setpriority(PRIO_PROCESS, 0, -10);
	}

	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
	if (fd < 0) die("socket(NETLINK_NETFILTER)");
	int rcvbuf = 64 << 20;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
	int one = 1;
	/* ENOBUFS on recv would only tell us packets were dropped; we count them
	 * via the kernel's /proc/net/netfilter/nfnetlink_queue instead. */
	setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one);
	struct sockaddr_nl local = { .nl_family = AF_NETLINK };
	if (bind(fd, (struct sockaddr *)&local, sizeof local) < 0) die("bind");

	struct msgbuf m;
	/* bind the queue */
	struct nfqnl_msg_config_cmd cmd = { .command = NFQNL_CFG_CMD_BIND, .pf = htons(AF_INET) };
	msg_init(&m, NFQNL_MSG_CONFIG, NLM_F_ACK);
	msg_attr(&m, NFQA_CFG_CMD, &cmd, sizeof cmd);
	config_acked(&m, "bind queue (is another program bound to it?)");
	/* metadata only, queue length, GSO packets unsegmented */
	struct nfqnl_msg_config_params params = { .copy_range = htonl(0), .copy_mode = NFQNL_COPY_META };
	uint32_t ql = htonl(maxlen);
	uint32_t flags = htonl(NFQA_CFG_F_GSO);
	msg_init(&m, NFQNL_MSG_CONFIG, NLM_F_ACK);
	msg_attr(&m, NFQA_CFG_PARAMS, &params, sizeof params);
	msg_attr(&m, NFQA_CFG_QUEUE_MAXLEN, &ql, sizeof ql);
	msg_attr(&m, NFQA_CFG_FLAGS, &flags, sizeof flags);
	msg_attr(&m, NFQA_CFG_MASK, &flags, sizeof flags);
	config_acked(&m, "configure queue");
	fprintf(stderr, "delayline: queue %u bound, delay %ld us, maxlen %u\n", qnum, delay_us, maxlen);

	static char buf[1 << 20] __attribute__((aligned(8)));
	double early_ns = 0;
	int64_t max_late = 0;
	uint64_t n_late1ms = 0;
	uint64_t n_pkts = 0, n_verdicts = 0, n_recvs = 0, max_held = 0;
	uint64_t next_stats = now_ns() + 1000000000ull;
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	while (!stop) {
		/* release everything that is due */
		uint64_t t = now_ns();
		/* "due" with the expected timer overshoot taken off (see below) */
		uint64_t tc = t + (uint64_t)early_ns;
		if (head != tail && ring[head & ring_mask].due <= tc) {
			uint32_t last = 0;
			int64_t late = (int64_t)(t - ring[head & ring_mask].due);
			if (late > max_late) max_late = late;
			if (late > 1000000) n_late1ms++;
			while (head != tail && ring[head & ring_mask].due <= tc) {
				last = ring[head & ring_mask].id;
				head++;
			}
			verdict_batch(last);
			n_verdicts++;
		}
		if (stats && t >= next_stats) {
			fprintf(stderr, "delayline: pkts=%llu recvs=%llu verdicts=%llu held=%zu max_held=%llu early=%.0fus max_late=%lldus late_1ms=%llu\n",
				(unsigned long long)n_pkts, (unsigned long long)n_recvs,
				(unsigned long long)n_verdicts, tail - head, (unsigned long long)max_held,
				early_ns / 1000, (long long)(max_late / 1000), (unsigned long long)n_late1ms);
			next_stats = t + 1000000000ull;
		}

		/* read what is there (one recv returns many queued-packet messages) */
		ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR || errno == ENOBUFS)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				die("recv");
			/* nothing to read: wait for a packet or the oldest packet's due time */
			struct timespec to, *top = NULL;
			uint64_t wake = 0;
			if (head != tail) {
				uint64_t due = ring[head & ring_mask].due;
				uint64_t w = due > tc ? due - tc : 0;
				wake = t + w;
				to.tv_sec = w / 1000000000ull;
				to.tv_nsec = w % 1000000000ull;
				top = &to;
			} else if (stats) {
				to.tv_sec = 1; to.tv_nsec = 0; top = &to;
			}
			int pr = ppoll(&pfd, 1, top, NULL);
			if (pr < 0 && errno != EINTR)
				die("ppoll");
			if (pr == 0 && wake && compensate) {
				/* Timer wake-ups come late (~0.1 ms in a VM, sometimes ms):
				 * track the typical overshoot (EWMA, samples capped at 1 ms so
				 * rare scheduling hiccups do not drag it) and wake that much
				 * earlier, so that the average release time is on target. */
				double over = (double)(now_ns() - wake);
				if (over > 1e6) over = 1e6;
				early_ns = 0.95 * early_ns + 0.05 * over;
				if (early_ns > (double)delay_ns / 4) early_ns = (double)delay_ns / 4;
			}
			continue;
		}
		n_recvs++;
		uint64_t arrival = now_ns();
		int len = (int)n;
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
			if (h->nlmsg_type == NLMSG_ERROR) {
				struct nlmsgerr *e = NLMSG_DATA(h);
				if (e->error)
					fprintf(stderr, "delayline: netlink error %d (%s)\n",
						e->error, strerror(-e->error));
				continue;
			}
			if (h->nlmsg_type != ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET))
				continue;
			char *p = (char *)NLMSG_DATA(h) + NLMSG_ALIGN(sizeof(struct nfgenmsg));
			char *end = (char *)h + h->nlmsg_len;
			while (p + NLA_HDRLEN <= end) {
				struct nlattr *a = (struct nlattr *)p;
				if (a->nla_len < NLA_HDRLEN)
					break;
				if ((a->nla_type & NLA_TYPE_MASK) == NFQA_PACKET_HDR) {
					struct nfqnl_msg_packet_hdr *ph = (void *)(p + NLA_HDRLEN);
					uint32_t id = ntohl(ph->packet_id);
					if (tail - head > ring_mask) {
						/* cannot happen with ring >= 2*maxlen: release the lot now */
						verdict_batch(id);
						head = tail;
					} else {
						ring[tail & ring_mask].id = id;
						ring[tail & ring_mask].due = arrival + delay_ns;
						tail++;
					}
					n_pkts++;
					break;
				}
				p += NLA_ALIGN(a->nla_len);
			}
		}
		if (tail - head > max_held)
			max_held = tail - head;
	}

	/* shutting down: release whatever we hold, then unbind */
	if (head != tail)
		verdict_batch(ring[(tail - 1) & ring_mask].id);
	cmd.command = NFQNL_CFG_CMD_UNBIND;
	msg_init(&m, NFQNL_MSG_CONFIG, 0);
	msg_attr(&m, NFQA_CFG_CMD, &cmd, sizeof cmd);
	msg_send(&m);
	fprintf(stderr, "delayline: stopped after %llu packets, %llu verdict batches\n",
		(unsigned long long)n_pkts, (unsigned long long)n_verdicts);
	return 0;
}
