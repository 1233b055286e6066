// ops_bench: per-op timings of the CPU backend on Stable Diffusion 1.5's real shapes, and the step
// times they add up to. Built with the tests, never run by ctest (timings are not assertions);
// docs/benchmarks.md quotes its output, and examples/benchmark.sh may drive it.
//
//   sdgen_ops_bench [--threads N] [--reps N] [--section gemm|unet|vae|all] [--dtype f32|bf16|both]
//
// Sections:
//   gemm  the UNet's distinct linear shapes: oneDNN matmul (fp32, bf16) against OpenBLAS sgemm, in
//         GFLOP/s: the measurement behind choosing oneDNN for linear. (Debian's OpenBLAS 0.3.21 is
//         built without BUILD_BFLOAT16, so it has no sbgemm to compare in bf16.)
//   unet  one guided UNet step at 512x512 (batch 2: conditional and unconditional), op by op as
//         diffusers' UNet2DConditionModel runs it: each distinct op is timed (best of --reps) and
//         multiplied by how often the step calls it. fp32 and bf16.
//   vae   the AutoencoderKL decoder at 512x512 (batch 1), the same way.
// The projections leave out what is not an op (allocation, the scheduler), so a real step is
// somewhat slower; they are what the op set can do, and where the time goes.
#include <CLI/CLI.hpp>
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"

using namespace sdgen;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// Owning random tensors for the benchmark (values do not matter for speed, but zeros could).
struct Store {
  std::vector<std::unique_ptr<std::vector<float>>> buffers;
  std::mt19937 rng{1};
  Tensor make(const Shape& s, float sigma = 0.5f) {
    auto buf = std::make_unique<std::vector<float>>(static_cast<std::size_t>(s.numel()));
    std::normal_distribution<float> d(0.0f, sigma);
    for (float& v : *buf) v = d(rng);
    Tensor t = Tensor::contiguous(buf->data(), DType::F32, s);
    buffers.push_back(std::move(buf));
    return t;
  }
};

double best_of(int reps, const std::function<void()>& f) {
  f();  // creates the primitives, warms the caches
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    const double t0 = now();
    f();
    best = std::min(best, now() - t0);
  }
  return best;
}

// ---- the step as a list of ops, counted by distinct shape

struct OpRecord {
  std::string kind;  // conv, linear, attention, group_norm, ...
  std::string shape;
  double flops = 0;  // per call
  int count = 0;
  std::function<void()> run;
};

class StepPlan {
 public:
  StepPlan(CpuBackend& be, Store& st) : be_(be), st_(st) {}

