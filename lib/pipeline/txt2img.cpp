#include "lib/pipeline/txt2img.hpp"

#include <algorithm>
#include <cstring>

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

template <class Module>
nn::WeightStore load(Backend& backend, const char* component, Module& module, const weights::ComponentTensors& tensors) {
  models::require_complete(models::bind_weights(component, module, tensors));
  return nn::WeightStore(backend, {}, nn::named_params(module));
}

std::span<float> floats(const Tensor& t) { return {t.ptr<float>(), static_cast<std::size_t>(t.numel())}; }

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
  stores_.push_back(load(backend, "text_encoder", text_encoder_, model.text_encoder_tensors));
  stores_.push_back(load(backend, "unet", unet_, model.unet_tensors));
  stores_.push_back(load(backend, "vae", vae_, model.vae_tensors));
}

Pipeline::~Pipeline() = default;

Arena Pipeline::plan_unet_step(std::int64_t rows, std::int64_t h, std::int64_t w, std::int64_t c, const Tensor& context,
                               Allocator& backing) const {
  const auto shapes = backend_.shape_only();
  PlanningAllocator planner(backing.device());
  {
    Ctx plan{*shapes, planner};
    const auto unet_in = plan.alloc({rows, h, w, c});
    const auto t = plan.alloc({rows});
    const auto eps = unet_.forward(plan, unet_in, t, context);
  }
  auto records = planner.records();
  auto arena_plan = plan_arena(records);
  return Arena(backing, std::move(arena_plan), std::move(records));
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
  HeapAllocator heap;
  Ctx ctx{backend_, heap};
  GeneratedImages result{.width = r.width, .height = r.height};
  const bool guided = r.guidance_scale > 1.0;
  const std::int64_t n = r.batch;
  const std::int64_t rows = guided ? 2 * n : n;  // the UNet batch

  // ---- text conditioning: one CLIP call on [uncond x N, cond x N] (or [cond x N])
  auto start = Clock::now();
  const auto cond_ids = tokenizer_.encode(r.prompt);
  const auto uncond_ids = tokenizer_.encode(r.negative_prompt);
  const auto tokens = static_cast<std::int64_t>(cond_ids.size());
  auto ids = ctx.alloc({rows, tokens}, DType::I32);
  for (std::int64_t row = 0; row < rows; ++row) {
    const auto& src = (guided && row < n) ? uncond_ids : cond_ids;
    std::copy(src.begin(), src.end(), ids.view().ptr<std::int32_t>() + row * tokens);
  }
  const auto as_floats = [](const std::vector<int>& v) { return std::vector<float>(v.begin(), v.end()); };
  rec.raw("input_ids.cond", {1, tokens}, as_floats(cond_ids));
  if (guided) rec.raw("input_ids.uncond", {1, tokens}, as_floats(uncond_ids));
  result.seconds.tokenize = seconds_since(start);

  start = Clock::now();
  const auto context = text_encoder_.forward(ctx, ids, r.clip_skip);  // [rows, 77, C]
  ids.reset();
  result.seconds.text_encode = seconds_since(start);
  const auto hidden = context.view().shape[2];
  const auto row_values = [&](std::int64_t row) {
    return floats(context).subspan(static_cast<std::size_t>(row * tokens * hidden), static_cast<std::size_t>(tokens * hidden));
  };
  rec.raw("text_embeds.cond", {1, tokens, hidden}, row_values(rows - 1));
  if (guided) rec.raw("text_embeds.uncond", {1, tokens, hidden}, row_values(0));

  // ---- initial latents
  const std::int64_t h = r.height / 8, w = r.width / 8, c = model_.unet.in_channels;
  const Shape latent_nchw{n, c, h, w};
  const Shape latent_nhwc{n, h, w, c};
  const auto latent_size = static_cast<std::size_t>(latent_nhwc.numel());
  TorchCpuGenerator generator(r.seed);
  std::vector<float> latents = draw_latent_noise(generator, latent_nchw);
  rec.nhwc("noise", latent_nhwc, latents);
  const auto sigma0 = static_cast<float>(scheduler.init_noise_sigma());
  for (auto& v : latents) v *= sigma0;
  rec.nhwc("latents.init", latent_nhwc, latents);

  std::vector<float> timesteps(scheduler.timesteps().begin(), scheduler.timesteps().end());
  rec.raw("timesteps", {static_cast<std::int64_t>(timesteps.size())}, timesteps);

  // ---- denoising
  std::vector<float> guided_out(latent_size), step_noise, nchw_scratch(latent_size);
  std::vector<std::vector<float>> history(static_cast<std::size_t>(scheduler.history_slots()),
                                          std::vector<float>(latent_size));
  const auto record_step = [&](const std::string& name, std::span<const float> nhwc_values) {
    if (!dump) return;
    nn::nhwc_to_nchw(nhwc_values, latent_nhwc, nchw_scratch);
    rec.append(name, latent_nchw, nchw_scratch);
  };
  const auto guidance = static_cast<float>(r.guidance_scale);
  // Every step makes the same requests in the same order, so their memory is planned once, by a
  // shape-only run of one step, and served from one block: no allocation inside the loop.
  // The block is returned before the VAE decode, whose activations set the run's peak memory.
  {
    Arena arena = plan_unet_step(rows, h, w, c, context, heap);
    Ctx step_ctx{backend_, arena};
    for (int call = 0; call < scheduler.num_calls(); ++call) {
      stop_if_cancelled();
      start = Clock::now();
      arena.rewind();
      auto unet_in = step_ctx.alloc({rows, h, w, c});
      auto t = step_ctx.alloc({rows});
      const auto scale = static_cast<float>(scheduler.model_input_scale(call));
      auto in = floats(unet_in);
      for (std::int64_t copy = 0; copy < rows / n; ++copy)
        for (std::size_t i = 0; i < latent_size; ++i) in[static_cast<std::size_t>(copy) * latent_size + i] = latents[i] * scale;
      std::fill_n(t.view().ptr<float>(), rows, timesteps[static_cast<std::size_t>(call)]);
      const auto eps = unet_.forward(step_ctx, unet_in, t, context);  // [rows, h, w, c]
      const auto out = floats(eps);
      if (guided) {
        const auto uncond = out.subspan(0, latent_size), cond = out.subspan(latent_size, latent_size);
        for (std::size_t i = 0; i < latent_size; ++i) guided_out[i] = uncond[i] + guidance * (cond[i] - uncond[i]);
        record_step("eps.steps.uncond", uncond);
        record_step("eps.steps.cond", cond);
      } else {
        std::copy(out.begin(), out.end(), guided_out.begin());
        record_step("eps.steps.cond", out);
      }
      if (scheduler.needs_noise(call)) {
        step_noise = draw_latent_noise(generator, latent_nchw);
        record_step("step_noise", step_noise);
      }
      schedulers::StepBuffers buffers{.sample = latents, .model_output = guided_out, .noise = step_noise};
      for (std::size_t s = 0; s < history.size(); ++s) buffers.history[s] = history[s];
      schedulers::apply_step_plan(scheduler.plan(call), buffers);
      record_step("latents.steps", latents);
      result.seconds.steps.push_back(seconds_since(start));
      if (progress) progress(call + 1, scheduler.num_calls());
    }
  }
  rec.nhwc("latents.final", latent_nhwc, latents);

  // ---- decode, one image at a time (the VAE's activations dominate peak memory)
  start = Clock::now();
  const auto inv_scale = static_cast<float>(1.0 / model_.vae.scaling_factor);
  const auto shift = static_cast<float>(model_.vae.shift_factor.value_or(0.0));
  std::vector<float> vae_in(latent_size);
  for (std::size_t i = 0; i < latent_size; ++i) vae_in[i] = latents[i] * inv_scale + shift;
  rec.nhwc("vae_in", latent_nhwc, vae_in);
  const auto per_image = latent_size / static_cast<std::size_t>(n);
  for (std::int64_t img = 0; img < n; ++img) {
    stop_if_cancelled();
    auto z = ctx.alloc({1, h, w, c});
    std::copy_n(vae_in.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(img) * per_image), per_image, z.view().ptr<float>());
    const auto decoded = vae_.decode(ctx, z);  // [1, H, W, 3]
    result.rgb.push_back(to_rgb8(floats(decoded)));
    if (dump) {
      const Shape image_nhwc = decoded.view().shape;
      Recorder one{dump};
      const std::string suffix = n == 1 ? "" : cat(".", img);
      one.nhwc("image" + suffix, image_nhwc, floats(decoded));
      const auto& px = result.rgb.back();
      one.raw("image_uint8" + suffix, image_nhwc, std::vector<float>(px.begin(), px.end()));
    }
  }
  result.seconds.vae_decode = seconds_since(start);
  return result;
}

}  // namespace sdgen::pipeline
