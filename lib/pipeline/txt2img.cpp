#include "lib/pipeline/txt2img.hpp"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <optional>
#include <string>
#include <type_traits>

#include "lib/core/allocator.hpp"
#include "lib/core/ctx.hpp"
#include "lib/core/error.hpp"
#include "lib/core/rng.hpp"
#include "lib/models/weight_binding.hpp"
#include "lib/nn/layout.hpp"
#include "lib/pipeline/image.hpp"

namespace sdgen::pipeline {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Binds and checks every tensor of the component (a missing, unexpected or wrong-shaped one is a
// ModelError), then converts for the backend only the parameters `used` keeps.
template <class Module, class Used>
nn::WeightStore load(Backend& backend, const char* component, Module& module, const weights::ComponentTensors& tensors,
                     Used&& used) {
  models::require_complete(models::bind_weights(component, module, tensors));
  auto params = nn::named_params(module);
  std::erase_if(params, [&](const nn::NamedParam& p) { return !used(p.name); });
  return nn::WeightStore(backend, {}, params);
}

bool every_param(const std::string&) { return true; }

// Text to image runs the VAE's decode path only. The encoder and quant_conv (34 M of SD's 84 M VAE
// parameters, 68 MB in fp16: device memory the 2.5 GB budget of SD 1.5 at 512x512 needs) are
// checked like every tensor but not converted: their Params keep no value, so running them would
// find no weights rather than stale ones.
bool used_by_vae_decode(const std::string& name) {
  return !name.starts_with("encoder.") && !name.starts_with("quant_conv.");
}

// Host copies of backend tensors, and backend tensors of host data: the pipeline touches
// activations only through Backend::upload / download, so it drives a GPU as it drives the CPU.
std::vector<float> to_host(Backend& backend, const Tensor& t) {
  std::vector<float> host(static_cast<std::size_t>(t.numel()));
  backend.download(t, Tensor::contiguous(host.data(), DType::F32, t.shape));
  return host;
}

template <class T>
void from_host(Backend& backend, std::vector<T>& host, const Tensor& t) {
  constexpr DType dtype = std::is_same_v<T, float> ? DType::F32 : DType::I32;
  backend.upload(Tensor::contiguous(host.data(), dtype, t.shape), t);
}

// The activation requests a stage makes and the scratch its ops need, recorded by running it on the
// backend's shape-only twin: nothing is computed or allocated. An Arena then serves the same
// requests from one block, and the backend reserves the scratch beforehand.
template <class Stage>
StagePlan plan_stage(Backend& backend, Stage&& stage) {
  const auto shapes = backend.shape_only();
  PlanningAllocator planner(backend.allocator().device());
  {
    Ctx plan{*shapes, planner, backend.activation_dtype()};
    stage(plan);
  }
  return {planner.records(), shapes->planned_scratch_bytes()};
}

// Rows [first, first + count) of a contiguous [B, ...] tensor.
Tensor batch_rows(const Tensor& t, std::int64_t first, std::int64_t count) {
  Shape shape = t.shape;
  shape[0] = count;
  const std::size_t row_bytes = t.nbytes() / static_cast<std::size_t>(t.shape[0]);
  return Tensor::contiguous(static_cast<std::byte*>(t.data) + static_cast<std::size_t>(first) * row_bytes, t.dtype,
                            shape, t.device);
}

// Records a host tensor under its reference name, converting NHWC images to torch's NCHW.
struct Recorder {
  Dump* dump;
  void raw(const std::string& name, Shape shape, std::span<const float> values) const {
    if (dump) (*dump)[name] = {shape, {values.begin(), values.end()}};
  }
  void nhwc(const std::string& name, const Shape& nhwc_shape, std::span<const float> values) const {
    if (!dump) return;
    DumpedTensor t{.shape = {nhwc_shape[0], nhwc_shape[3], nhwc_shape[1], nhwc_shape[2]},
                   .values = std::vector<float>(values.size())};
    nn::nhwc_to_nchw(values, nhwc_shape, t.values);
    (*dump)[name] = std::move(t);
  }
  // Appends one step's tensor to a [S, ...] stack.
  void append(const std::string& name, const Shape& item_nchw, std::span<const float> values) const {
    if (!dump) return;
    auto& t = (*dump)[name];
    if (t.values.empty()) {
      t.shape = Shape{0};
      for (int i = 0; i < item_nchw.rank(); ++i) t.shape.push_back(item_nchw[i]);
    }
    t.shape[0] += 1;
    t.values.insert(t.values.end(), values.begin(), values.end());
  }
};

// torch.randn(shape) for a batch of latents, drawn in NCHW order, returned NHWC.
std::vector<float> draw_latent_noise(TorchCpuGenerator& generator, const Shape& nchw) {
  std::vector<float> drawn(static_cast<std::size_t>(nchw.numel()));
  generator.randn(drawn);
  std::vector<float> nhwc(drawn.size());
  nn::nchw_to_nhwc(drawn, nchw, nhwc);
  return nhwc;
}

}  // namespace

Pipeline::Pipeline(const weights::OpenedModel& model, Backend& backend)
    : model_(model),
      backend_(backend),
      tokenizer_(tokenizer::ClipTokenizer::from_directory(model.tokenizer_dir)),
      text_encoder_(model.text_encoder),
      unet_(model.unet),
      vae_(model.vae) {
  try {
    stores_.push_back(load(backend, "text_encoder", text_encoder_, model.text_encoder_tensors, every_param));
    stores_.push_back(load(backend, "unet", unet_, model.unet_tensors, every_param));
    stores_.push_back(load(backend, "vae", vae_, model.vae_tensors, used_by_vae_decode));
  } catch (const DeviceMemoryError& e) {
    throw DeviceMemoryError(cat(e.what(), ". The model's weights alone do not fit, so no smaller image or batch can run"),
                            e.requested, e.available);
  }
}

Pipeline::~Pipeline() = default;

StagePlan Pipeline::plan_unet_step(std::int64_t rows, std::int64_t h, std::int64_t w, const Shape& context) const {
  return plan_stage(backend_, [&](Ctx& plan) {
    const auto unet_in = plan.alloc({rows, h, w, model_.unet.in_channels});
    const auto t = plan.alloc({rows}, DType::F32);
    const auto context_view =
        Tensor::contiguous(nullptr, backend_.activation_dtype(), context, plan.allocator.device());
    const auto eps = unet_.forward(plan, unet_in, t, context_view);
  });
}

StagePlan Pipeline::plan_vae_decode(std::int64_t h, std::int64_t w) const {
  return plan_stage(backend_, [&](Ctx& plan) {
    const auto z = plan.alloc({1, h, w, model_.unet.in_channels});
    const auto decoded = vae_.decode(plan, z);
  });
}

MemoryPlan Pipeline::plan_memory(const GenerateRequest& r) const {
  auto options = r.scheduler_options;
  options.steps = r.steps;
  const schedulers::Scheduler scheduler(r.scheduler, model_.scheduler, options);
  bool draws_noise = false;
  for (int call = 0; call < scheduler.num_calls(); ++call) draws_noise = draws_noise || scheduler.needs_noise(call);
  const auto latent_buffers = static_cast<std::size_t>(1 + scheduler.history_slots() + (draws_noise ? 1 : 0));

  const bool guided = r.guidance_scale > 1.0;
  const auto tokens = static_cast<std::int64_t>(tokenizer_.encode(r.prompt).size());
  const std::int64_t hidden = model_.text_encoder.hidden_size, c = model_.unet.in_channels;
  const std::int64_t rows = guided ? 2 * r.batch : r.batch, h = r.height / 8, w = r.width / 8;
  const auto context_bytes =
      static_cast<std::size_t>(rows * tokens * hidden) * dtype_size(backend_.activation_dtype());
  const auto latent_bytes = static_cast<std::size_t>(r.batch * h * w * c) * sizeof(float);
  const StagePlan unet = plan_unet_step(rows, h, w, Shape{rows, tokens, hidden});
  const StagePlan vae = plan_vae_decode(h, w);
  // Each part is one allocation, at what the backend's allocator takes for it.
  const Allocator& memory = backend_.allocator();
  const auto block = [&](std::size_t bytes) { return memory.footprint(bytes); };
  const std::size_t loop_table = backend_.denoising_loop_bytes(static_cast<std::size_t>(scheduler.num_calls()));
  return {.weights = weight_bytes(),
          .denoising = block(context_bytes) + latent_buffers * block(latent_bytes) +
                       block(plan_arena(unet.requests).total_bytes) + block(unet.scratch_bytes) + loop_table,
          .decoding = block(context_bytes) + block(latent_bytes) + block(plan_arena(vae.requests).total_bytes) +
                      block(vae.scratch_bytes)};
}

std::string Pipeline::fit_advice(const GenerateRequest& r, std::size_t budget) const {
  const auto needs = [&](std::int64_t batch, std::int64_t width, std::int64_t height) {
    GenerateRequest candidate = r;
    candidate.batch = static_cast<int>(batch);
    candidate.width = static_cast<int>(width);
    candidate.height = static_cast<int>(height);
    const MemoryPlan plan = plan_memory(candidate);
    return plan.peak() - plan.weights;
  };
  std::string advice;
  std::int64_t batch = r.batch - 1;
  while (batch >= 1 && needs(batch, r.width, r.height) > budget) --batch;
  if (batch >= 1) advice = cat("--batch ", batch, " fits at ", r.width, "x", r.height);
  // Sizes shrink in steps of 64 px on the longer side, keeping the aspect ratio (multiples of 8).
  const std::int64_t longer = std::max(r.width, r.height);
  for (std::int64_t side = (longer - 1) / 64 * 64; side >= 64; side -= 64) {
    const std::int64_t width = std::max<std::int64_t>(8, r.width * side / longer / 8 * 8);
    const std::int64_t height = std::max<std::int64_t>(8, r.height * side / longer / 8 * 8);
    if (needs(r.batch, width, height) <= budget) {
      advice += cat(advice.empty() ? "" : "; ", width, "x", height, " fits at --batch ", r.batch);
      break;
    }
  }
  return advice.empty() ? "Nothing smaller fits either: the weights leave too little memory for any image"
                        : cat("What would fit: ", advice);
}

std::size_t Pipeline::weight_bytes() const {
  std::size_t bytes = backend_.held_bytes();
  for (const auto& s : stores_) bytes += s.owned_bytes();
  return bytes;
}

void validate_request(const weights::OpenedModel& model, const GenerateRequest& r) {
  // The VAE scales by 8; the UNet takes any latent size (odd sides are up-sampled to the skip's size).
  constexpr std::int64_t multiple = 8;
  if (r.width <= 0 || r.height <= 0 || r.width % multiple != 0 || r.height % multiple != 0)
    throw UsageError(cat("image size ", r.width, "x", r.height, " is not supported: width and height must be positive "
                         "multiples of ", multiple));
  if (r.steps < 1) throw UsageError(cat("--steps must be at least 1 (got ", r.steps, ")"));
  if (r.batch < 1) throw UsageError(cat("--batch must be at least 1 (got ", r.batch, ")"));
  if (r.clip_skip.layers < 0 || r.clip_skip.layers >= model.text_encoder.num_hidden_layers)
    throw UsageError(cat("clip skip ", r.clip_skip.layers + 1, " is out of range: the text encoder has ",
                         model.text_encoder.num_hidden_layers, " layers"));
  auto options = r.scheduler_options;
  options.steps = r.steps;
  const schedulers::Scheduler check(r.scheduler, model.scheduler, options);  // throws for options it refuses
}

GeneratedImages Pipeline::generate(const GenerateRequest& r, const ProgressFn& progress, Dump* dump,
                                   const CancelFn& cancelled) {
  validate_request(model_, r);
  // Polled at the boundaries of the long steps: a UNet call or a VAE decode is never cut in half,
  // so a cancellation waits at most one of them.
  const auto stop_if_cancelled = [&] {
    if (cancelled && cancelled()) throw Cancelled("generation cancelled");
  };
  auto options = r.scheduler_options;
  options.steps = r.steps;
  const schedulers::Scheduler scheduler(r.scheduler, model_.scheduler, options);
  const Recorder rec{dump};
  Allocator& memory = backend_.allocator();
  Ctx ctx{backend_, memory, backend_.activation_dtype()};
  GeneratedImages result{.width = r.width, .height = r.height};
  const bool guided = r.guidance_scale > 1.0;
  const std::int64_t n = r.batch;
  const std::int64_t rows = guided ? 2 * n : n;  // the UNet batch

  // ---- text conditioning: one CLIP call on [uncond x N, cond x N] (or [cond x N])
  auto start = Clock::now();
  const auto cond_ids = tokenizer_.encode(r.prompt);
  const auto uncond_ids = tokenizer_.encode(r.negative_prompt);
  const auto tokens = static_cast<std::int64_t>(cond_ids.size());
  std::vector<std::int32_t> host_ids;
  for (std::int64_t row = 0; row < rows; ++row) {
    const auto& src = (guided && row < n) ? uncond_ids : cond_ids;
    host_ids.insert(host_ids.end(), src.begin(), src.end());
  }
  auto ids = ctx.alloc({rows, tokens}, DType::I32);
  from_host(backend_, host_ids, ids);
  const auto as_floats = [](const std::vector<int>& v) { return std::vector<float>(v.begin(), v.end()); };
  rec.raw("input_ids.cond", {1, tokens}, as_floats(cond_ids));
  if (guided) rec.raw("input_ids.uncond", {1, tokens}, as_floats(uncond_ids));
  result.seconds.tokenize = seconds_since(start);

  start = Clock::now();
  const auto context = text_encoder_.forward(ctx, ids, r.clip_skip);  // [rows, 77, C]
  ids.reset();
  backend_.synchronize();
  result.seconds.text_encode = seconds_since(start);
  if (dump) {
    const auto hidden = context.view().shape[2];
    const auto values = to_host(backend_, context);
    const auto row_values = [&](std::int64_t row) {
      return std::span(values).subspan(static_cast<std::size_t>(row * tokens * hidden),
                                        static_cast<std::size_t>(tokens * hidden));
    };
    rec.raw("text_embeds.cond", {1, tokens, hidden}, row_values(rows - 1));
    if (guided) rec.raw("text_embeds.uncond", {1, tokens, hidden}, row_values(0));
  }

  // ---- initial latents, drawn on the host (torch's generator) and kept where the backend computes
  const std::int64_t h = r.height / 8, w = r.width / 8, c = model_.unet.in_channels;
  const Shape latent_nchw{n, c, h, w};
  const Shape latent_nhwc{n, h, w, c};
  TorchCpuGenerator generator(r.seed);
  std::vector<float> host_latents = draw_latent_noise(generator, latent_nchw);
  rec.nhwc("noise", latent_nhwc, host_latents);
  const auto sigma0 = static_cast<float>(scheduler.init_noise_sigma());
  for (auto& v : host_latents) v *= sigma0;
  rec.nhwc("latents.init", latent_nhwc, host_latents);
  Activation latents = ctx.alloc(latent_nhwc, DType::F32);
  from_host(backend_, host_latents, latents);

  std::vector<float> timesteps(scheduler.timesteps().begin(), scheduler.timesteps().end());
  rec.raw("timesteps", {static_cast<std::int64_t>(timesteps.size())}, timesteps);

  // ---- denoising: the scheduler's state and every call's coefficients, prepared once
  std::vector<Activation> history;
  for (int slot = 0; slot < scheduler.history_slots(); ++slot) history.push_back(ctx.alloc(latent_nhwc, DType::F32));
  std::vector<StepCoefficients> steps;
  bool draws_noise = false;
  for (int call = 0; call < scheduler.num_calls(); ++call) {
    StepCoefficients& coefficients = steps.emplace_back(schedulers::to_step_coefficients(
        scheduler.plan(call), guided ? std::optional(r.guidance_scale) : std::nullopt));
    coefficients.timestep = timesteps[static_cast<std::size_t>(call)];
    coefficients.input_scale = static_cast<float>(scheduler.model_input_scale(call));
    draws_noise = draws_noise || scheduler.needs_noise(call);
  }
  Activation step_noise;
  if (draws_noise) step_noise = ctx.alloc(latent_nhwc, DType::F32);
  StepTensors step_tensors{.sample = latents, .noise = draws_noise ? &step_noise.view() : nullptr};
  for (std::size_t slot = 0; slot < history.size(); ++slot) step_tensors.history[slot] = &history[slot].view();

  std::vector<float> nchw_scratch(static_cast<std::size_t>(latent_nhwc.numel()));
  const auto record_step = [&](const std::string& name, std::span<const float> nhwc_values) {
    nn::nhwc_to_nchw(nhwc_values, latent_nhwc, nchw_scratch);
    rec.append(name, latent_nchw, nchw_scratch);
  };
  // Every step makes the same requests in the same order, so their memory is planned once, by a
  // shape-only run of one step, and served from one block: no allocation inside the loop.
  // The block is returned before the VAE decode, whose activations set the run's peak memory.
  // Running out of memory for a stage's scratch or arena: the error says what would fit. What this
  // request holds beside the weights (`held`) goes back into the budget the advice plans with.
  const int latent_buffers = 1 + static_cast<int>(history.size()) + (draws_noise ? 1 : 0);
  std::size_t scratch_held = 0;
  const auto with_advice = [&](const DeviceMemoryError& e, std::size_t held) {
    return DeviceMemoryError(
        cat(e.what(), ". ", fit_advice(r, e.available + held + scratch_held)), e.requested,
        e.available);
  };
  {
    StagePlan step_plan = plan_unet_step(rows, h, w, context.view().shape);
    std::optional<Arena> arena_block;
    try {
      backend_.reserve_scratch(step_plan.scratch_bytes);
      scratch_held = step_plan.scratch_bytes;
      arena_block.emplace(memory, plan_arena(step_plan.requests), std::move(step_plan.requests));
    } catch (const DeviceMemoryError& e) {
      throw with_advice(e, context.view().nbytes() + static_cast<std::size_t>(latent_buffers) * latents.view().nbytes());
    }
    Arena& arena = *arena_block;
    Ctx step_ctx{backend_, arena, backend_.activation_dtype()};
    // Every call's work is the same ops on the same arena memory (the arena is rewound before each
    // and serves the same requests in the same order), reading the call's coefficients from
    // `steps` inside the backend: what a device backend needs to record one call and replay it.
    const auto loop = backend_.begin_denoising(steps);
    for (int call = 0; call < scheduler.num_calls(); ++call) {
      stop_if_cancelled();
      start = Clock::now();
      if (scheduler.needs_noise(call)) {
        auto drawn = draw_latent_noise(generator, latent_nchw);
        if (dump) record_step("step_noise", drawn);
        from_host(backend_, drawn, step_noise);
      }
      loop->run([&] {
        arena.rewind();
        auto unet_in = step_ctx.alloc({rows, h, w, c});
        auto t = step_ctx.alloc({rows}, DType::F32);
        loop->model_input(latents, unet_in, t);
        const auto eps = unet_.forward(step_ctx, unet_in, t, context);  // [rows, h, w, c]
        step_tensors.model_output = eps;
        loop->scheduler_step(step_tensors);
      });
      // The UNet output stays in the arena until the next call rewinds it.
      if (dump) {
        const auto out = to_host(backend_, step_tensors.model_output);
        const auto half = [&](std::int64_t k) { return std::span(out).subspan(static_cast<std::size_t>(k * latent_nhwc.numel()),
                                                                              static_cast<std::size_t>(latent_nhwc.numel())); };
        if (guided) record_step("eps.steps.uncond", half(0));
        record_step("eps.steps.cond", half(guided ? 1 : 0));
      }
      if (dump) record_step("latents.steps", to_host(backend_, latents));
      backend_.synchronize();
      result.seconds.steps.push_back(seconds_since(start));
      if (progress) progress(call + 1, scheduler.num_calls());
    }
  }
  history.clear();
  step_noise.reset();
  host_latents = to_host(backend_, latents);
  rec.nhwc("latents.final", latent_nhwc, host_latents);

  // ---- decode, one image at a time (the VAE's activations dominate peak memory)
  start = Clock::now();
  const ConvertArgs vae_scale{.scale = static_cast<float>(1.0 / model_.vae.scaling_factor),
                              .shift = static_cast<float>(model_.vae.shift_factor.value_or(0.0))};
  if (dump) {
    std::vector<float> vae_in(host_latents.size());
    for (std::size_t i = 0; i < vae_in.size(); ++i) vae_in[i] = host_latents[i] * vae_scale.scale + vae_scale.shift;
    rec.nhwc("vae_in", latent_nhwc, vae_in);
  }
  // Planned like the UNet step: one block for every image's decode, so the decoder's large
  // activations are mapped and faulted in once instead of at every op.
  StagePlan decode_plan = plan_vae_decode(h, w);
  std::optional<Arena> vae_arena_block;
  try {
    scratch_held = 0;  // the step's scratch is given back (or kept, when the decode needs as much)
    backend_.reserve_scratch(decode_plan.scratch_bytes);
    scratch_held = decode_plan.scratch_bytes;
    vae_arena_block.emplace(memory, plan_arena(decode_plan.requests), std::move(decode_plan.requests));
  } catch (const DeviceMemoryError& e) {
    throw with_advice(e, context.view().nbytes() + latents.view().nbytes());
  }
  Arena& vae_arena = *vae_arena_block;
  Ctx vae_ctx{backend_, vae_arena, backend_.activation_dtype()};
  for (std::int64_t img = 0; img < n; ++img) {
    stop_if_cancelled();
    vae_arena.rewind();
    auto z = vae_ctx.alloc({1, h, w, c});
    backend_.convert(batch_rows(latents, img, 1), z, vae_scale);
    const auto decoded = vae_.decode(vae_ctx, z);  // [1, H, W, 3]
    const auto pixels = to_host(backend_, decoded);
    result.rgb.push_back(to_rgb8(pixels));
    if (dump) {
      const Shape image_nhwc = decoded.view().shape;
      Recorder one{dump};
      const std::string suffix = n == 1 ? "" : cat(".", img);
      one.nhwc("image" + suffix, image_nhwc, pixels);
      const auto& px = result.rgb.back();
      one.raw("image_uint8" + suffix, image_nhwc, std::vector<float>(px.begin(), px.end()));
    }
  }
  result.seconds.vae_decode = seconds_since(start);
  return result;
}

}  // namespace sdgen::pipeline
