// Text to image, as diffusers' StableDiffusionPipeline computes it.
//
//   ids      = tokenize(negative), tokenize(prompt)                  [77] each, padded
//   context  = CLIP([uncond x N, cond x N])                          [2N, 77, C]  (N images)
//   latents  = randn(seed)[N, 4, h, w] (NCHW, torch's order) * init_noise_sigma, laid out NHWC
//   for every UNet call of the scheduler:
//     eps    = UNet(cat[latents, latents] * input_scale, t, context)   one call on the 2N batch
//     guided = eps_uncond + cfg * (eps_cond - eps_uncond)
//     latents = scheduler step (plus a fresh randn draw when the step needs noise)
//   image    = VAE.decode(latents / scaling_factor), one image at a time, -> 8-bit RGB
//
// Guidance follows diffusers: it is on when cfg > 1; at cfg <= 1 the unconditional half is not
// computed at all (batch N instead of 2N). Every random draw comes from one torch-compatible
// generator in diffusers' order, so a seed reproduces diffusers' image.
//
// Pipeline owns the networks and their weights for the lifetime of a model (load once, generate
// many): build it once per model, then call generate() per prompt.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kernels/backend.hpp"
#include "lib/core/allocator.hpp"
#include "lib/models/clip_text.hpp"
#include "lib/models/unet.hpp"
#include "lib/models/vae.hpp"
#include "lib/nn/weight_store.hpp"
#include "lib/schedulers/scheduler.hpp"
#include "tokenizer/clip_bpe.hpp"
#include "weights/model.hpp"

namespace sdgen::pipeline {

struct GenerateRequest {
  std::string prompt;
  std::string negative_prompt;
  int width = 512;
  int height = 512;
  int steps = 25;
  double guidance_scale = 7.5;
  std::uint64_t seed = 0;
  int batch = 1;  // images for this prompt (diffusers' num_images_per_prompt)
  schedulers::Algorithm scheduler = schedulers::Algorithm::DpmSolverMultistep;
  schedulers::SchedulerOptions scheduler_options;  // eta, karras, prediction; steps is taken from above
  models::ClipSkip clip_skip;
};

// Named intermediate tensors in the reference's names and layouts (NCHW, float32), for --dump
// and the tests: input_ids.cond, text_embeds.cond, noise, latents.init, timesteps,
// eps.steps.cond, latents.steps, latents.final, vae_in, image, image_uint8, ... (see
// tests/data/README.md).
struct DumpedTensor {
  Shape shape;
  std::vector<float> values;
};
using Dump = std::map<std::string, DumpedTensor>;

struct StageSeconds {
  double tokenize = 0;
  double text_encode = 0;
  std::vector<double> steps;  // one per UNet call (guidance batch included)
  double vae_decode = 0;
};

struct GeneratedImages {
  int width = 0;
  int height = 0;
  std::vector<std::vector<std::uint8_t>> rgb;  // one per image: height x width x 3, row-major
  StageSeconds seconds;
};

// Throws UsageError for a request the model cannot run (a size that is not a multiple of 8 x the
// UNet's down-sampling factor, steps < 1, batch < 1, clip skip beyond the text encoder's layers,
// scheduler options the scheduler refuses). Needs only the configs: call it before loading.
void validate_request(const weights::OpenedModel& model, const GenerateRequest& request);

// Called after every UNet call with (calls done, total calls); for progress bars.
using ProgressFn = std::function<void(int done, int total)>;

// Asked before every UNet call and every VAE decode; true abandons the generation with
// sdgen::Cancelled. The library only polls: what makes it true (a signal, a GUI button, a
// deadline) is the caller's business, so lib/ holds no signal handling. It must be cheap and must
// not throw.
using CancelFn = std::function<bool()>;

// A stage's memory, planned by running it on the backend's shape-only twin: its activation
// requests (served by an Arena) and the scratch its ops need (Backend::reserve_scratch).
struct StagePlan {
  std::vector<AllocationRecord> requests;
  std::size_t scratch_bytes = 0;
};

// What a request needs of the backend's memory (the GPU's, on the CUDA backend), planned by the
// shape-only passes: nothing is allocated or computed. The stages run one after the other, so the
// peak is the weights plus the larger stage.
struct MemoryPlan {
  std::size_t weights = 0;    // converted weights and the backend's workspaces, held from loading on
  std::size_t denoising = 0;  // text context, the F32 latent buffers (sample, scheduler history,
                              // noise), the UNet step's arena and its ops' scratch, the loop's
                              // coefficient table
  std::size_t decoding = 0;   // text context, latents, one image's decode arena and its ops' scratch
  std::size_t peak() const { return weights + std::max(denoising, decoding); }
};

class Pipeline {
 public:
  // Builds the networks from the opened model's configs, checks every tensor (ModelError on any
  // missing, unexpected or wrong-shaped one), converts the weights for `backend` and loads the
  // tokenizer. `model` and `backend` must outlive the Pipeline (weights are read from its files).
  Pipeline(const weights::OpenedModel& model, Backend& backend);
  ~Pipeline();


  // Throws sdgen::Cancelled when `cancelled` says so; nothing of the request is returned then.
  GeneratedImages generate(const GenerateRequest& request, const ProgressFn& progress = {}, Dump* dump = nullptr,
                           const CancelFn& cancelled = {});

  const weights::OpenedModel& model() const { return model_; }
  // Bytes of converted weights held for the backend (store + backend-owned packed copies).
  std::size_t weight_bytes() const;
  // The memory `request` will need (what the out-of-memory advice plans with, and --dry-run shows).
  // Its steps, batch and size must be valid (validate_request).
  MemoryPlan plan_memory(const GenerateRequest& request) const;

 private:
  // The activation requests and op scratch of one UNet call on a [rows, h, w, in_channels] latent
  // batch with a [rows, tokens, C] context, and of one image's VAE decode from an [1, h, w, c]
  // latent, recorded by shape-only runs (nothing is allocated or computed).
  StagePlan plan_unet_step(std::int64_t rows, std::int64_t h, std::int64_t w, const Shape& context) const;
  StagePlan plan_vae_decode(std::int64_t h, std::int64_t w) const;
  // When memory runs out: what would fit (a smaller batch at this size, a smaller size at this
  // batch) in `budget` bytes, the memory left beside the weights (plan_memory's stages).
  std::string fit_advice(const GenerateRequest& request, std::size_t budget) const;

  const weights::OpenedModel& model_;
  Backend& backend_;
  tokenizer::ClipTokenizer tokenizer_;
  models::CLIPTextModel text_encoder_;
  models::UNet2DConditionModel unet_;
  models::AutoencoderKL vae_;
  std::vector<nn::WeightStore> stores_;
};

}  // namespace sdgen::pipeline
