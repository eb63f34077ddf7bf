// CPU kernels of crossmodal_jax, called from JAX through its FFI (`jax.ffi.ffi_call`).
//
// Compiled on first use by crossmodal_jax/kernels/__init__.py with the machine's C++
// compiler (-O3 -march=native -ffp-contract=off) into a cache folder and loaded there;
// without a compiler the library keeps its XLA forms. The entry points:
//
// - CrossmodalPairwiseReluDot: R[p, q] = sum_k relu(a[p, k] + b[q, k]) * w[k], the fused
//   all-pairs kernel of crossmodal_jax/layers/pairwise.py, forward only. A register tile
//   of PR rows of `a` x QR rows of `b` keeps one vector accumulator per pair, vectorised
//   over k (an add, a max and an FMA per element); each pair's lanes are summed by the
//   same halving tree at the end. Every pair takes exactly the same operations in the
//   same order wherever it sits in the tile, in the block or among the threads, so equal
//   inputs give bit-equal scores (the top-k's ties then go to the lower gallery index,
//   as for the XLA form). Rows of `a` are blocked to stay in L2 while QR rows of `b` sit
//   in L1; blocks of (rows of a) x (rows of b) are shared among the threads.
// - CrossmodalTopKMerge: merges a [rows, C] block of scores, candidates offset..offset+C-1
//   of a gallery, into each row's running k best (a higher score first, ties to the lower
//   index), with -0.0 counted as 0.0, candidates at or past num_valid skipped (padding)
//   and NaN flagged. Each row keeps its k best (the worst of them first) and a buffer of
//   candidates that beat that worst, in place (the outputs alias the inputs); a full
//   buffer is merged by one selection. Candidates are compared with the worst kept a
//   vector at a time, so a block costs little more than reading it.
// - CrossmodalTopKFinish: each row's k best of a merged state in rank order (the buffer
//   merged by one selection, then the k sorted), once at the end.
// - crossmodal_peak_probe: the machine's measured peak of the kernel's vector operations
//   (the micro-kernel's add, max and FMA on registers, no memory), for the benchmark's
//   floor (experiments/benchmark/floor.py).

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include <unistd.h>
#if defined(__linux__)
#include <sched.h>
#endif
#if defined(__AVX512F__) || defined(__AVX2__) || defined(__AVX__)
#include <immintrin.h>
#endif

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

// Buffer types by dtype and rank (aliases: the handler macros cannot take their commas).
using F32x1 = ffi::Buffer<ffi::F32, 1>;
using F32x2 = ffi::Buffer<ffi::F32, 2>;
using S32x0 = ffi::Buffer<ffi::S32, 0>;
using S32x1 = ffi::Buffer<ffi::S32, 1>;
using S32x2 = ffi::Buffer<ffi::S32, 2>;
using PredX1 = ffi::Buffer<ffi::PRED, 1>;

