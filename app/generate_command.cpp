// `sdgen "prompt" -o out.png` and `sdgen --prompts FILE --outdir DIR`: text to image.
//
// Everything a run can object to (options, model files, output directory, prompt file) is checked
// before the first heavy step, so a mistake costs seconds, not a model load and a denoising loop.
// The model is loaded once for all prompts. Seeds: the image(s) of a prompt come from one
// generator seeded with the prompt's seed (its own `--seed` in a prompt file, else --seed plus the
// prompt's position in the file, else a random seed), which is always printed and stored in the
// PNG, so any image can be regenerated alone.
//
// Ctrl-C or SIGTERM during the loop stops it at the next UNet call, VAE decode or prompt
// (app/signals.hpp): the image in progress is dropped, those written stay, and a rerun with
// --skip-existing resumes. Before the loop nothing has been written, so a signal there simply
// ends the process.
#include <sys/resource.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string_view>

#include "app/commands.hpp"
#include "app/cpu_device.hpp"
#include "app/generate_options.hpp"
#include "app/model_hash.hpp"
#include "app/output_paths.hpp"
#include "app/png_writer.hpp"
#include "app/profile_report.hpp"
#include "app/progress.hpp"
#include "app/prompt_file.hpp"
#include "app/signals.hpp"
#include "kernels/cuda_backend.hpp"
#include "kernels/device_info.hpp"
#include "lib/core/error.hpp"
#include "lib/pipeline/txt2img.hpp"
#include "weights/file_io.hpp"
#include "weights/safetensors.hpp"

namespace sdgen::app {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// "6G", "3500M", "512K" or a byte count; binary units, as GPU memory is quoted.
std::optional<std::size_t> parse_memory_size(const std::string& text) {
  if (text.empty()) return std::nullopt;
  std::size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  const std::string unit = text.substr(digits);
  const int shift = unit.empty() ? 0 : unit == "K" ? 10 : unit == "M" ? 20 : unit == "G" ? 30 : -1;
  if (digits == 0 || digits > 12 || shift < 0)
    throw UsageError(cat("--max-vram ", text, ": expected a size such as 6G, 3500M or a number of bytes"));
  return std::stoull(text.substr(0, digits)) << shift;
}

// SDGEN_CUDA_GRAPHS=0 turns off the denoising loop's graph capture (docs/gpu.md, "When a GPU run
// fails"): a debugging switch, like CUDA_LAUNCH_BLOCKING, so an environment variable and not an
// option.
CudaGraphs cuda_graphs_from_environment() {
  const char* value = std::getenv("SDGEN_CUDA_GRAPHS");
  if (value == nullptr || std::string_view(value) == "1") return CudaGraphs::Capture;
  if (std::string_view(value) == "0") return CudaGraphs::Off;
  throw UsageError(cat("SDGEN_CUDA_GRAPHS='", value, "': expected 1 (capture the denoising step, the default) or 0"));
}

// The backend, and the precision it computes in as --dtype spells it.
struct ChosenBackend {
  std::unique_ptr<Backend> backend;
  std::string dtype;
};

// --device auto: the GPU when this build has CUDA and one is usable, else the CPU. --dtype's
// default is the device's: fp32 on the CPU, fp16 on a GPU; bf16 runs on both.
ChosenBackend make_backend(const GenerateOptions& o) {
  const bool cuda = o.device == "cuda" || (o.device == "auto" && !query_gpus().gpus.empty());
  const auto max_vram = parse_memory_size(o.max_vram);
  if (cuda) {
    const std::string dtype = o.dtype.empty() ? "fp16" : o.dtype;
    if (dtype == "fp32")
      throw UsageError("--dtype fp32 is a CPU option (--device cpu): a GPU computes in fp16 or bf16");
    return {make_cuda_backend({.storage = dtype == "bf16" ? DType::BF16 : DType::F16,
                               .graphs = cuda_graphs_from_environment(),
                               .memory_limit = max_vram}),
            dtype};
  }
  if (max_vram) throw UsageError("--max-vram limits GPU memory: it needs --device cuda (or a GPU for --device auto)");
  const std::string dtype = o.dtype.empty() ? "fp32" : o.dtype;
  if (dtype == "fp16")
    throw UsageError("--dtype fp16 is a GPU option (--device cuda): the CPU computes in fp32 or bf16");
  return {make_cpu_backend(CpuBackendOptions{.threads = o.threads, .compute = dtype == "bf16" ? DType::BF16 : DType::F32}),
          dtype};
}

// One prompt to run, from the command line or a prompt file.
struct Job {
  std::string prompt;
  std::string negative;
  std::uint64_t seed = 0;
  int steps = 0;
  double cfg = 0;
  std::size_t item = 0;
};

void write_dump(const std::string& path, const pipeline::Dump& dump) {
  std::vector<weights::TensorToWrite> tensors;
  for (const auto& [name, t] : dump) {
    std::vector<std::int64_t> shape;
    for (int i = 0; i < t.shape.rank(); ++i) shape.push_back(t.shape[i]);
    tensors.push_back({name, DType::F32, shape, std::as_bytes(std::span(t.values))});
  }
  weights::write_safetensors(path, tensors, {{"producer", "sdgen"}});
}

double peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) * 1024.0;  // Linux reports KiB
}

