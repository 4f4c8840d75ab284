// The wasmtime engine addon: the release core compiled by Cranelift and run
// in this process beside V8, with the same face a WebAssembly.Instance gives
// host/core (host/native/wasmtime.ts wraps it):
//
//   compile(bytes)      -> module   Cranelift, once per module; refuses a
//                                    module that imports anything
//   instantiate(module) -> { memory: ArrayBuffer, exports: { name: fn } }
//                                    a store of its own; refuses a memory that
//                                    is not fixed-size (initial == maximum),
//                                    64-bit or shared
//
// The memory is an external ArrayBuffer over wasmtime_memory_data(): the
// engine is configured with memory_may_move = false, and a fixed-size memory
// never grows, so the address stays valid for the instance's life and the
// host's typed-array views (Core.u8, Core.view) read and write it in place.
// Each export call goes through wasmtime_func_call_unchecked with numbers
// (i32 as a JS number, i64 as a BigInt): the arguments are converted by the
// kinds read from the function's own type at instantiation, which is what
// the unchecked call requires (the checked wasmtime_func_call re-checks the
// types on every call: about 1.5 us against 0.2 us here, measured); a trap throws an Error whose `code` is
// "ERR_WASM_TRAP" and `trap` the trap's name (memory_out_of_bounds,
// unreachable_code_reached, ...). The store lives until the buffer and every
// export function are collected.
//
// Linked against the wasmtime C API library (_libwasmtime.so from the pip
// wheel wasmtime==49.0.0; host/setup/ensure.sh installs it into .wasmtime/),
// with the declarations of host/native/wasmtime-api.h.

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <node_api.h>

#include "wasmtime-api.h"

#define MAX_ARGS 8

static wasm_engine_t *engine;

typedef struct instance {
  wasmtime_store_t *store;
  wasmtime_context_t *ctx;
  wasmtime_instance_t inst;
  size_t refs; // the buffer and every function
} instance_t;

typedef struct func {
  instance_t *owner;
  wasmtime_func_t fn;
  size_t nparams, nresults;
  wasm_valkind_t params[MAX_ARGS];
  wasm_valkind_t result;
  char name[64];
} func_t;

static const char *TRAP_NAMES[] = {
  "stack_overflow", "memory_out_of_bounds", "heap_misaligned", "table_out_of_bounds",
  "indirect_call_to_null", "bad_signature", "integer_overflow", "integer_division_by_zero",
  "bad_conversion_to_integer", "unreachable_code_reached", "interrupt", "out_of_fuel",
  "atomic_wait_non_shared_memory", "null_reference", "array_out_of_bounds",
  "allocation_too_large", "cast_failure",
};

static void throw_error(napi_env env, const char *code, const char *fmt, const char *a, const char *b) {
  char msg[1024];
  snprintf(msg, sizeof msg, fmt, a, b);
  napi_throw_error(env, code, msg);
}

// Throws the message of a wasmtime error (and deletes it).
static void throw_wasmtime(napi_env env, const char *what, wasmtime_error_t *err) {
  wasm_name_t m = {0, NULL};
  wasmtime_error_message(err, &m);
  // On one line: "failed to parse ...\n\nCaused by:\n    unknown ..." -> "failed to parse ... Caused by: unknown ...".
  char text[768];
  size_t o = 0;
  for (size_t i = 0; m.data && i < m.size && m.data[i] && o < sizeof text - 1; i++) {
    char c = m.data[i];
    if (c == '\n' || c == '\r' || c == ' ' || c == '\t') {
      if (o > 0 && text[o - 1] != ' ') text[o++] = ' ';
    } else {
      text[o++] = c;
    }
  }
  while (o > 0 && text[o - 1] == ' ') o--;
  text[o] = 0;
  wasm_byte_vec_delete(&m);
  wasmtime_error_delete(err);
  throw_error(env, "ERR_WASMTIME", "%s: %s", what, text);
}

