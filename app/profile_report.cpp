#include "app/profile_report.hpp"

#include <algorithm>
#include <cstdio>

#include "lib/core/error.hpp"

namespace sdgen::app {

namespace {

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string row(const std::string& label, const std::string& value) {
  std::string line = "  " + label;
  line.resize(std::max<std::size_t>(line.size() + 1, 28), ' ');
  return line + value + "\n";
}

std::string megabytes(std::size_t bytes) { return fixed(static_cast<double>(bytes) / 1e6, 1) + " MB"; }

std::string describe(const RequestSummary& r) {
  return cat(r.width, "x", r.height, ", batch ", r.batch, ", ", r.scheduler, ", ", r.steps, " steps, cfg ",
             fixed(r.cfg, 1));
}

// "planned memory" and its parts, as rows.
std::string plan_rows(const pipeline::MemoryPlan& p) {
  return row("planned memory", megabytes(p.peak())) + row("  weights, workspaces", megabytes(p.weights)) +
         row("  denoising", megabytes(p.denoising)) + row("  VAE decode", megabytes(p.decoding));
}

nlohmann::json request_json(const RequestSummary& r) {
  return {{"width", r.width}, {"height", r.height}, {"batch", r.batch},
          {"steps", r.steps}, {"scheduler", r.scheduler}, {"cfg", r.cfg}};
}

nlohmann::json plan_fields(const pipeline::MemoryPlan& p) {
  return {{"planned_peak_bytes", p.peak()},
          {"planned_weight_bytes", p.weights},
          {"planned_denoising_bytes", p.denoising},
          {"planned_decode_bytes", p.decoding}};
}

}  // namespace

void ProfileReport::add_run(const pipeline::StageSeconds& s, std::size_t images_in_run, double png_seconds) {
  tokenize += s.tokenize;
  text_encode += s.text_encode;
  steps.insert(steps.end(), s.steps.begin(), s.steps.end());
  vae_decode += s.vae_decode;
  png_write += png_seconds;
  images += images_in_run;
}

double ProfileReport::median_step() const {
  if (steps.empty()) return 0;
  auto sorted = steps;
  std::sort(sorted.begin(), sorted.end());
  const auto n = sorted.size();
  return n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

double ProfileReport::min_step() const { return steps.empty() ? 0 : *std::min_element(steps.begin(), steps.end()); }

double ProfileReport::unet_iterations_per_second() const {
  const double m = median_step();
  return m > 0 ? 1.0 / m : 0;
}

std::string ProfileReport::table() const {
  std::string t = cat("profile (", device, ", ", dtype, ")\n");
  t += row("request", describe(request));
  t += row("model load", fixed(model_load, 3) + " s");
  t += row("tokenize", fixed(tokenize * 1e3, 2) + " ms");
  t += row("text encode", fixed(text_encode, 3) + " s");
  t += row("denoising steps", cat(steps.size(), " calls, min ", fixed(min_step(), 3), " s, median ", fixed(median_step(), 3), " s"));
  t += row("UNet it/s", fixed(unet_iterations_per_second(), 3));
  t += row("VAE decode", fixed(vae_decode, 3) + " s");
  t += row("PNG write", fixed(png_write, 3) + " s");
  t += row("total", fixed(total, 3) + " s");
  t += row("images", cat(images));
  t += row("weights", fixed(weight_bytes / 1e9, 3) + " GB");
  t += row("peak host RSS", fixed(peak_host_bytes / 1e9, 3) + " GB");
  if (peak_device_bytes > 0) t += row("peak device memory", fixed(peak_device_bytes / 1e9, 3) + " GB");
  if (peak_device_used_bytes > 0)
    t += row("  as the driver sees it", fixed(peak_device_used_bytes / 1e9, 3) + " GB (cudaMemGetInfo: with the CUDA context)");
  return t + plan_rows(plan);
}

std::string ProfileReport::plan_table() const {
  return cat("memory plan (", device, ", ", dtype, ")\n") + row("request", describe(request)) + plan_rows(plan);
}

nlohmann::json ProfileReport::plan_json() const {
  nlohmann::json j = {{"device", device}, {"dtype", dtype}, {"request", request_json(request)}};
  j.update(plan_fields(plan));
  return j;
}

nlohmann::json ProfileReport::json() const {
  nlohmann::json j = {{"device", device},
          {"dtype", dtype},
          {"request", request_json(request)},
          {"model_load_s", model_load},
          {"tokenize_s", tokenize},
          {"text_encode_s", text_encode},
          {"step_s", steps},
          {"step_min_s", min_step()},
          {"step_median_s", median_step()},
          {"unet_it_per_s", unet_iterations_per_second()},
          {"vae_decode_s", vae_decode},
          {"png_write_s", png_write},
          {"total_s", total},
          {"images", images},
          {"weight_bytes", weight_bytes},
          {"peak_host_rss_bytes", peak_host_bytes},
          {"peak_device_bytes", peak_device_bytes},
          {"peak_device_used_bytes", peak_device_used_bytes}};
  j.update(plan_fields(plan));
  return j;
}

std::string ProfileReport::summary_line(std::size_t images_written) const {
  const double per_image = images ? (total - model_load) / static_cast<double>(images) : 0;
  return cat("wrote ", images_written, images_written == 1 ? " image" : " images", ", ", fixed(per_image, 2),
             " s/image, UNet ", fixed(unet_iterations_per_second(), 3), " it/s, peak memory ",
             peak_device_bytes > 0 ? cat(fixed(peak_device_bytes / 1e9, 2), " GB (device), ") : std::string(),
             fixed(peak_host_bytes / 1e9, 2), " GB (host RSS)");
}

}  // namespace sdgen::app
