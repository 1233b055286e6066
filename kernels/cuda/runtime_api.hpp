// The CUDA runtime's host API for the CUDA backend's host code (streams, memory, graphs), from
// whichever build this is: nvcc's <cuda_runtime_api.h>, or the emulated runtime
// (kernels/cuda/emu/host_runtime.hpp) in the emulation build, where the same backend source runs on
// the CPU. As device_api.cuh does for kernels, this header is where the choice is made, so that no
// other file needs to know.
#pragma once

#if defined(SDGEN_CUDA_EMULATION)
#include "kernels/cuda/emu/host_runtime.hpp"
#else
#include <cuda_runtime_api.h>
#endif
