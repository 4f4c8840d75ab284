// The conntrack addon: the kernel's connection tracking table over ctnetlink,
// for flow offload (issue 15): dump entries by mark, create, re-mark and
// delete them, and follow their end through destroy events. N-API,
// libnetfilter_conntrack (message build and parse), libuv.
//
//   query socket (NETLINK_NETFILTER, blocking, 5 s timeout)
//     dump(filter)       one GET|DUMP, the kernel filters by mark/mask
//     create/setMark/remove   one message, its ACK awaited
//     removeMarked(filter)    dump, then DELETE by tuple and id in windows of
//                             WINDOW messages per send, every ACK read back
//   event socket (only with events: true; bound to the DESTROY group,
//                 non-blocking, large rcvbuf)
//     readable: uv_poll → read until EAGAIN → ONE JS callback per wakeup with
//     the ended entries whose mark matches the filter (filtered here)
//
// The sockets are this addon's own; libnetfilter_conntrack builds and parses
// the messages (nfct_nlmsg_build, nfct_nlmsg_build_filter, nfct_nlmsg_parse),
// so every attribute is read the way conntrack(8) reads it.
//
// Everything runs on the JS thread of the environment that opened the handle.
// The query calls block for their netlink round trips (a dump of 10,000
// entries takes milliseconds); the event path never blocks.

#if defined(__has_include)
#if !__has_include(<libnetfilter_conntrack/libnetfilter_conntrack.h>)
#error "libnetfilter_conntrack headers are missing: apt-get install libnetfilter-conntrack-dev (bash host/setup/ensure.sh installs it), then npm run build:addon"
#endif
#endif

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>

#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack_tcp.h>
#include <node_api.h>
#include <uv.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif
#ifndef NETLINK_NO_ENOBUFS
#define NETLINK_NO_ENOBUFS 5
#endif
#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK 10
#endif
#ifndef NFNL_SUBSYS_CTNETLINK
#define NFNL_SUBSYS_CTNETLINK 1
#endif
#define CT_MSG_NEW IPCTNL_MSG_CT_NEW
#define CT_MSG_GET IPCTNL_MSG_CT_GET
#define CT_MSG_DELETE IPCTNL_MSG_CT_DELETE

#define RBUF_SIZE (256u << 10)  // one recv: a dump part is at most 32 KiB, acks are 36 bytes
#define MSG_SLOT 1024u          // room for one request (a tuple, id, mark, timeout, state: ~200 bytes)
#define WINDOW 256u             // requests per send in removeMarked / createMany; their ACKs fit any rcvbuf
#define MAX_READS 4096          // event datagrams read per wakeup
#define RCVBUF_EVENTS (8 << 20)  // the event socket's default; the query socket's is 1 MiB
#define RCVBUF_QUERY (1 << 20)

// ── errors ─────────────────────────────────────────────────────────────────

static const char *errno_name(int err) {
  if (err == -1) return "ECLOSED";
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char *n = strerrorname_np(err);
  if (n) return n;
#endif
  switch (err) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EEXIST: return "EEXIST";
    case EINVAL: return "EINVAL";
    case ENOBUFS: return "ENOBUFS";
    case ENOMEM: return "ENOMEM";
    case EAGAIN: return "EAGAIN";
    case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    default: return "EUNKNOWN";
  }
}

// The one place errors get their words. err -1: the handle is closed.
static napi_value make_error(napi_env env, int err, const char *op) {
  const char *code = errno_name(err);
  const char *what;
  if (err == -1) what = "the conntrack handle is closed";
  else if (err == EPERM || err == EACCES)
    what = "not permitted: ctnetlink needs root or CAP_NET_ADMIN in this network namespace";
  else if (err == EPROTONOSUPPORT || err == EAFNOSUPPORT || (err == EOPNOTSUPP && !strcmp(op, "open")))
    what = "the kernel has no ctnetlink: load nf_conntrack_netlink (modprobe nf_conntrack_netlink) or use a "
           "kernel built with CONFIG_NF_CT_NETLINK";
  else if (err == ENOENT) what = "no such conntrack entry";
  else if (err == EEXIST) what = "an entry with this tuple exists already";
  else if (err == ENOBUFS) what = "the socket receive buffer overflowed and the kernel dropped messages";
  else if (err == EAGAIN) what = "the kernel did not answer within 5 s";
  else if (err == ENOMEM) what = "out of memory";
  else what = strerror(err);
  char msg[320];
  snprintf(msg, sizeof msg, "conntrack: %s failed (%s): %s", op, code, what);
  napi_value m, c, e, n, o;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &c);
  napi_create_error(env, c, m, &e);
  napi_create_int32(env, err, &n);
  napi_set_named_property(env, e, "errno", n);
  napi_create_string_utf8(env, op, NAPI_AUTO_LENGTH, &o);
  napi_set_named_property(env, e, "op", o);
  return e;
}

static napi_value throw_errno(napi_env env, int err, const char *op) {
  napi_throw(env, make_error(env, err, op));
  return NULL;
}

static napi_value type_error(napi_env env, const char *msg) {
  napi_throw_type_error(env, "EINVAL", msg);
  return NULL;
}

// ── the handle ─────────────────────────────────────────────────────────────

enum { POLL_NONE, POLL_ACTIVE, POLL_CLOSING, POLL_CLOSED };

typedef struct {
  uint64_t events, overflows, dumps, errors;
} stats_t;

typedef struct {
  napi_env env;
  int fd, efd;         // query socket; event socket (-1 without events)
  uint32_t seq;
  int closed;
  uint8_t *rbuf;       // RBUF_SIZE, for both sockets (never used re-entrantly)
  int rcvbuf, rcvbuf_forced;
  // destroy events
  int has_filter;
  uint32_t fmark, fmask;
  uv_poll_t poll;
  int poll_state;
  napi_ref cb_ref, self_ref;
  napi_async_context actx;
  int finalized, hooked;
  napi_async_cleanup_hook_handle hook;
  stats_t st;
} ct_t;

