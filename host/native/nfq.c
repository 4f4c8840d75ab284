// The NFQUEUE addon: one netlink queue per handle, packets received in bulk
// straight into the batch region of the core's wasm memory, verdicts read
// back from it and sent in coalesced runs. N-API, libnetfilter_queue, libuv.
//
//   kernel ── NFQUEUE n ── netlink socket (non-blocking, 8 MiB rcvbuf)
//                               │ readable: uv_poll → ONE JS callback per wakeup
//                               ▼
//   recv(mem, descsOff, dataOff, dataCap, max)   recv() until EAGAIN / batch full;
//                               │                 each packet → one descriptor +
//                               ▼                 its bytes in DATA (no JS per packet)
//   core.classify(n)  (JS)      │
//                               ▼
//   verdict(mem, descsOff, verdictsOff, n, marks?)  runs of equal verdicts with
//                                                  consecutive ids → one message
//
// The descriptor layout is not hard-coded: JS passes the offsets from
// host/core/abi.ts at open (the `layout` option) and they are checked here
// against the field widths this file writes (ABI version 1).
//
// Everything runs on the JS thread of the environment that opened the handle;
// nothing here blocks except open() and close() (a few netlink round trips).

#if defined(__has_include)
#if !__has_include(<libnetfilter_queue/libnetfilter_queue.h>)
#error "libnetfilter_queue headers are missing: apt-get install libnetfilter-queue-dev (bash host/setup/ensure.sh installs it), then npm run build:addon"
#endif
#endif

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <linux/capability.h>
#include <linux/netfilter.h>
#include <linux/netlink.h>

#include <libnetfilter_queue/libnetfilter_queue.h>
#include <node_api.h>
#include <uv.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif
#ifndef NETLINK_NO_ENOBUFS
#define NETLINK_NO_ENOBUFS 5
#endif
#ifndef NFNL_SUBSYS_QUEUE
#define NFNL_SUBSYS_QUEUE 3
#endif

#define ABI_VERSION_KNOWN 3u // assembly/abi.ts ABI_VERSION (2: the source table and block lists; 3: TCP pickup and window tracking; the descriptors are unchanged)
#define MAX_ROLES 64
#define NL_HDR_SLACK 1024u   // netlink + nfgenmsg + every attribute before/after the payload
#define COPY_RANGE_MAX 0xffffu

// ── small helpers ──────────────────────────────────────────────────────────

static inline uint32_t rd_be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t rd_be64(const uint8_t *p) {
  return ((uint64_t)rd_be32(p) << 32) | rd_be32(p + 4);
}
static inline uint32_t rd_le32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
// wasm memory is little-endian whatever the host is.
static inline void wr_le16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void wr_le32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static inline void wr_le64(uint8_t *p, uint64_t v) { wr_le32(p, (uint32_t)v); wr_le32(p + 4, (uint32_t)(v >> 32)); }

static uint64_t realtime_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static const char *errno_name(int err) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char *n = strerrorname_np(err);
  if (n) return n;
#endif
  switch (err) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case EINVAL: return "EINVAL";
    case ENOBUFS: return "ENOBUFS";
    case ENOMEM: return "ENOMEM";
    case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EBADF: return "EBADF";
    default: return "EUNKNOWN";
  }
}

static int errno_from_name(const char *name) {
  static const int known[] = {EPERM, ENOENT, EBUSY, EEXIST, EINVAL, ENOBUFS, ENOMEM, EPROTONOSUPPORT,
                              EOPNOTSUPP, EAFNOSUPPORT, EBADF, EACCES, EIO, EAGAIN, EINTR, ENODEV};
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
    if (strcmp(errno_name(known[i]), name) == 0) return known[i];
  return 0;
}

// Whether this process holds CAP_NET_ADMIN (effective): tells "not allowed"
// from "someone else owns the queue", which the kernel both answers with EPERM.
static int have_net_admin(void) {
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  if (syscall(SYS_capget, &hdr, data) != 0) return geteuid() == 0;
  return (data[CAP_NET_ADMIN / 32].effective >> (CAP_NET_ADMIN % 32)) & 1;
}

// The one place errors get their words: what failed and what to check.
// `code` is the errno name JS sees (see nfq_error for EPERM -> EBUSY).
static void explain(char *out, size_t cap, const char *code, const char *op, int queue) {
  char q[32];
  if (queue >= 0) snprintf(q, sizeof q, "queue %d", queue); else snprintf(q, sizeof q, "the queue");
  int err = errno_from_name(code);
  const char *what;
  if (!strcmp(code, "EPERM") || !strcmp(code, "EACCES"))
    what = "not permitted: NFQUEUE needs root or CAP_NET_ADMIN in this network namespace "
           "(run as root, or grant the service CAP_NET_ADMIN, e.g. AmbientCapabilities=CAP_NET_ADMIN)";
  else if (!strcmp(code, "EBUSY") || !strcmp(code, "EEXIST"))
    what = "already bound by another process or socket in this network namespace: stop the other "
           "consumer (the second column of /proc/net/netfilter/nfnetlink_queue is its netlink port id, "
           "usually its pid) "
           "or use another queue number";
  else if (!strcmp(code, "EPROTONOSUPPORT") || !strcmp(code, "EAFNOSUPPORT") || !strcmp(code, "ENOENT") ||
           ((!strcmp(code, "EOPNOTSUPP") || !strcmp(code, "EINVAL")) && !strcmp(op, "bind")))
    what = "the kernel has no nfnetlink_queue: load the module (modprobe nfnetlink_queue) or use a "
           "kernel built with CONFIG_NETFILTER_NETLINK_QUEUE";
  else if (!strcmp(code, "EOPNOTSUPP") || (!strcmp(code, "EINVAL") && !strcmp(op, "set flags")))
    what = "this kernel refuses a requested queue flag (fail-open needs Linux 3.6, GSO 3.10): "
           "turn the option off or use a newer kernel";
  else if (!strcmp(code, "ENOBUFS"))
    what = "the socket receive buffer overflowed and the kernel dropped packets: the consumer falls "
           "behind (raise rcvbuf, or make batches cheaper)";
  else if (!strcmp(code, "ENOMEM"))
    what = "out of memory";
  else if (!strcmp(code, "EBADF"))
    what = "the queue handle is closed";
  else
    what = err ? strerror(err) : "unexpected error";
  snprintf(out, cap, "NFQUEUE %s: %s failed (%s): %s", q, op, code, what);
}

static napi_value make_error(napi_env env, int err, const char *op, int queue, int is_bind) {
  const char *code = errno_name(err);
  // The kernel answers EPERM both to an unprivileged caller and to a bind of a
  // queue another socket owns; with CAP_NET_ADMIN held only the second is left.
  if (err == EPERM && is_bind && have_net_admin()) code = "EBUSY";
  char msg[640];
  explain(msg, sizeof msg, code, op, queue);
  napi_value m, c, e, n, o;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &c);
  napi_create_error(env, c, m, &e);
  napi_create_int32(env, err, &n);
  napi_set_named_property(env, e, "errno", n);
  napi_create_string_utf8(env, op, NAPI_AUTO_LENGTH, &o);
  napi_set_named_property(env, e, "op", o);
  if (err == EPERM && is_bind && !strcmp(code, "EBUSY")) {
    napi_value k;
    napi_create_string_utf8(env, "EPERM", NAPI_AUTO_LENGTH, &k);
    napi_set_named_property(env, e, "kernelCode", k);
  }
  return e;
}

static napi_value throw_errno(napi_env env, int err, const char *op, int queue, int is_bind) {
  napi_throw(env, make_error(env, err, op, queue, is_bind));
  return NULL;
}

static napi_value type_error(napi_env env, const char *msg) {
  napi_throw_type_error(env, "EINVAL", msg);
  return NULL;
}

// ── the handle ─────────────────────────────────────────────────────────────

