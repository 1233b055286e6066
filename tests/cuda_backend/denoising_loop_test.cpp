// The CUDA backend's denoising loop (CudaDenoisingLoop in kernels/cuda/cuda_backend.cu) on its own,
// in both builds of this folder's tests (emulated in CI, and on a GPU): what it records and
// replays, and that a replay computes what running every call would.
//
// The "UNet" of these loops is one op, eps = 2 * unet_in (exact in fp16), so every value is known:
// the model input of call k is fp16(latents * input_scale_k) in both guidance halves, guidance then
// leaves it unchanged (c = u), and the step applies call k's coefficients. The reference is the host
// step (apply_step_coefficients, which the step kernel equals bit for bit: tests/cuda_kernels) on
// those values, so latents and timesteps are compared exactly.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "kernels/backend.hpp"
#include "kernels/cuda_backend.hpp"
#include "lib/core/half.hpp"
#if defined(SDGEN_CUDA_EMULATION)
#include "kernels/cuda/emu/host_runtime.hpp"
#endif

using namespace sdgen;

namespace {

constexpr std::int64_t kImages = 2, kElements = kImages * 3 * 5 * 4;  // latents [2, 3, 5, 4]

// Call k: sample = (1 - 0.1 k) sample + 0.05 (k + 1) model_output; timestep 900 - 100 k; the
// input scaled by 1 / (k + 1); guidance 3.
std::vector<StepCoefficients> coefficient_table(int calls) {
  std::vector<StepCoefficients> steps;
  for (int k = 0; k < calls; ++k) {
    StepCoefficients c{};
    c.write_count = 1;
    c.write_targets[0] = StepTerm::Sample;
    c.write_weights[0][static_cast<int>(StepTerm::Sample)] = 1.0 - 0.1 * k;
    c.write_weights[0][static_cast<int>(StepTerm::ModelOutput)] = 0.05 * (k + 1);
    c.reads = (1u << static_cast<int>(StepTerm::Sample)) | (1u << static_cast<int>(StepTerm::ModelOutput));
    c.guidance = StepGuidance::ClassifierFree;
    c.guidance_scale = 3.0f;
    c.timestep = static_cast<float>(900 - 100 * k);
    c.input_scale = 1.0f / static_cast<float>(k + 1);
    steps.push_back(c);
  }
  return steps;
}

std::vector<float> initial_latents() {
  std::vector<float> v(kElements);
  for (std::int64_t i = 0; i < kElements; ++i) v[std::size_t(i)] = std::sin(0.37 * double(i)) * 2.5f;
  return v;
}

// The latents after `calls` calls, on the host.
std::vector<float> reference_latents(const std::vector<StepCoefficients>& steps) {
  std::vector<float> sample = initial_latents(), model_output(2 * kElements);
  for (const StepCoefficients& c : steps) {
    for (std::int64_t i = 0; i < kElements; ++i) {
      const float u = 2.0f * f16_to_f32(f32_to_f16(sample[std::size_t(i)] * c.input_scale));
      model_output[std::size_t(i)] = model_output[std::size_t(kElements + i)] = u;
    }
    apply_step_coefficients(c, {.model_output = model_output.data(), .sample = sample.data(), .elements = kElements});
  }
  return sample;
}

struct LoopTensors {
  Activation latents, unet_in, t, eps;
  explicit LoopTensors(Backend& b)
      : latents(b.allocator(), Shape{kImages, 3, 5, 4}, DType::F32),
        unet_in(b.allocator(), Shape{2 * kImages, 3, 5, 4}, b.activation_dtype()),
        t(b.allocator(), Shape{2 * kImages}, DType::F32),
        eps(b.allocator(), Shape{2 * kImages, 3, 5, 4}, b.activation_dtype()) {}
};

std::vector<float> download(Backend& b, const Tensor& t) {
  std::vector<float> host(static_cast<std::size_t>(t.numel()));
  b.download(t, Tensor::contiguous(host.data(), DType::F32, t.shape));
  return host;
}

}  // namespace

// With graphs (the default) the host enqueues the step twice at most: call 0 eagerly, call 1 into
// the capture; without (CudaGraphs::Off, for finding faults) every call. Either way the latents
// are the host step's, bit for bit.
TEST_CASE("the denoising loop runs call 0, captures call 1, replays the rest, and computes every call",
          "[cuda_backend][loop]") {
  const CudaGraphs graphs = GENERATE(CudaGraphs::Capture, CudaGraphs::Off);
  const auto backend = make_cuda_backend({.graphs = graphs});
  for (const int calls : {1, 2, 7}) {
    INFO(calls << " calls, graphs " << (graphs == CudaGraphs::Capture ? "captured" : "off"));
    const std::vector<StepCoefficients> steps = coefficient_table(calls);
    LoopTensors x(*backend);
    std::vector<float> latents = initial_latents();
    backend->upload(Tensor::contiguous(latents.data(), DType::F32, x.latents.view().shape), x.latents);
    const auto loop = backend->begin_denoising(steps);
    int ran = 0;
    for (int call = 0; call < calls; ++call) {
      CHECK(loop->call() == call);
      loop->run([&] {
        ++ran;
        loop->model_input(x.latents, x.unet_in, x.t);
        backend->add(x.unet_in, nullptr, x.eps, {.alpha = 2.0f, .beta = 0.0f});
        loop->scheduler_step({.model_output = x.eps, .sample = x.latents});
      });
      // The timestep the call used, left in t.
      for (const float t : download(*backend, x.t)) CHECK(t == steps[std::size_t(call)].timestep);
    }
    CHECK(loop->call() == calls);
    CHECK(ran == (graphs == CudaGraphs::Capture ? std::min(calls, 2) : calls));
    const std::vector<float> got = download(*backend, x.latents), want = reference_latents(steps);
    for (std::size_t i = 0; i < got.size(); ++i) {
      INFO("element " << i);
      REQUIRE(got[i] == want[i]);
    }
  }
}

