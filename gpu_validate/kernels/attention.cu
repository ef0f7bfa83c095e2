// Attention kernels that honour an einsim GPU mapping (simulator/gpu/), compiled by
// gpu_validate/kernels.py through cupy.RawModule (NVRTC) with the mapping's tile sizes,
// stages, warps and mask kind as template parameters. gpu_validate/nvrtc.py compiles the
// same instantiations without a GPU (CI), and reports ptxas's registers and spills.
//
// Layout: Q[bh][p][e], K[bh][m][e], V[bh][m][f], O[bh][p][f], row-major, bh = batch x head.
// Scores are scaled by `scale` (1 reproduces einsim's cascades, which fold 1/sqrt(E) into Q).
// Masks (MASK): 0 none, 1 causal m <= p, 2 window m <= p and p - m < W, 3 symmetric
// 2|p - m| <= W; the active / full key-tile ranges are the closed forms of
// simulator.gpu.tile_counts, so the kernel skips exactly the tiles the model skips and
// masks element by element only in the tiles it calls partial.
//
// The fused kernel is FlashAttention-2's forward pass (Dao 2023, Algorithm 1): a CTA per
// query tile, one sweep over the key tiles with the online softmax, and S, P and the output
// accumulator O in registers as mma.sync.m16n8k16 fragments (bf16/fp16 in, fp32
// accumulate; PTX ISA "Matrix Fragments for mma.m16n8k16"). Operands come from shared
// memory through ldmatrix (V transposed on the fly); rows are padded by 16 bytes so the
// eight row addresses of an ldmatrix fall in different banks. Shared memory holds only Q
// and the K/V ring, as the model's `fused_smem_bytes` says. The unfused kernels use
// nvcuda::wmma 16x16x16 fragments with fp32 staging in shared memory.
#ifndef EINSIM_HOST_EMULATION  // else host_emulation.h is force-included (CPU run)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_pipeline.h>
#include <mma.h>
#endif

using namespace nvcuda;

// -inf without <math.h> (NVRTC has no INFINITY): the bit pattern 0xff800000.
#define NEG_INF __int_as_float(0xff800000)

__device__ __forceinline__ void put(__half* p, float x) { *p = __float2half(x); }
__device__ __forceinline__ void put(__nv_bfloat16* p, float x) { *p = __float2bfloat16(x); }

// The kept keys of query row p form one interval [first, last] of [0, M) under each MASK of
// the header, so a row is masked by comparing key indices against two numbers.
template <int MASK>
__device__ __forceinline__ void key_interval(int p, int M, int W, int& first, int& last) {
  first = 0;
  last = M - 1;
  if (MASK == 1) last = min(p, M - 1);
  if (MASK == 2) {
    first = max(0, p - W + 1);
    last = min(p, M - 1);
  }
  if (MASK == 3) {
    first = max(0, p - W / 2);
    last = min(M - 1, p + W / 2);
  }
}

__device__ __forceinline__ int floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
__device__ __forceinline__ int ceil_div(int a, int b) { return -floor_div(-a, b); }

// Active key tiles [lo, hi] and full ones [flo, fhi] of the query rows p0..p1 (tile_counts).
template <int MASK>
__device__ void tile_range(int p0, int p1, int M, int W, int BC, int& lo, int& hi, int& flo,
                           int& fhi) {
  const int last = (M + BC - 1) / BC - 1, whole = M / BC;
  if (MASK == 0) {
    lo = 0; hi = last; flo = 0; fhi = whole - 1;
  } else if (MASK == 1) {
    lo = 0; hi = min(last, p1 / BC); flo = 0; fhi = min((p0 + 1) / BC, whole) - 1;
  } else {
    int first_key, last_key, full_first, full_last;
    if (MASK == 2) {
      first_key = p0 - W + 1; last_key = p1; full_first = p1 - W + 1; full_last = p0;
    } else {
      const int h = W / 2;
      first_key = p0 - h; last_key = p1 + h; full_first = p1 - h; full_last = p0 + h;
    }
    lo = max(first_key, 0) / BC;
    hi = first_key > M - 1 ? -1 : min(last_key, M - 1) / BC;
    flo = ceil_div(max(full_first, 0), BC);
    fhi = min(floor_div(full_last + 1, BC), whole) - 1;
  }
}

