// pcb-nfq-accept: the minimal accept-all consumer of NFQUEUE, contender (c)
// of the end-to-end benchmark: the ceiling of the queue path on this
// machine. It binds the queues the same way as the Portcullis addon
// (host/native/nfq.c): copy mode with the same copy range, the same queue
// maximum length, an 8 MiB receive buffer (SO_RCVBUFFORCE), ENOBUFS
// reported and counted, flags FAIL_OPEN|GSO|CONNTRACK masked with only GSO
// set when asked. Like the daemon it runs one thread for all its queues:
// per wakeup it receives until EAGAIN or BATCH packets, then accepts them
// all with one batch verdict (nfq_set_verdict_batch up to the last id).
//
//   pcb-nfq-accept --gso 0|1 [--maxlen 4096] [--copy 65535] [--rcvbuf BYTES]
//                  [--batch 256] --queues Q[,Q...]
//
// Prints "ready" once every queue is bound; at SIGTERM unbinds and prints
// {"packets":N,"udp4":U,"batches":B,"verdicts":V,"enobufs":E} (udp4: the
// IPv4 UDP datagrams among them, so a test can count its own packets apart
// from the neighbour discovery the appliance also queues).
#define _GNU_SOURCE
#include "common.h"

#include <fcntl.h>
#include <linux/netfilter.h>
#include <linux/netlink.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libnetfilter_queue/libnetfilter_queue.h>

#define MAXQ 16

struct q {
  struct nfq_handle *h;
  struct nfq_q_handle *qh;
  int fd;
  uint32_t last_id;
  uint32_t n; // packets in the current batch
};

static uint64_t packets, udp4, batches, verdicts, enobufs;

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *g, struct nfq_data *nfa, void *data) {
  (void)qh; (void)g;
  struct q *Q = data;
  struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
  if (!ph) return 0;
  Q->last_id = ntohl(ph->packet_id);
  Q->n++;
  packets++;
  unsigned char *p = NULL;
  int len = nfq_get_payload(nfa, &p);
  if (len >= 20 && (p[0] >> 4) == 4 && p[9] == 17) udp4++;
  return 0;
}

static void open_queue(struct q *Q, int num, uint32_t copy, uint32_t maxlen, int rcvbuf, int gso, size_t bufsize) {
  char what[96];
  Q->h = nfq_open();
  if (!Q->h) pcb_die_errno("nfq_open");
  Q->fd = nfq_fd(Q->h);
  nfnl_set_rcv_buffer_size(nfq_nfnlh(Q->h), (unsigned)bufsize);
  if (setsockopt(Q->fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0)
    setsockopt(Q->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  int zero = 0;
  setsockopt(Q->fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &zero, sizeof zero);
  Q->qh = nfq_create_queue(Q->h, (uint16_t)num, on_packet, Q);
  snprintf(what, sizeof what, "bind queue %d (root? already bound?)", num);
  if (!Q->qh) pcb_die_errno(what);
  if (nfq_set_mode(Q->qh, NFQNL_COPY_PACKET, copy) < 0) pcb_die_errno("set copy mode");
  if (nfq_set_queue_maxlen(Q->qh, maxlen) < 0) pcb_die_errno("set queue max length");
  uint32_t mask = NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO | NFQA_CFG_F_CONNTRACK;
  if (nfq_set_queue_flags(Q->qh, mask, gso ? NFQA_CFG_F_GSO : 0) < 0) pcb_die_errno("set queue flags");
  int fl = fcntl(Q->fd, F_GETFL);
  if (fl < 0 || fcntl(Q->fd, F_SETFL, fl | O_NONBLOCK) < 0) pcb_die_errno("set non-blocking");
}

// One wakeup of one queue: receive until EAGAIN or `batch` packets, then
// one verdict for all of them.
static void drain(struct q *Q, char *buf, size_t bufsize, uint32_t batch) {
  Q->n = 0;
  while (Q->n < batch) {
    ssize_t r = recv(Q->fd, buf, bufsize, MSG_DONTWAIT);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) { enobufs++; continue; }
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      pcb_die_errno("recv");
    }
    nfq_handle_packet(Q->h, buf, (int)r);
  }
  if (Q->n == 0) return;
  batches++;
  if (nfq_set_verdict_batch(Q->qh, Q->last_id, NF_ACCEPT) < 0) pcb_die_errno("nfq_set_verdict_batch");
  verdicts++;
}

int main(int argc, char **argv) {
  static const char *const known[] = {"--gso", "--maxlen", "--copy", "--rcvbuf", "--batch", "--queues", NULL};
  const char *usage = "pcb-nfq-accept --gso 0|1 [--maxlen N] [--copy N] [--rcvbuf BYTES] [--batch N] --queues Q[,Q...]";
  pcb_check_opts(argc, argv, 1, known, usage);
  pcb_signals();
  int gso = (int)pcb_num("--gso", pcb_opt(argc, argv, "--gso"), 0, 1);
  const char *v;
  uint32_t maxlen = (v = pcb_opt(argc, argv, "--maxlen")) ? (uint32_t)pcb_num("--maxlen", v, 1, 1 << 24) : 4096;
  uint32_t copy = (v = pcb_opt(argc, argv, "--copy")) ? (uint32_t)pcb_num("--copy", v, 64, 65535) : 65535;
  int rcvbuf = (v = pcb_opt(argc, argv, "--rcvbuf")) ? (int)pcb_num("--rcvbuf", v, 4096, 1 << 30) : 8 << 20;
  uint32_t batch = (v = pcb_opt(argc, argv, "--batch")) ? (uint32_t)pcb_num("--batch", v, 1, 65536) : 256;
  const char *qs = pcb_opt(argc, argv, "--queues");
  if (!qs) pcb_die(usage);
  char list[256];
  if (strlen(qs) >= sizeof list) pcb_die("--queues: list too long");
  strcpy(list, qs);
  struct q Q[MAXQ];
  struct pollfd pf[MAXQ];
  int nq = 0;
  size_t bufsize = copy + 1024u; // as the addon: the copy range plus netlink headers
  char *buf = malloc(bufsize);
  if (!buf) pcb_die("out of memory");
  for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    if (nq == MAXQ) pcb_die("at most 16 queues");
    memset(&Q[nq], 0, sizeof Q[nq]);
    open_queue(&Q[nq], (int)pcb_num("--queues", t, 0, 65535), copy, maxlen, rcvbuf, gso, bufsize);
    pf[nq].fd = Q[nq].fd;
    pf[nq].events = POLLIN;
    nq++;
  }
  printf("ready\n");
  fflush(stdout);
  while (!pcb_stop) {
    int n = poll(pf, (nfds_t)nq, 200);
    if (n < 0 && errno != EINTR) pcb_die_errno("poll");
    for (int i = 0; n > 0 && i < nq; i++) {
      if (pf[i].revents) drain(&Q[i], buf, bufsize, batch); // POLLERR: recv reports the ENOBUFS
    }
  }
  for (int i = 0; i < nq; i++) { nfq_destroy_queue(Q[i].qh); nfq_close(Q[i].h); }
  printf("{\"packets\":%llu,\"udp4\":%llu,\"batches\":%llu,\"verdicts\":%llu,\"enobufs\":%llu}\n", (unsigned long long)packets,
         (unsigned long long)udp4, (unsigned long long)batches, (unsigned long long)verdicts, (unsigned long long)enobufs);
  return 0;
}