// A netlink socket of this namespace's netfilter subsystem, bound to `groups`.
// `want`: its receive buffer; `big`: the event socket (its rcvbuf goes in stats).
static int nl_socket(uint32_t groups, int nonblock, ct_t *C, int want, int big) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), NETLINK_NETFILTER);
  if (fd < 0) return -1;
  int one = 1, zero = 0;
  int forced = setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof want) == 0;
  if (!forced) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof want);
  if (big) {
    C->rcvbuf_forced = forced;
    socklen_t sl = sizeof C->rcvbuf;
    getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &C->rcvbuf, &sl);
  }
  // Overflow must be reported (ENOBUFS), so that it is counted and resynced.
  setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &zero, sizeof zero);
  // ACKs carry only the request's header, not the request.
  setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  if (!nonblock) {
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  struct sockaddr_nl sa;
  memset(&sa, 0, sizeof sa);
  sa.nl_family = AF_NETLINK;
  sa.nl_groups = groups;
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

static struct nlmsghdr *put_header(uint8_t *p, uint16_t type, uint16_t flags, uint8_t family, uint32_t seq) {
  memset(p, 0, NLMSG_LENGTH(sizeof(struct nfgenmsg)));
  struct nlmsghdr *nlh = (struct nlmsghdr *)p;
  nlh->nlmsg_len = NLMSG_LENGTH(sizeof(struct nfgenmsg));
  nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | type;
  nlh->nlmsg_flags = NLM_F_REQUEST | flags;
  nlh->nlmsg_seq = seq;
  struct nfgenmsg *g = NLMSG_DATA(nlh);
  g->nfgen_family = family;
  g->version = NFNETLINK_V0;
  return nlh;
}

static int send_all(int fd, const uint8_t *p, size_t len) {
  struct sockaddr_nl sa;
  memset(&sa, 0, sizeof sa);
  sa.nl_family = AF_NETLINK;
  for (;;) {
    ssize_t r = sendto(fd, p, len, 0, (struct sockaddr *)&sa, sizeof sa);
    if (r >= 0) return 0;
    if (errno != EINTR) return errno;
  }
}

// ── requests with ACKs ─────────────────────────────────────────────────────
//
// `n` requests of one type, each built from cts[i] (nfct_nlmsg_build), sent
// WINDOW at a time in one datagram (netlink runs every message of it in
// order), then every ACK of the window read back: errs[i] is 0 or the errno
// the kernel gave request i. A window whose ACKs could not all be read
// (ENOBUFS, no answer in 5 s) leaves ENOBUFS or EAGAIN for the requests
// without one: the caller resyncs. Returns 0, or an errno when nothing could
// be sent.

// CTA_ID when the object has an id: libnetfilter_conntrack 1.0.9 leaves it
// out of the messages it builds, and a DELETE with it removes only the entry
// with that id (ENOENT otherwise). The kernel's id is a hash of the entry's
// address and tuples: another entry that took the tuple meanwhile has
// another id, unless it also took the freed entry's memory.
static void put_id(struct nlmsghdr *nlh, const struct nf_conntrack *ct) {
  if (nfct_attr_is_set(ct, ATTR_ID) <= 0) return;
  const uint8_t *a = (const uint8_t *)NLMSG_DATA(nlh) + NLMSG_ALIGN(sizeof(struct nfgenmsg));
  const uint8_t *end = (const uint8_t *)nlh + nlh->nlmsg_len;
  while (end - a >= NLA_HDRLEN) {
    const struct nlattr *na = (const struct nlattr *)a;
    if (na->nla_len < NLA_HDRLEN) break;
    if ((na->nla_type & NLA_TYPE_MASK) == CTA_ID) return;  // a library that builds it
    a += NLA_ALIGN(na->nla_len);
  }
  struct nlattr *na = (struct nlattr *)((uint8_t *)nlh + NLMSG_ALIGN(nlh->nlmsg_len));
  na->nla_type = CTA_ID;
  na->nla_len = NLA_HDRLEN + 4;
  uint32_t be = htonl(nfct_get_attr_u32(ct, ATTR_ID));
  memcpy((uint8_t *)na + NLA_HDRLEN, &be, 4);
  nlh->nlmsg_len = NLMSG_ALIGN(nlh->nlmsg_len) + NLA_ALIGN(na->nla_len);
}

static int transact(ct_t *C, struct nf_conntrack **cts, uint32_t n, uint16_t type, uint16_t flags, int *errs) {
  uint8_t *sbuf = malloc((size_t)WINDOW * MSG_SLOT);
  if (!sbuf) return ENOMEM;
  int ret = 0;
  for (uint32_t base = 0; base < n; base += WINDOW) {
    uint32_t w = n - base < WINDOW ? n - base : WINDOW;
    size_t len = 0;
    uint32_t seq0 = C->seq;
    C->seq += w;
    for (uint32_t i = 0; i < w; i++) {
      struct nf_conntrack *ct = cts[base + i];
      uint8_t fam = (uint8_t)nfct_get_attr_u8(ct, ATTR_L3PROTO);
      struct nlmsghdr *nlh = put_header(sbuf + len, type, NLM_F_ACK | flags, fam, seq0 + i);
      nfct_nlmsg_build(nlh, ct);
      put_id(nlh, ct);
      errs[base + i] = EAGAIN;  // until its ACK is read
      len += NLMSG_ALIGN(nlh->nlmsg_len);
    }
    int e = send_all(C->fd, sbuf, len);
    if (e) { for (uint32_t i = 0; i < w; i++) errs[base + i] = e; if (base == 0) ret = e; break; }
    // The kernel runs the whole datagram within sendto(): every ACK is queued
    // (or lost to ENOBUFS) by now. After an overflow, what is still queued is
    // read without waiting; the rest is lost for good.
    uint32_t acked = 0;
    int lossy = 0;
    while (acked < w) {
      if (lossy) {
        struct pollfd pf = {C->fd, POLLIN, 0};
        if (poll(&pf, 1, 10) <= 0) break;
      }
      ssize_t r = recv(C->fd, C->rbuf, RBUF_SIZE, 0);
      if (r < 0) {
        if (errno == EINTR) continue;
        int re = errno == EWOULDBLOCK ? EAGAIN : errno;
        for (uint32_t i = 0; i < w; i++) if (errs[base + i] == EAGAIN) errs[base + i] = re;
        C->st.errors++;
        if (re == ENOBUFS) { lossy = 1; continue; }
        break;  // no answer in 5 s: the rest of this window stays unknown (EAGAIN)
      }
      for (struct nlmsghdr *h = (struct nlmsghdr *)C->rbuf; NLMSG_OK(h, (size_t)r); h = NLMSG_NEXT(h, r)) {
        if (h->nlmsg_type != NLMSG_ERROR) continue;
        uint32_t k = h->nlmsg_seq - seq0;
        if (k >= w || h->nlmsg_len < NLMSG_LENGTH(sizeof(int))) continue;  // a stale answer
        int *slot = &errs[base + k];
        if (*slot != EAGAIN && *slot != ENOBUFS) continue;
        *slot = -*(const int *)NLMSG_DATA(h);
        acked++;
      }
    }
  }
  free(sbuf);
  return ret;
}

// One request and its ACK: 0 or the kernel's errno.
static int request1(ct_t *C, struct nf_conntrack *ct, uint16_t type, uint16_t flags) {
  int err = 0;
  int e = transact(C, &ct, 1, type, flags, &err);
  return e ? e : err;
}

// ── dump ───────────────────────────────────────────────────────────────────

typedef int (*entry_fn)(struct nf_conntrack *ct, void *ctx);  // 0: keep going; else stop with that errno

// A dump of the whole table (both families), filtered in the kernel by
// mark/mask when `filtered`. fn gets each entry (owned by fn: it must destroy
// or keep it). Returns 0 or an errno.
static int dump(ct_t *C, int filtered, uint32_t mark, uint32_t mask, entry_fn fn, void *ctx) {
  uint8_t req[MSG_SLOT];
  uint32_t seq = C->seq++;
  struct nlmsghdr *nlh = put_header(req, CT_MSG_GET, NLM_F_DUMP, AF_UNSPEC, seq);
  if (filtered) {
    struct nfct_filter_dump *f = nfct_filter_dump_create();
    if (!f) return ENOMEM;
    struct nfct_filter_dump_mark fm = {mark, mask};
    nfct_filter_dump_set_attr(f, NFCT_FILTER_DUMP_MARK, &fm);
    nfct_nlmsg_build_filter(nlh, f);
    nfct_filter_dump_destroy(f);
  }
  C->st.dumps++;
  int e = send_all(C->fd, req, nlh->nlmsg_len);
  if (e) return e;
  for (;;) {
    ssize_t r = recv(C->fd, C->rbuf, RBUF_SIZE, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return errno == EWOULDBLOCK ? EAGAIN : errno;
    }
    for (struct nlmsghdr *h = (struct nlmsghdr *)C->rbuf; NLMSG_OK(h, (size_t)r); h = NLMSG_NEXT(h, r)) {
      if (h->nlmsg_seq != seq) continue;  // a stale answer of an earlier request
      if (h->nlmsg_type == NLMSG_DONE) return 0;
      if (h->nlmsg_type == NLMSG_ERROR) {
        int err = h->nlmsg_len >= NLMSG_LENGTH(sizeof(int)) ? -*(const int *)NLMSG_DATA(h) : EINVAL;
        if (err == 0) continue;
        return err;
      }
      struct nf_conntrack *ct = nfct_new();
      if (!ct) return ENOMEM;
      if (nfct_nlmsg_parse(h, ct) < 0) { nfct_destroy(ct); C->st.errors++; continue; }
      int stop = fn(ct, ctx);
      if (stop) return stop;
    }
  }
}

// A whole dump into an array of entries (the caller destroys them). A dump
// that fails with ENOBUFS (the socket overflowed mid-dump) is started again,
// up to 3 times.
typedef struct { struct nf_conntrack **v; uint32_t n, cap; } ctlist_t;

static void list_free(ctlist_t *L) {
  for (uint32_t i = 0; i < L->n; i++) nfct_destroy(L->v[i]);
  free(L->v);
  L->v = NULL;
  L->n = L->cap = 0;
}

static int collect(struct nf_conntrack *ct, void *ctx) {
  ctlist_t *L = ctx;
  if (L->n == L->cap) {
    uint32_t cap = L->cap ? L->cap * 2 : 256;
    struct nf_conntrack **v = realloc(L->v, (size_t)cap * sizeof *v);
    if (!v) { nfct_destroy(ct); return ENOMEM; }
    L->v = v;
    L->cap = cap;
  }
  L->v[L->n++] = ct;
  return 0;
}

static int dump_list(ct_t *C, int filtered, uint32_t mark, uint32_t mask, ctlist_t *L) {
  for (int attempt = 0;; attempt++) {
    int e = dump(C, filtered, mark, mask, collect, L);
    if (e != ENOBUFS || attempt == 2) { if (e) { list_free(L); C->st.errors++; } return e; }
    list_free(L);
  }
}

// ── entries ↔ JS ───────────────────────────────────────────────────────────

static int has_ports(uint8_t proto) {
  return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_UDPLITE || proto == IPPROTO_SCTP ||
         proto == IPPROTO_DCCP;
}

static const char *const tcp_states[] = {"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT",
                                         "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"};
#define N_TCP_STATES (sizeof tcp_states / sizeof tcp_states[0])

static void put_num(napi_env env, napi_value o, const char *k, double v) {
  napi_value n;
  napi_create_double(env, v, &n);
  napi_set_named_property(env, o, k, n);
}

static void put_str(napi_env env, napi_value o, const char *k, const char *s) {
  napi_value v;
  if (s) napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v); else napi_get_null(env, &v);
  napi_set_named_property(env, o, k, v);
}