TEST_CASE("a step that synchronizes cannot be captured, and says so", "[cuda_backend][loop]") {
  const auto backend = make_cuda_backend({});
  const std::vector<StepCoefficients> steps = coefficient_table(3);
  LoopTensors x(*backend);
  std::vector<float> latents = initial_latents();
  backend->upload(Tensor::contiguous(latents.data(), DType::F32, x.latents.view().shape), x.latents);
  const auto loop = backend->begin_denoising(steps);
  const auto step = [&] {
    loop->model_input(x.latents, x.unet_in, x.t);
    backend->synchronize();  // what DenoisingLoop::run forbids
    backend->add(x.unet_in, nullptr, x.eps, {.alpha = 2.0f, .beta = 0.0f});
    loop->scheduler_step({.model_output = x.eps, .sample = x.latents});
  };
  loop->run(step);  // call 0 runs as it comes
  CHECK_THROWS_WITH(loop->run(step), Catch::Contains("capturing"));
}

namespace {

// Runs `calls` calls of a loop on x, whose UNet is `extra_adds` + 1 adds (the result is the same
// 2 * unet_in: the extra ones add zero times eps), and returns the latents.
std::vector<float> generate(Backend& backend, LoopTensors& x, const std::vector<StepCoefficients>& steps,
                            int extra_adds = 0) {
  std::vector<float> latents = initial_latents();
  backend.upload(Tensor::contiguous(latents.data(), DType::F32, x.latents.view().shape), x.latents);
  const auto loop = backend.begin_denoising(steps);
  for (std::size_t call = 0; call < steps.size(); ++call)
    loop->run([&] {
      loop->model_input(x.latents, x.unet_in, x.t);
      backend.add(x.unet_in, nullptr, x.eps, {.alpha = 2.0f, .beta = 0.0f});
      for (int k = 0; k < extra_adds; ++k) backend.add(x.eps, &x.eps.view(), x.eps, {.alpha = 1.0f, .beta = 0.0f});
      loop->scheduler_step({.model_output = x.eps, .sample = x.latents});
    });
  return download(backend, x.latents);
}

// How many graphs the emulated runtime has instantiated and updated; on a GPU nothing observes
// this, and the test checks what every generation computes.
struct GraphCounts {
  bool observed = false;
  std::size_t instantiations = 0, updates = 0;
};
GraphCounts graph_counts() {
#if defined(SDGEN_CUDA_EMULATION)
  return {true, cuda::emu::graph_instantiations(), cuda::emu::graph_updates()};
#else
  return {};
#endif
}

}  // namespace

// A generation's captured step goes into the backend's instance of the previous generation's when
// the two graphs have the same nodes (cudaGraphExecUpdate: the same ops on other tensors, with
// other coefficients), so a prompt file instantiates its step once; a step of other nodes is
// instantiated anew. Every generation still computes its own calls on its own tensors, bit for bit.
TEST_CASE("later generations update the step's graph instance and compute their own calls", "[cuda_backend][loop]") {
  const auto backend = make_cuda_backend({});
  LoopTensors first(*backend), second(*backend);  // both alive: the second's tensors are elsewhere
  const GraphCounts before = graph_counts();
  const std::vector<StepCoefficients> four = coefficient_table(4), six = coefficient_table(6);
  CHECK(generate(*backend, first, four) == reference_latents(four));
  CHECK(generate(*backend, second, six) == reference_latents(six));
  CHECK(generate(*backend, first, six, /*extra_adds=*/1) == reference_latents(six));  // other nodes
  CHECK(generate(*backend, second, four, /*extra_adds=*/1) == reference_latents(four));
  const GraphCounts after = graph_counts();
  if (after.observed) {
    CHECK(after.instantiations - before.instantiations == 2);  // the first step, and the one of other nodes
    CHECK(after.updates - before.updates == 2);
  }
}

// Two loops alive at once (the pipeline never does this, a caller may): the instance holds one
// loop's step at a time, and a loop whose step the other replaced captures its own again.
TEST_CASE("two live loops never replay each other's step", "[cuda_backend][loop]") {
  const auto backend = make_cuda_backend({});
  const std::vector<StepCoefficients> steps = coefficient_table(5);
  LoopTensors a(*backend), b(*backend);
  std::vector<float> latents = initial_latents();
  for (LoopTensors* x : {&a, &b})
    backend->upload(Tensor::contiguous(latents.data(), DType::F32, x->latents.view().shape), x->latents);
  const auto loop_a = backend->begin_denoising(steps), loop_b = backend->begin_denoising(steps);
  const auto call = [&](DenoisingLoop& loop, LoopTensors& x) {
    loop.run([&] {
      loop.model_input(x.latents, x.unet_in, x.t);
      backend->add(x.unet_in, nullptr, x.eps, {.alpha = 2.0f, .beta = 0.0f});
      loop.scheduler_step({.model_output = x.eps, .sample = x.latents});
    });
  };
  for (std::size_t k = 0; k < steps.size(); ++k) {  // interleaved: a, b, a, b, ...
    call(*loop_a, a);
    call(*loop_b, b);
  }
  CHECK(download(*backend, a.latents) == reference_latents(steps));
  CHECK(download(*backend, b.latents) == reference_latents(steps));
}
