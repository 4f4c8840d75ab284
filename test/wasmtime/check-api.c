// Compiled by test/wasmtime-api.test.ts against the reference wasmtime C API
// headers (../shared/wasmtime-c-api/include): host/native/wasmtime-api.h
// must declare exactly what they declare.
//
// 1. Layout: the header's types, included under other names (pcw_ref_...),
//    have the reference types' sizes, alignments and field offsets.
// 2. Prototypes: the header's functions, declared again over the reference
//    types; a prototype that differs is a "conflicting types" error.
// 3. Constants: the header's PCW_* values equal the reference's enums.
#include <stddef.h>
#include <wasmtime.h>

#define PCW_TYPES_ONLY
#define wasm_byte_vec_t pcw_ref_wasm_byte_vec_t
#define wasm_valtype_vec_t pcw_ref_wasm_valtype_vec_t
#define wasm_importtype_vec_t pcw_ref_wasm_importtype_vec_t
#define wasm_name_t pcw_ref_wasm_name_t
#define wasm_message_t pcw_ref_wasm_message_t
#define wasmtime_instance pcw_ref_wasmtime_instance
#define wasmtime_instance_t pcw_ref_wasmtime_instance_t
#define wasmtime_func pcw_ref_wasmtime_func
#define wasmtime_func_t pcw_ref_wasmtime_func_t
#define wasmtime_memory pcw_ref_wasmtime_memory
#define wasmtime_memory_t pcw_ref_wasmtime_memory_t
#define wasmtime_extern_union pcw_ref_wasmtime_extern_union
#define wasmtime_extern_union_t pcw_ref_wasmtime_extern_union_t
#define wasmtime_extern pcw_ref_wasmtime_extern
#define wasmtime_extern_t pcw_ref_wasmtime_extern_t
#define wasmtime_val_raw pcw_ref_wasmtime_val_raw
#define wasmtime_val_raw_t pcw_ref_wasmtime_val_raw_t
#include "../../host/native/wasmtime-api.h"
#undef PCW_TYPES_ONLY
#undef wasm_byte_vec_t
#undef wasm_valtype_vec_t
#undef wasm_importtype_vec_t
#undef wasm_name_t
#undef wasm_message_t
#undef wasmtime_instance
#undef wasmtime_instance_t
#undef wasmtime_func
#undef wasmtime_func_t
#undef wasmtime_memory
#undef wasmtime_memory_t
#undef wasmtime_extern_union
#undef wasmtime_extern_union_t
#undef wasmtime_extern
#undef wasmtime_extern_t
#undef wasmtime_val_raw
#undef wasmtime_val_raw_t

#define SAME_TYPE(t) \
  _Static_assert(sizeof(pcw_ref_##t) == sizeof(t), #t ": size differs"); \
  _Static_assert(_Alignof(pcw_ref_##t) == _Alignof(t), #t ": alignment differs")
#define SAME_FIELD(t, f) \
  _Static_assert(offsetof(pcw_ref_##t, f) == offsetof(t, f), #t "." #f ": offset differs"); \
  _Static_assert(sizeof(((pcw_ref_##t *)0)->f) == sizeof(((t *)0)->f), #t "." #f ": size differs")

SAME_TYPE(wasm_byte_vec_t); SAME_FIELD(wasm_byte_vec_t, size); SAME_FIELD(wasm_byte_vec_t, data);
SAME_TYPE(wasm_valtype_vec_t); SAME_FIELD(wasm_valtype_vec_t, size); SAME_FIELD(wasm_valtype_vec_t, data);
SAME_TYPE(wasm_importtype_vec_t); SAME_FIELD(wasm_importtype_vec_t, size); SAME_FIELD(wasm_importtype_vec_t, data);
SAME_TYPE(wasmtime_instance_t); SAME_FIELD(wasmtime_instance_t, store_id); SAME_FIELD(wasmtime_instance_t, __private);
SAME_TYPE(wasmtime_func_t); SAME_FIELD(wasmtime_func_t, store_id); SAME_FIELD(wasmtime_func_t, __private);
SAME_TYPE(wasmtime_memory_t); SAME_FIELD(wasmtime_memory_t, store_id); SAME_FIELD(wasmtime_memory_t, __private1);
SAME_FIELD(wasmtime_memory_t, __private2);
SAME_TYPE(wasmtime_extern_union_t); SAME_FIELD(wasmtime_extern_union_t, func); SAME_FIELD(wasmtime_extern_union_t, memory);
SAME_TYPE(wasmtime_extern_t); SAME_FIELD(wasmtime_extern_t, kind); SAME_FIELD(wasmtime_extern_t, of);
SAME_TYPE(wasmtime_val_raw_t); SAME_FIELD(wasmtime_val_raw_t, i32); SAME_FIELD(wasmtime_val_raw_t, i64);
SAME_FIELD(wasmtime_val_raw_t, f32); SAME_FIELD(wasmtime_val_raw_t, f64); SAME_FIELD(wasmtime_val_raw_t, v128);
SAME_FIELD(wasmtime_val_raw_t, anyref); SAME_FIELD(wasmtime_val_raw_t, externref); SAME_FIELD(wasmtime_val_raw_t, exnref);
SAME_FIELD(wasmtime_val_raw_t, funcref);

// The header's typedefs of scalars and handles (byte_t, wasm_engine_t,
// wasmtime_module_t, ...) were included above unrenamed: C11 accepts a
// typedef again only when it names the same type.

// The constants.
_Static_assert(PCW_WASM_I32 == WASM_I32 && PCW_WASM_I64 == WASM_I64 && PCW_WASM_F32 == WASM_F32 && PCW_WASM_F64 == WASM_F64, "wasm_valkind");
_Static_assert(PCW_STRATEGY_CRANELIFT == WASMTIME_STRATEGY_CRANELIFT, "strategy");
_Static_assert(PCW_EXTERN_FUNC == WASMTIME_EXTERN_FUNC && PCW_EXTERN_MEMORY == WASMTIME_EXTERN_MEMORY, "extern kinds");
_Static_assert(WASMTIME_TRAP_CODE_MEMORY_OUT_OF_BOUNDS == 1 && WASMTIME_TRAP_CODE_UNREACHABLE_CODE_REACHED == 9 &&
  WASMTIME_TRAP_CODE_CAST_FAILURE == 16, "trap codes: host/native/wasmtime.c names them by number");

// The prototypes, over the reference's types.
#define PCW_REFERENCE_TYPES
#include "../../host/native/wasmtime-api.h"

int main(void) { return 0; }
