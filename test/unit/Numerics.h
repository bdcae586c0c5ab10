//===- Numerics.h - how the unit tests compare numbers ----------*- C++ -*-===//

#ifndef OPTMLIR_TEST_UNIT_NUMERICS_H
#define OPTMLIR_TEST_UNIT_NUMERICS_H

#include <cmath>
#include <cstddef>
#include <vector>

namespace optmlir::test {

/// ||got - want|| / ||want|| over the elements of `want` (`got` a vector or
/// a pointer to as many values); accumulated in double.
template <typename Got, typename Want>
double relativeL2(const Got &got, const std::vector<Want> &want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    double d = double(got[i]) - double(want[i]);
    num += d * d;
    den += double(want[i]) * double(want[i]);
  }
  return std::sqrt(num / (den > 0 ? den : 1));
}

} // namespace optmlir::test

#endif // OPTMLIR_TEST_UNIT_NUMERICS_H
