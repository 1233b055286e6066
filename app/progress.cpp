// The progress reporter's formatting; see progress.hpp.
#include "app/progress.hpp"

#include <unistd.h>

#include <chrono>
#include <cmath>

#include "lib/core/error.hpp"

namespace sdgen::app {

namespace {

constexpr int kBarWidth = 20;
// Erases from the cursor to the end of the line, so a shorter redraw leaves no tail behind.
constexpr std::string_view kClearToEnd = "\033[K";

std::string fixed(double v, int decimals) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.*f", decimals, v);
  return buffer;
}

// 0:07, 12:30, 1:02:03
std::string clock_time(double seconds) {
  const auto total = static_cast<long long>(std::llround(seconds));
  char buffer[32];
  if (total >= 3600)
    std::snprintf(buffer, sizeof buffer, "%lld:%02lld:%02lld", total / 3600, total / 60 % 60, total % 60);
  else
    std::snprintf(buffer, sizeof buffer, "%lld:%02lld", total / 60, total % 60);
  return buffer;
}

}  // namespace

ProgressStyle progress_style_for(std::FILE* stream, Verbosity verbosity) {
  if (verbosity == Verbosity::Quiet) return ProgressStyle::Quiet;
  return ::isatty(::fileno(stream)) ? ProgressStyle::Bar : ProgressStyle::Lines;
}

ProgressReporter::ProgressReporter(ProgressStyle style, Sink sink, Clock clock)
    : style_(style), sink_(std::move(sink)), clock_(std::move(clock)) {
  if (!sink_)
    sink_ = [](std::string_view text) {
      std::fwrite(text.data(), 1, text.size(), stderr);
      std::fflush(stderr);
    };
  if (!clock_)
    clock_ = [] {
      return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
    };
}

std::string ProgressReporter::prefix() const {
  return image_count_ > 1 ? cat("[image ", image_, "/", image_count_, "] ") : std::string();
}

std::string ProgressReporter::rate_and_eta(int done) const {
  const double elapsed = clock_() - image_start_;
  if (done == 0 || !(elapsed > 0)) return "? it/s  ETA ?";
  const double rate = done / elapsed;
  const std::string speed = rate >= 1 ? fixed(rate, 2) + " it/s" : fixed(1 / rate, 2) + " s/it";
  return cat(speed, "  ETA ", clock_time((unet_calls_ - done) / rate));
}

void ProgressReporter::clear_bar() {
  if (bar_drawn_) sink_(cat("\r", kClearToEnd));
  bar_drawn_ = false;
}

void ProgressReporter::start_image(std::size_t image, std::size_t image_count, int unet_calls) {
  image_ = image;
  image_count_ = image_count;
  unet_calls_ = unet_calls;
  image_start_ = clock_();
  step(0);
}

void ProgressReporter::step(int done) {
  done_ = done;
  switch (style_) {
    case ProgressStyle::Quiet: return;
    case ProgressStyle::Bar: {
      const int filled = unet_calls_ > 0 ? kBarWidth * done / unet_calls_ : 0;
      sink_(cat("\r", prefix(), "[", std::string(std::size_t(filled), '#'),
                std::string(std::size_t(kBarWidth - filled), '.'), "] ", done, "/", unet_calls_, "  ",
                rate_and_eta(done), kClearToEnd));
      bar_drawn_ = true;
      return;
    }
    case ProgressStyle::Lines:
      // A line each time another tenth of the steps is done (every step when there are fewer).
      if (done > 0 && unet_calls_ > 0 && done * 10 / unet_calls_ > (done - 1) * 10 / unet_calls_)
        sink_(cat(prefix(), "step ", done, "/", unet_calls_, " (", done * 100 / unet_calls_, "%)  ",
                  rate_and_eta(done), "\n"));
      return;
  }
}

void ProgressReporter::image_written(const std::filesystem::path& path) {
  if (style_ == ProgressStyle::Quiet) return;
  const std::string line = cat(prefix(), "wrote ", path.string(), " (", fixed(clock_() - image_start_, 1), " s)");
  clear_bar();
  sink_(line + "\n");
}

void ProgressReporter::message(std::string_view line) {
  if (style_ == ProgressStyle::Quiet) return;
  const bool redraw = bar_drawn_;
  clear_bar();
  sink_(cat(line, "\n"));
  if (redraw) step(done_);
}

}  // namespace sdgen::app
