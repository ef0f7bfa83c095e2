// Runs attention.cu's fused kernels on the CPU: each CUDA thread of a block is an OS thread,
// and the warp-collective instructions the kernels use are emulated from their PTX ISA
// definitions. Compiled by gpu_validate/host_emulation.py with g++ -DEINSIM_HOST_EMULATION
// (force-included before attention.cu). It checks the kernels' index arithmetic (fragment
// layouts, ldmatrix addresses, masks, split-KV bookkeeping) without a GPU; it says nothing
// about their speed, and cp.async copies complete at once (a missing wait goes unseen).
//
// Emulated, after the PTX ISA (9.7.13.4.8 mma.m16n8k16 fragments, 9.7.13.4.15 ldmatrix):
//   mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32, D = A B + C in fp32;
//   ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16; __shfl_xor_sync; __syncwarp;
//   __syncthreads. Blocks run one after another; their threads run concurrently.
// nvcuda::wmma 16x16x16 (the unfused kernels): the element-to-thread mapping of a wmma
// fragment is unspecified, so each thread holds the whole tile; loads, stores and
// mma_sync follow the CUDA C++ Programming Guide's semantics (row/col-major, ldm).
#pragma once
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <type_traits>
#include <vector>

#define __global__
#define __device__ inline
#define __forceinline__
#define __launch_bounds__(x)
#define __shared__
#define __align__(n) __attribute__((aligned(n)))

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};
struct uint4 {
  unsigned x, y, z, w;
};
struct float2 {
  float x, y;
};
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }
using std::abs;
using std::max;
using std::min;
inline float fmaxf(float a, float b) { return std::fmax(a, b); }
inline float __expf(float x) { return std::exp(x); }
inline float __int_as_float(unsigned bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
inline unsigned float_bits(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  return u;
}

// 16-bit floats as bit patterns, rounded to nearest even like the device conversions.
struct __nv_bfloat16 {
  uint16_t bits;
};
struct __half {
  uint16_t bits;
};
struct __nv_bfloat162 {
  __nv_bfloat16 x, y;
};
struct __half2 {
  __half x, y;
};
inline float __bfloat162float(__nv_bfloat16 v) { return __int_as_float(unsigned(v.bits) << 16); }
inline __nv_bfloat16 __float2bfloat16(float f) {
  const unsigned u = float_bits(f);
  if (std::isnan(f)) return {uint16_t(0x7fc0)};
  return {uint16_t((u + 0x7fff + ((u >> 16) & 1)) >> 16)};
}
inline float __half2float(__half v) {
  const unsigned sign = (v.bits >> 15) & 1, exponent = (v.bits >> 10) & 0x1f, mantissa = v.bits & 0x3ff;
  float magnitude;
  if (exponent == 0) magnitude = std::ldexp(float(mantissa), -24);
  else if (exponent == 31) magnitude = mantissa ? NAN : INFINITY;
  else magnitude = std::ldexp(float(mantissa | 0x400), int(exponent) - 25);
  return sign ? -magnitude : magnitude;
}
inline __half __float2half(float f) {
  if (std::isnan(f)) return {uint16_t(0x7e00)};
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  const float a = std::fabs(f);
  if (a >= 65520.f) return {uint16_t(sign | 0x7c00)};
  if (a < std::ldexp(1.f, -14)) {  // subnormal: units of 2^-24, nearest even
    return {uint16_t(sign | uint16_t(std::nearbyint(a * std::ldexp(1.f, 24))))};
  }
  int e;
  const float m = std::frexp(a, &e);  // a = m 2^e, m in [0.5, 1)
  unsigned q = unsigned(std::nearbyint(m * 2048.f));  // 11 significant bits
  if (q == 2048) {
    q = 1024;
    ++e;
  }
  return {uint16_t(sign | ((e + 14) << 10) | (q & 0x3ff))};
}
inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) {
  return {__float2bfloat16(lo), __float2bfloat16(hi)};
}
inline __half2 __floats2half2_rn(float lo, float hi) { return {__float2half(lo), __float2half(hi)}; }