static void put_pair(napi_env env, napi_value o, const char *k, double a, double b) {
  napi_value arr, x;
  napi_create_array_with_length(env, 2, &arr);
  napi_create_double(env, a, &x);
  napi_set_element(env, arr, 0, x);
  napi_create_double(env, b, &x);
  napi_set_element(env, arr, 1, x);
  napi_set_named_property(env, o, k, arr);
}

static uint64_t u64_or0(const struct nf_conntrack *ct, enum nf_conntrack_attr a) {
  return nfct_attr_is_set(ct, a) > 0 ? nfct_get_attr_u64(ct, a) : 0;
}

static napi_value entry_js(napi_env env, const struct nf_conntrack *ct) {
  napi_value o;
  napi_create_object(env, &o);
  uint8_t fam = nfct_get_attr_u8(ct, ATTR_L3PROTO), proto = nfct_get_attr_u8(ct, ATTR_L4PROTO);
  char src[INET6_ADDRSTRLEN] = "", dst[INET6_ADDRSTRLEN] = "";
  if (fam == AF_INET) {
    inet_ntop(AF_INET, nfct_get_attr(ct, ATTR_ORIG_IPV4_SRC), src, sizeof src);
    inet_ntop(AF_INET, nfct_get_attr(ct, ATTR_ORIG_IPV4_DST), dst, sizeof dst);
  } else if (fam == AF_INET6) {
    inet_ntop(AF_INET6, nfct_get_attr(ct, ATTR_ORIG_IPV6_SRC), src, sizeof src);
    inet_ntop(AF_INET6, nfct_get_attr(ct, ATTR_ORIG_IPV6_DST), dst, sizeof dst);
  }
  put_num(env, o, "family", fam == AF_INET6 ? 6 : 4);
  put_num(env, o, "proto", proto);
  put_str(env, o, "src", src);
  put_str(env, o, "dst", dst);
  int ports = has_ports(proto);
  put_num(env, o, "sport", ports ? ntohs(nfct_get_attr_u16(ct, ATTR_ORIG_PORT_SRC)) : 0);
  put_num(env, o, "dport", ports ? ntohs(nfct_get_attr_u16(ct, ATTR_ORIG_PORT_DST)) : 0);
  put_num(env, o, "mark", nfct_attr_is_set(ct, ATTR_MARK) > 0 ? nfct_get_attr_u32(ct, ATTR_MARK) : 0);
  put_num(env, o, "id", nfct_attr_is_set(ct, ATTR_ID) > 0 ? nfct_get_attr_u32(ct, ATTR_ID) : 0);
  const char *st = NULL;
  if (proto == IPPROTO_TCP && nfct_attr_is_set(ct, ATTR_TCP_STATE) > 0) {
    uint8_t s = nfct_get_attr_u8(ct, ATTR_TCP_STATE);
    st = s < N_TCP_STATES ? tcp_states[s] : "UNKNOWN";
  }
  put_str(env, o, "tcpState", st);
  put_num(env, o, "timeout", nfct_attr_is_set(ct, ATTR_TIMEOUT) > 0 ? nfct_get_attr_u32(ct, ATTR_TIMEOUT) : 0);
  put_pair(env, o, "packets", (double)u64_or0(ct, ATTR_ORIG_COUNTER_PACKETS), (double)u64_or0(ct, ATTR_REPL_COUNTER_PACKETS));
  put_pair(env, o, "bytes", (double)u64_or0(ct, ATTR_ORIG_COUNTER_BYTES), (double)u64_or0(ct, ATTR_REPL_COUNTER_BYTES));
  return o;
}

