/*
 * Runs the release core, translated to C by wasm2c (wabt 1.0.32), over a
 * file of batches, and writes what the core answered. test/wasm2c/harness.ts
 * builds it and writes/reads both formats; test/wasm2c.test.ts compares the
 * answers with V8's.
 *
 * Build (test/wasm2c/harness.ts does this, in build/wasm2c/):
 *   wasm2c build/release.wasm -n core -o DIR/core.c
 *   gcc -O2 -w -IDIR -I/usr/src/wasm2c test/wasm2c/driver.c \
 *       /usr/src/wasm2c/wasm-rt-impl.c -lm -o DIR/portcullis-core
 *
 * Usage: portcullis-core [--repeat N] [--table TABLE] [FILE]     (no FILE or "-": stdin)
 *
 * --table TABLE stages and commits the compiled rule table in the file TABLE
 * (host/rules/build.ts) right after init, as Core.loadTable does, so the
 * batches are classified with that table live (exit status 4 if refused).
 *
 * All integers are little-endian. The driver knows no ABI constant: the file
 * header carries the sizes the host expects (host/core/abi.ts), the module's
 * own exports give the region addresses, and every copy is bounds-checked
 * against the module's memory.
 *
 * Vector file (input)
 *   0   char[8] magic "PCVEC001"
 *   8   u32 abi_version     must equal the module's abi_version()
 *   12  u32 batch_count
 *   16  u32 bh_size         batch header bytes (BH_SIZE)
 *   20  u32 config_size     CONFIG_SIZE
 *   24  u32 descs_cap       MAX_BATCH * DESC_SIZE
 *   28  u32 data_cap        DATA_CAP
 *   32  u32 verdict_size    VERDICT_SIZE
 *   36  u32 counters_size   COUNTERS_SIZE
 *   40  u32 pkt_size        PKT_SIZE
 *   44  u32 init_cfg_len    bytes copied to config_ptr() before init (<= config_size)
 *   48  init_cfg_len bytes: CONFIG as init should find it (sizes init lays out)
 *   then batch_count batch records, each:
 *         u32 hdr_len    bytes copied to batch_ptr()    (<= bh_size)
 *         u32 cfg_len    bytes copied to config_ptr()   (<= config_size; 0: config unchanged)
 *         u32 descs_len  bytes copied to descs_ptr()    (<= descs_cap)
 *         u32 data_len   bytes copied to data_ptr()     (<= data_cap)
 *         hdr_len + cfg_len + descs_len + data_len bytes, in that order, unpadded
 *   Nothing is cleared between batches: memory the record does not cover keeps
 *   what earlier batches left there, exactly as in a host that reuses regions.
 *
 * Result (stdout)
 *   0   char[8] magic "PCOUT001"
 *   8   u32 batch_count
 *   12  u32 repeat          classify calls per batch (1 unless --repeat)
 *   16  per batch, after its last classify call:
 *         i32 ret                          classify's return value
 *         u8[bh_size]                      batch header (DONE, STATUS written by the core)
 *         u8[pkt_size]                     PKT scratch (the last decoded packet)
 *         u8[max(ret, 0) * verdict_size]   verdict records
 *   then u8[counters_size]                 the counters region after the last batch
 *
 * --repeat N calls classify N times per batch (the batch is copied in once;
 * while the core keeps no flow state, classify only rewrites DONE/STATUS,
 * PKT, verdicts and counters, so every call sees the same input) and prints
 * one line per batch to stderr:
 *   repeat batch=I count=RET iters=N ns=TOTAL
 * Counters then hold N times each batch's counts.
 *
 * Exit status: 0 ok; 1 usage or I/O error; 2 malformed vector file or a
 * mismatch with the module (ABI version, region outside memory); 3 the module
 * trapped (message on stderr names the trap and the batch); 4 init failed.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wasm-rt-impl.h"

/* The generated module, in this translation unit so gcc can inline exports. */
#include "core.c"

/* The rule-table exports, for --table. Weak, so that the driver still links
 * against a module without them (test/wasm2c.test.ts's trap module): they are
 * then null, and --table is refused. */
u32 Z_coreZ_table_stage_ptr(Z_core_instance_t*) __attribute__((weak));
u32 Z_coreZ_table_stage_cap(Z_core_instance_t*) __attribute__((weak));
u32 Z_coreZ_table_stage(Z_core_instance_t*, u32) __attribute__((weak));
u32 Z_coreZ_table_commit(Z_core_instance_t*, u32) __attribute__((weak));
u32 Z_coreZ_table_fault_at(Z_core_instance_t*) __attribute__((weak));

#define EXIT_USAGE 1
#define EXIT_FORMAT 2
#define EXIT_TRAP 3
#define EXIT_INIT 4