// The fused kernel pads shared-memory rows by 16 bytes (8 elements), so the eight row
// addresses of an ldmatrix fall in different banks: simulator.gpu.SMEM_ROW_PAD_BYTES.
constexpr int PAD = 8;

// Copy ROWS x COLS elements (rows from `row0` of a [*, COLS] matrix with `limit` rows) to
// shared-memory rows of COLS + PADDING elements with 16-byte cp.async; rows past `limit`
// are zero-filled.
template <typename T, int ROWS, int COLS, int THREADS, int PADDING = 0>
__device__ __forceinline__ void copy_tile(T* dst, const T* src, int row0, int limit) {
  constexpr int VEC = 16 / sizeof(T);
  for (int idx = threadIdx.x; idx < ROWS * COLS / VEC; idx += THREADS) {
    const int r = idx / (COLS / VEC), c = (idx % (COLS / VEC)) * VEC;
    T* to = dst + r * (COLS + PADDING) + c;
    if (row0 + r < limit) {
      __pipeline_memcpy_async(to, src + (size_t)(row0 + r) * COLS + c, 16);
    } else {
      *reinterpret_cast<uint4*>(to) = make_uint4(0, 0, 0, 0);
    }
  }
}

// mma.sync.m16n8k16 fragments, per thread (g = lane / 4, c = lane % 4; PTX ISA 9.7.13.4.8):
// A (16x16, row-major) 4 x b32: rows g, g+8 x cols 2c.., 2c+8..; B (16x8, "col") 2 x b32:
// k rows 2c.., 2c+8.. of column g; C/D (16x8 fp32) 4 floats: (g, 2c), (g, 2c+1), (g+8, 2c),
// (g+8, 2c+1).
// The PTX type of a 16-bit input, and a pair of floats packed into one b32 register (the
// lower-numbered column in the low half), for bf16 and fp16 alike.
template <typename T> struct Pair;
template <> struct Pair<__nv_bfloat16> {
  using type = __nv_bfloat162;
  static constexpr bool bf16 = true;
  static __device__ __forceinline__ type make(float lo, float hi) {
    return __floats2bfloat162_rn(lo, hi);
  }
};
template <> struct Pair<__half> {
  using type = __half2;
  static constexpr bool bf16 = false;
  static __device__ __forceinline__ type make(float lo, float hi) { return __floats2half2_rn(lo, hi); }
};

#define EINSIM_MMA_16816(TYPE)                                                                 \
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." TYPE "." TYPE                           \
               ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"                   \
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])                                \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1))

template <typename T> struct Mma {
  // D += A B for one warp, this thread's fragments.
  static __device__ __forceinline__ void run(float* d, const unsigned* a, unsigned b0,
                                             unsigned b1) {
#ifdef EINSIM_HOST_EMULATION
    emu::mma_m16n8k16<T>(d, a, b0, b1);
#else
    if constexpr (Pair<T>::bf16) {
      EINSIM_MMA_16816("bf16");
    } else {
      EINSIM_MMA_16816("f16");
    }
#endif
  }
  static __device__ __forceinline__ unsigned pack(float lo, float hi) {
    typename Pair<T>::type v = Pair<T>::make(lo, hi);
    return *reinterpret_cast<unsigned*>(&v);
  }
};

// Four 8x8 b16 matrices from shared memory; lane l gives the address of row l % 8 of matrix
// l / 8, and register i receives matrix i (transposed with TRANS).
template <bool TRANS>
__device__ __forceinline__ void ldmatrix_x4(unsigned* r, const void* row) {
#ifdef EINSIM_HOST_EMULATION
  emu::ldmatrix_x4<TRANS>(r, row);
#else
  const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(row));
  if (TRANS) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(address));
  } else {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(address));
  }
#endif
}

