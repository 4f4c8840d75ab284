// pcb-tcp: the TCP loads of the end-to-end benchmark (bench/e2e).
//
//   pcb-tcp serve --bind ADDR --port P --mode echo|count
//       epoll server. echo: every byte read is written back (round trips;
//       connections that are reset at once are simply closed). count: reads
//       and counts; at the client's EOF answers 24 bytes (u64 bytes, first
//       and last arrival, monotonic ns, host order) and closes. Prints
//       "ready" once listening, {"accepted":N} at SIGTERM.
//   pcb-tcp connect --dst ADDR --port P --src A[,B...] (--secs S | --count N) --conc C
//       new connections: C non-blocking connects in flight, each closed
//       with a reset (SO_LINGER 0) as soon as the handshake completes, so no
//       TIME_WAIT piles up; a connect not done in 2 s counts as failed.
//       Prints {"connections":N,"failed":F,"ns":T}.
//   pcb-tcp rr --dst ADDR --port P --src A --count N --size BYTES
//       one connection (TCP_NODELAY), N round trips of BYTES each way;
//       prints {"n":N,"p50_ns":..,"p99_ns":..,"min_ns":..,"max_ns":..}
//       (nearest-rank percentiles, as bench/stats.ts).
//   pcb-tcp bulk --dst ADDR --port P --src A --secs S
//       one connection sending 128 KiB writes for S seconds; prints the
//       count server's figures {"bytes":N,"ns":last-first,"client_ns":T}.
//
// Why not iperf3 (Debian main): its -t takes whole seconds and each run
// adds a control handshake, too coarse for many short alternating runs; it
// also has no connection-rate or round-trip mode. ping would need the
// policy to allow ICMP echo; round trips over TCP cross the same filters as
// the other loads.
#define _GNU_SOURCE
#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif
#define MAXFD 65536

struct conn { uint64_t bytes, first, last; };

static int listen_on(struct in_addr a, int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
  if (fd < 0) pcb_die_errno("socket");
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sa = pcb_sockaddr(a, port);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) pcb_die_errno("bind");
  if (listen(fd, 4096) < 0) pcb_die_errno("listen");
  return fd;
}

static int serve(int argc, char **argv) {
  static const char *const known[] = {"--bind", "--port", "--mode", NULL};
  pcb_check_opts(argc, argv, 2, known, "pcb-tcp serve --bind ADDR --port P --mode echo|count");
  struct in_addr a = pcb_ipv4("--bind", pcb_opt(argc, argv, "--bind"));
  int port = (int)pcb_num("--port", pcb_opt(argc, argv, "--port"), 1, 65535);
  const char *mode = pcb_opt(argc, argv, "--mode");
  if (!mode || (strcmp(mode, "echo") && strcmp(mode, "count"))) pcb_die("--mode must be echo or count");
  int count = strcmp(mode, "count") == 0;
  int lfd = listen_on(a, port), ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd}, evs[256];
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  struct conn *c = calloc(MAXFD, sizeof *c);
  static char buf[1 << 17];
  uint64_t accepted = 0;
  printf("ready\n");
  fflush(stdout);
  while (!pcb_stop) {
    int n = epoll_wait(ep, evs, 256, 100);
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == lfd) {
        int cfd;
        while ((cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          accepted++;
          if (cfd >= MAXFD) { close(cfd); continue; }
          memset(&c[cfd], 0, sizeof c[cfd]);
          struct epoll_event ce = {.events = EPOLLIN, .data.fd = cfd};
          epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ce);
        }
        continue;
      }
      for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r > 0) {
          uint64_t t = pcb_now_ns();
          if (!c[fd].first) c[fd].first = t;
          c[fd].last = t;
          c[fd].bytes += (uint64_t)r;
          if (!count && write(fd, buf, (size_t)r) != r) { close(fd); break; }
          continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) break;
        if (r == 0 && count) {
          uint64_t sum[3] = {c[fd].bytes, c[fd].first, c[fd].last};
          if (write(fd, sum, sizeof sum) != (ssize_t)sizeof sum) { /* the client went away */ }
        }
        close(fd); // EOF or reset: epoll forgets a closed fd
        break;
      }
    }
  }
  printf("{\"accepted\":%llu}\n", (unsigned long long)accepted);
  return 0;
}

