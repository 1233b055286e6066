// What --profile prints (and --json writes), and the one summary line every run ends with.
//
// One UNet iteration is one UNet call on the whole guidance batch (both halves of classifier-free
// guidance), the convention of the published figures sdgen is compared with. Step times include
// the scheduler update; their minimum and median are reported because the first step also pays
// for one-time work (weight re-layouts, page faults).
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lib/pipeline/txt2img.hpp"

namespace sdgen::app {

// The command line's request (a prompt file's lines may set other steps or cfg for themselves).
struct RequestSummary {
  int width = 0, height = 0, batch = 0, steps = 0;
  std::string scheduler;
  double cfg = 0;
};

struct ProfileReport {
  double model_load = 0;
  std::string device;
  std::string dtype;
  RequestSummary request;
  pipeline::MemoryPlan plan;  // the request's, planned before it ran
  double tokenize = 0;
  double text_encode = 0;
  std::vector<double> steps;  // every UNet call of every run
  double vae_decode = 0;
  double png_write = 0;
  std::size_t images = 0;
  double total = 0;
  double peak_host_bytes = 0;
  double peak_device_bytes = 0;       // the allocator's high-water mark; 0 when computing in host memory
  double peak_device_used_bytes = 0;  // the driver's (cudaMemGetInfo), CUDA context included
  double weight_bytes = 0;

  void add_run(const pipeline::StageSeconds& seconds, std::size_t images_in_run, double png_seconds);
  double median_step() const;
  double min_step() const;
  double unet_iterations_per_second() const;  // 1 / median step
  std::string table() const;
  nlohmann::json json() const;
  // What --dry-run prints and writes: the request and its memory plan only.
  std::string plan_table() const;
  nlohmann::json plan_json() const;
  // "wrote 4 images, 12.3 s/image, UNet 0.82 it/s, peak memory 2.41 GB (host RSS)"
  std::string summary_line(std::size_t images_written) const;
};

}  // namespace sdgen::app
