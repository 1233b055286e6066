// Progress while images are generated, on stderr (stdout stays for what a command outputs).
//
// Three styles, chosen by where stderr goes:
//
//   * Bar (a terminal): one line redrawn in place with "\r" after every UNet call,
//         [image 2/10] [########............] 12/25  1.85 it/s  ETA 0:07
//     (tqdm's habit of "s/it" below one iteration per second: a full-size step on a CPU takes
//     seconds, and "7.12 s/it" reads better than "0.14 it/s");
//   * Lines (a pipe or a log file, where "\r" makes a mess): a line each time the image passes
//     another tenth of its steps, and one when it is written,
//         [image 2/10] step 13/25 (52%)  1.85 it/s  ETA 0:06
//         [image 2/10] wrote out/00002-a-red-fox.png (13.6 s)
//   * Quiet (--quiet): nothing.
//
// One iteration is one UNet call on the whole guidance batch, as the run summary counts them.
// Rates run from the image's first step, so the first image's rate includes warm-up (planning,
// first-touch of the weights); later images show the steady rate. The "[image i/n]" prefix is
// left out when the run makes one image.
//
// Time comes from an injected clock and text goes to an injected sink, so the formatting is
// tested without a terminal and without sleeping.
#pragma once

#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

namespace sdgen::app {

enum class ProgressStyle { Bar, Lines, Quiet };

enum class Verbosity { Normal, Quiet };

// Bar when `stream` is a terminal, Lines otherwise; Quiet when asked.
ProgressStyle progress_style_for(std::FILE* stream, Verbosity verbosity);

class ProgressReporter {
 public:
  using Sink = std::function<void(std::string_view)>;  // receives text exactly as it is to appear
  using Clock = std::function<double()>;               // seconds, monotonic

  // Defaults: stderr, flushed after every write; std::chrono::steady_clock.
  explicit ProgressReporter(ProgressStyle style, Sink sink = {}, Clock clock = {});

  // Image `image` (1-based) of `image_count` starts; it will take `unet_calls` UNet calls.
  void start_image(std::size_t image, std::size_t image_count, int unet_calls);
  // `done` UNet calls of the current image have finished (1 .. unet_calls).
  void step(int done);
  // The current image was written to `path`.
  void image_written(const std::filesystem::path& path);
  // A line of its own ("skipped: ... exists"), printed without tearing the bar; not with Quiet.
  void message(std::string_view line);

 private:
  std::string prefix() const;
  std::string rate_and_eta(int done) const;
  void clear_bar();

  ProgressStyle style_;
  Sink sink_;
  Clock clock_;
  std::size_t image_ = 0;
  std::size_t image_count_ = 0;
  int unet_calls_ = 0;
  int done_ = 0;
  double image_start_ = 0;
  bool bar_drawn_ = false;  // a bar line is on screen without its newline
};

}  // namespace sdgen::app
