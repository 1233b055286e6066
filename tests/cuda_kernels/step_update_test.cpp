// The fused guidance + scheduler step (kernels/cuda/step_update.cuh) against the CPU path it
// replaces: the fp32 guidance loop of lib/pipeline/txt2img.cpp followed by
// schedulers::apply_step_plan, on the same UNet outputs, noise and state, in both storage formats
// T of the UNet output (fp16 and bf16); and the UNet-input kernel of the same file (model_input:
// the latents times the call's input scale, rounded to T, once per guidance half, and the call's
// timestep) against the host loop's product rounded by lib/core/half.hpp (f32_to_f16 or
// f32_to_bf16, round to nearest even).
//
// Each of the six schedulers is built as the pipeline builds it (Scheduler from a model's
// scheduler_config.json and the user's options) and run for a whole generation,
// guided and unguided, with the GPU state and the CPU state each evolving on its own. Before every
// call the UNet input made from the device's latents must equal the host's bit for bit; after it,
// the sample and every history slot written so far must equal the CPU's BIT FOR BIT: the bound is
// 0 ulps, in either format (the UNet output enters both paths as the same values of T, which
// convert to fp32 exactly; the format changes the inputs, not the arithmetic). The brief allowed
// a few ulps, but the kernel is built to perform the host's operations in the host's order with
// one rounding each (see the top of step_update.cuh), so any difference at all is a defect, e.g.
// an FMA contraction, a term summed out of order, or guidance computed in another precision, and
// a 1-ulp tolerance would let those pass. History slots the
// schedule has not written yet start as 0xff bytes on the device (what uninitialised arena memory
// may hold; a NaN) and zeros on the host, and must stay untouched: the kernel may not read or
// write them.
//
// Sizes: a 2x3x5x4 latent (120 elements: one partial block) covers the coefficient paths for
// every scheduler cheaply, in both formats; the 1x64x64x4 latent of a 512x512 image (64 full
// blocks) is run for a guided DPM-Solver++ and Euler ancestral generation in fp16 (the kernel has
// one path: its index arithmetic does not depend on T).
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "kernels/cuda/step_update.cuh"
#include "lib/core/rng.hpp"
#include "lib/schedulers/scheduler.hpp"
#include "tests/cuda_kernels/storage_rule.hpp"
#include "tests/emu/device_buffer.hpp"
#include "weights/scheduler_config.hpp"

namespace sdgen::test::step_test {

using schedulers::Combination;
using schedulers::Scheduler;
using schedulers::SchedulerOptions;
using schedulers::StepPlan;
using schedulers::Term;

// The scheduler_config.json of the SD 1.x models on the hub (and of tests/data/models/tiny), and
// of SD 2 (v-prediction; tests/data/models/tiny-sd2). Written out rather than read from
// tests/data because this file also runs on GPU hosts, whose test binary has no data directory.
constexpr const char* kSd1Config = R"({"_class_name": "PNDMScheduler", "beta_end": 0.012,
  "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000,
  "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1, "clip_sample": false})";
constexpr const char* kSd2Config = R"({"_class_name": "DDIMScheduler", "beta_end": 0.012,
  "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": false,
  "num_train_timesteps": 1000, "prediction_type": "v_prediction", "set_alpha_to_one": false,
  "skip_prk_steps": true, "steps_offset": 1})";

struct LatentShape {
  std::int64_t n, h, w, c;
  std::size_t elements() const { return std::size_t(n * h * w * c); }
};

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof(float)) == 0; }

// How many elements of `got` differ from `expected` in any bit, and the largest difference in
// units of fp32's spacing at the expected value (for the report).
struct Comparison {
  std::size_t differing = 0;
  double max_ulps = 0.0;
};
Comparison compare(const std::vector<float>& got, const std::vector<float>& expected) {
  Comparison r;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (same_bits(got[i], expected[i])) continue;
    ++r.differing;
    const double ulp = std::ldexp(1.0, std::ilogb(std::fabs(expected[i]) + 1e-38f) - 23);
    r.max_ulps = std::max(r.max_ulps, std::fabs(double(got[i]) - double(expected[i])) / ulp);
  }
  return r;
}