namespace emu {

struct Warp {
  std::barrier<> sync{32};
  const void* address[32];
  unsigned a[32][4], b[32][2];
  float word[32];
};

struct Block {
  explicit Block(int threads) : sync(threads), warps((threads + 31) / 32) {
    for (auto& w : warps) w = std::make_unique<Warp>();
  }
  std::barrier<> sync;
  std::vector<std::unique_ptr<Warp>> warps;
};

inline thread_local dim3 thread_index, block_index;
inline dim3 grid_size, block_size;
inline thread_local Block* block = nullptr;

inline Warp& warp() { return *block->warps[thread_index.x / 32]; }
inline int lane() { return int(thread_index.x % 32); }

// An input element (bf16, fp16 or float) as float.
template <typename T>
inline float to_float(const T& v) {
  if constexpr (std::is_same_v<T, __half>) return __half2float(v);
  else if constexpr (std::is_same_v<T, __nv_bfloat16>) return __bfloat162float(v);
  else return float(v);
}

// A b16 element `i` of a packed pair (low half first) as float.
template <typename T>
inline float unpack(unsigned pair, int i) {
  return to_float(T{uint16_t(i ? pair >> 16 : pair & 0xffff)});
}

// D = A B + C for one warp; this thread's fragments in, its D fragment out (PTX ISA layout:
// g = lane / 4, c = lane % 4; A reg r holds row g + 8 (r & 1), cols 2c + 8 (r >> 1) + {0, 1};
// B reg r holds rows 2c + 8 r + {0, 1} of column g; C/D element i is row g + 8 (i >> 1),
// col 2c + (i & 1)).
template <typename T>
inline void mma_m16n8k16(float* d, const unsigned* a, unsigned b0, unsigned b1) {
  Warp& w = warp();
  const int l = lane();
  std::memcpy(w.a[l], a, sizeof w.a[l]);
  w.b[l][0] = b0;
  w.b[l][1] = b1;
  w.sync.arrive_and_wait();
  const int g = l / 4, c = l % 4;
  for (int i = 0; i < 4; ++i) {
    const int row = g + 8 * (i >> 1), col = 2 * c + (i & 1);
    float sum = 0.f;
    for (int k = 0; k < 16; ++k) {
      const int a_lane = (row % 8) * 4 + (k % 8) / 2, a_reg = (row / 8) + 2 * (k / 8);
      const int b_lane = col * 4 + (k % 8) / 2, b_reg = k / 8;
      sum += unpack<T>(w.a[a_lane][a_reg], k % 2) * unpack<T>(w.b[b_lane][b_reg], k % 2);
    }
    d[i] += sum;
  }
  w.sync.arrive_and_wait();
}

// ldmatrix .x4: lane l gives row l % 8 of matrix l / 8; without .trans, register i of lane t
// is elements (t / 4, 2 (t % 4) + {0, 1}) of matrix i, with .trans (2 (t % 4) + {0, 1}, t / 4).
template <bool TRANS>
inline void ldmatrix_x4(unsigned* r, const void* row) {
  Warp& w = warp();
  const int t = lane();
  w.address[t] = row;
  w.sync.arrive_and_wait();
  for (int i = 0; i < 4; ++i) {
    uint16_t half[2];
    for (int e = 0; e < 2; ++e) {
      const int m_row = TRANS ? 2 * (t % 4) + e : t / 4, m_col = TRANS ? t / 4 : 2 * (t % 4) + e;
      std::memcpy(&half[e], static_cast<const uint16_t*>(w.address[8 * i + m_row]) + m_col, 2);
    }
    r[i] = unsigned(half[0]) | (unsigned(half[1]) << 16);
  }
  w.sync.arrive_and_wait();
}

inline float shfl_xor(float v, int mask) {
  Warp& w = warp();
  const int l = lane();
  w.word[l] = v;
  w.sync.arrive_and_wait();
  const float out = w.word[l ^ mask];
  w.sync.arrive_and_wait();
  return out;
}

// Runs `kernel()` for every block of `grid`, one block at a time, with `threads` threads.
inline void launch(dim3 grid, int threads, const std::function<void()>& kernel) {
  grid_size = grid;
  block_size = dim3{unsigned(threads), 1, 1};
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        Block shared(threads);
        std::vector<std::thread> pool;
        for (int t = 0; t < threads; ++t) {
          pool.emplace_back([&, t] {
            thread_index = dim3{unsigned(t), 0, 0};
            block_index = dim3{x, y, z};
            block = &shared;
            kernel();
          });
        }
        for (auto& thread : pool) thread.join();
      }
}

}  // namespace emu

// nvcuda::wmma, 16x16x16 only: every thread holds the whole tile (float); a store is done
// by lane 0 between two warp barriers, as the *_sync names promise.
namespace nvcuda::wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };
template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "emulated for 16x16x16 only");
  float x[16][16];  // (row, col) of the tile: A (m, k), B (k, n), accumulator (m, n)
};
template <typename F>
inline void fill_fragment(F& f, float v) {
  for (auto& row : f.x)
    for (float& e : row) e = v;
}
template <typename Use, typename T, typename Layout>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, T, Layout>& f, const T* p, unsigned ldm) {
  emu::warp().sync.arrive_and_wait();
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c)
      f.x[r][c] = emu::to_float(std::is_same_v<Layout, row_major> ? p[r * ldm + c] : p[c * ldm + r]);
}
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float>& f, const float* p,
                             unsigned ldm, layout_t layout) {
  emu::warp().sync.arrive_and_wait();
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) f.x[r][c] = layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
}
inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f,
                              unsigned ldm, layout_t layout) {
  emu::warp().sync.arrive_and_wait();
  if (emu::lane() == 0)
    for (int r = 0; r < 16; ++r)
      for (int c = 0; c < 16; ++c) (layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[r][c];
  emu::warp().sync.arrive_and_wait();
}
template <typename A, typename B>
inline void mma_sync(fragment<accumulator, 16, 16, 16, float>& d, const A& a, const B& b,
                     const fragment<accumulator, 16, 16, 16, float>& c) {
  float out[16][16];
  for (int r = 0; r < 16; ++r)
    for (int n = 0; n < 16; ++n) {
      float sum = c.x[r][n];
      for (int k = 0; k < 16; ++k) sum += a.x[r][k] * b.x[k][n];
      out[r][n] = sum;
    }
  std::memcpy(d.x, out, sizeof out);
}
}  // namespace nvcuda::wmma

#define threadIdx (emu::thread_index)
#define blockIdx (emu::block_index)
#define gridDim (emu::grid_size)
#define blockDim (emu::block_size)
inline void __syncthreads() { emu::block->sync.arrive_and_wait(); }
inline void __syncwarp() { emu::warp().sync.arrive_and_wait(); }
inline float __shfl_xor_sync(unsigned, float v, int mask) { return emu::shfl_xor(v, mask); }
inline void __pipeline_memcpy_async(void* dst, const void* src, size_t bytes) {
  std::memcpy(dst, src, bytes);
}
inline void __pipeline_commit() {}
inline void __pipeline_wait_prior(int) {}

// The dynamic shared memory of the block that runs (blocks run one at a time).
alignas(128) inline unsigned char smem[232448];