void run_generate(const GenerateOptions& o) {
  const auto total_start = Clock::now();
  // ---- everything that can be wrong with the request, before the heavy work
  const auto algorithm = schedulers::algorithm_from_name(o.scheduler);
  const bool from_file = !o.prompts_file.empty();
  if (from_file == !o.prompt.empty())
    throw UsageError(from_file ? "give either a prompt or --prompts FILE, not both" : "no prompt: give a prompt or --prompts FILE");
  if (!o.output.empty() && !o.outdir.empty()) throw UsageError("give -o FILE or --outdir DIR, not both");
  if (from_file && !o.output.empty()) throw UsageError("--prompts writes many images: use --outdir DIR instead of -o");
  const Shard shard = parse_shard(o.shard);
  if (from_file) {
    const auto summary = check_prompt_file(o.prompts_file, shard);  // streams the file once: bad lines fail now
    if (summary.in_shard == 0) throw UsageError(cat(o.prompts_file, ": no prompts", shard.count > 1 ? " in this shard" : ""));
  }
  OutputNamer namer = !o.output.empty()  ? OutputNamer::to_file(o.output, o.batch)
                      : from_file        ? OutputNamer::by_prompt_position(o.outdir.empty() ? "." : o.outdir, o.batch)
                                         : OutputNamer::running_numbers(o.outdir.empty() ? "." : o.outdir, o.batch);
  const ExistingFiles existing = o.overwrite ? ExistingFiles::Overwrite
                                 : o.skip_existing ? ExistingFiles::Skip
                                                   : ExistingFiles::Refuse;
  const std::uint64_t base_seed = o.seed ? *o.seed : std::random_device{}();

  auto load_start = Clock::now();
  const auto model = weights::open_model(o.model->open_options());  // maps files and reads configs: cheap
  const int width = o.width ? o.width : 8 * model.unet.sample_size;
  const int height = o.height ? o.height : 8 * model.unet.sample_size;
  const auto request_for = [&](const Job& job) {
    pipeline::GenerateRequest request{.prompt = job.prompt,
                                      .negative_prompt = job.negative,
                                      .width = width,
                                      .height = height,
                                      .steps = job.steps,
                                      .guidance_scale = job.cfg,
                                      .seed = job.seed,
                                      .batch = o.batch,
                                      .scheduler = algorithm,
                                      .scheduler_options = {.eta = o.eta},
                                      .clip_skip = {o.clip_skip - 1}};
    if (o.karras) request.scheduler_options.use_karras_sigmas = true;
    return request;
  };
  const auto command_line_request = request_for(Job{.prompt = o.prompt, .steps = o.steps, .cfg = o.cfg});
  pipeline::validate_request(model, command_line_request);
  const ChosenBackend chosen = make_backend(o);
  const std::unique_ptr<Backend>& backend = chosen.backend;
  pipeline::Pipeline pipe(model, *backend);  // checks every tensor and converts the weights
  const auto identity = identify_model(model);
  const double load_seconds = seconds_since(load_start);

  ProfileReport report{.model_load = load_seconds,
                       .device = std::string(backend->name()),
                       .dtype = chosen.dtype,
                       .request = {.width = width,
                                   .height = height,
                                   .batch = o.batch,
                                   .steps = o.steps,
                                   .scheduler = o.scheduler,
                                   .cfg = o.cfg},
                       .plan = pipe.plan_memory(command_line_request)};
  const auto write_json = [&](const nlohmann::json& json) {
    const auto text = json.dump(2) + "\n";
    weights::write_file_atomically(o.json, std::as_bytes(std::span(text)));
  };
  if (o.dry_run) {
    std::fputs(report.plan_table().c_str(), stdout);
    if (!o.json.empty()) write_json(report.plan_json());
    return;
  }

  ProgressReporter progress(progress_style_for(stderr, o.quiet ? Verbosity::Quiet : Verbosity::Normal));
  std::size_t images_written = 0;
  std::vector<Job> pending;
  auto next_job = [&, reader = from_file ? std::make_unique<PromptFileReader>(o.prompts_file, shard) : nullptr,
                   done = false]() mutable -> std::optional<Job> {
    if (!reader) {
      if (done) return std::nullopt;
      done = true;
      return Job{o.prompt, o.negative, base_seed, o.steps, o.cfg, 0};
    }
    const auto entry = reader->next();
    if (!entry) return std::nullopt;
    const auto& s = entry->settings;
    return Job{entry->prompt, s.negative_prompt.value_or(o.negative), s.seed.value_or(base_seed + entry->item),
               s.steps.value_or(o.steps), s.cfg_scale.value_or(o.cfg), entry->item};
  };
  std::size_t image_index = 0;
  bool dumped = false;
  // Lives to the end of the run: a signal after the last image has nothing left to abandon, and the
  // report below is written whole rather than cut off.
  const InterruptHandler interrupt_handler;
  while (const auto job = next_job()) {
    throw_if_interrupted();
    const auto paths = namer.paths(job->item, job->prompt);
    if (resolve_existing(paths, existing) == PromptAction::Skip) {
      progress.message(cat("skipped (exists): ", paths.front().string()));
      continue;
    }
    const auto request = request_for(*job);
    auto scheduler_options = request.scheduler_options;
    scheduler_options.steps = job->steps;
    const schedulers::Scheduler scheduler(algorithm, model.scheduler, scheduler_options);
    if (!o.quiet) std::fprintf(stderr, "seed: %llu\n", static_cast<unsigned long long>(job->seed));
    progress.start_image(++image_index, 0, scheduler.num_calls());
    pipeline::Dump dump;
    const bool dump_this = !o.dump.empty() && !dumped;
    const auto images = pipe.generate(request, [&](int done, int) { progress.step(done); }, dump_this ? &dump : nullptr,
                                     [] { return interrupted(); });
    const auto png_start = Clock::now();
    const GenerationParameters params{.prompt = job->prompt,
                                      .negative_prompt = job->negative,
                                      .steps = job->steps,
                                      .sampler = a1111_sampler(algorithm, scheduler.config()),
                                      .cfg_scale = job->cfg,
                                      .seed = job->seed,
                                      .width = width,
                                      .height = height,
                                      .model_hash = identity.short_hash,
                                      .model_name = identity.name,
                                      .clip_skip = o.clip_skip};
    const auto text = format_parameters(params);
    for (std::size_t i = 0; i < images.rgb.size(); ++i) {
      write_png(paths[i], {.width = width, .height = height, .pixels = images.rgb[i]}, text);
      progress.image_written(paths[i]);
      ++images_written;
    }
    report.add_run(images.seconds, images.rgb.size(), seconds_since(png_start));
    if (dump_this) {
      write_dump(o.dump, dump);
      dumped = true;
    }
  }
  report.total = seconds_since(total_start);
  report.peak_host_bytes = peak_rss_bytes();
  report.weight_bytes = static_cast<double>(pipe.weight_bytes());
  report.peak_device_bytes = static_cast<double>(backend->peak_device_bytes());
  report.peak_device_used_bytes = static_cast<double>(backend->peak_device_used_bytes());
  if (o.profile) std::fputs(report.table().c_str(), stdout);
  if (!o.json.empty()) write_json(report.json());
  std::fprintf(stderr, "%s\n", report.summary_line(images_written).c_str());
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto o = add_generate_options(app);
  app.callback([o, &app] {
    if (app.get_subcommands().empty()) run_generate(*o);
  });
}

}  // namespace sdgen::app