// ── arguments ──────────────────────────────────────────────────────────────

// A property that must be an integer in lo..hi; absent/undefined gives `dflt`
// when dflt >= 0, else a TypeError.
static int prop_u32(napi_env env, napi_value obj, const char *fn, const char *name, uint32_t lo, uint32_t hi,
                    int64_t dflt, uint32_t *out) {
  napi_value v;
  napi_valuetype t = napi_undefined;
  bool has = false;
  napi_has_named_property(env, obj, name, &has);
  if (has) { napi_get_named_property(env, obj, name, &v); napi_typeof(env, v, &t); }
  char m[200];
  if (t == napi_undefined) {
    if (dflt >= 0) { *out = (uint32_t)dflt; return 1; }
    snprintf(m, sizeof m, "%s: %s is required", fn, name);
    type_error(env, m);
    return 0;
  }
  double d;
  if (t != napi_number || napi_get_value_double(env, v, &d) != napi_ok || !(d >= lo && d <= hi) ||
      d != (double)(uint32_t)d) {
    snprintf(m, sizeof m, "%s: %s must be an integer in %u..%u", fn, name, lo, hi);
    type_error(env, m);
    return 0;
  }
  *out = (uint32_t)d;
  return 1;
}

static int arg_object(napi_env env, size_t argc, napi_value *argv, size_t i, const char *fn, const char *what) {
  napi_valuetype t = napi_undefined;
  if (argc > i) napi_typeof(env, argv[i], &t);
  if (t == napi_object) return 1;
  char m[200];
  snprintf(m, sizeof m, "%s: %s must be an object", fn, what);
  type_error(env, m);
  return 0;
}

// {mark, mask}: both integers 0..2^32-1.
static int arg_filter(napi_env env, napi_value o, const char *fn, uint32_t *mark, uint32_t *mask) {
  return prop_u32(env, o, fn, "mark", 0, UINT32_MAX, -1, mark) && prop_u32(env, o, fn, "mask", 0, UINT32_MAX, -1, mask);
}

static int prop_addr(napi_env env, napi_value o, const char *fn, const char *name, int af, uint8_t *out) {
  napi_value v;
  napi_valuetype t = napi_undefined;
  bool has = false;
  napi_has_named_property(env, o, name, &has);
  if (has) { napi_get_named_property(env, o, name, &v); napi_typeof(env, v, &t); }
  char s[64] = "", m[240];
  size_t n = 0;
  if (t == napi_string) napi_get_value_string_utf8(env, v, s, sizeof s, &n);
  // inet_pton is strict: IPv4 only as four dotted decimals, no leading zeros.
  if (t != napi_string || n == 0 || n >= sizeof s - 1 || inet_pton(af, s, out) != 1) {
    snprintf(m, sizeof m, "%s: %s must be an IPv%d address as text", fn, name, af == AF_INET ? 4 : 6);
    type_error(env, m);
    return 0;
  }
  return 1;
}

// A tuple {family, proto, src, dst, sport, dport} (ORIGINAL direction) into
// a new conntrack object. ICMP entries are not addressed by a tuple here
// (their id/type/code are not in it): dump filters by mark reach them.
static struct nf_conntrack *arg_tuple(napi_env env, napi_value o, const char *fn) {
  uint32_t family = 0, proto, sport, dport;
  char m[200];
  napi_value fv;
  napi_valuetype ft = napi_undefined;
  bool has = false;
  napi_has_named_property(env, o, "family", &has);
  if (has) { napi_get_named_property(env, o, "family", &fv); napi_typeof(env, fv, &ft); }
  double fd = 0;
  if (ft == napi_number) napi_get_value_double(env, fv, &fd);
  if (fd != 4 && fd != 6) {
    snprintf(m, sizeof m, "%s: family must be 4 or 6", fn);
    type_error(env, m);
    return NULL;
  }
  family = (uint32_t)fd;
  if (!prop_u32(env, o, fn, "proto", 0, 255, -1, &proto)) return NULL;
  if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
    snprintf(m, sizeof m, "%s: ICMP entries have no ports to address them by (use a mark filter)", fn);
    type_error(env, m);
    return NULL;
  }
  int ports = has_ports((uint8_t)proto);
  if (!prop_u32(env, o, fn, "sport", ports ? 1 : 0, 65535, ports ? -1 : 0, &sport) ||
      !prop_u32(env, o, fn, "dport", ports ? 1 : 0, 65535, ports ? -1 : 0, &dport))
    return NULL;
  if (!ports && (sport || dport)) {
    snprintf(m, sizeof m, "%s: sport and dport must be 0 for protocol %u (it has no ports)", fn, proto);
    type_error(env, m);
    return NULL;
  }
  int af = family == 4 ? AF_INET : AF_INET6;
  uint8_t src[16], dst[16];
  if (!prop_addr(env, o, fn, "src", af, src) || !prop_addr(env, o, fn, "dst", af, dst)) return NULL;
  struct nf_conntrack *ct = nfct_new();
  if (!ct) { throw_errno(env, ENOMEM, fn); return NULL; }
  nfct_set_attr_u8(ct, ATTR_L3PROTO, (uint8_t)af);
  nfct_set_attr_u8(ct, ATTR_L4PROTO, (uint8_t)proto);
  if (af == AF_INET) {
    nfct_set_attr(ct, ATTR_ORIG_IPV4_SRC, src);
    nfct_set_attr(ct, ATTR_ORIG_IPV4_DST, dst);
  } else {
    nfct_set_attr(ct, ATTR_ORIG_IPV6_SRC, src);
    nfct_set_attr(ct, ATTR_ORIG_IPV6_DST, dst);
  }
  if (ports) {
    nfct_set_attr_u16(ct, ATTR_ORIG_PORT_SRC, htons((uint16_t)sport));
    nfct_set_attr_u16(ct, ATTR_ORIG_PORT_DST, htons((uint16_t)dport));
  }
  return ct;
}

