// cuBLASLt's part of a GEMM, as the emulation build computes it: one GemmCall (gemm_plan.hpp) as a
// plain host loop. With it, LtGemm's interface (gemm.hpp) has an emulated implementation
// (emulated_gemm.cpp), and the GEMM tests run the plans' own kernels around it.
#pragma once

#include "kernels/cuda/gemm_plan.hpp"
#include "lib/core/dtype.hpp"

namespace sdgen::cuda::emu {

// out[i, j] = epilogue(alpha * sum_k a[i, k] w[j, k] + beta * c[i, j] + bias[j]) accumulated in fp32
// and rounded once to `storage` (F16 or BF16, the format of every operand), as cuBLASLt computes it
// (its GELU is the tanh form). The pointers are the emulated device's, which are host memory.
// Throws BackendError when the call breaks its key's contract (a C or bias present that the key
// does not name, or missing).
void host_gemm(const GemmCall& call, DType storage);

}  // namespace sdgen::cuda::emu