  void conv(std::int64_t b, std::int64_t h, std::int64_t cin, std::int64_t cout, std::int64_t k, int stride,
            bool temb, bool residual) {
    const std::int64_t ho = (h + 2 * (k / 2) - k) / stride + 1;
    add("conv2d", cat("[", b, ", ", h, ", ", h, ", ", cin, "] -> ", cout, " ", k, "x", k, stride == 2 ? " s2" : "",
                      temb ? " +temb" : "", residual ? " +res" : ""),
        2.0 * static_cast<double>(b * ho * ho * cout * cin * k * k), [&, b, h, cin, cout, k, stride, temb, residual, ho] {
          const Tensor x = st_.make({b, h, h, cin}), out = st_.make({b, ho, ho, cout}), bias = st_.make({cout});
          const Tensor w = be_.prepare_weight(st_.make({cout, k, k, cin}, 0.05f), WeightUse::Conv2d);
          const Tensor e = st_.make({b, cout}), r = st_.make({b, ho, ho, cout});
          return [this, x, out, bias, w, e, r, k, stride, temb, residual] {
            be_.conv2d(x, w, out,
                       {.stride = stride, .padding = static_cast<int>(k / 2), .bias = &bias,
                        .add_per_channel = temb ? &e : nullptr, .residual = residual ? &r : nullptr});
          };
        });
  }
  void linear(std::int64_t b, std::int64_t n, std::int64_t k, std::int64_t out_f, bool bias, Act act, bool residual) {
    add("linear", cat("[", b, ", ", n, ", ", k, "] -> ", out_f, bias ? " +bias" : "", act != Act::None ? " +act" : "",
                      residual ? " +res" : ""),
        2.0 * static_cast<double>(b * n * k * out_f), [&, b, n, k, out_f, bias, act, residual] {
          const Tensor x = st_.make({b, n, k}), out = st_.make({b, n, out_f}), bi = st_.make({out_f}), r = st_.make({b, n, out_f});
          const Tensor w = be_.prepare_weight(st_.make({out_f, k}, 0.05f), WeightUse::Linear);
          return [this, x, out, bi, r, w, bias, act, residual] {
            be_.linear(x, w, out, {.bias = bias ? &bi : nullptr, .act = act, .residual = residual ? &r : nullptr});
          };
        });
  }
  void attention(std::int64_t b, std::int64_t nq, std::int64_t nk, int heads, std::int64_t d) {
    add("attention", cat("B ", b, " Nq ", nq, " Nk ", nk, " heads ", heads, " d ", d),
        4.0 * static_cast<double>(b * heads * nq * nk * d), [&, b, nq, nk, heads, d] {
          const Tensor q = st_.make({b, nq, heads * d}), k = st_.make({b, nk, heads * d}), v = st_.make({b, nk, heads * d});
          const Tensor out = st_.make({b, nq, heads * d});
          return [this, q, k, v, out, heads] { be_.attention(q, k, v, out, {.heads = heads}); };
        });
  }
  void group_norm(std::int64_t b, std::int64_t h, std::int64_t c, bool silu) {
    add("group_norm", cat("[", b, ", ", h, ", ", h, ", ", c, "]", silu ? " +silu" : ""), 0, [&, b, h, c, silu] {
      const Tensor x = st_.make({b, h, h, c}), out = st_.make({b, h, h, c}), g = st_.make({c}), be = st_.make({c});
      return [this, x, out, g, be, silu] { be_.group_norm(x, g, be, out, {.groups = 32, .eps = 1e-6f, .silu = silu}); };
    });
  }
  void layer_norm(std::int64_t rows, std::int64_t c) {
    add("layer_norm", cat("[", rows, ", ", c, "]"), 0, [&, rows, c] {
      const Tensor x = st_.make({rows, c}), out = st_.make({rows, c}), g = st_.make({c}), be = st_.make({c});
      return [this, x, out, g, be] { be_.layer_norm(x, g, be, out, {}); };
    });
  }
  void geglu(std::int64_t rows, std::int64_t f) {
    add("geglu", cat("[", rows, ", ", 2 * f, "]"), 0, [&, rows, f] {
      const Tensor x = st_.make({rows, 2 * f}), out = st_.make({rows, f});
      return [this, x, out] { be_.geglu(x, out); };
    });
  }
  void concat(std::int64_t b, std::int64_t h, std::int64_t ca, std::int64_t cb) {
    add("concat", cat("[", b, ", ", h, ", ", h, ", ", ca, " + ", cb, "]"), 0, [&, b, h, ca, cb] {
      const Tensor x = st_.make({b, h, h, ca}), y = st_.make({b, h, h, cb}), out = st_.make({b, h, h, ca + cb});
      return [this, x, y, out] { be_.concat_channels(x, y, out); };
    });
  }
  void upsample(std::int64_t b, std::int64_t h, std::int64_t c) {
    add("upsample", cat("[", b, ", ", h, ", ", h, ", ", c, "]"), 0, [&, b, h, c] {
      const Tensor x = st_.make({b, h, h, c}), out = st_.make({b, 2 * h, 2 * h, c});
      return [this, x, out] { be_.upsample_nearest(x, out); };
    });
  }

  // Times every distinct op and prints the table; returns the projected total in seconds.
  double report(int reps, const char* title) {
    std::printf("\n%s\n%-10s %-48s %5s %10s %10s %9s\n", title, "op", "shape", "calls", "ms/call", "ms total", "GFLOP/s");
    double total = 0, flops = 0;
    std::map<std::string, double> by_kind;
    for (auto& [key, op] : ops_) {
      const double t = best_of(reps, op.run);
      total += t * op.count;
      flops += op.flops * op.count;
      by_kind[op.kind] += t * op.count;
      std::printf("%-10s %-48s %5d %10.3f %10.1f %9.0f\n", op.kind.c_str(), op.shape.c_str(), op.count, t * 1e3,
                  t * op.count * 1e3, op.flops > 0 ? op.flops / t / 1e9 : 0.0);
    }
    std::printf("by op kind:");
    for (const auto& [kind, t] : by_kind) std::printf("  %s %.2f s", kind.c_str(), t);
    std::printf("\nprojected total: %.2f s for %.3f TFLOP (%.0f GFLOP/s overall)\n", total, flops / 1e12, flops / total / 1e9);
    return total;
  }

