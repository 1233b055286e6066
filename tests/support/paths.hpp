// Where tests find their data and the binary under test.
#pragma once

#include <filesystem>

namespace sdgen::test {

// tests/data: fixtures copied from ../shared/golden (our own data); always present.
std::filesystem::path data_dir();
// ../shared beside the checkout: third-party data (the real CLIP vocabulary). May be absent;
// tests that need it return early with a WARN (Catch2 v2 has no SKIP).
std::filesystem::path shared_dir();
// The sdgen executable, for tests that run the real command line.
std::filesystem::path sdgen_binary();
// The same command linked with the emulated CUDA backend (app/CMakeLists.txt): --device cuda runs
// on the CUDA emulator, whose device memory SDGEN_EMULATED_GPU_MEMORY sets.
std::filesystem::path sdgen_emulated_gpu_binary();

}  // namespace sdgen::test
