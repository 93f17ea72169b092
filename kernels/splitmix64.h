// splitmix64: the one 64-bit mixing function for seeded, counter-based randomness (sampling draws,
// synthetic weights). Pure function of its input; stable across platforms and releases, because
// generated models and seeded requests depend on its exact bits. Host and device (the GPU draws
// the same synthetic blocks and samples).
#pragma once
#include <cstdint>

#include "kernels/host_device.h"

namespace ds4 {

DS4_HOST_DEVICE inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace ds4