 private:
  // make() allocates and prepares the op's tensors once and returns the call to time.
  void add(const std::string& kind, const std::string& shape, double flops, const std::function<std::function<void()>()>& make) {
    OpRecord& r = ops_[kind + " " + shape];
    if (r.count++ == 0) {
      r.kind = kind;
      r.shape = shape;
      r.flops = flops;
      r.run = make();
    }
  }
  CpuBackend& be_;
  Store& st_;
  std::map<std::string, OpRecord> ops_;
};

// diffusers ResnetBlock2D: norm1+SiLU, conv1 (+ time embedding), norm2+SiLU, conv2 (+ skip), with a
// 1x1 conv_shortcut when the channels change. temb: the UNet's (its linear is counted too).
void resnet(StepPlan& p, std::int64_t b, std::int64_t h, std::int64_t cin, std::int64_t cout, bool temb) {
  p.group_norm(b, h, cin, true);
  if (temb) p.linear(1, b, 1280, cout, true, Act::None, false);
  p.conv(b, h, cin, cout, 3, 1, temb, false);
  p.group_norm(b, h, cout, true);
  if (cin != cout) p.conv(b, h, cin, cout, 1, 1, false, false);
  p.conv(b, h, cout, cout, 3, 1, false, true);
}

// diffusers Transformer2DModel with one BasicTransformerBlock (SD 1.5: proj_in/out as 1x1 convs,
// i.e. linears in NHWC; 8 heads; cross-attention on 77 CLIP tokens of 768).
void transformer(StepPlan& p, std::int64_t b, std::int64_t h, std::int64_t c) {
  const std::int64_t n = h * h;
  const int heads = 8;
  p.group_norm(b, h, c, false);
  p.linear(b, n, c, c, true, Act::None, false);  // proj_in
  p.layer_norm(b * n, c);
  for (int i = 0; i < 3; ++i) p.linear(b, n, c, c, false, Act::None, false);  // to_q, to_k, to_v
  p.attention(b, n, n, heads, c / heads);
  p.linear(b, n, c, c, true, Act::None, true);  // to_out.0 + residual
  p.layer_norm(b * n, c);
  p.linear(b, n, c, c, false, Act::None, false);  // attn2.to_q
  for (int i = 0; i < 2; ++i) p.linear(b, 77, 768, c, false, Act::None, false);  // attn2.to_k, to_v
  p.attention(b, n, 77, heads, c / heads);
  p.linear(b, n, c, c, true, Act::None, true);
  p.layer_norm(b * n, c);
  p.linear(b, n, c, 8 * c, true, Act::None, false);  // ff.net.0.proj (GEGLU)
  p.geglu(b * n, 4 * c);
  p.linear(b, n, 4 * c, c, true, Act::None, true);  // ff.net.2 + residual
  p.linear(b, n, c, c, true, Act::None, true);      // proj_out + the block's input
}