static int client_socket(struct in_addr src, int nonblock) {
  int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0), one = 1;
  if (fd < 0) pcb_die_errno("socket");
  setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
  struct sockaddr_in b = pcb_sockaddr(src, 0);
  if (bind(fd, (struct sockaddr *)&b, sizeof b) < 0) pcb_die_errno("bind to a source address");
  return fd;
}

static int connect_load(int argc, char **argv) {
  static const char *const known[] = {"--dst", "--port", "--src", "--secs", "--count", "--conc", NULL};
  const char *usage = "pcb-tcp connect --dst ADDR --port P --src A[,B...] (--secs S | --count N) --conc C";
  pcb_check_opts(argc, argv, 2, known, usage);
  struct in_addr dst = pcb_ipv4("--dst", pcb_opt(argc, argv, "--dst")), src[PCB_MAX_SRC];
  int port = (int)pcb_num("--port", pcb_opt(argc, argv, "--port"), 1, 65535);
  int nsrc = pcb_ipv4_list("--src", pcb_opt(argc, argv, "--src"), src);
  int conc = (int)pcb_num("--conc", pcb_opt(argc, argv, "--conc"), 1, 1024);
  const char *secs = pcb_opt(argc, argv, "--secs"), *count = pcb_opt(argc, argv, "--count");
  if (!secs == !count) pcb_die("give --secs or --count (one of them)");
  uint64_t dur = secs ? pcb_secs("--secs", secs) : 0;
  uint64_t want = count ? (uint64_t)pcb_num("--count", count, 1, 100000000) : UINT64_MAX;
  struct sockaddr_in to = pcb_sockaddr(dst, port);
  int ep = epoll_create1(0);
  uint64_t *started = calloc(MAXFD, sizeof *started);
  uint64_t done = 0, failed = 0, opened = 0, t0 = pcb_now_ns(), last_scan = t0;
  int inflight = 0, k = 0;
  struct linger lg = {1, 0};
  struct epoll_event evs[256];
  for (;;) {
    uint64_t now = pcb_now_ns();
    int more = !pcb_stop && (!dur || now - t0 < dur);
    while (more && inflight < conc && opened < want) {
      int fd = client_socket(src[k], 1);
      k = (k + 1) % nsrc;
      if (fd >= MAXFD) pcb_die("too many descriptors");
      if (connect(fd, (struct sockaddr *)&to, sizeof to) < 0 && errno != EINPROGRESS) { failed++; close(fd); opened++; continue; }
      struct epoll_event ce = {.events = EPOLLOUT, .data.fd = fd};
      epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce);
      started[fd] = now;
      inflight++;
      opened++;
    }
    if (inflight == 0 && (!more || opened >= want)) break;
    if (!more && !count) break; // timed run: what is still in flight is not counted
    int n = epoll_wait(ep, evs, 256, 20);
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd, err = 0;
      socklen_t sl = sizeof err;
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl);
      if (err == 0) { done++; setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg); } else failed++;
      started[fd] = 0;
      close(fd);
      inflight--;
    }
    now = pcb_now_ns();
    if (now - last_scan > 100000000ull) {
      last_scan = now;
      for (int fd = 0; fd < MAXFD; fd++) {
        if (started[fd] && now - started[fd] > 2000000000ull) { started[fd] = 0; close(fd); failed++; inflight--; }
      }
    }
  }
  printf("{\"connections\":%llu,\"failed\":%llu,\"ns\":%llu}\n", (unsigned long long)done, (unsigned long long)failed,
         (unsigned long long)(pcb_now_ns() - t0));
  return 0;
}

