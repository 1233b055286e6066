// Reconciles a module tree's expected tensors with a checkpoint's (see weight_binding.hpp).
#include "lib/models/weight_binding.hpp"

#include <algorithm>
#include <set>

#include "lib/core/error.hpp"
#include "weights/safetensors.hpp"

namespace sdgen::models {

namespace {

// How many problems the thrown message lists before "and N more": enough to see a pattern (a
// wrong config shows as a run of shape mismatches), short enough to stay one readable line.
constexpr std::size_t kProblemsInMessage = 5;

bool is_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

std::string stored_name_if_different(const std::string& name, const weights::TensorSource& source) {
  return source.stored && source.stored->name != name ? source.stored->name : std::string();
}

std::string quoted(const std::string& name, const std::string& stored_as) {
  return stored_as.empty() ? cat("'", name, "'") : cat("'", name, "' (key '", stored_as, "' in the file)");
}

std::string plural(std::size_t n, std::string_view one, std::string_view many) {
  return cat(n, " ", n == 1 ? one : many);
}

}  // namespace

WeightReport bind_leaves(std::string_view component, std::span<const NamedLeaf> leaves,
                         const weights::ComponentTensors& tensors) {
  WeightReport report;
  report.component = std::string(component);
  for (const auto& [name, source] : tensors) {
    if (source.file && std::ranges::find(report.files, source.file->path()) == report.files.end())
      report.files.push_back(source.file->path());
  }

  std::set<std::string_view> claimed;
  for (const NamedLeaf& entry : leaves) {
    const auto found = tensors.find(entry.name);
    const weights::TensorSource* source = found == tensors.end() ? nullptr : &found->second;
    if (source) claimed.insert(found->first);

    if (auto* const* buffer = std::get_if<nn::IgnoredBuffer*>(&entry.leaf)) {
      (*buffer)->source = source;
      if (source) report.ignored.push_back(entry.name);
      continue;
    }
    nn::Param& param = *std::get<nn::Param*>(entry.leaf);
    param.source = nullptr;
    report.tensor_count += 1;
    report.parameter_count += param.numel();
    if (!source) {
      report.missing.push_back(entry.name);
    } else if (source->shape != param.shape) {
      report.wrong_shape.push_back(
          {entry.name, stored_name_if_different(entry.name, *source), param.shape, source->shape});
    } else if (!is_float(source->dtype())) {
      report.wrong_dtype.push_back({entry.name, stored_name_if_different(entry.name, *source), source->dtype()});
    } else {
      param.source = source;
      report.dtypes[source->dtype()] += 1;
    }
  }
  for (const auto& [name, source] : tensors)
    if (!claimed.contains(name)) report.unexpected.push_back(name);
  return report;
}

std::vector<std::string> describe_problems(const WeightReport& report) {
  std::vector<std::string> lines;
  for (const auto& m : report.wrong_shape)
    lines.push_back(cat("tensor ", quoted(m.name, m.stored_as), ": expected shape ",
                        weights::shape_string(m.expected), ", got ", weights::shape_string(m.got)));
  for (const auto& m : report.wrong_dtype)
    lines.push_back(cat("tensor ", quoted(m.name, m.stored_as), ": stored as ", dtype_name(m.dtype),
                        "; weights must be F32, F16 or BF16"));
  for (const auto& name : report.missing) lines.push_back(cat("missing tensor '", name, "'"));
  for (const auto& name : report.unexpected) lines.push_back(cat("unexpected tensor '", name, "'"));
  return lines;
}

void require_complete(const WeightReport& report) {
  if (report.complete()) return;

  std::string where = report.component;
  if (!report.files.empty()) {
    where += " (";
    for (std::size_t i = 0; i < report.files.size(); ++i) where += cat(i ? ", " : "", report.files[i].string());
    where += ")";
  }
  std::vector<std::string> counts;
  if (!report.wrong_shape.empty()) counts.push_back(cat(report.wrong_shape.size(), " with the wrong shape"));
  if (!report.wrong_dtype.empty()) counts.push_back(cat(report.wrong_dtype.size(), " with an unsupported dtype"));
  if (!report.missing.empty()) counts.push_back(cat(report.missing.size(), " missing"));
  if (!report.unexpected.empty()) counts.push_back(cat(report.unexpected.size(), " unexpected"));

  std::string message = cat(where, ": the weights do not match the model configuration: ",
                            plural(report.problem_count(), "tensor problem", "tensor problems"), " (");
  for (std::size_t i = 0; i < counts.size(); ++i) message += cat(i ? ", " : "", counts[i]);
  message += "): ";
  const auto lines = describe_problems(report);
  const std::size_t shown = std::min(lines.size(), kProblemsInMessage);
  for (std::size_t i = 0; i < shown; ++i) message += cat(i ? "; " : "", lines[i]);
  if (lines.size() > shown)
    message += cat("; and ", lines.size() - shown, " more (`sdgen inspect` lists them all)");
  throw ModelError(message);
}

}  // namespace sdgen::models