namespace {

// ------------------------------------------------------------------------------------
// Vectors: GCC vector extensions, V floats wide; max and FMA explicit per ISA so that no
// instantiation contracts or reorders differently (-ffp-contract=off).
// ------------------------------------------------------------------------------------

#if defined(__AVX512F__)
constexpr int V = 16;
constexpr int PR = 4;  // rows of a per register tile
constexpr int QR = 4;  // rows of b per register tile
#elif defined(__AVX__)
constexpr int V = 8;
constexpr int PR = 3;
constexpr int QR = 3;
#else
constexpr int V = 4;
constexpr int PR = 3;
constexpr int QR = 3;
#endif

typedef float vf __attribute__((vector_size(V * sizeof(float))));

inline vf Load(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// Loads into a register: the compiler may not fold the load into each use (it would load
// a row's vector once per pair of the tile instead of once per tile).
inline vf LoadRegister(const float* p) {
  vf v = Load(p);
#if defined(__x86_64__) || defined(__i386__)
  asm("" : "+x"(v));
#endif
  return v;
}

inline vf Splat(float x) {
#if defined(__AVX512F__)
  return (vf)_mm512_set1_ps(x);
#elif defined(__AVX__)
  return (vf)_mm256_set1_ps(x);
#else
  vf v;
  for (int i = 0; i < V; ++i) v[i] = x;
  return v;
#endif
}

// relu as max(0, t), NaN propagating (x86 MAX returns its second operand on NaN).
inline vf Relu(vf t) {
#if defined(__AVX512F__)
  return (vf)_mm512_max_ps(_mm512_setzero_ps(), (__m512)t);
#elif defined(__AVX__)
  return (vf)_mm256_max_ps(_mm256_setzero_ps(), (__m256)t);
#else
  vf z = {};
  return t < z ? z : t;
#endif
}

inline vf Fma(vf a, vf b, vf c) {
#if defined(__AVX512F__)
  return (vf)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
#elif defined(__FMA__)
  return (vf)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
#else
  vf r;
  for (int i = 0; i < V; ++i) r[i] = std::fma(a[i], b[i], c[i]);
  return r;
#endif
}

// The lanes' sum by a fixed halving tree (the same for every pair).
inline float HorizontalSum(vf v) {
  float x[V];
  std::memcpy(x, &v, sizeof(x));
  for (int half = V / 2; half > 0; half /= 2) {
    for (int i = 0; i < half; ++i) x[i] += x[i + half];
  }
  return x[0];
}

inline float ScalarRelu(float t) { return 0.0f > t ? 0.0f : t; }

// ------------------------------------------------------------------------------------
// A small persistent thread pool: Run(n, fn) calls fn(0..n-1) on the pool's threads and
// the caller's, and returns when all are done. Calls are serialised.
// ------------------------------------------------------------------------------------

int DefaultThreads() {
  if (const char* env = std::getenv("CROSSMODAL_JAX_KERNEL_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

class Pool {
 public:
  explicit Pool(int threads) : threads_(std::max(1, threads)) {
    for (int i = 1; i < threads_; ++i) workers_.emplace_back([this] { Work(); });
  }

  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
  }

  int threads() const { return threads_; }

  void Run(int64_t n, const std::function<void(int64_t)>& fn) {
    if (n <= 0) return;
    if (threads_ == 1 || n == 1) {
      for (int64_t i = 0; i < n; ++i) fn(i);
      return;
    }
    std::lock_guard<std::mutex> serial(run_mu_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      fn_ = &fn;
      n_ = n;
      next_.store(0);
      busy_ = static_cast<int>(workers_.size());
      ++generation_;
    }
    wake_.notify_all();
    Drain(fn, n);
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [this] { return busy_ == 0; });
    fn_ = nullptr;
  }

 private:
  void Drain(const std::function<void(int64_t)>& fn, int64_t n) {
    for (int64_t i = next_.fetch_add(1); i < n; i = next_.fetch_add(1)) fn(i);
  }

  void Work() {
    uint64_t seen = 0;
    while (true) {
      const std::function<void(int64_t)>* fn;
      int64_t n;
      {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        fn = fn_;
        n = n_;
      }
      Drain(*fn, n);
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (--busy_ == 0) done_.notify_one();
      }
    }
  }

  const int threads_;
  std::vector<std::thread> workers_;
  std::mutex run_mu_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable done_;
  const std::function<void(int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  std::atomic<int64_t> next_{0};
  int busy_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
};

// The process's pool, made on first use. Never destroyed (no joins at exit); a child
// process forked after its creation (which has none of its threads) makes its own.
Pool& ThePool() {
  static std::mutex mu;
  static Pool* pool = nullptr;
  static pid_t owner = 0;
  std::lock_guard<std::mutex> lock(mu);
  if (pool == nullptr || owner != getpid()) {
    pool = new Pool(DefaultThreads());
    owner = getpid();
  }
  return *pool;
}

// ------------------------------------------------------------------------------------
// The pairwise kernel.
// ------------------------------------------------------------------------------------

// Rows of `a` per block: a block of 64 rows of K = 1024 floats is 256 KB, kept in L2
// while the rows of `b` pass through L1 QR at a time.
constexpr int64_t kBlockRows = 64;
// Rows of `b` per task (a task: one block of rows of a x these rows of b).
constexpr int64_t kTaskCols = 256;
// Below this many pair elements the kernel runs on the calling thread alone.
constexpr int64_t kSerialElements = int64_t{1} << 22;

// R[i, j] for i < NP rows of a and j < NQ rows of b (NP <= PR, NQ <= QR).
template <int NP, int NQ>
void Tile(const float* a, const float* b, const float* w, int64_t k_size, float* r,
          int64_t ldr) {
  vf acc[NP][NQ];
  for (int i = 0; i < NP; ++i)
    for (int j = 0; j < NQ; ++j) acc[i][j] = vf{};
  const int64_t k_vec = k_size - k_size % V;
  for (int64_t k = 0; k < k_vec; k += V) {
    const vf wv = LoadRegister(w + k);
    vf bv[NQ];
    for (int j = 0; j < NQ; ++j) bv[j] = LoadRegister(b + j * k_size + k);
    for (int i = 0; i < NP; ++i) {
      const vf av = LoadRegister(a + i * k_size + k);
      for (int j = 0; j < NQ; ++j) acc[i][j] = Fma(Relu(av + bv[j]), wv, acc[i][j]);
    }
  }
  for (int i = 0; i < NP; ++i) {
    for (int j = 0; j < NQ; ++j) {
      float s = HorizontalSum(acc[i][j]);
      for (int64_t k = k_vec; k < k_size; ++k) {
        s = std::fma(ScalarRelu(a[i * k_size + k] + b[j * k_size + k]), w[k], s);
      }
      r[i * ldr + j] = s;
    }
  }
}

using TileFn = void (*)(const float*, const float*, const float*, int64_t, float*, int64_t);

template <int NP, int... NQ>
constexpr auto TileRow(std::integer_sequence<int, NQ...>) {
  return std::array<TileFn, QR>{&Tile<NP, NQ + 1>...};
}

template <int... NP>
constexpr auto TileTable(std::integer_sequence<int, NP...>) {
  return std::array<std::array<TileFn, QR>, PR>{
      TileRow<NP + 1>(std::make_integer_sequence<int, QR>())...};
}

const auto kTiles = TileTable(std::make_integer_sequence<int, PR>());

// Rows [p0, p1) of a x rows [q0, q1) of b.
void Block(const float* a, const float* b, const float* w, int64_t k_size, float* r,
           int64_t q_size, int64_t p0, int64_t p1, int64_t q0, int64_t q1) {
  for (int64_t q = q0; q < q1; q += QR) {
    const int nq = static_cast<int>(std::min<int64_t>(QR, q1 - q));
    for (int64_t p = p0; p < p1; p += PR) {
      const int np = static_cast<int>(std::min<int64_t>(PR, p1 - p));
      kTiles[np - 1][nq - 1](a + p * k_size, b + q * k_size, w, k_size, r + p * q_size + q,
                             q_size);
    }
  }
}

void PairwiseReluDot(const float* a, const float* b, const float* w, int64_t p_size,
                     int64_t q_size, int64_t k_size, float* r) {
  if (p_size == 0 || q_size == 0) return;
  if (k_size == 0) {
    std::fill(r, r + p_size * q_size, 0.0f);
    return;
  }
  const int64_t p_blocks = (p_size + kBlockRows - 1) / kBlockRows;
  const int64_t q_blocks = (q_size + kTaskCols - 1) / kTaskCols;
  auto task = [&](int64_t t) {
    const int64_t pb = t % p_blocks, qb = t / p_blocks;
    Block(a, b, w, k_size, r, q_size, pb * kBlockRows,
          std::min(p_size, (pb + 1) * kBlockRows), qb * kTaskCols,
          std::min(q_size, (qb + 1) * kTaskCols));
  };
  if (p_size * q_size * k_size < kSerialElements) {
    for (int64_t t = 0; t < p_blocks * q_blocks; ++t) task(t);
  } else {
    ThePool().Run(p_blocks * q_blocks, task);
  }
}

ffi::Error PairwiseReluDotImpl(F32x2 a, F32x2 b,
                               F32x1 w,
                               ffi::Result<F32x2> r) {
  const auto ad = a.dimensions(), bd = b.dimensions(), wd = w.dimensions();
  const auto rd = r->dimensions();
  if (ad[1] != bd[1] || ad[1] != wd[0] || rd[0] != ad[0] || rd[1] != bd[0]) {
    return ffi::Error::InvalidArgument("pairwise_relu_dot: shapes [P, K], [Q, K], [K] expected");
  }
  PairwiseReluDot(a.typed_data(), b.typed_data(), w.typed_data(), ad[0], bd[0], ad[1],
                  r->typed_data());
  return ffi::Error::Success();
}

// ------------------------------------------------------------------------------------
// The top-k merge.
// ------------------------------------------------------------------------------------

// Bit j set where p[j] >= thr or p[j] is NaN (the candidates worth a look), j < W.
#if defined(__AVX512F__)
constexpr int W = 16;
inline uint32_t Candidates(const float* p, float thr) {
  return _mm512_cmp_ps_mask(_mm512_loadu_ps(p), _mm512_set1_ps(thr), _CMP_NLT_UQ);
}
#elif defined(__AVX__)
constexpr int W = 8;
inline uint32_t Candidates(const float* p, float thr) {
  return _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(p), _mm256_set1_ps(thr), _CMP_NLT_UQ));
}
#else
constexpr int W = 4;
inline uint32_t Candidates(const float* p, float thr) {
  uint32_t m = 0;
  for (int j = 0; j < W; ++j) m |= static_cast<uint32_t>(!(p[j] < thr)) << j;
  return m;
}
#endif

// A candidate as one integer that orders as the ranking: the score's bits made
// order-preserving above, the complement of the index below (a higher score first, then
// the lower index). -0.0 is 0.0 and NaN never gets here.
inline uint64_t Key(float s, int32_t i) {
  uint32_t b;
  std::memcpy(&b, &s, sizeof(b));
  b = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
  return (static_cast<uint64_t>(b) << 32) | static_cast<uint32_t>(~i);
}

inline void Unkey(uint64_t key, float* s, int32_t* i) {
  uint32_t b = static_cast<uint32_t>(key >> 32);
  b = (b & 0x80000000u) ? (b & 0x7fffffffu) : ~b;
  std::memcpy(s, &b, sizeof(b));
  *i = static_cast<int32_t>(~static_cast<uint32_t>(key));
}

// One row's state: slots [0, k) hold the k best merged so far (any order, the worst of
// them in slot 0), slots [k, k + count) candidates that beat slot 0 when they came. When
// the buffer is full, the k best of all slots are selected (and the worst of them put in
// slot 0): a selection over k + B entries per B candidates instead of a heap operation
// per candidate.
class Row {
 public:
  Row(float* s, int32_t* i, int32_t* count, int64_t k, int64_t width, std::vector<uint64_t>* keys)
      : s_(s), i_(i), count_(count), k_(k), width_(width), keys_(keys),
        worst_(Key(s[0], i[0])) {}