typedef struct {
  uint32_t version, desc_size;
  uint32_t d_data_off, d_cap_len, d_wire_len, d_packet_id, d_ts, d_hw_proto, d_in_role, d_out_role, d_hook, d_queue;
  uint32_t verdict_size, v_verdict, v_flags, vf_offload;
} layout_t;

enum { PH_SETUP, PH_RUNNING, PH_CLOSING, PH_CLOSED };
enum { POLL_NONE, POLL_ACTIVE, POLL_CLOSING, POLL_CLOSED };

typedef struct {
  uint64_t packets, bytes, batches, wakeups, verdict_msgs, accepted, dropped, enobufs, recv_errors, truncated;
  uint64_t nl_errors, requeued_at_setup, oversize;
  uint64_t offloaded; // accepts sent as NF_REPEAT with an offload mark (also in accepted)
  // Packets that got DROP without a verdict of the host's (see "verdicts"):
  uint64_t undecided_no_verdict;   // received, but the host gave no verdict before the next recv() or close()
  uint64_t undecided_unparsed;     // their message could not be read
  uint64_t undecided_send_failed;  // the message carrying their verdict could not be sent
  uint64_t send_errors, sweeps;    // verdict messages that failed; DROP sweeps sent (see sweep_below)
} stats_t;

// The test hook's faults (testHookFault): none unless a test asks.
enum { F_SKIP, F_SEND, F_RECV, F_POLL, F_KINDS };
typedef struct { uint32_t after, count; int err; } fault_t;

typedef struct {
  napi_env env;
  struct nfq_handle *h;
  struct nfq_q_handle *qh;
  int fd;
  int queue;
  int phase;
  layout_t L;
  uint32_t copy_range;
  int rcvbuf;          // what the kernel granted (SO_RCVBUF)
  int rcvbuf_forced;   // SO_RCVBUFFORCE worked
  // One netlink datagram kept between calls (a packet that did not fit).
  uint8_t *buf;
  size_t bufsize, pend_pos, pend_len;
  int pend_err;
  // ifindex -> role
  uint32_t role_if[MAX_ROLES];
  uint8_t role_val[MAX_ROLES];
  uint32_t nroles;
  // event loop
  uv_poll_t poll;
  int poll_state;
  napi_ref cb_ref, self_ref;
  napi_async_context actx;
  int finalized;
  int hooked;          // the environment's async cleanup hook is registered
  napi_async_cleanup_hook_handle hook;
  // The batch awaiting its verdicts: the ids recv() handed out, in the
  // order received (which is the kernel's id order), and per position
  // whether a packet message that could not be read came just before it
  // (gap[batch_n]: after the last one).
  uint32_t *ids;
  uint8_t *gap;
  uint32_t ids_cap, batch_n;
  // Some packet below the next one to be verdicted may still sit in the
  // kernel queue without a verdict (an unreadable message, a failed send):
  // no batch verdict may be sent until a DROP sweep has cleared it.
  int owed;
  fault_t fault[F_KINDS];
  stats_t st;
} handle_t;

static inline uint8_t role_of(const handle_t *H, uint32_t ifindex) {
  if (ifindex == 0) return 0;
  for (uint32_t i = 0; i < H->nroles; i++)
    if (H->role_if[i] == ifindex) return H->role_val[i];
  return 0;
}

// ── verdicts ───────────────────────────────────────────────────────────────
//
// The kernel's batch verdict (NFQNL_MSG_VERDICT_BATCH) applies to EVERY
// packet still queued with an id up to the one given, not only to those the
// sender meant. Ids are given out per queue in the order the packets are
// queued, and the socket delivers them in that order. So a batch verdict is
// sent only for a run of consecutive ids with the same verdict and mark,
// and only when nothing below the run can still be waiting: every packet
// received before it has had its own verdict sent. Whenever that is not
// known (`owed`: a message that could not be read, a verdict that could not
// be sent), a DROP sweep (a batch DROP up to the id just below the next
// packet to verdict) settles it before any batch verdict; if the sweep
// cannot be sent either, only single verdicts go out until one can. What is
// owed is only ever dropped: an undecided packet is never accepted, on a
// fail-open queue too (fail-open is the kernel's, for a full queue).

// The test hook: true when this event of `kind` is to fail (testHookFault).
static inline int fault_hit(handle_t *H, int kind) {
  fault_t *f = &H->fault[kind];
  if (!f->count) return 0;
  if (f->after) { f->after--; return 0; }
  f->count--;
  return 1;
}

// One verdict message: for `id` alone, or (batch) every queued id up to it.
static int send_msg(handle_t *H, int batch, uint32_t id, uint32_t verdict, uint32_t mark) {
  int r;
  errno = 0;
  if (fault_hit(H, F_SEND)) { errno = H->fault[F_SEND].err; r = -1; }
  else if (batch) r = mark ? nfq_set_verdict_batch2(H->qh, id, verdict, mark) : nfq_set_verdict_batch(H->qh, id, verdict);
  else r = mark ? nfq_set_verdict2(H->qh, id, verdict, mark, 0, NULL) : nfq_set_verdict(H->qh, id, verdict, 0, NULL);
  if (r < 0) { H->st.send_errors++; return 0; }
  H->st.verdict_msgs++;
  return 1;
}

// DROP for every packet still queued below `id`: only sent while something
// is owed, and only once every packet received below `id` has had its own
// verdict sent, so what it drops is exactly what is owed.
static int sweep_below(handle_t *H, uint32_t id) {
  if (!send_msg(H, 1, id - 1u, NF_DROP, 0)) return 0;
  H->st.sweeps++;
  return 1;
}

// A packet message that could not be read (its id is unknown or its DROP
// could not be sent), or one a failed read may have lost: owed just before
// position `at` of the batch.
static void owe_at(handle_t *H, uint32_t at) {
  if (at == 0) H->owed = 1; else H->gap[at] = 1;
}

static void lost_at(handle_t *H, uint32_t at) {
  H->st.undecided_unparsed++;
  owe_at(H, at);
}

// The verdict of packet k: what the host wrote (verdict byte of record k at
// vrec + k * verdict_size: 1 = accept, anything else drop); an accept with
// the VF_OFFLOAD flag AND a nonzero mark goes back into the hook with the
// mark (NF_REPEAT: the kernel rules save it as the connmark and pass the
// flow from then on; host/kernel/offload.ts). Never NF_REPEAT without a
// mark, which the rules would queue again. Packets past `decided`: DROP.
static uint32_t verdict_at(const handle_t *H, const uint8_t *vrec, const uint32_t *marks, uint32_t k, uint32_t decided) {
  if (k >= decided) return NF_DROP;
  const uint8_t *r = vrec + (size_t)k * H->L.verdict_size;
  if (r[H->L.v_verdict] != 1) return NF_DROP;
  return (r[H->L.v_flags] & H->L.vf_offload) && marks && marks[k] ? NF_REPEAT : NF_ACCEPT;
}

// Sends the verdicts of the batch awaiting them and ends it. Packets
// [0, decided) get their verdict_at() and marks[k] when given; the rest DROP.
// Returns the messages sent.
static uint32_t flush_batch(handle_t *H, const uint8_t *vrec, const uint32_t *marks, uint32_t decided) {
  const uint32_t n = H->batch_n;
  if (decided > n) decided = n;
  H->st.undecided_no_verdict += n - decided;
  uint32_t sent = 0;
  int owed = H->owed;
#define V_AT(k) verdict_at(H, vrec, marks, (k), decided)
#define M_AT(k) ((k) < decided && marks ? marks[k] : 0u)
  for (uint32_t i = 0, j; i < n; i = j) {
    if (H->gap[i]) owed = 1;
    const uint32_t verdict = V_AT(i), mark = M_AT(i);
    for (j = i + 1; j < n && !H->gap[j] && H->ids[j] == H->ids[j - 1] + 1u && V_AT(j) == verdict && M_AT(j) == mark; j++) {}
    if (owed && sweep_below(H, H->ids[i])) owed = 0;
    const int batch = !owed && j - i > 1;
    for (uint32_t k = batch ? j - 1 : i; k < j; k++) {
      const uint32_t len = batch ? j - i : 1, first = batch ? i : k;
      if (send_msg(H, batch, H->ids[k], verdict, mark)) {
        sent++;
        if (verdict == NF_DROP) H->st.dropped += len; else H->st.accepted += len;
        if (verdict == NF_REPEAT) H->st.offloaded += len;
      } else {
        owed = 1; // still queued: the next sweep (or the unbind at close) drops them
        for (uint32_t x = first; x < first + len; x++) if (x < decided) H->st.undecided_send_failed++;
      }
    }
  }
#undef V_AT
#undef M_AT
  // Every packet of the batch has had its verdict sent: what is still
  // queued up to the last one is owed. Settle it now when possible.
  if (n && owed && sweep_below(H, H->ids[n - 1] + 1u)) owed = 0;
  if (H->gap[n]) owed = 1;
  H->owed = owed;
  H->batch_n = 0;
  return sent;
}