static ct_t *this_ct(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv, napi_value *self,
                     const char *op) {
  napi_value me;
  napi_get_cb_info(env, info, argc, argv, &me, NULL);
  ct_t *C = NULL;
  if (napi_unwrap(env, me, (void **)&C) != napi_ok || !C) { type_error(env, "not a conntrack handle"); return NULL; }
  if (self) *self = me;
  if (op && C->closed) { throw_errno(env, -1, op); return NULL; }
  return C;
}

// ── teardown ───────────────────────────────────────────────────────────────

static void release_js(ct_t *C) {
  napi_env env = C->env;
  if (C->cb_ref) { napi_delete_reference(env, C->cb_ref); C->cb_ref = NULL; }
  if (C->actx) { napi_async_destroy(env, C->actx); C->actx = NULL; }
  if (C->self_ref) { napi_delete_reference(env, C->self_ref); C->self_ref = NULL; }
}

static void unhook(ct_t *C) {
  if (C->hooked) { napi_remove_async_cleanup_hook(C->hook); C->hooked = 0; }
}

// The poll handle lives inside C: C is freed only once libuv is done with it.
static void on_poll_closed(uv_handle_t *p) {
  ct_t *C = p->data;
  C->poll_state = POLL_CLOSED;
  unhook(C);
  if (C->finalized) free(C);
}

static void shutdown_ct(ct_t *C, int from_finalizer) {
  if (C->poll_state == POLL_ACTIVE) {
    uv_poll_stop(&C->poll);
    C->poll_state = POLL_CLOSING;
    uv_close((uv_handle_t *)&C->poll, on_poll_closed);
  }
  if (C->fd >= 0) close(C->fd);
  if (C->efd >= 0) close(C->efd);
  C->fd = C->efd = -1;
  C->closed = 1;
  free(C->rbuf);
  C->rbuf = NULL;
  if (!from_finalizer) release_js(C);
}

static void env_teardown(napi_async_cleanup_hook_handle hh, void *data) {
  ct_t *C = data;
  shutdown_ct(C, 0);
  if (C->poll_state != POLL_CLOSING) unhook(C);
}

static void finalize(napi_env env, void *data, void *hint) {
  ct_t *C = data;
  shutdown_ct(C, 1);
  C->finalized = 1;
  if (C->poll_state != POLL_CLOSING) {
    unhook(C);
    free(C);
  }
}

// ── methods ────────────────────────────────────────────────────────────────

// new Conntrack({events, rcvbuf})
static napi_value Ct_new(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], self, target = NULL;
  napi_get_cb_info(env, info, &argc, argv, &self, NULL);
  napi_get_new_target(env, info, &target);
  if (!target) return type_error(env, "Conntrack is a constructor: new Conntrack(options)");
  napi_valuetype t = napi_undefined;
  if (argc >= 1) napi_typeof(env, argv[0], &t);
  if (t != napi_object && t != napi_undefined) return type_error(env, "open(options): options must be an object");
  bool events = false;
  uint32_t rcvbuf = 0;
  if (t == napi_object && !prop_u32(env, argv[0], "open", "rcvbuf", 4096, 1u << 30, 0, &rcvbuf)) return NULL;
  if (t == napi_object) {
    bool has = false;
    napi_has_named_property(env, argv[0], "events", &has);
    if (has) {
      napi_value v;
      napi_valuetype vt;
      napi_get_named_property(env, argv[0], "events", &v);
      napi_typeof(env, v, &vt);
      if (vt != napi_boolean && vt != napi_undefined) return type_error(env, "open: option events must be a boolean");
      if (vt == napi_boolean) napi_get_value_bool(env, v, &events);
    }
  }
  ct_t *C = calloc(1, sizeof *C);
  if (!C) return throw_errno(env, ENOMEM, "open");
  C->env = env;
  C->fd = C->efd = -1;
  C->seq = (uint32_t)time(NULL);
  C->rbuf = malloc(RBUF_SIZE);
  int err = 0;
  if (!C->rbuf) err = ENOMEM;
  // An rcvbuf given applies to both sockets (a test makes them overflow).
  if (!err && (C->fd = nl_socket(0, 0, C, rcvbuf ? (int)rcvbuf : RCVBUF_QUERY, 0)) < 0) err = errno;
  if (!err && events && (C->efd = nl_socket(NF_NETLINK_CONNTRACK_DESTROY, 1, C, rcvbuf ? (int)rcvbuf : RCVBUF_EVENTS, 1)) < 0)
    err = errno;
  // A first request: a kernel without ctnetlink fails here, not later.
  if (!err) {
    uint8_t req[64];
    uint32_t seq = C->seq++;
    struct nlmsghdr *nlh = put_header(req, CT_MSG_GET, NLM_F_ACK, AF_INET, seq);
    err = send_all(C->fd, req, nlh->nlmsg_len);
    while (!err) {
      ssize_t r = recv(C->fd, C->rbuf, RBUF_SIZE, 0);
      if (r < 0) { if (errno == EINTR) continue; err = errno == EWOULDBLOCK ? EAGAIN : errno; break; }
      int done = 0;
      for (struct nlmsghdr *h = (struct nlmsghdr *)C->rbuf; NLMSG_OK(h, (size_t)r); h = NLMSG_NEXT(h, r)) {
        if (h->nlmsg_seq != seq || h->nlmsg_type != NLMSG_ERROR) continue;
        int e = -*(const int *)NLMSG_DATA(h);
        // A GET without a tuple: ctnetlink answers EINVAL (or ENOENT); no
        // subsystem: EOPNOTSUPP; no permission: EPERM.
        if (e == EOPNOTSUPP || e == EPERM || e == EACCES) err = e;
        done = 1;
      }
      if (done) break;
    }
  }
  if (err) {
    napi_value e = make_error(env, err, "open");
    shutdown_ct(C, 0);
    free(C);
    napi_throw(env, e);
    return NULL;
  }
  if (napi_wrap(env, self, C, finalize, NULL, NULL) != napi_ok) {
    shutdown_ct(C, 0);
    free(C);
    return NULL;
  }
  if (napi_add_async_cleanup_hook(env, env_teardown, C, &C->hook) == napi_ok) C->hooked = 1;
  return self;
}