  float threshold() const { return s_[0]; }

  void Offer(float v, int64_t index) {
    v = v == 0.0f ? 0.0f : v;  // -0.0 as 0.0
    const int32_t i = static_cast<int32_t>(index);
    if (Key(v, i) <= worst_) return;
    const int64_t slot = k_ + *count_;
    s_[slot] = v;
    i_[slot] = i;
    if (++*count_ == width_ - k_) Flush();
  }

  void Flush() {
    const int64_t n = k_ + *count_;
    if (*count_ == 0) return;
    keys_->resize(n);
    uint64_t* keys = keys_->data();
    for (int64_t j = 0; j < n; ++j) keys[j] = Key(s_[j], i_[j]);
    std::nth_element(keys, keys + (k_ - 1), keys + n, std::greater<uint64_t>());
    std::swap(keys[0], keys[k_ - 1]);  // the k-th best: the worst kept, in slot 0
    for (int64_t j = 0; j < k_; ++j) Unkey(keys[j], s_ + j, i_ + j);
    worst_ = keys[0];
    *count_ = 0;
  }

 private:
  float* s_;
  int32_t* i_;
  int32_t* count_;
  const int64_t k_, width_;
  std::vector<uint64_t>* keys_;
  uint64_t worst_;
};

// Merges scores[0..c), gallery indices offset + j (those at or past num_valid skipped),
// into one row's state.
void MergeRow(Row& row, const float* scores, int64_t c, int64_t offset, int64_t num_valid,
              bool* nan) {
  const int64_t n = std::max<int64_t>(0, std::min<int64_t>(c, num_valid - offset));
  bool seen_nan = false;
  auto look = [&](int64_t j) {
    const float v = scores[j];
    if (v != v) {
      seen_nan = true;
    } else if (v >= row.threshold()) {
      row.Offer(v, offset + j);
    }
  };
  int64_t j = 0;
  for (; j + W <= n; j += W) {
    uint32_t m = Candidates(scores + j, row.threshold());
    while (m) {
      look(j + __builtin_ctz(m));
      m &= m - 1;
    }
  }
  for (; j < n; ++j) look(j);
  if (seen_nan) *nan = true;
}

ffi::Error TopKMergeImpl(F32x2 state_s_in, S32x2 state_i_in, S32x1 count_in, PredX1 nan_in,
                         F32x2 scores, S32x0 offset, S32x0 num_valid, int64_t k,
                         ffi::Result<F32x2> state_s, ffi::Result<S32x2> state_i,
                         ffi::Result<S32x1> count, ffi::Result<PredX1> nan) {
  const auto sd = state_s_in.dimensions(), cd = scores.dimensions();
  const int64_t rows = sd[0], width = sd[1], c = cd[1];
  if (cd[0] != rows || state_i_in.dimensions()[0] != rows || state_i_in.dimensions()[1] != width ||
      count_in.dimensions()[0] != rows || nan_in.dimensions()[0] != rows || k < 1 ||
      width <= k) {
    return ffi::Error::InvalidArgument("top_k_merge: rows, k or the state's width disagree");
  }
  // The outputs alias the inputs (updated in place); copy where XLA gave other buffers.
  auto same = [](const void* out, const void* in, size_t bytes) {
    if (out != in) std::memcpy(const_cast<void*>(out), in, bytes);
  };
  same(state_s->typed_data(), state_s_in.typed_data(), rows * width * sizeof(float));
  same(state_i->typed_data(), state_i_in.typed_data(), rows * width * sizeof(int32_t));
  same(count->typed_data(), count_in.typed_data(), rows * sizeof(int32_t));
  same(nan->typed_data(), nan_in.typed_data(), rows * sizeof(bool));
  const int64_t off = *offset.typed_data(), valid = *num_valid.typed_data();
  float* ss = state_s->typed_data();
  int32_t* si = state_i->typed_data();
  int32_t* cnt = count->typed_data();
  bool* nan_out = nan->typed_data();
  const float* sc = scores.typed_data();
  // Tasks of about 64 K candidates.
  const int64_t per_task = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(c, 1));
  const int64_t tasks = (rows + per_task - 1) / per_task;
  auto task = [&](int64_t t) {
    std::vector<uint64_t> keys;
    for (int64_t r = t * per_task; r < std::min(rows, (t + 1) * per_task); ++r) {
      Row row(ss + r * width, si + r * width, cnt + r, k, width, &keys);
      MergeRow(row, sc + r * c, c, off, valid, nan_out + r);
    }
  };
  if (tasks > 1) {
    ThePool().Run(tasks, task);
  } else if (tasks == 1) {
    task(0);
  }
  return ffi::Error::Success();
}