// Called by libnetfilter_queue only while open() or close() waits for the
// kernel's acknowledgement of a configuration message; the packets in the
// running phase are parsed by recv() (take_message), never here.
static int setup_cb(struct nfq_q_handle *qh, struct nfgenmsg *nfmsg, struct nfq_data *nfad, void *data) {
  handle_t *H = data;
  if (H->phase == PH_SETUP) {
    // Queued before the configuration is complete (queue length and flags
    // not yet in force): NF_REPEAT runs the hook again, so the packet is
    // queued again and read by recv() like any other. One that cannot be
    // sent round is owed: the first verdict sweeps it (DROP).
    struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfad);
    if (ph && send_msg(H, 0, ntohl(ph->packet_id), NF_REPEAT, 0)) H->st.requeued_at_setup++;
    else { H->owed = 1; if (ph) H->st.undecided_send_failed++; else H->st.undecided_unparsed++; }
  }
  // Closing: the unbind that follows drops what is still queued (kernel rule).
  return 1; // keep waiting for the acknowledgement
}

static void release_js(handle_t *H) {
  napi_env env = H->env;
  if (H->cb_ref) { napi_delete_reference(env, H->cb_ref); H->cb_ref = NULL; }
  if (H->actx) { napi_async_destroy(env, H->actx); H->actx = NULL; }
  if (H->self_ref) { napi_delete_reference(env, H->self_ref); H->self_ref = NULL; }
}

static void unhook(handle_t *H) {
  if (H->hooked) { napi_remove_async_cleanup_hook(H->hook); H->hooked = 0; }
}

// The poll handle's memory (inside H) is free only now. Until then the
// environment's async cleanup hook stays registered, so that a worker or
// process exit waits for this callback instead of unloading the addon first.
static void on_poll_closed(uv_handle_t *p) {
  handle_t *H = p->data;
  H->poll_state = POLL_CLOSED;
  unhook(H);
  if (H->finalized) free(H);
}

// Stops polling, unbinds, closes the socket. Safe to call twice.
static void shutdown_handle(handle_t *H, int from_finalizer) {
  if (H->poll_state == POLL_ACTIVE) {
    uv_poll_stop(&H->poll);
    H->poll_state = POLL_CLOSING;
    uv_close((uv_handle_t *)&H->poll, on_poll_closed);
  }
  if (H->phase != PH_CLOSED && H->h) {
    // A batch still awaiting its verdicts gets DROP, counted, before the
    // unbind (which would drop it too, uncounted).
    if (H->phase == PH_RUNNING && H->qh && H->batch_n) flush_batch(H, NULL, NULL, 0);
    H->phase = PH_CLOSING;
    if (H->qh) {
      // A blocking round trip, bounded: the acknowledgement may be lost when
      // the receive buffer is full, and then the close of the socket unbinds.
      int fl = fcntl(H->fd, F_GETFL);
      if (fl >= 0) fcntl(H->fd, F_SETFL, fl & ~O_NONBLOCK);
      struct timeval tv = {1, 0};
      setsockopt(H->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      nfq_destroy_queue(H->qh);
      H->qh = NULL;
    }
    nfq_close(H->h);
    H->h = NULL;
    H->fd = -1;
  }
  H->phase = PH_CLOSED;
  free(H->buf);
  H->buf = NULL;
  H->pend_pos = H->pend_len = 0;
  free(H->ids);
  free(H->gap);
  H->ids = NULL;
  H->gap = NULL;
  H->ids_cap = H->batch_n = 0;
  if (!from_finalizer) release_js(H);
}

// The environment goes away (process or worker exit) with the handle open:
// close it while N-API references may still be deleted; the teardown goes on
// once the poll handle is closed (on_poll_closed). The finalizer that follows
// finds nothing left to do but free the memory.
static void env_teardown(napi_async_cleanup_hook_handle hh, void *data) {
  handle_t *H = data;
  shutdown_handle(H, 0);
  if (H->poll_state != POLL_CLOSING) unhook(H);
}

// Garbage collection (only possible while not polling: polling holds a strong
// reference) or environment teardown. No N-API call but the hook's removal:
// references were released by close(), onReadable(null) or env_teardown.
static void finalize(napi_env env, void *data, void *hint) {
  handle_t *H = data;
  shutdown_handle(H, 1);
  H->finalized = 1;
  if (H->poll_state != POLL_CLOSING) {
    unhook(H);
    free(H);
  }
}

// ── argument helpers ───────────────────────────────────────────────────────

static int get_u32_prop(napi_env env, napi_value obj, const char *name, uint32_t *out, int required,
                        uint32_t lo, uint32_t hi) {
  bool has = false;
  napi_has_named_property(env, obj, name, &has);
  napi_value v;
  napi_valuetype t = napi_undefined;
  if (has) {
    napi_get_named_property(env, obj, name, &v);
    napi_typeof(env, v, &t);
  }
  if (t == napi_undefined) {
    if (!required) return 1;
    char m[160];
    snprintf(m, sizeof m, "option %s is required", name);
    type_error(env, m);
    return 0;
  }
  double d;
  if (t != napi_number || napi_get_value_double(env, v, &d) != napi_ok || !(d >= lo && d <= hi) ||
      d != (double)(uint32_t)d) {
    char m[160];
    snprintf(m, sizeof m, "option %s must be an integer in %u..%u", name, lo, hi);
    type_error(env, m);
    return 0;
  }
  *out = (uint32_t)d;
  return 1;
}

static int get_bool_prop(napi_env env, napi_value obj, const char *name, int *out) {
  bool has = false;
  napi_has_named_property(env, obj, name, &has);
  if (!has) return 1;
  napi_value v;
  napi_valuetype t;
  napi_get_named_property(env, obj, name, &v);
  napi_typeof(env, v, &t);
  if (t == napi_undefined) return 1;
  if (t != napi_boolean) {
    char m[120];
    snprintf(m, sizeof m, "option %s must be a boolean", name);
    type_error(env, m);
    return 0;
  }
  bool b;
  napi_get_value_bool(env, v, &b);
  *out = b;
  return 1;
}

static int arg_u32(napi_env env, napi_value v, const char *name, uint32_t *out) {
  napi_valuetype t;
  double d;
  napi_typeof(env, v, &t);
  if (t != napi_number || napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0 && d <= 4294967295.0) ||
      d != (double)(uint32_t)d) {
    char m[120];
    snprintf(m, sizeof m, "%s must be a non-negative integer", name);
    type_error(env, m);
    return 0;
  }
  *out = (uint32_t)d;
  return 1;
}

