// Registers the CUDA implementations of the emulated sources as the CPU
// implementations of the namespace pgnface_emu, whose ops have the same
// schemas as pgnface's (defined from Python, tests/cuda_emu/extension.py), so
// emulated and real ops are callable side by side. CPU registrations (a .cu
// file has none today) are dropped: the real library has them.
#pragma once

#include <torch/library.h>

#undef TORCH_LIBRARY_IMPL
#define TORCH_LIBRARY_IMPL(ns, k, m) PGN_EMU_LIBRARY_IMPL_##k(m)
#define PGN_EMU_LIBRARY_IMPL_CUDA(m) _TORCH_LIBRARY_IMPL(pgnface_emu, CPU, m, C10_UID)
#define PGN_EMU_LIBRARY_IMPL_CPU(m) \
  [[maybe_unused]] static void C10_CONCATENATE(pgn_emu_dropped_cpu_impl_, C10_UID)(torch::Library & m)