// Throws an Error for a trap (and deletes it): code ERR_WASM_TRAP, trap NAME.
static void throw_trap(napi_env env, const char *where, wasm_trap_t *trap) {
  wasmtime_trap_code_t code = 0;
  const char *name = "unknown";
  if (wasmtime_trap_code(trap, &code)) {
    name = code < sizeof TRAP_NAMES / sizeof *TRAP_NAMES ? TRAP_NAMES[code] : "unknown";
  } else {
    name = "host";
  }
  wasm_message_t m = {0, NULL};
  wasm_trap_message(trap, &m);
  char text[1024];
  // The message is NUL-terminated (wasm.h: wasm_message_t); its first line is enough.
  size_t len = m.size && m.data && m.data[m.size - 1] == 0 ? m.size - 1 : m.size;
  const char *nl = m.data ? memchr(m.data, '\n', len) : NULL;
  if (nl) len = (size_t)(nl - m.data);
  snprintf(text, sizeof text, "wasm trap in %s (%s): %.*s", where, name, (int)len, m.data ? m.data : "");
  wasm_byte_vec_delete(&m);
  wasm_trap_delete(trap);
  napi_value msg, err, codev, trapv;
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
  napi_create_string_utf8(env, "ERR_WASM_TRAP", NAPI_AUTO_LENGTH, &codev);
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &trapv);
  napi_create_error(env, codev, msg, &err);
  napi_set_named_property(env, err, "trap", trapv);
  napi_throw(env, err);
}

static bool ensure_engine(napi_env env) {
  if (engine) return true;
  wasm_config_t *cfg = wasm_config_new();
  if (!cfg) { napi_throw_error(env, "ERR_WASMTIME", "wasmtime: cannot create a config"); return false; }
  wasmtime_config_strategy_set(cfg, PCW_STRATEGY_CRANELIFT);
  // The host keeps views over the memory: it must never move.
  wasmtime_config_memory_may_move_set(cfg, false);
  engine = wasm_engine_new_with_config(cfg); // takes the config
  if (!engine) { napi_throw_error(env, "ERR_WASMTIME", "wasmtime: cannot create an engine"); return false; }
  return true;
}

// ── modules ────────────────────────────────────────────────────────────────

static void module_finalize(napi_env env, void *data, void *hint) {
  wasmtime_module_delete((wasmtime_module_t *)data);
}

static napi_value js_compile(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  bool is_ta = false;
  if (argc < 1 || napi_is_typedarray(env, argv[0], &is_ta) != napi_ok || !is_ta) {
    napi_throw_type_error(env, "EINVAL", "compile(bytes): bytes must be a Uint8Array");
    return NULL;
  }
  napi_typedarray_type type;
  size_t len;
  void *data;
  napi_get_typedarray_info(env, argv[0], &type, &len, &data, NULL, NULL);
  if (type != napi_uint8_array) {
    napi_throw_type_error(env, "EINVAL", "compile(bytes): bytes must be a Uint8Array");
    return NULL;
  }
  if (!ensure_engine(env)) return NULL;
  wasmtime_module_t *mod = NULL;
  wasmtime_error_t *err = wasmtime_module_new(engine, (const uint8_t *)data, len, &mod);
  if (err) { throw_wasmtime(env, "wasmtime cannot compile the module", err); return NULL; }

  wasm_importtype_vec_t imports = {0, NULL};
  wasmtime_module_imports(mod, &imports);
  if (imports.size != 0) {
    // "module.name, ..." as host/core/load.ts names them for V8.
    char names[512] = "";
    size_t at = 0;
    for (size_t i = 0; i < imports.size && at < sizeof names - 1; i++) {
      const wasm_name_t *m = wasm_importtype_module(imports.data[i]), *n = wasm_importtype_name(imports.data[i]);
      int w = snprintf(names + at, sizeof names - at, "%s%.*s.%.*s", i ? ", " : "", (int)m->size, m->data, (int)n->size, n->data);
      if (w < 0) break;
      at += (size_t)w;
    }
    wasm_importtype_vec_delete(&imports);
    wasmtime_module_delete(mod);
    throw_error(env, "EIMPORTS", "the module must import nothing (the wasmtime engine supplies no imports), it imports %s%s", names, "");
    return NULL;
  }
  wasm_importtype_vec_delete(&imports);
  napi_value ext;
  if (napi_create_external(env, mod, module_finalize, NULL, &ext) != napi_ok) {
    wasmtime_module_delete(mod);
    return NULL;
  }
  return ext;
}

// ── instances ──────────────────────────────────────────────────────────────

static void instance_unref(instance_t *in) {
  if (--in->refs == 0) {
    wasmtime_store_delete(in->store);
    free(in);
  }
}

static void buffer_finalize(napi_env env, void *data, void *hint) {
  instance_unref((instance_t *)hint);
}

