// Reads scheduler_config.json into SchedulerConfig, keeping absent keys absent.
//
// The scheduler chosen on the command line decides which keys matter and what their defaults are
// (lib/schedulers/resolved_config.cpp), so this parser only checks what a key holds: its JSON type
// and, for enumerated strings, that the value is one diffusers accepts. Anything else would fail
// later with a message that no longer names the file. Null means absent, as it does for diffusers
// (`"trained_betas": null` is in nearly every hub file). Unknown keys are ignored: hub files carry
// keys of other scheduler classes and of newer diffusers versions.
//
// Python's json module writes -inf as the bare literal -Infinity (diffusers saves
// `"lambda_min_clipped": -Infinity` that way), which is not JSON. Such literals outside strings are
// turned into strings before parsing, and the one key that may hold them reads them back.
#include "weights/scheduler_config.hpp"

#include <array>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "lib/core/error.hpp"

namespace sdgen::weights {

namespace {

using json = nlohmann::json;

constexpr std::array<std::string_view, 3> kNonFiniteLiterals = {"-Infinity", "Infinity", "NaN"};

// Quotes the bare -Infinity/Infinity/NaN tokens Python writes, leaving string contents alone.
std::string quote_python_nonfinite_literals(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 16);
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < text.size()) {
        out += text[++i];
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
      out += c;
      continue;
    }
    bool replaced = false;
    for (std::string_view literal : kNonFiniteLiterals) {
      if (text.substr(i, literal.size()) == literal) {
        out += '"';
        out += literal;
        out += '"';
        i += literal.size() - 1;
        replaced = true;
        break;
      }
    }
    if (!replaced) out += c;
  }
  return out;
}

class Reader {
 public:
  Reader(std::string_view text, const std::filesystem::path& where) : where_(where.string()) {
    const std::string quoted = quote_python_nonfinite_literals(text);
    root_ = json::parse(quoted, nullptr, /*allow_exceptions=*/false);
    if (root_.is_discarded()) throw ModelError(cat(where_, ": not valid JSON"));
    if (!root_.is_object()) throw ModelError(cat(where_, ": expected a JSON object at the top level"));
  }

  [[noreturn]] void fail(std::string_view key, std::string_view problem) const {
    throw ModelError(cat(where_, ": \"", key, "\" ", problem));
  }

  std::optional<int> get_int(std::string_view key) const {
    const json* v = find(key);
    if (!v) return std::nullopt;
    if (v->is_number_integer()) {
      const auto i = v->get<std::int64_t>();
      if (i < std::numeric_limits<int>::min() || i > std::numeric_limits<int>::max())
        fail(key, cat("is out of range: ", v->dump()));
      return static_cast<int>(i);
    }
    // Python writes 1000.0 for a float that the class then uses as an int.
    if (v->is_number_float()) {
      const double d = v->get<double>();
      if (std::isfinite(d) && d == std::floor(d) && std::abs(d) < 1e9) return static_cast<int>(d);
    }
    fail(key, cat("must be an integer, got ", v->dump()));
  }

  std::optional<double> get_double(std::string_view key) const {
    const json* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_number()) fail(key, cat("must be a number, got ", v->dump()));
    const double d = v->get<double>();
    if (!std::isfinite(d)) fail(key, "must be finite");
    return d;
  }

  // A number that may also be -Infinity/Infinity (not NaN).
  std::optional<double> get_extended_double(std::string_view key) const {
    const json* v = find(key);
    if (!v) return std::nullopt;
    if (v->is_string()) {
      const auto s = v->get<std::string>();
      if (s == "-Infinity") return -std::numeric_limits<double>::infinity();
      if (s == "Infinity") return std::numeric_limits<double>::infinity();
    }
    if (!v->is_number()) fail(key, cat("must be a number, got ", v->dump()));
    return v->get<double>();
  }

  std::optional<bool> get_bool(std::string_view key) const {
    const json* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) fail(key, cat("must be true or false, got ", v->dump()));
    return v->get<bool>();
  }

  std::optional<std::string> get_string(std::string_view key) const {
    const json* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) fail(key, cat("must be a string, got ", v->dump()));
    return v->get<std::string>();
  }

  template <std::size_t N>
  std::optional<std::string> get_enum(std::string_view key, const std::array<std::string_view, N>& allowed) const {
    auto v = get_string(key);
    if (!v) return v;
    for (std::string_view a : allowed)
      if (*v == a) return v;
    std::string list;
    for (std::string_view a : allowed) list += cat(list.empty() ? "" : ", ", "\"", a, "\"");
    fail(key, cat("is \"", *v, "\"; expected one of ", list));
  }

  std::optional<std::vector<double>> get_double_list(std::string_view key) const {
    const json* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_array() || v->empty()) fail(key, "must be a non-empty list of numbers");
    std::vector<double> out;
    out.reserve(v->size());
    for (const auto& e : *v) {
      if (!e.is_number()) fail(key, cat("must be a list of numbers, got an element ", e.dump()));
      const double d = e.get<double>();
      if (!std::isfinite(d)) fail(key, "must hold finite numbers");
      out.push_back(d);
    }
    return out;
  }

 private:
  const json* find(std::string_view key) const {
    const auto it = root_.find(key);
    return (it == root_.end() || it->is_null()) ? nullptr : &*it;
  }

  std::string where_;
  json root_;
};

