// Fuzzes the single-file (LDM) checkpoint key mapping on fuzzed safetensors headers, against the
// configs of both tiny test models (the SD 1.x-style one with a CLIP text encoder, the SD 2.x-style
// one with OpenCLIP's fused q/k/v).
//
// The input is the JSON header only. The harness writes the 8-byte length, the header, and a data
// area of zeros as long as the largest data_offsets end asks (a sparse hole, so a header that
// claims 60 MB costs nothing): mutations then reach the mapping instead of dying at the reader's
// bounds check, which safetensors_fuzz covers.
//
// Invariants: every TensorSource the mapping returns points into this file at one of its tensors,
// its view (byte_offset, shape, dtype) lies inside that tensor's bytes, and every stored tensor is
// accounted for: mapped, ignored or unexpected.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>

#include "tests/fuzz/fuzz_support.hpp"
#include "weights/file_io.hpp"
#include "weights/key_mapping.hpp"

using namespace sdgen;
using namespace sdgen::weights;

namespace {

// Larger data areas are refused rather than made: the tiny models need 9 MB.
constexpr std::uint64_t kMaxDataArea = 64u << 20;

struct Configs {
  UNetConfig unet;
  VaeConfig vae;
  TextEncoderConfig text_encoder;
};

Configs load_configs(const std::string& model) {
  const auto dir = fuzz::data_dir() / "models" / model;
  const auto read = [&](const char* component) {
    const auto path = dir / component / "config.json";
    return std::pair{read_text_file(path), path};
  };
  const auto [unet, unet_path] = read("unet");
  const auto [vae, vae_path] = read("vae");
  const auto [text, text_path] = read("text_encoder");
  return {parse_unet_config(unet, unet_path), parse_vae_config(vae, vae_path),
          parse_text_encoder_config(text, text_path)};
}

// The data area the header asks for: the largest data_offsets end, or 0 when there is none to
// find (the reader then refuses the header on its own terms).
std::uint64_t data_area_size(std::string_view header) {
  const auto json = nlohmann::json::parse(header, nullptr, /*allow_exceptions=*/false);
  std::uint64_t size = 0;
  if (!json.is_object()) return 0;
  for (const auto& [name, entry] : json.items()) {
    if (!entry.is_object() || !entry.contains("data_offsets")) continue;
    const auto& offsets = entry["data_offsets"];
    if (offsets.is_array() && offsets.size() == 2 && offsets[1].is_number_unsigned())
      size = std::max(size, offsets[1].get<std::uint64_t>());
  }
  return size <= kMaxDataArea ? size : 0;
}

void check_component(const SafeTensorsFile& file, const ComponentTensors& component, std::set<std::string>& used) {
  for (const auto& [name, source] : component) {
    fuzz::check(source.file == &file, cat(name, ": source points at another file"));
    const auto& stored = file.tensors();
    fuzz::check(source.stored >= stored.data() && source.stored < stored.data() + stored.size(),
                cat(name, ": source is not one of the file's tensors"));
    std::int64_t numel = 1;
    for (const auto d : source.shape) {
      fuzz::check(d >= 0, cat(name, ": negative dimension"));
      numel *= d;
    }
    const auto need = std::uint64_t(numel) * dtype_size(source.dtype());
    fuzz::check(source.byte_offset <= source.stored->nbytes() && need <= source.stored->nbytes() - source.byte_offset,
                cat(name, ": view outside its stored tensor '", source.stored->name, "'"));
    const auto bytes = source.bytes();
    const auto whole = file.bytes(*source.stored);
    fuzz::check(bytes.size() == need && (need == 0 || (bytes.data() >= whole.data() &&
                                                       bytes.data() + need <= whole.data() + whole.size())),
                cat(name, ": bytes() outside its stored tensor"));
    used.insert(source.stored->name);
  }
}

void check_mapping(const SafeTensorsFile& file, const LdmMapping& mapping) {
  std::set<std::string> used;
  check_component(file, mapping.unet, used);
  check_component(file, mapping.vae, used);
  check_component(file, mapping.text_encoder, used);
  used.insert(mapping.ignored_keys.begin(), mapping.ignored_keys.end());
  used.insert(mapping.unexpected_keys.begin(), mapping.unexpected_keys.end());
  for (const auto& t : file.tensors()) fuzz::check(used.contains(t.name), cat(t.name, ": lost by the mapping"));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const Configs sd1 = load_configs("tiny");
  static const Configs sd2 = load_configs("tiny-sd2");

  const std::string_view header = fuzz::as_text(data, size);
  std::string head(8, '\0');
  for (int i = 0; i < 8; ++i) head[i] = static_cast<char>(std::uint64_t(size) >> (8 * i));
  head += header;
  const fuzz::MemoryFile memory(head, data_area_size(header));

  fuzz::accepts([&] {
    const SafeTensorsFile file(memory.path());
    fuzz::accepts([&] { inspect_ldm_checkpoint(file); });
    for (const Configs* c : {&sd1, &sd2})
      fuzz::accepts([&] { check_mapping(file, map_ldm_checkpoint(file, c->unet, c->vae, c->text_encoder)); });
  });
  return 0;
}
