#include "app/generate_options.hpp"

#include "lib/schedulers/scheduler.hpp"

namespace sdgen::app {

std::shared_ptr<GenerateOptions> add_generate_options(CLI::App& app) {
  auto o = std::make_shared<GenerateOptions>();
  o->model = add_model_options(app);
  app.add_option("prompt", o->prompt, "What to draw");
  app.add_option("-n,--negative", o->negative, "What not to draw (negative prompt)");
  app.add_option("--prompts", o->prompts_file,
                 "A prompt file: one prompt per line, optionally followed by --neg \"...\" --seed N --steps N "
                 "--cfg X (see examples/prompts.txt); # comments and blank lines are skipped");
  app.add_option("--shard", o->shard, "K/N: run only every N-th prompt of --prompts, starting at K (0-based)");
  app.add_option("-o,--output", o->output, "Output PNG (with --batch > 1: NAME-1.png, NAME-2.png, ...)");
  app.add_option("--outdir", o->outdir, "Output directory for numbered PNGs (default: the current directory)");
  app.add_flag("--overwrite", o->overwrite, "Replace existing output files");
  app.add_flag("--skip-existing", o->skip_existing, "Skip prompts whose images already exist (resume a prompt file)");
  app.add_option("--steps", o->steps, "Inference steps")->capture_default_str();
  app.add_option("--cfg", o->cfg, "Classifier-free guidance scale (<= 1 turns guidance off)")->capture_default_str();
  app.add_option("--seed", o->seed, "Random seed (default: a random one, printed)");
  app.add_option("--scheduler", o->scheduler, "One of: " + schedulers::algorithm_name_list())->capture_default_str();
  app.add_flag("--karras", o->karras, "Karras sigmas (dpm++2m, euler, lms)");
  app.add_option("--eta", o->eta, "DDIM's noise weight (0: deterministic)")->capture_default_str();
  app.add_option("-W,--width", o->width, "Image width in pixels, a multiple of 8 (default: the model's native size)");
  app.add_option("-H,--height", o->height, "Image height in pixels, a multiple of 8 (default: the model's native size)");
  app.add_option("--batch", o->batch, "Images per prompt")->capture_default_str();
  app.add_option("--device", o->device, "Where to compute")->check(CLI::IsMember({"auto", "cpu", "cuda"}))->capture_default_str();
  app.add_option("--max-vram", o->max_vram,
                 "GPU memory sdgen may use, weights included, e.g. 6G or 3500M (default: all of it)");
  app.add_option("--threads", o->threads, "CPU threads (default: all cores)");
  app.add_option("--dtype", o->dtype,
                 "Precision: on the CPU fp32 (default) or bf16 (about twice as fast on AVX512-BF16 CPUs); on a GPU "
                 "fp16 (default) or bf16 (fp32's range, for models whose activations overflow fp16)")
      ->check(CLI::IsMember({"fp32", "fp16", "bf16"}));
  app.add_option("--clip-skip", o->clip_skip, "Use the output of the N-th last text-encoder layer (1: the last)")
      ->capture_default_str();
  app.add_flag("-q,--quiet", o->quiet, "No progress output");
  app.add_flag("--profile", o->profile, "Print per-stage times, UNet iterations/s and peak memory");
  app.add_flag("--dry-run", o->dry_run,
               "Load the model and print the memory the request would need (weights, denoising, VAE decode); "
               "generate nothing");
  app.add_option("--json", o->json, "Also write the profile (with --dry-run: the memory plan) as JSON to this file");
  app.add_option("--dump", o->dump, "Save the first image's intermediate tensors (diffusers' names) to this .safetensors file");
  return o;
}

}  // namespace sdgen::app
