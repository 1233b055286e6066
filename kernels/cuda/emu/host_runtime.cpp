// The emulated CUDA runtime's host side: device memory as accounted host memory, streams that run
// work at once or record it, and graphs that replay what was recorded. host_runtime.hpp says what
// is emulated and which misuses are refused.
//
// One process-wide device, as the backend uses one; the state is guarded by a mutex only where
// tests could touch it from several threads (allocation); streams belong to the thread that made
// them, as the backend's do.
#include "kernels/cuda/emu/host_runtime.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "lib/core/error.hpp"

namespace sdgen::cuda::emu {

// One recorded operation: what was queued, and the work.
struct GraphNode {
  const char* what;
  std::function<void()> work;
};

struct StreamTag {
  // The graph being captured: null when the stream runs work as it is queued.
  std::unique_ptr<std::vector<GraphNode>> capture;
  bool capture_invalidated = false;
};

}  // namespace sdgen::cuda::emu

struct CUgraph_st {
  std::vector<sdgen::cuda::emu::GraphNode> nodes;
};
struct CUgraphExec_st {
  std::vector<sdgen::cuda::emu::GraphNode> nodes;
};

namespace {

using sdgen::cuda::emu::StreamTag;

// What the graph-reuse tests observe (graph_instantiations, graph_updates).
struct GraphCounts {
  std::size_t instantiations = 0;
  std::size_t updates = 0;
} graph_counts;

constexpr std::size_t kAlignment = 256;
constexpr int kMultiprocessors = 132;

std::size_t parse_capacity() {
  const char* text = std::getenv("SDGEN_EMULATED_GPU_MEMORY");
  constexpr std::size_t kDefault = std::size_t(80) << 30;
  if (text == nullptr || *text == '\0') return kDefault;
  char* end = nullptr;
  const unsigned long long value = std::strtoull(text, &end, 10);
  std::size_t shift = 0;
  if (*end == 'K' || *end == 'k') shift = 10;
  if (*end == 'M' || *end == 'm') shift = 20;
  if (*end == 'G' || *end == 'g') shift = 30;
  if (shift != 0) ++end;
  if (end == text || *end != '\0')
    throw sdgen::UsageError(sdgen::cat("SDGEN_EMULATED_GPU_MEMORY='", text, "' is not a size such as 512M or 8G"));
  return static_cast<std::size_t>(value) << shift;
}

struct DeviceMemory {
  std::mutex mutex;
  std::size_t capacity = parse_capacity();
  std::size_t in_use = 0;
  std::unordered_map<void*, std::size_t> blocks;
};

DeviceMemory& device_memory() {
  static DeviceMemory memory;
  return memory;
}

thread_local cudaError_t last_error = cudaSuccess;

cudaError_t fail(cudaError_t error) {
  last_error = error;
  return error;
}

StreamTag& default_stream() {
  static thread_local StreamTag stream;
  return stream;
}

StreamTag& resolve(cudaStream_t stream) { return stream != nullptr ? *stream : default_stream(); }

// A call CUDA forbids while `stream` captures: the capture is invalidated and the call fails.
cudaError_t refuse_during_capture(StreamTag& s) {
  s.capture_invalidated = true;
  return fail(cudaErrorStreamCaptureUnsupported);
}

// The streams of this thread that are capturing (cudaStreamCaptureModeGlobal: a forbidden call on
// any stream invalidates every capture in progress).
thread_local std::vector<StreamTag*> capturing_streams;

// cudaMalloc and the synchronous copies while any stream captures.
bool refuse_if_any_capture() {
  for (StreamTag* s : capturing_streams) refuse_during_capture(*s);
  return !capturing_streams.empty();
}

bool is_device_pointer(const void* p) {
  DeviceMemory& m = device_memory();
  const std::lock_guard lock(m.mutex);
  const auto* byte = static_cast<const std::byte*>(p);
  for (const auto& [base, bytes] : m.blocks) {
    const auto* b = static_cast<const std::byte*>(base);
    if (byte >= b && byte < b + bytes) return true;
  }
  return false;
}

}  // namespace

namespace sdgen::cuda::emu {

void enqueue(Stream stream, const char* what, std::function<void()> work) {
  StreamTag& s = resolve(stream);
  if (s.capture) {
    if (s.capture_invalidated) throw BackendError(cat(what, " queued on a stream whose capture was invalidated"));
    s.capture->push_back({what, std::move(work)});
    return;
  }
  work();
}

bool capturing(Stream stream) { return resolve(stream).capture != nullptr; }

std::size_t graph_instantiations() { return graph_counts.instantiations; }
std::size_t graph_updates() { return graph_counts.updates; }

std::size_t device_memory_capacity() { return device_memory().capacity; }

std::size_t device_memory_in_use() {
  DeviceMemory& m = device_memory();
  const std::lock_guard lock(m.mutex);
  return m.in_use;
}

}  // namespace sdgen::cuda::emu

cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice); }

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attribute, int device) {
  if (device != 0) return fail(cudaErrorInvalidDevice);
  if (attribute != cudaDevAttrMultiProcessorCount) return fail(cudaErrorInvalidValue);
  *value = kMultiprocessors;
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(std::size_t* free, std::size_t* total) {
  DeviceMemory& m = device_memory();
  const std::lock_guard lock(m.mutex);
  *total = m.capacity;
  *free = m.capacity - m.in_use;
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** p, std::size_t bytes) {
  *p = nullptr;
  if (refuse_if_any_capture()) return cudaErrorStreamCaptureUnsupported;
  DeviceMemory& m = device_memory();
  const std::size_t rounded = (std::max<std::size_t>(bytes, 1) + kAlignment - 1) / kAlignment * kAlignment;
  {
    const std::lock_guard lock(m.mutex);
    if (rounded > m.capacity - m.in_use) return fail(cudaErrorMemoryAllocation);
    m.in_use += rounded;
  }
  void* block = std::aligned_alloc(kAlignment, rounded);
  if (block == nullptr) {
    const std::lock_guard lock(m.mutex);
    m.in_use -= rounded;
    return fail(cudaErrorMemoryAllocation);
  }
  std::memset(block, 0xff, rounded);
  const std::lock_guard lock(m.mutex);
  m.blocks.emplace(block, rounded);
  *p = block;
  return cudaSuccess;
}

cudaError_t cudaFree(void* p) {
  if (p == nullptr) return cudaSuccess;
  DeviceMemory& m = device_memory();
  const std::lock_guard lock(m.mutex);
  const auto it = m.blocks.find(p);
  if (it == m.blocks.end()) return fail(cudaErrorInvalidValue);
  m.in_use -= it->second;
  m.blocks.erase(it);
  std::free(p);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind) {
  if (refuse_if_any_capture()) return cudaErrorStreamCaptureUnsupported;
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind, cudaStream_t stream) {
  StreamTag& s = resolve(stream);
  if (s.capture && !(is_device_pointer(dst) && is_device_pointer(src))) return refuse_during_capture(s);
  sdgen::cuda::emu::enqueue(stream, "cudaMemcpyAsync", [=] { std::memmove(dst, src, bytes); });
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* dst, int value, std::size_t bytes, cudaStream_t stream) {
  sdgen::cuda::emu::enqueue(stream, "cudaMemsetAsync", [=] { std::memset(dst, value, bytes); });
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned) {
  *stream = new StreamTag;
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  std::erase(capturing_streams, stream);
  delete stream;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  StreamTag& s = resolve(stream);
  return s.capture ? refuse_during_capture(s) : cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode) {
  StreamTag& s = resolve(stream);
  if (stream == nullptr) return fail(cudaErrorStreamCaptureUnsupported);  // the legacy stream cannot capture
  if (s.capture) return fail(cudaErrorIllegalState);
  s.capture = std::make_unique<std::vector<sdgen::cuda::emu::GraphNode>>();
  s.capture_invalidated = false;
  capturing_streams.push_back(&s);
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  *graph = nullptr;
  StreamTag& s = resolve(stream);
  if (!s.capture) return fail(cudaErrorIllegalState);
  auto work = std::move(s.capture);
  std::erase(capturing_streams, &s);
  if (std::exchange(s.capture_invalidated, false)) return fail(cudaErrorStreamCaptureInvalidated);
  *graph = new CUgraph_st{std::move(*work)};
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  if (graph == nullptr) return fail(cudaErrorInvalidValue);
  *exec = new CUgraphExec_st{graph->nodes};
  ++graph_counts.instantiations;
  return cudaSuccess;
}

cudaError_t cudaGraphExecUpdate(cudaGraphExec_t exec, cudaGraph_t graph, cudaGraphExecUpdateResultInfo* info) {
  if (exec == nullptr || graph == nullptr) return fail(cudaErrorInvalidValue);
  const bool same_topology =
      std::ranges::equal(exec->nodes, graph->nodes, [](const auto& a, const auto& b) {
        return std::string_view(a.what) == std::string_view(b.what);
      });
  if (info) info->result = same_topology ? 0 : 1;
  if (!same_topology) return fail(cudaErrorGraphExecUpdateFailure);
  exec->nodes = graph->nodes;
  ++graph_counts.updates;
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (exec == nullptr) return fail(cudaErrorInvalidValue);
  for (const auto& node : exec->nodes) sdgen::cuda::emu::enqueue(stream, node.what, node.work);
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}

cudaError_t cudaGetLastError() { return std::exchange(last_error, cudaSuccess); }

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorIllegalState: return "the operation is not permitted in the current state";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorGraphExecUpdateFailure: return "the graph update was not performed (the graphs' nodes differ)";
  }
  return "unknown error";
}