std::size_t untouched_poison(const std::vector<float>& got) {
  std::size_t n = 0;
  for (float v : got) n += std::bit_cast<std::uint32_t>(v) == 0xffffffffu;
  return n;
}

template <class T, class H>
void upload(const DeviceBuffer<T>& buffer, const std::vector<H>& host) {
  device_memory::upload(buffer.view("upload").raw(), host.data(), host.size() * sizeof(H));
}

// The UNet input model_input wrote (unet_in: `copies` copies of the latents, in T's bits; t: one
// timestep per UNet batch row) against the host's: latents * input_scale in fp32, rounded to T.
template <class T>
void check_model_input(const std::vector<std::uint16_t>& unet_in, const std::vector<float>& t,
                       const std::vector<float>& latents, const StepCoefficients& c) {
  const std::size_t elements = latents.size(), copies = unet_in.size() / elements;
  std::size_t wrong = 0;
  for (std::size_t copy = 0; copy < copies; ++copy)
    for (std::size_t i = 0; i < elements; ++i)
      wrong += unet_in[copy * elements + i] != Format<T>::bits(latents[i] * c.input_scale);
  INFO("model_input: " << wrong << " of " << copies * elements << " UNet input elements differ from the host's ("
                       << Format<T>::kName << ", input scale " << c.input_scale << ")");
  CHECK(wrong == 0);
  std::size_t wrong_t = 0;
  for (float v : t) wrong_t += !same_bits(v, c.timestep);
  INFO("model_input: " << wrong_t << " of " << t.size() << " timesteps differ from " << c.timestep);
  CHECK(wrong_t == 0);
}

