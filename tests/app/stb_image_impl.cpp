// stb_image's implementation, compiled once for the app tests that decode PNGs (an independent
// decoder: what we write must read back in a library that is not ours).
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#include "stb_image.h"
