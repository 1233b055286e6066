// Parameter shapes of the leaf layers, as torch.nn creates them (see layers.hpp).
#include "lib/nn/layers.hpp"

#include "lib/core/error.hpp"

namespace sdgen::nn {

Linear::Linear(const Options& o)
    : weight{o.stored == Stored::Conv1x1
                 ? std::vector<std::int64_t>{o.out_features, o.in_features, 1, 1}
                 : std::vector<std::int64_t>{o.out_features, o.in_features}} {
  if (o.bias == Bias::With) bias = Param{{o.out_features}};
}

Conv2d::Conv2d(const Options& o)
    : stride(o.stride),
      padding(o.padding),
      weight{{o.out_channels, o.in_channels, o.kernel_size, o.kernel_size}},
      bias{{o.out_channels}} {}

GroupNorm::GroupNorm(const Options& o)
    : num_groups(o.num_groups), eps(o.eps), weight{{o.num_channels}}, bias{{o.num_channels}} {
  // torch refuses to build such a layer too; the group count comes from a config file.
  if (o.num_groups <= 0 || o.num_channels % o.num_groups != 0)
    throw ModelError(cat("the configured norm_num_groups (", o.num_groups, ") does not divide the ",
                         o.num_channels, " channels of a group norm in this architecture"));
}

LayerNorm::LayerNorm(const Options& o) : eps(o.eps), weight{{o.dim}}, bias{{o.dim}} {}

Embedding::Embedding(const Options& o) : weight{{o.num_embeddings, o.embedding_dim}} {}

}  // namespace sdgen::nn
