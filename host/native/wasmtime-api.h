// The few declarations of the wasmtime C API (v49) that host/native/wasmtime.c
// uses, so the addon builds without wasmtime's headers (they are not in the
// pip wheel that carries the library). Transcribed from upstream's
// crates/c-api/include (wasm.h, wasmtime/*.h); test/wasmtime-api.test.ts
// compiles test/wasmtime/check-api.c, which includes this file beside the
// reference headers (../shared/wasmtime-c-api, where present) and checks
// that every prototype here is the reference's and that every struct has
// the reference's size, alignment and field offsets.
//
// Two sections with their own guards: the types (PCW_RENAME_TYPES lets the
// check include them under other names) and the functions (with
// PCW_REFERENCE_TYPES the check declares them over the reference's types).

#ifndef PCW_TYPES_DONE
#define PCW_TYPES_DONE
#ifndef PCW_REFERENCE_TYPES

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// wasm.h: opaque handles (WASM_DECLARE_OWN) and vectors (WASM_DECLARE_VEC).
typedef struct wasm_config_t wasm_config_t;
typedef struct wasm_engine_t wasm_engine_t;
typedef struct wasm_trap_t wasm_trap_t;
typedef struct wasm_valtype_t wasm_valtype_t;
typedef struct wasm_functype_t wasm_functype_t;
typedef struct wasm_memorytype_t wasm_memorytype_t;
typedef struct wasm_importtype_t wasm_importtype_t;
typedef char byte_t;
typedef uint8_t wasm_valkind_t;

typedef struct wasm_byte_vec_t {
  size_t size;
  byte_t *data;
} wasm_byte_vec_t;
typedef wasm_byte_vec_t wasm_name_t;
typedef wasm_name_t wasm_message_t;

typedef struct wasm_valtype_vec_t {
  size_t size;
  wasm_valtype_t **data;
} wasm_valtype_vec_t;

typedef struct wasm_importtype_vec_t {
  size_t size;
  wasm_importtype_t **data;
} wasm_importtype_vec_t;

// enum wasm_valkind_enum
#define PCW_WASM_I32 0
#define PCW_WASM_I64 1
#define PCW_WASM_F32 2
#define PCW_WASM_F64 3

// wasmtime/*.h
typedef struct wasmtime_error wasmtime_error_t;
typedef struct wasmtime_store wasmtime_store_t;
typedef struct wasmtime_context wasmtime_context_t;
typedef struct wasmtime_module wasmtime_module_t;
typedef uint8_t wasmtime_strategy_t;
typedef uint8_t wasmtime_trap_code_t;
typedef uint8_t wasmtime_extern_kind_t;

// enum wasmtime_strategy_enum
#define PCW_STRATEGY_CRANELIFT 1
// WASMTIME_EXTERN_*
#define PCW_EXTERN_FUNC 0
#define PCW_EXTERN_MEMORY 3

typedef struct wasmtime_instance {
  uint64_t store_id;
  size_t __private;
} wasmtime_instance_t;

typedef struct wasmtime_func {
  uint64_t store_id;
  void *__private;
} wasmtime_func_t;

typedef struct wasmtime_memory {
  struct {
    uint64_t store_id;
    uint32_t __private1;
  };
  uint32_t __private2;
} wasmtime_memory_t;

// The union's other members (global, table, sharedmemory, tag) are not used
// here; `__other` gives the union the size and alignment of the largest
// (wasmtime_global_t: u64 + 3 x u32).
typedef union wasmtime_extern_union {
  wasmtime_func_t func;
  wasmtime_memory_t memory;
  struct { uint64_t store_id; uint32_t __private[3]; } __other;
} wasmtime_extern_union_t;

typedef struct wasmtime_extern {
  wasmtime_extern_kind_t kind;
  wasmtime_extern_union_t of;
} wasmtime_extern_t;

// wasmtime/val.h: the untyped value of wasmtime_func_call_unchecked (the
// GC members are u32 indices, funcref a pointer; the v128 makes it 16 bytes).
typedef union wasmtime_val_raw {
  int32_t i32;
  int64_t i64;
  float f32;
  double f64;
  uint8_t v128[16];
  uint32_t anyref;
  uint32_t externref;
  uint32_t exnref;
  void *funcref;
} wasmtime_val_raw_t;