// One CTA per (query tile, split, bh); warp w owns query rows [w RW, (w + 1) RW) as MT
// 16-row MMA tiles. split == 1 writes O; otherwise the unnormalized numerator goes to
// Opart[split][bh][p][f] and (m, l) to ML[split][bh][p][2], m in scaled-score units.
template <typename T, int BR, int BC, int D, int DV, int WARPS, int STAGES, int MASK>
__global__ void __launch_bounds__(WARPS * 32)
    attention_fused(const T* __restrict__ Q, const T* __restrict__ K, const T* __restrict__ V,
                    T* __restrict__ O, float* __restrict__ Opart, float* __restrict__ ML, int P,
                    int M, int W, int split, float scale) {
  static_assert(BR % (16 * WARPS) == 0, "each warp owns whole 16-row MMA tiles");
  static_assert(BC % 16 == 0 && D % 16 == 0 && DV % 16 == 0, "MMA tiles are 16 x 16 x 16");
  constexpr int THREADS = WARPS * 32, RW = BR / WARPS, MT = RW / 16;
  constexpr int NS = BC / 8, NO = DV / 8;  // 8-column fragments of S and of O
  constexpr int QS = D + PAD, KS = D + PAD, VS = DV + PAD;  // padded row strides
  extern __shared__ __align__(128) unsigned char smem[];
  T* Qs = reinterpret_cast<T*>(smem);
  T* Ks = Qs + BR * QS;
  T* Vs = Ks + STAGES * BC * KS;

  const int p0 = blockIdx.x * BR, sp = blockIdx.y, bh = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
  const T* Kb = K + (size_t)bh * M * D;
  const T* Vb = V + (size_t)bh * M * DV;
  int lo, hi, flo, fhi;
  tile_range<MASK>(p0, min(P, p0 + BR) - 1, M, W, BC, lo, hi, flo, fhi);
  const int tiles = (M + BC - 1) / BC, chunk = (tiles + split - 1) / split;
  lo = max(lo, sp * chunk);
  hi = min(hi, (sp + 1) * chunk - 1);
  const int n = hi - lo + 1;

  // cp.async groups: Q, then tiles 0 .. STAGES-2; tile t + STAGES - 1 is issued at step t.
  copy_tile<T, BR, D, THREADS, PAD>(Qs, Q + (size_t)bh * P * D, p0, P);
  __pipeline_commit();
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < n) {
      copy_tile<T, BC, D, THREADS, PAD>(Ks + s * BC * KS, Kb, (lo + s) * BC, M);
      copy_tile<T, BC, DV, THREADS, PAD>(Vs + s * BC * VS, Vb, (lo + s) * BC, M);
    }
    __pipeline_commit();
  }

  float o[MT][NO][4], row_m[MT][2], row_l[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int nb = 0; nb < NO; ++nb) o[mt][nb][0] = o[mt][nb][1] = o[mt][nb][2] = o[mt][nb][3] = 0.f;
    row_m[mt][0] = row_m[mt][1] = NEG_INF;
    row_l[mt][0] = row_l[mt][1] = 0.f;
  }
  const float scale_log2 = scale * 1.4426950408889634f;  // e^x = 2^(x log2 e)
  const T* q_rows = Qs + (warp * RW + lane % 16) * QS + (lane / 16) * 8;

  for (int t = 0; t < n; ++t) {
    const int j = lo + t, ahead = t + STAGES - 1;
    __syncthreads();  // every warp is done with tile t - 1, whose slot is refilled now
    if (ahead < n) {
      copy_tile<T, BC, D, THREADS, PAD>(Ks + (ahead % STAGES) * BC * KS, Kb, (lo + ahead) * BC, M);
      copy_tile<T, BC, DV, THREADS, PAD>(Vs + (ahead % STAGES) * BC * VS, Vb, (lo + ahead) * BC, M);
    }
    __pipeline_commit();
    __pipeline_wait_prior(STAGES - 1);
    __syncthreads();
    const T* Kt = Ks + (t % STAGES) * BC * KS;
    const T* Vt = Vs + (t % STAGES) * BC * VS;

    // S = Q K^T: A from Q rows, B = K^T from K rows (ldmatrix without transpose).
    float s[MT][NS][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int nb = 0; nb < NS; ++nb) s[mt][nb][0] = s[mt][nb][1] = s[mt][nb][2] = s[mt][nb][3] = 0.f;
#pragma unroll
    for (int k = 0; k < D; k += 16) {
      unsigned a[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) ldmatrix_x4<false>(a[mt], q_rows + mt * 16 * QS + k);
#pragma unroll
      for (int nb = 0; nb < NS; nb += 2) {
        unsigned b[4];
        ldmatrix_x4<false>(b, Kt + (nb * 8 + lane % 8 + (lane / 16) * 8) * KS + k + ((lane / 8) % 2) * 8);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          Mma<T>::run(s[mt][nb], a[mt], b[0], b[1]);
          Mma<T>::run(s[mt][nb + 1], a[mt], b[2], b[3]);
        }
      }
    }

    // Online softmax of this thread's two rows per MMA tile (the quad of lanes with the
    // same g holds a row); elements are masked only in a partial tile.
    const bool partial = !(flo <= j && j <= fhi);
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        float mx = NEG_INF;
        if (partial) {  // kept columns of this row within the tile: [first, last] - j BC - 2c
          int first, last;
          key_interval<MASK>(p0 + warp * RW + mt * 16 + g + 8 * half, M, W, first, last);
          first -= j * BC + 2 * c;
          last -= j * BC + 2 * c;
#pragma unroll
          for (int nb = 0; nb < NS; ++nb) {
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              float& x = s[mt][nb][2 * half + e];
              if (nb * 8 + e < first || nb * 8 + e > last) x = NEG_INF;
            }
          }
        }