// dump(filter?) -> entries
static napi_value Ct_dump(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  ct_t *C = this_ct(env, info, &argc, argv, NULL, "dump");
  if (!C) return NULL;
  napi_valuetype t = napi_undefined;
  if (argc >= 1) napi_typeof(env, argv[0], &t);
  uint32_t mark = 0, mask = 0;
  int filtered = t != napi_undefined && t != napi_null;
  if (filtered && !arg_object(env, argc, argv, 0, "dump(filter)", "filter ({mark, mask})")) return NULL;
  if (filtered && !arg_filter(env, argv[0], "dump(filter)", &mark, &mask)) return NULL;
  // Into C first: a dump that must start again (ENOBUFS) leaves no half array.
  ctlist_t L = {0};
  int e = dump_list(C, filtered, mark, mask, &L);
  if (e) return throw_errno(env, e, "dump");
  napi_value arr;
  napi_create_array_with_length(env, L.n, &arr);
  for (uint32_t i = 0; i < L.n; i++) napi_set_element(env, arr, i, entry_js(env, L.v[i]));
  list_free(&L);
  return arr;
}

// The fields of create(): a tuple plus timeout, mark, tcpState.
static struct nf_conntrack *arg_new_entry(napi_env env, napi_value o, const char *fn) {
  struct nf_conntrack *ct = arg_tuple(env, o, fn);
  if (!ct) return NULL;
  uint32_t timeout, mark;
  if (!prop_u32(env, o, fn, "timeout", 1, 0x7fffffff, -1, &timeout) || !prop_u32(env, o, fn, "mark", 0, UINT32_MAX, 0, &mark)) {
    nfct_destroy(ct);
    return NULL;
  }
  uint8_t proto = nfct_get_attr_u8(ct, ATTR_L4PROTO);
  napi_value v;
  napi_valuetype t = napi_undefined;
  bool has = false;
  napi_has_named_property(env, o, "tcpState", &has);
  if (has) { napi_get_named_property(env, o, "tcpState", &v); napi_typeof(env, v, &t); }
  if (proto == IPPROTO_TCP) {
    char s[24] = "";
    size_t n = 0;
    if (t == napi_string) napi_get_value_string_utf8(env, v, s, sizeof s, &n);
    uint32_t k = 1;  // NONE is not a state an entry can be created in
    while (k < N_TCP_STATES && strcmp(s, tcp_states[k])) k++;
    if (k == N_TCP_STATES) {
      char m[240];
      snprintf(m, sizeof m, "%s: a TCP entry needs tcpState, one of SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, "
                            "CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE, SYN_SENT2", fn);
      nfct_destroy(ct);
      type_error(env, m);
      return NULL;
    }
    nfct_set_attr_u8(ct, ATTR_TCP_STATE, (uint8_t)k);
  } else if (t != napi_undefined) {
    char m[160];
    snprintf(m, sizeof m, "%s: tcpState is for TCP entries only (proto 6)", fn);
    nfct_destroy(ct);
    type_error(env, m);
    return NULL;
  }
  nfct_set_attr_u32(ct, ATTR_TIMEOUT, timeout);
  if (mark) nfct_set_attr_u32(ct, ATTR_MARK, mark);
  // The reply tuple: the inverse of the original (as conntrack -I does).
  nfct_setobjopt(ct, NFCT_SOPT_SETUP_REPLY);
  return ct;
}

// create(entry) / create([entry, ...]): one array is sent in windows (the
// benchmark's 10,000 entries); returns how many were created. The first
// error fails the call after the rest were tried.
static napi_value Ct_create(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  ct_t *C = this_ct(env, info, &argc, argv, NULL, "create");
  if (!C) return NULL;
  if (!arg_object(env, argc, argv, 0, "create(entry)", "entry")) return NULL;
  bool is_arr = false;
  napi_is_array(env, argv[0], &is_arr);
  uint32_t n = 1;
  if (is_arr) napi_get_array_length(env, argv[0], &n);
  if (n == 0) { napi_value z; napi_create_uint32(env, 0, &z); return z; }
  struct nf_conntrack **cts = calloc(n, sizeof *cts);
  int *errs = calloc(n, sizeof *errs);
  napi_value out = NULL;
  if (!cts || !errs) { throw_errno(env, ENOMEM, "create"); goto done; }
  for (uint32_t i = 0; i < n; i++) {
    napi_value o = argv[0];
    if (is_arr) {
      napi_get_element(env, argv[0], i, &o);
      napi_valuetype t;
      napi_typeof(env, o, &t);
      if (t != napi_object) { type_error(env, "create(entries): every entry must be an object"); goto done; }
    }
    if (!(cts[i] = arg_new_entry(env, o, "create(entry)"))) goto done;
  }
  int e = transact(C, cts, n, CT_MSG_NEW, NLM_F_CREATE | NLM_F_EXCL, errs);
  uint32_t ok = 0, first = 0;
  for (uint32_t i = 0; i < n; i++) { if (errs[i] == 0) ok++; else if (!first) first = (uint32_t)errs[i]; }
  if (e || first) { if (!e) C->st.errors++; throw_errno(env, e ? e : (int)first, "create"); goto done; }
  napi_create_uint32(env, ok, &out);
done:
  if (cts) for (uint32_t i = 0; i < n; i++) if (cts[i]) nfct_destroy(cts[i]);
  free(cts);
  free(errs);
  return out;
}