static void func_finalize(napi_env env, void *data, void *hint) {
  func_t *f = (func_t *)data;
  instance_unref(f->owner);
  free(f);
}

static napi_value js_call(napi_env env, napi_callback_info info) {
  size_t argc = MAX_ARGS;
  napi_value argv[MAX_ARGS];
  func_t *f;
  napi_get_cb_info(env, info, &argc, argv, NULL, (void **)&f);
  wasmtime_val_raw_t args[MAX_ARGS]; // the results come back in args[0]
  memset(args, 0, sizeof args);
  for (size_t i = 0; i < f->nparams; i++) {
    napi_value v = i < argc ? argv[i] : NULL;
    if (!v) napi_get_undefined(env, &v);
    switch (f->params[i]) {
      case PCW_WASM_I32: {
        napi_value num;
        if (napi_coerce_to_number(env, v, &num) != napi_ok) return NULL;
        napi_get_value_int32(env, num, &args[i].i32);
        break;
      }
      case PCW_WASM_I64: {
        bool lossless;
        if (napi_get_value_bigint_int64(env, v, &args[i].i64, &lossless) != napi_ok) {
          throw_error(env, "EINVAL", "%s: argument %s must be a BigInt (i64)", f->name, i == 0 ? "1" : i == 1 ? "2" : "n");
          return NULL;
        }
        break;
      }
      case PCW_WASM_F32: {
        napi_value num;
        double d;
        if (napi_coerce_to_number(env, v, &num) != napi_ok) return NULL;
        napi_get_value_double(env, num, &d);
        args[i].f32 = (float)d;
        break;
      }
      default: {
        napi_value num;
        if (napi_coerce_to_number(env, v, &num) != napi_ok) return NULL;
        napi_get_value_double(env, num, &args[i].f64);
        break;
      }
    }
  }
  wasm_trap_t *trap = NULL;
  size_t len = f->nparams > f->nresults ? f->nparams : f->nresults;
  wasmtime_error_t *err = wasmtime_func_call_unchecked(f->owner->ctx, &f->fn, args, len, &trap);
  if (err) { throw_wasmtime(env, f->name, err); return NULL; }
  if (trap) { throw_trap(env, f->name, trap); return NULL; }
  napi_value out;
  if (f->nresults == 0) { napi_get_undefined(env, &out); return out; }
  switch (f->result) {
    case PCW_WASM_I32: napi_create_int32(env, args[0].i32, &out); break;
    case PCW_WASM_I64: napi_create_bigint_int64(env, args[0].i64, &out); break;
    case PCW_WASM_F32: napi_create_double(env, args[0].f32, &out); break;
    default: napi_create_double(env, args[0].f64, &out); break;
  }
  return out;
}

// Reads an export function's type; false (with a JS error) when it has
// more than MAX_ARGS parameters, more than one result or a non-number type.
static bool read_signature(napi_env env, func_t *f) {
  wasm_functype_t *ty = wasmtime_func_type(f->owner->ctx, &f->fn);
  const wasm_valtype_vec_t *ps = wasm_functype_params(ty), *rs = wasm_functype_results(ty);
  bool ok = ps->size <= MAX_ARGS && rs->size <= 1;
  f->nparams = ps->size;
  f->nresults = rs->size;
  for (size_t i = 0; ok && i < ps->size; i++) {
    f->params[i] = wasm_valtype_kind(ps->data[i]);
    ok = f->params[i] <= PCW_WASM_F64;
  }
  if (ok && rs->size == 1) {
    f->result = wasm_valtype_kind(rs->data[0]);
    ok = f->result <= PCW_WASM_F64;
  }
  wasm_functype_delete(ty);
  if (!ok) throw_error(env, "ESIGNATURE", "export %s: only numbers in and at most one number out (up to 8 parameters)%s", f->name, "");
  return ok;
}

