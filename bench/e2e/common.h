// Small helpers shared by the end-to-end benchmark tools (udp.c, tcp.c,
// nfq-accept.c): monotonic time, argument parsing that refuses bad input
// with a message (exit 2), address lists, the stop flag set by SIGTERM/SIGINT
// and a deadline.
#ifndef PCB_COMMON_H
#define PCB_COMMON_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t pcb_stop = 0;

static inline void pcb_on_signal(int sig) { (void)sig; pcb_stop = 1; }

// SIGTERM and SIGINT set the stop flag; a blocked call returns EINTR.
static inline void pcb_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = pcb_on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
}

static inline uint64_t pcb_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void pcb_die(const char *what) {
  fprintf(stderr, "%s\n", what);
  exit(2);
}

static inline void pcb_die_errno(const char *what) {
  fprintf(stderr, "%s: %s\n", what, strerror(errno));
  exit(1);
}

// A whole number in [lo, hi], or exit 2 naming the option.
static inline long long pcb_num(const char *opt, const char *v, long long lo, long long hi) {
  char *end = NULL;
  errno = 0;
  long long n = v ? strtoll(v, &end, 10) : 0;
  if (!v || !*v || *end || errno || n < lo || n > hi) {
    fprintf(stderr, "%s must be a whole number from %lld to %lld, not \"%s\"\n", opt, lo, hi, v ? v : "");
    exit(2);
  }
  return n;
}

// Seconds as a decimal (0.001 .. 3600), returned in ns.
static inline uint64_t pcb_secs(const char *opt, const char *v) {
  char *end = NULL;
  double s = v ? strtod(v, &end) : 0;
  if (!v || !*v || *end || !(s >= 0.001 && s <= 3600)) {
    fprintf(stderr, "%s must be seconds from 0.001 to 3600, not \"%s\"\n", opt, v ? v : "");
    exit(2);
  }
  return (uint64_t)(s * 1e9);
}

static inline struct in_addr pcb_ipv4(const char *opt, const char *v) {
  struct in_addr a;
  if (!v || inet_pton(AF_INET, v, &a) != 1) {
    fprintf(stderr, "%s must be an IPv4 address, not \"%s\"\n", opt, v ? v : "");
    exit(2);
  }
  return a;
}

#define PCB_MAX_SRC 16

// A comma-separated list of IPv4 addresses (1..PCB_MAX_SRC).
static inline int pcb_ipv4_list(const char *opt, const char *v, struct in_addr *out) {
  char buf[512];
  if (!v || strlen(v) >= sizeof buf) pcb_die("address list too long");
  strcpy(buf, v);
  int n = 0;
  for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    if (n == PCB_MAX_SRC) pcb_die("at most 16 source addresses");
    out[n++] = pcb_ipv4(opt, t);
  }
  if (n == 0) pcb_die("an empty address list");
  return n;
}

static inline struct sockaddr_in pcb_sockaddr(struct in_addr a, int port) {
  struct sockaddr_in s;
  memset(&s, 0, sizeof s);
  s.sin_family = AF_INET;
  s.sin_addr = a;
  s.sin_port = htons((uint16_t)port);
  return s;
}

// "--name value" pairs: the value of --name, or NULL. Unknown options are
// refused by the caller's list of known ones (pcb_check_opts).
static inline const char *pcb_opt(int argc, char **argv, const char *name) {
  for (int i = 0; i + 1 < argc; i++)
    if (strcmp(argv[i], name) == 0) return argv[i + 1];
  return NULL;
}

static inline void pcb_check_opts(int argc, char **argv, int first, const char *const *known, const char *usage) {
  for (int i = first; i < argc; i += 2) {
    int ok = 0;
    for (const char *const *k = known; *k; k++) if (strcmp(argv[i], *k) == 0) ok = 1;
    if (!ok || i + 1 >= argc) {
      fprintf(stderr, "%s \"%s\"\nusage: %s\n", ok ? "a value is missing after" : "unknown argument", argv[i], usage);
      exit(2);
    }
  }
}

#endif