// Runs every call of `scheduler` on the device and on the host from the same random start and
// UNet outputs (in T), comparing the UNet input before each call and the state after it. Returns
// the number of elements DDIM's clip clamped (0 for plans without clip), so a clip test can show
// that clamping happened.
template <class T>
std::size_t run_generation(const Scheduler& scheduler, std::optional<double> guidance, const LatentShape& shape,
                           std::uint64_t seed) {
  const std::size_t elements = shape.elements();
  const std::size_t rows = guidance ? 2 : 1;
  const int slots = scheduler.history_slots();
  TorchCpuGenerator generator(seed);

  std::vector<float> sample(elements);
  generator.randn(sample);
  for (float& v : sample) v *= float(scheduler.init_noise_sigma());
  std::vector<std::vector<float>> history(std::size_t(slots), std::vector<float>(elements, 0.0f));

  bool any_noise = false;
  std::vector<StepCoefficients> table;
  for (int call = 0; call < scheduler.num_calls(); ++call) {
    table.push_back(schedulers::to_step_coefficients(scheduler.plan(call), guidance));
    any_noise = any_noise || scheduler.needs_noise(call);
  }
  DeviceBuffer<StepCoefficients> d_steps(table);
  DeviceBuffer<int> d_index(std::vector<int>{0});
  DeviceBuffer<float> d_sample(sample);
  DeviceBuffer<T> d_model_output(rows * elements);
  DeviceBuffer<T> d_unet_in(rows * elements);  // the UNet batch: one copy of the latents per row
  DeviceBuffer<float> d_t(rows * std::size_t(shape.n));
  DeviceBuffer<float> d_noise(elements);
  std::vector<DeviceBuffer<float>> d_history;
  for (int s = 0; s < slots; ++s) d_history.emplace_back(elements);  // 0xff bytes: never written yet

  // The same pointers for every call, as in a captured graph.
  cuda::StepUpdateLaunch<T> launch{.steps = d_steps.view("steps"),
                                   .step_count = scheduler.num_calls(),
                                   .step_index = d_index.view("step_index"),
                                   .model_output = d_model_output.view("model_output"),
                                   .sample = d_sample.view("sample"),
                                   .noise = any_noise ? d_noise.view("noise") : cuda::GlobalPtr<float>(),
                                   .elements = std::int64_t(elements)};
  for (int s = 0; s < slots; ++s) launch.history[s] = d_history[std::size_t(s)].view("history");
  const cuda::ModelInputLaunch<T> input_launch{.steps = d_steps.view("steps"),
                                               .step_count = scheduler.num_calls(),
                                               .step_index = d_index.view("step_index"),
                                               .latents = d_sample.view("latents"),
                                               .unet_in = d_unet_in.view("unet_in"),
                                               .t = d_t.view("t"),
                                               .elements = std::int64_t(elements),
                                               .copies = std::int64_t(rows),
                                               .rows = std::int64_t(rows) * shape.n};

  std::array<bool, schedulers::kHistorySlots> written{};
  std::vector<float> guided(elements), noise;
  std::size_t clamped = 0;
  const auto g = static_cast<float>(guidance.value_or(1.0));
  for (int call = 0; call < scheduler.num_calls(); ++call) {
    CAPTURE(call);
    const StepPlan& plan = scheduler.plan(call);
    cuda::model_input(input_launch);
    check_model_input<T>(d_unet_in.template to_host<std::uint16_t>(), d_t.to_host(), sample,
                         table[std::size_t(call)]);

    const std::vector<float> unet_out = randn<T>(rows * elements, seed * 1000 + std::uint64_t(call));
    upload(d_model_output, to_bits<T>(unet_out));
    if (scheduler.needs_noise(call)) {
      noise.assign(elements, 0.0f);
      generator.randn(noise);
      upload(d_noise, noise);
    }

    // The host path, as lib/pipeline/txt2img.cpp runs it.
    for (std::size_t i = 0; i < elements; ++i) {
      if (guidance) {
        const float u = unet_out[i], c = unet_out[elements + i];
        guided[i] = u + g * (c - u);
      } else {
        guided[i] = unet_out[i];
      }
      if (plan.clip) {
        const double x0 = plan.clip->x0[Term::Sample] * sample[i] + plan.clip->x0[Term::ModelOutput] * guided[i];
        clamped += std::fabs(x0) > plan.clip->range;
      }
    }
    schedulers::StepBuffers buffers{.sample = sample, .model_output = guided, .noise = noise};
    for (int s = 0; s < slots; ++s) buffers.history[std::size_t(s)] = history[std::size_t(s)];
    schedulers::apply_step_plan(plan, buffers);
    for (const schedulers::Write& w : plan.active_writes())
      if (w.target != Term::Sample) written[std::size_t(int(w.target) - int(Term::History0))] = true;

    cuda::step_update(launch);
    cuda::advance_step(d_index.view("step_index"));

    CHECK(d_index.to_host()[0] == call + 1);
    const Comparison s = compare(d_sample.to_host(), sample);
    INFO("sample: " << s.differing << " of " << elements << " elements differ, at most " << s.max_ulps << " ulps");
    CHECK(s.differing == 0);
    for (int slot = 0; slot < slots; ++slot) {
      CAPTURE(slot);
      const std::vector<float> got = d_history[std::size_t(slot)].to_host();
      if (written[std::size_t(slot)]) {
        const Comparison h = compare(got, history[std::size_t(slot)]);
        INFO("history: " << h.differing << " of " << elements << " elements differ, at most " << h.max_ulps << " ulps");
        CHECK(h.differing == 0);
      } else {
        CHECK(untouched_poison(got) == elements);
      }
    }
  }

  // The index now points past the table: further launches must change nothing.
  const std::vector<float> before = d_sample.to_host(), t_before = d_t.to_host();
  const std::vector<std::uint16_t> unet_in_before = d_unet_in.template to_host<std::uint16_t>();
  cuda::step_update(launch);
  cuda::model_input(input_launch);
  CHECK(compare(d_sample.to_host(), before).differing == 0);
  CHECK(d_unet_in.template to_host<std::uint16_t>() == unet_in_before);
  CHECK(compare(d_t.to_host(), t_before).differing == 0);
  return clamped;
}

