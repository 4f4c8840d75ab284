// pcb-udp: the small-packet load of the end-to-end benchmark (bench/e2e).
//
//   pcb-udp sink --bind ADDR --port P
//       counts datagrams with recvmmsg (256 per call) until SIGTERM, then
//       prints {"packets":N,"bytes":B,"first_ns":T0,"last_ns":T1} (monotonic
//       clock). Prints "ready" once bound.
//   pcb-udp send --dst ADDR --port P --src A[,B...] [--sport P] --size BYTES
//                (--secs S | --count N) [--pps RATE]
//       sends BYTES-byte payloads with sendmmsg (64 per call), round robin
//       over one socket per source address (the kernel spreads NFQUEUE
//       queues by addresses, so several sources give several flows); paced
//       to RATE per second when given, else as fast as the kernel takes
//       them; from source port --sport (default: an ephemeral one). Prints
//       {"sent":N,"failed":F,"ns":T}.
//
// Why not a Debian tool: iperf3 -u paces by bandwidth and reports at whole
// seconds; this sends at the kernel's speed with sendmmsg and counts exactly
// what arrives, which is the figure the benchmark needs. Unconnected
// sockets, so an ICMP error never turns into a failed send.
#define _GNU_SOURCE
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

#define BATCH_SEND 64
#define BATCH_RECV 256

static int sink(int argc, char **argv) {
  static const char *const known[] = {"--bind", "--port", NULL};
  pcb_check_opts(argc, argv, 2, known, "pcb-udp sink --bind ADDR --port P");
  struct in_addr a = pcb_ipv4("--bind", pcb_opt(argc, argv, "--bind"));
  int port = (int)pcb_num("--port", pcb_opt(argc, argv, "--port"), 1, 65535);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) pcb_die_errno("socket");
  int buf = 8 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf) < 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  struct timeval tv = {0, 50000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct sockaddr_in sa = pcb_sockaddr(a, port);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) pcb_die_errno("bind");
  static char data[BATCH_RECV][2048];
  struct mmsghdr msgs[BATCH_RECV];
  struct iovec iov[BATCH_RECV];
  for (int i = 0; i < BATCH_RECV; i++) {
    iov[i].iov_base = data[i];
    iov[i].iov_len = sizeof data[i];
    memset(&msgs[i], 0, sizeof msgs[i]);
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  printf("ready\n");
  fflush(stdout);
  uint64_t packets = 0, bytes = 0, first = 0, last = 0;
  while (!pcb_stop) {
    int n = recvmmsg(fd, msgs, BATCH_RECV, 0, NULL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      pcb_die_errno("recvmmsg");
    }
    uint64_t t = pcb_now_ns();
    if (!first) first = t;
    last = t;
    packets += (uint64_t)n;
    for (int i = 0; i < n; i++) bytes += msgs[i].msg_len;
  }
  printf("{\"packets\":%llu,\"bytes\":%llu,\"first_ns\":%llu,\"last_ns\":%llu}\n", (unsigned long long)packets,
         (unsigned long long)bytes, (unsigned long long)first, (unsigned long long)last);
  return 0;
}

static int send_load(int argc, char **argv) {
  static const char *const known[] = {"--dst", "--port", "--src", "--sport", "--size", "--secs", "--count", "--pps", NULL};
  const char *usage = "pcb-udp send --dst ADDR --port P --src A[,B...] [--sport P] --size BYTES (--secs S | --count N) [--pps RATE]";
  pcb_check_opts(argc, argv, 2, known, usage);
  struct in_addr dst = pcb_ipv4("--dst", pcb_opt(argc, argv, "--dst"));
  int port = (int)pcb_num("--port", pcb_opt(argc, argv, "--port"), 1, 65535);
  struct in_addr src[PCB_MAX_SRC];
  int nsrc = pcb_ipv4_list("--src", pcb_opt(argc, argv, "--src"), src);
  const char *sp = pcb_opt(argc, argv, "--sport");
  int sport = sp ? (int)pcb_num("--sport", sp, 1, 65535) : 0;
  int size = (int)pcb_num("--size", pcb_opt(argc, argv, "--size"), 1, 1472);
  const char *secs = pcb_opt(argc, argv, "--secs"), *count = pcb_opt(argc, argv, "--count"), *pps = pcb_opt(argc, argv, "--pps");
  if (!secs == !count) pcb_die("give --secs or --count (one of them)");
  uint64_t dur = secs ? pcb_secs("--secs", secs) : 0;
  uint64_t want = count ? (uint64_t)pcb_num("--count", count, 1, 1000000000) : UINT64_MAX;
  uint64_t rate = pps ? (uint64_t)pcb_num("--pps", pps, 1, 10000000) : 0;

  int fds[PCB_MAX_SRC];
  for (int i = 0; i < nsrc; i++) {
    fds[i] = socket(AF_INET, SOCK_DGRAM, 0);
    if (fds[i] < 0) pcb_die_errno("socket");
    struct sockaddr_in b = pcb_sockaddr(src[i], sport);
    if (bind(fds[i], (struct sockaddr *)&b, sizeof b) < 0) pcb_die_errno("bind to a source address");
  }
  struct sockaddr_in to = pcb_sockaddr(dst, port);
  static char payload[1472];
  memset(payload, 0x5a, sizeof payload);
  struct iovec iov = {payload, (size_t)size};
  struct mmsghdr msgs[BATCH_SEND];
  for (int i = 0; i < BATCH_SEND; i++) {
    memset(&msgs[i], 0, sizeof msgs[i]);
    msgs[i].msg_hdr.msg_name = &to;
    msgs[i].msg_hdr.msg_namelen = sizeof to;
    msgs[i].msg_hdr.msg_iov = &iov;
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  uint64_t sent = 0, failed = 0, t0 = pcb_now_ns(), now = t0;
  for (int k = 0; !pcb_stop && sent + failed < want; k = (k + 1) % nsrc) {
    now = pcb_now_ns();
    if (dur && now - t0 >= dur) break;
    unsigned batch = BATCH_SEND;
    if (rate) {
      // Paced: one datagram at its due time.
      uint64_t due = t0 + (sent + failed) * 1000000000ull / rate;
      if (due > now) {
        struct timespec ts = {(time_t)((due - now) / 1000000000ull), (long)((due - now) % 1000000000ull)};
        nanosleep(&ts, NULL);
      }
      batch = 1;
    }
    if (want - sent - failed < batch) batch = (unsigned)(want - sent - failed);
    int n = sendmmsg(fds[k], msgs, batch, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      failed++; // ENOBUFS and the like: the datagram was not sent
      continue;
    }
    sent += (uint64_t)n;
  }
  now = pcb_now_ns();
  printf("{\"sent\":%llu,\"failed\":%llu,\"ns\":%llu}\n", (unsigned long long)sent, (unsigned long long)failed,
         (unsigned long long)(now - t0));
  return 0;
}

int main(int argc, char **argv) {
  pcb_signals();
  if (argc >= 2 && strcmp(argv[1], "sink") == 0) return sink(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "send") == 0) return send_load(argc, argv);
  fprintf(stderr, "usage: pcb-udp sink --bind ADDR --port P | pcb-udp send --dst ADDR --port P --src LIST --size N (--secs S | --count N) [--pps R]\n");
  return 2;
}