// UNet2DConditionModel (SD 1.5) at 512x512: latents 64x64, batch 2 for classifier-free guidance.
void unet_step(StepPlan& p) {
  const std::int64_t b = 2;
  p.conv(b, 64, 4, 320, 3, 1, false, false);  // conv_in
  p.linear(1, b, 320, 1280, true, Act::Silu, false);  // time_embedding.linear_1 (+ act)
  p.linear(1, b, 1280, 1280, true, Act::None, false);  // linear_2
  // down blocks: (channels, resolution, attention?)
  const std::int64_t chans[] = {320, 640, 1280, 1280};
  std::int64_t cin = 320, h = 64;
  std::vector<std::int64_t> skips{320};  // channels of each skip connection, in push order
  for (int level = 0; level < 4; ++level) {
    const std::int64_t c = chans[level];
    for (int i = 0; i < 2; ++i) {
      resnet(p, b, h, cin, c, true);
      if (level < 3) transformer(p, b, h, c);
      cin = c;
      skips.push_back(c);
    }
    if (level < 3) {
      p.conv(b, h, c, c, 3, 2, false, false);  // Downsample2D
      h /= 2;
      skips.push_back(c);
    }
  }
  // mid block
  resnet(p, b, h, 1280, 1280, true);
  transformer(p, b, h, 1280);
  resnet(p, b, h, 1280, 1280, true);
  // up blocks (reversed channels, 3 ResNets each on the concatenated skips)
  const std::int64_t up_chans[] = {1280, 1280, 640, 320};
  for (int level = 0; level < 4; ++level) {
    const std::int64_t c = up_chans[level];
    for (int i = 0; i < 3; ++i) {
      const std::int64_t skip = skips.back();
      skips.pop_back();
      p.concat(b, h, cin, skip);
      resnet(p, b, h, cin + skip, c, true);
      if (level > 0) transformer(p, b, h, c);
      cin = c;
    }
    if (level < 3) {
      p.upsample(b, h, c);
      h *= 2;
      p.conv(b, h, c, c, 3, 1, false, false);  // Upsample2D.conv
    }
  }
  p.group_norm(b, 64, 320, true);  // conv_norm_out + conv_act
  p.conv(b, 64, 320, 4, 3, 1, false, false);
}

// AutoencoderKL.decoder at 512x512 (latents 64x64, batch 1).
void vae_decode(StepPlan& p) {
  const std::int64_t b = 1;
  p.conv(b, 64, 4, 4, 1, 1, false, false);  // post_quant_conv
  p.conv(b, 64, 4, 512, 3, 1, false, false);  // conv_in
  resnet(p, b, 64, 512, 512, false);
  // mid-block attention: one head over 4096 tokens of 512 channels
  p.group_norm(b, 64, 512, false);
  for (int i = 0; i < 3; ++i) p.linear(b, 4096, 512, 512, true, Act::None, false);
  p.attention(b, 4096, 4096, 1, 512);
  p.linear(b, 4096, 512, 512, true, Act::None, true);
  resnet(p, b, 64, 512, 512, false);
  const std::int64_t chans[] = {512, 512, 256, 128};
  std::int64_t cin = 512, h = 64;
  for (int level = 0; level < 4; ++level) {
    for (int i = 0; i < 3; ++i) {
      resnet(p, b, h, cin, chans[level], false);
      cin = chans[level];
    }
    if (level < 3) {
      p.upsample(b, h, cin);
      h *= 2;
      p.conv(b, h, cin, cin, 3, 1, false, false);
    }
  }
  p.group_norm(b, 512, 128, true);
  p.conv(b, 512, 128, 3, 3, 1, false, false);
}

// ---- oneDNN against OpenBLAS on the UNet's linear shapes