// setMark(tuple, mark): ENOENT when absent.
static napi_value Ct_setMark(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  ct_t *C = this_ct(env, info, &argc, argv, NULL, "setMark");
  if (!C) return NULL;
  if (!arg_object(env, argc, argv, 0, "setMark(tuple, mark)", "tuple")) return NULL;
  napi_valuetype t = napi_undefined;
  double d = -1;
  if (argc >= 2) napi_typeof(env, argv[1], &t);
  if (t == napi_number) napi_get_value_double(env, argv[1], &d);
  if (!(d >= 0 && d <= 4294967295.0) || d != (double)(uint32_t)d)
    return type_error(env, "setMark(tuple, mark): mark must be an integer in 0..4294967295");
  struct nf_conntrack *ct = arg_tuple(env, argv[0], "setMark(tuple, mark)");
  if (!ct) return NULL;
  nfct_set_attr_u32(ct, ATTR_MARK, (uint32_t)d);
  int e = request1(C, ct, CT_MSG_NEW, 0);
  nfct_destroy(ct);
  if (e) { C->st.errors++; return throw_errno(env, e, "setMark"); }
  return NULL;
}

// remove(tuple) -> false when there was no such entry. With tuple.id (a
// dumped entry's id, non-zero) only the entry with that id is deleted.
static napi_value Ct_remove(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  ct_t *C = this_ct(env, info, &argc, argv, NULL, "remove");
  if (!C) return NULL;
  if (!arg_object(env, argc, argv, 0, "remove(tuple)", "tuple")) return NULL;
  struct nf_conntrack *ct = arg_tuple(env, argv[0], "remove(tuple)");
  if (!ct) return NULL;
  uint32_t id = 0;
  if (!prop_u32(env, argv[0], "remove(tuple)", "id", 0, UINT32_MAX, 0, &id)) { nfct_destroy(ct); return NULL; }
  if (id) nfct_set_attr_u32(ct, ATTR_ID, id);  // only the entry with that id (see put_id)
  int e = request1(C, ct, CT_MSG_DELETE, 0);
  nfct_destroy(ct);
  if (e && e != ENOENT) { C->st.errors++; return throw_errno(env, e, "remove"); }
  napi_value out;
  napi_get_boolean(env, e == 0, &out);
  return out;
}

static double mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

// The tuple and id of a dumped entry: what a DELETE needs (the id keeps it
// from deleting another entry that took the tuple meanwhile: see put_id).
static struct nf_conntrack *delete_key(const struct nf_conntrack *src) {
  struct nf_conntrack *ct = nfct_new();
  if (!ct) return NULL;
  nfct_copy(ct, src, NFCT_CP_ORIG);
  if (nfct_attr_is_set(src, ATTR_ID) > 0) nfct_set_attr_u32(ct, ATTR_ID, nfct_get_attr_u32(src, ATTR_ID));
  return ct;
}

// removeMarked(filter) -> {removed, ms}: a dump filtered in the kernel, then
// a DELETE for each entry. A delete whose ACK was lost (ENOBUFS) is settled
// by a second dump: still there, deleted again; gone, counted as removed.
// ENOENT (expired or deleted meanwhile) is not counted. Any other failure
// throws after the rest were tried, with `removed` on the error.
static napi_value Ct_removeMarked(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  ct_t *C = this_ct(env, info, &argc, argv, NULL, "removeMarked");
  if (!C) return NULL;
  uint32_t mark, mask;
  if (!arg_object(env, argc, argv, 0, "removeMarked(filter)", "filter ({mark, mask})") ||
      !arg_filter(env, argv[0], "removeMarked(filter)", &mark, &mask))
    return NULL;
  double t0 = mono_ms();
  uint32_t removed = 0, failed = 0, unknown = 0;
  int fail_err = 0;
  for (int pass = 0; pass < 3; pass++) {
    ctlist_t L = {0};
    int e = dump_list(C, 1, mark, mask, &L);
    if (e) return throw_errno(env, e, "removeMarked");
    // The previous pass's deletes without an ACK: those not found again
    // were deleted by it (the failed ones are still there).
    uint32_t still = L.n > failed ? L.n - failed : 0;
    removed += unknown > still ? unknown - still : 0;
    if (L.n == 0 || (pass > 0 && !unknown)) { list_free(&L); break; }
    for (uint32_t i = 0; i < L.n; i++) {
      struct nf_conntrack *k = delete_key(L.v[i]);
      if (!k) { list_free(&L); return throw_errno(env, ENOMEM, "removeMarked"); }
      nfct_destroy(L.v[i]);
      L.v[i] = k;
    }
    int *errs = calloc(L.n, sizeof *errs);
    if (!errs) { list_free(&L); return throw_errno(env, ENOMEM, "removeMarked"); }
    e = transact(C, L.v, L.n, CT_MSG_DELETE, 0, errs);
    unknown = failed = 0;
    for (uint32_t i = 0; i < L.n && !e; i++) {
      if (errs[i] == 0) removed++;
      else if (errs[i] == ENOBUFS || errs[i] == EAGAIN) unknown++;
      else if (errs[i] != ENOENT) { failed++; fail_err = errs[i]; }
    }
    free(errs);
    list_free(&L);
    if (e) return throw_errno(env, e, "removeMarked");
    if (!unknown) break;
  }
  double ms = mono_ms() - t0;
  if (failed) {
    char op[96];
    snprintf(op, sizeof op, "removeMarked (%u entries not removed, %u removed)", failed, removed);
    C->st.errors++;
    napi_value err = make_error(env, fail_err, op), r;
    napi_create_uint32(env, removed, &r);
    napi_set_named_property(env, err, "removed", r);
    napi_throw(env, err);
    return NULL;
  }
  napi_value o;
  napi_create_object(env, &o);
  put_num(env, o, "removed", removed);
  put_num(env, o, "ms", ms);
  return o;
}

// ── destroy events ─────────────────────────────────────────────────────────