struct SchedulerCase {
  const char* name;    // --scheduler
  const char* config;  // kSd1Config or kSd2Config
  SchedulerOptions options;
  std::function<void(weights::SchedulerConfig&)> edit;  // a user's own config, when set
  const char* why;
};

const SchedulerCase kDdimNoise{"ddim", kSd1Config, {.steps = 6, .eta = 0.7}, {}, "DDIM, eta > 0: noise at every call"};
const SchedulerCase kDdimClip{
    "ddim", kSd1Config, {.steps = 6}, [](weights::SchedulerConfig& c) { c.clip_sample = true; }, "DDIM, clip_sample"};
const SchedulerCase kDpmSolver{"dpm++2m", kSd1Config, {.steps = 6}, {}, "DPM-Solver++ 2M: one history slot"};
const SchedulerCase kEulerAncestral{
    "euler_a", kSd1Config, {.steps = 6}, {}, "Euler ancestral: noise at every call, weighed 0 at the last"};

const std::vector<SchedulerCase>& scheduler_cases() {
  static const std::vector<SchedulerCase> cases = {
      {"ddim", kSd1Config, {.steps = 6}, {}, "deterministic DDIM"},
      {"ddim", kSd2Config, {.steps = 6}, {}, "DDIM, v-prediction"},
      kDdimNoise,
      kDdimClip,
      kDpmSolver,
      {"dpm++2m", kSd2Config, {.steps = 6, .use_karras_sigmas = true}, {}, "DPM-Solver++ 2M, Karras sigmas, v"},
      {"euler", kSd1Config, {.steps = 6}, {}, "Euler"},
      kEulerAncestral,
      {"pndm", kSd1Config, {.steps = 6}, {}, "PLMS (skip_prk_steps): four history slots"},
      {"pndm",
       kSd1Config,
       {.steps = 6},
       [](weights::SchedulerConfig& c) { c.skip_prk_steps = false; },
       "PNDM with the Runge-Kutta warm-up: five slots, four writes"},
      {"lms", kSd1Config, {.steps = 6}, {}, "LMS, order 4"},
  };
  return cases;
}

Scheduler build(const SchedulerCase& k) {
  weights::SchedulerConfig config = weights::parse_scheduler_config(k.config, "test/scheduler_config.json");
  if (k.edit) k.edit(config);
  return Scheduler(schedulers::algorithm_from_name(k.name), config, k.options);
}

// Small: both formats run every scheduler, guided and not.
TEMPLATE_TEST_CASE("the step kernel and model_input equal the CPU guidance loop + apply_step_plan bit for bit, "
                   "every scheduler",
                   "[cuda][step]", __half, __nv_bfloat16) {
  using T = TestType;
  const LatentShape small{2, 3, 5, 4};
  std::uint64_t seed = 100;
  for (const SchedulerCase& k : scheduler_cases()) {
    CAPTURE(k.why, Format<T>::kName);
    const Scheduler scheduler = build(k);
    {
      INFO("guided, scale 7.5");
      run_generation<T>(scheduler, 7.5, small, ++seed);
    }
    {
      INFO("unguided");
      run_generation<T>(scheduler, std::nullopt, small, ++seed);
    }
  }
}

TEMPLATE_TEST_CASE("the step kernel clamps x0 for DDIM's clip_sample and reads noise where the plan draws it",
                   "[cuda][step]", __half, __nv_bfloat16) {
  using T = TestType;
  CAPTURE(Format<T>::kName);
  SECTION("clip") {
    const Scheduler scheduler = build(kDdimClip);
    REQUIRE(scheduler.plan(0).clip);
    // At the first steps x0 = (x - sqrt(1 - a) eps) / sqrt(a) is far outside [-1, 1] for random
    // inputs: most elements are clamped, so the clamp is what the comparison checks.
    CHECK(run_generation<T>(scheduler, 7.5, {1, 8, 8, 4}, 7) > 64);
  }
  SECTION("noise") {
    const Scheduler scheduler = build(kDdimNoise);
    for (int call = 0; call < scheduler.num_calls(); ++call) REQUIRE(scheduler.needs_noise(call));
    run_generation<T>(scheduler, 7.5, {1, 8, 8, 4}, 8);
  }
}

