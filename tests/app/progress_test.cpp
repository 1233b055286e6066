// The progress reporter's text, through a string sink and a clock the test moves by hand.
#include "app/progress.hpp"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

namespace {

using sdgen::app::ProgressReporter;
using sdgen::app::ProgressStyle;

struct Capture {
  std::string text;
  double now = 100.0;
  ProgressReporter reporter(ProgressStyle style) {
    return ProgressReporter(style, [this](std::string_view s) { text += s; }, [this] { return now; });
  }
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (std::size_t nl = text.find('\n'); nl != std::string::npos; nl = text.find('\n', start)) {
    out.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  CHECK(start == text.size());  // every line ends
  return out;
}

}  // namespace

TEST_CASE("piped progress: a line per tenth of the steps and one per image written", "[progress]") {
  Capture c;
  auto p = c.reporter(ProgressStyle::Lines);
  p.start_image(2, 10, 25);
  for (int k = 1; k <= 25; ++k) {
    c.now += 0.5;  // 2 it/s
    p.step(k);
  }
  c.now += 0.25;  // decode and write
  p.image_written("out/00002-a-red-fox.png");
  const auto lines = lines_of(c.text);
  REQUIRE(lines.size() == 11);
  CHECK(lines[0] == "[image 2/10] step 3/25 (12%)  2.00 it/s  ETA 0:11");
  CHECK(lines[1] == "[image 2/10] step 5/25 (20%)  2.00 it/s  ETA 0:10");
  CHECK(lines[9] == "[image 2/10] step 25/25 (100%)  2.00 it/s  ETA 0:00");
  CHECK(lines[10] == "[image 2/10] wrote out/00002-a-red-fox.png (12.8 s)");
}

TEST_CASE("slow steps read as seconds per iteration; one image needs no image counter", "[progress]") {
  Capture c;
  auto p = c.reporter(ProgressStyle::Lines);
  p.start_image(1, 1, 1000);
  c.now += 700;  // 7 s per step
  p.step(100);
  CHECK(c.text == "step 100/1000 (10%)  7.00 s/it  ETA 1:45:00\n");
  c.text.clear();
  p.step(101);  // same tenth: no line
  CHECK(c.text.empty());
  p.message("skipped 00003-a-cat.png: it exists");
  CHECK(c.text == "skipped 00003-a-cat.png: it exists\n");
}

TEST_CASE("few steps: a line for each", "[progress]") {
  Capture c;
  auto p = c.reporter(ProgressStyle::Lines);
  p.start_image(1, 1, 3);
  for (int k = 1; k <= 3; ++k) p.step(k);  // no time passes: rates unknown
  CHECK(lines_of(c.text) == std::vector<std::string>{"step 1/3 (33%)  ? it/s  ETA ?", "step 2/3 (66%)  ? it/s  ETA ?",
                                                      "step 3/3 (100%)  ? it/s  ETA ?"});
}

TEST_CASE("the terminal bar redraws one line in place", "[progress]") {
  Capture c;
  auto p = c.reporter(ProgressStyle::Bar);
  p.start_image(1, 2, 4);
  CHECK(c.text == "\r[image 1/2] [....................] 0/4  ? it/s  ETA ?\033[K");
  c.text.clear();
  c.now += 2;
  p.step(1);
  CHECK(c.text == "\r[image 1/2] [#####...............] 1/4  2.00 s/it  ETA 0:06\033[K");
  c.text.clear();
  p.message("note");  // clears the bar, prints the line, redraws the bar
  CHECK(c.text == "\r\033[Knote\n\r[image 1/2] [#####...............] 1/4  2.00 s/it  ETA 0:06\033[K");
  c.text.clear();
  p.image_written("a.png");
  CHECK(c.text == "\r\033[K[image 1/2] wrote a.png (2.0 s)\n");
}

TEST_CASE("quiet means silent", "[progress]") {
  Capture c;
  auto p = c.reporter(ProgressStyle::Quiet);
  p.start_image(1, 1, 5);
  p.step(5);
  p.message("x");
  p.image_written("a.png");
  CHECK(c.text.empty());
  CHECK(sdgen::app::progress_style_for(stderr, sdgen::app::Verbosity::Quiet) == ProgressStyle::Quiet);
}
