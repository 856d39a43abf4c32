// Pixel values (pixelcnn/pixels.py): uint8 0..255 -> x / 127.5 - 1, the network's input range.
#pragma once

#include <stdint.h>

#if defined(__CUDACC__)
#define PIXELCNN_PIXELS_HD __host__ __device__ __forceinline__
#else
#define PIXELCNN_PIXELS_HD inline
#endif

namespace pixelcnn {

constexpr double kPixelScale = 127.5;
constexpr double kPixelOffset = 1.0;

template <typename T>
PIXELCNN_PIXELS_HD T to_unit(uint8_t v) {
  return T(v) / T(kPixelScale) - T(kPixelOffset);
}

}  // namespace pixelcnn