#endif // PCW_REFERENCE_TYPES
#endif // PCW_TYPES_DONE

#ifndef PCW_TYPES_ONLY
#ifndef PCW_FUNCTIONS_DONE
#define PCW_FUNCTIONS_DONE

#ifdef __cplusplus
extern "C" {
#endif

// wasm.h
wasm_config_t *wasm_config_new(void);
wasm_engine_t *wasm_engine_new_with_config(wasm_config_t *);
void wasm_byte_vec_delete(wasm_byte_vec_t *);
void wasm_importtype_vec_delete(wasm_importtype_vec_t *);
const wasm_name_t *wasm_importtype_module(const wasm_importtype_t *);
const wasm_name_t *wasm_importtype_name(const wasm_importtype_t *);
void wasm_trap_delete(wasm_trap_t *);
void wasm_trap_message(const wasm_trap_t *, wasm_message_t *out);
wasm_valkind_t wasm_valtype_kind(const wasm_valtype_t *);
const wasm_valtype_vec_t *wasm_functype_params(const wasm_functype_t *);
const wasm_valtype_vec_t *wasm_functype_results(const wasm_functype_t *);
void wasm_functype_delete(wasm_functype_t *);
void wasm_memorytype_delete(wasm_memorytype_t *);

// wasmtime/config.h
void wasmtime_config_strategy_set(wasm_config_t *, wasmtime_strategy_t);
void wasmtime_config_memory_may_move_set(wasm_config_t *, bool);

// wasmtime/error.h, wasmtime/trap.h
void wasmtime_error_delete(wasmtime_error_t *error);
void wasmtime_error_message(const wasmtime_error_t *error, wasm_name_t *message);
bool wasmtime_trap_code(const wasm_trap_t *, wasmtime_trap_code_t *code);

// wasmtime/store.h
wasmtime_store_t *wasmtime_store_new(wasm_engine_t *engine, void *data, void (*finalizer)(void *));
wasmtime_context_t *wasmtime_store_context(wasmtime_store_t *store);
void wasmtime_store_delete(wasmtime_store_t *store);

// wasmtime/module.h
wasmtime_error_t *wasmtime_module_new(wasm_engine_t *engine, const uint8_t *wasm, size_t wasm_len, wasmtime_module_t **ret);
void wasmtime_module_delete(wasmtime_module_t *m);
void wasmtime_module_imports(const wasmtime_module_t *module, wasm_importtype_vec_t *out);

// wasmtime/instance.h
wasmtime_error_t *wasmtime_instance_new(wasmtime_context_t *store, const wasmtime_module_t *module,
                                        const wasmtime_extern_t *imports, size_t nimports,
                                        wasmtime_instance_t *instance, wasm_trap_t **trap);
bool wasmtime_instance_export_nth(wasmtime_context_t *store, const wasmtime_instance_t *instance,
                                  size_t index, char **name, size_t *name_len, wasmtime_extern_t *item);

// wasmtime/memory.h
uint64_t wasmtime_memorytype_minimum(const wasm_memorytype_t *ty);
bool wasmtime_memorytype_maximum(const wasm_memorytype_t *ty, uint64_t *max);
bool wasmtime_memorytype_is64(const wasm_memorytype_t *ty);
bool wasmtime_memorytype_isshared(const wasm_memorytype_t *ty);
wasm_memorytype_t *wasmtime_memory_type(const wasmtime_context_t *store, const wasmtime_memory_t *memory);
uint8_t *wasmtime_memory_data(wasmtime_context_t *store, const wasmtime_memory_t *memory);
size_t wasmtime_memory_data_size(const wasmtime_context_t *store, const wasmtime_memory_t *memory);

// wasmtime/func.h
wasm_functype_t *wasmtime_func_type(const wasmtime_context_t *store, const wasmtime_func_t *func);
wasmtime_error_t *wasmtime_func_call_unchecked(wasmtime_context_t *store, const wasmtime_func_t *func,
                                               wasmtime_val_raw_t *args_and_results, size_t args_and_results_len,
                                               wasm_trap_t **trap);

#ifdef __cplusplus
}
#endif

#endif // PCW_FUNCTIONS_DONE
#endif // PCW_TYPES_ONLY