// Each row's k best of a merged state in rank order (a higher score first, ties to the
// lower index): the buffer merged by one selection, then the k sorted; rows in tasks.
ffi::Error TopKFinishImpl(F32x2 state_s, S32x2 state_i, S32x1 count_in, int64_t k,
                          ffi::Result<F32x2> top_s, ffi::Result<S32x2> top_i) {
  const auto sd = state_s.dimensions(), td = top_s->dimensions();
  const int64_t rows = sd[0], width = sd[1];
  if (state_i.dimensions()[0] != rows || state_i.dimensions()[1] != width ||
      count_in.dimensions()[0] != rows || k < 1 || width <= k || td[0] != rows || td[1] != k ||
      top_i->dimensions()[0] != rows || top_i->dimensions()[1] != k) {
    return ffi::Error::InvalidArgument("top_k_finish: rows, k or the state's width disagree");
  }
  const float* ss = state_s.typed_data();
  const int32_t* si = state_i.typed_data();
  const int32_t* cnt = count_in.typed_data();
  float* os = top_s->typed_data();
  int32_t* oi = top_i->typed_data();
  // Tasks of about 32 K state entries.
  const int64_t per_task = std::max<int64_t>(1, (int64_t{1} << 15) / width);
  const int64_t tasks = (rows + per_task - 1) / per_task;
  auto task = [&](int64_t t) {
    std::vector<uint64_t> keys;
    for (int64_t r = t * per_task; r < std::min(rows, (t + 1) * per_task); ++r) {
      const int64_t n = k + std::clamp<int64_t>(cnt[r], 0, width - k);
      keys.resize(n);
      for (int64_t j = 0; j < n; ++j) keys[j] = Key(ss[r * width + j], si[r * width + j]);
      std::nth_element(keys.begin(), keys.begin() + (k - 1), keys.end(),
                       std::greater<uint64_t>());
      std::sort(keys.begin(), keys.begin() + k, std::greater<uint64_t>());
      for (int64_t j = 0; j < k; ++j) Unkey(keys[j], os + r * k + j, oi + r * k + j);
    }
  };
  if (tasks > 1) {
    ThePool().Run(tasks, task);
  } else if (tasks == 1) {
    task(0);
  }
  return ffi::Error::Success();
}

