// The callbacks that g++ -fsanitize=thread inserts into the emulated kernels'
// translation units, implemented by the emulator instead of libtsan: every
// plain load and store of kernel code is checked by cuda_emu::on_access; the
// atomics (reached only by host code, e.g. reference counts in torch headers)
// are performed as real atomics.
#include <cstdint>

#include "state.h"

using cuda_emu::Access;

#define PGN_EMU_PC __builtin_return_address(0)

extern "C" {

void __tsan_init() {}
void __tsan_func_entry(void*) {}
void __tsan_func_exit() {}
void __tsan_vptr_update(void**, void*) {}
void __tsan_vptr_read(void**) {}
void __tsan_ignore_thread_begin() {}
void __tsan_ignore_thread_end() {}

#define PGN_EMU_ACCESS(n)                                                                         \
  void __tsan_read##n(void* p) { cuda_emu::on_access(p, n, Access::kRead, PGN_EMU_PC); }          \
  void __tsan_write##n(void* p) { cuda_emu::on_access(p, n, Access::kWrite, PGN_EMU_PC); }        \
  void __tsan_unaligned_read##n(void* p) { cuda_emu::on_access(p, n, Access::kRead, PGN_EMU_PC); } \
  void __tsan_unaligned_write##n(void* p) { cuda_emu::on_access(p, n, Access::kWrite, PGN_EMU_PC); } \
  void __tsan_volatile_read##n(void* p) { cuda_emu::on_access(p, n, Access::kRead, PGN_EMU_PC); }  \
  void __tsan_volatile_write##n(void* p) { cuda_emu::on_access(p, n, Access::kWrite, PGN_EMU_PC); } \
  void __tsan_read##n##_pc(void* p, void* pc) { cuda_emu::on_access(p, n, Access::kRead, pc); }   \
  void __tsan_write##n##_pc(void* p, void* pc) { cuda_emu::on_access(p, n, Access::kWrite, pc); }
PGN_EMU_ACCESS(1)
PGN_EMU_ACCESS(2)
PGN_EMU_ACCESS(4)
PGN_EMU_ACCESS(8)
PGN_EMU_ACCESS(16)
#undef PGN_EMU_ACCESS

void __tsan_read_range(void* p, unsigned long n) {
  if (n) cuda_emu::on_access(p, n, Access::kRead, PGN_EMU_PC);
}
void __tsan_write_range(void* p, unsigned long n) {
  if (n) cuda_emu::on_access(p, n, Access::kWrite, PGN_EMU_PC);
}

void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
void __tsan_atomic_signal_fence(int) { __atomic_signal_fence(__ATOMIC_SEQ_CST); }

#define PGN_EMU_RMW(n, T, name, builtin) \
  T __tsan_atomic##n##_##name(volatile T* a, T v, int) { return builtin(a, v, __ATOMIC_SEQ_CST); }
#define PGN_EMU_ATOMICS(n, T)                                                                      \
  T __tsan_atomic##n##_load(const volatile T* a, int) { return __atomic_load_n(a, __ATOMIC_SEQ_CST); } \
  void __tsan_atomic##n##_store(volatile T* a, T v, int) { __atomic_store_n(a, v, __ATOMIC_SEQ_CST); } \
  PGN_EMU_RMW(n, T, exchange, __atomic_exchange_n)                                                 \
  PGN_EMU_RMW(n, T, fetch_add, __atomic_fetch_add)                                                 \
  PGN_EMU_RMW(n, T, fetch_sub, __atomic_fetch_sub)                                                 \
  PGN_EMU_RMW(n, T, fetch_and, __atomic_fetch_and)                                                 \
  PGN_EMU_RMW(n, T, fetch_or, __atomic_fetch_or)                                                   \
  PGN_EMU_RMW(n, T, fetch_xor, __atomic_fetch_xor)                                                 \
  PGN_EMU_RMW(n, T, fetch_nand, __atomic_fetch_nand)                                               \
  int __tsan_atomic##n##_compare_exchange_strong(volatile T* a, T* c, T v, int, int) {             \
    return __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);        \
  }                                                                                                \
  int __tsan_atomic##n##_compare_exchange_weak(volatile T* a, T* c, T v, int, int) {               \
    return __atomic_compare_exchange_n(a, c, v, true, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);         \
  }                                                                                                \
  T __tsan_atomic##n##_compare_exchange_val(volatile T* a, T c, T v, int, int) {                   \
    __atomic_compare_exchange_n(a, &c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);              \
    return c;                                                                                      \
  }
PGN_EMU_ATOMICS(8, uint8_t)
PGN_EMU_ATOMICS(16, uint16_t)
PGN_EMU_ATOMICS(32, uint32_t)
PGN_EMU_ATOMICS(64, uint64_t)
#undef PGN_EMU_ATOMICS
#undef PGN_EMU_RMW

}  // extern "C"