// The wasm memory: an ArrayBuffer, or any typed array / DataView over one
// (its whole buffer is used: offsets are offsets into linear memory).
static int arg_memory(napi_env env, napi_value v, uint8_t **base, size_t *len) {
  bool is = false;
  napi_is_arraybuffer(env, v, &is);
  if (is) {
    void *p;
    napi_get_arraybuffer_info(env, v, &p, len);
    *base = p;
    return 1;
  }
  napi_value ab;
  size_t off = 0;
  napi_is_typedarray(env, v, &is);
  if (is) {
    napi_typedarray_type tt;
    size_t n;
    void *d;
    napi_get_typedarray_info(env, v, &tt, &n, &d, &ab, &off);
  } else {
    napi_is_dataview(env, v, &is);
    if (!is) { type_error(env, "memory must be the wasm memory's ArrayBuffer or a view over it"); return 0; }
    size_t n;
    void *d;
    napi_get_dataview_info(env, v, &n, &d, &ab, &off);
  }
  void *p;
  napi_get_arraybuffer_info(env, ab, &p, len);
  *base = p;
  return 1;
}

static handle_t *this_handle(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv, napi_value *self) {
  napi_value me;
  napi_get_cb_info(env, info, argc, argv, &me, NULL);
  handle_t *H = NULL;
  if (napi_unwrap(env, me, (void **)&H) != napi_ok || !H) { type_error(env, "not an NFQUEUE handle"); return NULL; }
  if (self) *self = me;
  return H;
}

static int check_open(napi_env env, handle_t *H, const char *op) {
  if (H->phase == PH_RUNNING) return 1;
  throw_errno(env, EBADF, op, H->queue, 0);
  return 0;
}

// ── open ───────────────────────────────────────────────────────────────────

static int read_layout(napi_env env, napi_value opts, layout_t *L) {
  bool has = false;
  napi_has_named_property(env, opts, "layout", &has);
  napi_value lo;
  napi_valuetype t = napi_undefined;
  if (has) { napi_get_named_property(env, opts, "layout", &lo); napi_typeof(env, lo, &t); }
  if (t != napi_object) { type_error(env, "option layout (the descriptor offsets of host/core/abi.ts) is required"); return 0; }
  const uint32_t big = 1u << 16;
  if (!get_u32_prop(env, lo, "ABI_VERSION", &L->version, 1, 0, big) ||
      !get_u32_prop(env, lo, "DESC_SIZE", &L->desc_size, 1, 1, 4096) ||
      !get_u32_prop(env, lo, "D_DATA_OFF", &L->d_data_off, 1, 0, big) ||
      !get_u32_prop(env, lo, "D_CAP_LEN", &L->d_cap_len, 1, 0, big) ||
      !get_u32_prop(env, lo, "D_WIRE_LEN", &L->d_wire_len, 1, 0, big) ||
      !get_u32_prop(env, lo, "D_PACKET_ID", &L->d_packet_id, 1, 0, big) ||
      !get_u32_prop(env, lo, "D_TS", &L->d_ts, 1, 0, big) ||
      !get_u32_prop(env, lo, "D_HW_PROTO", &L->d_hw_proto, 1, 0, big) ||
      !get_u32_prop(env, lo, "D_IN_ROLE", &L->d_in_role, 1, 0, big) ||
      !get_u32_prop(env, lo, "D_OUT_ROLE", &L->d_out_role, 1, 0, big) ||
      !get_u32_prop(env, lo, "D_HOOK", &L->d_hook, 1, 0, big) ||
      !get_u32_prop(env, lo, "D_QUEUE", &L->d_queue, 1, 0, big) ||
      !get_u32_prop(env, lo, "VERDICT_SIZE", &L->verdict_size, 1, 1, 4096) ||
      !get_u32_prop(env, lo, "V_VERDICT", &L->v_verdict, 1, 0, big) ||
      !get_u32_prop(env, lo, "V_FLAGS", &L->v_flags, 1, 0, big) ||
      !get_u32_prop(env, lo, "VF_OFFLOAD", &L->vf_offload, 1, 1, 255))
    return 0;
  if (L->version != ABI_VERSION_KNOWN) {
    char m[200];
    snprintf(m, sizeof m, "layout ABI_VERSION %u, this addon writes version %u descriptors (rebuild the addon)",
             L->version, ABI_VERSION_KNOWN);
    type_error(env, m);
    return 0;
  }
  // Field widths of version 1; each must fit in its record.
  struct { const char *name; uint32_t off, width, size; } f[] = {
    {"D_DATA_OFF", L->d_data_off, 4, L->desc_size}, {"D_CAP_LEN", L->d_cap_len, 4, L->desc_size},
    {"D_WIRE_LEN", L->d_wire_len, 4, L->desc_size}, {"D_PACKET_ID", L->d_packet_id, 4, L->desc_size},
    {"D_TS", L->d_ts, 8, L->desc_size}, {"D_HW_PROTO", L->d_hw_proto, 2, L->desc_size},
    {"D_IN_ROLE", L->d_in_role, 1, L->desc_size}, {"D_OUT_ROLE", L->d_out_role, 1, L->desc_size},
    {"D_HOOK", L->d_hook, 1, L->desc_size}, {"D_QUEUE", L->d_queue, 2, L->desc_size},
    {"V_VERDICT", L->v_verdict, 1, L->verdict_size}, {"V_FLAGS", L->v_flags, 1, L->verdict_size},
  };
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
    if (f[i].off + f[i].width > f[i].size) {
      char m[160];
      snprintf(m, sizeof m, "layout %s (%u, %u bytes) does not fit in its %u-byte record", f[i].name, f[i].off,
               f[i].width, f[i].size);
      type_error(env, m);
      return 0;
    }
  }
  return 1;
}

// new Queue({queue, copyRange, maxLen, failOpen, gso, rcvbuf, layout})
static napi_value Queue_new(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], self, target = NULL;
  napi_get_cb_info(env, info, &argc, argv, &self, NULL);
  napi_get_new_target(env, info, &target);
  if (!target) return type_error(env, "Queue is a constructor: new Queue(options)");
  napi_valuetype t = napi_undefined;
  if (argc >= 1) napi_typeof(env, argv[0], &t);
  if (t != napi_object) return type_error(env, "open(options): options must be an object");
  napi_value o = argv[0];
  uint32_t queue = 0, copy_range = COPY_RANGE_MAX, maxlen = 4096, rcvbuf = 8u << 20;
  int fail_open = 0, gso = 0;
  layout_t L;
  if (!get_u32_prop(env, o, "queue", &queue, 1, 0, 65535) ||
      !get_u32_prop(env, o, "copyRange", &copy_range, 0, 0, COPY_RANGE_MAX) ||
      !get_u32_prop(env, o, "maxLen", &maxlen, 0, 1, 1u << 24) ||
      !get_u32_prop(env, o, "rcvbuf", &rcvbuf, 0, 4096, 1u << 30) ||
      !get_bool_prop(env, o, "failOpen", &fail_open) || !get_bool_prop(env, o, "gso", &gso) ||
      !read_layout(env, o, &L))
    return NULL;
  if (copy_range == 0) copy_range = COPY_RANGE_MAX; // the kernel reads 0 as "all"

  handle_t *H = calloc(1, sizeof *H);
  if (!H) return throw_errno(env, ENOMEM, "open", (int)queue, 0);
  H->env = env;
  H->queue = (int)queue;
  H->phase = PH_SETUP;
  H->L = L;
  H->copy_range = copy_range;
  H->fd = -1;
  H->bufsize = copy_range + NL_HDR_SLACK;
  H->buf = malloc(H->bufsize);
  if (!H->buf) { free(H); return throw_errno(env, ENOMEM, "open", (int)queue, 0); }

  const char *op = "open netlink socket";
  int err = 0, is_bind = 0;
  H->h = nfq_open();
  if (!H->h) { err = errno ? errno : EPROTONOSUPPORT; goto fail; }
  H->fd = nfq_fd(H->h);
  // Room for a whole message in libnfnetlink's own reads during setup.
  nfnl_set_rcv_buffer_size(nfq_nfnlh(H->h), (unsigned)H->bufsize);

  // Large receive buffer: SO_RCVBUFFORCE (root/CAP_NET_ADMIN) ignores rmem_max.
  int want = (int)rcvbuf;
  if (setsockopt(H->fd, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof want) == 0) H->rcvbuf_forced = 1;
  else setsockopt(H->fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof want);
  socklen_t sl = sizeof H->rcvbuf;
  getsockopt(H->fd, SOL_SOCKET, SO_RCVBUF, &H->rcvbuf, &sl);
  // Overflow must be reported (ENOBUFS), so it is seen and counted.
  int zero = 0;
  setsockopt(H->fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &zero, sizeof zero);

  op = "bind";
  is_bind = 1;
  errno = 0;
  H->qh = nfq_create_queue(H->h, (uint16_t)queue, setup_cb, H);
  if (!H->qh) { err = errno ? errno : EINVAL; goto fail; }
  is_bind = 0;
  // Copy mode first: until it is set the kernel refuses to queue (and so
  // drops) what the rule sends here. Packets that arrive from now until the
  // last acknowledgement go round again (setup_cb, NF_REPEAT).
  op = "set copy mode";
  if (nfq_set_mode(H->qh, NFQNL_COPY_PACKET, copy_range) < 0) { err = errno; goto fail; }
  op = "set queue max length";
  if (nfq_set_queue_maxlen(H->qh, maxlen) < 0) { err = errno; goto fail; }
  op = "set flags";
  uint32_t mask = NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO | NFQA_CFG_F_CONNTRACK;
  uint32_t flags = (fail_open ? NFQA_CFG_F_FAIL_OPEN : 0) | (gso ? NFQA_CFG_F_GSO : 0);
  if (nfq_set_queue_flags(H->qh, mask, flags) < 0) { err = errno; goto fail; }

  int fl = fcntl(H->fd, F_GETFL);
  if (fl < 0 || fcntl(H->fd, F_SETFL, fl | O_NONBLOCK) < 0) { op = "set non-blocking"; err = errno; goto fail; }
  H->phase = PH_RUNNING;

  if (napi_wrap(env, self, H, finalize, NULL, NULL) != napi_ok) {
    shutdown_handle(H, 1);
    free(H);
    return NULL;
  }
  if (napi_add_async_cleanup_hook(env, env_teardown, H, &H->hook) == napi_ok) H->hooked = 1;
  return self;