// ------------------------------------------------------------------------------------
// The peak probe: the micro-kernel's operations on registers only.
// ------------------------------------------------------------------------------------

double ProbeThread(int64_t iterations) {
  vf a[PR], b[QR], acc[PR][QR];
  const vf w = Splat(-0.5f);
  for (int i = 0; i < PR; ++i) a[i] = Splat(0.25f * i - 0.5f);
  for (int j = 0; j < QR; ++j) b[j] = Splat(0.125f * j);
  for (int i = 0; i < PR; ++i)
    for (int j = 0; j < QR; ++j) acc[i][j] = vf{};
  for (int64_t n = 0; n < iterations; ++n) {
    // As if a and b were loaded anew: the compiler may not hoist the adds and maxes.
    for (int i = 0; i < PR; ++i) asm volatile("" : "+x"(a[i]));
    for (int j = 0; j < QR; ++j) asm volatile("" : "+x"(b[j]));
    for (int i = 0; i < PR; ++i)
      for (int j = 0; j < QR; ++j) acc[i][j] = Fma(Relu(a[i] + b[j]), w, acc[i][j]);
  }
  double sum = 0;
  for (int i = 0; i < PR; ++i)
    for (int j = 0; j < QR; ++j) sum += HorizontalSum(acc[i][j]);
  return sum;
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(CrossmodalPairwiseReluDot, PairwiseReluDotImpl,
                              ffi::Ffi::Bind()
                                  .Arg<F32x2>()
                                  .Arg<F32x2>()
                                  .Arg<F32x1>()
                                  .Ret<F32x2>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(CrossmodalTopKMerge, TopKMergeImpl,
                              ffi::Ffi::Bind()
                                  .Arg<F32x2>()
                                  .Arg<S32x2>()
                                  .Arg<S32x1>()
                                  .Arg<PredX1>()
                                  .Arg<F32x2>()
                                  .Arg<S32x0>()
                                  .Arg<S32x0>()
                                  .Attr<int64_t>("k")
                                  .Ret<F32x2>()
                                  .Ret<S32x2>()
                                  .Ret<S32x1>()
                                  .Ret<PredX1>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(CrossmodalTopKFinish, TopKFinishImpl,
                              ffi::Ffi::Bind()
                                  .Arg<F32x2>()
                                  .Arg<S32x2>()
                                  .Arg<S32x1>()
                                  .Attr<int64_t>("k")
                                  .Ret<F32x2>()
                                  .Ret<S32x2>());

extern "C" {

// The kernel's layout: lanes per vector, rows of a and of b per register tile, threads.
void crossmodal_kernel_layout(int32_t* out) {
  out[0] = V;
  out[1] = PR;
  out[2] = QR;
  out[3] = ThePool().threads();
}

// Runs `iterations` register-tile steps (PR x QR pairs x V lanes: an add, a max and an
// FMA each) on each of `threads` threads (<= 0: the pool's) at once; returns the wall
// seconds and writes the element count (pairs x lanes x steps, all threads) to *elements.
double crossmodal_peak_probe(int64_t iterations, int32_t threads, double* elements) {
  const int n = threads > 0 ? threads : ThePool().threads();
  std::vector<double> sink(n);
  const auto start = std::chrono::steady_clock::now();
  ThePool().Run(n, [&](int64_t t) { sink[t] = ProbeThread(iterations); });
  const auto stop = std::chrono::steady_clock::now();
  volatile double keep = 0;
  for (double s : sink) keep = keep + s;
  *elements = static_cast<double>(iterations) * PR * QR * V * n;
  return std::chrono::duration<double>(stop - start).count();
}

// The kernel on plain arrays (for tests and the benchmark's kernel-only timing).
void crossmodal_pairwise_relu_dot(const float* a, const float* b, const float* w, int64_t p,
                                  int64_t q, int64_t k, float* r) {
  PairwiseReluDot(a, b, w, p, q, k, r);
}

}  // extern "C"