static int connected(int argc, char **argv) {
  struct in_addr dst = pcb_ipv4("--dst", pcb_opt(argc, argv, "--dst")), src[PCB_MAX_SRC];
  int port = (int)pcb_num("--port", pcb_opt(argc, argv, "--port"), 1, 65535);
  pcb_ipv4_list("--src", pcb_opt(argc, argv, "--src"), src);
  int fd = client_socket(src[0], 0), one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in to = pcb_sockaddr(dst, port);
  if (connect(fd, (struct sockaddr *)&to, sizeof to) < 0) pcb_die_errno("connect");
  return fd;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static uint64_t rank(const uint64_t *s, uint64_t n, double p) {
  double r = p / 100.0 * (double)n;
  uint64_t i = (uint64_t)r;
  if ((double)i < r) i++;
  return s[i == 0 ? 0 : (i > n ? n - 1 : i - 1)];
}

static int rr(int argc, char **argv) {
  static const char *const known[] = {"--dst", "--port", "--src", "--count", "--size", NULL};
  pcb_check_opts(argc, argv, 2, known, "pcb-tcp rr --dst ADDR --port P --src A --count N --size BYTES");
  uint64_t n = (uint64_t)pcb_num("--count", pcb_opt(argc, argv, "--count"), 1, 10000000);
  size_t size = (size_t)pcb_num("--size", pcb_opt(argc, argv, "--size"), 1, 65536);
  int fd = connected(argc, argv);
  uint64_t *s = malloc(n * sizeof *s);
  static char out[65536], in[65536];
  uint64_t i = 0;
  for (; i < n && !pcb_stop; i++) {
    uint64_t t = pcb_now_ns();
    if (write(fd, out, size) != (ssize_t)size) pcb_die_errno("write");
    for (size_t got = 0; got < size;) {
      ssize_t r = read(fd, in, size - got);
      if (r <= 0) pcb_die_errno("read (the echo server closed?)");
      got += (size_t)r;
    }
    s[i] = pcb_now_ns() - t;
  }
  qsort(s, i, sizeof *s, cmp_u64);
  if (i == 0) pcb_die("no round trip done");
  printf("{\"n\":%llu,\"p50_ns\":%llu,\"p99_ns\":%llu,\"min_ns\":%llu,\"max_ns\":%llu}\n", (unsigned long long)i,
         (unsigned long long)rank(s, i, 50), (unsigned long long)rank(s, i, 99), (unsigned long long)s[0], (unsigned long long)s[i - 1]);
  return 0;
}

static int bulk(int argc, char **argv) {
  static const char *const known[] = {"--dst", "--port", "--src", "--secs", NULL};
  pcb_check_opts(argc, argv, 2, known, "pcb-tcp bulk --dst ADDR --port P --src A --secs S");
  uint64_t dur = pcb_secs("--secs", pcb_opt(argc, argv, "--secs"));
  int fd = connected(argc, argv);
  static char buf[128 << 10];
  uint64_t t0 = pcb_now_ns();
  while (!pcb_stop && pcb_now_ns() - t0 < dur) {
    if (write(fd, buf, sizeof buf) < 0 && errno != EINTR) pcb_die_errno("write");
  }
  shutdown(fd, SHUT_WR);
  uint64_t sum[3];
  size_t got = 0;
  while (got < sizeof sum) {
    ssize_t r = read(fd, (char *)sum + got, sizeof sum - got);
    if (r <= 0) pcb_die_errno("read the count server's figures");
    got += (size_t)r;
  }
  printf("{\"bytes\":%llu,\"ns\":%llu,\"client_ns\":%llu}\n", (unsigned long long)sum[0], (unsigned long long)(sum[2] - sum[1]),
         (unsigned long long)(pcb_now_ns() - t0));
  return 0;
}

int main(int argc, char **argv) {
  pcb_signals();
  const char *cmd = argc >= 2 ? argv[1] : "";
  if (strcmp(cmd, "serve") == 0) return serve(argc, argv);
  if (strcmp(cmd, "connect") == 0) return connect_load(argc, argv);
  if (strcmp(cmd, "rr") == 0) return rr(argc, argv);
  if (strcmp(cmd, "bulk") == 0) return bulk(argc, argv);
  fprintf(stderr, "usage: pcb-tcp serve|connect|rr|bulk ... (see bench/e2e/tcp.c)\n");
  return 2;
}