#pragma unroll
        for (int nb = 0; nb < NS; ++nb) mx = fmaxf(mx, fmaxf(s[mt][nb][2 * half], s[mt][nb][2 * half + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_old = row_m[mt][half], m_new = fmaxf(m_old, mx);
        const float m_safe = m_new == NEG_INF ? 0.f : m_new;
        const float corr = exp2f((m_old - m_safe) * scale_log2);
        float sum = 0.f;
#pragma unroll
        for (int nb = 0; nb < NS; ++nb) {
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            float& x = s[mt][nb][2 * half + e];
            x = exp2f((x - m_safe) * scale_log2);
            sum += x;
          }
        }
        row_m[mt][half] = m_new;
        row_l[mt][half] = row_l[mt][half] * corr + sum;  // this thread's share of the row
#pragma unroll
        for (int nb = 0; nb < NO; ++nb) {
          o[mt][nb][2 * half] *= corr;
          o[mt][nb][2 * half + 1] *= corr;
        }
      }
    }

    // O += P V: P's accumulator fragments of key columns [k, k + 16) are the A fragment
    // (two 16x8 C tiles side by side); V^T's B fragments through ldmatrix.trans of V rows.
#pragma unroll
    for (int k = 0; k < BC; k += 16) {
      unsigned a[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        const float* lo8 = s[mt][k / 8];
        const float* hi8 = s[mt][k / 8 + 1];
        a[mt][0] = Mma<T>::pack(lo8[0], lo8[1]);
        a[mt][1] = Mma<T>::pack(lo8[2], lo8[3]);
        a[mt][2] = Mma<T>::pack(hi8[0], hi8[1]);
        a[mt][3] = Mma<T>::pack(hi8[2], hi8[3]);
      }
#pragma unroll
      for (int nb = 0; nb < NO; nb += 2) {
        unsigned b[4];
        ldmatrix_x4<true>(b, Vt + (k + lane % 8 + ((lane / 8) % 2) * 8) * VS + nb * 8 + (lane / 16) * 8);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          Mma<T>::run(o[mt][nb], a[mt], b[0], b[1]);
          Mma<T>::run(o[mt][nb + 1], a[mt], b[2], b[3]);
        }
      }
    }
  }
  __pipeline_wait_prior(0);

  // Epilogue: the row sums over the quad, then O / l (or the split's partial numerator).
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      float l = row_l[mt][half];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      const int p = p0 + warp * RW + mt * 16 + g + 8 * half;
      if (p >= P) continue;
      if (split == 1) {
        const float inv = l > 0.f ? 1.f / l : 0.f;
        T* out = O + ((size_t)bh * P + p) * DV + 2 * c;
#pragma unroll
        for (int nb = 0; nb < NO; ++nb) {
          const unsigned pair = Mma<T>::pack(o[mt][nb][2 * half] * inv, o[mt][nb][2 * half + 1] * inv);
          *reinterpret_cast<unsigned*>(out + nb * 8) = pair;
        }
      } else {
        const size_t row = ((size_t)sp * gridDim.z + bh) * P + p;
        float* out = Opart + row * DV + 2 * c;
#pragma unroll
        for (int nb = 0; nb < NO; ++nb)
          *reinterpret_cast<float2*>(out + nb * 8) = make_float2(o[mt][nb][2 * half], o[mt][nb][2 * half + 1]);
        if (c == 0) {
          const float m = row_m[mt][half];
          ML[row * 2] = m == NEG_INF ? NEG_INF : m * scale;
          ML[row * 2 + 1] = l;
        }
      }
    }
  }
}