fail:
  if (!err) err = EINVAL;
  {
    napi_value e = make_error(env, err, op, (int)queue, is_bind);
    shutdown_handle(H, 1);
    free(H);
    napi_throw(env, e);
  }
  return NULL;
}

// ── receive ────────────────────────────────────────────────────────────────

typedef struct {
  uint8_t *mem;
  size_t memlen;
  uint32_t descs_off, data_off, data_cap, max;
  uint32_t n, used;   // descriptors written, bytes of DATA used
  uint64_t now_ns;    // for packets without a kernel timestamp (read once per call when needed)
} batch_t;

// MSG_LOST: a packet message that could not be read (its id unknown): owed.
enum { MSG_TAKEN, MSG_SKIPPED, MSG_LOST, MSG_NO_ROOM };

// One netlink message: a packet becomes a descriptor (its bytes copied to DATA
// unless `in_data` says they already lie there) and its id is kept for the
// verdict; anything else is counted.
static int take_message(handle_t *H, batch_t *B, const uint8_t *m, uint32_t len, int in_data) {
  const struct nlmsghdr *nlh = (const struct nlmsghdr *)m;
  if (nlh->nlmsg_type == NLMSG_ERROR) {
    if (len >= NLMSG_LENGTH(sizeof(int)) && *(const int *)NLMSG_DATA(nlh) != 0) H->st.nl_errors++;
    return MSG_SKIPPED;
  }
  if (nlh->nlmsg_type != ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET)) return MSG_SKIPPED;
  if (len < NLMSG_LENGTH(sizeof(struct nfgenmsg))) { H->st.recv_errors++; return MSG_LOST; }
  const struct nfgenmsg *g = NLMSG_DATA(nlh);
  const uint8_t *a = (const uint8_t *)g + NLMSG_ALIGN(sizeof(struct nfgenmsg));
  const uint8_t *end = m + len;
  const uint8_t *payload = NULL, *phdr = NULL, *tstamp = NULL;
  uint32_t plen = 0, cap_attr = 0, indev = 0, outdev = 0, physin = 0, physout = 0;
  int has_cap = 0;
  while (end - a >= 4) {
    struct nlattr na;  // netlink headers are in host order
    memcpy(&na, a, sizeof na);
    uint16_t alen = na.nla_len, atype = na.nla_type & NLA_TYPE_MASK;
    if (alen < 4 || alen > end - a) break;
    const uint8_t *d = a + 4;
    uint32_t dl = alen - 4u;
    switch (atype) {
      case NFQA_PACKET_HDR: if (dl >= 7) phdr = d; break;
      case NFQA_PAYLOAD: payload = d; plen = dl; break;
      case NFQA_CAP_LEN: if (dl >= 4) { cap_attr = rd_be32(d); has_cap = 1; } break;
      case NFQA_TIMESTAMP: if (dl >= 16) tstamp = d; break;
      case NFQA_IFINDEX_INDEV: if (dl >= 4) indev = rd_be32(d); break;
      case NFQA_IFINDEX_OUTDEV: if (dl >= 4) outdev = rd_be32(d); break;
      case NFQA_IFINDEX_PHYSINDEV: if (dl >= 4) physin = rd_be32(d); break;
      case NFQA_IFINDEX_PHYSOUTDEV: if (dl >= 4) physout = rd_be32(d); break;
      default: break;
    }
    a += NLMSG_ALIGN(alen);
  }
  if (!phdr || fault_hit(H, F_SKIP)) { H->st.recv_errors++; return MSG_LOST; }

  uint32_t cap_len = payload ? plen : 0;
  uint32_t dst;
  if (in_data && payload) {
    dst = (uint32_t)(payload - (B->mem + B->data_off));
  } else if (in_data) {
    dst = B->used;
  } else {
    uint32_t room = B->data_cap - B->used;
    if (cap_len > room) {
      if (B->n > 0) return MSG_NO_ROOM;   // next call, into an empty DATA area
      cap_len = room;                     // bigger than the whole area: cut it
      H->st.oversize++;
    }
    dst = B->used;
    if (cap_len) memcpy(B->mem + B->data_off + dst, payload, cap_len);
  }
  B->used = (dst + cap_len + 7u) & ~7u;
  if (B->used > B->data_cap) B->used = B->data_cap;

  uint32_t wire_len = has_cap && cap_attr > cap_len ? cap_attr : (payload ? plen : 0);
  if (wire_len < cap_len) wire_len = cap_len;
  uint64_t ts;
  if (tstamp) {
    ts = rd_be64(tstamp) * 1000000000ull + rd_be64(tstamp + 8) * 1000ull;
  } else {
    if (!B->now_ns) B->now_ns = realtime_ns();
    ts = B->now_ns;
  }
  uint8_t in_role = physin ? role_of(H, physin) : 0;
  if (!in_role) in_role = role_of(H, indev);
  uint8_t out_role = physout ? role_of(H, physout) : 0;
  if (!out_role) out_role = role_of(H, outdev);

  const layout_t *L = &H->L;
  uint8_t *desc = B->mem + B->descs_off + (size_t)B->n * L->desc_size;
  memset(desc, 0, L->desc_size);
  wr_le32(desc + L->d_data_off, dst);
  wr_le32(desc + L->d_cap_len, cap_len);
  wr_le32(desc + L->d_wire_len, wire_len);
  wr_le32(desc + L->d_packet_id, rd_be32(phdr));
  H->ids[B->n] = rd_be32(phdr);
  wr_le64(desc + L->d_ts, ts);
  wr_le16(desc + L->d_hw_proto, (uint16_t)((phdr[4] << 8) | phdr[5]));
  desc[L->d_in_role] = in_role;
  desc[L->d_out_role] = out_role;
  desc[L->d_hook] = phdr[6];
  wr_le16(desc + L->d_queue, ntohs(g->res_id));
  B->n++;
  H->st.packets++;
  H->st.bytes += wire_len;
  if (cap_len < wire_len) H->st.truncated++;
  return MSG_TAKEN;
}

