// The CUDA backend's one source, kernels/cuda/cuda_backend.cu, compiled by the host compiler for
// the emulator (the target sdgen_cuda_backend_emulated defines SDGEN_CUDA_EMULATION). Including the
// .cu here, rather than building a copy, is the point: what CI runs is the backend nvcc builds,
// line for line, down to the order of its launches and the memory it asks for; only what lies below
// it differs (the emulated runtime, and a host loop in cuBLASLt's place: emulated_gemm.cpp).
#include "kernels/cuda/cuda_backend.cu"