// Split-KV combine: O = sum_s Opart_s e^(m_s - m) / sum_s l_s e^(m_s - m), m = max_s m_s.
template <typename T, int DV>
__global__ void attention_combine(const float* __restrict__ Opart, const float* __restrict__ ML,
                                  T* __restrict__ O, long rows, int split) {
  const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= rows * DV) return;
  const long row = i / DV;
  const int c = (int)(i % DV);
  float top = NEG_INF;
  for (int s = 0; s < split; ++s) top = fmaxf(top, ML[(s * rows + row) * 2]);
  const float safe = top == NEG_INF ? 0.f : top;
  float l = 0.f, o = 0.f;
  for (int s = 0; s < split; ++s) {
    const float w = __expf(ML[(s * rows + row) * 2] - safe);
    l += ML[(s * rows + row) * 2 + 1] * w;
    o += Opart[(s * rows + row) * DV + c] * w;
  }
  put(O + i, l > 0.f ? o / l : 0.f);
}

// acc += A B over K in 16-deep wmma steps: A is 16 x K row-major (leading dimension lda),
// B is K x 16 in LAYOUT_B (leading dimension ldb), the unfused GEMMs' inner loop.
// (wmma's layout tags are incomplete types, so they are told apart through pointers)
__device__ __forceinline__ int k_offset(const wmma::row_major*, int k, int ld) { return k * ld; }
__device__ __forceinline__ int k_offset(const wmma::col_major*, int k, int) { return k; }
template <typename T, typename LAYOUT_B, int K>
__device__ __forceinline__ void wmma_accumulate(
    wmma::fragment<wmma::accumulator, 16, 16, 16, float>& acc, const T* a, int lda, const T* b,
    int ldb) {
  for (int k = 0; k < K; k += 16) {
    wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, T, LAYOUT_B> fb;
    wmma::load_matrix_sync(fa, a + k, lda);
    wmma::load_matrix_sync(fb, b + k_offset(static_cast<const LAYOUT_B*>(nullptr), k, ldb), ldb);
    wmma::mma_sync(acc, fa, fb, acc);
  }
}

// Unfused 1/3: S[bh][p][m] = scale * Q K^T in fp32, one CTA per BR x BC tile of S.
template <typename T, int BR, int BC, int D, int WARPS>
__global__ void __launch_bounds__(WARPS * 32)
    attention_qk(const T* __restrict__ Q, const T* __restrict__ K, float* __restrict__ S, int P,
                 int M, float scale) {
  constexpr int THREADS = WARPS * 32;
  extern __shared__ __align__(128) unsigned char smem[];
  T* Qs = reinterpret_cast<T*>(smem);
  T* Ks = Qs + BR * D;
  float* Ss = reinterpret_cast<float*>(Ks + BC * D);
  const int p0 = blockIdx.x * BR, m0 = blockIdx.y * BC, bh = blockIdx.z;
  const int warp = threadIdx.x / 32;
  copy_tile<T, BR, D, THREADS>(Qs, Q + (size_t)bh * P * D, p0, P);
  copy_tile<T, BC, D, THREADS>(Ks, K + (size_t)bh * M * D, m0, M);
  __pipeline_commit();
  __pipeline_wait_prior(0);
  __syncthreads();
  for (int blk = warp; blk < (BR / 16) * (BC / 16); blk += WARPS) {
    const int rb = (blk / (BC / 16)) * 16, cb = (blk % (BC / 16)) * 16;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::fill_fragment(acc, 0.f);
    wmma_accumulate<T, wmma::col_major, D>(acc, Qs + rb * D, D, Ks + cb * D, D);  // B = K^T
    wmma::store_matrix_sync(Ss + rb * BC + cb, acc, BC, wmma::mem_row_major);
  }
  __syncthreads();
  for (int i = threadIdx.x; i < BR * BC; i += THREADS) {
    const int r = i / BC, c = i % BC;
    if (p0 + r < P && m0 + c < M) S[((size_t)bh * P + p0 + r) * M + m0 + c] = Ss[i] * scale;
  }
}