// fp16 only: the kernel has one path, whose index arithmetic does not depend on T, and bf16 runs
// every scheduler above on the small latent.
TEST_CASE("the step kernel at the size of a 512x512 latent", "[cuda][step]") {
  // 16384 elements: 64 full blocks, guided, for a multistep solver and a noisy one.
  run_generation<__half>(build(kDpmSolver), 7.5, {1, 64, 64, 4}, 9);
  run_generation<__half>(build(kEulerAncestral), 7.5, {1, 64, 64, 4}, 10);
}

// ---- the conversion, on the host

TEST_CASE("to_step_coefficients lays out a plan's writes, clip, reads and guidance", "[cuda][step]") {
  const Combination s = Combination::of(Term::Sample), m = Combination::of(Term::ModelOutput),
                    x0 = Combination::of(Term::ClippedX0), h2 = Combination::of(Term::History2);
  StepPlan plan;
  plan.clip = schedulers::ClipX0{s * 2.0 - m * 0.125, 1.5};
  plan.add_write(Term::History1, m);
  plan.add_write(Term::Sample, s * 0.5 + x0 * 0.25 - h2);

  const StepCoefficients c = schedulers::to_step_coefficients(plan, std::nullopt);
  CHECK(c.guidance == StepGuidance::None);
  CHECK(c.write_count == 2);
  CHECK(c.write_targets[0] == StepTerm::History1);
  CHECK(c.write_targets[1] == StepTerm::Sample);
  const double expected_writes[2][kStepTermCount] = {{0, 1, 0, 0, 0, 0, 0, 0, 0}, {0.5, 0, 0, 0, 0, -1, 0, 0, 0.25}};
  for (int k = 0; k < 2; ++k)
    for (int t = 0; t < kStepTermCount; ++t) {
      CAPTURE(k, t);
      CHECK(c.write_weights[k][t] == expected_writes[k][t]);
    }
  CHECK(c.clip == StepClip::ClampX0);
  CHECK(c.clip_range == 1.5);
  CHECK(c.clip_weights[int(StepTerm::Sample)] == 2.0);
  CHECK(c.clip_weights[int(StepTerm::ModelOutput)] == -0.125);
  // Read: the sample, the model output and history slot 2; not slot 1 (only written), not the
  // noise, not ClippedX0 (formed inside the step).
  const auto bit = [](StepTerm t) { return 1u << int(t); };
  CHECK(c.reads == (bit(StepTerm::Sample) | bit(StepTerm::ModelOutput) | bit(StepTerm::History2)));

  const StepCoefficients guided = schedulers::to_step_coefficients(plan, 7.1);
  CHECK(guided.guidance == StepGuidance::ClassifierFree);
  CHECK(guided.guidance_scale == static_cast<float>(7.1));  // as the host loop rounds it

  const StepCoefficients plain = schedulers::to_step_coefficients(StepPlan{}, std::nullopt);
  CHECK(plain.clip == StepClip::None);
  CHECK(plain.write_count == 0);
  CHECK(plain.reads == 0u);
}

TEST_CASE("to_step_coefficients reads noise only where it is weighed", "[cuda][step]") {
  // Euler ancestral draws noise at every call, but at the last its weight sigma_up is 0: the
  // kernel need not read it there.
  const Scheduler scheduler = build(kEulerAncestral);
  const int last = scheduler.num_calls() - 1;
  const auto noise_bit = 1u << int(StepTerm::Noise);
  for (int call = 0; call < last; ++call)
    CHECK((schedulers::to_step_coefficients(scheduler.plan(call), 7.5).reads & noise_bit) != 0u);
  REQUIRE(scheduler.needs_noise(last));
  CHECK((schedulers::to_step_coefficients(scheduler.plan(last), 7.5).reads & noise_bit) == 0u);
}

}  // namespace sdgen::test::step_test
