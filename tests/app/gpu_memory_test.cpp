// Running out of GPU memory, through the command line: sdgen-emulated-gpu is the real command
// linked with the emulated CUDA backend (the backend's own source, its kernels on the CUDA
// emulator, its device memory counted as on a GPU), so --device cuda and --max-vram take the same
// path they take on a GPU, down to the allocator that refuses.
//
// The cap is measured, not guessed: a first run reports the peak device memory of a small request
// (--json), and a larger request under that cap must fail with one line that names what would fit,
// leave no image behind, and the advised request must then run under the same cap. The advice is
// planned (the shape-only passes of the UNet step and the VAE decode, and their ops' scratch), so
// this is where a plan that forgot some memory shows: the advice would not fit.
#include <catch2/catch.hpp>

#include <fstream>
#include <regex>

#include "nlohmann/json.hpp"
#include "tests/app/run_sdgen.hpp"
#include "tests/app/temp_dir.hpp"

using sdgen::test::quoted;
using sdgen::test::run_sdgen;
using sdgen::test::TempDir;
namespace fs = std::filesystem;

namespace {

std::string tiny() { return " -m " + quoted(sdgen::test::data_dir() / "models" / "tiny"); }

sdgen::test::Run run_emulated(const std::string& args) {
  return run_sdgen("'a red cube' --device cuda --steps 1 --seed 7 --quiet" + tiny() + " " + args,
                   sdgen::test::sdgen_emulated_gpu_binary());
}

std::size_t files_in(const fs::path& dir) {
  return static_cast<std::size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

// What a 64x64 batch of 2 needs on the emulated GPU, as its --json report says: the peak device
// memory, and the weights (with the backend's workspaces) held from loading on.
struct SmallRun {
  long long peak_kib = 0, weight_kib = 0;
};

SmallRun run_small_request() {
  TempDir dir;
  const auto small = run_emulated("-W 64 -H 64 --batch 2 -o " + quoted(dir.path / "small.png") + " --json " +
                                  quoted(dir.path / "small.json"));
  INFO(small.output);
  REQUIRE(small.exit_code == 0);
  const auto report = nlohmann::json::parse(std::ifstream(dir.path / "small.json"));
  const auto peak = report.at("peak_device_bytes").get<double>();
  const auto weights = report.at("weight_bytes").get<double>();
  REQUIRE(peak > weights);
  REQUIRE(weights > 0);
  CHECK(report.at("peak_device_used_bytes").get<double>() > 0);  // the driver's count, sampled
  return {static_cast<long long>(peak) / 1024, static_cast<long long>(weights) / 1024};
}

// Measured once per process: the test cases below share it.
const SmallRun& measure_small_run() {
  static const SmallRun measured = run_small_request();
  return measured;
}

}  // namespace

TEST_CASE("out of GPU memory: one line that says what fits, and what it says fits runs", "[app][gpu-memory]") {
  // What the small request needed, plus 1 MiB: its own size fits, four times its pixels cannot.
  const std::string cap = " --max-vram " + std::to_string(measure_small_run().peak_kib + 1024) + "K";

  TempDir out;
  const auto refused = run_emulated("-W 128 -H 128 --batch 2 --outdir " + quoted(out.path) + cap);
  INFO(refused.output);
  CHECK(refused.exit_code != 0);
  CHECK_THAT(refused.output, Catch::Contains("sdgen: error: out of device memory") &&
                                 Catch::Contains("allowed by --max-vram") && Catch::Contains("What would fit: "));
  CHECK_THAT(refused.output, !Catch::Contains("cuda: ") && !Catch::Contains("CUDA error"));
  CHECK(std::count(refused.output.begin(), refused.output.end(), '\n') == 1);  // the one error line
  CHECK(files_in(out.path) == 0);

  // Every alternative the advice names runs under the same cap.
  const std::regex smaller_batch("--batch (\\d+) fits at (\\d+)x(\\d+)"), smaller_size("(\\d+)x(\\d+) fits at --batch (\\d+)");
  std::vector<std::string> advised;
  if (std::smatch m; std::regex_search(refused.output, m, smaller_batch))
    advised.push_back("-W " + m[2].str() + " -H " + m[3].str() + " --batch " + m[1].str());
  if (std::smatch m; std::regex_search(refused.output, m, smaller_size))
    advised.push_back("-W " + m[1].str() + " -H " + m[2].str() + " --batch " + m[3].str());
  REQUIRE(!advised.empty());
  for (const std::string& args : advised) {
    TempDir fits;
    const auto run = run_emulated(args + " --outdir " + quoted(fits.path) + cap);
    INFO(args << "\n" << run.output);
    CHECK(run.exit_code == 0);
    CHECK(files_in(fits.path) > 0);
  }
}

TEST_CASE("out of GPU memory on a full GPU, without --max-vram: the same advice", "[app][gpu-memory]") {
  // The emulated GPU's own size (SDGEN_EMULATED_GPU_MEMORY): cudaMalloc itself fails, as on a GPU
  // that other processes fill. The small request's peak plus 1 MiB holds the tiny model's weights
  // and sdgen's workspaces, and not a 128x128 batch of 2.
  const std::string gpu_size = std::to_string(measure_small_run().peak_kib + 1024) + "K";
  ::setenv("SDGEN_EMULATED_GPU_MEMORY", gpu_size.c_str(), 1);
  TempDir out;
  const auto refused = run_emulated("-W 128 -H 128 --batch 2 --outdir " + quoted(out.path));
  ::unsetenv("SDGEN_EMULATED_GPU_MEMORY");
  INFO(refused.output);
  CHECK(refused.exit_code != 0);
  CHECK_THAT(refused.output, Catch::Contains("sdgen: error: out of device memory") &&
                                 Catch::Contains("but the GPU has") && Catch::Contains("What would fit: "));
  CHECK(files_in(out.path) == 0);
}

TEST_CASE("--max-vram below the model's weights: nothing can run, and the error says so", "[app][gpu-memory]") {
  // 1 MiB less than the weights and the workspaces allocated before them.
  const std::string cap = " --max-vram " + std::to_string(measure_small_run().weight_kib - 1024) + "K";
  TempDir out;
  const auto refused = run_emulated("--outdir " + quoted(out.path) + cap);
  INFO(refused.output);
  CHECK(refused.exit_code != 0);
  CHECK_THAT(refused.output, Catch::Contains("more for the model's weights") &&
                                 Catch::Contains("no smaller image or batch can run"));
  CHECK(files_in(out.path) == 0);
}

// The memory plan (Pipeline::plan_memory) is what --dry-run prints and --json reports, and what the
// out-of-memory advice plans with. It counts every allocation a run makes after loading (the
// stages' arenas and scratch, the context, latents and the loop's table, each rounded to 256 bytes
// as cudaMalloc's), so the allocator's measured peak must equal it exactly: once where the VAE
// decode sets the peak (64x64, batch 2) and once where the denoising loop does (32x32, batch 4,
// Euler ancestral's noise buffer). The text encoder's own stage needs less at these sizes.
// --dry-run loads the model, prints the plan and writes no image.
// With --dtype bf16 the same request takes the same memory (bf16 is 2 bytes, as fp16), and the
// profile names the precision.
TEST_CASE("the memory plan: --dry-run shows it, and a run's measured peak equals it", "[app][gpu-memory]") {
  double fp16_peak_at_64 = 0;  // the first request's plan, which its bf16 twin must equal
  for (const std::string args :
       {"-W 64 -H 64 --batch 2", "-W 32 -H 32 --batch 4 --scheduler euler_a", "-W 64 -H 64 --batch 2 --dtype bf16"}) {
    INFO(args);
    const std::string dtype = args.ends_with("bf16") ? "bf16" : "fp16";
    TempDir dir;
    fs::create_directory(dir.path / "images");
    const auto plan = run_emulated(args + " --dry-run --outdir " + quoted(dir.path / "images") + " --json " +
                                   quoted(dir.path / "plan.json"));
    INFO(plan.output);
    REQUIRE(plan.exit_code == 0);
    CHECK_THAT(plan.output, Catch::Contains("memory plan (cuda, " + dtype + ")") && Catch::Contains("planned memory"));
    CHECK(files_in(dir.path / "images") == 0);
    const auto planned = nlohmann::json::parse(std::ifstream(dir.path / "plan.json"));

    const auto run = run_emulated(args + " --outdir " + quoted(dir.path / "images") + " --json " +
                                  quoted(dir.path / "run.json"));
    INFO(run.output);
    REQUIRE(run.exit_code == 0);
    const auto measured = nlohmann::json::parse(std::ifstream(dir.path / "run.json"));
    const auto peak = planned.at("planned_peak_bytes").get<double>();
    CHECK(peak == planned.at("planned_weight_bytes").get<double>() +
                      std::max(planned.at("planned_denoising_bytes").get<double>(),
                               planned.at("planned_decode_bytes").get<double>()));
    CHECK(measured.at("planned_peak_bytes").get<double>() == peak);
    CHECK(measured.at("peak_device_bytes").get<double>() == peak);
    CHECK(measured.at("dtype").get<std::string>() == dtype);
    if (dtype == "bf16") CHECK(peak == fp16_peak_at_64);
    if (args == "-W 64 -H 64 --batch 2") fp16_peak_at_64 = peak;
  }
}