// Checks the memory is fixed-size, 32-bit and not shared; sets *data, *size.
static bool check_memory(napi_env env, instance_t *in, const wasmtime_memory_t *m, const char *name, uint8_t **data, size_t *size) {
  wasm_memorytype_t *ty = wasmtime_memory_type(in->ctx, m);
  uint64_t min = wasmtime_memorytype_minimum(ty), max = 0;
  bool has_max = wasmtime_memorytype_maximum(ty, &max);
  bool is64 = wasmtime_memorytype_is64(ty), shared = wasmtime_memorytype_isshared(ty);
  wasm_memorytype_delete(ty);
  if (is64 || shared) {
    throw_error(env, "EMEMORY", "the memory \"%s\" is %s: the wasmtime engine takes a 32-bit unshared memory", name, is64 ? "64-bit" : "shared");
    return false;
  }
  if (!has_max || max != min) {
    char why[96];
    if (has_max) snprintf(why, sizeof why, "%llu pages initially, %llu at most", (unsigned long long)min, (unsigned long long)max);
    else snprintf(why, sizeof why, "%llu pages initially and no maximum", (unsigned long long)min);
    throw_error(env, "EMEMORY", "the memory \"%s\" is not fixed-size (%s): the host's views need initial == maximum", name, why);
    return false;
  }
  *data = wasmtime_memory_data(in->ctx, m);
  *size = wasmtime_memory_data_size(in->ctx, m);
  return true;
}

static napi_value js_instantiate(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  wasmtime_module_t *mod = NULL;
  napi_valuetype t = napi_undefined;
  if (argc >= 1) napi_typeof(env, argv[0], &t);
  if (t != napi_external || napi_get_value_external(env, argv[0], (void **)&mod) != napi_ok || !mod) {
    napi_throw_type_error(env, "EINVAL", "instantiate(module): module must come from compile()");
    return NULL;
  }
  instance_t *in = calloc(1, sizeof *in);
  if (!in) { napi_throw_error(env, "ENOMEM", "out of memory"); return NULL; }
  in->store = wasmtime_store_new(engine, NULL, NULL);
  in->ctx = wasmtime_store_context(in->store);
  in->refs = 1; // held by this function until the end
  wasm_trap_t *trap = NULL;
  wasmtime_error_t *err = wasmtime_instance_new(in->ctx, mod, NULL, 0, &in->inst, &trap);
  if (err) { throw_wasmtime(env, "wasmtime cannot instantiate the module", err); instance_unref(in); return NULL; }
  if (trap) { throw_trap(env, "the start function", trap); instance_unref(in); return NULL; }

  napi_value result, exports, buffer = NULL;
  napi_create_object(env, &result);
  napi_create_object(env, &exports);
  bool ok = true;
  for (size_t i = 0; ok; i++) {
    char *name = NULL;
    size_t name_len = 0;
    wasmtime_extern_t item;
    if (!wasmtime_instance_export_nth(in->ctx, &in->inst, i, &name, &name_len, &item)) break;
    char cname[64];
    snprintf(cname, sizeof cname, "%.*s", (int)name_len, name);
    if (item.kind == PCW_EXTERN_FUNC) {
      func_t *f = calloc(1, sizeof *f);
      if (!f) { napi_throw_error(env, "ENOMEM", "out of memory"); ok = false; break; }
      f->owner = in;
      f->fn = item.of.func;
      memcpy(f->name, cname, sizeof f->name);
      if (!read_signature(env, f)) { free(f); ok = false; break; }
      napi_value fn;
      if (napi_create_function(env, cname, NAPI_AUTO_LENGTH, js_call, f, &fn) != napi_ok) { free(f); ok = false; break; }
      in->refs++;
      napi_add_finalizer(env, fn, f, func_finalize, NULL, NULL);
      napi_set_named_property(env, exports, cname, fn);
    } else if (item.kind == PCW_EXTERN_MEMORY) {
      if (buffer) {
        throw_error(env, "EMEMORY", "the module exports a second memory (%s): the host takes one%s", cname, "");
        ok = false;
        break;
      }
      uint8_t *data;
      size_t size;
      if (!check_memory(env, in, &item.of.memory, cname, &data, &size)) { ok = false; break; }
      if (napi_create_external_arraybuffer(env, data, size, buffer_finalize, in, &buffer) != napi_ok) { ok = false; break; }
      in->refs++;
      napi_value nm;
      napi_create_string_utf8(env, cname, NAPI_AUTO_LENGTH, &nm);
      napi_set_named_property(env, result, "memoryName", nm);
    }
    // Globals, tables and tags are not used by the host: left out.
  }
  instance_unref(in); // the functions and the buffer hold it from here
  if (!ok) return NULL;
  if (!buffer) napi_get_null(env, &buffer);
  napi_set_named_property(env, result, "memory", buffer);
  napi_set_named_property(env, result, "exports", exports);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"compile", NULL, js_compile, NULL, NULL, NULL, napi_default, NULL},
    {"instantiate", NULL, js_instantiate, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof *props, props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