// The values diffusers 0.33 accepts for its enumerated keys. Accepting a value here does not mean
// sdgen runs it: the schedulers refuse, with the reason, what they do not implement.
constexpr std::array<std::string_view, 3> kBetaSchedules = {"linear", "scaled_linear", "squaredcos_cap_v2"};
constexpr std::array<std::string_view, 3> kPredictionTypes = {"epsilon", "v_prediction", "sample"};
constexpr std::array<std::string_view, 3> kTimestepSpacings = {"leading", "trailing", "linspace"};
constexpr std::array<std::string_view, 2> kTimestepTypes = {"discrete", "continuous"};
constexpr std::array<std::string_view, 2> kInterpolationTypes = {"linear", "log_linear"};
constexpr std::array<std::string_view, 2> kFinalSigmasTypes = {"zero", "sigma_min"};
constexpr std::array<std::string_view, 5> kAlgorithmTypes = {"dpmsolver", "dpmsolver++", "sde-dpmsolver",
                                                            "sde-dpmsolver++", "deis"};
// diffusers maps the DEIS/UniPC solver names to "midpoint" when loading their configs.
constexpr std::array<std::string_view, 5> kSolverTypes = {"midpoint", "heun", "logrho", "bh1", "bh2"};
constexpr std::array<std::string_view, 2> kVarianceTypes = {"learned", "learned_range"};

}  // namespace

SchedulerConfig parse_scheduler_config(std::string_view json_text, const std::filesystem::path& where) {
  const Reader r(json_text, where);
  SchedulerConfig c;
  c.source = where;
  c.class_name = r.get_string("_class_name").value_or("");
  c.num_train_timesteps = r.get_int("num_train_timesteps");
  c.beta_start = r.get_double("beta_start");
  c.beta_end = r.get_double("beta_end");
  c.beta_schedule = r.get_enum("beta_schedule", kBetaSchedules);
  c.trained_betas = r.get_double_list("trained_betas");
  c.prediction_type = r.get_enum("prediction_type", kPredictionTypes);
  c.timestep_spacing = r.get_enum("timestep_spacing", kTimestepSpacings);
  c.steps_offset = r.get_int("steps_offset");
  c.set_alpha_to_one = r.get_bool("set_alpha_to_one");
  c.skip_prk_steps = r.get_bool("skip_prk_steps");
  c.clip_sample = r.get_bool("clip_sample");
  c.clip_sample_range = r.get_double("clip_sample_range");
  c.rescale_betas_zero_snr = r.get_bool("rescale_betas_zero_snr");
  c.use_karras_sigmas = r.get_bool("use_karras_sigmas");
  c.use_exponential_sigmas = r.get_bool("use_exponential_sigmas");
  c.use_beta_sigmas = r.get_bool("use_beta_sigmas");
  c.use_lu_lambdas = r.get_bool("use_lu_lambdas");
  c.use_flow_sigmas = r.get_bool("use_flow_sigmas");
  c.sigma_min = r.get_double("sigma_min");
  c.sigma_max = r.get_double("sigma_max");
  c.timestep_type = r.get_enum("timestep_type", kTimestepTypes);
  c.interpolation_type = r.get_enum("interpolation_type", kInterpolationTypes);
  c.final_sigmas_type = r.get_enum("final_sigmas_type", kFinalSigmasTypes);
  c.lower_order_final = r.get_bool("lower_order_final");
  c.euler_at_final = r.get_bool("euler_at_final");
  c.lambda_min_clipped = r.get_extended_double("lambda_min_clipped");
  c.variance_type = r.get_enum("variance_type", kVarianceTypes);
  c.solver_order = r.get_int("solver_order");
  c.algorithm_type = r.get_enum("algorithm_type", kAlgorithmTypes);
  c.solver_type = r.get_enum("solver_type", kSolverTypes);
  c.thresholding = r.get_bool("thresholding");
  return c;
}

}  // namespace sdgen::weights
