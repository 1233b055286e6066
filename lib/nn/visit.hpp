// The weight-visitor protocol: the one place where tensor names live.
//
// Every module struct has
//
//     template <class V> void visit(V& v) { v("norm1", norm1); v("conv1", conv1); ... }
//
// listing its members once, under their diffusers attribute names. A visitor walks that tree with
// a prefix stack and hands each leaf (nn::Param, nn::IgnoredBuffer) to a callback together with
// its full dotted name, e.g. "down_blocks.0.resnets.1.conv1.weight". Binding weights, counting
// parameters and listing the names for the 1:1 test are all such callbacks, so a name cannot be
// spelled twice, and a module whose visit() forgets a member shows up as a missing or unexpected
// tensor, never as a silently uninitialised weight (candle's VarBuilder::pp, without strings
// looked up at forward time).
//
// Member kinds the visitor understands, mirroring torch's module containers:
//   * a leaf (Param, IgnoredBuffer): passed to the callback;
//   * std::optional<M>: visited under the same name when engaged (conv_shortcut, biases);
//   * std::vector<M>: an nn.ModuleList, element i visited as "<name>.<i>";
//   * std::variant<M...>: the alternative held (a down block is DownBlock2D or CrossAttnDownBlock2D);
//   * anything else: a module; its own visit() runs with "<name>" pushed.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "lib/nn/param.hpp"

namespace sdgen::nn {

namespace visit_detail {

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};

template <class T>
struct is_vector : std::false_type {};
template <class T, class A>
struct is_vector<std::vector<T, A>> : std::true_type {};

template <class T>
struct is_variant : std::false_type {};
template <class... T>
struct is_variant<std::variant<T...>> : std::true_type {};

template <class T>
concept Leaf = std::is_same_v<T, Param> || std::is_same_v<T, IgnoredBuffer>;

}  // namespace visit_detail

// Walks a module tree, calling on_leaf(const std::string& full_name, Leaf&) for every leaf.
template <class OnLeaf>
class NamedVisitor {
 public:
  explicit NamedVisitor(OnLeaf on_leaf) : on_leaf_(std::move(on_leaf)) {}

  template <class M>
  void operator()(std::string_view name, M& member) {
    if constexpr (visit_detail::is_optional<M>::value) {
      if (member) (*this)(name, *member);
    } else if constexpr (visit_detail::is_variant<M>::value) {
      std::visit([&](auto& held) { (*this)(name, held); }, member);
    } else {
      const std::size_t mark = push(name);
      if constexpr (visit_detail::Leaf<M>) {
        on_leaf_(path_, member);
      } else if constexpr (visit_detail::is_vector<M>::value) {
        for (std::size_t i = 0; i < member.size(); ++i) (*this)(std::to_string(i), member[i]);
      } else {
        member.visit(*this);
      }
      path_.resize(mark);
    }
  }

 private:
  // Appends ".name" (or "name" at the root); returns the length to restore.
  std::size_t push(std::string_view name) {
    const std::size_t mark = path_.size();
    if (!path_.empty()) path_ += '.';
    path_ += name;
    return mark;
  }

  OnLeaf on_leaf_;
  std::string path_;
};

// Visits every leaf of `root` with its full name; the root itself contributes no prefix.
template <class Module, class OnLeaf>
void visit_named(Module& root, OnLeaf&& on_leaf) {
  NamedVisitor<std::decay_t<OnLeaf>> visitor(std::forward<OnLeaf>(on_leaf));
  root.visit(visitor);
}

}  // namespace sdgen::nn
