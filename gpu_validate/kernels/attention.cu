// Attention kernels that honour an einsim GPU mapping (simulator/gpu.py), compiled by
// gpu_validate/kernels.py through cupy.RawModule (NVRTC) with the mapping's tile sizes,
// stages, warps and mask kind as template parameters.
//
// Layout: Q[bh][p][e], K[bh][m][e], V[bh][m][f], O[bh][p][f], row-major, bh = batch x head.
// Scores are scaled by `scale` (1 reproduces einsim's cascades, which fold 1/sqrt(E) into Q).
// Masks (MASK): 0 none, 1 causal m <= p, 2 window m <= p and p - m < W, 3 symmetric
// 2|p - m| <= W; the active / full key-tile ranges are the closed forms of
// simulator.gpu.tile_counts, so the kernel skips exactly the tiles the model skips and
// masks element by element only in the tiles it calls partial.
//
// Tensor cores: nvcuda::wmma 16x16x16 fragments (bf16/fp16 in, fp32 accumulate), which
// NVRTC lowers to mma.sync on sm_80 and later. The fused kernel is FlashAttention-2's
// Algorithm 1 (online softmax, one sweep over the key tiles); for clarity the output
// accumulator lives in shared memory as fp32 (rescaled per tile by the row correction),
// a simplification against FA2, which keeps it in registers.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_pipeline.h>
#include <mma.h>

using namespace nvcuda;

__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ void put(__half* p, float x) { *p = __float2half(x); }
__device__ __forceinline__ void put(__nv_bfloat16* p, float x) { *p = __float2bfloat16(x); }