void gemm_section(int threads, int reps) {
  struct Shape3 {
    std::int64_t m, k, n;
    const char* what;
  };
  const Shape3 shapes[] = {
      {8192, 320, 320, "64x64 attention projections"},  {8192, 320, 2560, "64x64 GEGLU proj"},
      {8192, 1280, 320, "64x64 FF out"},                 {2048, 640, 640, "32x32 projections"},
      {2048, 640, 5120, "32x32 GEGLU proj"},             {512, 1280, 1280, "16x16 projections"},
      {154, 768, 320, "text k/v"},                       {2, 1280, 1280, "time embedding"},
  };
  openblas_set_num_threads(threads);
  CpuBackend f32({.threads = threads, .compute = DType::F32});
  std::unique_ptr<CpuBackend> bf16;
  if (__builtin_cpu_supports("avx512bf16")) bf16 = std::make_unique<CpuBackend>(CpuBackendOptions{threads, DType::BF16});
  std::printf("\nGEMM out[M,N] = x[M,K] w[N,K]^T, GFLOP/s (best of %d), %d threads\n", reps, threads);
  std::printf("%-30s %6s %6s %6s %12s %12s %12s\n", "shape", "M", "K", "N", "oneDNN f32", "OpenBLAS f32", "oneDNN bf16");
  // oneDNN first, OpenBLAS after: each library's worker threads keep spinning for a while after
  // a call, and interleaving the two made either one wait milliseconds for the other's core.
  Store st;
  std::vector<double> dnnl32, dnnl16, blas32;
  for (const Shape3& s : shapes) {
    const Tensor x = st.make({s.m, s.k}), w = st.make({s.n, s.k}), out = st.make({s.m, s.n});
    const Tensor wf = f32.prepare_weight(w, WeightUse::Linear);
    dnnl32.push_back(best_of(reps, [&] { f32.linear(x, wf, out, {}); }));
    if (bf16) {
      const Tensor wb = bf16->prepare_weight(w, WeightUse::Linear);
      dnnl16.push_back(best_of(reps, [&] { bf16->linear(x, wb, out, {}); }));
    } else {
      dnnl16.push_back(0.0);
    }
  }
  for (const Shape3& s : shapes) {
    const Tensor x = st.make({s.m, s.k}), w = st.make({s.n, s.k}), out = st.make({s.m, s.n});
    blas32.push_back(best_of(reps, [&] {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(s.m), static_cast<blasint>(s.n),
                  static_cast<blasint>(s.k), 1.0f, static_cast<const float*>(x.data), static_cast<blasint>(s.k),
                  static_cast<const float*>(w.data), static_cast<blasint>(s.k), 0.0f, static_cast<float*>(out.data),
                  static_cast<blasint>(s.n));
    }));
  }
  for (std::size_t i = 0; i < std::size(shapes); ++i) {
    const Shape3& s = shapes[i];
    const double flops = 2.0 * static_cast<double>(s.m * s.k * s.n);
    auto rate = [&](double t) { return t > 0 ? flops / t / 1e9 : 0.0; };
    std::printf("%-30s %6ld %6ld %6ld %12.0f %12.0f %12.0f\n", s.what, static_cast<long>(s.m), static_cast<long>(s.k),
                static_cast<long>(s.n), rate(dnnl32[i]), rate(blas32[i]), rate(dnnl16[i]));
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Per-op timings of sdgen's CPU backend on Stable Diffusion 1.5 shapes"};
  int threads = 0, reps = 3;
  std::string section = "all", dtype = "both";
  app.add_option("--threads", threads, "threads (0: every core)");
  app.add_option("--reps", reps, "timed repetitions per op (the best counts)")->check(CLI::PositiveNumber);
  app.add_option("--section", section, "gemm, unet, vae or all")->check(CLI::IsMember({"gemm", "unet", "vae", "all"}));
  app.add_option("--dtype", dtype, "compute dtype of the unet and vae sections: f32, bf16 or both")
      ->check(CLI::IsMember({"f32", "bf16", "both"}));
  CLI11_PARSE(app, argc, argv);
  try {
    if (threads == 0) threads = CpuBackend().threads();
    if (section == "gemm" || section == "all") gemm_section(threads, reps);
    std::vector<DType> dtypes;
    if (dtype != "bf16") dtypes.push_back(DType::F32);
    if (dtype != "f32" && __builtin_cpu_supports("avx512bf16")) dtypes.push_back(DType::BF16);
    for (DType dt : dtypes) {
      CpuBackend be({.threads = threads, .compute = dt});
      const char* name = dt == DType::F32 ? "fp32" : "bf16";
      if (section == "unet" || section == "all") {
        Store st;
        StepPlan p(be, st);
        unet_step(p);
        p.report(reps, cat("UNet step, SD 1.5, 512x512, guided (batch 2), ", name, ", ", threads, " threads").c_str());
      }
      if (section == "vae" || section == "all") {
        Store st;
        StepPlan p(be, st);
        vae_decode(p);
        p.report(reps, cat("VAE decode, 512x512, ", name, ", ", threads, " threads").c_str());
      }
      const CpuBackendStats s = be.stats();
      if (s.primitives > 0)
        std::printf("%s backend: %zu MB prepared weights (one per distinct shape), %zu MB scratch, %ld primitives, %ld repacks\n",
                    name, s.prepared_weight_bytes >> 20, s.scratch_bytes >> 20, static_cast<long>(s.primitives),
                    static_cast<long>(s.repacks));
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "sdgen_ops_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