static void on_poll(uv_poll_t *p, int status, int events) {
  ct_t *C = p->data;
  if (C->closed || !C->cb_ref) return;
  napi_env env = C->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value arr, args[2], cb, recv_obj, result;
  napi_create_array(env, &arr);
  uint32_t n = 0;
  int overflow = 0;
  if (status < 0) {
    // libuv reports EPOLLERR (nearly always ENOBUFS here) and stops the handle.
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    getsockopt(C->efd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    if (soerr == ENOBUFS || soerr == 0) { C->st.overflows++; overflow = 1; } else C->st.errors++;
    uv_poll_start(&C->poll, UV_READABLE, on_poll);
  }
  // At most MAX_READS datagrams per wakeup (one event each): the poll is
  // level-triggered, the rest comes on the next turn of the loop.
  for (int reads = 0; reads < MAX_READS; reads++) {
    ssize_t r = recv(C->efd, C->rbuf, RBUF_SIZE, MSG_DONTWAIT);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) { C->st.overflows++; overflow = 1; continue; }
      if (errno != EAGAIN && errno != EWOULDBLOCK) C->st.errors++;
      break;
    }
    for (struct nlmsghdr *h = (struct nlmsghdr *)C->rbuf; NLMSG_OK(h, (size_t)r); h = NLMSG_NEXT(h, r)) {
      if (h->nlmsg_type != ((NFNL_SUBSYS_CTNETLINK << 8) | CT_MSG_DELETE)) continue;
      struct nf_conntrack *ct = nfct_new();
      if (!ct) { C->st.errors++; continue; }
      if (nfct_nlmsg_parse(h, ct) < 0) { C->st.errors++; nfct_destroy(ct); continue; }
      C->st.events++;
      uint32_t mark = nfct_attr_is_set(ct, ATTR_MARK) > 0 ? nfct_get_attr_u32(ct, ATTR_MARK) : 0;
      if (!C->has_filter || (mark & C->fmask) == C->fmark) napi_set_element(env, arr, n++, entry_js(env, ct));
      nfct_destroy(ct);
    }
  }
  if (n || overflow) {
    napi_get_reference_value(env, C->cb_ref, &cb);
    if (!C->self_ref || napi_get_reference_value(env, C->self_ref, &recv_obj) != napi_ok || !recv_obj)
      napi_get_undefined(env, &recv_obj);
    args[0] = arr;
    napi_get_boolean(env, overflow, &args[1]);
    napi_status s = napi_make_callback(env, C->actx, recv_obj, cb, 2, args, &result);
    if (s == napi_pending_exception) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
      napi_fatal_exception(env, exc);
    }
  }
  napi_close_handle_scope(env, scope);
}

// onDestroy(filter | null, cb | null)
static napi_value Ct_onDestroy(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], self;
  ct_t *C = this_ct(env, info, &argc, argv, &self, "onDestroy");
  if (!C) return NULL;
  napi_valuetype ft = napi_undefined, ct = napi_undefined;
  if (argc >= 1) napi_typeof(env, argv[0], &ft);
  if (argc >= 2) napi_typeof(env, argv[1], &ct);
  if (ct != napi_function && ct != napi_null && ct != napi_undefined)
    return type_error(env, "onDestroy(filter, cb): cb must be a function (or null to stop)");
  if (ft != napi_object && ft != napi_null && ft != napi_undefined)
    return type_error(env, "onDestroy(filter, cb): filter must be {mark, mask} or null");
  uint32_t mark = 0, mask = 0;
  if (ft == napi_object && !arg_filter(env, argv[0], "onDestroy(filter, cb)", &mark, &mask)) return NULL;
  if (C->efd < 0) {
    napi_value e = make_error(env, EINVAL, "onDestroy"), m;
    napi_create_string_utf8(env, "conntrack: onDestroy needs a handle opened with { events: true }", NAPI_AUTO_LENGTH, &m);
    napi_set_named_property(env, e, "message", m);
    napi_throw(env, e);
    return NULL;
  }
  if (ct != napi_function) {
    if (C->poll_state == POLL_ACTIVE) uv_poll_stop(&C->poll);
    release_js(C);
    return NULL;
  }
  C->has_filter = ft == napi_object;
  C->fmark = mark;  // as the kernel filters dumps: (connmark & mask) == mark
  C->fmask = mask;
  if (C->cb_ref) { napi_delete_reference(env, C->cb_ref); C->cb_ref = NULL; }
  napi_create_reference(env, argv[1], 1, &C->cb_ref);
  if (!C->self_ref) napi_create_reference(env, self, 1, &C->self_ref);
  if (!C->actx) {
    napi_value name;
    napi_create_string_utf8(env, "CONNTRACK", NAPI_AUTO_LENGTH, &name);
    napi_async_init(env, self, name, &C->actx);
  }
  if (C->poll_state == POLL_NONE) {
    uv_loop_t *loop;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) return throw_errno(env, EINVAL, "onDestroy");
    int r = uv_poll_init(loop, &C->poll, C->efd);
    if (r < 0) return throw_errno(env, -r, "onDestroy");
    C->poll.data = C;
    C->poll_state = POLL_ACTIVE;
  }
  int r = uv_poll_start(&C->poll, UV_READABLE, on_poll);
  if (r < 0) return throw_errno(env, -r, "onDestroy");
  return NULL;
}

static napi_value Ct_stats(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  ct_t *C = this_ct(env, info, &argc, NULL, NULL, "stats");
  if (!C) return NULL;
  napi_value o, b;
  napi_create_object(env, &o);
  put_num(env, o, "events", (double)C->st.events);
  put_num(env, o, "overflows", (double)C->st.overflows);
  put_num(env, o, "dumps", (double)C->st.dumps);
  put_num(env, o, "errors", (double)C->st.errors);
  put_num(env, o, "rcvbuf", C->efd >= 0 ? C->rcvbuf : 0);
  napi_get_boolean(env, C->efd >= 0 && C->rcvbuf_forced, &b);
  napi_set_named_property(env, o, "rcvbufForced", b);
  return o;
}

static napi_value Ct_close(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  ct_t *C = this_ct(env, info, &argc, NULL, NULL, NULL);
  if (!C) return NULL;
  if (!C->closed) shutdown_ct(C, 0);
  return NULL;
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_property_descriptor methods[] = {
    {"dump", NULL, Ct_dump, NULL, NULL, NULL, napi_default, NULL},
    {"create", NULL, Ct_create, NULL, NULL, NULL, napi_default, NULL},
    {"setMark", NULL, Ct_setMark, NULL, NULL, NULL, napi_default, NULL},
    {"remove", NULL, Ct_remove, NULL, NULL, NULL, napi_default, NULL},
    {"removeMarked", NULL, Ct_removeMarked, NULL, NULL, NULL, napi_default, NULL},
    {"onDestroy", NULL, Ct_onDestroy, NULL, NULL, NULL, napi_default, NULL},
    {"stats", NULL, Ct_stats, NULL, NULL, NULL, napi_default, NULL},
    {"close", NULL, Ct_close, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_value cls;
  napi_define_class(env, "Conntrack", NAPI_AUTO_LENGTH, Ct_new, NULL, sizeof methods / sizeof methods[0], methods, &cls);
  napi_set_named_property(env, exports, "Conntrack", cls);
  return exports;
}
