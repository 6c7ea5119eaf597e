// Small fixed-size 3-vector / 3x3-matrix helpers shared by CPU and CUDA code.
// Matrices are row-major: m[3 * row + col].
#pragma once

#include "hostdevice.h"

namespace pgnface {

// y = m x
template <typename T>
PGN_HD void mat3_mul_vec(const T* m, const T* x, T* y) {
  y[0] = m[0] * x[0] + m[1] * x[1] + m[2] * x[2];
  y[1] = m[3] * x[0] + m[4] * x[1] + m[5] * x[2];
  y[2] = m[6] * x[0] + m[7] * x[1] + m[8] * x[2];
}

// y = m^T x
template <typename T>
PGN_HD void mat3_tmul_vec(const T* m, const T* x, T* y) {
  y[0] = m[0] * x[0] + m[3] * x[1] + m[6] * x[2];
  y[1] = m[1] * x[0] + m[4] * x[1] + m[7] * x[2];
  y[2] = m[2] * x[0] + m[5] * x[1] + m[8] * x[2];
}

}  // namespace pgnface
