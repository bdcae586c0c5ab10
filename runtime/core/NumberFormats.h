//===- NumberFormats.h - Scalar conversions of the stored formats -*- C++
//-*-===//
//
// The one host-side definition of how f32 values become the narrow formats
// artifacts store (bf16, f16, fp8 e4m3) and back: the compiler writes with
// them, the runtime reads with them, and the generated kernels are tested
// against them. All round to nearest even.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_RUNTIME_CORE_NUMBERFORMATS_H
#define OPTMLIR_RUNTIME_CORE_NUMBERFORMATS_H

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace optrt {

inline uint32_t floatBits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  return bits;
}
inline float bitsToFloat(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, 4);
  return value;
}

/// bf16: the upper half of an f32. NaN stays NaN.
inline uint16_t floatToBF16(float value) {
  uint32_t bits = floatBits(value);
  if ((bits & 0x7fffffff) > 0x7f800000)
    return uint16_t((bits >> 16) | 0x40);
  bits += 0x7fff + ((bits >> 16) & 1);
  return uint16_t(bits >> 16);
}
inline float bf16ToFloat(uint16_t half) {
  return bitsToFloat(uint32_t(half) << 16);
}

/// IEEE binary16: overflow to infinity, subnormals kept, NaN stays NaN.
inline uint16_t floatToF16(float value) {
  uint32_t bits = floatBits(value);
  uint32_t sign = (bits >> 16) & 0x8000;
  uint32_t magnitude = bits & 0x7fffffff;
  if (magnitude > 0x7f800000)
    return uint16_t(sign | 0x7e00);
  if (magnitude >= 0x477ff000) // rounds to 65520 or more: infinity
    return uint16_t(sign | 0x7c00);
  if (magnitude < 0x38800000) { // below 2^-14: a subnormal half
    float scaled = bitsToFloat(magnitude) * 16777216.0f; // * 2^24
    return uint16_t(sign | uint32_t(std::nearbyint(scaled)));
  }
  magnitude += 0xfff + ((magnitude >> 13) & 1);
  return uint16_t(sign | ((magnitude - 0x38000000) >> 13));
}
inline float f16ToFloat(uint16_t half) {
  uint32_t sign = uint32_t(half & 0x8000) << 16;
  uint32_t exponent = (half >> 10) & 0x1f, mantissa = half & 0x3ff;
  float magnitude;
  if (exponent == 0)
    magnitude = float(mantissa) / 16777216.0f; // * 2^-24
  else if (exponent == 31)
    magnitude = bitsToFloat(0x7f800000 | (mantissa << 13));
  else
    magnitude = bitsToFloat(((exponent + 112) << 23) | (mantissa << 13));
  return bitsToFloat(floatBits(magnitude) | sign);
}

/// fp8 e4m3 (OCP "fn": no infinities, max 448): saturates at +-448 and
/// takes NaN to +448, as the KV cache and fp8 weights store it.
inline uint8_t encodeF8E4M3(float value) {
  uint32_t sign = (floatBits(value) >> 24) & 0x80;
  float magnitude = std::fabs(value);
  magnitude = std::isnan(magnitude) ? 448.0f : std::min(magnitude, 448.0f);
  if (magnitude < 1.0f / 64.0f)
    return uint8_t(sign | uint32_t(std::nearbyint(magnitude * 512.0f)));
  uint32_t magBits = floatBits(magnitude);
  uint32_t rounded = (magBits + 0x7ffff + ((magBits >> 20) & 1)) >> 20;
  return uint8_t(sign | (rounded - (120u << 3)));
}
inline float decodeF8E4M3(uint8_t byte) {
  uint32_t exponent = (byte >> 3) & 0xf, mantissa = byte & 7;
  float magnitude =
      exponent == 0 ? float(mantissa) / 512.0f
                    : bitsToFloat(((exponent + 120) << 23) | (mantissa << 20));
  return (byte & 0x80) ? -magnitude : magnitude;
}

} // namespace optrt

#endif // OPTMLIR_RUNTIME_CORE_NUMBERFORMATS_H
