// CPU emulation of the CUDA subset used by cuda/kmeans.cu: one OS thread per CUDA thread,
// blocks run one after another (so __shared__ = static), barriers for __syncthreads and warps.
#pragma once
#include <barrier>
#include <thread>
#include <vector>
#include <cstring>
#include <cmath>
#include <cstdint>
#include <functional>
#include <atomic>
#include <algorithm>
typedef unsigned int u32;
typedef unsigned long long u64;
#define FULL_MASK 0xffffffffu
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
struct uint4 { u32 x, y, z, w; };
inline uint4 make_uint4(u32 a, u32 b, u32 c, u32 d) { return {a, b, c, d}; }
struct dim3e { u32 x, y, z; };
extern thread_local dim3e threadIdx, blockIdx;
extern dim3e blockDim, gridDim;
struct WarpX { std::barrier<>* bar; u64 slot[32]; };
extern std::barrier<>* g_block_bar;
extern thread_local WarpX* t_warp;
inline void __syncthreads() { g_block_bar->arrive_and_wait(); }
template <class T> inline T shfl_gen(T v, std::function<int(int)> src) {
    int lane = threadIdx.x & 31;
    u64 b = 0; std::memcpy(&b, &v, sizeof(T));
    t_warp->slot[lane] = b;
    t_warp->bar->arrive_and_wait();
    int s = src(lane);
    u64 o = t_warp->slot[s];
    t_warp->bar->arrive_and_wait();
    T r; std::memcpy(&r, &o, sizeof(T));
    return r;
}
template <class T> inline T __shfl_xor_sync(u32, T v, int o) { return shfl_gen(v, [o](int l) { return l ^ o; }); }
template <class T> inline T __shfl_up_sync(u32, T v, int o) { return shfl_gen(v, [o](int l) { return l >= o ? l - o : l; }); }
template <class T> inline T __ldg(const T* p) { return *p; }
inline int __dp4a(int a, int b, int c) {
    for (int i = 0; i < 4; i++) c += (int)(signed char)(a >> (8 * i)) * (int)(signed char)(b >> (8 * i));
    return c;
}
inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
inline float __int2float_rn(int i) { return (float)i; }
inline float __uint_as_float(u32 u) { float f; std::memcpy(&f, &u, 4); return f; }
inline float __int_as_float(int u) { float f; std::memcpy(&f, &u, 4); return f; }
inline u32 __float_as_uint(float f) { u32 u; std::memcpy(&u, &f, 4); return u; }
inline long long __float2ll_rn(float x) { return llrintf(x); }
inline u32 min(u32 a, u32 b) { return a < b ? a : b; }
inline u32 max(u32 a, u32 b) { return a > b ? a : b; }
inline u32 atomicAdd(u32* p, u32 v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline u64 atomicAdd(u64* p, u64 v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline u32 atomicMin(u32* p, u32 v) { u32 o = __atomic_load_n(p, __ATOMIC_SEQ_CST); while (v < o && !__atomic_compare_exchange_n(p, &o, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {} return o; }
__device__ __forceinline__ float int_score(int dot, float scale) { return __fmul_rn(__int2float_rn(dot), scale); }

template <class F> void launch(u32 grid, u32 block, F f) {
    blockDim = {block, 1, 1}; gridDim = {grid, 1, 1};
    for (u32 b = 0; b < grid; b++) {
        std::barrier<> bar(block);
        g_block_bar = &bar;
        u32 nw = (block + 31) / 32;
        std::vector<WarpX> warps(nw);
        std::vector<std::barrier<>*> wb;
        for (u32 w = 0; w < nw; w++) { warps[w].bar = new std::barrier<>(std::min(32u, block - 32 * w)); }
        std::vector<std::thread> th;
        for (u32 t = 0; t < block; t++) th.emplace_back([&, t] {
            threadIdx = {t, 0, 0}; blockIdx = {b, 0, 0}; t_warp = &warps[t / 32];
            f();
            t_warp->bar->arrive_and_drop();
            bar.arrive_and_drop();
        });
        for (auto& x : th) x.join();
        for (auto& w : warps) delete w.bar;
    }
}