// Walks the netlink messages of one datagram from `pos`; returns the offset
// of the first message that did not fit (== len when all were taken).
static size_t take_datagram(handle_t *H, batch_t *B, const uint8_t *d, size_t pos, size_t len, int in_data) {
  // The last message of a datagram need not be padded to NLMSG_ALIGNTO, so
  // pos can step past len: compare before subtracting.
  while (pos < len && len - pos >= NLMSG_HDRLEN) {
    const struct nlmsghdr *nlh = (const struct nlmsghdr *)(d + pos);
    uint32_t ml = nlh->nlmsg_len;
    if (ml < NLMSG_HDRLEN || ml > len - pos) {
      // The rest of the datagram cannot be walked: whatever packets it held
      // are owed (kernel datagrams carry one message; this is corruption).
      H->st.recv_errors++;
      lost_at(H, B->n);
      return len;
    }
    if (B->n >= B->max) return pos;
    int r = take_message(H, B, d + pos, ml, in_data);
    if (r == MSG_NO_ROOM) return pos;
    if (r == MSG_LOST) lost_at(H, B->n);
    pos += NLMSG_ALIGN(ml);
  }
  return len;
}

// Keeps d[pos..len) for the next call.
static void keep_pending(handle_t *H, const uint8_t *d, size_t pos, size_t len) {
  if (pos >= len) { H->pend_pos = H->pend_len = 0; return; }
  if (d != H->buf) memcpy(H->buf, d + pos, len - pos);
  else memmove(H->buf, d + pos, len - pos);
  H->pend_pos = 0;
  H->pend_len = len - pos;
}

// recv(mem, descsOff, dataOff, dataCap, maxPackets) -> packets written
static napi_value Queue_recv(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  handle_t *H = this_handle(env, info, &argc, argv, NULL);
  if (!H) return NULL;
  if (argc < 5) return type_error(env, "recv(mem, descsOff, dataOff, dataCap, maxPackets)");
  batch_t B = {0};
  if (!arg_memory(env, argv[0], &B.mem, &B.memlen) || !arg_u32(env, argv[1], "descsOff", &B.descs_off) ||
      !arg_u32(env, argv[2], "dataOff", &B.data_off) || !arg_u32(env, argv[3], "dataCap", &B.data_cap) ||
      !arg_u32(env, argv[4], "maxPackets", &B.max))
    return NULL;
  if ((uint64_t)B.descs_off + (uint64_t)B.max * H->L.desc_size > B.memlen ||
      (uint64_t)B.data_off + B.data_cap > B.memlen || B.data_cap == 0)
    return type_error(env, "recv: the descriptor or data area lies outside the memory");
  if (!check_open(env, H, "recv")) return NULL;
  // The previous batch, if the host never gave its verdicts (an exception
  // between recv and verdict, a refused batch): DROP, counted, first.
  if (H->batch_n) flush_batch(H, NULL, NULL, 0);
  if (B.max > H->ids_cap) {
    if (B.max > (1u << 20)) return type_error(env, "recv: maxPackets must be at most 1048576");
    uint32_t *ids = realloc(H->ids, (size_t)B.max * sizeof *ids);
    if (ids) H->ids = ids;
    uint8_t *gap = ids ? realloc(H->gap, (size_t)B.max + 1) : NULL;
    if (!gap) return throw_errno(env, ENOMEM, "recv", H->queue, 0);
    H->gap = gap;
    H->ids_cap = B.max;
  }
  if (H->gap) memset(H->gap, 0, (size_t)H->ids_cap + 1);
  if (H->pend_err) {
    int e = H->pend_err;
    H->pend_err = 0;
    return throw_errno(env, e, "recv", H->queue, 0);
  }

  // What the previous call could not place comes first.
  if (H->pend_len > H->pend_pos) {
    size_t stop = take_datagram(H, &B, H->buf, H->pend_pos, H->pend_len, 0);
    if (stop < H->pend_len) H->pend_pos = stop; else H->pend_pos = H->pend_len = 0;
  }

  while (B.n < B.max && H->pend_len == 0) {
    // With room for the largest datagram, receive straight into DATA and point
    // the descriptor at the payload inside it; otherwise into the handle's
    // buffer and copy what fits.
    uint32_t room = B.data_cap - B.used;
    int direct = room >= H->bufsize;
    uint8_t *dst = direct ? B.mem + B.data_off + B.used : H->buf;
    ssize_t r = recv(H->fd, dst, H->bufsize, MSG_DONTWAIT | MSG_TRUNC);
    if (r >= 0 && fault_hit(H, F_RECV)) { r = -1; errno = H->fault[F_RECV].err; } // test hook: the datagram is read, then lost
    if (r < 0) {
      int e = errno;
      if (e == EINTR) continue;
      if (e == EAGAIN || e == EWOULDBLOCK) break;
      if (e == ENOBUFS) { H->st.enobufs++; continue; } // the kernel dropped some; go on
      // A failed read may have taken a message off the socket (netlink frees
      // the datagram when the copy fails): whatever it held is owed.
      H->st.recv_errors++;
      owe_at(H, B.n);
      if (B.n == 0) return throw_errno(env, e, "recv", H->queue, 0);
      H->pend_err = e; // this batch first; the next call reports it
      break;
    }
    if ((size_t)r > H->bufsize) {
      // Larger than copy range + headers allows: cannot happen unless the
      // kernel adds unexpected attributes. The packet is unreadable: DROP it
      // by its id (a single verdict: only that packet); when the id cannot
      // be read or the DROP not sent, it is owed.
      H->st.recv_errors++;
      const struct nlmsghdr *nlh = (const struct nlmsghdr *)dst;
      if (nlh->nlmsg_type == ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET)) {
        const uint8_t *a = dst + NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(struct nfgenmsg));
        struct nlattr na;
        memcpy(&na, a, sizeof na);
        if ((na.nla_type & NLA_TYPE_MASK) == NFQA_PACKET_HDR && send_msg(H, 0, rd_be32(a + 4), NF_DROP, 0)) {
          H->st.undecided_unparsed++;
          H->st.dropped++;
        } else {
          lost_at(H, B.n);
        }
      }
      continue;
    }
    size_t stop = take_datagram(H, &B, dst, 0, (size_t)r, direct);
    if (stop < (size_t)r) keep_pending(H, dst, stop, (size_t)r);
  }
  if (B.n > 0) H->st.batches++;
  H->batch_n = B.n;
  napi_value out;
  napi_create_uint32(env, B.n, &out);
  return out;
}

// verdict(mem, descsOff, verdictsOff, count, marks?) -> netlink messages sent.
// The verdicts of the first `count` packets of the last recv(), read from
// the verdict area; the ids are the ones recv() kept (the descriptors in
// memory are not trusted for them). Packets of that batch past `count` get
// DROP (no_verdict). A verdict that cannot be sent is counted and its
// packets dropped by a sweep (see "verdicts" above): this never throws for
// that, the host's loop goes on.
static napi_value Queue_verdict(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  handle_t *H = this_handle(env, info, &argc, argv, NULL);
  if (!H) return NULL;
  if (argc < 4) return type_error(env, "verdict(mem, descsOff, verdictsOff, count, marks?)");
  uint8_t *mem;
  size_t memlen;
  uint32_t descs_off, verdicts_off, count;
  if (!arg_memory(env, argv[0], &mem, &memlen) || !arg_u32(env, argv[1], "descsOff", &descs_off) ||
      !arg_u32(env, argv[2], "verdictsOff", &verdicts_off) || !arg_u32(env, argv[3], "count", &count))
    return NULL;
  const layout_t *L = &H->L;
  if ((uint64_t)descs_off + (uint64_t)count * L->desc_size > memlen ||
      (uint64_t)verdicts_off + (uint64_t)count * L->verdict_size > memlen)
    return type_error(env, "verdict: the descriptor or verdict area lies outside the memory");
  const uint32_t *marks = NULL;
  napi_valuetype mt = napi_undefined;
  if (argc >= 5) napi_typeof(env, argv[4], &mt);
  if (mt != napi_undefined && mt != napi_null) {
    bool is = false;
    napi_is_typedarray(env, argv[4], &is);
    napi_typedarray_type tt;
    size_t n = 0, off;
    void *d = NULL;
    napi_value ab;
    if (is) napi_get_typedarray_info(env, argv[4], &tt, &n, &d, &ab, &off);
    if (!is || tt != napi_uint32_array) return type_error(env, "verdict: marks must be a Uint32Array");
    if (n < count) return type_error(env, "verdict: marks is shorter than count");
    marks = d;
  }
  if (!check_open(env, H, "verdict")) return NULL;
  if (count > H->batch_n) {
    char m[160];
    snprintf(m, sizeof m, "verdict: count %u, but %u packets of the last recv() await a verdict", count, H->batch_n);
    return type_error(env, m);
  }
  uint32_t sent = flush_batch(H, mem + verdicts_off, marks, count);
  napi_value out;
  napi_create_uint32(env, sent, &out);
  return out;
}

