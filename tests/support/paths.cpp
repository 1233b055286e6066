#include "tests/support/paths.hpp"

namespace sdgen::test {

std::filesystem::path data_dir() { return SDGEN_TEST_DATA_DIR; }
std::filesystem::path shared_dir() { return SDGEN_SHARED_DIR; }
std::filesystem::path sdgen_binary() { return SDGEN_BINARY; }
std::filesystem::path sdgen_emulated_gpu_binary() { return SDGEN_EMULATED_GPU_BINARY; }

}  // namespace sdgen::test