template <int MASK>
__device__ __forceinline__ bool keep(int m, int p, int W) {
  if (MASK == 0) return true;
  if (MASK == 1) return m <= p;
  if (MASK == 2) return m <= p && p - m < W;
  return 2 * abs(p - m) <= W;
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

// Copy `rows` x `cols` elements (rows from `row0` of a [*, cols] matrix with `limit` rows) to
// shared memory with 16-byte cp.async; rows past `limit` are zero-filled.
template <typename T, int ROWS, int COLS, int THREADS>
__device__ __forceinline__ void copy_tile(T* dst, const T* src, int row0, int limit) {
  constexpr int VEC = 16 / sizeof(T);
  for (int idx = threadIdx.x; idx < ROWS * COLS / VEC; idx += THREADS) {
    const int r = idx / (COLS / VEC), c = (idx % (COLS / VEC)) * VEC;
    if (row0 + r < limit) {
      __pipeline_memcpy_async(dst + r * COLS + c, src + (size_t)(row0 + r) * COLS + c, 16);
    } else {
      *reinterpret_cast<uint4*>(dst + r * COLS + c) = make_uint4(0, 0, 0, 0);
    }
  }
}

// One CTA per (query tile, split, bh). split == 1 writes O; otherwise the unnormalized
// numerator goes to Opart[split][bh][p][f] and (m, l) to ML[split][bh][p][2].
template <typename T, int BR, int BC, int D, int DV, int WARPS, int STAGES, int MASK>
__global__ void __launch_bounds__(WARPS * 32)
    attention_fused(const T* __restrict__ Q, const T* __restrict__ K, const T* __restrict__ V,
                    T* __restrict__ O, float* __restrict__ Opart, float* __restrict__ ML, int P,
                    int M, int W, int split, float scale) {
  static_assert(BR % (16 * WARPS) == 0, "each warp owns whole 16-row MMA tiles");
  static_assert(BC % 16 == 0 && D % 16 == 0 && DV % 16 == 0, "MMA tiles are 16 x 16 x 16");
  constexpr int THREADS = WARPS * 32, RW = BR / WARPS;
  extern __shared__ __align__(128) unsigned char smem[];
  T* Qs = reinterpret_cast<T*>(smem);
  T* Ks = Qs + BR * D;
  T* Vs = Ks + STAGES * BC * D;
  T* Ps = Vs + STAGES * BC * DV;
  float* Ss = reinterpret_cast<float*>(Ps + BR * BC);
  float* Os = Ss + BR * BC;
  float* row_m = Os + BR * DV;
  float* row_l = row_m + BR;
  float* row_c = row_l + BR;

  const int p0 = blockIdx.x * BR, sp = blockIdx.y, bh = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const T* Qb = Q + (size_t)bh * P * D;
  const T* Kb = K + (size_t)bh * M * D;
  const T* Vb = V + (size_t)bh * M * DV;
  int lo, hi, flo, fhi;
  tile_range<MASK>(p0, min(P, p0 + BR) - 1, M, W, BC, lo, hi, flo, fhi);
  const int tiles = (M + BC - 1) / BC, chunk = (tiles + split - 1) / split;
  lo = max(lo, sp * chunk);
  hi = min(hi, (sp + 1) * chunk - 1);
  const int n = hi - lo + 1;

  copy_tile<T, BR, D, THREADS>(Qs, Qb, p0, P);
  for (int i = threadIdx.x; i < BR * DV; i += THREADS) Os[i] = 0.f;
  for (int i = threadIdx.x; i < BR; i += THREADS) {
    row_m[i] = -INFINITY;
    row_l[i] = 0.f;
  }
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < n) {
      copy_tile<T, BC, D, THREADS>(Ks + s * BC * D, Kb, (lo + s) * BC, M);
      copy_tile<T, BC, DV, THREADS>(Vs + s * BC * DV, Vb, (lo + s) * BC, M);
    }
    __pipeline_commit();
  }
  for (int t = 0; t < n; ++t) {
    const int j = lo + t, ahead = t + STAGES - 1;
    if (ahead < n) {
      copy_tile<T, BC, D, THREADS>(Ks + (ahead % STAGES) * BC * D, Kb, (lo + ahead) * BC, M);
      copy_tile<T, BC, DV, THREADS>(Vs + (ahead % STAGES) * BC * DV, Vb, (lo + ahead) * BC, M);
    }
    __pipeline_commit();
    __pipeline_wait_prior(STAGES - 1);
    __syncthreads();
    const T* Kt = Ks + (t % STAGES) * BC * D;
    const T* Vt = Vs + (t % STAGES) * BC * DV;
    // S = Q K^T for this warp's rows.
    for (int rb = warp * RW; rb < (warp + 1) * RW; rb += 16) {
      for (int cb = 0; cb < BC; cb += 16) {
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
        wmma::fill_fragment(acc, 0.f);
        for (int k = 0; k < D; k += 16) {
          wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
          wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> b;
          wmma::load_matrix_sync(a, Qs + rb * D + k, D);
          wmma::load_matrix_sync(b, Kt + cb * D + k, D);
          wmma::mma_sync(acc, a, b, acc);
        }
        wmma::store_matrix_sync(Ss + rb * BC + cb, acc, BC, wmma::mem_row_major);
      }
    }
    __syncwarp();
    // Online softmax per row (a warp per row of its block); mask only a partial tile.
    const bool partial = !(flo <= j && j <= fhi);
    for (int r = warp * RW; r < (warp + 1) * RW; ++r) {
      const int p = p0 + r;
      float mx = -INFINITY;
      for (int c = lane; c < BC; c += 32) {
        float s = Ss[r * BC + c] * scale;
        const int m = j * BC + c;
        if (partial && !(m < M && keep<MASK>(m, p, W))) s = -INFINITY;
        Ss[r * BC + c] = s;
        mx = fmaxf(mx, s);
      }
      for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
      const float m_old = row_m[r], m_new = fmaxf(m_old, mx);
      const float m_safe = m_new == -INFINITY ? 0.f : m_new;
      float sum = 0.f;
      for (int c = lane; c < BC; c += 32) {
        const float e = __expf(Ss[r * BC + c] - m_safe);
        put(Ps + r * BC + c, e);
        sum += e;
      }
      for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
      if (lane == 0) {
        const float corr = __expf(m_old - m_safe);
        row_c[r] = corr;
        row_l[r] = row_l[r] * corr + sum;
        row_m[r] = m_new;
      }
    }
    __syncwarp();
    for (int r = warp * RW; r < (warp + 1) * RW; ++r) {
      const float corr = row_c[r];
      for (int c = lane; c < DV; c += 32) Os[r * DV + c] *= corr;
    }
    __syncwarp();
    // O += P V for this warp's rows.
    for (int rb = warp * RW; rb < (warp + 1) * RW; rb += 16) {
      for (int db = 0; db < DV; db += 16) {
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
        wmma::load_matrix_sync(acc, Os + rb * DV + db, DV, wmma::mem_row_major);
        for (int k = 0; k < BC; k += 16) {
          wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
          wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> b;
          wmma::load_matrix_sync(a, Ps + rb * BC + k, BC);
          wmma::load_matrix_sync(b, Vt + k * DV + db, DV);
          wmma::mma_sync(acc, a, b, acc);
        }
        wmma::store_matrix_sync(Os + rb * DV + db, acc, DV, wmma::mem_row_major);
      }
    }
    __syncthreads();  // every warp is done with this stage before it is refilled
  }
  __pipeline_wait_prior(0);
  for (int i = threadIdx.x; i < BR * DV; i += THREADS) {
    const int r = i / DV, c = i % DV, p = p0 + r;
    if (p >= P) continue;
    if (split == 1) {
      const float l = row_l[r];
      put(O + ((size_t)bh * P + p) * DV + c, l > 0.f ? Os[i] / l : 0.f);
    } else {
      const size_t row = ((size_t)sp * gridDim.z + bh) * P + p;
      Opart[row * DV + c] = Os[i];
      if (c == 0) {
        ML[row * 2] = row_m[r];
        ML[row * 2 + 1] = row_l[r];
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
  float top = -INFINITY;
  for (int s = 0; s < split; ++s) top = fmaxf(top, ML[(s * rows + row) * 2]);
  const float safe = top == -INFINITY ? 0.f : top;
  float l = 0.f, o = 0.f;
  for (int s = 0; s < split; ++s) {
    const float w = __expf(ML[(s * rows + row) * 2] - safe);
    l += ML[(s * rows + row) * 2 + 1] * w;
    o += Opart[(s * rows + row) * DV + c] * w;
  }
  put(O + i, l > 0.f ? o / l : 0.f);
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
    for (int k = 0; k < D; k += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> b;
      wmma::load_matrix_sync(a, Qs + rb * D + k, D);
      wmma::load_matrix_sync(b, Ks + cb * D + k, D);
      wmma::mma_sync(acc, a, b, acc);
    }
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
  const int p = (int)(row % P);
  const float* s = S + row * M;
  float mx = -INFINITY;
  for (int m = lane; m < M; m += 32)
    if (keep<MASK>(m, p, W)) mx = fmaxf(mx, s[m]);
  for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  float sum = 0.f;
  for (int m = lane; m < M; m += 32)
    if (keep<MASK>(m, p, W)) sum += __expf(s[m] - mx);
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  for (int m = lane; m < M; m += 32)
    put(A + row * M + m, keep<MASK>(m, p, W) ? __expf(s[m] - mx) / sum : 0.f);
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
      for (int k = 0; k < BC; k += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> b;
        wmma::load_matrix_sync(a, at + rb * BC + k, BC);
        wmma::load_matrix_sync(b, vt + k * DV + db, DV);
        wmma::mma_sync(acc, a, b, acc);
      }
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
