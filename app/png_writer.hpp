// Writing the generated images: PNG files that carry how they were made, and that never exist
// half-written.
//
// Parameters. AUTOMATIC1111's web UI stores the generation settings in a PNG text chunk with the
// keyword "parameters", and other tools (its "PNG Info" tab, CivitAI, ComfyUI loaders, image
// browsers) read them back from there, so sdgen writes the same chunk in the same format:
//
//     a red fox in the snow
//     Negative prompt: blurry
//     Steps: 25, Sampler: DPM++ 2M Karras, CFG scale: 7.5, Seed: 42, Size: 512x512, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly
//
// format_parameters() reproduces A1111's create_infotext(): the negative-prompt line only when
// there is one, "key: value" pairs joined by ", ", a value holding ',', ':' or a newline written as
// a JSON string, floats as Python prints them (7.0, 7.5), and the whole text stripped of
// surrounding white space. Sampler names are A1111's (a1111_sampler()).
//
// The chunk. PNG's tEXt holds Latin-1 only; like PIL (which A1111 saves through), the text goes
// into a tEXt chunk when every character is Latin-1 and into an uncompressed iTXt chunk (UTF-8)
// otherwise, so a Japanese prompt survives. It sits right after IHDR, before the image data,
// where readers that stop at the first IDAT find it (PIL's Image.open, which A1111 reads with). Encoding is stb_image_write's, to memory; the chunk
// is spliced in with its CRC-32 computed here.
//
// Writing. The file is written to a temporary name beside the target, flushed to disk and renamed
// (weights::write_file_atomically): an interrupted run leaves either no file or a whole one.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lib/schedulers/resolved_config.hpp"

namespace sdgen::app {

// 8-bit RGB, rows top to bottom, 3 bytes per pixel (HWC), as the pipeline produces it.
struct RgbImageView {
  int width = 0;
  int height = 0;
  std::span<const std::uint8_t> pixels;  // width x height x 3 bytes
};

// A1111's name for a scheduler: "DDIM", "DPM++ 2M", "Euler", "Euler a", "PLMS" (its name for the
// pseudo linear multistep sampler diffusers calls PNDM), "LMS". With Karras sigmas, A1111 had
// combined names for DPM++ 2M and LMS ("DPM++ 2M Karras", "LMS Karras"), which every version reads;
// Euler with Karras sigmas it only writes since 1.9, as "Sampler: Euler, Schedule type: Karras".
struct A1111Sampler {
  std::string sampler;        // "DPM++ 2M Karras"
  std::string schedule_type;  // "Karras", or empty (the field is then left out)
};
A1111Sampler a1111_sampler(schedulers::Algorithm algorithm, const schedulers::ResolvedConfig& config);

// What one image was made with, in A1111's terms.
struct GenerationParameters {
  std::string prompt;
  std::string negative_prompt;  // the line is left out when empty, as A1111 does
  int steps = 0;                // inference steps as the user asked (not UNet calls)
  A1111Sampler sampler;
  double cfg_scale = 7.5;
  std::uint64_t seed = 0;
  int width = 0;
  int height = 0;
  std::string model_hash;  // first 10 hex digits of the SHA-256 (model_hash.hpp); left out when empty
  std::string model_name;  // left out when empty
  // A1111 counts from 1 (1 = the last layer, 2 = the penultimate: diffusers' clip_skip + 1).
  // Written only when above 1, as A1111 does.
  int clip_skip = 1;
};

std::string format_parameters(const GenerationParameters& parameters);

// The PNG file's bytes: the image, with `parameters` (UTF-8) in a "parameters" text chunk right
// after IHDR. Throws Error for an empty or inconsistent image.
std::vector<std::uint8_t> encode_png(const RgbImageView& image, std::string_view parameters);

// encode_png, then written atomically (temporary file, fsync, rename) over `path`. Throws Error
// with the OS reason when the file cannot be written; no partial file is left.
void write_png(const std::filesystem::path& path, const RgbImageView& image, std::string_view parameters);

}  // namespace sdgen::app
