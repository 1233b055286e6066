// Leaf modules: the torch.nn layers Stable Diffusion is built from, each holding its parameters
// (nn::Param, with the shape the checkpoint must store) and the hyperparameters its computation
// needs (stride, padding, groups, eps), and each computing itself with one backend op. Every
// composite module in lib/models is a tree of these. Their parameter names are torch's: "weight"
// and "bias".
//
// Each layer is built from a small options struct with designated initialisers, so a call site
// reads `Conv2d({.in_channels = c, .out_channels = c, .kernel_size = 3, .padding = 1})`.
//
// forward() allocates its output from the context (the arena in production) and returns it as an
// owning Activation; the op's fusions (activation, per-channel add, residual) are passed through as
// an "epilogue", so a ResNet's conv2 adds the skip in the same call. Images are NHWC.
#pragma once

#include <cstdint>
#include <optional>

#include "lib/core/ctx.hpp"
#include "lib/nn/param.hpp"
#include "weights/configs.hpp"

namespace sdgen::nn {

enum class Bias { With, Without };

// The backend's activation for a config's act_fn / hidden_act.
Act activation_op(weights::Activation activation);

// What linear() adds after the matrix product and the bias: act(x W^T + b) + residual.
struct LinearEpilogue {
  Act act = Act::None;
  const Tensor* residual = nullptr;  // shaped as the output
};

// torch.nn.Linear: y = x W^T + b; weight [out, in], bias [out].
struct Linear {
  // How the checkpoint stores the weight. In NHWC a 1x1 convolution is exactly a linear layer
  // over the channels, so SD 1.x's convolutional proj_in/proj_out (weight [out, in, 1, 1]) and
  // SD 2.x's linear ones share this module and one code path; only the stored shape differs.
  enum class Stored { Matrix, Conv1x1 };
  struct Options {
    std::int64_t in_features = 0;
    std::int64_t out_features = 0;
    Bias bias = Bias::With;
    Stored stored = Stored::Matrix;
  };

  std::int64_t out_features = 0;
  Param weight;
  std::optional<Param> bias;

  explicit Linear(const Options& options);

  // x [..., in] -> [..., out]
  Activation forward(Ctx& ctx, const Tensor& x, const LinearEpilogue& epilogue = {}) const;

  template <class V>
  void visit(V& v) {
    v("weight", weight);
    v("bias", bias);
  }
};

// What conv2d() adds to the convolution and its bias: (conv + b + add[b, :] + residual) * scale.
struct ConvEpilogue {
  const Tensor* add_per_channel = nullptr;  // [B, out]: the ResNet's projected time embedding
  const Tensor* residual = nullptr;         // shaped as the output: the ResNet's skip
  float output_scale = 1.0f;
};

// torch.nn.Conv2d with a square kernel and symmetric padding; weight [out, in, k, k], bias [out].
// Every convolution in SD has a bias.
struct Conv2d {
  struct Options {
    std::int64_t in_channels = 0;
    std::int64_t out_channels = 0;
    int kernel_size = 1;
    int stride = 1;
    int padding = 0;
  };

  std::int64_t out_channels = 0;
  int kernel_size = 1;
  int stride = 1;
  int padding = 0;
  Param weight;
  Param bias;

  explicit Conv2d(const Options& options);

  // x [B, H, W, in] -> [B, (H + 2p - k) / s + 1, (W + 2p - k) / s + 1, out]
  Activation forward(Ctx& ctx, const Tensor& x, const ConvEpilogue& epilogue = {}) const;

  template <class V>
  void visit(V& v) {
    v("weight", weight);
    v("bias", bias);
  }
};

// torch.nn.GroupNorm with affine parameters; weight and bias [channels].
struct GroupNorm {
  struct Options {
    int num_groups = 32;
    std::int64_t num_channels = 0;
    double eps = 1e-5;
  };

  int num_groups = 32;
  double eps = 1e-5;
  Param weight;
  Param bias;

  explicit GroupNorm(const Options& options);

  // x [B, H, W, C] (or [B, N, C]) -> same shape, then `act` (SiLU is fused into the norm; SD's
  // models use nothing else, but a gelu act_fn config runs as a second op).
  Activation forward(Ctx& ctx, const Tensor& x, Act act = Act::None) const;
  // The same, in place: the caller gives x up and gets it back normalised (no second buffer).
  Activation forward(Ctx& ctx, Activation x, Act act = Act::None) const;

  template <class V>
  void visit(V& v) {
    v("weight", weight);
    v("bias", bias);
  }
};

// torch.nn.LayerNorm over the last dimension, with affine parameters; weight and bias [dim].
struct LayerNorm {
  struct Options {
    std::int64_t dim = 0;
    double eps = 1e-5;
  };

  double eps = 1e-5;
  Param weight;
  Param bias;

  explicit LayerNorm(const Options& options);

  // x [..., dim] -> same shape
  Activation forward(Ctx& ctx, const Tensor& x) const;

  template <class V>
  void visit(V& v) {
    v("weight", weight);
    v("bias", bias);
  }
};

// torch.nn.Embedding: a lookup table, weight [num_embeddings, embedding_dim].
struct Embedding {
  struct Options {
    std::int64_t num_embeddings = 0;
    std::int64_t embedding_dim = 0;
  };

  Param weight;

  explicit Embedding(const Options& options);

  // ids [B, N] (I32) -> [B, N, embedding_dim]
  Activation forward(Ctx& ctx, const Tensor& ids) const;
  // Rows [0, n) of the table, [n, embedding_dim]: the embeddings of positions 0..n-1, read in place.
  Tensor first_rows(std::int64_t n) const;

  template <class V>
  void visit(V& v) {
    v("weight", weight);
  }
};

}  // namespace sdgen::nn