// ── event loop ─────────────────────────────────────────────────────────────

static void on_poll(uv_poll_t *p, int status, int events) {
  handle_t *H = p->data;
  if (H->phase != PH_RUNNING || !H->cb_ref) return;
  H->st.wakeups++;
  napi_env env = H->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv_obj, argv[1], result;
  size_t argc = 0;
  napi_get_reference_value(env, H->cb_ref, &cb);
  if (!H->self_ref || napi_get_reference_value(env, H->self_ref, &recv_obj) != napi_ok || !recv_obj)
    napi_get_undefined(env, &recv_obj);
  int soerr = 0;
  if (status >= 0 && fault_hit(H, F_POLL)) {
    // Test hook: this wakeup as libuv reports EPOLLERR (UV_EBADF, the
    // handle stopped) with the socket error the test chose.
    uv_poll_stop(&H->poll);
    status = UV_EBADF;
    soerr = H->fault[F_POLL].err;
  }
  if (status < 0) {
    // libuv reports EPOLLERR as UV_EBADF and stops the handle. On this socket
    // the pending error is nearly always ENOBUFS (the receive buffer
    // overflowed and the kernel dropped packets): count it, poll again, and
    // let JS read what did arrive. Any other error is counted and handed to
    // the callback, and polling starts again all the same: an error never
    // ends reading silently; the host decides whether to go on or exit.
    socklen_t sl = sizeof soerr;
    int known = soerr != 0 || (status == UV_EBADF && getsockopt(H->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0);
    if (known && (soerr == ENOBUFS || soerr == 0)) {
      if (soerr == ENOBUFS) H->st.enobufs++;
    } else {
      H->st.recv_errors++;
      argv[0] = make_error(env, soerr ? soerr : -status, "poll", H->queue, 0);
      argc = 1;
    }
    int r = uv_poll_start(&H->poll, UV_READABLE, on_poll);
    if (r < 0) {
      // Reading has ended: say so, so that the host exits and is restarted.
      if (!argc) { argv[0] = make_error(env, -r, "poll", H->queue, 0); argc = 1; }
      napi_value t;
      napi_get_boolean(env, true, &t);
      napi_set_named_property(env, argv[0], "pollStopped", t);
    }
  }
  napi_status s = napi_make_callback(env, H->actx, recv_obj, cb, argc, argv, &result);
  if (s == napi_pending_exception) {
    napi_value exc;
    napi_get_and_clear_last_exception(env, &exc);
    napi_fatal_exception(env, exc);
  }
  napi_close_handle_scope(env, scope);
}

// onReadable(cb): cb() once per wakeup of the socket; onReadable(null) stops.
static napi_value Queue_onReadable(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], self;
  handle_t *H = this_handle(env, info, &argc, argv, &self);
  if (!H) return NULL;
  napi_valuetype t = napi_undefined;
  if (argc >= 1) napi_typeof(env, argv[0], &t);
  if (t != napi_function && t != napi_null && t != napi_undefined)
    return type_error(env, "onReadable(cb): cb must be a function (or null to stop)");
  if (!check_open(env, H, "onReadable")) return NULL;
  if (t != napi_function) {
    if (H->poll_state == POLL_ACTIVE) uv_poll_stop(&H->poll);
    release_js(H); // the handle may now be collected if JS drops it
    return NULL;
  }
  if (H->cb_ref) { napi_delete_reference(env, H->cb_ref); H->cb_ref = NULL; }
  napi_create_reference(env, argv[0], 1, &H->cb_ref);
  // Polling keeps the JS object (and so the handle) alive until close().
  if (!H->self_ref) napi_create_reference(env, self, 1, &H->self_ref);
  if (!H->actx) {
    napi_value name;
    napi_create_string_utf8(env, "NFQUEUE", NAPI_AUTO_LENGTH, &name);
    napi_async_init(env, self, name, &H->actx);
  }
  if (H->poll_state == POLL_NONE) {
    uv_loop_t *loop;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) return throw_errno(env, EINVAL, "onReadable", H->queue, 0);
    int r = uv_poll_init(loop, &H->poll, H->fd);
    if (r < 0) return throw_errno(env, -r, "onReadable", H->queue, 0);
    H->poll.data = H;
    H->poll_state = POLL_ACTIVE;
  }
  int r = uv_poll_start(&H->poll, UV_READABLE, on_poll);
  if (r < 0) return throw_errno(env, -r, "onReadable", H->queue, 0);
  return NULL;
}

// ── the rest ───────────────────────────────────────────────────────────────

// setRoles({ifindex: role}) replaces the table (roles 0..255, ifindex > 0).
static napi_value Queue_setRoles(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  handle_t *H = this_handle(env, info, &argc, argv, NULL);
  if (!H) return NULL;
  napi_valuetype t = napi_undefined;
  if (argc >= 1) napi_typeof(env, argv[0], &t);
  if (t != napi_object) return type_error(env, "setRoles({ifindex: role}): expects an object");
  napi_value keys;
  uint32_t nk;
  napi_get_property_names(env, argv[0], &keys);
  napi_get_array_length(env, keys, &nk);
  if (nk > MAX_ROLES) return type_error(env, "setRoles: at most 64 interfaces");
  uint32_t ifs[MAX_ROLES];
  uint8_t roles[MAX_ROLES];
  for (uint32_t i = 0; i < nk; i++) {
    napi_value k, kn, v;
    napi_get_element(env, keys, i, &k);
    napi_get_property(env, argv[0], k, &v);
    napi_coerce_to_number(env, k, &kn);
    double d;
    napi_get_value_double(env, kn, &d);
    uint32_t role;
    if (!(d >= 1 && d <= 4294967295.0) || d != (double)(uint32_t)d)
      return type_error(env, "setRoles: keys must be interface indexes (positive integers)");
    if (!arg_u32(env, v, "setRoles: a role", &role)) return NULL;
    if (role > 255) return type_error(env, "setRoles: a role must be 0..255");
    ifs[i] = (uint32_t)d;
    roles[i] = (uint8_t)role;
  }
  memcpy(H->role_if, ifs, sizeof ifs[0] * nk);
  memcpy(H->role_val, roles, nk);
  H->nroles = nk;
  return NULL;
}

static void put_num(napi_env env, napi_value o, const char *k, double v) {
  napi_value n;
  napi_create_double(env, v, &n);
  napi_set_named_property(env, o, k, n);
}

