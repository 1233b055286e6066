// The emulated CUDA runtime's host side (kernels/cuda/emu/host_runtime.hpp): what the emulated
// CUDA backend relies on to behave as on a GPU. Device memory is accounted and poisoned, work on a
// capturing stream is recorded and replayed by the graph, and the calls CUDA forbids during a
// capture fail it, so that the backend's capture (CudaDenoisingLoop) is checked in CI the way a GPU
// would check it.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>

#include "kernels/cuda/emu/host_runtime.hpp"

namespace emu = sdgen::cuda::emu;

namespace {

struct Stream {
  cudaStream_t s = nullptr;
  Stream() { REQUIRE(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess); }
  ~Stream() { cudaStreamDestroy(s); }
};

struct DeviceInts {
  int* p = nullptr;
  explicit DeviceInts(std::size_t n) { REQUIRE(cudaMalloc(reinterpret_cast<void**>(&p), n * sizeof(int)) == cudaSuccess); }
  ~DeviceInts() { cudaFree(p); }
};

}  // namespace

TEST_CASE("emulated device memory: 256-byte aligned, filled with 0xff, counted, refused past the capacity",
          "[emu][runtime]") {
  const std::size_t before = emu::device_memory_in_use();
  void* p = nullptr;
  REQUIRE(cudaMalloc(&p, 100) == cudaSuccess);
  CHECK(reinterpret_cast<std::uintptr_t>(p) % 256 == 0);
  CHECK(emu::device_memory_in_use() == before + 256);
  for (int i = 0; i < 100; ++i) CHECK(static_cast<unsigned char*>(p)[i] == 0xff);
  std::size_t free = 0, total = 0;
  REQUIRE(cudaMemGetInfo(&free, &total) == cudaSuccess);
  CHECK(total == emu::device_memory_capacity());
  CHECK(free == total - emu::device_memory_in_use());
  void* too_big = nullptr;
  CHECK(cudaMalloc(&too_big, free + 1) == cudaErrorMemoryAllocation);
  CHECK(too_big == nullptr);
  CHECK(cudaGetLastError() == cudaErrorMemoryAllocation);
  CHECK(cudaGetLastError() == cudaSuccess);  // read once, then cleared
  CHECK(cudaFree(p) == cudaSuccess);
  CHECK(emu::device_memory_in_use() == before);
  CHECK(cudaFree(p) == cudaErrorInvalidValue);  // not a live allocation any more
  cudaGetLastError();
}

TEST_CASE("a captured stream records its work, and the graph replays it at every launch", "[emu][runtime]") {
  Stream stream;
  DeviceInts a(4), b(4);
  const int init[4] = {1, 2, 3, 4};
  REQUIRE(cudaMemcpy(a.p, init, sizeof(init), cudaMemcpyHostToDevice) == cudaSuccess);
  int counter = 0;
  REQUIRE(cudaStreamBeginCapture(stream.s, cudaStreamCaptureModeGlobal) == cudaSuccess);
  CHECK(emu::capturing(stream.s));
  emu::enqueue(stream.s, "count", [&] { ++counter; });
  REQUIRE(cudaMemcpyAsync(b.p, a.p, sizeof(init), cudaMemcpyDeviceToDevice, stream.s) == cudaSuccess);
  REQUIRE(cudaMemsetAsync(a.p, 0, sizeof(int), stream.s) == cudaSuccess);
  CHECK(counter == 0);   // recorded, not run
  CHECK(b.p[0] != 1);    // still the 0xff fill
  cudaGraph_t graph = nullptr;
  REQUIRE(cudaStreamEndCapture(stream.s, &graph) == cudaSuccess);
  CHECK(!emu::capturing(stream.s));
  cudaGraphExec_t exec = nullptr;
  REQUIRE(cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess);
  REQUIRE(cudaGraphDestroy(graph) == cudaSuccess);  // the instance keeps its own copy
  REQUIRE(cudaGraphLaunch(exec, stream.s) == cudaSuccess);
  CHECK(counter == 1);
  CHECK((b.p[0] == 1 && b.p[3] == 4 && a.p[0] == 0));
  REQUIRE(cudaGraphLaunch(exec, stream.s) == cudaSuccess);
  CHECK(counter == 2);
  CHECK(b.p[0] == 0);  // the copy ran again, after the memset of the first launch
  REQUIRE(cudaGraphExecDestroy(exec) == cudaSuccess);
}

TEST_CASE("what CUDA forbids during a capture fails it", "[emu][runtime]") {
  Stream stream;
  DeviceInts device(4);
  int host[4] = {};
  const auto capture_fails_after = [&](const char* what, auto&& forbidden) {
    INFO(what);
    REQUIRE(cudaStreamBeginCapture(stream.s, cudaStreamCaptureModeGlobal) == cudaSuccess);
    CHECK(forbidden() == cudaErrorStreamCaptureUnsupported);
    cudaGraph_t graph = nullptr;
    CHECK(cudaStreamEndCapture(stream.s, &graph) == cudaErrorStreamCaptureInvalidated);
    CHECK(graph == nullptr);
    cudaGetLastError();
  };
  capture_fails_after("synchronizing the capturing stream", [&] { return cudaStreamSynchronize(stream.s); });
  capture_fails_after("cudaMalloc", [&] {
    void* p = nullptr;
    return cudaMalloc(&p, 16);
  });
  capture_fails_after("a synchronous copy", [&] { return cudaMemcpy(host, device.p, 16, cudaMemcpyDeviceToHost); });
  capture_fails_after("an asynchronous copy from host memory",
                      [&] { return cudaMemcpyAsync(device.p, host, 16, cudaMemcpyHostToDevice, stream.s); });
  capture_fails_after("an asynchronous copy to host memory",
                      [&] { return cudaMemcpyAsync(host, device.p, 16, cudaMemcpyDeviceToHost, stream.s); });
  // The legacy default stream cannot capture at all; a stream cannot capture twice.
  CHECK(cudaStreamBeginCapture(nullptr, cudaStreamCaptureModeGlobal) == cudaErrorStreamCaptureUnsupported);
  REQUIRE(cudaStreamBeginCapture(stream.s, cudaStreamCaptureModeGlobal) == cudaSuccess);
  CHECK(cudaStreamBeginCapture(stream.s, cudaStreamCaptureModeGlobal) == cudaErrorIllegalState);
  cudaGraph_t graph = nullptr;
  REQUIRE(cudaStreamEndCapture(stream.s, &graph) == cudaSuccess);
  REQUIRE(cudaGraphDestroy(graph) == cudaSuccess);
  cudaGetLastError();
}