// Unfused 2/3: a warp per row of S; pass 1 the max, pass 2 the sum of exp, pass 3 writes
// A = exp(S - max) / sum (0 where masked), each pass reading the row from global memory.
template <typename T, int MASK>
__global__ void attention_softmax(const float* __restrict__ S, T* __restrict__ A, long rows,
                                  int P, int M, int W) {
  const long row = ((long)blockIdx.x * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  int first, last;
  key_interval<MASK>((int)(row % P), M, W, first, last);
  const float* s = S + row * M;
  float mx = NEG_INF;
  for (int m = lane; m < M; m += 32)
    if (first <= m && m <= last) mx = fmaxf(mx, s[m]);
  for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  float sum = 0.f;
  for (int m = lane; m < M; m += 32)
    if (first <= m && m <= last) sum += __expf(s[m] - mx);
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  for (int m = lane; m < M; m += 32)
    put(A + row * M + m, first <= m && m <= last ? __expf(s[m] - mx) / sum : 0.f);
}

// Unfused 3/3: O[bh][p][f] = sum_m A[bh][p][m] V[bh][m][f]; a CTA per BR rows, the keys in
// chunks of BC through a STAGES-deep ring; the fp32 accumulator in shared memory.
template <typename T, int BR, int BC, int DV, int WARPS, int STAGES>
__global__ void __launch_bounds__(WARPS * 32)
    attention_av(const T* __restrict__ A, const T* __restrict__ V, T* __restrict__ O, int P,
                 int M) {
  constexpr int THREADS = WARPS * 32;
  extern __shared__ __align__(128) unsigned char smem[];
  T* As = reinterpret_cast<T*>(smem);
  T* Vs = As + STAGES * BR * BC;
  float* Os = reinterpret_cast<float*>(Vs + STAGES * BC * DV);
  const int p0 = blockIdx.x * BR, bh = blockIdx.z;
  const int warp = threadIdx.x / 32;
  const T* Ab = A + (size_t)bh * P * M;
  const T* Vb = V + (size_t)bh * M * DV;
  const int n = (M + BC - 1) / BC;
  for (int i = threadIdx.x; i < BR * DV; i += THREADS) Os[i] = 0.f;
  // A rows are M long; a chunk is BR rows x BC columns of A, copied element-wise when M
  // is not a multiple of the 16-byte vector.
  auto load = [&](int chunk, int stage) {
    T* as = As + stage * BR * BC;
    for (int i = threadIdx.x; i < BR * BC; i += THREADS) {
      const int r = i / BC, c = i % BC, m = chunk * BC + c;
      if (p0 + r < P && m < M) as[i] = Ab[(size_t)(p0 + r) * M + m];
      else put(as + i, 0.f);
    }
    copy_tile<T, BC, DV, THREADS>(Vs + stage * BC * DV, Vb, chunk * BC, M);
  };
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < n) load(s, s);
    __pipeline_commit();
  }
  for (int t = 0; t < n; ++t) {
    if (t + STAGES - 1 < n) load(t + STAGES - 1, (t + STAGES - 1) % STAGES);
    __pipeline_commit();
    __pipeline_wait_prior(STAGES - 1);
    __syncthreads();
    const T* at = As + (t % STAGES) * BR * BC;
    const T* vt = Vs + (t % STAGES) * BC * DV;
    for (int blk = warp; blk < (BR / 16) * (DV / 16); blk += WARPS) {
      const int rb = (blk / (DV / 16)) * 16, db = (blk % (DV / 16)) * 16;
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::load_matrix_sync(acc, Os + rb * DV + db, DV, wmma::mem_row_major);
      wmma_accumulate<T, wmma::row_major, BC>(acc, at + rb * BC, BC, vt + db, DV);
      wmma::store_matrix_sync(Os + rb * DV + db, acc, DV, wmma::mem_row_major);
    }
    __syncthreads();
  }
  __pipeline_wait_prior(0);
  for (int i = threadIdx.x; i < BR * DV; i += THREADS) {
    const int r = i / DV, c = i % DV;
    if (p0 + r < P) put(O + ((size_t)bh * P + p0 + r) * DV + c, Os[i]);
  }
}