static napi_value Queue_stats(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  handle_t *H = this_handle(env, info, &argc, NULL, NULL);
  if (!H) return NULL;
  napi_value o;
  napi_create_object(env, &o);
  const stats_t *s = &H->st;
  put_num(env, o, "packets", (double)s->packets);
  put_num(env, o, "bytes", (double)s->bytes);
  put_num(env, o, "batches", (double)s->batches);
  put_num(env, o, "wakeups", (double)s->wakeups);
  put_num(env, o, "verdictMsgs", (double)s->verdict_msgs);
  put_num(env, o, "offloaded", (double)s->offloaded);
  put_num(env, o, "accepted", (double)s->accepted);
  put_num(env, o, "dropped", (double)s->dropped);
  put_num(env, o, "enobufs", (double)s->enobufs);
  put_num(env, o, "recvErrors", (double)s->recv_errors);
  put_num(env, o, "truncated", (double)s->truncated);
  put_num(env, o, "nlErrors", (double)s->nl_errors);
  put_num(env, o, "requeuedAtSetup", (double)s->requeued_at_setup);
  put_num(env, o, "oversize", (double)s->oversize);
  put_num(env, o, "undecidedNoVerdict", (double)s->undecided_no_verdict);
  put_num(env, o, "undecidedUnparsed", (double)s->undecided_unparsed);
  put_num(env, o, "undecidedSendFailed", (double)s->undecided_send_failed);
  put_num(env, o, "sendErrors", (double)s->send_errors);
  put_num(env, o, "sweeps", (double)s->sweeps);
  put_num(env, o, "rcvbuf", (double)H->rcvbuf);
  napi_value b;
  napi_get_boolean(env, H->rcvbuf_forced, &b);
  napi_set_named_property(env, o, "rcvbufForced", b);
  return o;
}

// ── test hook ──────────────────────────────────────────────────────────────
// testHookFault(kind, count, after, errno): the next `count` events of
// `kind` fail, once `after` more have gone through. For the test suite only
// (test/helpers/nfq-child.ts): nothing under host/ calls it, no option of
// open() or the board config reaches it, and on a handle where it was never
// called every fault count is 0, so each check costs one comparison.
//   "skip": a packet message is read as if its packet header were missing
//           (unreadable, its id unknown)
//   "send": a verdict message fails with errno
//   "recv": a datagram read from the socket is lost, recv() fails with errno
//   "poll": a wakeup reports the socket error errno, as libuv reports EPOLLERR
static napi_value Queue_testHookFault(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  handle_t *H = this_handle(env, info, &argc, argv, NULL);
  if (!H) return NULL;
  static const char *kinds[F_KINDS] = {"skip", "send", "recv", "poll"};
  char kind[16] = "";
  size_t n = 0;
  uint32_t count, after, err;
  if (argc < 4 || napi_get_value_string_utf8(env, argv[0], kind, sizeof kind, &n) != napi_ok ||
      !arg_u32(env, argv[1], "count", &count) || !arg_u32(env, argv[2], "after", &after) || !arg_u32(env, argv[3], "errno", &err))
    return argc < 4 ? type_error(env, "testHookFault(kind, count, after, errno)") : NULL;
  for (int k = 0; k < F_KINDS; k++) {
    if (strcmp(kind, kinds[k])) continue;
    H->fault[k] = (fault_t){after, count, (int)err};
    return NULL;
  }
  return type_error(env, "testHookFault: kind is skip, send, recv or poll");
}

static napi_value Queue_fd(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  handle_t *H = this_handle(env, info, &argc, NULL, NULL);
  if (!H) return NULL;
  napi_value n;
  napi_create_int32(env, H->phase == PH_RUNNING ? H->fd : -1, &n);
  return n;
}

static napi_value Queue_close(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  handle_t *H = this_handle(env, info, &argc, NULL, NULL);
  if (!H) return NULL;
  shutdown_handle(H, 0);
  return NULL;
}

// explain(code, op, queue) -> the message an error with that code carries.
static napi_value explain_js(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char code[64] = "", op[64] = "";
  size_t n;
  napi_valuetype t = napi_undefined;
  if (argc >= 1) napi_typeof(env, argv[0], &t);
  if (t == napi_number) {
    int32_t e;
    napi_get_value_int32(env, argv[0], &e);
    snprintf(code, sizeof code, "%s", errno_name(e));
  } else if (t == napi_string) {
    napi_get_value_string_utf8(env, argv[0], code, sizeof code, &n);
  } else {
    return type_error(env, "explain(code, op, queue): code must be an errno name or number");
  }
  if (argc >= 2) {
    napi_typeof(env, argv[1], &t);
    if (t == napi_string) napi_get_value_string_utf8(env, argv[1], op, sizeof op, &n);
  }
  if (!op[0]) snprintf(op, sizeof op, "open");
  int32_t queue = -1;
  if (argc >= 3) {
    napi_typeof(env, argv[2], &t);
    if (t == napi_number) napi_get_value_int32(env, argv[2], &queue);
  }
  char msg[640];
  explain(msg, sizeof msg, code, op, queue);
  napi_value out;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &out);
  return out;
}

// ── systemd notification ───────────────────────────────────────────────────
// sdNotify(state) sends `state` ("READY=1", "WATCHDOG=1", ...) to the socket
// in $NOTIFY_SOCKET, as sd_notify(3) does (an AF_UNIX datagram; a leading
// '@' names an abstract socket). Node has no AF_UNIX datagram sockets, hence
// here. Returns false when $NOTIFY_SOCKET is unset (not run by systemd);
// throws with the errno name when the send fails.
static napi_value sd_notify_js(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char state[512];
  size_t n = 0;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], state, sizeof state, &n) != napi_ok || n == 0 || n >= sizeof state - 1)
    return type_error(env, "sdNotify(state): a non-empty string under 511 bytes");
  napi_value out;
  const char *path = getenv("NOTIFY_SOCKET");
  if (!path || !*path) { napi_get_boolean(env, false, &out); return out; }
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  size_t plen = strlen(path);
  if (plen >= sizeof sa.sun_path || (path[0] != '/' && path[0] != '@')) return type_error(env, "NOTIFY_SOCKET is not a socket path");
  memcpy(sa.sun_path, path, plen);
  if (path[0] == '@') sa.sun_path[0] = 0;
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  int err = 0;
  if (fd < 0) err = errno;
  else {
    if (sendto(fd, state, n, MSG_NOSIGNAL, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen)) < 0) err = errno;
    close(fd);
  }
  if (err) {
    char msg[256];
    snprintf(msg, sizeof msg, "sd_notify to %s failed (%s): %s", path, errno_name(err), strerror(err));
    napi_throw_error(env, errno_name(err), msg);
    return NULL;
  }
  napi_get_boolean(env, true, &out);
  return out;
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_property_descriptor methods[] = {
    {"recv", NULL, Queue_recv, NULL, NULL, NULL, napi_default, NULL},
    {"verdict", NULL, Queue_verdict, NULL, NULL, NULL, napi_default, NULL},
    {"onReadable", NULL, Queue_onReadable, NULL, NULL, NULL, napi_default, NULL},
    {"setRoles", NULL, Queue_setRoles, NULL, NULL, NULL, napi_default, NULL},
    {"stats", NULL, Queue_stats, NULL, NULL, NULL, napi_default, NULL},
    {"close", NULL, Queue_close, NULL, NULL, NULL, napi_default, NULL},
    {"testHookFault", NULL, Queue_testHookFault, NULL, NULL, NULL, napi_default, NULL},
    {"fd", NULL, NULL, Queue_fd, NULL, NULL, napi_default, NULL},
  };
  napi_value cls, fn, v;
  napi_define_class(env, "Queue", NAPI_AUTO_LENGTH, Queue_new, NULL, sizeof methods / sizeof methods[0], methods, &cls);
  napi_set_named_property(env, exports, "Queue", cls);
  napi_create_function(env, "explain", NAPI_AUTO_LENGTH, explain_js, NULL, &fn);
  napi_set_named_property(env, exports, "explain", fn);
  napi_create_function(env, "sdNotify", NAPI_AUTO_LENGTH, sd_notify_js, NULL, &fn);
  napi_set_named_property(env, exports, "sdNotify", fn);
  napi_create_uint32(env, ABI_VERSION_KNOWN, &v);
  napi_set_named_property(env, exports, "abiVersion", v);
  return exports;
}