static void die(int code, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("portcullis-core: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(code);
}

static uint32_t rd32(const uint8_t* p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void wr32(uint8_t* p, uint32_t v) {
  p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

static void out(const void* p, size_t n) {
  if (n && fwrite(p, 1, n, stdout) != n) die(EXIT_USAGE, "writing stdout: %s", strerror(errno));
}

static uint8_t* read_all(const char* path, size_t* len) {
  FILE* f = (path == NULL || strcmp(path, "-") == 0) ? stdin : fopen(path, "rb");
  if (!f) die(EXIT_USAGE, "cannot open %s: %s", path, strerror(errno));
  size_t cap = 1 << 20, n = 0;
  uint8_t* buf = malloc(cap);
  if (!buf) die(EXIT_USAGE, "out of memory");
  for (;;) {
    if (n == cap) {
      cap *= 2;
      buf = realloc(buf, cap);
      if (!buf) die(EXIT_USAGE, "out of memory");
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0) break;
  }
  if (ferror(f)) die(EXIT_USAGE, "reading %s: %s", path ? path : "stdin", strerror(errno));
  if (f != stdin) fclose(f);
  *len = n;
  return buf;
}

/* Sequential reader over the vector file; any overrun is a format error. */
typedef struct { const uint8_t* p; size_t left; } cursor_t;

static const uint8_t* take(cursor_t* c, size_t n, const char* what, uint32_t batch) {
  if (n > c->left) {
    if (batch == UINT32_MAX) die(EXIT_FORMAT, "vector file ends inside %s", what);
    die(EXIT_FORMAT, "vector file ends inside %s of batch %" PRIu32, what, batch);
  }
  const uint8_t* p = c->p;
  c->p += n;
  c->left -= n;
  return p;
}

/* [ptr, ptr + len) must lie inside the module's memory. */
static uint8_t* region(wasm_rt_memory_t* mem, uint32_t ptr, uint64_t len, const char* what) {
  if ((uint64_t)ptr + len > mem->size)
    die(EXIT_FORMAT, "%s [%" PRIu32 ", +%" PRIu64 ") lies outside memory (%" PRIu32 " bytes)", what, ptr, len, mem->size);
  return mem->data + ptr;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Kept outside main's frame: they must survive a longjmp from a trap. */
static Z_core_instance_t g_core;
static volatile uint32_t g_batch;
static const char* volatile g_stage = "instantiate";

int main(int argc, char** argv) {
  const char* path = NULL;
  const char* table_path = NULL;
  uint32_t repeat = 1;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) {
      char* end;
      unsigned long v = strtoul(argv[++i], &end, 10);
      if (*end || v == 0 || v > 0xffffffffUL) die(EXIT_USAGE, "--repeat needs a count from 1 to 2^32-1");
      repeat = (uint32_t)v;
    } else if (strcmp(argv[i], "--table") == 0 && i + 1 < argc) {
      table_path = argv[++i];
    } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
      die(EXIT_USAGE, "usage: %s [--repeat N] [--table TABLE] [FILE|-]", argv[0]);
    } else if (path == NULL) {
      path = argv[i];
    } else {
      die(EXIT_USAGE, "one vector file only");
    }
  }

  size_t file_len;
  uint8_t* file = read_all(path, &file_len);
  cursor_t c = { file, file_len };
  const uint8_t* h = take(&c, 48, "the file header", UINT32_MAX);
  if (memcmp(h, "PCVEC001", 8) != 0) die(EXIT_FORMAT, "not a vector file (magic)");
  const uint32_t abi_version = rd32(h + 8), batch_count = rd32(h + 12);
  const uint32_t bh_size = rd32(h + 16), config_size = rd32(h + 20), descs_cap = rd32(h + 24);
  const uint32_t data_cap = rd32(h + 28), verdict_size = rd32(h + 32), counters_size = rd32(h + 36);
  const uint32_t pkt_size = rd32(h + 40), init_cfg_len = rd32(h + 44);
  if (init_cfg_len > config_size) die(EXIT_FORMAT, "init config is larger than CONFIG");
  const uint8_t* init_cfg = take(&c, init_cfg_len, "the init config", UINT32_MAX);

  static uint8_t outbuf[1 << 20];
  setvbuf(stdout, (char*)outbuf, _IOFBF, sizeof outbuf);

  wasm_rt_init();
  Z_core_init_module();

  wasm_rt_trap_t trap = wasm_rt_impl_try();
  if (trap != WASM_RT_TRAP_NONE) {
    fflush(stdout);
    die(EXIT_TRAP, "trap in %s (batch %" PRIu32 "): %s", (const char*)g_stage, (uint32_t)g_batch,
        wasm_rt_strerror(trap));
  }
  Z_core_instantiate(&g_core);
  wasm_rt_memory_t* mem = Z_coreZ_memory(&g_core);

  g_stage = "abi_version";
  if (Z_coreZ_abi_version(&g_core) != abi_version)
    die(EXIT_FORMAT, "module ABI version %" PRIu32 ", vector file %" PRIu32, Z_coreZ_abi_version(&g_core), abi_version);
  g_stage = "init";
  memcpy(region(mem, Z_coreZ_config_ptr(&g_core), config_size, "config"), init_cfg, init_cfg_len);
  uint32_t err = Z_coreZ_init(&g_core);
  if (err != 0) die(EXIT_INIT, "init failed with code %" PRIu32, err);
  if (table_path != NULL) {
    g_stage = "table";
    if (!Z_coreZ_table_stage_ptr || !Z_coreZ_table_stage_cap || !Z_coreZ_table_stage || !Z_coreZ_table_commit || !Z_coreZ_table_fault_at)
      die(EXIT_USAGE, "--table: the module exports no rule-table staging");
    size_t table_len;
    uint8_t* table = read_all(table_path, &table_len);
    const uint32_t cap = Z_coreZ_table_stage_cap(&g_core);
    if (table_len > cap) die(EXIT_INIT, "table of %zu bytes exceeds the %" PRIu32 "-byte slot", table_len, cap);
    memcpy(region(mem, Z_coreZ_table_stage_ptr(&g_core), table_len, "table slot"), table, table_len);
    const int32_t ticket = (int32_t)Z_coreZ_table_stage(&g_core, (uint32_t)table_len);
    if (ticket < 0) die(EXIT_INIT, "table refused: table error %" PRId32 " at byte %" PRIu32, -ticket, Z_coreZ_table_fault_at(&g_core));
    const int32_t committed = (int32_t)Z_coreZ_table_commit(&g_core, (uint32_t)ticket);
    if (committed < 0) die(EXIT_INIT, "table commit refused: table error %" PRId32, -committed);
    free(table);
  }

  uint8_t* const batch = region(mem, Z_coreZ_batch_ptr(&g_core), bh_size, "batch header");
  uint8_t* const config = region(mem, Z_coreZ_config_ptr(&g_core), config_size, "config");
  uint8_t* const descs = region(mem, Z_coreZ_descs_ptr(&g_core), descs_cap, "descriptors");
  uint8_t* const data = region(mem, Z_coreZ_data_ptr(&g_core), data_cap, "data");
  uint8_t* const pkt = region(mem, Z_coreZ_pkt_ptr(&g_core), pkt_size, "pkt");
  uint8_t* const counters = region(mem, Z_coreZ_counters_ptr(&g_core), counters_size, "counters");
  const uint32_t verdicts_ptr = Z_coreZ_verdicts_ptr(&g_core);

  uint8_t head[16];
  memcpy(head, "PCOUT001", 8);
  wr32(head + 8, batch_count);
  wr32(head + 12, repeat);
  out(head, 16);

  g_stage = "classify";
  for (uint32_t b = 0; b < batch_count; b++) {
    g_batch = b;
    const uint8_t* lens = take(&c, 16, "the record lengths", b);
    const uint32_t hdr_len = rd32(lens), cfg_len = rd32(lens + 4);
    const uint32_t descs_len = rd32(lens + 8), data_len = rd32(lens + 12);
    if (hdr_len > bh_size || cfg_len > config_size || descs_len > descs_cap || data_len > data_cap)
      die(EXIT_FORMAT, "batch %" PRIu32 ": a section is larger than its region", b);
    memcpy(batch, take(&c, hdr_len, "the batch header", b), hdr_len);
    memcpy(config, take(&c, cfg_len, "the config", b), cfg_len);
    memcpy(descs, take(&c, descs_len, "the descriptors", b), descs_len);
    memcpy(data, take(&c, data_len, "the packet data", b), data_len);

    int32_t ret = 0;
    if (repeat == 1) {
      ret = (int32_t)Z_coreZ_classify(&g_core);
    } else {
      const uint64_t t0 = now_ns();
      for (uint32_t r = 0; r < repeat; r++) ret = (int32_t)Z_coreZ_classify(&g_core);
      const uint64_t t1 = now_ns();
      fprintf(stderr, "repeat batch=%" PRIu32 " count=%" PRId32 " iters=%" PRIu32 " ns=%" PRIu64 "\n",
              b, ret, repeat, t1 - t0);
    }

    uint8_t r4[4];
    wr32(r4, (uint32_t)ret);
    out(r4, 4);
    out(batch, bh_size);
    out(pkt, pkt_size);
    if (ret > 0) out(region(mem, verdicts_ptr, (uint64_t)(uint32_t)ret * verdict_size, "verdicts"),
                     (size_t)ret * verdict_size);
  }
  if (c.left != 0) die(EXIT_FORMAT, "%zu bytes after the last batch", c.left);
  out(counters, counters_size);
  if (fflush(stdout) != 0) die(EXIT_USAGE, "writing stdout: %s", strerror(errno));

  Z_core_free(&g_core);
  wasm_rt_free();
  free(file);
  return 0;
}
