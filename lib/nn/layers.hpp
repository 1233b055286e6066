// Leaf modules: the torch.nn layers Stable Diffusion is built from, each holding its parameters
// (nn::Param, with the shape the checkpoint must store) and the hyperparameters its computation
// will need (stride, padding, groups, eps). Every composite module in lib/models is a tree of
// these. Their parameter names are torch's: "weight" and "bias".
//
// Each layer is built from a small options struct with designated initialisers, so a call site
// reads `Conv2d({.in_channels = c, .out_channels = c, .kernel_size = 3, .padding = 1})`.
#pragma once

#include <cstdint>
#include <optional>

#include "lib/nn/param.hpp"

namespace sdgen::nn {

enum class Bias { With, Without };

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

  Param weight;
  std::optional<Param> bias;

  explicit Linear(const Options& options);

  template <class V>
  void visit(V& v) {
    v("weight", weight);
    v("bias", bias);
  }
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

  int stride = 1;
  int padding = 0;
  Param weight;
  Param bias;

  explicit Conv2d(const Options& options);

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

  template <class V>
  void visit(V& v) {
    v("weight", weight);
  }
};

}  // namespace sdgen::nn
