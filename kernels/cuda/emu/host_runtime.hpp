// The CUDA runtime's host API, as much of it as the CUDA backend calls, for the emulation build.
//
// With these, kernels/cuda/cuda_backend.cu compiles with the host compiler and the whole backend
// (its memory accounting, its arenas, the order of its launches, its graph capture) runs in CI on
// the CPU, its kernels on the emulator. The emulated device is an sm_80-class GPU of 132
// multiprocessors whose "device memory" is host memory:
//   - cudaMalloc returns 256-byte aligned blocks filled with 0xff bytes (NaN as fp16 and fp32), so a
//     kernel that reads memory nothing wrote produces NaN instead of passing by luck. The device's
//     capacity is SDGEN_EMULATED_GPU_MEMORY bytes (suffix K, M or G; default 80G): past it cudaMalloc
//     fails with cudaErrorMemoryAllocation, as on a full GPU, which is how the tests drive the
//     backend's out-of-memory path without one.
//   - Work is queued on a stream in order and runs at once, on the calling thread, unless the stream
//     is capturing: then it is recorded into the graph being captured, and runs each time the graph
//     is launched. The calls CUDA forbids during a capture (synchronizing the capturing stream,
//     cudaMalloc, a synchronous cudaMemcpy, a copy from or to host memory, which would read the
//     host buffer at replay time) fail with cudaErrorStreamCaptureUnsupported and invalidate the
//     capture, as on the GPU (there only in cudaStreamCaptureModeGlobal, the mode the backend uses).
//   - A graph's nodes are the recorded work in order, each named by what was queued (a kernel's
//     name, "cudaMemcpyAsync", ...). cudaGraphExecUpdate takes a new graph into an instantiated
//     one when their nodes match one for one, as CUDA requires of a topology, else fails with
//     cudaErrorGraphExecUpdateFailure and leaves the instance as it was.
//   - Errors are sticky until cudaGetLastError reads them, as CUDA's non-fatal errors are.
// Only included by the emulation build, through kernels/cuda/runtime_api.hpp.
#pragma once

#include <cstddef>
#include <functional>

#include "kernels/cuda/emu/cuda_types.hpp"
#include "kernels/cuda/emu/runtime.hpp"

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorIllegalState = 401,
  cudaErrorLaunchFailure = 719,
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
  cudaErrorGraphExecUpdateFailure = 910,
};

enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};

enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16 };

enum cudaStreamCaptureMode {
  cudaStreamCaptureModeGlobal = 0,
  cudaStreamCaptureModeThreadLocal = 1,
  cudaStreamCaptureModeRelaxed = 2,
};

inline constexpr unsigned cudaStreamNonBlocking = 1;

using cudaStream_t = sdgen::cuda::emu::Stream;
struct CUgraph_st;
struct CUgraphExec_st;
using cudaGraph_t = CUgraph_st*;
using cudaGraphExec_t = CUgraphExec_st*;

// What cudaGraphExecUpdate reports (CUDA's has the failing nodes too; nothing here reads them).
struct cudaGraphExecUpdateResultInfo {
  int result = 0;  // 0: updated
};

cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attribute, int device);
cudaError_t cudaMemGetInfo(std::size_t* free, std::size_t* total);

cudaError_t cudaMalloc(void** p, std::size_t bytes);
cudaError_t cudaFree(void* p);
cudaError_t cudaMemcpy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind, cudaStream_t stream);
cudaError_t cudaMemsetAsync(void* dst, int value, std::size_t bytes, cudaStream_t stream);

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long flags);
cudaError_t cudaGraphExecUpdate(cudaGraphExec_t exec, cudaGraph_t graph, cudaGraphExecUpdateResultInfo* info);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);

cudaError_t cudaGetLastError();
const char* cudaGetErrorString(cudaError_t error);

namespace sdgen::cuda::emu {

// Queues `work` on `stream` (null: the default stream): runs it now, or records it when the stream
// is capturing. Every asynchronous operation of the emulated runtime comes through here: kernel
// launches (wrappers.hpp) and the host GEMM that stands in for cuBLASLt. `what` names the work in
// messages.
void enqueue(Stream stream, const char* what, std::function<void()> work);

// Whether `stream` is capturing a graph now.
bool capturing(Stream stream);

// How many times cudaGraphInstantiate has made an instance in this process, and how many times
// cudaGraphExecUpdate has updated one: what the tests of graph reuse observe.
std::size_t graph_instantiations();
std::size_t graph_updates();

// The emulated device's capacity and what is allocated on it, in bytes.
std::size_t device_memory_capacity();
std::size_t device_memory_in_use();

}  // namespace sdgen::cuda::emu
